//! The introducer relay with real Tahoe-LAFS 1.20 processes: swampgate serves an
//! introducer FURL and relays both ways to a real Tahoe introducer, so any node can
//! be pointed at swampgate without touching the rest of the grid.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::kit::*;

/// `swampgate bridge` (an embedded-store link, plus the introducer relay to
/// `upstream`); returns the process and the introducer FURL it printed.
fn relay(upstream: &str, dir: &Path) -> (Process, String) {
    let (p, furl, _) = relay_with_port(upstream, dir);
    (p, furl)
}

/// As [`relay`], plus the `HOST:PORT` of its one port (from the link's NURL). It
/// serves an admin endpoint too ([`admin_port`]).
pub(crate) fn relay_with_port(upstream: &str, dir: &Path) -> (Process, String, String) {
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        "local:shares",
        "--listen",
        "127.0.0.1:0",
        "--introducer-upstream",
        upstream,
        "--admin",
        "127.0.0.1:0",
        "--state-dir",
    ])
    .arg(dir.join("state"))
    .args(["--log", "swampgate=debug"]);
    let mut p = Process::spawn("swampgate", cmd, dir);
    let nurl = p.wait_for_line("link default nurl ", STARTUP_TIMEOUT);
    let hostport = nurl.split('@').nth(1).unwrap().split('/').next().unwrap();
    let hostport = hostport.to_string();
    let line = p.wait_for_line("introducer furl ", STARTUP_TIMEOUT);
    let furl = line.rsplit(' ').next().unwrap().to_string();
    assert!(furl.starts_with("pb://"), "{line}");
    assert_eq!(
        std::fs::read_to_string(dir.join("state/introducer.furl"))
            .unwrap()
            .trim(),
        furl
    );
    (p, furl, hostport)
}

fn storage(nickname: &str, introducer: &str) -> StorageNode {
    storage_node(StorageOptions {
        nickname: nickname.into(),
        introducer: Some(introducer.into()),
        ..StorageOptions::default()
    })
}

fn client(nickname: &str, introducer: &str) -> ClientNode {
    client_node(ClientOptions {
        nickname: nickname.into(),
        introducer: Some(introducer.into()),
        wait_for_servers: false,
        ..ClientOptions::default()
    })
}

#[test]
fn nodes_on_the_relay_and_on_the_upstream_see_each_other() {
    let upstream = introducer_node();
    let dir = tempfile::tempdir().unwrap();
    let (gate, gate_furl) = relay(upstream.furl(), dir.path());
    assert!(!gate_furl.contains(upstream.furl()));

    let ((via_gate, direct), (client_gate, client_direct)) = join(
        || {
            join(
                || storage("storage-via-gate", &gate_furl),
                || storage("storage-direct", upstream.furl()),
            )
        },
        || {
            join(
                || client("client-via-gate", &gate_furl),
                || client("client-direct", upstream.furl()),
            )
        },
    );
    let ids = [via_gate.server_id(), direct.server_id()];
    // Each client connects to both servers, found only through announcements.
    client_gate.wait_for_servers(&ids);
    client_direct.wait_for_servers(&ids);
    // The relayed announcements are the ones the nodes signed: both clients cached
    // the same dict for each server.
    for id in ids {
        assert_eq!(
            client_gate.wait_for_announcement(id),
            client_direct.wait_for_announcement(id)
        );
    }
    let ann = client_direct.wait_for_announcement(via_gate.server_id());
    assert_eq!(ann["nickname"], "storage-via-gate");
    assert_eq!(ann["anonymous-storage-FURL"], via_gate.furl());

    // The grid works across the two introducers.
    let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let src = dir.path().join("in");
    std::fs::write(&src, &data).unwrap();
    let cap = client_gate.tahoe(["put".as_ref(), src.as_os_str()]);
    let out = dir.path().join("out");
    client_direct.tahoe(["get".as_ref(), cap.trim().as_ref(), out.as_os_str()]);
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // Announcements are logged by server id and nickname; swissnums never appear.
    let log = gate.stderr();
    assert!(log.contains("announcement stored"), "{log}");
    let upstream_swissnum = upstream.furl().rsplit('/').next().unwrap();
    let gate_swissnum = gate_furl.rsplit('/').next().unwrap();
    for secret in [upstream_swissnum, gate_swissnum, via_gate.swissnum()] {
        assert!(!log.contains(secret), "a swissnum in the log: {log}");
    }
}

#[test]
fn relay_survives_an_upstream_restart() {
    let mut upstream = introducer_node();
    let dir = tempfile::tempdir().unwrap();
    let (gate, gate_furl) = relay(upstream.furl(), dir.path());
    let (direct, via_gate) = join(
        || storage("storage-direct", upstream.furl()),
        || storage("storage-via-gate", &gate_furl),
    );
    let watcher = client("client-via-gate", &gate_furl);
    watcher.wait_for_servers(&[direct.server_id(), via_gate.server_id()]);

    // Upstream down: a new subscriber of the relay still gets the last known
    // announcements, including the upstream's.
    upstream.stop();
    let late = client("client-late", &gate_furl);
    late.wait_for_servers(&[direct.server_id(), via_gate.server_id()]);

    // Upstream back (it remembers nothing): the relay reconnects, subscribes again
    // and publishes what its publishers published, and its subscribers get
    // announcements that are new upstream.
    upstream.restart();
    let (fresh, client_direct) = join(
        || storage("storage-fresh", upstream.furl()),
        || client("client-direct", upstream.furl()),
    );
    late.wait_for_servers(&[fresh.server_id()]);
    watcher.wait_for_servers(&[fresh.server_id()]);
    client_direct.wait_for_servers(&[via_gate.server_id(), direct.server_id()]);

    let log = gate.stderr();
    assert!(
        log.contains("lost the upstream introducer"),
        "{}",
        gate.log_tail()
    );
}

/// `swampgate bridge` to `upstream`, adopting `node`, with the introducer relay to
/// `introducer`; returns the process, the link's FURL and the introducer FURL.
fn bridged(
    upstream: &str,
    node: &StorageNode,
    introducer: &str,
    dir: &Path,
) -> (Process, String, String) {
    let mut cmd = swampgate_command();
    cmd.args(["bridge", "--upstream", upstream, "--listen", "127.0.0.1:0"])
        .args(["--introducer-upstream", introducer, "--state-dir"])
        .arg(dir.join("state"))
        .arg("--adopt")
        .arg(node.dir())
        .args(["--log", "swampgate=debug"]);
    let mut p = Process::spawn("swampgate", cmd, dir);
    let furl = p.wait_for_line("link default furl ", STARTUP_TIMEOUT);
    let intro = p.wait_for_line("introducer furl ", STARTUP_TIMEOUT);
    let last = |l: String| l.rsplit(' ').next().unwrap().to_string();
    (p, last(furl), last(intro))
}

fn files_under(p: &Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files_under(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Upload and download through `client`; the shares land on `node`.
fn round_trip(client: &ClientNode, node: &StorageNode, dir: &Path, name: &str) {
    let before = files_under(&node.shares_dir());
    let data: Vec<u8> = (0..60_000u32)
        .map(|i| (i % 253) as u8 ^ name.len() as u8)
        .collect();
    let src = dir.join(name);
    std::fs::write(&src, &data).unwrap();
    let cap = client.tahoe(["put".as_ref(), src.as_os_str()]);
    let out = dir.join(format!("{name}.out"));
    client.tahoe(["get".as_ref(), cap.trim().as_ref(), out.as_os_str()]);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(
        files_under(&node.shares_dir()) > before,
        "shares on {}",
        node.nickname()
    );
}

/// Announcements of adopted nodes gain swampgate's endpoint, re-signed with the
/// node's key: an HTTP client reaches a Foolscap-only node, and a Foolscap-only
/// client a node reached over GBS, with no servers.yaml at all.
#[test]
fn augmented_announcements_lead_clients_through_the_bridge() {
    let upstream = introducer_node();
    let dir = tempfile::tempdir().unwrap();
    let (legacy, modern) = join(
        || {
            storage_node(StorageOptions {
                introducer: Some(upstream.furl().into()),
                ..StorageOptions::foolscap_only()
            })
        },
        || storage("storage-gbs", upstream.furl()),
    );
    let d1 = dir.path().join("to-foolscap");
    let d2 = dir.path().join("to-gbs");
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let (_g1, _furl1, intro1) = bridged(legacy.furl(), &legacy, upstream.furl(), &d1);
    let (_g2, furl2, intro2) = bridged(modern.nurl(), &modern, upstream.furl(), &d2);

    // Each client sees both nodes; two shares, one per node (happy = 2), so every
    // upload also reaches the bridged node.
    let two_shares = |nickname: &str, force_foolscap: bool, introducer: &str| {
        client_node(ClientOptions {
            nickname: nickname.into(),
            force_foolscap,
            introducer: Some(introducer.into()),
            wait_for_servers: false,
            shares_needed: 1,
            shares_happy: 2,
            shares_total: 2,
            ..ClientOptions::default()
        })
    };
    let (http_client, legacy_client) = join(
        || two_shares("client-http", false, &intro1),
        || two_shares("client-legacy", true, &intro2),
    );

    // HTTP client -> swampgate (GBS) -> Foolscap-only node.
    let ann = http_client.wait_for_announcement(legacy.server_id());
    assert!(
        ann["anonymous-storage-NURLs"][0]
            .as_str()
            .unwrap()
            .ends_with("#v=1"),
        "{ann}"
    );
    assert_eq!(ann["permutation-seed-base32"], legacy.permutation_seed());
    assert_eq!(ann["anonymous-storage-FURL"], legacy.furl());
    http_client.wait_for_servers(&[legacy.server_id(), modern.server_id()]);
    let status = http_client
        .server_statuses()
        .into_iter()
        .find(|s| s.server_id == legacy.server_id())
        .unwrap();
    assert_eq!(
        status.summary, "connected",
        "HTTP, not Foolscap: {status:?}"
    );
    round_trip(&http_client, &legacy, dir.path(), "via-gbs-front");

    // Foolscap-only client -> swampgate (Foolscap) -> node over GBS.
    let ann = legacy_client.wait_for_announcement(modern.server_id());
    assert_eq!(ann["anonymous-storage-FURL"], furl2.as_str());
    assert_eq!(ann["permutation-seed-base32"], modern.permutation_seed());
    legacy_client.wait_for_servers(&[modern.server_id(), legacy.server_id()]);
    let gate_hint = furl2.split('@').nth(1).unwrap().split('/').next().unwrap();
    let status = legacy_client
        .server_statuses()
        .into_iter()
        .find(|s| s.server_id == modern.server_id())
        .unwrap();
    assert!(
        status.summary.contains(gate_hint),
        "through swampgate: {status:?}"
    );
    round_trip(&legacy_client, &modern, dir.path(), "via-foolscap-front");
}

fn lines(p: &Process) -> Vec<serde_json::Value> {
    p.stdout()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Poll the relay metric `sample` on the admin endpoint `port` until `ok` holds.
fn relay_metric_until(port: u16, sample: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let v = metric(port, sample).unwrap_or_else(|| panic!("no {sample} in /metrics"));
        if ok(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{sample} stays at {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The announcement API on the GBS port: a WebSocket subscriber gets a real node's
/// announcement and verifies it with Tahoe's code; HTTP publication of a signed
/// announcement reaches the upstream, a tampered one is refused with 400 and does not.
/// The relay's metrics follow: the subscriptions, the publications by answer, the
/// announcements held.
#[test]
fn announcements_over_websocket_and_http() {
    let upstream = introducer_node();
    let dir = tempfile::tempdir().unwrap();
    let (mut gate, gate_furl, hostport) = relay_with_port(upstream.furl(), dir.path());
    let admin = admin_port(&mut gate);
    let accepted = "swampgate_introducer_publishes_total{result=\"accepted\"}";
    let rejected = "swampgate_introducer_publishes_total{result=\"rejected\"}";
    let websocket = "swampgate_introducer_subscribers{protocol=\"websocket\"}";
    let foolscap = "swampgate_introducer_subscribers{protocol=\"foolscap\"}";
    for sample in [accepted, rejected, websocket, foolscap] {
        assert_eq!(metric(admin, sample), Some(0.0), "{sample} at start");
    }
    let swissnum = gate_furl.rsplit('/').next().unwrap().to_string();
    let http = |args: &[&str]| -> serde_json::Value {
        let out = run_python_script("introducer_http.py", args, dir.path());
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };

    let mut sub = python_script(
        "introducer_http.py",
        ["subscribe", &hostport, &swissnum, "storage"],
        dir.path(),
    );
    let hs = sub.wait_for_line("{\"handshake\"", STARTUP_TIMEOUT);
    assert!(hs.contains(" 101 "), "{hs}");
    relay_metric_until(admin, websocket, |v| v == 1.0);

    let (node, client_direct) = join(
        || storage("storage-ws", &gate_furl),
        || client("client-direct", upstream.furl()),
    );
    // Time from the relay storing the publication to the WebSocket message.
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let stored_line = format!("server={}", node.server_id());
    let mut stored_at = None;
    let received = loop {
        let now = Instant::now();
        if stored_at.is_none()
            && gate
                .stderr()
                .lines()
                .any(|l| l.contains("announcement stored") && l.contains(&stored_line))
        {
            stored_at = Some(now);
        }
        if let Some(m) = lines(&sub)
            .into_iter()
            .find(|m| m["key"] == node.server_id())
        {
            break (m, now);
        }
        assert!(
            now < deadline,
            "no WebSocket message for {}: {}",
            node.server_id(),
            sub.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (msg, received_at) = received;
    let stored_at = stored_at.unwrap_or(received_at);
    assert!(
        received_at.duration_since(stored_at) < Duration::from_secs(2),
        "WebSocket delivery took {:?}",
        received_at.duration_since(stored_at)
    );
    assert_eq!(msg["verified"], true, "{msg}");
    assert_eq!(msg["nickname"], "storage-ws");

    // A tampered copy: refused with 400, never relayed.
    let env = &msg["envelope"];
    let raw = data_encoding::BASE64
        .decode(env["msg"].as_str().unwrap().as_bytes())
        .unwrap();
    let tampered = String::from_utf8(raw)
        .unwrap()
        .replace("storage-ws", "tampered-ws");
    let tampered = serde_json::json!({
        "msg": data_encoding::BASE64.encode(tampered.as_bytes()),
        "sig": env["sig"],
        "pubkey": env["pubkey"],
    });
    let r = http(&["publish", &hostport, &swissnum, &tampered.to_string()]);
    assert_eq!(r["status"], 400, "{r}");
    assert!(r["body"].as_str().unwrap().contains("bad signature"), "{r}");
    // Wrong swissnum: 401.
    let r = http(&["publish", &hostport, "wrongwrongwrong", &env.to_string()]);
    assert_eq!(r["status"], 401, "{r}");

    // A fresh announcement signed with Tahoe's code, published over HTTP: accepted,
    // seen by the WebSocket subscriber and by a client of the upstream.
    let fresh = http(&["sign", "http-publisher"]);
    let key = fresh["key"].as_str().unwrap().to_string();
    let r = http(&[
        "publish",
        &hostport,
        &swissnum,
        &fresh["envelope"].to_string(),
    ]);
    assert_eq!(r["status"], 200, "{r}");
    let ann = client_direct.wait_for_announcement(&key);
    assert_eq!(ann["nickname"], "http-publisher");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while !lines(&sub)
        .iter()
        .any(|m| m["key"] == key.as_str() && m["verified"] == true)
    {
        assert!(Instant::now() < deadline, "{}", sub.log_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = http(&["list", &hostport, &swissnum, "storage"]);
    assert_eq!(listed["status"], 200, "{listed}");
    let keys: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    assert!(
        keys.contains(&node.server_id()) && keys.contains(&key.as_str()),
        "{listed}"
    );

    // The tampered nickname never reached the upstream's subscribers.
    let direct_ann = client_direct.wait_for_announcement(node.server_id());
    assert_eq!(direct_ann["nickname"], "storage-ws");
    assert!(!client_direct
        .introducer_announcements()
        .iter()
        .any(|a| a["ann"]["nickname"] == "tampered-ws"));
    let log = gate.stderr();
    assert!(
        log.contains("publication refused") || log.contains("announcement refused"),
        "{log}"
    );

    // The node's publication (Foolscap) and the fresh one (HTTP) accepted, the
    // tampered one rejected (the wrong swissnum never reached the relay); the node
    // subscribed over Foolscap; both announcements held.
    relay_metric_until(admin, accepted, |v| v >= 2.0);
    assert_eq!(metric(admin, rejected), Some(1.0));
    relay_metric_until(admin, foolscap, |v| v >= 1.0);
    relay_metric_until(admin, "swampgate_introducer_announcements", |v| v >= 2.0);
    // The subscriber gone, its subscription is no longer counted.
    drop(sub);
    relay_metric_until(admin, websocket, |v| v == 0.0);
}
