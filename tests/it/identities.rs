//! Identities per link, with real Tahoe-LAFS 1.20 processes: one swampgate fronts
//! two Foolscap-only storage nodes, each link with the identity it adopts on a port
//! of its own, and is the grid's only introducer with an identity of its own. The
//! adopted nodes publish to it (a relay sharing their tubid would be taken by
//! Foolscap for themselves); HTTP clients without any servers.yaml reach both
//! nodes through swampgate's augmented announcements, and Foolscap clients reach
//! them directly: both write and read the same mutable files.

use crate::bridge_e2e::{get, share_count, write};
use crate::kit::*;

fn tubid(furl: &str) -> String {
    swampgate::foolscap::Furl::parse(furl).unwrap().tubid
}

/// The config of one swampgate: the introducer on the top-level port, and one
/// link per node, each adopting it on a port of its own.
fn config(nodes: &[&StorageNode]) -> String {
    let mut c = String::from("listen = \"127.0.0.1:0\"\n\n[introducer]\nnickname = \"gate\"\n");
    for (i, n) in nodes.iter().enumerate() {
        c += &format!(
            "\n[[link]]\nname = \"node{i}\"\nupstream = \"{}\"\nadopt = \"{}\"\nlisten = \"127.0.0.1:0\"\n",
            n.furl(),
            n.dir().display()
        );
    }
    c
}

#[test]
fn one_swampgate_fronts_two_adopted_nodes_and_introduces_them() {
    let (mut n0, mut n1) = join(
        || {
            storage_node(StorageOptions {
                nickname: "legacy-a".into(),
                ..StorageOptions::foolscap_only()
            })
        },
        || {
            storage_node(StorageOptions {
                nickname: "legacy-b".into(),
                ..StorageOptions::foolscap_only()
            })
        },
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("gate.toml"), config(&[&n0, &n1])).unwrap();
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "gate.toml", "--state-dir", "st"])
        .current_dir(w);
    let mut gate = Process::spawn("swampgate", cmd, w);
    let mut urls = Vec::new();
    for i in 0..2 {
        let furl = last_word(&gate.wait_for_line(&format!("link node{i} furl "), STARTUP_TIMEOUT));
        let nurl = last_word(&gate.wait_for_line(&format!("link node{i} nurl "), STARTUP_TIMEOUT));
        urls.push((furl, nurl));
    }
    let intro = last_word(&gate.wait_for_line("introducer furl ", STARTUP_TIMEOUT));

    // Each link serves its node's identity on its own port; the introducer its own.
    assert_eq!(tubid(&urls[0].0), tubid(n0.furl()));
    assert_eq!(tubid(&urls[1].0), tubid(n1.furl()));
    let port = |u: &str| {
        u.split('@')
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(port(&urls[0].1), port(&urls[1].1), "one port per identity");
    assert_ne!(port(&urls[0].1), port(&intro));
    for n in [&n0, &n1] {
        assert_ne!(
            tubid(&intro),
            tubid(n.furl()),
            "the introducer has its own tubid"
        );
    }

    // The adopted nodes publish to the swampgate that adopts them.
    n0.set_introducer(&intro);
    n1.set_introducer(&intro);
    join(|| n0.restart(), || n1.restart());

    let clients = |force_foolscap: bool, nickname: &str| {
        client_node(ClientOptions {
            nickname: nickname.into(),
            force_foolscap,
            introducer: Some(intro.clone()),
            wait_for_servers: false,
            shares_needed: 1,
            shares_happy: 2,
            shares_total: 2,
            ..ClientOptions::default()
        })
    };
    let (http, legacy) = join(|| clients(false, "http"), || clients(true, "legacy"));
    let ids = [n0.server_id(), n1.server_id()];
    http.wait_for_servers(&ids);
    legacy.wait_for_servers(&ids);
    // The announcements HTTP clients got carry swampgate's NURL for each node.
    for (n, (_, nurl)) in [&n0, &n1].into_iter().zip(&urls) {
        let ann = http.wait_for_announcement(n.server_id());
        assert_eq!(ann["anonymous-storage-FURL"], n.furl(), "{ann}");
        assert_eq!(ann["anonymous-storage-NURLs"][0], nurl.as_str(), "{ann}");
    }
    for s in http.server_statuses() {
        assert!(
            !s.summary.contains("via tcp"),
            "the HTTP client uses HTTP (through swampgate), not Foolscap: {s:?}"
        );
    }

    // One mutable file, two shares (one per node), written in turn by each client.
    let (a, _) = write(w, "a", 4000, 1);
    let (b, db) = write(w, "b", 4500, 2);
    let (c, dc) = write(w, "c", 5000, 3);
    let cap = http
        .tahoe(["put".as_ref(), "--mutable".as_ref(), a.as_os_str()])
        .trim()
        .to_string();
    legacy.tahoe(["put".as_ref(), b.as_os_str(), cap.as_ref()]);
    assert_eq!(
        get(&http, &cap, w, "b.http"),
        db,
        "HTTP reads the legacy write"
    );
    http.tahoe(["put".as_ref(), c.as_os_str(), cap.as_ref()]);
    assert_eq!(
        get(&legacy, &cap, w, "c.legacy"),
        dc,
        "legacy reads the HTTP write"
    );
    // And an immutable file, the other way round.
    let (i, di) = write(w, "i", 60_000, 4);
    let icap = legacy
        .tahoe(["put".as_ref(), i.as_os_str()])
        .trim()
        .to_string();
    assert_eq!(get(&http, &icap, w, "i.http"), di);
    for n in [&n0, &n1] {
        assert!(share_count(n) >= 2, "{} holds shares", n.nickname());
    }
    drop(gate);
}
