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
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::config::Upstream;
use super::run::{cfg, DaemonError};
use crate::foolscap::furl::Furl;
use crate::gbs::nurl::Nurl;
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
    let tls = TlsConnector::from(crate::gbs::tls::client_config(nurl.spki_hash_bytes()));
    match tokio::time::timeout(PROBE_TIMEOUT, tls.connect(name, tcp)).await {
        Ok(Ok(_)) => Probe::Tls,
        Ok(Err(e)) => {
            let bad_cert = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            if bad_cert {
                Probe::OtherKey(e.to_string())
            } else {
                Probe::NotTls(e.to_string())
            }
        }
        Err(_) => Probe::NotTls(format!("no handshake within {PROBE_TIMEOUT:?}")),
    }
}
