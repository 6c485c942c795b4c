//! NURLs: `pb://SPKIHASH@HOST:PORT/SWISSNUM#v=1`, the address of a GBS server. Pure.
//!
//! As Tahoe 1.20 builds them (`http_server.build_nurl`, hyperlink's `DecodedURL`):
//! - `SPKIHASH` is the unpadded URL-safe base64 of SHA-256 over the DER
//!   SubjectPublicKeyInfo of the server's TLS certificate (43 characters; computed by
//!   [`crate::identity::spki_hash_of_certificate`]);
//! - `HOST` is a DNS name, an IPv4 address, or an IPv6 address in brackets;
//! - `SWISSNUM` is the storage swissnum (the same string as in the storage FURL);
//! - the fragment `v=1` says "HTTP storage protocol, version 1" (a FURL has none);
//! - `pb+tor://` marks a server reached over Tor (an `.onion` host). Such NURLs parse,
//!   but swampgate cannot dial them (see [`Nurl::dial_address`]).

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE64URL_NOPAD;

use crate::identity::is_spki_hash;

/// How a NURL says to reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NurlScheme {
    /// `pb://`: plain TCP, then TLS.
    Tcp,
    /// `pb+tor://`: over Tor.
    Tor,
}

impl NurlScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            NurlScheme::Tcp => "pb",
            NurlScheme::Tor => "pb+tor",
        }
    }
}

/// A parsed NURL. Its `Debug` hides the swissnum; `Display` is the full NURL (it is a
/// capability: show it only where a FURL would be shown).
#[derive(Clone, PartialEq, Eq)]
pub struct Nurl {
    pub scheme: NurlScheme,
    /// Base64url (unpadded) SHA-256 of the server certificate's SPKI.
    pub spki_hash: String,
    /// The host without brackets (an IPv6 address is bare here).
    pub host: String,
    pub port: u16,
    pub swissnum: String,
}

impl fmt::Debug for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nurl")
            .field("scheme", &self.scheme)
            .field("spki_hash", &self.spki_hash)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("swissnum", &"<secret>")
            .finish()
    }
}

/// Why a string is not a usable NURL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NurlError {
    #[error("not a NURL: {0}")]
    Syntax(String),
    #[error("NURL {0} needs Tor, which swampgate cannot dial; use a pb:// NURL")]
    TorUnsupported(String),
}

fn syntax<T>(msg: impl Into<String>) -> Result<T, NurlError> {
    Err(NurlError::Syntax(msg.into()))
}

impl Nurl {
    /// The `host:port` to connect to over TCP. `pb+tor` NURLs are refused with a clear
    /// error: reaching them needs a Tor client, which swampgate does not include.
    pub fn dial_address(&self) -> Result<(String, u16), NurlError> {
        match self.scheme {
            NurlScheme::Tcp => Ok((self.host.clone(), self.port)),
            NurlScheme::Tor => Err(NurlError::TorUnsupported(self.redacted())),
        }
    }

    /// The NURL with its swissnum replaced, for logs and error messages.
    pub fn redacted(&self) -> String {
        format!(
            "{}://{}@{}:{}/<swissnum>#v=1",
            self.scheme.as_str(),
            self.spki_hash,
            host_for_url(&self.host),
            self.port
        )
    }

    /// The `https://host:port` base of the server's API.
    pub fn https_base(&self) -> String {
        format!("https://{}:{}", host_for_url(&self.host), self.port)
    }

    /// The SPKI hash as raw bytes (32).
    pub fn spki_hash_bytes(&self) -> [u8; 32] {
        let v = BASE64URL_NOPAD
            .decode(self.spki_hash.as_bytes())
            .expect("validated at parse time");
        v.try_into().expect("validated at parse time")
    }
}

fn host_for_url(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

impl fmt::Display for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}@{}:{}/{}#v=1",
            self.scheme.as_str(),
            self.spki_hash,
            host_for_url(&self.host),
            self.port,
            self.swissnum
        )
    }
}

impl FromStr for Nurl {
    type Err = NurlError;

    fn from_str(s: &str) -> Result<Nurl, NurlError> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("pb://") {
            (NurlScheme::Tcp, r)
        } else if let Some(r) = s.strip_prefix("pb+tor://") {
            (NurlScheme::Tor, r)
        } else {
            return syntax("a NURL starts with pb:// or pb+tor://");
        };
        let (rest, fragment) = rest
            .split_once('#')
            .ok_or_else(|| NurlError::Syntax("no #v=1 fragment (is this a FURL?)".into()))?;
        if fragment != "v=1" {
            return syntax(format!(
                "fragment #{fragment} is not #v=1 (unknown NURL version)"
            ));
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| NurlError::Syntax("no /SWISSNUM path".into()))?;
        let (spki_hash, hostport) = authority
            .split_once('@')
            .ok_or_else(|| NurlError::Syntax("no SPKIHASH@ before the host".into()))?;
        if !is_spki_hash(spki_hash) {
            return syntax("the SPKI hash must be 43 characters of unpadded base64url (a SHA-256)");
        }
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, p) = r
                .split_once(']')
                .ok_or_else(|| NurlError::Syntax("unclosed [ in the host".into()))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return syntax(format!("[{h}] is not an IPv6 address"));
            }
            let p = p
                .strip_prefix(':')
                .ok_or_else(|| NurlError::Syntax("no :PORT after the host".into()))?;
            (h, p)
        } else {
            hostport
                .rsplit_once(':')
                .ok_or_else(|| NurlError::Syntax("no :PORT after the host".into()))?
        };
        // A bracketed host was checked as an IPv6 address above; any other host is a
        // name or an IPv4 address, so it has no ':' (nor '@', '[' ...).
        let bracketed = hostport.starts_with('[');
        if host.is_empty()
            || (!bracketed
                && !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
        {
            return syntax(format!("bad host {host:?}"));
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return syntax(format!("bad port {port:?}"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| NurlError::Syntax(format!("port {port} out of range")))?;
        if path.is_empty() || path.contains('/') || path.contains('?') {
            return syntax("the path must be exactly one swissnum segment");
        }
        if !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return syntax("the swissnum has characters a NURL cannot carry unescaped");
        }
        Ok(Nurl {
            scheme,
            spki_hash: spki_hash.to_owned(),
            host: host.to_owned(),
            port,
            swissnum: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "cPv0bAPRXtJJpQnK59CVkqOZEdtZyuayXjgqeTjuFrw";

    #[test]
    fn parse_and_format() {
        let s = format!("pb://{HASH}@127.0.0.1:4567/abcdefghijklmnopqrstuvwxyz234567#v=1");
        let n: Nurl = s.parse().unwrap();
        assert_eq!(n.scheme, NurlScheme::Tcp);
        assert_eq!(n.host, "127.0.0.1");
        assert_eq!(n.port, 4567);
        assert_eq!(n.swissnum, "abcdefghijklmnopqrstuvwxyz234567");
        assert_eq!(n.to_string(), s);
        assert_eq!(n.https_base(), "https://127.0.0.1:4567");
        assert!(!format!("{n:?}").contains("abcdefghij"));
        assert!(!n.redacted().contains("abcdefghij"));
        assert_eq!(n.dial_address().unwrap(), ("127.0.0.1".to_string(), 4567));
    }

    #[test]
    fn ipv6_and_names() {
        let s = format!("pb://{HASH}@[::1]:80/sw#v=1");
        let n: Nurl = s.parse().unwrap();
        assert_eq!(n.host, "::1");
        assert_eq!(n.to_string(), s);
        assert_eq!(n.https_base(), "https://[::1]:80");
        let n: Nurl = format!("pb://{HASH}@storage.example.org:3456/sw#v=1")
            .parse()
            .unwrap();
        assert_eq!(n.host, "storage.example.org");
    }

    #[test]
    fn tor_parses_but_does_not_dial() {
        let n: Nurl = format!("pb+tor://{HASH}@abcdefghijklmnop.onion:1234/sw#v=1")
            .parse()
            .unwrap();
        assert_eq!(n.scheme, NurlScheme::Tor);
        let e = n.dial_address().unwrap_err();
        assert!(matches!(e, NurlError::TorUnsupported(_)));
        assert!(e.to_string().contains("Tor"));
        assert!(!e.to_string().contains("/sw#"));
    }

    #[test]
    fn refusals() {
        let bad = [
            format!("https://{HASH}@h:1/sw#v=1"),
            format!("pb://{HASH}@h:1/sw"),
            format!("pb://{HASH}@h:1/sw#v=2"),
            "pb://short@h:1/sw#v=1".to_string(),
            format!("pb://{HASH}@h/sw#v=1"),
            format!("pb://{HASH}@h:99999/sw#v=1"),
            format!("pb://{HASH}@h:1/#v=1"),
            format!("pb://{HASH}@h:1/a/b#v=1"),
            format!("pb://{HASH}@[zz]:1/sw#v=1"),
            format!("pb://{HASH}@[::1:1/sw#v=1"),
            format!("pb://{HASH}@h:1#v=1"),
            format!("pb://{HASH}@h h:1/sw#v=1"),
            // Found by fuzzing (see SECURITY.md): an unbracketed host with a ':' was
            // taken unchecked and printed back bracketed, as another NURL.
            format!("pb://{HASH}@127.5:0.1:7750/sw#v=1"),
            format!("pb://{HASH}@::1:7750/sw#v=1"),
            format!("pb://{HASH}@user:pw@h:1/sw#v=1"),
        ];
        for b in bad {
            assert!(b.parse::<Nurl>().is_err(), "{b}");
        }
    }
}
