//! Whether a node's port serves GBS: a TLS handshake, and the certificate it shows.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::gbs::nurl::Nurl;
use crate::identity::{spki_hash_of_certificate, Pin, PinnedCertVerifier};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the handshake may take. A Foolscap-only Tahoe says nothing to a TLS
/// ClientHello (it waits for a negotiation request), so this is how long telling it
/// apart takes; a Tahoe that serves TLS answers in milliseconds.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node's port answered to a TLS handshake.
pub enum Probe {
    /// A handshake with the node's certificate: it serves GBS.
    Tls,
    /// No connection: the node is down.
    Unreachable(String),
    /// A connection, but no TLS: it speaks only Foolscap.
    NotTls(String),
    /// TLS with another certificate.
    OtherKey(String),
}

/// Connect to `nurl`'s address and try a TLS handshake; compare the certificate
/// served with the NURL's SPKI hash.
pub async fn probe(nurl: &Nurl) -> Probe {
    let connect = TcpStream::connect((nurl.host.as_str(), nurl.port));
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Probe::Unreachable(e.to_string()),
        Err(_) => return Probe::Unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")),
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
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(name, tcp)).await {
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
        Err(_) => Probe::NotTls(format!("no handshake within {HANDSHAKE_TIMEOUT:?}")),
    }
}
