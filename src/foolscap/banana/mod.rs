//! Banana, Foolscap's token serialization: a sans-IO codec.
//!
//! A token is `header type [body]`: the header is an unsigned base-128 number,
//! little-endian, 7 bits a byte with the high bit clear (at most 64 bytes); the type
//! byte has the high bit set; STRING, LONGINT, LONGNEG, ERROR and FLOAT carry a body.
//! [`TokenDecoder`] turns a byte stream into [`Token`]s (nom, streaming: "need more
//! bytes" is an expected outcome), [`Encoder`] writes tokens into a `BytesMut`.
//! Nothing here knows of sockets or clocks.

mod decode;
mod encode;

pub use decode::{DecodeLimits, TokenDecoder};
pub use encode::Encoder;

use bytes::Bytes;
use num_bigint::BigInt;

/// Type bytes, as in `foolscap/tokens.py`.
pub mod typebyte {
    pub const LIST: u8 = 0x80;
    pub const INT: u8 = 0x81;
    pub const STRING: u8 = 0x82;
    pub const NEG: u8 = 0x83;
    pub const FLOAT: u8 = 0x84;
    pub const LONGINT: u8 = 0x85;
    pub const LONGNEG: u8 = 0x86;
    pub const VOCAB: u8 = 0x87;
    pub const OPEN: u8 = 0x88;
    pub const CLOSE: u8 = 0x89;
    pub const ABORT: u8 = 0x8a;
    pub const ERROR: u8 = 0x8d;
    pub const PING: u8 = 0x8e;
    pub const PONG: u8 = 0x8f;
}

/// Foolscap writes at most 64 header bytes and refuses a 65th
/// ("token prefix is limited to 64 bytes").
pub const MAX_HEADER_BYTES: usize = 64;

/// An ERROR token's body is at most 1000 bytes (foolscap's `SIZE_LIMIT`); a larger
/// header is itself a protocol error.
pub const MAX_ERROR_LEN: u64 = 1000;

/// One Banana token.
#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    /// Starts a sequence; the header is the sender's open-count.
    Open(u64),
    /// Ends the sequence whose OPEN carried the same count.
    Close(u64),
    /// Abandons the current sequence.
    Abort(u64),
    /// INT, NEG, LONGINT or LONGNEG.
    Int(BigInt),
    /// A byte string.
    String(Bytes),
    /// An index into the negotiated vocabulary table.
    Vocab(u64),
    Float(f64),
    /// "I am hanging up", with a reason.
    Error(Bytes),
    Ping(u64),
    Pong(u64),
    /// A STRING whose length exceeded the decoder's limit: its body was skipped
    /// without being buffered. The receiver treats it as a schema violation.
    SkippedString(u64),
}

/// A protocol error: the peer violated Banana so badly that the only answer is an
/// ERROR token and a disconnect.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BananaError {
    #[error("token prefix is limited to 64 bytes")]
    HeaderTooLong,
    #[error("oldbanana peer detected (LIST token)")]
    OldBanana,
    #[error("Invalid Type Byte 0x{0:02x}")]
    InvalidTypeByte(u8),
    #[error("oversized ERROR token ({0} bytes)")]
    OversizedError(u64),
    #[error("{kind} header too large ({value})")]
    HeaderValueTooLarge { kind: &'static str, value: String },
    #[error("LONGINT body of {0} bytes exceeds the limit of {1}")]
    LongIntTooLarge(u64, u64),
    #[error("{0}")]
    Protocol(String),
}

/// Vocabulary table 1, the one foolscap 24.9 negotiates (`foolscap/vocab.py`).
pub const VOCAB_TABLE_1: [&str; 25] = [
    "none",
    "boolean",
    "reference",
    "dict",
    "list",
    "tuple",
    "set",
    "immutable-set",
    "unicode",
    "set-vocab",
    "add-vocab",
    "call",
    "arguments",
    "answer",
    "error",
    "my-reference",
    "your-reference",
    "their-reference",
    "copyable",
    "instance",
    "module",
    "class",
    "method",
    "function",
    "attrdict",
];

/// A negotiated vocabulary table: index → word, and word → index for encoding.
/// The known tables are static, so every connection shares them.
#[derive(Clone, Copy, Debug)]
pub struct VocabTable {
    words: &'static [&'static str],
}

impl VocabTable {
    /// Table `index` as foolscap defines it (0: empty, 1: [`VOCAB_TABLE_1`]).
    pub fn by_index(index: u32) -> Option<VocabTable> {
        let words: &'static [&'static str] = match index {
            0 => &[],
            1 => &VOCAB_TABLE_1,
            _ => return None,
        };
        Some(VocabTable { words })
    }

    /// The highest table index this implementation knows.
    pub const MAX_INDEX: u32 = 1;

    pub fn word(&self, index: u64) -> Option<Bytes> {
        let word = self.words.get(usize::try_from(index).ok()?)?;
        Some(Bytes::from_static(word.as_bytes()))
    }

    pub fn index_of(&self, word: &[u8]) -> Option<u64> {
        self.words
            .iter()
            .position(|w| w.as_bytes() == word)
            .map(|i| i as u64)
    }

    /// The first four hex digits of SHA-1 over the words joined with NUL: the check
    /// value in a negotiation DECISION (`1 bb33`, `0 da39`).
    pub fn hash4(&self) -> String {
        use sha1::{Digest, Sha1};
        let joined = self.words.join("\x00");
        let digest = Sha1::digest(&joined);
        hex_lower(&digest[..2])
    }
}

pub(crate) fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_hashes_match_foolscap() {
        assert_eq!(VocabTable::by_index(1).unwrap().hash4(), "bb33");
        assert_eq!(VocabTable::by_index(0).unwrap().hash4(), "da39");
        assert!(VocabTable::by_index(2).is_none());
    }
}
