//! Stalled peers and slow upstream calls, with real processes: a real swampgate
//! (`run --config`, small `[limits]`), a real Tahoe-LAFS 1.20 storage node as its
//! Foolscap upstream (SIGSTOPped to stall it), and a Python client that stops
//! reading.
//!
//! - `foolscap_call_timeout_secs`: a call to a stalled Foolscap upstream fails once
//!   its deadline has passed (a fault in the metrics), and the link's connection
//!   serves the next call once the upstream answers again.
//! - `write_stall_timeout_secs`, swampgate as the client: a large request to an
//!   upstream that stops reading is cut off, and the upload that upstream had open
//!   is aborted (its `incoming/` empties, nothing is finished, swampgate counts no
//!   upload in flight), and the link serves again.
//! - `write_stall_timeout_secs`, swampgate as the server: a large GBS read body to a
//!   client that stops reading is cut off; the client gets less than the share.
//!
//! Every test fails without its limit: the call, the write or the read body would
//! wait for the peer for good (the idle timeouts are set far beyond the bounds).

use std::path::Path;
use std::time::{Duration, Instant};

use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::storage::*;

use crate::kit::storage::{data, lease, si};
use crate::kit::*;

/// A running `swampgate run` with one link `default` and an admin port.
struct Gate {
    p: Process,
    furl: String,
    nurl: String,
    admin: u16,
}

fn gateway(dir: &Path, upstream: &str, limits: &str) -> Gate {
    let (port, admin) = (free_port(), free_port());
    std::fs::write(
        dir.join("sg.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\n\
             [[link]]\nname = \"default\"\nupstream = \"{upstream}\"\n{limits}"
        ),
    )
    .unwrap();
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "sg.toml", "--state-dir", "st"])
        .args(["--log", "swampgate=debug"])
        .current_dir(dir);
    let mut p = Process::spawn("swampgate", cmd, &dir.join("logs"));
    let furl = last_word(&p.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let nurl = last_word(&p.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    Gate {
        p,
        furl,
        nurl,
        admin,
    }
}

impl Gate {
    /// A GBS client of the link whose own timeouts are far past every bound here.
    fn client(&self) -> GbsClient {
        let config = ClientConfig {
            request_timeout: Duration::from_secs(150),
            body_idle_timeout: Duration::from_secs(150),
            ..ClientConfig::default()
        };
        GbsClient::new(&self.nurl.parse().unwrap(), config).unwrap()
    }

    /// What swampgate has logged (at debug) so far.
    fn log(&self) -> String {
        self.p.stderr()
    }

    fn metric(&self, prefix: &str) -> f64 {
        let m = http_get(self.admin, "/metrics").unwrap();
        m.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| last_word(l).parse::<f64>().unwrap())
            .sum()
    }

    fn inflight_uploads(&self) -> u64 {
        let s = http_get(self.admin, "/status").unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
        v["links"][0]["inflight_uploads"].as_u64().unwrap()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Long enough that no idle timer ends anything a test waits for.
const QUIET: &str =
    "keepalive_secs = 300\nidle_timeout_secs = 900\nupload_idle_timeout_secs = 900\n";

fn files_in(p: &Path) -> usize {
    walk(p).len()
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn wait_until(what: &str, bound: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !f() {
        assert!(Instant::now() < deadline, "not within {bound:?}: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Foolscap call with no answer fails after `foolscap_call_timeout_secs` as the
/// upstream unavailable, counted as a fault; after SIGCONT the same link answers
/// on its first try.
#[test]
fn a_call_to_a_stalled_foolscap_upstream_fails_at_its_deadline() {
    let node = storage_node(StorageOptions::foolscap_only());
    let dir = tempfile::tempdir().unwrap();
    let limits = format!("[limits]\n{QUIET}foolscap_call_timeout_secs = 3\n");
    let gate = gateway(dir.path(), node.furl(), &limits);
    let rt = rt();
    let api = gate.client();
    let probe = si(3, 1);
    rt.block_on(api.list_immutable_shares(probe))
        .expect("served before the stall");
    let faults_before = gate.metric("swampgate_faults_total");

    node.process().signal(libc::SIGSTOP);
    let asked = Instant::now();
    let r = rt.block_on(api.list_immutable_shares(si(3, 2)));
    let took = asked.elapsed();
    node.process().signal(libc::SIGCONT);
    let e = r.expect_err("a stalled upstream answered");
    eprintln!("failed after {took:?}: {e}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(20),
        "the call failed after {took:?}: {e}"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("call deadline"), "{e}");
    wait_until(
        "the failed call counted as a fault",
        Duration::from_secs(10),
        || gate.metric("swampgate_faults_total") > faults_before,
    );

    // The connection is still the link's and still sane: the late answer is
    // dropped, the next call is answered at once.
    let asked = Instant::now();
    rt.block_on(api.list_immutable_shares(probe))
        .expect("served after SIGCONT");
    assert!(asked.elapsed() < Duration::from_secs(10));
    let log = gate.log();
    assert!(log.contains("no answer within"), "{log}");
    assert!(
        !log.contains("connection closed:"),
        "the connection was closed by a late call: {log}"
    );
}

/// A 24 MiB mutable write to an upstream that stopped reading (SIGSTOP) fills the
/// socket buffers; swampgate cuts the connection after `write_stall_timeout_secs`
/// instead of waiting on it. An immutable upload open on that connection is aborted
/// upstream (nothing finished, `incoming/` empty once the node runs again,
/// nothing in flight at swampgate), and the link serves again.
#[test]
fn an_upstream_that_stops_reading_a_large_request_is_cut_off() {
    let node = storage_node(StorageOptions::foolscap_only());
    let dir = tempfile::tempdir().unwrap();
    // The call deadline is far away: only the stalled write can end the call.
    let limits = format!(
        "[limits]\n{QUIET}write_stall_timeout_secs = 3\nfoolscap_call_timeout_secs = 600\n"
    );
    let gate = gateway(dir.path(), node.furl(), &limits);
    let rt = rt();
    let api = gate.client();

    // An immutable upload in progress: allocated, half written.
    let up_si = si(4, 1);
    let share = data(1 << 20, 4);
    let secret = Secret(vec![5; 32]);
    let alloc = || AllocateRequest {
        storage_index: up_si,
        lease: lease(1),
        upload_secret: secret.clone(),
        share_numbers: [0].into_iter().collect(),
        allocated_size: share.len() as u64,
    };
    rt.block_on(api.allocate_buckets(alloc())).unwrap();
    rt.block_on(api.write_immutable(up_si, 0, &secret, 0, share.slice(..1000)))
        .unwrap();
    assert_eq!(
        files_in(&node.incoming_dir()),
        1,
        "the upload is open upstream"
    );
    assert_eq!(gate.inflight_uploads(), 1);

    node.process().signal(libc::SIGSTOP);
    let slot = si(4, 2);
    let big = data(24 << 20, 9);
    let req = ReadTestWriteRequest {
        storage_index: slot,
        secrets: MutableSecrets {
            write_enabler: Secret(vec![6; 32]),
            lease: lease(2),
        },
        test_write_vectors: [(
            0,
            TestWriteVectors {
                test: vec![],
                write: vec![WriteVector {
                    offset: 0,
                    data: big.clone(),
                }],
                new_length: None,
            },
        )]
        .into_iter()
        .collect(),
        read_vector: vec![],
    };
    let asked = Instant::now();
    let r = rt.block_on(api.read_test_write(req));
    let took = asked.elapsed();
    let e = r.expect_err("a write to a stopped upstream succeeded");
    eprintln!("cut off after {took:?}: {e}");
    assert!(
        took < Duration::from_secs(30),
        "the stalled write ended only after {took:?}: {e}"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let log = gate.log();
    assert!(log.contains("write stalled"), "{log}");
    // swampgate forgot the upload that lived on the cut connection.
    let s = rt.block_on(api.write_immutable(up_si, 0, &secret, 1000, share.slice(1000..2000)));
    assert!(s.is_err(), "a write to the cut-off upload succeeded");
    wait_until(
        "no upload in flight at swampgate",
        Duration::from_secs(10),
        || gate.inflight_uploads() == 0,
    );

    node.process().signal(libc::SIGCONT);
    // The node sees the connection gone and aborts the upload: nothing finished.
    wait_until(
        "the node's incoming/ empty",
        Duration::from_secs(30),
        || files_in(&node.incoming_dir()) == 0,
    );
    let name = up_si.to_string();
    let finished = node.shares_dir().join(&name[..2]).join(&name);
    assert_eq!(
        files_in(&finished),
        0,
        "a share of the cut-off upload was finished"
    );

    // The link serves again: the same upload, whole, and the slot never written.
    rt.block_on(async {
        let r = api.allocate_buckets(alloc()).await.unwrap();
        assert_eq!(r.allocated.len(), 1, "{r:?}");
        api.write_immutable(up_si, 0, &secret, 0, share.clone())
            .await
            .unwrap();
        let back = api
            .read_immutable(up_si, 0, 0, share.len() as u64)
            .await
            .unwrap();
        assert_eq!(back, share);
        assert!(api.list_mutable_shares(slot).await.unwrap().is_empty());
    });
    assert_eq!(gate.inflight_uploads(), 0);
}

/// A gateway on the embedded store holding one 24 MiB share, and that share.
fn gateway_with_a_big_share(dir: &Path) -> (Gate, StorageIndex, bytes::Bytes) {
    let limits = format!("[limits]\n{QUIET}write_stall_timeout_secs = 3\n");
    let gate = gateway(dir, "local:shares", &limits);
    let api = gate.client();
    let s = si(5, 1);
    let share = data(24 << 20, 5);
    let secret = Secret(vec![5; 32]);
    rt().block_on(async {
        api.allocate_buckets(AllocateRequest {
            storage_index: s,
            lease: lease(1),
            upload_secret: secret.clone(),
            share_numbers: [0].into_iter().collect(),
            allocated_size: share.len() as u64,
        })
        .await
        .unwrap();
        api.write_immutable(s, 0, &secret, 0, share.clone())
            .await
            .unwrap();
    });
    (gate, s, share)
}

/// A Foolscap client (foolscap 24.9 with Tahoe's interfaces) that calls `read` for
/// a 24 MiB share and stops reading the answer (its transport paused) is cut off
/// after `write_stall_timeout_secs`: when it reads again, the call has failed with
/// the connection lost, while another client was served meanwhile.
#[test]
fn a_foolscap_client_that_stops_reading_a_large_answer_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, s, share) = gateway_with_a_big_share(dir.path());
    let reader = python_script(
        "stalled_foolscap_reader.py",
        [
            gate.furl.as_str(),
            &s.to_string(),
            "0",
            &share.len().to_string(),
            "10",
        ],
        dir.path(),
    );
    std::thread::sleep(Duration::from_secs(4));
    let back = rt()
        .block_on(gate.client().read_immutable(s, 0, 0, 4096))
        .expect("another client served during the stall");
    assert_eq!(back, share.slice(..4096));
    let mut reader = reader;
    reader
        .wait_timeout(Duration::from_secs(120))
        .expect("the reader ends");
    let out = reader.stdout();
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("{e}: {out}: {}", reader.log_tail()));
    eprintln!("foolscap reader: {v}");
    assert_eq!(
        v["outcome"], "lost",
        "the stalled Foolscap reader was not cut off: {v}"
    );
    assert!(gate.log().contains("write stalled"), "{}", gate.log());
}

/// A client that asks for a 24 MiB share over GBS and stops reading is cut off
/// after `write_stall_timeout_secs`: it gets less than the share, then the end
/// of the connection, while another client is served meanwhile.
#[test]
fn a_gbs_client_that_stops_reading_a_large_body_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, s, share) = gateway_with_a_big_share(dir.path());
    let rt = rt();
    let api = gate.client();
    let nurl: swampgate::gbs::nurl::Nurl = gate.nurl.parse().unwrap();
    let hostport = gate
        .nurl
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    // Stops reading for 10 s, more than three times the limit, then reads what is left.
    let reader = python_script(
        "stalled_reader.py",
        [
            hostport,
            nurl.swissnum.as_str(),
            &s.to_string(),
            "0",
            &share.len().to_string(),
            "10",
        ],
        dir.path(),
    );
    // Meanwhile another client is served.
    std::thread::sleep(Duration::from_secs(2));
    let back = rt
        .block_on(api.read_immutable(s, 0, 0, 4096))
        .expect("another client served during the stall");
    assert_eq!(back, share.slice(..4096));
    let mut reader = reader;
    reader
        .wait_timeout(Duration::from_secs(90))
        .expect("the reader ends");
    let out = reader.stdout();
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!("reader: {v}");
    assert_eq!(v["status"], 206, "{v}");
    let got = v["body_bytes"].as_u64().unwrap();
    assert!(
        got < share.len() as u64,
        "the stalled reader got the whole share ({got} bytes): it was not cut off"
    );
    // Then the end of the connection (with or without TLS's close_notify), not a
    // connection left open.
    assert_ne!(v["ended"], "timeout", "{v}");
}
