//! GBS against the real peers: real Tahoe-LAFS 1.20 storage nodes (started by the
//! shared harness on loopback), Tahoe's own Python HTTP storage client, and
//! swampgate's server and client.
//!
//! - Tahoe's client runs one scripted sequence (`tests/interop/gbs_script.py`) against
//!   a real Tahoe node and against swampgate's server (embedded store behind it, same
//!   TLS identity as the node); the outcomes must be equal, except where swampgate
//!   deliberately extends Tahoe (JSON bodies, `Accept: */*`).
//! - swampgate's client runs every operation against a real Tahoe node, and is
//!   refused by a node whose certificate does not match its pin.

use crate::kit;

use std::path::Path;
use std::sync::Arc;

use crate::kit::*;
use serde_json::Value;
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::gbs::nurl::Nurl;
use swampgate::gbs::server::{GbsServer, ServerConfig};
use swampgate::gbs::tls::TlsIdentity;
use swampgate::storage::store::{Store, StoreConfig};
use swampgate::storage::{StorageApi, StorageError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn read_json(path: &Path) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no script output {}: {e}", path.display()));
    match serde_json::from_str(&text).unwrap() {
        Value::Object(m) => m,
        other => panic!("script output is not an object: {other}"),
    }
}

/// Where swampgate answers differently from Tahoe 1.20 on purpose, with both answers.
const EXTENSIONS: &[(&str, u16, u16)] = &[
    // Tahoe: 406 (CBOR only); swampgate: JSON.
    ("raw version accept json", 406, 200),
    // Tahoe: 406 even for a wildcard; swampgate: CBOR, its default.
    ("raw version accept any", 406, 200),
    // Tahoe: 415 (CBOR only); swampgate: JSON request bodies.
    ("raw allocate json body", 415, 200),
];

/// Compare a run of the script against swampgate with the run against Tahoe.
fn assert_same_outcomes(
    what: &str,
    tahoe: &serde_json::Map<String, Value>,
    ours: &serde_json::Map<String, Value>,
) {
    // The script really ran everything (a sample of its steps).
    for step in [
        "version",
        "chunked upload",
        "rtw create",
        "write conflicting",
        "wrong swissnum",
    ] {
        assert!(tahoe.contains_key(step), "no step {step:?} in the output");
    }
    assert_eq!(
        tahoe["chunked upload"]["round trip"],
        Value::Bool(true),
        "the chunked upload did not round-trip through Tahoe"
    );
    let mut differences = Vec::new();
    let keys: std::collections::BTreeSet<&String> = tahoe.keys().chain(ours.keys()).collect();
    for key in keys {
        let (a, b) = (tahoe.get(key), ours.get(key));
        if a == b {
            continue;
        }
        match EXTENSIONS.iter().find(|(k, _, _)| k == key) {
            Some((_, t, s)) => {
                assert_eq!(
                    a.and_then(|v| v["status"].as_u64()),
                    Some(u64::from(*t)),
                    "{what}: {key}"
                );
                assert_eq!(
                    b.and_then(|v| v["status"].as_u64()),
                    Some(u64::from(*s)),
                    "{what}: {key}"
                );
            }
            None => differences.push(format!("{key}:\n  tahoe:     {a:?}\n  swampgate: {b:?}")),
        }
    }
    assert!(
        differences.is_empty(),
        "{what} differs from Tahoe 1.20:\n{}",
        differences.join("\n")
    );
}

#[test]
fn tahoes_client_sees_the_same_from_swampgate_as_from_tahoe() {
    // One node to compare with, one fresh node behind swampgate's client.
    let (node, upstream) = join(
        || {
            storage_node(StorageOptions {
                nickname: "gbs-reference".into(),
                ..StorageOptions::default()
            })
        },
        || {
            storage_node(StorageOptions {
                nickname: "gbs-proxied".into(),
                ..StorageOptions::default()
            })
        },
    );
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let run_script = |nurl: &str, name: &str| {
        let out = work.path().join(name);
        run_python_script("gbs_script.py", [nurl, out.to_str().unwrap()], &logs);
        read_json(&out)
    };

    // The sequence against the real Tahoe node.
    let tahoe = run_script(node.nurl(), "tahoe.json");

    // The same against swampgate with the embedded store behind it, serving the
    // node's own identity (a foolscap X.509 v1 RSA certificate) and swissnum.
    let identity = TlsIdentity::from_pem(&std::fs::read(node.node_pem()).unwrap()).unwrap();
    let store = Store::open(StoreConfig::new(work.path().join("storage"), node.tubid())).unwrap();
    let rt = runtime();
    let server = GbsServer::new(Arc::new(store), ServerConfig::new(node.swissnum()));
    let handle = rt
        .block_on(server.listen("127.0.0.1:0".parse().unwrap(), &identity))
        .unwrap();
    let ours = handle.nurl("127.0.0.1");
    let theirs: Nurl = node.nurl().parse().unwrap();
    // Same identity, same NURL but for the port.
    assert_eq!(ours.spki_hash, theirs.spki_hash);
    assert_eq!(ours.swissnum, theirs.swissnum);
    let with_store = run_script(&ours.to_string(), "swampgate-store.json");
    rt.block_on(handle.shutdown());
    assert_same_outcomes("swampgate with its store", &tahoe, &with_store);

    // And through swampgate's server in front of swampgate's client in front of the
    // second Tahoe node: GBS to GBS.
    let client =
        GbsClient::new(&upstream.nurl().parse().unwrap(), ClientConfig::default()).unwrap();
    let server = GbsServer::new(Arc::new(client), ServerConfig::new(node.swissnum()));
    let handle = rt
        .block_on(server.listen("127.0.0.1:0".parse().unwrap(), &identity))
        .unwrap();
    let proxied = run_script(
        &handle.nurl("127.0.0.1").to_string(),
        "swampgate-proxy.json",
    );
    rt.block_on(handle.shutdown());
    assert_same_outcomes("swampgate in front of Tahoe", &tahoe, &proxied);
}

/// Tahoe's HTTP client through swampgate's GBS server and Foolscap backend to a
/// Foolscap-only node sees what it sees from a node speaking HTTP itself: the
/// protocol gap (implicit completion vs close, per-share reads vs slot_readv, error
/// statuses) is closed in the bridge.
#[test]
fn tahoes_http_client_through_bridge_to_foolscap_node() {
    let (node, upstream) = join(
        || {
            storage_node(StorageOptions {
                nickname: "gbs-reference".into(),
                ..StorageOptions::default()
            })
        },
        || storage_node(StorageOptions::foolscap_only()),
    );
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let run_script = |nurl: &str, name: &str| {
        let out = work.path().join(name);
        run_python_script("gbs_script.py", [nurl, out.to_str().unwrap()], &logs);
        read_json(&out)
    };
    let tahoe = run_script(node.nurl(), "tahoe.json");

    let identity = TlsIdentity::from_pem(&std::fs::read(node.node_pem()).unwrap()).unwrap();
    let rt = runtime();
    let tub = swampgate::foolscap::Tub::new(
        swampgate::identity::Identity::generate().unwrap(),
        Default::default(),
    )
    .unwrap();
    let backend = swampgate::foolscap::storage::backend::FoolscapBackend::new(
        tub,
        swampgate::foolscap::Furl::parse(upstream.furl()).unwrap(),
    );
    let server = GbsServer::new(Arc::new(backend), ServerConfig::new(node.swissnum()));
    let handle = rt
        .block_on(server.listen("127.0.0.1:0".parse().unwrap(), &identity))
        .unwrap();
    let bridged = run_script(&handle.nurl("127.0.0.1").to_string(), "bridged.json");
    rt.block_on(handle.shutdown());
    assert_same_outcomes("swampgate bridging to Foolscap", &tahoe, &bridged);
}

#[test]
fn swampgates_client_against_a_real_tahoe_node() {
    let node = storage_node(StorageOptions {
        nickname: "gbs-upstream".into(),
        ..StorageOptions::default()
    });
    let nurl: Nurl = node.nurl().parse().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let client = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
        let v = client.version().await.unwrap();
        assert!(
            v.application_version.starts_with(b"tahoe-lafs/1.20"),
            "{:?}",
            String::from_utf8_lossy(&v.application_version)
        );
        kit::storage::exercise(&client, 3).await;

        // A wrong pin: the TLS handshake is refused, naming both hashes.
        let mut wrong = nurl.clone();
        wrong.spki_hash = TlsIdentity::generate().spki_hash().unwrap();
        let c = GbsClient::new(&wrong, ClientConfig::default()).unwrap();
        match c.version().await {
            Err(StorageError::Unavailable(msg)) => {
                assert!(msg.contains("does not match"), "{msg}");
                assert!(msg.contains(&nurl.spki_hash), "{msg}");
            }
            other => panic!("expected the connection refused, got {other:?}"),
        }
        // A wrong swissnum: Tahoe's 401.
        let mut wrong = nurl.clone();
        wrong.swissnum = "nope".into();
        let c = GbsClient::new(&wrong, ClientConfig::default()).unwrap();
        match c.version().await {
            Err(StorageError::Remote { kind, .. }) => assert_eq!(kind, "HTTP 401"),
            other => panic!("expected 401, got {other:?}"),
        }
    });
}
