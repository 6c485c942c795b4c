//! rustls configuration for Foolscap: no web PKI, the peer is pinned by the TubID
//! (SHA-1 of its whole DER certificate) with [`PinnedCertVerifier`].
//!
//! Foolscap's certificates are X.509 **v1**, which webpki refuses; the verifier checks
//! handshake signatures against the raw SubjectPublicKeyInfo instead, and our own
//! (possibly v1) certificate is served through a resolver holding
//! [`Identity::certified_key`]. Only TLS 1.3 is offered: every foolscap 24.x peer
//! supports it, and rustls has no raw-key helper for TLS 1.2.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, SignatureScheme};

use crate::identity::{Identity, Pin, PinnedCertVerifier};

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OneCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The config for dialling a Tub whose TubID is `expected_tubid`, presenting `id`.
pub fn client_config(
    id: &Identity,
    expected_tubid: &str,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier::new(Pin::TubId(
            expected_tubid.to_string(),
        ))))
        .with_client_cert_resolver(Arc::new(OneCert(id.certified_key()?)));
    Ok(Arc::new(cfg))
}

/// The config for accepting Foolscap connections as `id`. A client certificate is asked
/// for without requiring one (as foolscap does) and any is accepted here: the
/// negotiation layer checks that its hash equals the TubID the client claims.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg =
        rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(PinnedCertVerifier::new(Pin::Any)))
            .with_cert_resolver(Arc::new(OneCert(id.certified_key()?)));
    // Foolscap turns session tickets off; nothing resumes.
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::tubid_of;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn handshake(
        server_id: &Identity,
        client_id: &Identity,
        expect: &str,
    ) -> Result<Vec<u8>, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(server_id).unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c[0].to_vec())
                .unwrap_or_default();
            tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
            Ok::<_, String>(cert)
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::IpAddress(addr.ip().into());
        let connector = tokio_rustls::TlsConnector::from(client_config(client_id, expect).unwrap());
        let r = async {
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        }
        .await;
        let seen = server.await.unwrap();
        r.and(seen)
    }

    #[tokio::test]
    async fn pins_the_expected_tubid_and_sees_the_client_cert() {
        let server = Identity::generate().unwrap();
        let client = Identity::generate().unwrap();
        let seen = handshake(&server, &client, server.tubid()).await.unwrap();
        assert_eq!(tubid_of(&seen), client.tubid());
    }

    #[tokio::test]
    async fn refuses_a_server_with_another_tubid() {
        let server = Identity::generate().unwrap();
        let client = Identity::generate().unwrap();
        let other = Identity::generate().unwrap();
        let e = handshake(&server, &client, other.tubid())
            .await
            .unwrap_err();
        assert!(e.contains("connected to the wrong Tub"), "{e}");
    }
}
