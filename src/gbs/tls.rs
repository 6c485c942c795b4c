//! TLS for GBS: the server's identity and the client's SPKI pinning.
//!
//! Tahoe nodes serve GBS with their Foolscap certificate: self-signed, RSA-2048,
//! X.509 **v1**. webpki (and so rustls's stock helpers) refuse v1 certificates, so:
//! - the server hands rustls a [`CertifiedKey`] directly (no certificate parsing or
//!   key/certificate consistency check that would go through webpki);
//! - the client pins the server with [`PinnedCertVerifier`] and a [`Pin::SpkiHash`]:
//!   nothing about the certificate is verified but the SHA-256 of its
//!   SubjectPublicKeyInfo, which must equal the NURL's hash (no web PKI, no names, no
//!   validity dates — Tahoe accepts expired and not-yet-valid certificates too), and
//!   the handshake signature is checked against that SPKI. The client therefore
//!   speaks TLS 1.3 only, which every Tahoe 1.20 node offers.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::identity::{certified_key, spki_hash_of_certificate, Identity, Pin, PinnedCertVerifier};

/// The crypto provider everything here uses (ring), without touching the process-wide
/// default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's TLS certificate chain and private key.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("spki_hash", &self.spki_hash().unwrap_or_default())
            .field("key", &"<secret>")
            .finish()
    }
}

impl TlsIdentity {
    /// From PEM text holding one or more certificates and one private key, in any
    /// order: a Tahoe `private/node.pem` (certificate then key) works as is.
    pub fn from_pem(pem_text: &[u8]) -> Result<TlsIdentity, String> {
        let blocks = pem::parse_many(pem_text).map_err(|e| format!("bad PEM: {e}"))?;
        let mut certs = Vec::new();
        let mut key = None;
        for b in blocks {
            match b.tag() {
                "CERTIFICATE" => certs.push(CertificateDer::from(b.contents().to_vec())),
                "PRIVATE KEY" => {
                    key = Some(PrivateKeyDer::Pkcs8(b.contents().to_vec().into()));
                }
                "RSA PRIVATE KEY" => {
                    key = Some(PrivateKeyDer::Pkcs1(b.contents().to_vec().into()));
                }
                "EC PRIVATE KEY" => {
                    key = Some(PrivateKeyDer::Sec1(b.contents().to_vec().into()));
                }
                _ => {}
            }
        }
        if certs.is_empty() {
            return Err("no CERTIFICATE in the PEM".into());
        }
        let key = key.ok_or("no PRIVATE KEY in the PEM")?;
        let id = TlsIdentity {
            cert_chain: certs,
            key: Arc::new(key),
        };
        id.certified_key()?;
        id.spki_hash()?;
        Ok(id)
    }

    /// The TLS identity of a node's [`Identity`]: GBS and Foolscap serve the same
    /// certificate, as a Tahoe node does.
    pub fn from_identity(id: &Identity) -> TlsIdentity {
        TlsIdentity {
            cert_chain: vec![id.cert_der().clone()],
            key: Arc::new(id.key_der().clone_key()),
        }
    }

    /// A fresh self-signed ECDSA P-256 identity.
    pub fn generate() -> TlsIdentity {
        let key = rcgen::KeyPair::generate().expect("generating a P-256 key");
        let cert = rcgen::CertificateParams::new(vec!["swampgate".into()])
            .expect("static parameters")
            .self_signed(&key)
            .expect("self-signing");
        TlsIdentity {
            cert_chain: vec![cert.der().clone()],
            key: Arc::new(PrivateKeyDer::Pkcs8(key.serialize_der().into())),
        }
    }

    /// The SPKI hash of the leaf certificate: the `SPKIHASH` of this server's NURL.
    pub fn spki_hash(&self) -> Result<String, String> {
        let leaf = self.cert_chain.first().ok_or("empty certificate chain")?;
        spki_hash_of_certificate(leaf)
    }

    fn certified_key(&self) -> Result<Arc<CertifiedKey>, String> {
        certified_key(self.cert_chain.clone(), &self.key)
            .map_err(|e| format!("unusable private key: {e}"))
    }

    /// A rustls server configuration presenting this identity, TLS 1.2 and 1.3, ALPN
    /// `http/1.1`, no client certificates (Tahoe asks for none either).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                self.certified_key()?,
            )));
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl TlsIdentity {
    /// A TLS acceptor for [`GbsServer::serve_tls_connection`](super::server::GbsServer::serve_tls_connection),
    /// for listeners that accept connections themselves.
    pub fn tls_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        Ok(tokio_rustls::TlsAcceptor::from(self.server_config()?))
    }
}

/// A rustls client configuration pinned to one SPKI hash: TLS 1.3, ALPN `http/1.1`,
/// no client certificate.
pub fn client_config(expected_hash: [u8; 32]) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier::new(Pin::SpkiHash(
            expected_hash,
        ))))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_pem() {
        let id = TlsIdentity::generate();
        let mut text = pem::encode(&pem::Pem::new("CERTIFICATE", id.cert_chain[0].to_vec()));
        let key = match &*id.key {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => unreachable!(),
        };
        text.push_str(&pem::encode(&pem::Pem::new("PRIVATE KEY", key)));
        let back = TlsIdentity::from_pem(text.as_bytes()).unwrap();
        assert_eq!(back.spki_hash(), id.spki_hash());
        assert!(back.server_config().is_ok());
        assert!(!format!("{back:?}").contains("PRIVATE"));
        assert!(TlsIdentity::from_pem(b"nothing").is_err());
    }
}
