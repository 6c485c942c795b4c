//! GBS authorization: the swissnum in `Authorization` and the per-operation secrets in
//! `X-Tahoe-Authorization`. Pure: header values in, typed results out.
//!
//! Rules (Tahoe 1.20, `http_server._authorization_decorator` and `_extract_secrets`):
//! - `Authorization: Tahoe-LAFS <base64(swissnum)>`; only the first such header counts.
//!   A value that is not UTF-8 is a 400, anything else that does not match is a 401.
//!   The comparison is constant-time.
//! - `X-Tahoe-Authorization: <kind> <base64(secret)>`, one header per secret. Every
//!   required kind must be present and no other kind may be; lease secrets must be 32
//!   bytes; an empty secret is refused. All of these are 400s (a *wrong* secret is a
//!   401, decided later by the storage backend). Upload secrets and write enablers may
//!   have any non-zero length, as in Tahoe.

use std::collections::BTreeMap;
use std::fmt;

use data_encoding::BASE64;
use subtle::ConstantTimeEq;

use crate::storage::{LeaseSecrets, Secret};

/// The scheme word of the `Authorization` header.
pub const AUTH_SCHEME: &str = "Tahoe-LAFS";

/// The header that carries the per-operation secrets.
pub const SECRETS_HEADER: &str = "x-tahoe-authorization";

/// The exact length Tahoe requires of lease renew and cancel secrets.
pub const LEASE_SECRET_LEN: usize = 32;

/// The `Authorization` header value for a swissnum: `Tahoe-LAFS base64(swissnum)`.
pub fn authorization_value(swissnum: &[u8]) -> String {
    format!("{AUTH_SCHEME} {}", BASE64.encode(swissnum))
}

/// Why a request's `Authorization` header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizationError {
    /// The header is not UTF-8 (Tahoe: 400 "Bad Authorization header").
    Malformed,
    /// Missing or not this server's swissnum (Tahoe: 401 "Wrong Authorization header").
    Wrong,
}

/// Checks `Authorization` headers against one swissnum in constant time.
///
/// Its `Debug` never shows the swissnum.
#[derive(Clone)]
pub struct SwissnumCheck {
    expected: Vec<u8>,
}

impl fmt::Debug for SwissnumCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SwissnumCheck(<secret>)")
    }
}

impl SwissnumCheck {
    pub fn new(swissnum: &[u8]) -> SwissnumCheck {
        SwissnumCheck {
            expected: authorization_value(swissnum).into_bytes(),
        }
    }

    /// Check the first `Authorization` header of a request (`None` if it has none).
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthorizationError> {
        let got = header.unwrap_or(b"");
        if std::str::from_utf8(got).is_err() {
            return Err(AuthorizationError::Malformed);
        }
        // `ct_eq` on slices of different lengths is false without looking at the
        // contents; the length of the expected value is not a secret.
        if bool::from(got.ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(AuthorizationError::Wrong)
        }
    }
}

/// The kinds of secret a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretKind {
    LeaseRenew,
    LeaseCancel,
    Upload,
    WriteEnabler,
}

impl SecretKind {
    pub const ALL: [SecretKind; 4] = [
        SecretKind::LeaseRenew,
        SecretKind::LeaseCancel,
        SecretKind::Upload,
        SecretKind::WriteEnabler,
    ];

    /// The word that names the kind in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::LeaseRenew => "lease-renew-secret",
            SecretKind::LeaseCancel => "lease-cancel-secret",
            SecretKind::Upload => "upload-secret",
            SecretKind::WriteEnabler => "write-enabler",
        }
    }

    pub fn from_name(s: &str) -> Option<SecretKind> {
        SecretKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One `X-Tahoe-Authorization` header value for a secret.
pub fn secret_header_value(kind: SecretKind, secret: &[u8]) -> String {
    format!("{} {}", kind.as_str(), BASE64.encode(secret))
}

/// The secrets of one request, checked against the kinds its endpoint requires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    map: BTreeMap<SecretKind, Secret>,
}

impl Secrets {
    /// The secret of a kind the endpoint required (so present after parsing).
    pub fn get(&self, kind: SecretKind) -> Option<&Secret> {
        self.map.get(&kind)
    }

    /// The lease secrets, if both were required.
    pub fn lease(&self) -> Option<LeaseSecrets> {
        Some(LeaseSecrets {
            renew: self.get(SecretKind::LeaseRenew)?.clone(),
            cancel: self.get(SecretKind::LeaseCancel)?.clone(),
        })
    }
}

/// Why the secrets of a request were refused: always a 400, with this message as body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretsError(pub String);

fn kind_list(kinds: impl IntoIterator<Item = SecretKind>) -> String {
    let names: Vec<String> = kinds
        .into_iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    format!("[{}]", names.join(", "))
}

/// Parse every `X-Tahoe-Authorization` value of a request and check that exactly the
/// `required` kinds are present.
///
/// The checks run in Tahoe's order (each value in turn: syntax, kind, base64,
/// emptiness, lease-secret length; then the set of kinds), so the first failure is
/// the one Tahoe would report. Messages never include secret values; Tahoe's
/// "Bad header value(s)" echoes the raw headers, ours names only the position.
/// Base64 is strict (standard alphabet, padding required) where Python's decoder
/// would skip stray characters. A kind given twice keeps its last value, as in Tahoe.
pub fn parse_secrets(values: &[&[u8]], required: &[SecretKind]) -> Result<Secrets, SecretsError> {
    let mut map = BTreeMap::new();
    for (i, raw) in values.iter().enumerate() {
        let bad = || {
            SecretsError(format!(
                "Bad header value(s): X-Tahoe-Authorization #{}",
                i + 1
            ))
        };
        let text = std::str::from_utf8(raw).map_err(|_| bad())?;
        let (name, value) = text.trim().split_once(' ').ok_or_else(bad)?;
        let kind = SecretKind::from_name(name).ok_or_else(bad)?;
        let secret = BASE64.decode(value.as_bytes()).map_err(|_| bad())?;
        if secret.is_empty() {
            return Err(SecretsError(format!(
                "Failed to decode secret {}",
                kind.as_str()
            )));
        }
        if matches!(kind, SecretKind::LeaseRenew | SecretKind::LeaseCancel)
            && secret.len() != LEASE_SECRET_LEN
        {
            return Err(SecretsError("Lease secrets must be 32 bytes long".into()));
        }
        map.insert(kind, Secret(secret));
    }
    let mut want: Vec<SecretKind> = required.to_vec();
    want.sort();
    want.dedup();
    if !map.keys().copied().eq(want.iter().copied()) {
        return Err(SecretsError(format!(
            "Expected {} in X-Tahoe-Authorization headers, got {}",
            kind_list(want),
            kind_list(map.keys().copied())
        )));
    }
    Ok(Secrets { map })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(kind: &str, secret: &[u8]) -> Vec<u8> {
        format!("{kind} {}", BASE64.encode(secret)).into_bytes()
    }

    #[test]
    fn authorization_value_matches_tahoe() {
        // swissnum_auth_header(b"SWISSNUM") in Tahoe 1.20.
        assert_eq!(authorization_value(b"SWISSNUM"), "Tahoe-LAFS U1dJU1NOVU0=");
    }

    #[test]
    fn swissnum_check() {
        let c = SwissnumCheck::new(b"SWISSNUM");
        assert_eq!(c.check(Some(b"Tahoe-LAFS U1dJU1NOVU0=")), Ok(()));
        assert_eq!(c.check(None), Err(AuthorizationError::Wrong));
        assert_eq!(c.check(Some(b"")), Err(AuthorizationError::Wrong));
        assert_eq!(
            c.check(Some(b"Tahoe-LAFS U1dJU1NOVU1=")),
            Err(AuthorizationError::Wrong)
        );
        assert_eq!(
            c.check(Some(b"Tahoe-LAFS U1dJU1NOVU0= ")),
            Err(AuthorizationError::Wrong)
        );
        assert_eq!(
            c.check(Some(b"Tahoe-LAFS \xff")),
            Err(AuthorizationError::Malformed)
        );
        assert!(!format!("{c:?}").contains("U1dJ"));
    }

    #[test]
    fn secrets_happy_path() {
        let r = [1u8; 32];
        let cn = [2u8; 32];
        let u = [3u8; 20];
        let values = [
            hv("lease-renew-secret", &r),
            hv("lease-cancel-secret", &cn),
            hv("upload-secret", &u),
        ];
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let s = parse_secrets(
            &refs,
            &[
                SecretKind::LeaseRenew,
                SecretKind::LeaseCancel,
                SecretKind::Upload,
            ],
        )
        .unwrap();
        assert_eq!(s.get(SecretKind::Upload).unwrap().0, u.to_vec());
        let lease = s.lease().unwrap();
        assert_eq!(lease.renew.0, r.to_vec());
        assert_eq!(lease.cancel.0, cn.to_vec());
    }

    #[test]
    fn secrets_refusals() {
        let req = [SecretKind::LeaseRenew, SecretKind::LeaseCancel];
        let ok_r = hv("lease-renew-secret", &[1; 32]);
        let ok_c = hv("lease-cancel-secret", &[2; 32]);
        let check = |vals: &[&[u8]]| parse_secrets(vals, &req).unwrap_err().0;

        assert_eq!(
            check(&[]),
            "Expected ['lease-renew-secret', 'lease-cancel-secret'] in X-Tahoe-Authorization headers, got []"
        );
        assert!(check(&[&ok_r]).starts_with("Expected"));
        // An extra known kind is refused too.
        let we = hv("write-enabler", &[3; 32]);
        assert!(check(&[&ok_r, &ok_c, &we]).starts_with("Expected"));
        // Unknown kind, no space, bad base64, non-UTF-8.
        assert!(check(&[&ok_r, &ok_c, b"foo-secret eA=="]).starts_with("Bad header value(s)"));
        assert!(check(&[b"lease-renew-secret"]).starts_with("Bad header value(s)"));
        assert!(check(&[b"lease-renew-secret !!!notb64"]).starts_with("Bad header value(s)"));
        assert!(check(&[b"lease-renew-secret \xff"]).starts_with("Bad header value(s)"));
        // Wrong lease length, empty value.
        assert_eq!(
            check(&[&hv("lease-renew-secret", &[1; 31]), &ok_c]),
            "Lease secrets must be 32 bytes long"
        );
        // A kind with no value: Python's strip() removes the space, then the split
        // fails, so this is a bad value rather than an empty secret.
        assert!(check(&[b"lease-renew-secret ", &ok_c]).starts_with("Bad header value(s)"));
        // Messages never carry the secret.
        let msg = check(&[&ok_r, &ok_c, b"foo-secret c2VjcmV0"]);
        assert!(!msg.contains("c2VjcmV0"));
    }

    #[test]
    fn upload_and_write_enabler_lengths_are_free() {
        let values = [hv("upload-secret", b"x")];
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        assert!(parse_secrets(&refs, &[SecretKind::Upload]).is_ok());
        // Surrounding whitespace is stripped, as Python's str.strip() does.
        assert!(parse_secrets(&[b"  upload-secret eA==  "], &[SecretKind::Upload]).is_ok());
        // No secrets required and none sent.
        assert!(parse_secrets(&[], &[]).is_ok());
    }
}
