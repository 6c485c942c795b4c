//! `node:NODEDIR` upstreams: which protocol to bridge a Tahoe storage node with, and
//! why. [`NodeDir::serving`] decides (the node's configuration, confirmed on its
//! port); this module turns that into the link's upstream and logs it.

use std::path::Path;

use tracing::{info, warn};

use super::config::{Origin, Upstream};
use super::run::DaemonError;
use crate::foolscap::furl::Furl;
use crate::nodedir::NodeDir;

/// The upstream for link `name`, bridging the node in `dir`, with the protocol
/// chosen and the reason logged. Errors name the link's upstream as `origin` says.
pub async fn resolve(origin: &Origin, name: &str, dir: &Path) -> Result<Upstream, DaemonError> {
    let node = NodeDir::load(dir).map_err(|e| origin.error(e))?;
    for w in &node.warnings {
        warn!(link = %name, node = %dir.display(), "{w}");
    }
    let serving = node.serving().await.map_err(|e| origin.error(e))?;
    let (upstream, protocol, url) = match serving.gbs {
        Some(nurl) => {
            let url = nurl.redacted();
            (Upstream::Gbs(nurl), "GBS", url)
        }
        None => {
            let furl = Furl::parse(&node.furl())
                .map_err(|e| origin.error(format!("the node's FURL: {e}")))?;
            let url = furl.redacted();
            (Upstream::Foolscap(furl), "Foolscap", url)
        }
    };
    info!(
        link = %name,
        node = %dir.display(),
        upstream = %url,
        "link {name}: node:{} bridged over {protocol}: {}",
        dir.display(),
        serving.why
    );
    Ok(upstream)
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
        match resolve(&Origin::field("link \"a\".upstream"), "a", d.path())
            .await
            .unwrap()
        {
            Upstream::Gbs(n) => {
                assert_eq!(n.port, port);
                assert_eq!(n.spki_hash, id.spki_hash());
            }
            other => panic!("{other:?}"),
        }
        // Another key on the node's port: refused, not bridged.
        let port = tls_port(&Identity::generate().unwrap()).await;
        let (d, _) = node_at(port, "");
        let e = resolve(&Origin::field("link \"a\".upstream"), "a", d.path())
            .await
            .unwrap_err()
            .to_string();
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
        match resolve(&Origin::field("link \"a\".upstream"), "a", d.path())
            .await
            .unwrap()
        {
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
            resolve(&Origin::field("link \"a\".upstream"), "a", d.path())
                .await
                .unwrap(),
            Upstream::Gbs(_)
        ));
        let (d, _) = node_at(port, "force_foolscap = true\n");
        assert!(matches!(
            resolve(&Origin::field("link \"a\".upstream"), "a", d.path())
                .await
                .unwrap(),
            Upstream::Foolscap(_)
        ));
        let origin = Origin {
            field: "link \"a\".upstream".into(),
            at: crate::daemon::config::At::Value {
                line: 3,
                column: 12,
            },
        };
        let e = resolve(&origin, "a", Path::new("/nonexistent"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("link \"a\".upstream: /nonexistent"), "{e}");
        assert!(e.ends_with(" (line 3, column 12)"), "{e}");
    }
}
