//! Tests of the interop harness itself, against real Tahoe-LAFS 1.20 nodes.

use std::fs;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::kit::*;

/// The DER certificate in a Tahoe `node.pem` (which holds the key and the cert).
fn certificate_der(node_pem: &Path) -> Vec<u8> {
    let text = fs::read(node_pem).unwrap();
    let blocks = pem::parse_many(text).unwrap();
    let certs: Vec<_> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    assert_eq!(certs.len(), 1, "one certificate in {}", node_pem.display());
    certs[0].contents().to_vec()
}

/// Foolscap's tubid: lowercase unpadded base32 of sha1(DER certificate).
fn tubid_from_pem(node_pem: &Path) -> String {
    BASE32_NOPAD
        .encode(&Sha1::digest(certificate_der(node_pem)))
        .to_lowercase()
}

/// A NURL's userinfo: unpadded base64url of sha256(DER SubjectPublicKeyInfo).
fn spki_hash_from_pem(node_pem: &Path) -> String {
    let der = certificate_der(node_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    BASE64URL_NOPAD.encode(&Sha256::digest(cert.tbs_certificate.subject_pki.raw))
}

/// `pid` listens on 127.0.0.1:`port` and on nothing beyond loopback (Tahoe nodes
/// also have their log Tub port).
fn assert_loopback_only(what: &str, pid: u32, port: u16) {
    let addrs = listening_tcp_addrs(pid);
    let expected = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        addrs.contains(&expected),
        "{what} (pid {pid}) not on {expected}: {addrs:?}"
    );
    let public: Vec<&SocketAddr> = addrs.iter().filter(|a| !a.ip().is_loopback()).collect();
    assert!(
        public.is_empty(),
        "{what} (pid {pid}) listens beyond loopback: {public:?}"
    );
}

/// Guards reap their own child at once; a killed grandchild is an orphan that init
/// reaps a moment later, so allow a while for that.
fn assert_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for &pid in pids {
        while (pid_exists(pid) || process_group_exists(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!pid_exists(pid), "pid {pid} still exists");
        assert!(
            !process_group_exists(pid),
            "process group {pid} still has members"
        );
    }
}

/// The share files under a storage node's `storage/shares`.
fn share_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.parent().and_then(Path::file_name) != Some("incoming".as_ref()) {
                found.push(path);
            }
        }
    }
    found
}

/// `tahoe get CAP FILE`, returning the file's bytes.
fn tahoe_get(client: &ClientNode, cap: &str) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let download = work.path().join("download.bin");
    client.tahoe(["get".as_ref(), cap.as_ref(), download.as_os_str()]);
    fs::read(&download).unwrap()
}

/// `tahoe get` right after a storage server restarted: Tahoe's HTTP client may still
/// show the connection from before the restart as `connected` and send its first
/// requests on it (a download then fails with NoSharesError). The client must recover
/// by itself, without a restart: retried until it does, for at most 30 s.
fn tahoe_get_after_restart(client: &ClientNode, cap: &str) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let download = work.path().join("download.bin");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let done = client.tahoe_output(["get".as_ref(), cap.as_ref(), download.as_os_str()]);
        if done.status.success() {
            return fs::read(&download).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tahoe get still fails 30 s after the server restarted: {}",
            done.stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `tahoe put` a 20 kB file (big enough to be a CHK file stored on the servers, not
/// a literal cap), `tahoe get` it back, compare, and check that every server got
/// exactly one share (the clients use shares.total = number of servers). Returns
/// the cap and the data.
fn put_get_roundtrip(client: &ClientNode, servers: &[&StorageNode], seed: u8) -> (String, Vec<u8>) {
    let work = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(31) as u8) ^ seed)
        .collect();
    let upload = work.path().join("upload.bin");
    fs::write(&upload, &data).unwrap();
    for server in servers {
        assert!(
            share_files(&server.shares_dir()).is_empty(),
            "no shares before the upload"
        );
    }

    let cap = client
        .tahoe(["put".as_ref(), upload.as_os_str()])
        .trim()
        .to_owned();
    assert!(
        cap.starts_with("URI:CHK:"),
        "put printed a CHK cap, got {cap:?}"
    );
    assert_eq!(tahoe_get(client, &cap), data, "downloaded bytes differ");
    for server in servers {
        let shares = share_files(&server.shares_dir());
        assert_eq!(
            shares.len(),
            1,
            "one share on {}: {shares:?}",
            server.nickname()
        );
    }
    (cap, data)
}

#[test]
fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Each port is bound right after it is handed out: once released, any
    // process on the host may take it, which is outside this test's claim.
    let ports: Vec<u16> = (0..20)
        .map(|_| {
            let port = free_port();
            std::net::TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("binding handed-out port {port}: {e}"));
            port
        })
        .collect();
    let unique: std::collections::HashSet<_> = ports.iter().collect();
    assert_eq!(unique.len(), ports.len(), "{ports:?}");
    assert!(
        ports.iter().all(|&p| (10_000..ephemeral_low).contains(&p)),
        "{ports:?} not all in 10000..{ephemeral_low}"
    );
}

#[test]
fn process_guard_outlives_spawning_thread_and_kills_group_on_panic() {
    let logs = tempfile::tempdir().unwrap();
    // Spawned from a helper thread that ends at once: PDEATHSIG must not fire.
    let (mut shell, ()) = join(
        || {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "sleep 600 & echo grandchild $!; wait"]);
            Process::spawn("sleeper", cmd, logs.path())
        },
        || (),
    );
    let line = shell.wait_for_line("grandchild ", Duration::from_secs(10));
    let grandchild: u32 = line["grandchild ".len()..].parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        shell.try_status().is_none(),
        "shell died with its spawning thread"
    );
    assert!(pid_exists(grandchild));

    let pid = shell.pid();
    let result = catch_unwind(AssertUnwindSafe(move || {
        let _owned = shell;
        panic!("test failure while a process runs");
    }));
    assert!(result.is_err());
    assert_all_gone(&[pid, grandchild]);
}

#[test]
fn foolscap_client_against_two_foolscap_only_storage_nodes() {
    let foolscap_only = |nickname: &str| StorageOptions {
        nickname: nickname.into(),
        ..StorageOptions::foolscap_only()
    };
    // Started in parallel, each from a helper thread that ends right after.
    let (a, b) = join(
        || storage_node(foolscap_only("storage-a")),
        || storage_node(foolscap_only("storage-b")),
    );
    for server in [&a, &b] {
        assert_eq!(
            server.tubid(),
            tubid_from_pem(&server.node_pem()),
            "tubid = sha1(cert)"
        );
        assert!(server
            .furl()
            .contains(&format!("@tcp:127.0.0.1:{}/", server.port())));
        assert!(
            server.nurls().is_empty(),
            "force_foolscap announces no NURL"
        );
        assert!(server.server_id().starts_with("v0-"));
        assert_loopback_only(server.nickname(), server.process().pid(), server.port());
    }
    assert_ne!(a.tubid(), b.tubid());

    let client = client_node(ClientOptions {
        nickname: "client-foolscap".into(),
        force_foolscap: true,
        servers: vec![a.static_server(), b.static_server()],
        shares_needed: 2,
        shares_happy: 2,
        shares_total: 2,
        ..ClientOptions::default()
    });
    assert_loopback_only("client node", client.process().pid(), client.web_port());
    let statuses = client.server_statuses();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    for server in [&a, &b] {
        let status = statuses
            .iter()
            .find(|s| s.server_id == server.server_id())
            .unwrap();
        let over_foolscap = format!("Connected to tcp:127.0.0.1:{}", server.port());
        assert!(status.summary.starts_with(&over_foolscap), "{status:?}");
    }

    put_get_roundtrip(&client, &[&a, &b], 1);

    let pids = [a.process().pid(), b.process().pid(), client.process().pid()];
    drop(client);
    drop((a, b));
    assert_all_gone(&pids);
}

#[test]
fn http_client_against_http_storage_node_with_introducer() {
    let introducer = introducer_node();
    assert!(
        introducer.furl().starts_with("pb://"),
        "{}",
        introducer.furl()
    );
    assert_loopback_only("introducer", introducer.process().pid(), introducer.port());

    let mut server = storage_node(StorageOptions {
        nickname: "storage-http".into(),
        introducer: Some(introducer.furl().to_owned()),
        ..StorageOptions::default()
    });
    let pem = server.node_pem();
    assert_eq!(server.tubid(), tubid_from_pem(&pem), "tubid = sha1(cert)");
    let expected_nurl = format!(
        "pb://{}@127.0.0.1:{}/{}#v=1",
        spki_hash_from_pem(&pem),
        server.port(),
        server.swissnum()
    );
    assert_eq!(server.nurl(), expected_nurl);
    assert_loopback_only("http storage node", server.process().pid(), server.port());

    // Static servers.yaml entry for the storage node, plus the introducer so the
    // client caches the announcement the node really made.
    let client = client_node(ClientOptions {
        nickname: "client-http".into(),
        servers: vec![server.static_server()],
        introducer: Some(introducer.furl().to_owned()),
        ..ClientOptions::default()
    });
    assert_loopback_only("client node", client.process().pid(), client.web_port());
    let statuses = client.server_statuses();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    // HTTPNativeStorageServer reports exactly "connected"; Foolscap says "Connected to ...".
    assert_eq!(
        statuses[0].summary, "connected",
        "connected over HTTP: {statuses:?}"
    );

    let ann = client.wait_for_announcement(server.server_id());
    assert_eq!(ann["anonymous-storage-FURL"], server.furl());
    assert_eq!(
        ann["anonymous-storage-NURLs"],
        serde_json::json!([server.nurl()])
    );
    assert_eq!(ann["permutation-seed-base32"], server.permutation_seed());
    assert_eq!(ann["nickname"], "storage-http");

    let (cap, data) = put_get_roundtrip(&client, &[&server], 2);

    // Same node dir, same identity and shares: the client reconnects by itself.
    let old_pid = server.process().pid();
    server.restart();
    assert_ne!(server.process().pid(), old_pid);
    assert_all_gone(&[old_pid]);
    // The client polls HTTP servers every second; the restart took longer than that.
    client.wait_for_servers(&[server.server_id()]);
    assert_eq!(
        tahoe_get_after_restart(&client, &cap),
        data,
        "download after the restart"
    );

    let pids = [
        introducer.process().pid(),
        server.process().pid(),
        client.process().pid(),
    ];
    drop(client);
    drop(server);
    drop(introducer);
    assert_all_gone(&pids);
}
