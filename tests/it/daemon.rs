//! The `swampgate` binary: the CLI and state contract, the admin endpoint, and
//! shutdown, as an operator meets them.

use std::path::Path;
use std::process::Command;

use crate::kit::*;
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

    // URLs no client could dial: an unspecified address needs a location.
    fails_with(
        &[
            "bridge",
            "--upstream",
            "local:s",
            "--listen",
            "0.0.0.0:0",
            "--state-dir",
            "st0",
        ],
        p,
        "--location",
    );
    std::fs::write(
        p.join("any.toml"),
        "listen = \"127.0.0.1:0\"\n[[link]]\nname = \"a\"\nupstream = \"local:x\"\n\
         listen = \"[::]:0\"\n",
    )
    .unwrap();
    fails_with(
        &["run", "--config", "any.toml", "--state-dir", "st0"],
        p,
        "link \"a\".location: needed when listening on [::]:0 (any.toml: link \"a\".listen at line 5, column 10)",
    );
    // A start that fails late (the admin port is taken) leaves no URL files.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap().to_string();
    fails_with(
        &[
            "bridge",
            "--upstream",
            "local:s",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            &admin,
            "--state-dir",
            "st1",
        ],
        p,
        "admin",
    );
    assert!(!p.join("st0/links").exists());
    assert!(!p.join("st1/links/default.furl").exists());
    assert!(!p.join("st1/links/default.nurl").exists());
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

/// Two links on one port: each has its own swissnum and store; GBS requests are
/// routed by their Authorization header, Foolscap by getReferenceByName. JSON logs
/// at the most verbose level carry no swissnum and no secret.
#[test]
fn several_links_on_one_port_and_no_secret_in_logs() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(
        p.join("two.toml"),
        "listen = \"127.0.0.1:0\"\n\
         [[link]]\nname = \"alpha\"\nupstream = \"local:alpha\"\n\
         [[link]]\nname = \"beta\"\nupstream = \"local:beta\"\n",
    )
    .unwrap();
    let mut cmd = swampgate_command();
    cmd.args([
        "--log-format",
        "json",
        "--log",
        "trace",
        "run",
        "--config",
        "two.toml",
        "--state-dir",
        "st",
    ])
    .current_dir(p);
    let mut sg = Process::spawn("swampgate", cmd, p);
    let a_nurl = last_word(&sg.wait_for_line("link alpha nurl ", STARTUP_TIMEOUT));
    let b_nurl = last_word(&sg.wait_for_line("link beta nurl ", STARTUP_TIMEOUT));
    let a_furl = last_word(&sg.wait_for_line("link alpha furl ", STARTUP_TIMEOUT));
    let a: Nurl = a_nurl.parse().unwrap();
    let b: Nurl = b_nurl.parse().unwrap();
    assert_eq!(
        (a.host.clone(), a.port),
        (b.host.clone(), b.port),
        "one port"
    );
    assert_ne!(a.swissnum, b.swissnum);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let si = StorageIndex(rand::random());
    let upload_secret = Secret(b"upload-secret-0123456789abcdef!!".to_vec());
    let renew = Secret(b"renew-secret-0123456789abcdefgh!".to_vec());
    rt.block_on(async {
        let ca = GbsClient::new(&a, ClientConfig::default()).unwrap();
        let cb = GbsClient::new(&b, ClientConfig::default()).unwrap();
        ca.allocate_buckets(AllocateRequest {
            storage_index: si,
            lease: LeaseSecrets {
                renew: renew.clone(),
                cancel: Secret(vec![2; 32]),
            },
            upload_secret: upload_secret.clone(),
            share_numbers: [0].into_iter().collect(),
            allocated_size: 3,
        })
        .await
        .unwrap();
        ca.write_immutable(si, 0, &upload_secret, 0, bytes::Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_eq!(
            ca.list_immutable_shares(si).await.unwrap(),
            [0].into_iter().collect()
        );
        assert!(
            cb.list_immutable_shares(si).await.unwrap().is_empty(),
            "link beta has its own store"
        );
        // A wrong swissnum on the same port is refused.
        let mut wrong = a.clone();
        wrong.swissnum = "nosuchswissnum".into();
        let cw = GbsClient::new(&wrong, ClientConfig::default()).unwrap();
        assert!(cw.list_immutable_shares(si).await.is_err());
    });
    // Foolscap reaches link alpha by its swissnum on the same port.
    rt.block_on(async {
        let tub = swampgate::foolscap::Tub::new(
            swampgate::identity::Identity::generate().unwrap(),
            Default::default(),
        )
        .unwrap();
        let ss = tub
            .get_reference(&swampgate::foolscap::Furl::parse(&a_furl).unwrap())
            .await
            .unwrap();
        let buckets = ss
            .call(
                "get_buckets",
                &[swampgate::foolscap::Value::bytes(si.0.to_vec())],
            )
            .await
            .unwrap();
        assert!(matches!(buckets, swampgate::foolscap::Value::Dict(ref d) if d.len() == 1));
    });
    sg.stop();
    let log = sg.stderr();
    assert!(log.lines().count() > 10, "trace logging produced output");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    use data_encoding::BASE64;
    for (what, secret) in [
        ("swissnum alpha", a.swissnum.clone()),
        ("swissnum beta", b.swissnum.clone()),
        ("upload secret", BASE64.encode(&upload_secret.0)),
        (
            "upload secret",
            String::from_utf8(upload_secret.0.clone()).unwrap(),
        ),
        ("lease secret", BASE64.encode(&renew.0)),
        ("lease secret", String::from_utf8(renew.0.clone()).unwrap()),
    ] {
        assert!(!log.contains(&secret), "the {what} appears in the log");
    }
}

/// A full bridged session at the most verbose level: a swampgate whose link's
/// upstream is another swampgate over Foolscap, driven over both of its fronts with
/// every kind of secret (upload, lease renew and cancel, write enabler). Neither
/// process's trace log may hold a swissnum or a secret, raw or in any encoding the
/// protocols use.
#[test]
fn bridged_session_at_trace_level_logs_no_secret() {
    use data_encoding::{BASE32_NOPAD, BASE64, HEXLOWER};
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let spawn = |name: &str, args: &[&str]| {
        let mut cmd = swampgate_command();
        cmd.args(["--log-format", "json", "--log", "trace"])
            .args(args)
            .current_dir(p);
        Process::spawn(name, cmd, p)
    };
    let mut up = spawn(
        "upstream",
        &[
            "bridge",
            "--upstream",
            "local:up",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            "up",
        ],
    );
    let up_furl = last_word(&up.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let up_nurl = last_word(&up.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    let mut gw = spawn(
        "gateway",
        &[
            "bridge",
            "--upstream",
            &up_furl,
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            "gw",
        ],
    );
    let gw_furl = last_word(&gw.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let gw_nurl = last_word(&gw.wait_for_line("link default nurl ", STARTUP_TIMEOUT));

    // Printable and unique, so a Debug of the bytes would show them too.
    let upload = Secret(b"UPLOADSECRETupl0adsecretUPL0AD!!".to_vec());
    let renew = Secret(b"RENEWSECRETren3wsecretRENEWSECR!".to_vec());
    let cancel = Secret(b"CANCELSECRETcanc3lsecretCANCEL!!".to_vec());
    let we = Secret(b"WRITEENABLERwr1teenablerWRITEEN!".to_vec());
    let lease = LeaseSecrets {
        renew: renew.clone(),
        cancel: cancel.clone(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let gbs: std::sync::Arc<dyn StorageApi> = std::sync::Arc::new(
            GbsClient::new(&gw_nurl.parse::<Nurl>().unwrap(), ClientConfig::default()).unwrap(),
        );
        let tub = swampgate::foolscap::Tub::new(
            swampgate::identity::Identity::generate().unwrap(),
            Default::default(),
        )
        .unwrap();
        let fs: std::sync::Arc<dyn StorageApi> =
            std::sync::Arc::new(swampgate::foolscap::storage::backend::FoolscapBackend::new(
                tub,
                swampgate::foolscap::Furl::parse(&gw_furl).unwrap(),
            ));
        for (i, api) in [gbs, fs].into_iter().enumerate() {
            let si = StorageIndex([0x40 + i as u8; 16]);
            let r = api
                .allocate_buckets(AllocateRequest {
                    storage_index: si,
                    lease: lease.clone(),
                    upload_secret: upload.clone(),
                    share_numbers: [0, 1].into_iter().collect(),
                    allocated_size: 4,
                })
                .await
                .unwrap();
            assert_eq!(r.allocated.len(), 2);
            let p = api
                .write_immutable(si, 0, &upload, 0, bytes::Bytes::from_static(b"data"))
                .await
                .unwrap();
            if !p.complete() {
                api.close_immutable(si, 0, &upload).await.unwrap();
            }
            api.abort_immutable(si, 1, &upload).await.unwrap();
            // A wrong upload secret is refused (and its error logged) without the secret.
            assert!(api
                .write_immutable(si, 1, &Secret(vec![b'Z'; 32]), 0, bytes::Bytes::new())
                .await
                .is_err());
            api.add_lease(si, lease.clone()).await.unwrap();
            assert_eq!(
                api.read_immutable(si, 0, 0, 4).await.unwrap(),
                bytes::Bytes::from_static(b"data")
            );
            let msi = StorageIndex([0x50 + i as u8; 16]);
            let req = ReadTestWriteRequest {
                storage_index: msi,
                secrets: MutableSecrets {
                    write_enabler: we.clone(),
                    lease: lease.clone(),
                },
                test_write_vectors: [(
                    0,
                    TestWriteVectors {
                        test: vec![],
                        write: vec![WriteVector {
                            offset: 0,
                            data: bytes::Bytes::from_static(b"mutable"),
                        }],
                        new_length: None,
                    },
                )]
                .into_iter()
                .collect(),
                read_vector: vec![],
            };
            assert!(api.read_test_write(req).await.unwrap().success);
            assert_eq!(
                api.read_mutable(msi, 0, 0, 7).await.unwrap(),
                bytes::Bytes::from_static(b"mutable")
            );
        }
    });
    gw.stop();
    up.stop();
    let swissnums = [
        swampgate::foolscap::Furl::parse(&up_furl).unwrap().swissnum,
        swampgate::foolscap::Furl::parse(&gw_furl).unwrap().swissnum,
        up_nurl.parse::<Nurl>().unwrap().swissnum,
        gw_nurl.parse::<Nurl>().unwrap().swissnum,
    ];
    for (who, log) in [("upstream", up.stderr()), ("gateway", gw.stderr())] {
        assert!(
            log.contains("\"level\":\"TRACE\""),
            "{who}: logging at trace level"
        );
        let mut needles: Vec<(String, String)> = swissnums
            .iter()
            .map(|s| ("swissnum".to_string(), s.clone()))
            .collect();
        for (what, s) in [
            ("upload secret", &upload),
            ("lease renew secret", &renew),
            ("lease cancel secret", &cancel),
            ("write enabler", &we),
        ] {
            needles.push((what.into(), String::from_utf8(s.0.clone()).unwrap()));
            needles.push((what.into(), BASE64.encode(&s.0)));
            needles.push((what.into(), HEXLOWER.encode(&s.0)));
            needles.push((what.into(), BASE32_NOPAD.encode(&s.0).to_lowercase()));
            // A fragment, in case a log cuts or escapes the value.
            needles.push((what.into(), String::from_utf8(s.0[..12].to_vec()).unwrap()));
        }
        for (what, needle) in needles {
            assert!(
                !log.contains(&needle),
                "{who}: the {what} appears in the log"
            );
        }
    }
}

/// `bridge --config FILE` takes its limits from FILE's `[limits]` table, and
/// refuses anything else in it or an unusable value, naming it.
#[test]
fn bridge_takes_limits_from_a_config_file() {
    use std::io::Read;
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("zero.toml"), "[limits]\nmax_connections = 0\n").unwrap();
    fails_with(
        &["bridge", "--upstream", "local:s", "--config", "zero.toml"],
        p,
        "limits.max_connections",
    );
    std::fs::write(p.join("other.toml"), "listen = \"127.0.0.1:0\"\n").unwrap();
    fails_with(
        &["bridge", "--upstream", "local:s", "--config", "other.toml"],
        p,
        "other.toml",
    );
    std::fs::write(p.join("one.toml"), "[limits]\nmax_connections_per_ip = 1\n").unwrap();
    let (_sg, _furl, nurl) = start(
        &[
            "bridge",
            "--upstream",
            "local:s",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "one.toml",
            "--state-dir",
            "st",
        ],
        p,
    );
    let hostport = nurl.split('@').nth(1).unwrap().split('/').next().unwrap();
    let first = std::net::TcpStream::connect(hostport).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The second connection from the same address is past the file's limit.
    let mut second = std::net::TcpStream::connect(hostport).unwrap();
    second
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    let r = second.read(&mut buf);
    let closed = match &r {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(
        closed,
        "closed at once by max_connections_per_ip = 1: {r:?}"
    );
    drop(first);
}
