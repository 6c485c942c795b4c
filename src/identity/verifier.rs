//! The one rustls certificate verifier both protocols use: no web PKI, no names, no
//! validity dates (Tahoe and foolscap accept expired and not-yet-valid certificates
//! too); the peer's certificate is accepted when it matches a [`Pin`].
//!
//! Tahoe's certificates are X.509 **v1**, which webpki refuses
//! (`UnsupportedCertVersion`), so the certificate is parsed with `x509-parser` and the
//! handshake signature is checked against its raw SubjectPublicKeyInfo with
//! [`rustls::crypto::verify_tls13_signature_with_raw_key`]. rustls has no such helper
//! for TLS 1.2, so configurations using this verifier offer TLS 1.3 only (every
//! foolscap 24.x peer and every Tahoe 1.20 node supports it).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error as TlsError, SignatureScheme};
use subtle::ConstantTimeEq;

use super::{spki_digest, spki_hash_of_spki, spki_of_certificate, tubid_of};

/// What the peer's certificate must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Foolscap: the tubid of a FURL, base32 of SHA-1 over the whole DER certificate
    /// (compared as text with [`tubid_of`]).
    TubId(String),
    /// GBS: the SPKI hash of a NURL, SHA-256 over the certificate's
    /// SubjectPublicKeyInfo (raw bytes, see [`spki_digest`]).
    SpkiHash([u8; 32]),
    /// Any certificate; the handshake signature is still checked against it. A
    /// Foolscap server accepts any client certificate this way and its negotiation
    /// layer then checks the certificate against the tubid the client claims.
    Any,
}

/// Which side of the connection the checked certificate belongs to (for messages).
#[derive(Clone, Copy)]
enum Peer {
    Server,
    Client,
}

/// Accepts the peer whose certificate matches its [`Pin`], as a server verifier
/// (client side) or as a client verifier (server side).
///
/// As a client verifier it asks for a client certificate; one is required unless the
/// pin is [`Pin::Any`] (foolscap asks without requiring).
#[derive(Debug)]
pub struct PinnedCertVerifier {
    pin: Pin,
    algs: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    pub fn new(pin: Pin) -> PinnedCertVerifier {
        PinnedCertVerifier {
            pin,
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    fn check(&self, cert: &CertificateDer<'_>, peer: Peer) -> Result<(), TlsError> {
        match (&self.pin, peer) {
            (Pin::Any, _) => Ok(()),
            (Pin::TubId(expected), _) => {
                let got = tubid_of(cert);
                if bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
                    return Ok(());
                }
                Err(TlsError::General(match peer {
                    Peer::Server => format!(
                        "connected to the wrong Tub: expected tubid {expected}, the server's certificate has tubid {got}"
                    ),
                    Peer::Client => format!(
                        "the client's certificate has tubid {got}, not the pinned {expected}"
                    ),
                }))
            }
            (Pin::SpkiHash(expected), _) => {
                let spki = spki_of_certificate(cert).map_err(TlsError::General)?;
                if bool::from(spki_digest(spki).ct_eq(expected)) {
                    return Ok(());
                }
                let expected = data_encoding::BASE64URL_NOPAD.encode(expected);
                let got = spki_hash_of_spki(spki);
                Err(TlsError::General(match peer {
                    Peer::Server => format!(
                        "server certificate SPKI hash {got} does not match the NURL's pinned {expected}"
                    ),
                    Peer::Client => format!(
                        "client certificate SPKI hash {got} does not match the pinned {expected}"
                    ),
                }))
            }
        }
    }

    fn verify_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let spki = spki_of_certificate(cert)
            .map_err(|_| TlsError::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.algs,
        )
    }
}

fn no_tls12() -> Result<HandshakeSignatureValid, TlsError> {
    // Never reached: configurations using this verifier enable TLS 1.3 only.
    Err(TlsError::General("TLS 1.2 is not offered".into()))
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        self.check(end_entity, Peer::Server)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.pin != Pin::Any
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        self.check(end_entity, Peer::Client)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Identity;
    use super::*;

    const V1_CERT: &str = include_str!("testdata/foolscap_v1_cert.pem");

    fn v1_cert() -> CertificateDer<'static> {
        CertificateDer::from(pem::parse(V1_CERT).unwrap().into_contents())
    }

    fn as_server(v: &PinnedCertVerifier, cert: &CertificateDer<'_>) -> Result<(), String> {
        let name = ServerName::try_from("example.org").unwrap();
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn as_client(v: &PinnedCertVerifier, cert: &CertificateDer<'_>) -> Result<(), String> {
        v.verify_client_cert(cert, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn spki_pin(cert: &CertificateDer<'_>) -> Pin {
        Pin::SpkiHash(spki_digest(spki_of_certificate(cert).unwrap()))
    }

    #[test]
    fn accepts_the_pinned_certificate_of_either_kind_v1_included() {
        let id = Identity::generate().unwrap();
        let v1 = v1_cert();
        for cert in [id.cert_der().clone(), v1] {
            for pin in [Pin::TubId(tubid_of(&cert)), spki_pin(&cert), Pin::Any] {
                let v = PinnedCertVerifier::new(pin);
                as_server(&v, &cert).unwrap();
                as_client(&v, &cert).unwrap();
            }
        }
    }

    #[test]
    fn refuses_a_certificate_whose_tubid_does_not_match() {
        let pinned = Identity::generate().unwrap();
        let v = PinnedCertVerifier::new(Pin::TubId(pinned.tubid().to_string()));
        for cert in [Identity::generate().unwrap().cert_der().clone(), v1_cert()] {
            let e = as_server(&v, &cert).unwrap_err();
            assert!(e.contains("connected to the wrong Tub"), "{e}");
            assert!(e.contains(pinned.tubid()), "{e}");
            assert!(e.contains(&tubid_of(&cert)), "{e}");
            let e = as_client(&v, &cert).unwrap_err();
            assert!(e.contains(pinned.tubid()), "{e}");
        }
        assert!(v.client_auth_mandatory());
    }

    #[test]
    fn refuses_a_certificate_whose_spki_hash_does_not_match() {
        let pinned = Identity::generate().unwrap();
        let v = PinnedCertVerifier::new(spki_pin(pinned.cert_der()));
        for cert in [Identity::generate().unwrap().cert_der().clone(), v1_cert()] {
            let e = as_server(&v, &cert).unwrap_err();
            assert!(e.contains("does not match the NURL's pinned"), "{e}");
            assert!(e.contains(&pinned.spki_hash()), "{e}");
            let e = as_client(&v, &cert).unwrap_err();
            assert!(e.contains(&pinned.spki_hash()), "{e}");
        }
        assert!(v.client_auth_mandatory());
    }

    #[test]
    fn same_key_in_another_certificate_matches_the_spki_pin_only() {
        // A tubid pins the whole certificate, an SPKI hash only its key.
        let key = rcgen::KeyPair::generate().unwrap();
        let a = rcgen::CertificateParams::new(vec!["a".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let b = rcgen::CertificateParams::new(vec!["b".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let by_spki = PinnedCertVerifier::new(spki_pin(a.der()));
        as_server(&by_spki, b.der()).unwrap();
        let by_tubid = PinnedCertVerifier::new(Pin::TubId(tubid_of(a.der())));
        assert!(as_server(&by_tubid, b.der()).is_err());
    }

    #[test]
    fn any_asks_for_a_client_certificate_without_requiring_one() {
        let v = PinnedCertVerifier::new(Pin::Any);
        assert!(v.offer_client_auth());
        assert!(!v.client_auth_mandatory());
    }

    #[test]
    fn an_unparseable_certificate_does_not_match_an_spki_pin() {
        let garbage = CertificateDer::from(b"not a certificate".to_vec());
        let v = PinnedCertVerifier::new(Pin::SpkiHash([0; 32]));
        assert!(as_server(&v, &garbage).is_err());
        assert!(as_client(&v, &garbage).is_err());
    }
}
