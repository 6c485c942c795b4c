//! The `swampgate` binary: the CLI and state contract, the admin endpoint, and
//! shutdown, as an operator meets them.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::gbs::nurl::Nurl;
use swampgate::storage::*;

/// Start `swampgate ARGS` in `dir`; wait for its link lines; return (process, furl, nurl).
fn start(args: &[&str], dir: &Path) -> (Process, String, String) {
    let mut cmd = swampgate_command();
    cmd.args(args).current_dir(dir);
    let mut p = Process::spawn("swampgate", cmd, dir);
    let furl = last_word(&p.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let nurl = last_word(&p.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    (p, furl, nurl)
}

fn last_word(line: &str) -> String {
    line.rsplit(' ').next().unwrap().to_string()
}

fn fails_with(args: &[&str], dir: &Path, needle: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_swampgate"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} must fail: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in: {stderr}"
    );
}

#[test]
fn bad_input_is_refused_with_the_field_named() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fails_with(&["bridge", "--upstream", "http://nope"], p, "--upstream");
    fails_with(
        &["bridge", "--upstream", "pb://short@tcp:h:1/x"],
        p,
        "--upstream: bad FURL",
    );
    fails_with(
        &["bridge", "--upstream", "local:s", "--listen", "nowhere"],
        p,
        "--listen",
    );
    fails_with(
        &[
            "bridge",
            "--upstream",
            "local:s",
            "--adopt",
            "/nonexistent-node-dir",
        ],
        p,
        "--adopt",
    );
    fails_with(
        &[
            "bridge",
            "--upstream",
            "local:s",
            "--location",
            "tcp:h:notaport",
        ],
        p,
        "--location",
    );
    std::fs::write(
        p.join("bad.toml"),
        "listen = \"127.0.0.1:0\"\n[[link]]\nname = \"a b\"\nupstream = \"local:x\"\n",
    )
    .unwrap();
    fails_with(&["run", "--config", "bad.toml"], p, "link[0].name");
    fails_with(&["run", "--config", "missing.toml"], p, "missing.toml");
    std::fs::write(p.join("typo.toml"), "listn = \"127.0.0.1:0\"\n").unwrap();
    fails_with(&["run", "--config", "typo.toml"], p, "listn");
}

/// `run --config`: links printed and written, URLs stable across restarts, the
/// admin endpoint, and a share stored through GBS served back over Foolscap.
#[test]
fn run_with_config_keeps_its_urls_and_reports_status() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(
        p.join("sg.toml"),
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[[link]]\nname = \"default\"\nupstream = \"local:shares\"\n",
    )
    .unwrap();
    let run_args = ["run", "--config", "sg.toml", "--state-dir", "st"];
    let (mut first, furl1, nurl1) = start(&run_args, p);
    let admin = last_word(&first.wait_for_line("admin ", STARTUP_TIMEOUT));
    assert_eq!(
        std::fs::read_to_string(p.join("st/links/default.furl"))
            .unwrap()
            .trim(),
        furl1
    );

    // Store a share over GBS.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nurl: Nurl = nurl1.parse().unwrap();
    let si = StorageIndex(rand::random());
    rt.block_on(async {
        let c = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
        let secret = Secret(vec![7; 32]);
        let r = c
            .allocate_buckets(AllocateRequest {
                storage_index: si,
                lease: LeaseSecrets {
                    renew: Secret(vec![1; 32]),
                    cancel: Secret(vec![2; 32]),
                },
                upload_secret: secret.clone(),
                share_numbers: [0, 1].into_iter().collect(),
                allocated_size: 5,
            })
            .await
            .unwrap();
        assert_eq!(r.allocated.len(), 2);
        let w = c
            .write_immutable(si, 0, &secret, 0, bytes::Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert!(w.complete());
    });

    // The admin endpoint.
    let port: u16 = admin
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(http_get(port, "/healthz").unwrap().trim(), "ok");
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("swampgate_calls_total{link=\"default\",method=\"allocate_buckets\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("swampgate_share_bytes_total{link=\"default\",direction=\"in\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("swampgate_call_duration_seconds_bucket"),
        "{metrics}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&http_get(port, "/status").unwrap()).unwrap();
    let link = &status["links"][0];
    assert_eq!(link["name"], "default");
    assert_eq!(link["upstream_state"]["state"], "up");
    assert_eq!(
        link["inflight_uploads"], 1,
        "share 1 is allocated and unwritten: {status}"
    );
    let swissnum = furl1.rsplit('/').next().unwrap();
    assert!(
        !status.to_string().contains(swissnum),
        "no swissnum in /status"
    );
    assert!(!metrics.contains(swissnum), "no swissnum in /metrics");

    // SIGTERM: exit 0, the unfinished upload aborted.
    let code = first.stop();
    assert!(
        code.success(),
        "SIGTERM ends swampgate with status 0: {code:?}\n{}",
        first.log_tail()
    );
    let log = first.stderr();
    assert!(log.contains("uploads_aborted=1"), "{log}");
    assert!(!log.contains(swissnum), "no swissnum in the log");

    // Restart: same identity and swissnum, so the same URLs (but for the port).
    let (_second, furl2, nurl2) = start(&run_args, p);
    let strip = |u: &str| {
        (
            u.split('@').next().unwrap().to_string(),
            u.rsplit('/').next().unwrap().to_string(),
        )
    };
    assert_eq!(strip(&furl1), strip(&furl2));
    assert_eq!(strip(&nurl1), strip(&nurl2));
    // The completed share survived; the aborted one is gone.
    let nurl: Nurl = nurl2.parse().unwrap();
    rt.block_on(async {
        let c = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
        assert_eq!(
            c.list_immutable_shares(si).await.unwrap(),
            [0].into_iter().collect()
        );
        assert_eq!(
            c.read_immutable(si, 0, 0, 100).await.unwrap().as_ref(),
            b"hello"
        );
    });
}
