//! The end state of a migration, with real Tahoe-LAFS processes: swampgate is the
//! grid's only introducer. A grid with a Foolscap introducer moves node by node onto
//! swampgate's relay (an adopted Foolscap-only node first, publishing to the
//! swampgate that adopts it), then the Foolscap introducer is stopped for good and
//! swampgate restarted without an upstream. Its persisted announcements are served
//! at once, before any node reconnects; newly created legacy and HTTP clients,
//! introduced by swampgate alone, find every storage server and exchange files.
//! Run with 1.20 and with 1.18 peers in the legacy roles.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::bridge_e2e::{get, write};
use crate::kit::*;

/// swampgate with `gate.toml` in `dir`; returns it, the link's NURL, the
/// introducer FURL and the `HOST:PORT` of its top-level port.
fn start_gate(dir: &Path) -> (Process, String, String, String) {
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "gate.toml", "--state-dir", "st"])
        .current_dir(dir);
    let mut gate = Process::spawn("swampgate", cmd, dir);
    let nurl = last_word(&gate.wait_for_line("link legacy nurl ", STARTUP_TIMEOUT));
    let intro = last_word(&gate.wait_for_line("introducer furl ", STARTUP_TIMEOUT));
    let hostport = intro
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .trim_start_matches("tcp:")
        .to_string();
    (gate, nurl, intro, hostport)
}

fn gate_config(upstream_introducer: Option<&str>, node: &StorageNode, ports: (u16, u16)) -> String {
    let mut c = format!("listen = \"127.0.0.1:{}\"\n\n[introducer]\n", ports.0);
    if let Some(furl) = upstream_introducer {
        c += &format!("upstream = \"{furl}\"\n");
    }
    c + &format!(
        "\n[[link]]\nname = \"legacy\"\nupstream = \"{}\"\nadopt = \"{}\"\nlisten = \"127.0.0.1:{}\"\n",
        node.furl(),
        node.dir().display(),
        ports.1
    )
}

/// The storage announcements swampgate's HTTP API serves (keys, signatures
/// verified by Tahoe's own code).
fn listed(hostport: &str, intro: &str, dir: &Path) -> Vec<String> {
    let swissnum = intro.rsplit('/').next().unwrap();
    let out = run_python_script(
        "introducer_http.py",
        ["list", hostport, swissnum, "storage"],
        dir,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], 200, "{v}");
    let mut keys: Vec<String> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

fn grid_moves_onto_swampgate(legacy: Release) {
    let old_introducer = introducer_node_of(legacy);
    let (mut a, mut b) = join(
        || {
            storage_node(StorageOptions {
                nickname: "legacy-a".into(),
                introducer: Some(old_introducer.furl().into()),
                release: legacy,
                ..StorageOptions::foolscap_only()
            })
        },
        || {
            storage_node(StorageOptions {
                nickname: "modern-b".into(),
                introducer: Some(old_introducer.furl().into()),
                ..StorageOptions::default()
            })
        },
    );
    let mut want = vec![a.server_id().to_string(), b.server_id().to_string()];
    want.sort();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let ports = (free_port(), free_port());

    // Step 1: swampgate relays to the old introducer and adopts A; A moves onto it.
    std::fs::write(
        w.join("gate.toml"),
        gate_config(Some(old_introducer.furl()), &a, ports),
    )
    .unwrap();
    let (mut gate, nurl, intro, hostport) = start_gate(w);
    a.set_introducer(&intro);
    a.restart();
    // A published to the relay of the swampgate that adopts it; B's came from
    // upstream.
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while listed(&hostport, &intro, w) != want {
        assert!(Instant::now() < deadline, "{}", gate.log_tail());
        std::thread::sleep(Duration::from_millis(500));
    }

    // Step 2: B moves too; step 3: the old introducer is stopped for good, and
    // swampgate runs without an upstream. The nodes are kept from reconnecting
    // (stopped) while swampgate restarts: what it serves then is what it saved.
    b.set_introducer(&intro);
    b.restart();
    drop(old_introducer);
    a.process().signal(libc::SIGSTOP);
    b.process().signal(libc::SIGSTOP);
    gate.stop();
    std::fs::write(w.join("gate.toml"), gate_config(None, &a, ports)).unwrap();
    let (_gate, nurl_again, intro_again, _) = start_gate(w);
    assert_eq!((&nurl_again, &intro_again), (&nurl, &intro), "same URLs");
    assert_eq!(
        listed(&hostport, &intro, w),
        want,
        "every announcement served right after the restart"
    );
    a.process().signal(libc::SIGCONT);
    b.process().signal(libc::SIGCONT);

    // New clients, introduced by swampgate alone.
    let client = |nickname: &str, release: Release, force_foolscap: bool| {
        client_node(ClientOptions {
            nickname: nickname.into(),
            introducer: Some(intro.clone()),
            wait_for_servers: false,
            force_foolscap,
            release,
            shares_needed: 1,
            shares_happy: 2,
            shares_total: 2,
            ..ClientOptions::default()
        })
    };
    let (http, old) = join(
        || client("http", Release::V1_20, false),
        || client("legacy", legacy, true),
    );
    let ids = [a.server_id(), b.server_id()];
    http.wait_for_servers(&ids);
    old.wait_for_servers(&ids);
    let ann = http.wait_for_announcement(a.server_id());
    assert_eq!(ann["anonymous-storage-NURLs"][0], nurl.as_str(), "{ann}");

    let (i, di) = write(w, "i", 70_000, 1);
    let icap = http
        .tahoe(["put".as_ref(), i.as_os_str()])
        .trim()
        .to_string();
    assert_eq!(get(&old, &icap, w, "i.old"), di);
    let (m1, _) = write(w, "m1", 3000, 2);
    let (m2, d2) = write(w, "m2", 3500, 3);
    let (m3, d3) = write(w, "m3", 4000, 4);
    let mcap = old
        .tahoe(["put".as_ref(), "--mutable".as_ref(), m1.as_os_str()])
        .trim()
        .to_string();
    http.tahoe(["put".as_ref(), m2.as_os_str(), mcap.as_ref()]);
    assert_eq!(get(&old, &mcap, w, "m2.old"), d2);
    old.tahoe(["put".as_ref(), m3.as_os_str(), mcap.as_ref()]);
    assert_eq!(get(&http, &mcap, w, "m3.http"), d3);
}

#[test]
fn grid_moves_onto_swampgate_as_its_only_introducer() {
    grid_moves_onto_swampgate(Release::V1_20);
}

#[test]
fn grid_of_1_18_peers_moves_onto_swampgate_as_its_only_introducer() {
    grid_moves_onto_swampgate(Release::V1_18);
}
