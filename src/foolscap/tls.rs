//! rustls configuration for Foolscap: no web PKI, the peer is pinned by the TubID
//! (SHA-1 of its whole DER certificate).
//!
//! Foolscap's certificates are X.509 **v1**, which webpki refuses
//! (`UnsupportedCertVersion`), so handshake signatures are checked against the raw
//! SubjectPublicKeyInfo instead, and our own (possibly v1) certificate is served
//! through a resolver built with `CertifiedKey::new`. Only TLS 1.3 is offered: every
//! foolscap 24.x peer supports it, and rustls has no raw-key helper for TLS 1.2.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{ring as provider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, Error as TlsError, SignatureScheme};

use super::identity::{tubid_of, TubIdentity};

fn algs() -> WebPkiSupportedAlgorithms {
    provider::default_provider().signature_verification_algorithms
}

fn verify_raw(
    msg: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| TlsError::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let spki = SubjectPublicKeyInfoDer::from(parsed.tbs_certificate.subject_pki.raw.to_vec());
    rustls::crypto::verify_tls13_signature_with_raw_key(msg, &spki, dss, &algs())
}

fn certified_key(id: &TubIdentity) -> Result<Arc<CertifiedKey>, TlsError> {
    let signer = provider::sign::any_supported_type(id.key_der())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![id.cert_der().clone()],
        signer,
    )))
}

/// Pins the server's certificate to the TubID we dialled.
#[derive(Debug)]
struct TubIdVerifier {
    expected: String,
}

impl ServerCertVerifier for TubIdVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let got = tubid_of(end_entity);
        if got == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(TlsError::General(format!(
                "connected to the wrong Tub: expected tubid {}, the server's certificate has tubid {got}",
                self.expected
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(TlsError::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_raw(msg, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algs().supported_schemes()
    }
}

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

/// Asks for a client certificate without requiring one (as foolscap does); any
/// self-signed certificate is accepted here, and the negotiation layer checks that
/// its hash equals the TubID the client claims.
#[derive(Debug)]
struct AnyTubClient;

impl ClientCertVerifier for AnyTubClient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(TlsError::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_raw(msg, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algs().supported_schemes()
    }
}

/// The config for dialling a Tub whose TubID is `expected_tubid`, presenting `id`.
pub fn client_config(
    id: &TubIdentity,
    expected_tubid: &str,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TubIdVerifier {
            expected: expected_tubid.to_string(),
        }))
        .with_client_cert_resolver(Arc::new(OneCert(certified_key(id)?)));
    Ok(Arc::new(cfg))
}

/// The config for accepting Foolscap connections as `id`.
pub fn server_config(id: &TubIdentity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg =
        rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(AnyTubClient))
            .with_cert_resolver(Arc::new(OneCert(certified_key(id)?)));
    // Foolscap turns session tickets off; nothing resumes.
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}
