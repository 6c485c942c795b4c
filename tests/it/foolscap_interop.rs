//! Foolscap against the real peers: our client against a real Tahoe 1.20 storage
//! node, Tahoe's own Python client against our server, and the failure cases.

use std::sync::Arc;
use std::time::Duration;

use crate::kit::*;
use bytes::BytesMut;
use swampgate::foolscap::broker::Canary;
use swampgate::foolscap::furl::Hint;
use swampgate::foolscap::storage::backend::FoolscapBackend;
use swampgate::foolscap::*;
use swampgate::identity::Identity;
use swampgate::storage::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn new_tub() -> Tub {
    Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap()
}

fn b(v: &[u8]) -> Value {
    Value::bytes(v.to_vec())
}

fn set(items: &[u16]) -> Value {
    Value::Set(items.iter().map(|i| Value::int(*i)).collect())
}

fn canary() -> Value {
    let c: Arc<dyn RemoteObject> = Arc::new(Canary);
    Value::Local(c)
}

fn writers_of(v: &Value) -> Vec<(u64, RemoteRef)> {
    let Value::Tuple(t) = v else {
        panic!("allocate answered {v:?}")
    };
    let Value::Dict(d) = &t[1] else {
        panic!("{v:?}")
    };
    d.iter()
        .map(|(k, w)| match w {
            Value::Remote(r) => (k.as_u64().unwrap(), r.clone()),
            other => panic!("writer is {other:?}"),
        })
        .collect()
}

fn share_files(node: &StorageNode) -> Vec<String> {
    fn walk(p: &std::path::Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out)
                } else {
                    out.push(e.path().display().to_string())
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&node.shares_dir(), &mut out);
    out.retain(|p| !p.contains("/incoming/"));
    out
}

/// Allocates share `shnum` of `si` through `backend` and asserts it was allocated.
async fn allocate_one(
    backend: &FoolscapBackend,
    si: StorageIndex,
    shnum: ShareNum,
    secret: &Secret,
    size: u64,
) {
    let res = backend
        .allocate_buckets(AllocateRequest {
            storage_index: si,
            lease: LeaseSecrets {
                renew: Secret(vec![1; 32]),
                cancel: Secret(vec![2; 32]),
            },
            upload_secret: secret.clone(),
            share_numbers: [shnum].into_iter().collect(),
            allocated_size: size,
        })
        .await
        .unwrap();
    assert_eq!(res.allocated, [shnum].into_iter().collect());
}

/// Our client drives every storage call against a real Tahoe storage node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_against_real_tahoe_storage_node() {
    let node = tokio::task::spawn_blocking(|| storage_node(StorageOptions::foolscap_only()))
        .await
        .unwrap();
    let furl = Furl::parse(node.furl()).unwrap();
    let tub = new_tub();
    let ss = tub.get_reference(&furl).await.expect("getReferenceByName");
    assert_eq!(ss.interface(), Some("RIStorageServer.tahoe.allmydata.com"));

    let v = ss.call("get_version", &[]).await.unwrap();
    assert_eq!(
        v.get(b"application-version"),
        Some(&b(b"tahoe-lafs/1.20.0"))
    );
    let v1 = v
        .get(b"http://allmydata.org/tahoe/protocols/storage/v1")
        .unwrap();
    assert_eq!(
        v1.get(b"tolerates-immutable-read-overrun"),
        Some(&Value::Bool(true))
    );
    assert!(
        v1.get(b"maximum-immutable-share-size")
            .unwrap()
            .as_u64()
            .unwrap()
            > 0
    );

    // Immutable: allocate with a canary, write, close, read back.
    let si = rand::random::<[u8; 16]>();
    let alloc = ss
        .call(
            "allocate_buckets",
            &[
                b(&si),
                b(&[b'R'; 32]),
                b(&[b'C'; 32]),
                set(&[0, 1]),
                Value::int(100),
                canary(),
            ],
        )
        .await
        .unwrap();
    let writers = writers_of(&alloc);
    assert_eq!(writers.iter().map(|w| w.0).collect::<Vec<_>>(), vec![0, 1]);
    assert!(writers
        .iter()
        .all(|w| w.1.interface() == Some("RIBucketWriter")));
    let w0 = &writers[0].1;
    assert_eq!(
        w0.call("write", &[Value::int(0), b(&[b'A'; 60])])
            .await
            .unwrap(),
        Value::None
    );
    assert_eq!(
        w0.call("write", &[Value::int(60), b(&[b'B'; 40])])
            .await
            .unwrap(),
        Value::None
    );
    match w0.call("write", &[Value::int(100), b(&[b'X'; 10])]).await {
        Err(CallError::Remote(f)) => {
            assert!(f.check("allmydata.interfaces.DataTooLargeError"), "{f}")
        }
        other => panic!("write past the end: {other:?}"),
    }
    match w0.call("write", &[Value::int(0), b(&[b'Z'; 10])]).await {
        Err(CallError::Remote(f)) => {
            assert!(f.check("allmydata.interfaces.ConflictingWriteError"), "{f}")
        }
        other => panic!("conflicting write: {other:?}"),
    }
    assert_eq!(w0.call("close", &[]).await.unwrap(), Value::None);
    assert_eq!(writers[1].1.call("abort", &[]).await.unwrap(), Value::None);

    let buckets = ss.call("get_buckets", &[b(&si)]).await.unwrap();
    let Value::Dict(readers) = &buckets else {
        panic!("{buckets:?}")
    };
    assert_eq!(readers.len(), 1, "only the closed share is listed");
    let Value::Remote(r0) = &readers[0].1 else {
        panic!()
    };
    assert_eq!(r0.interface(), Some("RIBucketReader"));
    let data = r0
        .call("read", &[Value::int(0), Value::int(100)])
        .await
        .unwrap();
    let mut want = vec![b'A'; 60];
    want.extend([b'B'; 40]);
    assert_eq!(data, b(&want));
    assert_eq!(
        r0.call("read", &[Value::int(90), Value::int(100)])
            .await
            .unwrap(),
        b(&[b'B'; 10]),
        "reads past the end are truncated"
    );
    assert_eq!(
        r0.call("advise_corrupt_share", &[b(b"test")])
            .await
            .unwrap(),
        Value::None
    );
    assert_eq!(
        ss.call(
            "advise_corrupt_share",
            &[b(b"immutable"), b(&si), Value::int(0), b(b"test")]
        )
        .await
        .unwrap(),
        Value::None
    );
    assert_eq!(
        ss.call("add_lease", &[b(&si), b(&[b'r'; 32]), b(&[b'c'; 32])])
            .await
            .unwrap(),
        Value::None
    );
    assert_eq!(
        share_files(&node).len(),
        1,
        "one complete share on the node's disk"
    );

    // Mutable: create, read, update under a test, bad write enabler.
    let si2 = rand::random::<[u8; 16]>();
    let secrets = Value::Tuple(vec![b(&[b'W'; 32]), b(&[b'R'; 32]), b(&[b'C'; 32])]);
    let tw = |test: Value, data: Value| {
        Value::Dict(vec![(
            Value::int(0),
            Value::Tuple(vec![
                Value::List(vec![test]),
                Value::List(vec![data]),
                Value::None,
            ]),
        )])
    };
    let t =
        |o: u64, l: u64, s: &[u8]| Value::Tuple(vec![Value::int(o), Value::int(l), b(b"eq"), b(s)]);
    let d = |o: u64, s: &[u8]| Value::Tuple(vec![Value::int(o), b(s)]);
    let rv = |o: u64, l: u64| Value::List(vec![Value::Tuple(vec![Value::int(o), Value::int(l)])]);
    let r = ss
        .call(
            "slot_testv_and_readv_and_writev",
            &[
                b(&si2),
                secrets.clone(),
                tw(t(0, 1, b""), d(0, b"mutable data v1")),
                rv(0, 10),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        Value::Tuple(vec![Value::Bool(true), Value::Dict(vec![])])
    );
    let r = ss
        .call("slot_readv", &[b(&si2), Value::List(vec![]), rv(0, 30)])
        .await
        .unwrap();
    assert_eq!(
        r,
        Value::Dict(vec![(
            Value::int(0),
            Value::List(vec![b(b"mutable data v1")])
        )])
    );
    let r = ss
        .call(
            "slot_testv_and_readv_and_writev",
            &[
                b(&si2),
                secrets.clone(),
                tw(t(0, 7, b"mutable"), d(8, b"DATA")),
                rv(0, 10),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        Value::Tuple(vec![
            Value::Bool(true),
            Value::Dict(vec![(Value::int(0), Value::List(vec![b(b"mutable da")]))])
        ])
    );
    let bad = Value::Tuple(vec![b(&[b'w'; 32]), b(&[b'R'; 32]), b(&[b'C'; 32])]);
    match ss
        .call(
            "slot_testv_and_readv_and_writev",
            &[b(&si2), bad, tw(t(0, 0, b""), d(0, b"x")), rv(0, 1)],
        )
        .await
    {
        Err(CallError::Remote(f)) => {
            assert!(f.check("allmydata.interfaces.BadWriteEnablerError"), "{f}")
        }
        other => panic!("bad write enabler: {other:?}"),
    }

    // The same through the storage seam (the Foolscap backend).
    let backend = FoolscapBackend::new(tub.clone(), furl.clone());
    let ver = backend.version().await.unwrap();
    assert_eq!(ver.application_version, b"tahoe-lafs/1.20.0");
    assert_eq!(
        backend
            .list_immutable_shares(StorageIndex(si))
            .await
            .unwrap(),
        [0].into_iter().collect()
    );
    assert_eq!(
        backend
            .read_immutable(StorageIndex(si), 0, 50, 20)
            .await
            .unwrap()
            .as_ref(),
        &want[50..70]
    );
    assert_eq!(
        backend
            .immutable_share_length(StorageIndex(si), 0)
            .await
            .unwrap(),
        100
    );
    assert_eq!(
        backend
            .read_mutable(StorageIndex(si2), 0, 0, 100)
            .await
            .unwrap()
            .as_ref(),
        b"mutable DATA v1"
    );
    let si3 = StorageIndex(rand::random());
    let secret = Secret(vec![9; 32]);
    allocate_one(&backend, si3, 3, &secret, 10).await;
    let p = backend
        .write_immutable(si3, 3, &secret, 0, bytes::Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(p.required, vec![ByteRange { begin: 5, end: 10 }]);
    assert_eq!(
        backend
            .write_immutable(
                si3,
                3,
                &Secret(vec![8; 32]),
                5,
                bytes::Bytes::from_static(b"world")
            )
            .await,
        Err(StorageError::WrongUploadSecret)
    );
    let p = backend
        .write_immutable(si3, 3, &secret, 5, bytes::Bytes::from_static(b"world"))
        .await
        .unwrap();
    assert!(p.complete());
    assert_eq!(
        backend
            .read_immutable(si3, 3, 0, 100)
            .await
            .unwrap()
            .as_ref(),
        b"helloworld",
        "the share was closed upstream when its last byte arrived"
    );

    // The backend remembers bucket readers between reads; shares added or deleted
    // upstream meanwhile must still read as they are.
    assert_eq!(
        backend.read_immutable(si3, 3, 5, 5).await.unwrap().as_ref(),
        b"world"
    );
    let other = FoolscapBackend::new(new_tub(), furl.clone());
    allocate_one(&other, si3, 4, &secret, 3).await;
    let p = other
        .write_immutable(si3, 4, &secret, 0, bytes::Bytes::from_static(b"new"))
        .await
        .unwrap();
    assert!(p.complete());
    assert_eq!(
        backend
            .read_immutable(si3, 4, 0, 100)
            .await
            .unwrap()
            .as_ref(),
        b"new",
        "a share completed upstream by another client after the last read"
    );
    let share3: Vec<String> = share_files(&node)
        .into_iter()
        .filter(|f| f.contains(&si3.to_string()) && f.ends_with("/3"))
        .collect();
    assert_eq!(share3.len(), 1, "{share3:?}");
    std::fs::remove_file(&share3[0]).unwrap();
    match backend.read_immutable(si3, 3, 0, 100).await {
        Err(StorageError::NotFound(m)) => assert!(m.contains("no share 3"), "{m}"),
        other => panic!("share deleted upstream read as {other:?}"),
    }
    assert_eq!(
        backend
            .read_immutable(si3, 4, 0, 100)
            .await
            .unwrap()
            .as_ref(),
        b"new"
    );
}

/// A connection lost half-way through an upload makes the real server discard the
/// partial share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_upload_discards_the_partial_share() {
    let node = tokio::task::spawn_blocking(|| storage_node(StorageOptions::foolscap_only()))
        .await
        .unwrap();
    let furl = Furl::parse(node.furl()).unwrap();
    let si = rand::random::<[u8; 16]>();
    {
        let tub = new_tub();
        let ss = tub.get_reference(&furl).await.unwrap();
        let alloc = ss
            .call(
                "allocate_buckets",
                &[
                    b(&si),
                    b(&[1; 32]),
                    b(&[2; 32]),
                    set(&[0]),
                    Value::int(1000),
                    canary(),
                ],
            )
            .await
            .unwrap();
        let w = writers_of(&alloc).remove(0).1;
        w.call("write", &[Value::int(0), b(&[7; 500])])
            .await
            .unwrap();
        tub.connect(&furl)
            .await
            .unwrap()
            .close("test drops the connection");
    }
    // A new client (new tub) finds no share, and can allocate it afresh.
    let tub = new_tub();
    let ss = tub.get_reference(&furl).await.unwrap();
    let mut gone = false;
    for _ in 0..50 {
        let buckets = ss.call("get_buckets", &[b(&si)]).await.unwrap();
        let alloc = ss
            .call(
                "allocate_buckets",
                &[
                    b(&si),
                    b(&[1; 32]),
                    b(&[2; 32]),
                    set(&[0]),
                    Value::int(1000),
                    canary(),
                ],
            )
            .await
            .unwrap();
        let writers = writers_of(&alloc);
        if buckets == Value::Dict(vec![]) && writers.len() == 1 {
            writers[0].1.call("abort", &[]).await.unwrap();
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the partial share must be discarded once its uploader is gone"
    );
    assert!(
        share_files(&node).is_empty(),
        "no share file left: {:?}",
        share_files(&node)
    );
}

/// Wrong tubid, wrong swissnum and a schema violation against the real node: each a
/// clear error, and the connection survives the ones foolscap survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_against_real_tahoe() {
    let node = tokio::task::spawn_blocking(|| storage_node(StorageOptions::foolscap_only()))
        .await
        .unwrap();
    let furl = Furl::parse(node.furl()).unwrap();
    let tub = new_tub();

    // Wrong tubid: the server refuses it in the plaintext phase.
    let mut wrong = furl.clone();
    wrong.tubid = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into();
    let e = tub.get_reference(&wrong).await.unwrap_err();
    assert!(e.to_string().contains("unknown TubID aaaa"), "{e}");

    // Wrong swissnum: a KeyError that reveals only two characters.
    let conn = tub.connect(&furl).await.unwrap();
    match conn.get_reference("bogusswissnumber").await {
        Err(CallError::Remote(f)) => {
            assert!(f.check("builtins.KeyError"), "{f}");
            assert!(f.value.contains("'bo'"), "{f}");
        }
        other => panic!("{:?}", other.map(|r| r.clid())),
    }

    // Schema violation: the call fails, the connection stays usable.
    let ss = conn.get_reference(&furl.swissnum).await.unwrap();
    match ss.call("get_buckets", &[b(&[0; 17])]).await {
        Err(CallError::Remote(f)) => {
            assert!(f.check("foolscap.tokens.Violation"), "{f}");
            assert!(f.value.contains("17>16"), "{f}");
        }
        other => panic!("{other:?}"),
    }
    assert!(ss.call("get_version", &[]).await.is_ok());
    assert!(!conn.is_closed());
}

/// A Tub serving a trivial object, for the failure cases of our own server.
async fn serve(tub: &Tub) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(tub.clone().serve(listener));
    port
}

/// Garbage, a stalled peer and a wrong tubid against our server: each refused, the
/// server keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_survives_bad_peers() {
    let cfg = TubConfig {
        negotiation_timeout: Duration::from_secs(2),
        ..TubConfig::default()
    };
    let server = Tub::new(Identity::generate().unwrap(), cfg).unwrap();
    server.publish("swiss", Arc::new(Canary));
    let port = serve(&server).await;
    let furl = server.furl(
        "swiss",
        vec![Hint::Tcp {
            host: "127.0.0.1".into(),
            port,
        }],
    );

    // Garbage bytes: the 500 refusal, then the connection is closed.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        buf,
        b"HTTP/1.1 500 Internal Server Error: internal server error, see logs\r\n\r\n"
    );

    // Wrong tubid.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /id/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert_eq!(
        buf,
        b"HTTP/1.1 500 Internal Server Error: unknown TubID aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
    );

    // A stalled peer is dropped after the negotiation timeout.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stalled.write_all(b"GET /id/").await.unwrap();
    let mut buf = BytesMut::new();
    let n = tokio::time::timeout(Duration::from_secs(10), stalled.read_buf(&mut buf))
        .await
        .expect("the server must hang up on a stalled peer")
        .unwrap();
    assert_eq!(n, 0);

    // Meanwhile a real client still gets through, and a wrong swissnum is a KeyError.
    let client = new_tub();
    let r = client
        .get_reference(&furl)
        .await
        .expect("a good client still connects");
    assert_eq!(r.interface(), None);
    let conn = client.connect(&furl).await.unwrap();
    match conn.get_reference("nope").await {
        Err(CallError::Remote(f)) => assert!(f.check("builtins.KeyError")),
        other => panic!("{:?}", other.map(|r| r.clid())),
    }

    // Our client against a stalled server times out with a clear error.
    let quiet = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let qport = quiet.local_addr().unwrap().port();
    let ccfg = TubConfig {
        negotiation_timeout: Duration::from_secs(1),
        ..TubConfig::default()
    };
    let impatient = Tub::new(Identity::generate().unwrap(), ccfg).unwrap();
    let mut qfurl = furl.clone();
    qfurl.hints = vec![Hint::Tcp {
        host: "127.0.0.1".into(),
        port: qport,
    }];
    let e = impatient.get_reference(&qfurl).await.unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    drop(quiet);
}

/// Our client and our server against each other, with the wrong tubid on the
/// client side: TLS pinning refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_pins_the_tubid() {
    let server = new_tub();
    server.publish("swiss", Arc::new(Canary));
    let port = serve(&server).await;
    let other = Identity::generate().unwrap();
    // A FURL naming another tubid at this address: the server refuses it in
    // plaintext; had it accepted, TLS pinning would refuse the certificate.
    let furl = Furl {
        tubid: other.tubid().to_string(),
        hints: vec![Hint::Tcp {
            host: "127.0.0.1".into(),
            port,
        }],
        swissnum: "swiss".into(),
    };
    let e = new_tub().get_reference(&furl).await.unwrap_err();
    assert!(e.to_string().contains("unknown TubID"), "{e}");
    assert_eq!(
        swampgate::identity::tubid_of(server.identity().cert_der()),
        server.tubid()
    );
}

/// Tahoe's own Python Foolscap storage client against our server (the Foolscap
/// front on the embedded store, serving with a real Tahoe node's adopted RSA v1
/// identity), and against a real Tahoe storage node: the same calls give the same
/// results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tahoe_python_client_gets_the_same_results_from_our_server() {
    use swampgate::foolscap::storage::front::StorageServerObject;
    use swampgate::storage::store::{Store, StoreConfig};

    let node = tokio::task::spawn_blocking(|| storage_node(StorageOptions::foolscap_only()))
        .await
        .unwrap();
    // Loading the node's own node.pem yields the tubid Tahoe prints in its FURL.
    let adopted = Identity::load(&node.node_pem()).unwrap();
    assert_eq!(adopted.tubid(), Furl::parse(node.furl()).unwrap().tubid);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(
        dir.path().join("storage"),
        adopted.tubid(),
    ))
    .unwrap();
    let server = Tub::new(adopted, TubConfig::default()).unwrap();
    server.publish("ourswissnum", StorageServerObject::new(Arc::new(store)));
    let port = serve(&server).await;
    let ours = server
        .furl(
            "ourswissnum",
            vec![Hint::Tcp {
                host: "127.0.0.1".into(),
                port,
            }],
        )
        .to_string();
    let theirs = node.furl().to_string();
    let logs = dir.path().to_path_buf();
    let (real, mine) = tokio::task::spawn_blocking(move || {
        let real = run_python_script(
            "foolscap_storage_client.py",
            [theirs.as_str()],
            &logs.join("real"),
        );
        let mine = run_python_script(
            "foolscap_storage_client.py",
            [ours.as_str()],
            &logs.join("ours"),
        );
        (real, mine)
    })
    .await
    .unwrap();
    let real: serde_json::Value =
        serde_json::from_str(real.trim()).expect("JSON from the real run");
    let mine: serde_json::Value = serde_json::from_str(mine.trim()).expect("JSON from our run");
    let steps = real.as_object().unwrap();
    assert!(
        steps.len() > 40,
        "the script ran every step: {}",
        steps.len()
    );
    for (step, want) in steps {
        assert_eq!(
            mine.get(step),
            Some(want),
            "step {step}: real Tahoe gave {want}, we gave {:?}",
            mine.get(step)
        );
    }
    assert_eq!(real, mine);
}

/// An object whose `sleep(ms)` answers after that many milliseconds.
struct Sleeper;

#[async_trait::async_trait]
impl RemoteObject for Sleeper {
    fn interface_name(&self) -> &str {
        "Sleeper"
    }

    async fn call(
        &self,
        _conn: &Connection,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, Failure> {
        match method {
            "sleep" => {
                let ms = args[0].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Value::int(ms))
            }
            "child" => {
                let c: Arc<dyn RemoteObject> = Arc::new(Sleeper);
                Ok(Value::Local(c))
            }
            _ => Err(Failure::violation(format!("no method {method}"))),
        }
    }
}

fn tub_config(keepalive_ms: Option<u64>, disconnect_ms: Option<u64>) -> TubConfig {
    let broker = swampgate::foolscap::broker::BrokerConfig {
        keepalive: keepalive_ms.map(Duration::from_millis),
        disconnect_after: disconnect_ms.map(Duration::from_millis),
        ..Default::default()
    };
    TubConfig {
        broker,
        ..TubConfig::default()
    }
}

fn hint(port: u16) -> Vec<Hint> {
    vec![Hint::Tcp {
        host: "127.0.0.1".into(),
        port,
    }]
}

/// Calls on one connection run concurrently and their answers come back in
/// whatever order they finish; references returned are decref'd when dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_out_of_order_answers_and_decref() {
    let server = new_tub();
    server.publish("s", Arc::new(Sleeper));
    let port = serve(&server).await;
    let client = new_tub();
    let r = client
        .get_reference(&server.furl("s", hint(port)))
        .await
        .unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    let (r1, r2) = (r.clone(), r.clone());
    let slow = tokio::spawn(async move {
        let v = r1.call("sleep", &[Value::int(400)]).await.unwrap();
        o1.lock().unwrap().push(v.as_u64().unwrap());
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fast = tokio::spawn(async move {
        let v = r2.call("sleep", &[Value::int(10)]).await.unwrap();
        o2.lock().unwrap().push(v.as_u64().unwrap());
    });
    slow.await.unwrap();
    fast.await.unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        vec![10, 400],
        "the fast call answered first"
    );

    // References: a returned child is exported by the server until we drop it.
    let conn = client.connect(&server.furl("s", hint(port))).await.unwrap();
    let child = r.call("child", &[]).await.unwrap();
    let Value::Remote(child) = child else {
        panic!()
    };
    assert_eq!(
        child.call("sleep", &[Value::int(1)]).await.unwrap(),
        Value::int(1)
    );
    assert_eq!(conn.imported_count(), 2);
    drop(child);
    let mut exported = usize::MAX;
    for _ in 0..100 {
        // The server side's exports: the root object and (until decref) the child.
        exported = server.connection_exports();
        if exported == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exported, 1, "the child was decref'd and forgotten");
}

/// Keepalive: an idle connection is PINGed (and the PONG keeps it alive); with an
/// idle-disconnect timeout and a silent peer the connection is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_and_idle_disconnect() {
    let server = new_tub();
    server.publish("s", Arc::new(Sleeper));
    let port = serve(&server).await;
    let cfg = tub_config(Some(200), Some(700));
    let client = Tub::new(Identity::generate().unwrap(), cfg).unwrap();
    let furl = server.furl("s", hint(port));
    let r = client.get_reference(&furl).await.unwrap();
    // Idle for several disconnect periods: PINGs draw PONGs, so it stays up.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(r.is_connected(), "PONGs keep an idle connection alive");
    assert_eq!(
        r.call("sleep", &[Value::int(0)]).await.unwrap(),
        Value::int(0)
    );

    // With no PINGs of its own the client hears nothing while idle (the server
    // sends nothing unprompted), so its idle-disconnect timeout fires.
    let quiet = new_tub();
    quiet.publish("s", Arc::new(Sleeper));
    let qport = serve(&quiet).await;
    let cfg = tub_config(None, Some(300));
    let impatient = Tub::new(Identity::generate().unwrap(), cfg).unwrap();
    let r = impatient
        .get_reference(&quiet.furl("s", hint(qport)))
        .await
        .unwrap();
    let conn = impatient
        .connect(&quiet.furl("s", hint(qport)))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("an idle connection is dropped after the disconnect timeout");
    assert!(
        conn.close_reason().unwrap().contains("idle"),
        "{:?}",
        conn.close_reason()
    );
    assert!(matches!(
        r.call("sleep", &[Value::int(0)]).await,
        Err(CallError::ConnectionLost(_))
    ));
}

/// Against the real node: our PING is answered (the connection stays up past
/// several keepalive periods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_against_real_tahoe() {
    let node = tokio::task::spawn_blocking(|| storage_node(StorageOptions::foolscap_only()))
        .await
        .unwrap();
    let cfg = tub_config(Some(200), Some(900));
    let tub = Tub::new(Identity::generate().unwrap(), cfg).unwrap();
    let ss = tub
        .get_reference(&Furl::parse(node.furl()).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(ss.is_connected(), "Tahoe answered our PINGs with PONGs");
    assert!(ss.call("get_version", &[]).await.is_ok());
}

/// Duplicate connections: when a peer restarts (same tubid, new incarnation) and
/// connects again while its old connection lingers, the master accepts the new one
/// and drops the old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_from_restarted_peer_replaces_the_old_connection() {
    // The server must be master: its tubid sorts above the client's.
    let (server_id, client_id) = loop {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        if a.tubid() > b.tubid() {
            break (a, b);
        }
    };
    let server = Tub::new(server_id, TubConfig::default()).unwrap();
    server.publish("s", Arc::new(Sleeper));
    let port = serve(&server).await;
    let furl = server.furl("s", hint(port));
    let first = Tub::new(client_id.clone(), TubConfig::default()).unwrap();
    let c1 = first.connect(&furl).await.unwrap();
    let second = Tub::new(client_id, TubConfig::default()).unwrap();
    let r2 = second
        .get_reference(&furl)
        .await
        .expect("the restarted peer is accepted");
    tokio::time::timeout(Duration::from_secs(5), c1.closed())
        .await
        .expect("the old connection is dropped");
    assert_eq!(
        r2.call("sleep", &[Value::int(0)]).await.unwrap(),
        Value::int(0)
    );
}

/// The Foolscap backend through an upstream restart: calls fail with Unavailable
/// while it is down, and it reconnects (with backoff) once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_reconnects_after_upstream_restart() {
    let mut node = tokio::task::spawn_blocking(|| storage_node(StorageOptions::foolscap_only()))
        .await
        .unwrap();
    let furl = Furl::parse(node.furl()).unwrap();
    let backend = FoolscapBackend::new(new_tub(), furl);
    assert!(backend.version().await.is_ok());
    let mut node = tokio::task::spawn_blocking(move || {
        node.stop();
        node
    })
    .await
    .unwrap();
    match backend.version().await {
        Err(StorageError::Unavailable(_)) => {}
        other => panic!("a stopped upstream must be Unavailable: {other:?}"),
    }
    // Fail fast while backing off.
    let t = std::time::Instant::now();
    assert!(matches!(
        backend.version().await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(2));
    let node = tokio::task::spawn_blocking(move || {
        node.restart();
        node
    })
    .await
    .unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if backend.version().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        ok,
        "the backend reconnected after the restart\n{}",
        node.log_tail()
    );
}
