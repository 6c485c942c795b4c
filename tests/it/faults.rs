//! Fault injection with real processes: a swampgate gateway whose upstream (another
//! swampgate process on the embedded store, over Foolscap) is killed with SIGKILL in
//! the middle of an upload, then restarted on the same port and state.
//!
//! Asserted: the client's call during the outage ends with an error within its
//! timeout (no hang); no partial share is ever visible upstream; after recovery the
//! retried upload succeeds and its bytes read back from the upstream directly.

use std::time::{Duration, Instant};

use crate::kit::*;
use bytes::Bytes;
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::gbs::nurl::Nurl;
use swampgate::storage::*;

fn spawn_upstream(dir: &std::path::Path, port: u16) -> (Process, String, String) {
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        "local:up",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--state-dir",
        "up",
    ])
    .current_dir(dir);
    let mut p = Process::spawn("upstream", cmd, dir);
    let furl = last_word(&p.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let nurl = last_word(&p.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    (p, furl, nurl)
}

/// `swampgate bridge` to `upstream_furl` listening on `listen`, state in `dir/gw`;
/// returns it and its NURL.
fn spawn_gateway(dir: &std::path::Path, upstream_furl: &str, listen: &str) -> (Process, Nurl) {
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        upstream_furl,
        "--listen",
        listen,
        "--state-dir",
        "gw",
    ])
    .current_dir(dir);
    let mut gw = Process::spawn("gateway", cmd, dir);
    let nurl = last_word(&gw.wait_for_line("link default nurl ", STARTUP_TIMEOUT))
        .parse()
        .unwrap();
    (gw, nurl)
}

fn sigkill(p: &Process) {
    // SAFETY: kill(2) on a child we spawned and still own.
    let r = unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) };
    assert_eq!(r, 0);
}

#[test]
fn upstream_killed_mid_upload_then_restarted() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = free_port();
    let (mut up, up_furl, up_nurl) = spawn_upstream(p, port);
    let (mut gw, gw_nurl) = spawn_gateway(p, &up_furl, "127.0.0.1:0");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = ClientConfig {
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    };
    let client = GbsClient::new(&gw_nurl, config.clone()).unwrap();
    let si = StorageIndex([0x5a; 16]);
    let upload = Secret(vec![b'U'; 32]);
    let lease = LeaseSecrets {
        renew: Secret(vec![b'R'; 32]),
        cancel: Secret(vec![b'C'; 32]),
    };
    let alloc = |secret: &Secret| AllocateRequest {
        storage_index: si,
        lease: lease.clone(),
        upload_secret: secret.clone(),
        share_numbers: [0].into_iter().collect(),
        allocated_size: 8,
    };
    rt.block_on(async {
        let r = client.allocate_buckets(alloc(&upload)).await.unwrap();
        assert_eq!(r.allocated.len(), 1);
        let w = client
            .write_immutable(si, 0, &upload, 0, Bytes::from_static(b"half"))
            .await
            .unwrap();
        assert!(!w.complete());
    });

    sigkill(&up);
    assert!(up.wait_timeout(Duration::from_secs(10)).is_some());
    rt.block_on(async {
        // The rest of the upload during the outage: an error, in time.
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(45),
            client.write_immutable(si, 0, &upload, 4, Bytes::from_static(b"done")),
        )
        .await
        .expect("the call ends within its timeout");
        assert!(r.is_err(), "a write with the upstream down succeeded");
        assert!(t.elapsed() < Duration::from_secs(45));
    });

    // Restart the upstream on the same port and state: same FURL.
    let (mut up2, up_furl2, _) = spawn_upstream(p, port);
    assert_eq!(up_furl2, up_furl);
    let direct = GbsClient::new(&up_nurl.parse::<Nurl>().unwrap(), config.clone()).unwrap();
    rt.block_on(async {
        // No partial share visible upstream.
        assert!(direct.list_immutable_shares(si).await.unwrap().is_empty());
        // The client retries the whole upload (a new secret, as Tahoe's next attempt
        // would have); the gateway reconnects and it succeeds.
        let upload2 = Secret(vec![b'V'; 32]);
        let deadline = Instant::now() + Duration::from_secs(60);
        let r = loop {
            match client.allocate_buckets(alloc(&upload2)).await {
                Ok(r) => break r,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no recovery: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        assert_eq!(r.allocated.len(), 1, "{r:?}");
        let w = client
            .write_immutable(si, 0, &upload2, 0, Bytes::from_static(b"wholeone"))
            .await
            .unwrap();
        if !w.complete() {
            client.close_immutable(si, 0, &upload2).await.unwrap();
        }
        assert_eq!(
            direct.list_immutable_shares(si).await.unwrap(),
            [0].into_iter().collect()
        );
        assert_eq!(
            direct.read_immutable(si, 0, 0, 8).await.unwrap(),
            Bytes::from_static(b"wholeone")
        );
    });
    gw.stop();
    up2.stop();
}

/// The upstream's `inflight_uploads` from its admin `/status`.
fn upstream_inflight(admin_port: u16) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&http_get(admin_port, "/status").unwrap()).unwrap();
    status["links"][0]["inflight_uploads"].as_u64().unwrap()
}

#[test]
fn gateway_killed_mid_upload_leaks_nothing_upstream_and_recovers_on_restart() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(
        p.join("up.toml"),
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[link]]\nname = \"default\"\nupstream = \"local:up\"\n",
    )
    .unwrap();
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "up.toml", "--state-dir", "up"])
        .current_dir(p);
    let mut up = Process::spawn("upstream", cmd, p);
    let admin_line = up.wait_for_line("admin ", STARTUP_TIMEOUT);
    let admin_port: u16 = last_word(&admin_line)
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("admin line {admin_line:?}"));
    let up_furl = last_word(&up.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let up_nurl: Nurl = last_word(&up.wait_for_line("link default nurl ", STARTUP_TIMEOUT))
        .parse()
        .unwrap();
    let gw_port = free_port();
    let gw_listen = format!("127.0.0.1:{gw_port}");
    let spawn_gw = || spawn_gateway(p, &up_furl, &gw_listen);
    let (gw, gw_nurl) = spawn_gw();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = ClientConfig {
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    };
    let si = StorageIndex([0x6b; 16]);
    let lease = LeaseSecrets {
        renew: Secret(vec![b'R'; 32]),
        cancel: Secret(vec![b'C'; 32]),
    };
    let alloc = |secret: &Secret| AllocateRequest {
        storage_index: si,
        lease: lease.clone(),
        upload_secret: secret.clone(),
        share_numbers: [0, 1].into_iter().collect(),
        allocated_size: 8,
    };
    let client = GbsClient::new(&gw_nurl, config.clone()).unwrap();
    let upload = Secret(vec![b'U'; 32]);
    rt.block_on(async {
        let r = client.allocate_buckets(alloc(&upload)).await.unwrap();
        assert_eq!(r.allocated.len(), 2);
        client
            .write_immutable(si, 0, &upload, 0, Bytes::from_static(b"half"))
            .await
            .unwrap();
    });
    assert_eq!(
        upstream_inflight(admin_port),
        2,
        "the gateway's uploads upstream"
    );

    // Kill the gateway: its Foolscap connection, and with it the canaries of its
    // uploads, die; the upstream aborts them.
    sigkill(&gw);
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream_inflight(admin_port) != 0 {
        assert!(Instant::now() < deadline, "uploads leaked upstream");
        std::thread::sleep(Duration::from_millis(100));
    }
    let direct = GbsClient::new(&up_nurl, config.clone()).unwrap();
    rt.block_on(async {
        assert!(direct.list_immutable_shares(si).await.unwrap().is_empty());
    });

    // Restarted on the same port and state: same NURL; the retried upload succeeds.
    let (mut gw2, gw_nurl2) = spawn_gw();
    assert_eq!(gw_nurl2, gw_nurl);
    let client = GbsClient::new(&gw_nurl2, config).unwrap();
    rt.block_on(async {
        let upload2 = Secret(vec![b'V'; 32]);
        let r = client.allocate_buckets(alloc(&upload2)).await.unwrap();
        assert_eq!(r.allocated.len(), 2, "{r:?}");
        for sh in [0, 1] {
            let w = client
                .write_immutable(si, sh, &upload2, 0, Bytes::from_static(b"complete"))
                .await
                .unwrap();
            assert!(w.complete());
        }
        assert_eq!(
            direct.list_immutable_shares(si).await.unwrap(),
            [0, 1].into_iter().collect()
        );
        assert_eq!(
            direct.read_immutable(si, 1, 0, 8).await.unwrap(),
            Bytes::from_static(b"complete")
        );
    });
    assert_eq!(upstream_inflight(admin_port), 0);
    gw2.stop();
    up.stop();
}
