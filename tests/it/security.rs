//! Refusals a hostile peer meets at the daemon, over both protocols: a client
//! certificate that does not match the TubID its HELLO claims, an upgrade request
//! for another TubID, a wrong swissnum, and tampered upload secrets and write
//! enablers. (Wrong FURL tubid and NURL pin on the dialling side are in
//! `foolscap_interop::tls_pins_the_tubid` and `gbs_loopback::wrong_spki_pin_is_refused`;
//! hostile storage indexes in `store::hostile_storage_indexes_...`.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls_pki_types::ServerName;
use swampgate::daemon::config::Config;
use swampgate::daemon::run::{self, Running};
use swampgate::daemon::state::StateDir;
use swampgate::foolscap::furl::Furl;
use swampgate::foolscap::negotiate::{self as neg, Hello};
use swampgate::foolscap::storage::backend::FoolscapBackend;
use swampgate::foolscap::{tls, Tub, TubConfig};
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::gbs::nurl::Nurl;
use swampgate::identity::Identity;
use swampgate::storage::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(20);

async fn daemon() -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        "listen = \"127.0.0.1:0\"\n[[link]]\nname = \"default\"\nupstream = \"local:shares\"\n",
    )
    .unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let r = run::start(&config, &state).await.unwrap();
    (r, dir)
}

/// Read one `\r\n\r\n`-terminated block (or whatever arrives before EOF).
async fn block<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(T, s.read(&mut b)).await.unwrap() {
            Ok(1) => buf.push(b[0]),
            _ => break,
        }
    }
    buf
}

/// Negotiate by hand up to the server's answer to our HELLO, presenting `cert` and
/// claiming `claimed` as our TubID. Returns that answer and whether the server then
/// closed the connection.
async fn hello_as(r: &Running, cert: &Identity, claimed: &str) -> (String, bool) {
    let furl = Furl::parse(&r.links[0].furl).unwrap();
    let mut tcp = TcpStream::connect(r.local_addr).await.unwrap();
    tcp.write_all(&neg::upgrade_request(&furl.tubid, "127.0.0.1"))
        .await
        .unwrap();
    let resp = block(&mut tcp).await;
    neg::check_upgrade_response(&resp).unwrap();
    let cfg = tls::client_config(cert, &furl.tubid).unwrap();
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let theirs = block(&mut s).await;
    assert!(String::from_utf8_lossy(&theirs).contains("my-tub-id"));
    let hello = Hello::new(claimed, "0123456789abcdef", Some(None));
    s.write_all(&hello.encode()).await.unwrap();
    let answer = String::from_utf8_lossy(&block(&mut s).await).into_owned();
    let mut rest = BytesMut::new();
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read_buf(&mut rest)).await,
        Ok(Ok(0)) | Ok(Err(_))
    );
    (answer, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_that_does_not_match_its_claimed_tubid_is_refused() {
    let (r, _d) = daemon().await;
    let server_tubid = Furl::parse(&r.links[0].furl).unwrap().tubid;
    // Clients whose TubIDs sort below the server's, so the server is the master and
    // answers a good HELLO with a DECISION.
    let low = || loop {
        let id = Identity::generate().unwrap();
        if id.tubid() < server_tubid.as_str() {
            return id;
        }
    };
    let (a, b) = (low(), low());
    // Control: the honest HELLO gets a DECISION and the connection stays open.
    let (answer, closed) = hello_as(&r, &a, a.tubid()).await;
    assert!(answer.contains("current-connection"), "{answer:?}");
    assert!(!answer.contains("error"), "{answer:?}");
    assert!(!closed);
    // Certificate of A, claiming B: an error block (foolscap's generic one: the
    // details stay in the server's log), then close.
    let (answer, closed) = hello_as(&r, &a, b.tubid()).await;
    assert!(answer.contains("error: "), "{answer:?}");
    assert!(!answer.contains("current-connection"), "{answer:?}");
    assert!(closed);
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_request_for_another_tubid_is_refused_in_plaintext() {
    let (r, _d) = daemon().await;
    let other = Identity::generate().unwrap();
    let mut tcp = TcpStream::connect(r.local_addr).await.unwrap();
    tcp.write_all(&neg::upgrade_request(other.tubid(), "127.0.0.1"))
        .await
        .unwrap();
    let resp = block(&mut tcp).await;
    let e = neg::check_upgrade_response(&resp).unwrap_err();
    assert!(e.to_string().contains("unknown TubID"), "{e}");
    r.shutdown(Duration::from_secs(1)).await;
}

fn gbs(r: &Running, swissnum: Option<&str>) -> Arc<dyn StorageApi> {
    let mut nurl: Nurl = r.links[0].nurl.parse().unwrap();
    if let Some(s) = swissnum {
        nurl.swissnum = s.to_string();
    }
    Arc::new(GbsClient::new(&nurl, ClientConfig::default()).unwrap())
}

fn foolscap(r: &Running, swissnum: Option<&str>) -> Arc<dyn StorageApi> {
    let mut furl = Furl::parse(&r.links[0].furl).unwrap();
    if let Some(s) = swissnum {
        furl.swissnum = s.to_string();
    }
    let tub = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
    Arc::new(FoolscapBackend::new(tub, furl))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_swissnum_gets_nothing_over_either_protocol() {
    let (r, _d) = daemon().await;
    let wrong = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (name, api) in [
        ("gbs", gbs(&r, Some(wrong))),
        ("foolscap", foolscap(&r, Some(wrong))),
    ] {
        let e = tokio::time::timeout(T, api.version()).await.unwrap();
        assert!(e.is_err(), "{name}: a wrong swissnum was served");
        let e = tokio::time::timeout(T, api.list_immutable_shares(StorageIndex([1; 16])))
            .await
            .unwrap();
        assert!(e.is_err(), "{name}: a wrong swissnum was served");
    }
    // The right one works on both.
    for api in [gbs(&r, None), foolscap(&r, None)] {
        tokio::time::timeout(T, api.version())
            .await
            .unwrap()
            .unwrap();
    }
    r.shutdown(Duration::from_secs(1)).await;
}

async fn tampered_secrets_are_refused(api: Arc<dyn StorageApi>, si: StorageIndex) {
    let upload = Secret(vec![b'U'; 32]);
    let tampered = Secret(vec![b'X'; 32]);
    let r = api
        .allocate_buckets(AllocateRequest {
            storage_index: si,
            lease: crate::kit::storage::lease(b'R'),
            upload_secret: upload.clone(),
            share_numbers: [0].into_iter().collect(),
            allocated_size: 8,
        })
        .await
        .unwrap();
    assert_eq!(r.allocated.len(), 1);
    // A write or an abort with another upload secret is refused and changes nothing.
    let e = api
        .write_immutable(si, 0, &tampered, 0, Bytes::from_static(b"evil!!!!"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::WrongUploadSecret),
        "write with a tampered upload secret: {e}"
    );
    let e = api.abort_immutable(si, 0, &tampered).await.unwrap_err();
    assert!(
        matches!(e, StorageError::WrongUploadSecret),
        "abort with a tampered upload secret: {e}"
    );
    // The real upload goes on and its bytes are the ones read back.
    let p = api
        .write_immutable(si, 0, &upload, 0, Bytes::from_static(b"good!!!!"))
        .await
        .unwrap();
    if !p.complete() {
        api.close_immutable(si, 0, &upload).await.unwrap();
    }
    assert_eq!(
        api.read_immutable(si, 0, 0, 8).await.unwrap(),
        Bytes::from_static(b"good!!!!")
    );

    // Mutable: a write with another write enabler is refused; the data is unchanged.
    let msi = StorageIndex([si.0[0] ^ 0xff; 16]);
    let rtw = |we: &Secret, data: &'static [u8]| ReadTestWriteRequest {
        storage_index: msi,
        secrets: MutableSecrets {
            write_enabler: we.clone(),
            lease: crate::kit::storage::lease(b'R'),
        },
        test_write_vectors: BTreeMap::from([(
            0,
            TestWriteVectors {
                test: vec![],
                write: vec![WriteVector {
                    offset: 0,
                    data: Bytes::from_static(data),
                }],
                new_length: None,
            },
        )]),
        read_vector: vec![],
    };
    let we = Secret(vec![b'W'; 32]);
    assert!(
        api.read_test_write(rtw(&we, b"mine"))
            .await
            .unwrap()
            .success
    );
    let e = api
        .read_test_write(rtw(&Secret(vec![b'V'; 32]), b"evil"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::BadWriteEnabler(_)),
        "tampered write enabler: {e}"
    );
    assert_eq!(
        api.read_mutable(msi, 0, 0, 4).await.unwrap(),
        Bytes::from_static(b"mine")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_upload_secrets_and_write_enablers_are_refused_over_either_protocol() {
    let (r, _d) = daemon().await;
    tampered_secrets_are_refused(gbs(&r, None), StorageIndex([0x11; 16])).await;
    tampered_secrets_are_refused(foolscap(&r, None), StorageIndex([0x22; 16])).await;
    r.shutdown(Duration::from_secs(1)).await;
}

/// An adopted node's secrets readable by every user are refused, naming the file
/// and the fix; as Tahoe leaves them (files 0644 inside a 0700 `private/`) they are
/// adopted, and nothing of the key is copied into the state dir.
#[test]
fn world_readable_node_secrets_are_refused() {
    use crate::kit::*;
    use std::os::unix::fs::PermissionsExt;
    let node = storage_node(StorageOptions::foolscap_only());
    let private = node.dir().join("private");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&private) & 0o007,
        0,
        "Tahoe makes private/ closed to others"
    );
    let dir = tempfile::tempdir().unwrap();
    let bridge = |state: &str| {
        let mut cmd = swampgate_command();
        cmd.args([
            "bridge",
            "--upstream",
            node.furl(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--adopt")
        .arg(node.dir())
        .args(["--state-dir", state])
        .current_dir(dir.path());
        cmd
    };
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = run("refused", bridge("st"), dir.path(), CLI_TIMEOUT);
    assert_eq!(f.status.code(), Some(2), "{}", f.stderr);
    assert!(
        f.stderr.contains("is readable by every user") && f.stderr.contains("chmod o-rwx"),
        "{}",
        f.stderr
    );
    assert!(!dir.path().join("st/links").exists());

    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut p = Process::spawn("swampgate", bridge("st"), dir.path());
    p.wait_for_line("link default furl ", STARTUP_TIMEOUT);
    // The private key's base64 lines after the first (which holds the encoding's
    // structure, common to keys of one kind): pure key material.
    let pem = std::fs::read_to_string(private.join("node.pem")).unwrap();
    let key_lines: Vec<&str> = pem
        .lines()
        .skip_while(|l| !l.contains("BEGIN PRIVATE KEY"))
        .skip(2)
        .take_while(|l| !l.starts_with("-----"))
        .filter(|l| l.len() >= 32)
        .collect();
    assert!(key_lines.len() > 5, "{pem}");
    for entry in walkdir(&dir.path().join("st")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).to_string();
        assert!(
            !key_lines.iter().any(|l| text.contains(l)),
            "{} holds part of the node's key",
            entry.display()
        );
    }
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
