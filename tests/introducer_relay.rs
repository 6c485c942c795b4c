//! The introducer relay with real Tahoe-LAFS 1.20 processes: swampgate serves an
//! introducer FURL and relays both ways to a real Tahoe introducer, so any node can
//! be pointed at swampgate without touching the rest of the grid.

mod common;

use std::path::Path;

use common::*;

/// `swampgate bridge` (an embedded-store link, plus the introducer relay to
/// `upstream`); returns the process and the introducer FURL it printed.
fn relay(upstream: &str, dir: &Path) -> (Process, String) {
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        "local:shares",
        "--listen",
        "127.0.0.1:0",
        "--introducer-upstream",
        upstream,
        "--state-dir",
    ])
    .arg(dir.join("state"))
    .args(["--log", "swampgate=debug"]);
    let mut p = Process::spawn("swampgate", cmd, dir);
    let line = p.wait_for_line("introducer furl ", STARTUP_TIMEOUT);
    let furl = line.rsplit(' ').next().unwrap().to_string();
    assert!(furl.starts_with("pb://"), "{line}");
    assert_eq!(
        std::fs::read_to_string(dir.join("state/introducer.furl"))
            .unwrap()
            .trim(),
        furl
    );
    (p, furl)
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
