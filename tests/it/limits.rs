//! The `[limits]` table enforced by the running daemon, at and past each boundary:
//! the peer past a limit gets a closed connection or its protocol's error, and every
//! other peer is served as before. The daemon runs in-process on the embedded store;
//! the clients are swampgate's own Foolscap and GBS clients over loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use swampgate::daemon::config::{Config, Limits};
use swampgate::daemon::run::{self, Running};
use swampgate::daemon::state::StateDir;
use swampgate::foolscap::furl::Furl;
use swampgate::foolscap::{Tub, TubConfig};
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::gbs::nurl::Nurl;
use swampgate::identity::Identity;
use swampgate::storage::StorageApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn daemon(limits: Limits) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(
        "listen = \"127.0.0.1:0\"\n[[link]]\nname = \"default\"\nupstream = \"local:shares\"\n",
    )
    .unwrap();
    config.limits = limits;
    let state = StateDir::open(dir.path()).unwrap();
    let r = run::start(&config, &state).await.unwrap();
    (r, dir)
}

/// Connect from `from` (any 127.0.0.0/8 address is loopback on Linux).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Does the server close `s` (EOF or reset) within `within`?
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(within, s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

async fn gbs_works(r: &Running) {
    let nurl: Nurl = r.links[0].nurl.parse().unwrap();
    let c = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), c.version())
        .await
        .expect("GBS version in time")
        .expect("GBS version");
}

async fn foolscap_works(r: &Running) {
    let furl = Furl::parse(&r.links[0].furl).unwrap();
    let tub = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
    let server = tokio::time::timeout(Duration::from_secs(20), tub.get_reference(&furl))
        .await
        .expect("Foolscap connect in time")
        .expect("Foolscap connect");
    tokio::time::timeout(Duration::from_secs(20), server.call("get_version", &[]))
        .await
        .expect("get_version in time")
        .expect("get_version");
}

async fn wait_open(r: &Running, n: usize) {
    // The accept loop counts a connection as soon as it takes it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.open_connections() != n {
        assert!(
            Instant::now() < deadline,
            "open {} != {n}",
            r.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A Foolscap connection that has finished negotiating (identified), kept open by
/// its Tub.
async fn identified(r: &Running) -> (Tub, swampgate::foolscap::RemoteRef) {
    let furl = Furl::parse(&r.links[0].furl).unwrap();
    let tub = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
    let rref = tokio::time::timeout(Duration::from_secs(20), tub.get_reference(&furl))
        .await
        .expect("Foolscap connect in time")
        .expect("Foolscap connect");
    (tub, rref)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_connection_limit_sheds_the_oldest_unidentified_then_refuses() {
    let limits = Limits {
        max_connections: 3,
        ..Limits::default()
    };
    let (r, _d) = daemon(limits).await;
    let addr = r.local_addr;
    // One identified connection and two that never say which protocol: full.
    let (_tub, rref) = identified(&r).await;
    let mut idle = vec![
        connect_from("127.0.0.2", addr).await,
        connect_from("127.0.0.3", addr).await,
    ];
    wait_open(&r, 3).await;
    // Past the limit: the oldest unidentified connection makes room; the
    // identified one is never shed.
    let mut fourth = connect_from("127.0.0.4", addr).await;
    assert!(closed_by_server(&mut idle[0], Duration::from_secs(5)).await);
    assert!(!closed_by_server(&mut idle[1], Duration::from_millis(200)).await);
    assert!(!closed_by_server(&mut fourth, Duration::from_millis(200)).await);
    rref.call("get_version", &[]).await.expect("still served");
    assert_eq!((r.open_connections(), r.shed_connections()), (3, 1));
    assert_eq!(r.metrics.connections_shed.get(), 1);
    assert_eq!(r.refused_connections(), 0);
    // Every slot identified: a new connection is closed at once, unread.
    drop(idle);
    drop(fourth);
    wait_open(&r, 1).await;
    let (_t2, _r2) = identified(&r).await;
    let (_t3, _r3) = identified(&r).await;
    wait_open(&r, 3).await;
    let mut late = connect_from("127.0.0.5", addr).await;
    assert!(closed_by_server(&mut late, Duration::from_secs(5)).await);
    assert_eq!(r.refused_connections(), 1);
    let refused = |reason| {
        r.metrics
            .connections_refused
            .get_or_create(&swampgate::daemon::metrics::ReasonLabel { reason })
            .get()
    };
    assert_eq!(refused("max_connections"), 1);
    assert_eq!(refused("max_connections_per_ip"), 0);
    rref.call("get_version", &[]).await.expect("still served");
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_leaves_other_peers_unaffected() {
    let limits = Limits {
        max_connections_per_ip: 2,
        ..Limits::default()
    };
    let (r, _d) = daemon(limits).await;
    let addr = r.local_addr;
    let mut a1 = connect_from("127.0.0.2", addr).await;
    let _a2 = connect_from("127.0.0.2", addr).await;
    wait_open(&r, 2).await;
    let mut a3 = connect_from("127.0.0.2", addr).await;
    assert!(closed_by_server(&mut a3, Duration::from_secs(5)).await);
    assert!(!closed_by_server(&mut a1, Duration::from_millis(200)).await);
    // A client from another address (127.0.0.1) is served over both protocols.
    gbs_works(&r).await;
    foolscap_works(&r).await;
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_first_bytes_are_cut_off_by_the_sniff_timeout() {
    let limits = Limits {
        sniff_timeout_secs: 1,
        ..Limits::default()
    };
    let (r, _d) = daemon(limits).await;
    let mut slow = TcpStream::connect(r.local_addr).await.unwrap();
    // Seven of the eight bytes that tell the protocol, then nothing.
    slow.write_all(b"GET /id").await.unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut slow, Duration::from_secs(10)).await);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    wait_open(&r, 0).await;
    gbs_works(&r).await;
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_tls_and_headers_are_cut_off_by_the_header_timeout() {
    let limits = Limits {
        header_timeout_secs: 1,
        ..Limits::default()
    };
    let (r, _d) = daemon(limits).await;
    // A TLS record header and nothing more: the handshake never completes.
    let mut slow = TcpStream::connect(r.local_addr).await.unwrap();
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut slow, Duration::from_secs(10)).await);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    gbs_works(&r).await;
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foolscap_negotiation_timeout_cuts_off_a_stalled_upgrade() {
    let limits = Limits {
        negotiation_timeout_secs: 1,
        ..Limits::default()
    };
    let (r, _d) = daemon(limits).await;
    let mut slow = TcpStream::connect(r.local_addr).await.unwrap();
    // The upgrade request's first line, and never the blank line that ends it.
    slow.write_all(b"GET /id/abcdefghijklmnopqrstuvwxyz234567 HTTP/1.1\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut slow, Duration::from_secs(10)).await);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    foolscap_works(&r).await;
    r.shutdown(Duration::from_secs(1)).await;
}

fn rtw(si: u8, data: Vec<u8>) -> swampgate::storage::ReadTestWriteRequest {
    use swampgate::storage::*;
    ReadTestWriteRequest {
        storage_index: StorageIndex([si; 16]),
        secrets: MutableSecrets {
            write_enabler: Secret(vec![b'W'; 32]),
            lease: crate::kit::storage::lease(b'R'),
        },
        test_write_vectors: [(
            0,
            TestWriteVectors {
                test: vec![],
                write: vec![WriteVector {
                    offset: 0,
                    data: data.into(),
                }],
                new_length: None,
            },
        )]
        .into_iter()
        .collect(),
        read_vector: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gbs_read_test_write_body_limit_at_and_past_the_boundary() {
    let limits = Limits {
        max_read_test_write_bytes: 4096,
        ..Limits::default()
    };
    let (r, _d) = daemon(limits).await;
    let nurl: Nurl = r.links[0].nurl.parse().unwrap();
    let c = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
    // A body of a little over 3000 bytes (the data plus the CBOR around it) fits.
    assert!(
        c.read_test_write(rtw(1, vec![7; 3000]))
            .await
            .unwrap()
            .success
    );
    // Past 4096: refused (413), nothing written, and the client keeps working.
    let e = c.read_test_write(rtw(2, vec![7; 5000])).await.unwrap_err();
    assert!(
        e.to_string().contains("413") || e.to_string().to_lowercase().contains("large"),
        "{e}"
    );
    assert!(c
        .list_mutable_shares(swampgate::storage::StorageIndex([2; 16]))
        .await
        .unwrap()
        .is_empty());
    gbs_works(&r).await;
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foolscap_string_limit_at_and_past_the_boundary() {
    use swampgate::foolscap::storage::backend::FoolscapBackend;
    use swampgate::storage::*;
    let limits = Limits {
        max_string_bytes: 4096,
        ..Limits::default()
    };
    let (r, _d) = daemon(limits).await;
    let tub = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
    let api = FoolscapBackend::new(tub, Furl::parse(&r.links[0].furl).unwrap());
    // At the limit: a 4096-byte write vector is accepted.
    assert!(
        api.read_test_write(rtw(1, vec![7; 4096]))
            .await
            .unwrap()
            .success
    );
    // Past it: the call fails (a Violation on the wire), nothing is written, and the same
    // connection goes on serving.
    let e = api
        .read_test_write(rtw(2, vec![7; 4097]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::InvalidRequest(_)) && e.to_string().contains("too large"),
        "{e}"
    );
    assert!(api
        .list_mutable_shares(StorageIndex([2; 16]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        api.read_mutable(StorageIndex([1; 16]), 0, 0, 4096)
            .await
            .unwrap()
            .len(),
        4096
    );
    r.shutdown(Duration::from_secs(1)).await;
}
