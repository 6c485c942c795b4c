//! `node:NODEDIR` upstreams: which protocol to bridge a Tahoe storage node with, and
//! why.
//!
//! The node's directory ([`crate::nodedir`]) says what the node is configured to
//! serve. When it allows HTTP storage (GBS), the node's port is asked for a TLS
//! handshake with the certificate of `private/node.pem` before GBS is picked: a node
//! dir does not tell which Tahoe runs it, and Tahoe before 1.19 serves only Foolscap
//! on the same port with the same kind of configuration. A node that cannot be
//! reached now is taken at its configuration's word (the link retries, as for any
//! upstream that is down).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::config::Upstream;
use super::run::{cfg, DaemonError};
use crate::foolscap::furl::Furl;
use crate::gbs::nurl::Nurl;
use crate::identity::{spki_hash_of_certificate, Pin, PinnedCertVerifier};
use crate::nodedir::NodeDir;

/// How long the TLS probe may take, connection included.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The upstream for link `i` (`name`), bridging the node in `dir`, with the
/// protocol chosen and the reason logged.
pub async fn resolve(i: usize, name: &str, dir: &Path) -> Result<Upstream, DaemonError> {
    let field = format!("link[{i}].upstream");
    let node = NodeDir::load(dir).map_err(|e| cfg(&field, e.to_string()))?;
    for w in &node.warnings {
        warn!(link = %name, node = %dir.display(), "{w}");
    }
    let gbs = node.gbs();
    let foolscap = |why: String| -> Result<(Upstream, String), DaemonError> {
        let furl =
            Furl::parse(&node.furl()).map_err(|e| cfg(&field, format!("the node's FURL: {e}")))?;
        Ok((Upstream::Foolscap(furl), why))
    };
    let (upstream, why) = if !gbs.served {
        foolscap(gbs.why)?
    } else {
        match node.dialable_nurl() {
            None => foolscap(
                "the node serves HTTP, but only at pb+tor:// NURLs, which swampgate cannot dial"
                    .into(),
            )?,
            Some(nurl) => match probe(&nurl).await {
                Probe::Tls => (Upstream::Gbs(nurl), gbs.why),
                Probe::Unreachable(e) => (
                    Upstream::Gbs(nurl),
                    format!(
                        "{}; the node does not answer now ({e}): the link retries",
                        gbs.why
                    ),
                ),
                Probe::NotTls(e) => foolscap(format!(
                    "tahoe.cfg allows HTTP storage, but {}:{} answers no TLS handshake ({e}): \
                     a Tahoe before 1.19, which serves only Foolscap",
                    nurl.host, nurl.port
                ))?,
                Probe::OtherKey(e) => {
                    return Err(cfg(
                        &field,
                        format!(
                            "{}:{} serves a certificate other than {}'s private/node.pem ({e}): \
                             is another node listening there?",
                            nurl.host,
                            nurl.port,
                            dir.display()
                        ),
                    ))
                }
            },
        }
    };
    let (protocol, url) = match &upstream {
        Upstream::Gbs(n) => ("GBS", n.redacted()),
        Upstream::Foolscap(f) => ("Foolscap", f.redacted()),
        _ => unreachable!("resolve only picks GBS or Foolscap"),
    };
    info!(
        link = %name,
        node = %dir.display(),
        upstream = %url,
        "link {name}: node:{} bridged over {protocol}: {why}",
        dir.display()
    );
    Ok(upstream)
}

/// What the node's port answered to a TLS handshake.
enum Probe {
    /// A handshake with the node's certificate: it serves GBS.
    Tls,
    /// No connection: the node is down.
    Unreachable(String),
    /// A connection, but no TLS: it speaks only Foolscap.
    NotTls(String),
    /// TLS with another certificate.
    OtherKey(String),
}

async fn probe(nurl: &Nurl) -> Probe {
    let connect = TcpStream::connect((nurl.host.as_str(), nurl.port));
    let tcp = match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Probe::Unreachable(e.to_string()),
        Err(_) => return Probe::Unreachable(format!("no connection within {PROBE_TIMEOUT:?}")),
    };
    let Ok(name) = ServerName::try_from(nurl.host.clone()) else {
        return Probe::NotTls(format!("{} is not a usable host name", nurl.host));
    };
    // Any certificate completes the handshake (nothing secret is sent); which one
    // the node serves is compared afterwards, to tell "no TLS" from "another key".
    let config = rustls::ClientConfig::builder_with_provider(crate::gbs::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier::new(Pin::Any)))
        .with_no_client_auth();
    let tls = TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(PROBE_TIMEOUT, tls.connect(name, tcp)).await {
        Ok(Ok(stream)) => {
            let served = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| spki_hash_of_certificate(c));
            match served {
                Some(Ok(h)) if h == nurl.spki_hash => Probe::Tls,
                Some(Ok(h)) => {
                    Probe::OtherKey(format!("SPKI hash {h}, not node.pem's {}", nurl.spki_hash))
                }
                Some(Err(e)) => Probe::OtherKey(e),
                None => Probe::OtherKey("no certificate".into()),
            }
        }
        Ok(Err(e)) => Probe::NotTls(e.to_string()),
        Err(_) => Probe::NotTls(format!("no handshake within {PROBE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gbs::tls::TlsIdentity;
    use crate::identity::Identity;
    use crate::nodedir::tests::{node_dir, CFG};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A node dir whose location is `127.0.0.1:port`, and its identity.
    fn node_at(port: u16, extra: &str) -> (tempfile::TempDir, Identity) {
        let cfg = CFG.replace("3457", &port.to_string()) + extra;
        node_dir(&cfg, &format!("tcp:127.0.0.1:{port}"))
    }

    /// A port that serves TLS with `id`'s certificate to every connection.
    async fn tls_port(id: &Identity) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        serve_tls(id, l);
        port
    }

    /// Serve TLS with `id`'s certificate to every connection `l` accepts.
    fn serve_tls(id: &Identity, l: TcpListener) {
        let acceptor = TlsIdentity::from_identity(id).tls_acceptor().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let a = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = a.accept(tcp).await {
                        let _ = s.read(&mut [0u8; 1]).await;
                    }
                });
            }
        });
    }

    #[tokio::test]
    async fn a_node_that_answers_tls_with_its_key_is_bridged_over_gbs() {
        // The node dir's identity serves TLS on the port its location names.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (d, id) = node_at(port, "");
        serve_tls(&id, l);
        match resolve(0, "a", d.path()).await.unwrap() {
            Upstream::Gbs(n) => {
                assert_eq!(n.port, port);
                assert_eq!(n.spki_hash, id.spki_hash());
            }
            other => panic!("{other:?}"),
        }
        // Another key on the node's port: refused, not bridged.
        let port = tls_port(&Identity::generate().unwrap()).await;
        let (d, _) = node_at(port, "");
        let e = resolve(0, "a", d.path()).await.unwrap_err().to_string();
        assert!(e.contains("serves a certificate other than"), "{e}");
    }

    #[tokio::test]
    async fn a_port_without_tls_is_an_older_tahoe_bridged_over_foolscap() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = l.accept().await {
                // What a Foolscap listener says to bytes that are no negotiation.
                let _ = tcp.read(&mut [0u8; 512]).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
                    .await;
            }
        });
        let (d, id) = node_at(port, "");
        match resolve(0, "a", d.path()).await.unwrap() {
            Upstream::Foolscap(f) => {
                assert_eq!(f.tubid, id.tubid());
                assert_eq!(f.hints.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn force_foolscap_and_a_node_that_is_down() {
        // Nothing listens on a port just released.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let (d, _) = node_at(port, "");
        assert!(matches!(
            resolve(0, "a", d.path()).await.unwrap(),
            Upstream::Gbs(_)
        ));
        let (d, _) = node_at(port, "force_foolscap = true\n");
        assert!(matches!(
            resolve(0, "a", d.path()).await.unwrap(),
            Upstream::Foolscap(_)
        ));
        let e = resolve(3, "a", Path::new("/nonexistent"))
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("link[3].upstream: /nonexistent"),
            "{e}"
        );
    }
}
