//! The Rust GBS client against the Rust GBS server, over TLS on loopback, with the
//! in-memory store behind the server; and raw requests against the server for the
//! error statuses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::gbs::nurl::Nurl;
use swampgate::gbs::server::{GbsServer, ServerConfig, ServerHandle};
use swampgate::gbs::tls::TlsIdentity;
use swampgate::storage::layer::{wrap, Layer};
use swampgate::storage::store::{Store, StoreConfig};
use swampgate::storage::*;

use crate::kit::storage::si;

use crate::kit;

const SWISSNUM: &str = "abcdefghijklmnopqrstuvwxyz234567";

/// A layer over the embedded store that records the largest write and read the
/// front asks for, the version it answered and the corruption advisories it passed on.
#[derive(Default)]
struct Recording {
    max_write: AtomicU64,
    max_read: AtomicU64,
    version: Mutex<Option<VersionInfo>>,
    advisories: Mutex<Vec<(StorageIndex, ShareNum, String)>>,
}

impl Layer for Recording {
    async fn call<'a>(&'a self, call: Call<'a>, next: &'a dyn StorageApi) -> StorageResult<Reply> {
        let advisory = match &call {
            Call::WriteImmutable { data, .. } => {
                self.max_write
                    .fetch_max(data.len() as u64, Ordering::SeqCst);
                None
            }
            Call::ReadImmutable { length, .. } => {
                self.max_read.fetch_max(*length, Ordering::SeqCst);
                None
            }
            Call::AdviseCorruptShare {
                si, shnum, reason, ..
            } => Some((*si, *shnum, reason.clone())),
            _ => None,
        };
        let r = call.send(next).await;
        match &r {
            Ok(Reply::Version(v)) => *self.version.lock().unwrap() = Some(v.clone()),
            Ok(Reply::Done) => self.advisories.lock().unwrap().extend(advisory),
            _ => {}
        }
        r
    }
}

/// The embedded store in a temp dir (deleted when the dir is dropped).
fn embedded_store() -> (tempfile::TempDir, Arc<dyn StorageApi>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(
        dir.path().join("storage"),
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ))
    .unwrap();
    (dir, Arc::new(store))
}

async fn start(
    config: ServerConfig,
) -> (
    Arc<Recording>,
    tempfile::TempDir,
    GbsServer,
    ServerHandle,
    Nurl,
) {
    let recording = Arc::new(Recording::default());
    let (dir, store) = embedded_store();
    let server = GbsServer::new(wrap(recording.clone(), store), config);
    let identity = TlsIdentity::generate();
    let handle = server
        .listen("127.0.0.1:0".parse().unwrap(), &identity)
        .await
        .unwrap();
    let nurl = handle.nurl("127.0.0.1");
    assert_eq!(nurl.spki_hash, identity.spki_hash().unwrap());
    (recording, dir, server, handle, nurl)
}

#[tokio::test]
async fn client_and_server_agree_on_every_operation() {
    let mut config = ServerConfig::new(SWISSNUM);
    config.write_chunk_size = 64 * 1024;
    config.read_chunk_size = 64 * 1024;
    let (backend, _dir, _server, handle, nurl) = start(config).await;
    let client = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
    // What the client decoded is what the store answered.
    let version = client.version().await.unwrap();
    assert_eq!(Some(version), backend.version.lock().unwrap().clone());
    kit::storage::exercise(&client, 1).await;
    // Share data went through the front in bounded chunks, both ways.
    assert!(backend.max_write.load(Ordering::SeqCst) <= 64 * 1024);
    assert!(backend.max_read.load(Ordering::SeqCst) <= 64 * 1024);
    assert_eq!(
        backend
            .advisories
            .lock()
            .unwrap()
            .iter()
            .filter(|(si, ..)| *si == kit::storage::si(1, 1))
            .cloned()
            .collect::<Vec<_>>(),
        vec![(kit::storage::si(1, 1), 0, "bad hash".to_string())]
    );

    handle.shutdown().await;
    // After shutdown the client reports the server unavailable.
    let fresh = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
    assert!(matches!(
        fresh.version().await,
        Err(StorageError::Unavailable(_))
    ));
}

#[tokio::test]
async fn client_and_server_with_the_embedded_store() {
    let (_dir, store) = embedded_store();
    let server = GbsServer::new(store, ServerConfig::new(SWISSNUM));
    let handle = server
        .listen("127.0.0.1:0".parse().unwrap(), &TlsIdentity::generate())
        .await
        .unwrap();
    let client = GbsClient::new(&handle.nurl("127.0.0.1"), ClientConfig::default()).unwrap();
    kit::storage::exercise(&client, 2).await;
    handle.shutdown().await;
}

#[tokio::test]
async fn wrong_spki_pin_is_refused() {
    let (_backend, _dir, _server, handle, nurl) = start(ServerConfig::new(SWISSNUM)).await;
    let mut wrong = nurl.clone();
    wrong.spki_hash = TlsIdentity::generate().spki_hash().unwrap();
    let client = GbsClient::new(&wrong, ClientConfig::default()).unwrap();
    match client.version().await {
        Err(StorageError::Unavailable(msg)) => {
            assert!(msg.contains("does not match"), "{msg}");
            assert!(msg.contains(&nurl.spki_hash), "{msg}");
            assert!(!msg.contains(SWISSNUM), "{msg}");
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
    // The right pin works against the same server.
    let good = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
    good.version().await.unwrap();
    // A wrong swissnum is a remote refusal, not a connection failure.
    let mut wrong_swiss = nurl.clone();
    wrong_swiss.swissnum = "wrong".into();
    let c = GbsClient::new(&wrong_swiss, ClientConfig::default()).unwrap();
    match c.version().await {
        Err(StorageError::Remote { kind, message }) => {
            assert_eq!(kind, "HTTP 401");
            assert!(message.contains("swissnum"), "{message}");
        }
        other => panic!("expected 401, got {other:?}"),
    }
    handle.shutdown().await;
}

#[test]
fn tor_nurls_are_not_dialled() {
    let n: Nurl = "pb+tor://cPv0bAPRXtJJpQnK59CVkqOZEdtZyuayXjgqeTjuFrw@xyz.onion:1/sw#v=1"
        .parse()
        .unwrap();
    let e = GbsClient::new(&n, ClientConfig::default()).unwrap_err();
    assert!(e.to_string().contains("Tor"), "{e}");
}

// ---------------------------------------------------------------------------------
// Raw requests against the server, no socket.

struct Raw {
    server: GbsServer,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Raw {
    fn new(config: ServerConfig) -> Raw {
        let (dir, store) = embedded_store();
        Raw {
            server: GbsServer::new(store, config),
            _dir: dir,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut b = Request::builder().method(method).uri(path);
        let has_auth = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        if !has_auth {
            b = b.header(
                "authorization",
                swampgate::gbs::auth::authorization_value(SWISSNUM.as_bytes()),
            );
        }
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("authorization") && v.is_empty() {
                continue;
            }
            b = b.header(*k, *v);
        }
        let resp = self
            .server
            .handle(b.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }
}

fn b64(b: &[u8]) -> String {
    data_encoding::BASE64.encode(b)
}

#[tokio::test]
async fn raw_requests_get_tahoes_statuses() {
    let mut config = ServerConfig::new(SWISSNUM);
    config.limits.allocate = 100;
    let raw = Raw::new(config);
    let si = si(1, 0).to_base32();
    let renew = format!("lease-renew-secret {}", b64(&[1; 32]));
    let cancel = format!("lease-cancel-secret {}", b64(&[2; 32]));
    let upload = format!("upload-secret {}", b64(&[3; 20]));
    let secrets = |extra: &[&str]| {
        let mut v: Vec<(&str, String)> = vec![
            ("x-tahoe-authorization", renew.clone()),
            ("x-tahoe-authorization", cancel.clone()),
            ("x-tahoe-authorization", upload.clone()),
        ];
        for e in extra {
            v.push(("x-tahoe-authorization", e.to_string()));
        }
        v
    };
    let alloc_path = format!("/storage/v1/immutable/{si}");
    let alloc_cbor = hex::decode(
        "a26d73686172652d6e756d62657273d90102830102036e616c6c6f63617465642d73697a651830",
    )
    .unwrap();
    let post = |hs: Vec<(&'static str, String)>, body: Vec<u8>| {
        let raw = &raw;
        let alloc_path = alloc_path.clone();
        async move {
            let h: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            raw.send("POST", &alloc_path, &h, &body).await
        }
    };

    // Authorization.
    let a = raw
        .send("GET", "/storage/v1/version", &[("authorization", "")], b"")
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body, Bytes::from_static(b"Wrong Authorization header"));
    let a = raw
        .send(
            "GET",
            "/storage/v1/version",
            &[("authorization", "Tahoe-LAFS bm9wZQ==")],
            b"",
        )
        .await;
    assert_eq!(a.status, 401);
    // Routing: bad SI, unknown path, wrong method.
    assert_eq!(
        raw.send(
            "GET",
            &format!("/storage/v1/immutable/{}/shares", &si[..25]),
            &[],
            b""
        )
        .await
        .status,
        404
    );
    assert_eq!(
        raw.send(
            "GET",
            &format!("/storage/v1/immutable/{}/shares", si.to_uppercase()),
            &[],
            b""
        )
        .await
        .status,
        404
    );
    assert_eq!(
        raw.send("GET", "/storage/v1/nope", &[], b"").await.status,
        404
    );
    assert_eq!(
        raw.send("DELETE", "/storage/v1/version", &[], b"")
            .await
            .status,
        405
    );

    // Secrets.
    let a = post(vec![], alloc_cbor.clone()).await;
    assert_eq!(a.status, 400);
    assert!(String::from_utf8_lossy(&a.body).starts_with("Expected"));
    let short = format!("lease-renew-secret {}", b64(&[1; 31]));
    let a = post(
        vec![
            ("x-tahoe-authorization", short),
            ("x-tahoe-authorization", cancel.clone()),
            ("x-tahoe-authorization", upload.clone()),
        ],
        alloc_cbor.clone(),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body,
        Bytes::from_static(b"Lease secrets must be 32 bytes long")
    );
    let a = post(secrets(&["upload-secret !!!"]), alloc_cbor.clone()).await;
    assert_eq!(a.status, 400);
    let a = post(
        secrets(&[&format!("write-enabler {}", b64(b"x"))]),
        alloc_cbor.clone(),
    )
    .await;
    assert_eq!(a.status, 400);

    // Bodies: media types, size, malformed CBOR and JSON.
    let mut h = secrets(&[]);
    h.push(("content-type", "text/plain".into()));
    assert_eq!(post(h, alloc_cbor.clone()).await.status, 415);
    let mut big = alloc_cbor.clone();
    big.resize(101, 0);
    assert_eq!(post(secrets(&[]), big).await.status, 413);
    let a = post(secrets(&[]), vec![0xff, 0x00]).await;
    assert_eq!(a.status, 400);
    assert!(
        String::from_utf8_lossy(&a.body).contains("CBOR"),
        "{:?}",
        a.body
    );
    let untagged =
        hex::decode("a26d73686172652d6e756d62657273830102036e616c6c6f63617465642d73697a651830")
            .unwrap();
    let a = post(secrets(&[]), untagged).await;
    assert_eq!(a.status, 400);
    assert!(String::from_utf8_lossy(&a.body).contains("tag 258"));
    let mut h = secrets(&[]);
    h.push(("content-type", "application/json".into()));
    let a = post(h, b"{\"share-numbers\": [1,".to_vec()).await;
    assert_eq!(a.status, 400);
    assert!(String::from_utf8_lossy(&a.body).contains("JSON"));

    // Accept: Tahoe's cases, then our JSON and wildcard.
    let mut h = secrets(&[]);
    h.push(("accept", "text/html".into()));
    assert_eq!(post(h, alloc_cbor.clone()).await.status, 406);
    let mut h = secrets(&[]);
    h.push(("content-type", "application/json".into()));
    h.push(("accept", "application/json".into()));
    let a = post(
        h,
        br#"{"share-numbers": [1, 2], "allocated-size": 48}"#.to_vec(),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/json");
    let j: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        j,
        serde_json::json!({"already-have": [], "allocated": [1, 2]})
    );
    let v = raw
        .send("GET", "/storage/v1/version", &[("accept", "*/*")], b"")
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(v.headers["content-type"], "application/cbor");
    let v = raw
        .send(
            "GET",
            "/storage/v1/version",
            &[("accept", "application/json")],
            b"",
        )
        .await;
    let j: serde_json::Value = serde_json::from_slice(&v.body).unwrap();
    assert!(j["http://allmydata.org/tahoe/protocols/storage/v1"]["available-space"].is_u64());

    // Writes: Content-Range rules, short body, past the end, completion.
    let patch = |sh: u32, cr: Option<&str>, body: &[u8]| {
        let raw = &raw;
        let si = si.clone();
        let upload = upload.clone();
        let cr = cr.map(str::to_owned);
        let body = body.to_vec();
        async move {
            let mut h = vec![("x-tahoe-authorization", upload.as_str())];
            if let Some(cr) = &cr {
                h.push(("content-range", cr.as_str()));
            }
            raw.send(
                "PATCH",
                &format!("/storage/v1/immutable/{si}/{sh}"),
                &h,
                &body,
            )
            .await
        }
    };
    assert_eq!(patch(1, None, b"0123456789abcdef").await.status, 416);
    assert_eq!(
        patch(1, Some("bytes */48"), b"0123456789abcdef")
            .await
            .status,
        416
    );
    assert_eq!(
        patch(9, Some("bytes 0-15/*"), b"0123456789abcdef")
            .await
            .status,
        404
    );
    assert_eq!(
        patch(1, Some("bytes 40-55/*"), b"0123456789abcdef")
            .await
            .status,
        500
    );
    assert_eq!(
        patch(1, Some("bytes 0-15/*"), b"01234567").await.status,
        500
    );
    let a = patch(2, Some("bytes 0-47/*"), &[7u8; 60]).await;
    assert_eq!(a.status, 201);
    assert_eq!(
        a.body,
        Bytes::from(hex::decode("a168726571756972656480").unwrap())
    );
    assert_eq!(patch(2, Some("bytes 0-47/*"), &[7u8; 48]).await.status, 404);

    // Reads: Range rules and headers.
    let get = |sh: &str, range: Option<&str>| {
        let raw = &raw;
        let si = si.clone();
        let path = format!("/storage/v1/immutable/{si}/{sh}");
        let range = range.map(str::to_owned);
        async move {
            let h: Vec<(&str, &str)> = range.iter().map(|r| ("range", r.as_str())).collect();
            raw.send("GET", &path, &h, b"").await
        }
    };
    let a = get("2", None).await;
    assert_eq!((a.status, a.body.len()), (StatusCode::OK, 48));
    let a = get("2", Some("bytes=40-99")).await;
    assert_eq!(a.status, 206);
    assert_eq!(a.headers["content-range"], "bytes 40-47/*");
    assert_eq!(a.headers["content-type"], "application/octet-stream");
    assert_eq!(a.body.len(), 8);
    assert_eq!(get("2", Some("bytes=48-60")).await.status, 204);
    for bad in ["bytes=0-", "bytes=-5", "bytes=0-1,3-4", "foo", "items=0-4"] {
        assert_eq!(get("2", Some(bad)).await.status, 416, "{bad}");
    }
    let a = get("7", Some("bytes=0-9")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.headers["content-type"], "application/octet-stream");
    assert_eq!(get("1", Some("bytes=0-9")).await.status, 404, "in progress");
    assert_eq!(
        get("99999999999999999999", Some("bytes=0-9")).await.status,
        404
    );

    // Unknown storage indexes.
    let other = swampgate::storage::StorageIndex([0x77; 16]).to_base32();
    let a = raw
        .send(
            "GET",
            &format!("/storage/v1/immutable/{other}/shares"),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        (a.status, a.body.as_ref()),
        (StatusCode::OK, &b"\xd9\x01\x02\x80"[..])
    );
    let h = [
        ("x-tahoe-authorization", renew.as_str()),
        ("x-tahoe-authorization", cancel.as_str()),
    ];
    assert_eq!(
        raw.send("PUT", &format!("/storage/v1/lease/{other}"), &h, b"")
            .await
            .status,
        404
    );
    assert_eq!(
        raw.send("PUT", &format!("/storage/v1/lease/{si}"), &h, b"")
            .await
            .status,
        204
    );
    assert_eq!(
        raw.send("PUT", &format!("/storage/v1/lease/{si}"), &h[..1], b"")
            .await
            .status,
        400
    );

    // Corruption advisories: unknown share first, then the body rules.
    let corrupt = |sh: u32, body: &[u8]| {
        let raw = &raw;
        let si = si.clone();
        let body = body.to_vec();
        async move {
            raw.send(
                "POST",
                &format!("/storage/v1/immutable/{si}/{sh}/corrupt"),
                &[],
                &body,
            )
            .await
        }
    };
    assert_eq!(corrupt(7, b"garbage").await.status, 404);
    assert_eq!(
        corrupt(2, &hex::decode("a166726561736f6e60").unwrap())
            .await
            .status,
        400
    );
    assert_eq!(
        corrupt(
            2,
            &hex::decode("a166726561736f6e686261642068617368").unwrap()
        )
        .await
        .status,
        200
    );
    assert_eq!(corrupt(2, &vec![0u8; 40_000]).await.status, 413);

    // Read-test-write on an immutable storage index: Tahoe's 500.
    let rtw = hex::decode("a272746573742d77726974652d766563746f7273a06b726561642d766563746f7280")
        .unwrap();
    let we = format!("write-enabler {}", b64(&[4; 32]));
    let h = [
        ("x-tahoe-authorization", renew.as_str()),
        ("x-tahoe-authorization", cancel.as_str()),
        ("x-tahoe-authorization", we.as_str()),
    ];
    assert_eq!(
        raw.send(
            "POST",
            &format!("/storage/v1/mutable/{si}/read-test-write"),
            &h,
            &rtw
        )
        .await
        .status,
        500
    );
    let a = raw
        .send(
            "POST",
            &format!("/storage/v1/mutable/{other}/read-test-write"),
            &h,
            &rtw,
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        Bytes::from(hex::decode("a26773756363657373f56464617461a0").unwrap())
    );
}

#[tokio::test]
async fn connection_limit_and_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = ServerConfig::new(SWISSNUM);
    config.max_connections = 1;
    config.header_read_timeout = std::time::Duration::from_millis(300);
    let (_dir, store) = embedded_store();
    let server = GbsServer::new(store, config);

    // First connection: plain HTTP over an in-memory pipe, served until it goes idle.
    let (mut client1, server1) = tokio::io::duplex(64 * 1024);
    let s = server.clone();
    let first = tokio::spawn(async move { s.serve_connection(server1, None).await });
    let auth = swampgate::gbs::auth::authorization_value(SWISSNUM.as_bytes());
    client1
        .write_all(
            format!("GET /storage/v1/version HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = client1.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200 OK"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    // A second connection while the first is open is closed at once.
    let (mut client2, server2) = tokio::io::duplex(1024);
    server.serve_connection(server2, None).await.unwrap();
    assert_eq!(client2.read(&mut buf).await.unwrap(), 0);

    // The idle first connection is closed by the header read timeout, freeing its
    // place.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), first).await;
    assert!(ended.is_ok(), "idle connection was not closed");
    let (mut client3, server3) = tokio::io::duplex(64 * 1024);
    let s = server.clone();
    tokio::spawn(async move { s.serve_connection(server3, None).await });
    client3
        .write_all(
            format!("GET /storage/v1/version HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let n = client3.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn serves_tls_connections_accepted_elsewhere() {
    // A listener of our own (as the one-port listener will be) hands accepted TCP
    // connections to the server, which does the TLS handshake.
    let (_dir, store) = embedded_store();
    let server = GbsServer::new(store, ServerConfig::new(SWISSNUM));
    let identity = TlsIdentity::generate();
    let acceptor = identity.tls_acceptor().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = server.clone();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    let accept_loop = tokio::spawn(async move {
        loop {
            let (sock, peer) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move { s.serve_tls_connection(sock, &acceptor, Some(peer)).await });
        }
    });
    let nurl: Nurl = format!(
        "pb://{}@127.0.0.1:{port}/{SWISSNUM}#v=1",
        identity.spki_hash().unwrap()
    )
    .parse()
    .unwrap();
    let client = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
    kit::storage::exercise(&client, 4).await;
    // Well over a hundred requests, one at a time: the pool reuses its connection.
    let n = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&n),
        "{n} connections for one sequential client"
    );
    accept_loop.abort();
}

#[tokio::test]
async fn client_timeouts() {
    use std::time::{Duration, Instant};
    // A peer that accepts TCP and then says nothing: the TLS handshake times out.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            held.push(sock);
        }
    });
    let nurl: Nurl = format!(
        "pb://{}@127.0.0.1:{port}/{SWISSNUM}#v=1",
        TlsIdentity::generate().spki_hash().unwrap()
    )
    .parse()
    .unwrap();
    let config = ClientConfig {
        connect_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let client = GbsClient::new(&nurl, config).unwrap();
    let t = Instant::now();
    match client.version().await {
        Err(StorageError::Unavailable(msg)) => assert!(msg.contains("timed out"), "{msg}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    hold.abort();

    // A server that handshakes but never answers: the request times out.
    let identity = TlsIdentity::generate();
    let acceptor = identity.tls_acceptor().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            if let Ok(tls) = acceptor.accept(sock).await {
                held.push(tls);
            }
        }
    });
    let nurl: Nurl = format!(
        "pb://{}@127.0.0.1:{port}/{SWISSNUM}#v=1",
        identity.spki_hash().unwrap()
    )
    .parse()
    .unwrap();
    let config = ClientConfig {
        request_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let client = GbsClient::new(&nurl, config).unwrap();
    match client.version().await {
        Err(StorageError::Unavailable(msg)) => assert!(msg.contains("no response"), "{msg}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    silent.abort();
}
