//! End to end with real Tahoe-LAFS 1.20 processes: a client that speaks only one
//! protocol uses, through swampgate, a storage node that speaks only the other.
//! swampgate adopts the node's identity, so lease secrets and write enablers match
//! whichever way a client reaches the node.

use std::path::Path;

use crate::kit::*;

/// `swampgate bridge` to `upstream`, adopting `adopt`; returns the process and its
/// FURL and NURL.
pub(crate) fn bridge(upstream: &str, adopt: &Path, dir: &Path) -> (Process, String, String) {
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
    ])
    .arg(dir.join("state"))
    .arg("--adopt")
    .arg(adopt)
    .args(["--log", "swampgate=debug"]);
    let mut p = Process::spawn("swampgate", cmd, dir);
    let furl = p.wait_for_line("link default furl ", STARTUP_TIMEOUT);
    let nurl = p.wait_for_line("link default nurl ", STARTUP_TIMEOUT);
    let furl = furl.rsplit(' ').next().unwrap().to_string();
    let nurl = nurl.rsplit(' ').next().unwrap().to_string();
    // The files match what was printed.
    let state = dir.join("state/links");
    assert_eq!(
        std::fs::read_to_string(state.join("default.furl"))
            .unwrap()
            .trim(),
        furl
    );
    assert_eq!(
        std::fs::read_to_string(state.join("default.nurl"))
            .unwrap()
            .trim(),
        nurl
    );
    (p, furl, nurl)
}

pub(crate) fn write(dir: &Path, name: &str, len: usize, seed: u8) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

pub(crate) fn get(client: &ClientNode, cap: &str, dir: &Path, name: &str) -> Vec<u8> {
    let out = dir.join(name);
    client.tahoe(["get".as_ref(), cap.as_ref(), out.as_os_str()]);
    std::fs::read(out).unwrap()
}

pub(crate) fn share_count(node: &StorageNode) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            if e.file_name() == "incoming" {
                                0
                            } else {
                                walk(&e.path())
                            }
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&node.shares_dir())
}

/// Every kind of file a client stores, written and read back through the bridge.
pub(crate) fn exercise(client: &ClientNode, node: &StorageNode, work: &Path) {
    let before = share_count(node);
    for (name, len) in [
        ("small", 2_000usize),
        ("medium", 100_000),
        ("large", 2_500_000),
    ] {
        let (path, data) = write(work, name, len, len as u8);
        let cap = client.tahoe(["put".as_ref(), path.as_os_str()]);
        let cap = cap.trim();
        assert!(cap.starts_with("URI:"), "{name}: {cap}");
        assert_eq!(
            get(client, cap, work, &format!("{name}.out")),
            data,
            "{name} read back"
        );
        assert!(
            cap.starts_with("URI:CHK:"),
            "{name} is stored, not a literal: {cap}"
        );
        let check = client.tahoe(["check", "--verify", cap]);
        assert!(check.contains("Healthy"), "{name}: {check}");
    }
    // Mutable files, SDMF and MDMF: create, overwrite, read back.
    for format in ["SDMF", "MDMF"] {
        let (p1, _) = write(work, "m1", 3000, 1);
        let (p2, d2) = write(work, "m2", 5000, 2);
        let cap = client.tahoe([
            "put".as_ref(),
            "--mutable".as_ref(),
            format!("--format={format}").as_ref(),
            p1.as_os_str(),
        ]);
        let cap = cap.trim().to_string();
        assert!(
            cap.starts_with("URI:SSK:") || cap.starts_with("URI:MDMF:"),
            "{format}: {cap}"
        );
        client.tahoe(["put".as_ref(), p2.as_os_str(), cap.as_ref()]);
        assert_eq!(
            get(client, &cap, work, &format!("{format}.out")),
            d2,
            "{format} overwritten"
        );
    }
    // Directories, and a deep check that renews leases.
    let dircap = client.tahoe(["mkdir"]).trim().to_string();
    let (p, data) = write(work, "in-dir", 5000, 9);
    client.tahoe([
        "put".as_ref(),
        p.as_os_str(),
        format!("{dircap}/file").as_ref(),
    ]);
    let ls = client.tahoe(["ls", &dircap]);
    assert!(ls.contains("file"), "{ls}");
    assert_eq!(
        get(client, &format!("{dircap}/file"), work, "in-dir.out"),
        data
    );
    let deep = client.tahoe(["deep-check", "--add-lease", &dircap]);
    assert!(deep.contains("healthy"), "{deep}");
    assert!(
        share_count(node) > before,
        "the shares are on the upstream node's disk"
    );
}

/// Legacy direction: a Foolscap-only client, through swampgate, to a node reached
/// over GBS.
#[test]
fn foolscap_client_through_bridge_to_gbs_node() {
    let node = storage_node(StorageOptions::default());
    let work = tempfile::tempdir().unwrap();
    let (_sg, furl, _nurl) = bridge(node.nurl(), node.dir(), work.path());
    let theirs = Furl::of(node.furl());
    assert_eq!(
        Furl::of(&furl).tubid_and_swissnum(),
        theirs.tubid_and_swissnum(),
        "adopted identity"
    );
    let client = client_node(ClientOptions {
        force_foolscap: true,
        servers: vec![StaticServer {
            furl: furl.clone(),
            nurls: vec![],
            ..node.static_server()
        }],
        ..ClientOptions::default()
    });
    exercise(&client, &node, work.path());
}

/// New direction: an HTTP client, through swampgate, to a Foolscap-only node.
#[test]
fn http_client_through_bridge_to_foolscap_node() {
    let node = storage_node(StorageOptions::foolscap_only());
    let work = tempfile::tempdir().unwrap();
    let (_sg, furl, nurl) = bridge(node.furl(), node.dir(), work.path());
    let client = client_node(ClientOptions {
        force_foolscap: false,
        servers: vec![StaticServer {
            furl,
            nurls: vec![nurl],
            ..node.static_server()
        }],
        ..ClientOptions::default()
    });
    exercise(&client, &node, work.path());
}

/// A mixed grid: a mutable file written through swampgate by one client is
/// overwritten by a client of the other protocol talking to the node directly, and
/// read back through swampgate; then the other way round. This works only because
/// swampgate presents the node's own tubid, from which clients derive write
/// enablers.
fn mixed_grid(node: StorageNode, bridged_speaks_http: bool) {
    let work = tempfile::tempdir().unwrap();
    let upstream = if bridged_speaks_http {
        node.furl().to_string()
    } else {
        node.nurl().to_string()
    };
    let (_sg, furl, nurl) = bridge(&upstream, node.dir(), work.path());
    let (bridged, direct) = join(
        || {
            client_node(ClientOptions {
                nickname: "bridged".into(),
                force_foolscap: !bridged_speaks_http,
                servers: vec![StaticServer {
                    furl: furl.clone(),
                    nurls: if bridged_speaks_http {
                        vec![nurl.clone()]
                    } else {
                        vec![]
                    },
                    ..node.static_server()
                }],
                ..ClientOptions::default()
            })
        },
        || {
            client_node(ClientOptions {
                nickname: "direct".into(),
                force_foolscap: bridged_speaks_http,
                servers: vec![node.static_server()],
                ..ClientOptions::default()
            })
        },
    );
    let w = work.path();
    let (a, _) = write(w, "a", 4000, 1);
    let (b, db) = write(w, "b", 4500, 2);
    let (c, dc) = write(w, "c", 5000, 3);
    let cap = bridged
        .tahoe(["put".as_ref(), "--mutable".as_ref(), a.as_os_str()])
        .trim()
        .to_string();
    direct.tahoe(["put".as_ref(), b.as_os_str(), cap.as_ref()]);
    assert_eq!(
        get(&bridged, &cap, w, "b.bridged"),
        db,
        "read back through swampgate"
    );
    bridged.tahoe(["put".as_ref(), c.as_os_str(), cap.as_ref()]);
    assert_eq!(get(&direct, &cap, w, "c.direct"), dc, "read back directly");
    // Immutable: each writer reads what the other wrote.
    let (i1, d1) = write(w, "i1", 70_000, 4);
    let (i2, d2) = write(w, "i2", 80_000, 5);
    let c1 = bridged
        .tahoe(["put".as_ref(), i1.as_os_str()])
        .trim()
        .to_string();
    let c2 = direct
        .tahoe(["put".as_ref(), i2.as_os_str()])
        .trim()
        .to_string();
    assert_eq!(get(&direct, &c1, w, "i1.out"), d1);
    assert_eq!(get(&bridged, &c2, w, "i2.out"), d2);
}

/// A Foolscap client through swampgate and an HTTP client direct to the node.
#[test]
fn mixed_grid_foolscap_through_bridge_http_direct() {
    mixed_grid(storage_node(StorageOptions::default()), false);
}

/// An HTTP client through swampgate and a Foolscap client direct to a
/// Foolscap-only node.
#[test]
fn mixed_grid_http_through_bridge_foolscap_direct() {
    mixed_grid(storage_node(StorageOptions::foolscap_only()), true);
}

/// Minimal FURL pieces for comparisons (tubid and swissnum; hints differ).
struct Furl(String);

impl Furl {
    fn of(s: &str) -> Furl {
        Furl(s.to_string())
    }

    fn tubid_and_swissnum(&self) -> (String, String) {
        let f = swampgate::foolscap::Furl::parse(&self.0).unwrap();
        (f.tubid, f.swissnum)
    }
}

/// Tahoe's own Foolscap storage client gets the same results from swampgate
/// bridging to a node over GBS as from the node's own Foolscap server: the error
/// mapping and the protocol gaps (close vs implicit completion, slot_readv, test
/// vectors, new_length) are closed faithfully.
#[test]
fn foolscap_results_through_gbs_bridge_match_the_node() {
    let node = storage_node(StorageOptions::default());
    let work = tempfile::tempdir().unwrap();
    let (_sg, furl, _) = bridge(node.nurl(), node.dir(), work.path());
    let direct = run_python_script(
        "foolscap_storage_client.py",
        [node.furl()],
        &work.path().join("direct"),
    );
    let bridged = run_python_script(
        "foolscap_storage_client.py",
        [furl.as_str()],
        &work.path().join("bridged"),
    );
    let direct: serde_json::Value = serde_json::from_str(direct.trim()).unwrap();
    let bridged: serde_json::Value = serde_json::from_str(bridged.trim()).unwrap();
    let mut diffs = Vec::new();
    for (step, want) in direct.as_object().unwrap() {
        if bridged.get(step) != Some(want) {
            diffs.push(format!(
                "{step}: node {want}, bridge {:?}",
                bridged.get(step)
            ));
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}
