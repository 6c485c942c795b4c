//! A node's identity, protocol-neutral: its certificate and key, in the PEM layout of
//! Tahoe's `private/node.pem` (the certificate, then a `PRIVATE KEY`), and the two
//! hashes peers pin it by.
//!
//! - The **tubid** (Foolscap, in a FURL) is lowercase unpadded base32 of SHA-1 over the
//!   whole DER certificate: [`tubid_of`].
//! - The **SPKI hash** (GBS, in a NURL) is unpadded base64url of SHA-256 over the
//!   certificate's DER SubjectPublicKeyInfo, as Tahoe's `http_common.get_spki_hash`
//!   computes it: [`spki_hash_of_certificate`].
//!
//! A Tahoe node serves both protocols with the same certificate, and so does
//! swampgate. Those certificates are often X.509 **v1** (foolscap makes them so),
//! which webpki refuses; everything here parses them with `x509-parser` instead, and
//! [`verifier::PinnedCertVerifier`] is the one rustls verifier both protocols use.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use data_encoding::BASE64URL_NOPAD;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use sha1::{Digest, Sha1};
use sha2::Sha256;

pub mod verifier;

pub use verifier::{Pin, PinnedCertVerifier};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Format { path: String, why: String },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    tubid: String,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            tubid: self.tubid.clone(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.tubid)
    }
}

/// base32(sha1(DER certificate)), lowercase, unpadded: 32 characters.
pub fn tubid_of(cert_der: &[u8]) -> String {
    crate::base32::base32_lower(&Sha1::digest(cert_der))
}

/// The DER SubjectPublicKeyInfo inside a DER certificate (v1 certificates included).
pub fn spki_of_certificate(cert_der: &[u8]) -> Result<&[u8], String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    Ok(cert.tbs_certificate.subject_pki.raw)
}

/// SHA-256 over a DER SubjectPublicKeyInfo: the raw SPKI hash.
pub fn spki_digest(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

/// The SPKI hash of a DER SubjectPublicKeyInfo, as Tahoe computes it
/// (`http_common.get_spki_hash`): unpadded base64url of [`spki_digest`], 43 characters.
pub fn spki_hash_of_spki(spki_der: &[u8]) -> String {
    BASE64URL_NOPAD.encode(&spki_digest(spki_der))
}

/// The SPKI hash of a DER certificate: what a NURL pins.
pub fn spki_hash_of_certificate(cert_der: &[u8]) -> Result<String, String> {
    Ok(spki_hash_of_spki(spki_of_certificate(cert_der)?))
}

/// Is `s` a valid SPKI hash: 43 base64url characters encoding 32 bytes?
pub fn is_spki_hash(s: &str) -> bool {
    s.len() == 43
        && BASE64URL_NOPAD
            .decode(s.as_bytes())
            .is_ok_and(|v| v.len() == 32)
}

/// A rustls [`CertifiedKey`] serving `chain` with `key`, built without webpki so that an
/// X.509 v1 certificate can be served (no certificate parsing, no key/certificate
/// consistency check).
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

impl Identity {
    pub fn from_der(cert: Vec<u8>, key: PrivateKeyDer<'static>) -> Identity {
        let tubid = tubid_of(&cert);
        Identity {
            cert: CertificateDer::from(cert),
            key,
            tubid,
        }
    }

    /// Parse the node.pem layout: a CERTIFICATE block and a (PKCS#8 or PKCS#1) key.
    pub fn from_pem(text: &str, path: &str) -> Result<Identity, IdentityError> {
        let fmt_err = |why: String| IdentityError::Format {
            path: path.to_string(),
            why,
        };
        let blocks = pem::parse_many(text).map_err(|e| fmt_err(format!("not PEM: {e}")))?;
        let mut cert = None;
        let mut key = None;
        for b in blocks {
            match b.tag() {
                "CERTIFICATE" if cert.is_none() => cert = Some(b.into_contents()),
                "PRIVATE KEY" if key.is_none() => {
                    key = Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                        b.into_contents(),
                    )))
                }
                "RSA PRIVATE KEY" if key.is_none() => {
                    key = Some(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
                        b.into_contents(),
                    )))
                }
                _ => {}
            }
        }
        let cert = cert.ok_or_else(|| fmt_err("no CERTIFICATE block".into()))?;
        let key = key.ok_or_else(|| fmt_err("no PRIVATE KEY block".into()))?;
        x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| fmt_err(format!("bad certificate: {e}")))?;
        let id = Identity::from_der(cert, key);
        // Refuse a key that rustls cannot sign with, now rather than at first use.
        rustls::crypto::ring::sign::any_supported_type(&id.key)
            .map_err(|e| fmt_err(format!("unusable private key: {e}")))?;
        Ok(id)
    }

    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Identity::from_pem(&text, &path.display().to_string())
    }

    /// A new identity: a self-signed ECDSA P-256 certificate (foolscap accepts any
    /// self-signed key type), subject `CN=newpb_thingy` as foolscap writes it.
    pub fn generate() -> Result<Identity, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "newpb_thingy");
        params.distinguished_name = dn;
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(9999, 12, 31);
        let cert = params
            .self_signed(&key)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Identity::from_der(
            cert.der().to_vec(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }

    /// The node.pem text: certificate then private key.
    pub fn to_pem(&self) -> String {
        let (tag, der) = match &self.key {
            PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der().to_vec()),
            PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der().to_vec()),
            PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der().to_vec()),
            _ => ("PRIVATE KEY", Vec::new()),
        };
        let cfg = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        pem::encode_config(&pem::Pem::new("CERTIFICATE", self.cert.to_vec()), cfg)
            + &pem::encode_config(&pem::Pem::new(tag, der), cfg)
    }

    /// Write the node.pem layout, readable by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        use std::io::Write;
        let werr = |source| IdentityError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(werr)?;
        }
        let tmp = path.with_extension("tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(werr)?;
            f.write_all(self.to_pem().as_bytes()).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        std::fs::rename(&tmp, path).map_err(werr)
    }

    /// Load `path` if it exists, else generate and save a new identity there.
    pub fn load_or_generate(path: &Path) -> Result<Identity, IdentityError> {
        if path.exists() {
            return Identity::load(path);
        }
        let id = Identity::generate()?;
        id.save(path)?;
        Ok(id)
    }

    pub fn tubid(&self) -> &str {
        &self.tubid
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub fn key_der(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The SPKI hash of this identity's certificate: the `SPKIHASH` of its NURL.
    pub fn spki_hash(&self) -> String {
        spki_hash_of_certificate(&self.cert).expect("our own certificate parses")
    }

    /// The certificate and key for rustls, to serve or to present as a client.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, rustls::Error> {
        certified_key(vec![self.cert.clone()], &self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_save_load_keeps_tubid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("private/node.pem");
        let a = Identity::load_or_generate(&p).unwrap();
        let b = Identity::load_or_generate(&p).unwrap();
        assert_eq!(a.tubid(), b.tubid());
        assert_eq!(a.tubid().len(), 32);
        assert_eq!(a.spki_hash().len(), 43);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(text.contains("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn bad_pem_is_named() {
        let e = Identity::from_pem("garbage", "x/node.pem").unwrap_err();
        assert!(e.to_string().starts_with("x/node.pem:"), "{e}");
    }

    /// A certificate made as foolscap makes Tahoe node certificates (X.509 v1, RSA
    /// 2048, CN=newpb_thingy), with the SPKI hash Tahoe 1.20's `get_spki_hash`
    /// computes for it.
    const V1_CERT: &str = include_str!("testdata/foolscap_v1_cert.pem");
    const V1_CERT_SPKI_HASH: &str = include_str!("testdata/foolscap_v1_cert.spki_hash");

    #[test]
    fn spki_hash_of_a_foolscap_v1_certificate_matches_tahoe() {
        let der = pem::parse(V1_CERT).unwrap();
        let h = spki_hash_of_certificate(der.contents()).unwrap();
        assert_eq!(h, V1_CERT_SPKI_HASH.trim());
    }

    #[test]
    fn spki_hash_of_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let h = spki_hash_of_certificate(cert.der()).unwrap();
        assert!(is_spki_hash(&h));
        assert_eq!(h, spki_hash_of_spki(&key.public_key_der()));
    }
}
