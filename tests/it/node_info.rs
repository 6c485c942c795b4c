//! `swampgate node-info NODEDIR` and `bridge --upstream node:NODEDIR` against real
//! Tahoe-LAFS 1.20 node dirs: what swampgate derives from a node's directory is what
//! the node itself announces, and a bridge told only the node dir picks the protocol
//! the node serves and carries a Tahoe client's files.
//!
//! Tahoe 1.20 node dirs serve both protocols by default, or Foolscap only with
//! `force_foolscap`; 1.18 and 1.17 node dirs have no `force_foolscap` and serve only
//! Foolscap, which swampgate learns from the node's port (no TLS handshake).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::kit::*;

/// `swampgate node-info ARGS...`, which must succeed; its stdout.
fn node_info(args: &[&std::ffi::OsStr], log_dir: &Path) -> String {
    let mut cmd = swampgate_command();
    cmd.arg("node-info").args(args);
    run_ok("swampgate node-info", cmd, log_dir, CLI_TIMEOUT)
}

fn node_info_json(dir: &Path, via: Option<&Path>, log_dir: &Path) -> Value {
    let mut args = vec![dir.as_os_str(), "--json".as_ref()];
    if let Some(v) = via {
        args.push("--via".as_ref());
        args.push(v.as_os_str());
    }
    let out = node_info(&args, log_dir);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("node-info --json: {e}: {out}"))
}

/// `swampgate ARGS...` must exit 2 saying `needle` on stderr.
fn fails_with(args: &[&std::ffi::OsStr], needle: &str) {
    let out = swampgate_command().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} must fail: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in: {stderr}"
    );
}

/// The one servers.yaml entry of node-info's output, as the kit's [`StaticServer`].
fn static_server(info: &Value) -> StaticServer {
    let storage = info["servers.yaml"]["storage"]
        .as_object()
        .unwrap_or_else(|| panic!("no storage map: {info}"));
    assert_eq!(storage.len(), 1, "{info}");
    let (id, entry) = storage.iter().next().unwrap();
    let ann = &entry["ann"];
    let text = |k: &str| ann[k].as_str().map(str::to_owned);
    StaticServer {
        server_id: id.clone(),
        nickname: text("nickname"),
        furl: text("anonymous-storage-FURL").expect("a FURL"),
        nurls: ann["anonymous-storage-NURLs"]
            .as_array()
            .map(|a| a.iter().map(|n| n.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default(),
        permutation_seed: text("permutation-seed-base32"),
    }
}

fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// node-info's values, and its servers.yaml entry, are what each node announces
/// through an introducer (as a client caches it), for a node serving both protocols
/// and for a Foolscap-only one.
#[test]
fn node_info_matches_what_the_nodes_announce() {
    let introducer = introducer_node();
    let (both, foolscap) = join(
        || {
            storage_node(StorageOptions {
                introducer: Some(introducer.furl().into()),
                ..StorageOptions::default()
            })
        },
        || {
            storage_node(StorageOptions {
                introducer: Some(introducer.furl().into()),
                ..StorageOptions::foolscap_only()
            })
        },
    );
    let client = client_node(ClientOptions {
        introducer: Some(introducer.furl().into()),
        wait_for_servers: false,
        ..ClientOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    for node in [&both, &foolscap] {
        let announced = client.wait_for_announcement(node.server_id());
        let info = node_info_json(node.dir(), None, work.path());
        let what = node.nickname();
        assert_eq!(info["server-id"], node.server_id(), "{what}");
        assert_eq!(info["tubid"], node.tubid(), "{what}");
        assert_eq!(info["nickname"], announced["nickname"], "{what}");
        assert_eq!(info["furl"], announced["anonymous-storage-FURL"], "{what}");
        assert_eq!(info["furl"], node.furl(), "{what}");
        assert_eq!(
            info["permutation-seed"], announced["permutation-seed-base32"],
            "{what}"
        );
        assert_eq!(
            set(&info["nurls"]),
            set(&announced["anonymous-storage-NURLs"]),
            "{what}: {announced}"
        );
        assert_eq!(
            set(&info["nurls"]),
            node.nurls().iter().cloned().collect(),
            "{what}"
        );
        // The servers.yaml entry carries exactly the announced values.
        let ann = &info["servers.yaml"]["storage"][node.server_id()]["ann"];
        for (k, v) in ann.as_object().unwrap() {
            if k == "anonymous-storage-NURLs" {
                assert_eq!(set(v), set(&announced[k]), "{what}: {k}");
            } else {
                assert_eq!(v, &announced[k], "{what}: {k}");
            }
        }
        assert_eq!(info["warnings"], serde_json::json!([]), "{what}");
    }
    let info = node_info_json(both.dir(), None, work.path());
    assert_eq!(info["gbs"], true);
    assert_eq!(set(&info["nurls"]).len(), 1);
    let info = node_info_json(foolscap.dir(), None, work.path());
    assert_eq!(info["gbs"], false);
    assert!(
        info["gbs-why"].as_str().unwrap().contains("force_foolscap"),
        "{info}"
    );

    // The human form: one `key value` per line, the same values.
    let human = node_info(&[both.dir().as_os_str()], work.path());
    let lines: Vec<(&str, &str)> = human
        .lines()
        .map(|l| l.split_once(' ').unwrap_or_else(|| panic!("{l:?}")))
        .collect();
    let get = |k: &str| {
        lines
            .iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("server-id"), [both.server_id()]);
    assert_eq!(get("furl"), [both.furl()]);
    assert_eq!(get("nurl"), [both.nurl()]);
    assert_eq!(get("permutation-seed"), [both.permutation_seed()]);
    let yaml: Value = serde_json::from_str(&get("servers.yaml")[0]).unwrap();
    assert_eq!(yaml, info_of(&both, work.path())["servers.yaml"]);
}

fn info_of(node: &StorageNode, log_dir: &Path) -> Value {
    node_info_json(node.dir(), None, log_dir)
}

/// `swampgate bridge --upstream node:DIR`, with the admin endpoint; returns the
/// process, the state dir and the admin port.
fn bridge_node(node: &StorageNode, dir: &Path) -> (Process, std::path::PathBuf, u16) {
    let admin = free_port();
    let state = dir.join("state");
    let mut cmd = swampgate_command();
    cmd.arg("bridge")
        .arg("--upstream")
        .arg(format!("node:{}", node.dir().display()))
        .args(["--listen", "127.0.0.1:0", "--admin"])
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--state-dir")
        .arg(&state);
    let mut p = Process::spawn("swampgate", cmd, dir);
    p.wait_for_line("link default furl ", STARTUP_TIMEOUT);
    p.wait_for_line("admin ", STARTUP_TIMEOUT);
    (p, state, admin)
}

/// A client given node-info's `--via` entry stores and reads a file; the shares are
/// on the node's disk and the calls went through swampgate.
fn round_trip_via(
    node: &StorageNode,
    state: &Path,
    force_foolscap: bool,
    work: &Path,
) -> ClientNode {
    let info = node_info_json(node.dir(), Some(&state.join("links/default.furl")), work);
    let link_furl = std::fs::read_to_string(state.join("links/default.furl")).unwrap();
    let link_nurl = std::fs::read_to_string(state.join("links/default.nurl")).unwrap();
    assert_eq!(info["via-furl"], link_furl.trim());
    assert_eq!(info["via-nurl"], link_nurl.trim());
    let server = static_server(&info);
    assert_eq!(server.server_id, node.server_id());
    assert_eq!(
        server.permutation_seed.as_deref(),
        Some(node.permutation_seed())
    );
    assert_eq!(server.furl, link_furl.trim());
    assert_eq!(server.nurls, [link_nurl.trim()]);
    let client = client_node(ClientOptions {
        force_foolscap,
        servers: vec![server],
        ..ClientOptions::default()
    });
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let src = work.join("file");
    std::fs::write(&src, &data).unwrap();
    let cap = client.tahoe(["put".as_ref(), src.as_os_str()]);
    let cap = cap.trim();
    assert!(cap.starts_with("URI:CHK:"), "{cap}");
    let out = work.join("file.out");
    client.tahoe(["get".as_ref(), cap.as_ref(), out.as_os_str()]);
    assert_eq!(std::fs::read(&out).unwrap(), data, "read back");
    let shares = walk(&node.shares_dir());
    assert!(shares > 0, "the shares are on the node's disk");
    client
}

fn walk(p: &Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.path() {
                    d if d.is_dir() && e.file_name() != "incoming" => walk(&d),
                    d if d.is_dir() => 0,
                    _ => 1,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn status(admin: u16) -> Value {
    let body = http_get(admin, "/status").unwrap();
    serde_json::from_str(&body).unwrap()
}

/// A default node serves GBS: `node:DIR` bridges over GBS, says so, and a
/// Foolscap-only client reaches the node through it.
#[test]
fn bridge_to_a_default_node_picks_gbs() {
    let node = storage_node(StorageOptions::default());
    let work = tempfile::tempdir().unwrap();
    let (sg, state, admin) = bridge_node(&node, work.path());
    let log = sg.stderr();
    assert!(
        log.contains("bridged over GBS: the node serves HTTP storage"),
        "{log}"
    );
    let s = status(admin);
    let upstream = s["links"][0]["upstream"].as_str().unwrap();
    let spki = node.nurl().split('@').next().unwrap();
    assert!(
        upstream.starts_with(spki) && upstream.ends_with("#v=1"),
        "GBS upstream: {s}"
    );
    let client = round_trip_via(&node, &state, true, work.path());
    let s = status(admin);
    assert!(
        s["connections"]["foolscap"].as_u64().unwrap() >= 1,
        "the Foolscap client came through swampgate: {s}"
    );
    assert_eq!(s["links"][0]["upstream_state"]["state"], "up", "{s}");
    drop(client);

    // Refusals, with a real node dir at hand.
    let other = tempfile::tempdir().unwrap();
    let upstream = format!("node:{}", node.dir().display());
    fails_with(
        &[
            "bridge".as_ref(),
            "--upstream".as_ref(),
            upstream.as_ref(),
            "--adopt".as_ref(),
            other.path().as_os_str(),
        ],
        "--adopt: adopts",
    );
    fails_with(
        &[
            "bridge".as_ref(),
            "--upstream".as_ref(),
            "local:shares".as_ref(),
            "--adopt".as_ref(),
            node.dir().as_os_str(),
        ],
        "--adopt: cannot adopt",
    );
    fails_with(
        &[
            "bridge".as_ref(),
            "--upstream".as_ref(),
            "node:/nonexistent-node-dir".as_ref(),
        ],
        "--upstream: /nonexistent-node-dir: no such directory",
    );
    fails_with(
        &["node-info".as_ref(), "/nonexistent-node-dir".as_ref()],
        "node-info: /nonexistent-node-dir: no such directory",
    );
    fails_with(
        &["node-info".as_ref(), other.path().as_os_str()],
        "tahoe.cfg: missing: this is not a Tahoe node directory",
    );
    // A link that does not adopt the node is no way to reach it.
    let foreign = other.path().join("default.furl");
    std::fs::write(
        &foreign,
        "pb://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@tcp:127.0.0.1:1/swiss\n",
    )
    .unwrap();
    fails_with(
        &[
            "node-info".as_ref(),
            node.dir().as_os_str(),
            "--via".as_ref(),
            foreign.as_os_str(),
        ],
        "does not adopt this node",
    );
}

/// A `force_foolscap` node serves only Foolscap: `node:DIR` bridges over Foolscap,
/// says why, and an HTTP client reaches the node through it.
#[test]
fn bridge_to_a_foolscap_only_node_picks_foolscap() {
    let node = storage_node(StorageOptions::foolscap_only());
    let work = tempfile::tempdir().unwrap();
    let (sg, state, admin) = bridge_node(&node, work.path());
    let log = sg.stderr();
    assert!(
        log.contains("bridged over Foolscap: tahoe.cfg has [storage] force_foolscap = true"),
        "{log}"
    );
    let s = status(admin);
    let upstream = s["links"][0]["upstream"].as_str().unwrap();
    assert!(
        upstream.starts_with(&format!("pb://{}@", node.tubid())) && !upstream.contains('#'),
        "Foolscap upstream: {s}"
    );
    let client = round_trip_via(&node, &state, false, work.path());
    let s = status(admin);
    assert!(
        s["connections"]["gbs"].as_u64().unwrap() >= 1,
        "the HTTP client came through swampgate: {s}"
    );
    assert_eq!(s["links"][0]["upstream_state"]["state"], "up", "{s}");
    let summary = client
        .server_statuses()
        .into_iter()
        .find(|st| st.server_id == node.server_id())
        .unwrap()
        .summary;
    assert_eq!(summary, "connected", "over HTTP");
}

/// A Tahoe 1.18 or 1.17 node (Foolscap only; its tahoe.cfg has no `force_foolscap`,
/// so only its port tells): node-info gives what it announces, with no NURL, and
/// `node:DIR` bridges it over Foolscap, saying why; a 1.20 HTTP client reaches it.
fn an_old_node_is_bridged_over_foolscap(release: Release) {
    let node = storage_node(StorageOptions {
        nickname: format!("storage-{}", release.version()),
        release,
        ..StorageOptions::default()
    });
    let tahoe_cfg = std::fs::read_to_string(node.dir().join("tahoe.cfg")).unwrap();
    assert!(!tahoe_cfg.contains("force_foolscap"), "{tahoe_cfg}");
    let work = tempfile::tempdir().unwrap();
    let info = node_info_json(node.dir(), None, work.path());
    assert_eq!(info["server-id"], node.server_id());
    assert_eq!(info["furl"], node.furl());
    assert_eq!(info["permutation-seed"], node.permutation_seed());
    assert_eq!(info["nurls"], serde_json::json!([]), "{info}");
    assert_eq!(info["gbs"], false);
    let why = info["gbs-why"].as_str().unwrap();
    assert!(why.contains("a Tahoe before 1.19"), "{why}");
    let ann = &info["servers.yaml"]["storage"][node.server_id()]["ann"];
    assert_eq!(ann["anonymous-storage-FURL"], node.furl());
    assert!(ann.get("anonymous-storage-NURLs").is_none(), "{ann}");

    let (sg, state, admin) = bridge_node(&node, work.path());
    let log = sg.stderr();
    let said = format!(
        "bridged over Foolscap: tahoe.cfg allows HTTP storage, but 127.0.0.1:{} answers no TLS handshake",
        node.port()
    );
    assert!(log.contains(&said), "{log}");
    let client = round_trip_via(&node, &state, false, work.path());
    let s = status(admin);
    assert!(s["connections"]["gbs"].as_u64().unwrap() >= 1, "{s}");
    let summary = client
        .server_statuses()
        .into_iter()
        .find(|st| st.server_id == node.server_id())
        .unwrap()
        .summary;
    assert_eq!(summary, "connected", "over HTTP");
}

#[test]
fn a_tahoe_1_18_node_is_bridged_over_foolscap() {
    an_old_node_is_bridged_over_foolscap(Release::V1_18);
}

#[test]
fn a_tahoe_1_17_node_is_bridged_over_foolscap() {
    an_old_node_is_bridged_over_foolscap(Release::V1_17);
}
