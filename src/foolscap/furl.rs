//! FURLs: `pb://TUBID@HINT[,HINT...]/SWISSNUM`.

use std::fmt;

/// A connection hint. Only TCP hints are dialled; others are kept (so a FURL
/// round-trips) but skipped when connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    Tcp {
        host: String,
        port: u16,
    },
    /// A hint type this implementation does not dial (`tor:`, `i2p:`, …), verbatim.
    Other(String),
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hint::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Hint::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Hint::Other(s) => f.write_str(s),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Furl {
    pub tubid: String,
    pub hints: Vec<Hint>,
    pub swissnum: String,
}

/// The swissnum is a capability: never show it whole.
impl fmt::Debug for Furl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Furl({})", self.redacted())
    }
}

impl fmt::Display for Furl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pb://{}@{}/{}",
            self.tubid,
            self.hints
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(","),
            self.swissnum
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FurlError {
    #[error("a FURL must start with pb://")]
    Scheme,
    #[error("a FURL needs TUBID@HINTS/NAME")]
    Shape,
    #[error("tubid {0:?} is not 32 lowercase base32 characters")]
    TubId(String),
    #[error("bad connection hint {0:?}: {1}")]
    Hint(String, &'static str),
    #[error("the FURL names no object (empty swissnum)")]
    EmptyName,
}

fn valid_tubid(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

fn parse_tcp(hint: &str, rest: &str) -> Result<Hint, FurlError> {
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let (h, p) = stripped.split_once("]:").ok_or(FurlError::Hint(
            hint.to_string(),
            "IPv6 host needs [ADDR]:PORT",
        ))?;
        (h.to_string(), p)
    } else {
        let (h, p) = rest
            .rsplit_once(':')
            .ok_or(FurlError::Hint(hint.to_string(), "expected HOST:PORT"))?;
        if h.contains(':') {
            return Err(FurlError::Hint(
                hint.to_string(),
                "IPv6 hosts must be in brackets",
            ));
        }
        (h.to_string(), p)
    };
    if host.is_empty() {
        return Err(FurlError::Hint(hint.to_string(), "empty host"));
    }
    // Hosts print back exactly: a DNS name or IPv4 address, or an IPv6 literal
    // (which is written in brackets). Anything else could not round-trip.
    let name_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    let v6_ok = host.contains(':')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'.' || b == b'%');
    if !(name_ok || v6_ok) {
        return Err(FurlError::Hint(
            hint.to_string(),
            "host must be a DNS name, an IPv4 address or a bracketed IPv6 address",
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| FurlError::Hint(hint.to_string(), "port is not a number from 0 to 65535"))?;
    Ok(Hint::Tcp { host, port })
}

impl Hint {
    pub fn parse(s: &str) -> Result<Hint, FurlError> {
        if let Some(rest) = s.strip_prefix("tcp:") {
            return parse_tcp(s, rest);
        }
        match s.split_once(':') {
            // A bare HOST:PORT is an old-style TCP hint.
            Some((h, p))
                if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() =>
            {
                parse_tcp(s, s)
            }
            Some(_) => Ok(Hint::Other(s.to_string())),
            None => Err(FurlError::Hint(
                s.to_string(),
                "expected TYPE:... or HOST:PORT",
            )),
        }
    }
}

impl Furl {
    /// The FURL with its swissnum replaced, for logs, reports and error messages.
    pub fn redacted(&self) -> String {
        format!(
            "pb://{}@{}/<swissnum>",
            self.tubid,
            self.hints
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    pub fn parse(s: &str) -> Result<Furl, FurlError> {
        let rest = s.trim().strip_prefix("pb://").ok_or(FurlError::Scheme)?;
        let (tubid, rest) = rest.split_once('@').ok_or(FurlError::Shape)?;
        let (hints, name) = rest.split_once('/').ok_or(FurlError::Shape)?;
        // Foolscap uses the first 32 characters of the tubid. `get` rather than
        // slicing: byte 32 may fall inside a multi-byte character (a panic before).
        let tubid32 = match tubid.get(..32) {
            Some(t) if valid_tubid(t) => t,
            _ => return Err(FurlError::TubId(tubid.to_string())),
        };
        if name.is_empty() {
            return Err(FurlError::EmptyName);
        }
        let hints = if hints.is_empty() {
            Vec::new()
        } else {
            hints
                .split(',')
                .map(Hint::parse)
                .collect::<Result<_, _>>()?
        };
        Ok(Furl {
            tubid: tubid32.to_string(),
            hints,
            swissnum: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let s = "pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:42102,tcp:[::1]:7,example.org:80,tor:abc.onion:80/yci4erqgi6kgb3ybym4y3qlox2zawafr";
        let f = Furl::parse(s).unwrap();
        assert_eq!(f.tubid, "l3uv64hrncybwr7t7esgrafiqoh2njjc");
        assert_eq!(
            f.hints,
            vec![
                Hint::Tcp {
                    host: "127.0.0.1".into(),
                    port: 42102
                },
                Hint::Tcp {
                    host: "::1".into(),
                    port: 7
                },
                Hint::Tcp {
                    host: "example.org".into(),
                    port: 80
                },
                Hint::Other("tor:abc.onion:80".into()),
            ]
        );
        assert_eq!(f.swissnum, "yci4erqgi6kgb3ybym4y3qlox2zawafr");
        assert_eq!(
            f.to_string(),
            "pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:42102,tcp:[::1]:7,tcp:example.org:80,tor:abc.onion:80/yci4erqgi6kgb3ybym4y3qlox2zawafr"
        );
        assert!(!format!("{f:?}").contains("yci4"));
        assert!(!f.redacted().contains("yci4"));
        assert!(f.redacted().starts_with("pb://") && f.redacted().ends_with("/<swissnum>"));
    }

    #[test]
    fn hosts_that_would_not_print_back_are_refused() {
        // Found by fuzzing: a bracketed "host" that is no IPv6 address printed back
        // without brackets and no longer parsed.
        for bad in [
            "tcp:[[x@]:7",
            "[[x@]:7",
            "tcp:a b:1",
            "tcp:a/b:1",
            "tcp:a@b:1",
        ] {
            assert!(Hint::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "tcp:[::1]:7",
            "tcp:[fe80::1%eth0]:7",
            "tcp:example.org:80",
            "tcp:127.0.0.1:1",
        ] {
            let h = Hint::parse(good).unwrap();
            assert_eq!(Hint::parse(&h.to_string()).unwrap(), h, "{good}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(Furl::parse("http://x"), Err(FurlError::Scheme));
        assert_eq!(Furl::parse("pb://abc"), Err(FurlError::Shape));
        assert!(matches!(
            Furl::parse("pb://ABC@tcp:h:1/x"),
            Err(FurlError::TubId(_))
        ));
        assert!(matches!(
            Furl::parse("pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:h:99999/x"),
            Err(FurlError::Hint(_, _))
        ));
        assert_eq!(
            Furl::parse("pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:h:1/"),
            Err(FurlError::EmptyName)
        );
    }

    #[test]
    fn a_tubid_with_a_multibyte_character_at_the_cut_is_refused_not_a_panic() {
        // Foolscap keeps the first 32 characters; byte 32 may fall inside a character.
        let f = format!("pb://{}\u{e9}@tcp:h:1/x", "a".repeat(31));
        assert!(matches!(Furl::parse(&f), Err(FurlError::TubId(_))));
    }
}
