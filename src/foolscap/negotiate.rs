//! Connection negotiation, sans-IO: the plaintext upgrade exchange and the
//! HELLO/DECISION blocks that follow inside TLS.
//!
//! ```text
//! C→S  GET /id/<tubid> HTTP/1.1 / Host / Upgrade: TLS/1.0 / Connection: Upgrade
//! S→C  HTTP/1.1 101 Switching Protocols / Upgrade: TLS/1.0, PB/1.0 / Connection: Upgrade
//!      --- TLS, client = TCP initiator ---
//! both HELLO  (banana-negotiation-range, initial-vocab-table-range, my-incarnation, my-tub-id, [last-connection])
//! master → slave  DECISION (banana-decision-version, current-connection, initial-vocab-table-index)
//!      --- Banana ---
//! ```
//! The master is the side whose TubID sorts higher. Every block is bounded by
//! [`MAX_BLOCK`], as foolscap bounds its negotiation buffer.

use std::collections::BTreeMap;

use super::banana::VocabTable;

/// Foolscap refuses negotiation buffers larger than 4096 bytes, including any bytes
/// pipelined behind a block.
pub const MAX_BLOCK: usize = 4096;

/// The only Banana version foolscap 24.9 speaks (v3: PING/PONG).
pub const BANANA_VERSION: u32 = 3;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("negotiation block exceeds {MAX_BLOCK} bytes")]
    BlockTooLarge,
    #[error("malformed negotiation data: {0}")]
    Malformed(String),
    #[error("the server refused the connection: {0}")]
    Refused(String),
    #[error("unknown TubID {0}")]
    UnknownTubId(String),
    #[error("connected to the wrong Tub: expected {expected}, got {got}")]
    WrongTub { expected: String, got: String },
    #[error("TubID mismatch: the peer claims {claimed} but its certificate has {actual}")]
    TubIdMismatch { claimed: String, actual: String },
    #[error("the peer presented no TLS certificate")]
    NoCertificate,
    #[error("protocol mismatch: {0}")]
    Version(String),
    #[error("the peer refused negotiation: {0}")]
    RemoteError(String),
    #[error("Duplicate connection")]
    Duplicate,
}

impl NegotiationError {
    /// The text foolscap puts in an `error:` block for this failure: negotiation
    /// errors verbatim, everything else hidden behind a generic message.
    pub fn wire_message(&self) -> String {
        match self {
            NegotiationError::Version(m) => m.clone(),
            NegotiationError::Duplicate => "Duplicate connection".into(),
            _ => "internal server error, see logs".into(),
        }
    }
}

/// Where a block ends: the index just past its blank line, or `None` if more bytes
/// are needed. Errors once `buf` exceeds [`MAX_BLOCK`] without a complete block.
pub fn block_end(buf: &[u8]) -> Result<Option<usize>, NegotiationError> {
    match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) if i + 4 <= MAX_BLOCK => Ok(Some(i + 4)),
        Some(_) => Err(NegotiationError::BlockTooLarge),
        None if buf.len() > MAX_BLOCK => Err(NegotiationError::BlockTooLarge),
        None => Ok(None),
    }
}

/// The client's plaintext upgrade request for `tubid`, with `host` as foolscap
/// writes it (the hint's host, IPv6 brackets stripped).
pub fn upgrade_request(tubid: &str, host: &str) -> Vec<u8> {
    format!("GET /id/{tubid} HTTP/1.1\r\nHost: {host}\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n").into_bytes()
}

/// The server's acceptance, byte for byte.
pub const UPGRADE_RESPONSE: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0, PB/1.0\r\nConnection: Upgrade\r\n\r\n";

/// The server's plaintext refusal; it closes the connection after it.
pub fn refusal(msg: &str) -> Vec<u8> {
    format!("HTTP/1.1 500 Internal Server Error: {msg}\r\n\r\n").into_bytes()
}

/// Parse the client's request block; returns the TubID it asks for. The error's
/// text is what the server sends back in its refusal.
pub fn parse_upgrade_request(block: &[u8]) -> Result<String, String> {
    let generic = || "internal server error, see logs".to_string();
    let text = std::str::from_utf8(block).map_err(|_| generic())?;
    let first = text.split("\r\n").next().unwrap_or("");
    let words: Vec<&str> = first.split(' ').collect();
    if words.len() != 3 || words[0] != "GET" {
        return Err(generic());
    }
    let tubid = words[1].strip_prefix("/id/").ok_or_else(generic)?;
    if tubid.is_empty() {
        return Err("secure Tubs require encryption".into());
    }
    Ok(tubid.to_string())
}

/// Check the server's response block: a `101` with `Upgrade: TLS/1.0`.
pub fn check_upgrade_response(block: &[u8]) -> Result<(), NegotiationError> {
    let text = String::from_utf8_lossy(block);
    let first = text.split("\r\n").next().unwrap_or("");
    let status = first.split(' ').nth(1).unwrap_or("");
    if status != "101" {
        let why = first
            .strip_prefix("HTTP/1.1 500 Internal Server Error: ")
            .unwrap_or(first);
        return Err(NegotiationError::Refused(why.to_string()));
    }
    if !text.contains("Upgrade: TLS/1.0") {
        return Err(NegotiationError::Malformed(
            "101 response without Upgrade: TLS/1.0".into(),
        ));
    }
    Ok(())
}

/// Parse a `key: value` block. Keys are lowercased; values lose leading whitespace.
pub fn parse_block(block: &[u8]) -> Result<BTreeMap<String, String>, NegotiationError> {
    let text = std::str::from_utf8(block)
        .map_err(|_| NegotiationError::Malformed("block is not UTF-8".into()))?;
    let mut out = BTreeMap::new();
    for line in text.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| {
            NegotiationError::Malformed(format!("line without a colon: {line:?}"))
        })?;
        out.insert(k.to_ascii_lowercase(), v.trim_start().to_string());
    }
    Ok(out)
}

/// Write a block with keys sorted, as foolscap does.
pub fn encode_block(map: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = String::new();
    for (k, v) in map {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The block a side sends when it refuses negotiation.
pub fn error_block(msg: &str) -> Vec<u8> {
    let mut m = BTreeMap::new();
    m.insert("banana-decision-version".to_string(), "1".to_string());
    m.insert("error".to_string(), msg.to_string());
    encode_block(&m)
}

/// A HELLO block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub tubid: String,
    /// 16 lowercase hex digits, fixed for the life of the Tub.
    pub incarnation: String,
    /// Client only: the `current-connection` last received from this peer as slave,
    /// or `None` for `none 0`.
    pub last_connection: Option<Option<(String, u64)>>,
    pub banana_range: (u32, u32),
    pub vocab_range: (u32, u32),
}

impl Hello {
    pub fn new(
        tubid: &str,
        incarnation: &str,
        last_connection: Option<Option<(String, u64)>>,
    ) -> Hello {
        Hello {
            tubid: tubid.to_string(),
            incarnation: incarnation.to_string(),
            last_connection,
            banana_range: (BANANA_VERSION, BANANA_VERSION),
            vocab_range: (0, VocabTable::MAX_INDEX),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut m = BTreeMap::new();
        m.insert(
            "banana-negotiation-range".into(),
            format!("{} {}", self.banana_range.0, self.banana_range.1),
        );
        m.insert(
            "initial-vocab-table-range".into(),
            format!("{} {}", self.vocab_range.0, self.vocab_range.1),
        );
        m.insert("my-incarnation".into(), self.incarnation.clone());
        m.insert("my-tub-id".into(), self.tubid.clone());
        if let Some(lc) = &self.last_connection {
            m.insert(
                "last-connection".into(),
                match lc {
                    None => "none 0".into(),
                    Some((inc, seq)) => format!("{inc} {seq}"),
                },
            );
        }
        encode_block(&m)
    }

    pub fn parse(map: &BTreeMap<String, String>) -> Result<Hello, NegotiationError> {
        if let Some(e) = map.get("error") {
            return Err(NegotiationError::RemoteError(e.clone()));
        }
        let range = |key: &str,
                     default: Option<(u32, u32)>|
         -> Result<(u32, u32), NegotiationError> {
            match map.get(key) {
                None => default.ok_or_else(|| {
                    NegotiationError::Version("No valid banana-negotiation sequence seen".into())
                }),
                Some(v) => {
                    let mut it = v.split_whitespace().map(|x| x.parse::<u32>());
                    match (it.next(), it.next(), it.next()) {
                        (Some(Ok(a)), Some(Ok(b)), None) if a <= b => Ok((a, b)),
                        _ => Err(NegotiationError::Malformed(format!("bad {key}: {v:?}"))),
                    }
                }
            }
        };
        let banana_range = range("banana-negotiation-range", None)?;
        let vocab_range = range("initial-vocab-table-range", Some((0, 0)))?;
        let tubid = map
            .get("my-tub-id")
            .cloned()
            .ok_or_else(|| NegotiationError::Malformed("HELLO without my-tub-id".into()))?;
        let incarnation = map.get("my-incarnation").cloned().unwrap_or_default();
        let last_connection = match map.get("last-connection") {
            None => None,
            Some(v) => {
                let mut it = v.split_whitespace();
                match (it.next(), it.next().map(|s| s.parse::<u64>())) {
                    (Some("none"), _) => Some(None),
                    (Some(inc), Some(Ok(seq))) => Some(Some((inc.to_string(), seq))),
                    _ => {
                        return Err(NegotiationError::Malformed(format!(
                            "bad last-connection: {v:?}"
                        )))
                    }
                }
            }
        };
        Ok(Hello {
            tubid,
            incarnation,
            last_connection,
            banana_range,
            vocab_range,
        })
    }
}

/// The parameters both sides agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub banana_version: u32,
    pub vocab_index: u32,
}

/// Choose the version and vocab table from both HELLOs (what the master decides).
pub fn choose(mine: &Hello, theirs: &Hello) -> Result<Params, NegotiationError> {
    let lo = mine.banana_range.0.max(theirs.banana_range.0);
    let hi = mine.banana_range.1.min(theirs.banana_range.1);
    if lo > hi {
        return Err(NegotiationError::Version(format!(
            "I can't handle banana version {}",
            theirs.banana_range.1
        )));
    }
    let vlo = mine.vocab_range.0.max(theirs.vocab_range.0);
    let vhi = mine.vocab_range.1.min(theirs.vocab_range.1);
    if vlo > vhi {
        return Err(NegotiationError::Version("no common vocab table".into()));
    }
    Ok(Params {
        banana_version: hi,
        vocab_index: vhi,
    })
}

/// A DECISION block (master → slave).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub params: Params,
    /// `<master incarnation> <seqnum>`.
    pub current_connection: (String, u64),
}

impl Decision {
    pub fn encode(&self) -> Vec<u8> {
        let table = VocabTable::by_index(self.params.vocab_index).expect("a known table");
        let mut m = BTreeMap::new();
        m.insert(
            "banana-decision-version".into(),
            self.params.banana_version.to_string(),
        );
        m.insert(
            "current-connection".into(),
            format!(
                "{} {}",
                self.current_connection.0, self.current_connection.1
            ),
        );
        m.insert(
            "initial-vocab-table-index".into(),
            format!("{} {}", self.params.vocab_index, table.hash4()),
        );
        encode_block(&m)
    }

    pub fn parse(map: &BTreeMap<String, String>) -> Result<Decision, NegotiationError> {
        if let Some(e) = map.get("error") {
            return Err(NegotiationError::RemoteError(e.clone()));
        }
        let version: u32 = map
            .get("banana-decision-version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| NegotiationError::Malformed("DECISION without a version".into()))?;
        if version != BANANA_VERSION {
            return Err(NegotiationError::Version(format!(
                "I can't handle banana version {version}"
            )));
        }
        let (vocab_index, hash) = match map.get("initial-vocab-table-index") {
            None => (0, None),
            Some(v) => {
                let mut it = v.split_whitespace();
                let idx = it
                    .next()
                    .and_then(|x| x.parse::<u32>().ok())
                    .ok_or_else(|| NegotiationError::Malformed(format!("bad vocab index {v:?}")))?;
                (idx, it.next().map(String::from))
            }
        };
        let table = VocabTable::by_index(vocab_index).ok_or_else(|| {
            NegotiationError::Version(format!("unknown vocab table {vocab_index}"))
        })?;
        if vocab_index > 0 && hash.as_deref() != Some(table.hash4().as_str()) {
            return Err(NegotiationError::Version(
                "vocab table hash mismatch".into(),
            ));
        }
        let cc = map.get("current-connection").ok_or_else(|| {
            NegotiationError::Malformed("DECISION without current-connection".into())
        })?;
        let mut it = cc.split_whitespace();
        let current_connection = match (it.next(), it.next().and_then(|s| s.parse::<u64>().ok())) {
            (Some(inc), Some(seq)) => (inc.to_string(), seq),
            _ => {
                return Err(NegotiationError::Malformed(format!(
                    "bad current-connection {cc:?}"
                )))
            }
        };
        Ok(Decision {
            params: Params {
                banana_version: version,
                vocab_index,
            },
            current_connection,
        })
    }
}

/// What the master remembers of its live connection to a peer, for duplicate checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingConnection {
    pub slave_incarnation: String,
    pub seqnum: u64,
}

/// The master's duplicate-connection rule (foolscap's `compareOfferAndExisting`):
/// `Ok(true)` replaces the existing connection, `Err(Duplicate)` refuses the new one.
pub fn admit_duplicate(
    existing: &ExistingConnection,
    my_incarnation: &str,
    offer: &Hello,
) -> Result<bool, NegotiationError> {
    let Some(last) = &offer.last_connection else {
        return Err(NegotiationError::Duplicate);
    };
    if offer.incarnation.is_empty() {
        return Err(NegotiationError::Duplicate);
    }
    if offer.incarnation != existing.slave_incarnation {
        return Ok(true); // the peer restarted
    }
    match last {
        None => Err(NegotiationError::Duplicate),
        Some((inc, _)) if inc != my_incarnation => Ok(true),
        Some((_, seq)) if *seq == existing.seqnum => Ok(true),
        Some(_) => Err(NegotiationError::Duplicate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_bytes_as_captured() {
        let h = Hello::new(
            "2ttglrdjmqhe43zeyq7bgr37q5qqwidq",
            "3d0596f81f882368",
            Some(None),
        );
        let expected = b"banana-negotiation-range: 3 3\r\ninitial-vocab-table-range: 0 1\r\nlast-connection: none 0\r\nmy-incarnation: 3d0596f81f882368\r\nmy-tub-id: 2ttglrdjmqhe43zeyq7bgr37q5qqwidq\r\n\r\n";
        assert_eq!(h.encode(), expected.to_vec());
        assert_eq!(expected.len(), 169);
        let back = Hello::parse(&parse_block(expected).unwrap()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn decision_bytes_as_captured() {
        let d = Decision {
            params: Params {
                banana_version: 3,
                vocab_index: 1,
            },
            current_connection: ("8e528cbac2a94b0a".into(), 1),
        };
        let expected = b"banana-decision-version: 3\r\ncurrent-connection: 8e528cbac2a94b0a 1\r\ninitial-vocab-table-index: 1 bb33\r\n\r\n";
        assert_eq!(d.encode(), expected.to_vec());
        assert_eq!(expected.len(), 105);
        assert_eq!(Decision::parse(&parse_block(expected).unwrap()).unwrap(), d);
        let bad = b"banana-decision-version: 3\r\ncurrent-connection: x 1\r\ninitial-vocab-table-index: 1 ffff\r\n\r\n";
        assert!(Decision::parse(&parse_block(bad).unwrap()).is_err());
    }

    #[test]
    fn plaintext_exchange() {
        let req = upgrade_request("l3uv64hrncybwr7t7esgrafiqoh2njjc", "127.0.0.1");
        assert_eq!(req.len(), 109);
        let end = block_end(&req).unwrap().unwrap();
        assert_eq!(end, req.len());
        assert_eq!(
            parse_upgrade_request(&req).unwrap(),
            "l3uv64hrncybwr7t7esgrafiqoh2njjc"
        );
        assert_eq!(UPGRADE_RESPONSE.len(), 83);
        check_upgrade_response(UPGRADE_RESPONSE).unwrap();
        assert_eq!(
            check_upgrade_response(&refusal("unknown TubID x")),
            Err(NegotiationError::Refused("unknown TubID x".into()))
        );
        assert_eq!(
            parse_upgrade_request(b"GET /id/ HTTP/1.1\r\n\r\n"),
            Err("secure Tubs require encryption".into())
        );
        assert!(parse_upgrade_request(b"POST / HTTP/1.1\r\n\r\n").is_err());
        assert_eq!(
            block_end(&[b'x'; 5000]),
            Err(NegotiationError::BlockTooLarge)
        );
    }

    #[test]
    fn version_choice() {
        let mine = Hello::new("a", "i", None);
        let mut theirs = Hello::new("b", "j", None);
        assert_eq!(
            choose(&mine, &theirs).unwrap(),
            Params {
                banana_version: 3,
                vocab_index: 1
            }
        );
        theirs.banana_range = (3, 7);
        assert_eq!(choose(&mine, &theirs).unwrap().banana_version, 3);
        theirs.banana_range = (1, 2);
        assert_eq!(
            choose(&mine, &theirs),
            Err(NegotiationError::Version(
                "I can't handle banana version 2".into()
            ))
        );
        let m = parse_block(b"my-tub-id: x\r\n\r\n").unwrap();
        assert_eq!(
            Hello::parse(&m),
            Err(NegotiationError::Version(
                "No valid banana-negotiation sequence seen".into()
            ))
        );
    }

    #[test]
    fn duplicate_rules() {
        let existing = ExistingConnection {
            slave_incarnation: "slave1".into(),
            seqnum: 1,
        };
        let mut offer = Hello::new("t", "slave1", Some(None));
        assert_eq!(
            admit_duplicate(&existing, "me", &offer),
            Err(NegotiationError::Duplicate)
        );
        offer.last_connection = Some(Some(("me".into(), 1)));
        assert_eq!(admit_duplicate(&existing, "me", &offer), Ok(true));
        offer.last_connection = Some(Some(("me".into(), 0)));
        assert_eq!(
            admit_duplicate(&existing, "me", &offer),
            Err(NegotiationError::Duplicate)
        );
        offer.last_connection = Some(Some(("old-me".into(), 0)));
        assert_eq!(admit_duplicate(&existing, "me", &offer), Ok(true));
        offer.incarnation = "slave2".into();
        offer.last_connection = Some(None);
        assert_eq!(admit_duplicate(&existing, "me", &offer), Ok(true));
        offer.last_connection = None;
        assert_eq!(
            admit_duplicate(&existing, "me", &offer),
            Err(NegotiationError::Duplicate)
        );
    }
}
