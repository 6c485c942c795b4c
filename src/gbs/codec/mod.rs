//! GBS message bodies in CBOR and JSON. Pure.
//!
//! # CBOR
//! Encoding reproduces what Tahoe 1.20 writes with `cbor2.dumps`, byte for byte
//! (checked against captured vectors in `testdata/cbor_vectors.txt`): definite
//! lengths, smallest integer encodings, text-string keys except in the version message
//! (whose keys are byte strings), map entries in Tahoe's insertion order, sets as tag
//! 258 around an array. Set items are written in ascending order; Python writes a
//! set's items in hash-table order, which is the same for the small share numbers in
//! practice and differs only in item order otherwise (no reader depends on it).
//!
//! Decoding validates as Tahoe's pycddl schemas do, with messages naming the location:
//! exactly the schema's keys at the top level of a request, sets must carry tag 258,
//! at most 256 share numbers, 30 test vectors and 30 read vectors, `reason` of 1 to
//! 32765 UTF-8 bytes. Like pycddl, bytes after the first item are ignored, and
//! indefinite-length items and repeated set items are accepted. Unlike Tahoe, a wrong
//! type that pycddl lets through and the server then trips over (a byte-string
//! `reason`, text share-number keys, an integer beyond 64 bits) is a 400 here, not a
//! 500. Unknown keys inside test/write/read vector maps are ignored, as pycddl does,
//! except an `operator` other than `"eq"` (the only test Tahoe servers perform; the
//! wire format dropped the field), which is refused rather than silently read as
//! equality.
//!
//! # JSON
//! Tahoe 1.20 has no JSON; the specification's rules apply: sets are arrays, byte
//! strings are standard base64 (padded) strings, share-number map keys are decimal
//! strings. The version message's byte-string keys become text keys (they are ASCII
//! names, and JSON keys must be text), while `application-version`, a byte string, is
//! base64 like every other byte string.
//!
//! # Layout
//! One type per message body, each a [`Body`]: one `encode` and one `decode`, both
//! taking the [`Format`], so every body round-trips in both encodings and the server
//! and the client read and write bodies the same way.
//! - [`requests`]: what a client sends: [`AllocateBody`], [`CorruptBody`],
//!   [`ReadTestWriteBody`]. Decoding is strict (the schema's keys and limits): the
//!   server runs it on untrusted bytes.
//! - [`responses`]: what a server answers: the seam's own
//!   [`VersionInfo`](crate::storage::VersionInfo),
//!   [`AllocateResult`](crate::storage::AllocateResult),
//!   [`WriteProgress`](crate::storage::WriteProgress) and
//!   [`ReadTestWriteResult`](crate::storage::ReadTestWriteResult), and [`ShareSet`].
//!   Decoding is lenient about extra keys, so a newer server's additions do not break
//!   the client.
//! - this file: the limits, the typed [`CodecError`] and the machinery both share. A
//!   body is parsed into one [`Value`] tree (JSON mapped onto it) and validated by
//!   helpers that carry the location for the error; encoding builds a tree and writes
//!   it as CBOR or renders it as JSON. The schema checks are written once for both
//!   encodings that way.
//!
//! A [`CodecError`]'s text is the body of the server's 400 response, so its wording is
//! part of the interface; the variants say what went wrong without parsing it.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use ciborium::Value;
use data_encoding::BASE64;

use super::media::Format;
use crate::storage::{ShareNum, MAX_SHARES};

pub mod requests;
pub mod responses;

pub use requests::{AllocateBody, CorruptBody, ReadTestWriteBody};
pub use responses::ShareSet;

/// The CBOR tag for a set (IANA registry).
pub const SET_TAG: u64 = 258;
/// Tahoe's limit on test vectors per share and on read vectors per request.
pub const MAX_VECTORS: usize = 30;
/// Tahoe's limit on a corruption reason, in UTF-8 bytes (so the encoded message fits
/// in 32768 bytes).
pub const MAX_REASON_LEN: usize = 32765;
/// No GBS message nests deeper than 6; anything much deeper is hostile.
const RECURSION_LIMIT: usize = 16;

/// A GBS message body. The server decodes requests and encodes responses through it,
/// the client the other way round; the server's `read_body` and the client's `cbor`
/// are generic over it.
pub trait Body: Sized {
    /// The body in `fmt`. Writes what it is given: keeping within the schema's limits
    /// (share count, vector count, reason length) is the sender's business.
    fn encode(&self, fmt: Format) -> Vec<u8>;

    /// Parse and validate a body in `fmt`.
    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError>;
}

// ---------------------------------------------------------------------------------
// Errors.

/// A body that does not decode or does not fit the message's schema (a 400; the
/// `Display` text is the response body and must not change).
///
/// `path` names the location as the messages do: `""` for the top level (shown as
/// `/`), then `/"key"` for a map entry and `/3` for an array item or a share number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// Not CBOR, or nested deeper than the recursion limit (ciborium's description).
    InvalidCbor(String),
    /// Not JSON (serde_json's description).
    InvalidJson(String),
    /// An item of the wrong type.
    WrongType {
        path: String,
        expected: Expected,
        got: Item,
    },
    /// A required map key is absent.
    MissingKey { path: String, key: &'static str },
    /// A key the schema does not have, at the top level of a request.
    UnexpectedKey { path: String, key: Key },
    /// An array longer than the schema allows.
    TooManyItems { path: String, max: usize },
    /// A map with more entries than the schema allows.
    TooManyEntries { path: String, max: usize },
    /// An integer that is negative or does not fit in 64 bits.
    NotU64 { path: String },
    /// A share number beyond [`ShareNum`].
    ShareNumberTooLarge { path: String, number: u64 },
    /// A JSON share-number key that is not a decimal number.
    ShareKeyNotNumber { path: String, key: String },
    /// A share-number key that is neither an integer nor (in JSON) a decimal string.
    ShareKeyNotInteger { path: String, got: Item },
    /// A JSON string that is not standard padded base64.
    BadBase64 { path: String },
    /// A text string whose UTF-8 length is outside `min..=max`.
    StringLength {
        path: String,
        min: usize,
        max: usize,
        got: usize,
    },
    /// A test vector with an `operator` other than `"eq"`.
    UnsupportedOperator { path: String },
    /// A version message without the storage protocol's entry.
    MissingVersionEntry { path: String },
    /// A byte range whose `begin` is after its `end`.
    BadRange { path: String },
}

impl CodecError {
    /// The location of a validation error; `None` when the body did not parse.
    pub fn path(&self) -> Option<&str> {
        use CodecError::*;
        match self {
            InvalidCbor(_) | InvalidJson(_) => None,
            WrongType { path, .. }
            | MissingKey { path, .. }
            | UnexpectedKey { path, .. }
            | TooManyItems { path, .. }
            | TooManyEntries { path, .. }
            | NotU64 { path }
            | ShareNumberTooLarge { path, .. }
            | ShareKeyNotNumber { path, .. }
            | ShareKeyNotInteger { path, .. }
            | BadBase64 { path }
            | StringLength { path, .. }
            | UnsupportedOperator { path }
            | MissingVersionEntry { path }
            | BadRange { path } => Some(path),
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CodecError::*;
        match self {
            InvalidCbor(e) => return write!(f, "invalid CBOR: {e}"),
            InvalidJson(e) => return write!(f, "invalid JSON: {e}"),
            _ => {}
        }
        let path = self.path().unwrap_or_default();
        let path = if path.is_empty() { "/" } else { path };
        write!(f, "error validating at location {path}: ")?;
        match self {
            InvalidCbor(_) | InvalidJson(_) => unreachable!("returned above"),
            WrongType { expected, got, .. } => write!(f, "expected {expected}, got {got}"),
            MissingKey { key, .. } => write!(f, "missing key \"{key}\""),
            UnexpectedKey { key, .. } => write!(f, "unexpected key {key}"),
            TooManyItems { max, .. } => write!(f, "array must have between 0 and {max} items"),
            TooManyEntries { max, .. } => {
                write!(f, "map must have between 0 and {max} entries")
            }
            NotU64 { .. } => f.write_str("expected an unsigned integer below 2**64"),
            ShareNumberTooLarge { number, .. } => {
                write!(f, "share number {number} is too large")
            }
            ShareKeyNotNumber { key, .. } => {
                write!(f, "share number key {key:?} is not a number")
            }
            ShareKeyNotInteger { got, .. } => {
                write!(f, "share number keys must be unsigned integers, got {got}")
            }
            BadBase64 { .. } => f.write_str("expected a base64 string"),
            StringLength { min, max, got, .. } => write!(
                f,
                "string length must be between {min} and {max} bytes, got {got}"
            ),
            UnsupportedOperator { .. } => f.write_str("only the \"eq\" test operator is supported"),
            MissingVersionEntry { .. } => f.write_str("missing the storage protocol v1 entry"),
            BadRange { .. } => f.write_str("begin is after end"),
        }
    }
}

impl std::error::Error for CodecError {}

/// What a validator wanted, in [`CodecError::WrongType`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Map,
    Array,
    UnsignedInteger,
    ByteString,
    /// A byte string in JSON.
    Base64String,
    /// Tag 258 around an array (CBOR).
    Set,
    TextString,
    Bool,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::Map => "a map",
            Expected::Array => "an array",
            Expected::UnsignedInteger => "an unsigned integer",
            Expected::ByteString => "a byte string",
            Expected::Base64String => "a base64 string",
            Expected::Set => "a set (tag 258)",
            Expected::TextString => "a text string",
            Expected::Bool => "a bool",
        })
    }
}

/// The kind of item a body had instead, in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Integer,
    ByteString,
    Float,
    TextString,
    Bool,
    Null,
    Tagged,
    Array,
    Map,
    /// Anything else ciborium reads (a simple value).
    Unknown,
}

impl Item {
    fn of(v: &Value) -> Item {
        match v {
            Value::Integer(_) => Item::Integer,
            Value::Bytes(_) => Item::ByteString,
            Value::Float(_) => Item::Float,
            Value::Text(_) => Item::TextString,
            Value::Bool(_) => Item::Bool,
            Value::Null => Item::Null,
            Value::Tag(..) => Item::Tagged,
            Value::Array(_) => Item::Array,
            Value::Map(_) => Item::Map,
            _ => Item::Unknown,
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Item::Integer => "integer",
            Item::ByteString => "byte string",
            Item::Float => "float",
            Item::TextString => "text string",
            Item::Bool => "bool",
            Item::Null => "null",
            Item::Tagged => "tagged item",
            Item::Array => "array",
            Item::Map => "map",
            Item::Unknown => "unknown item",
        })
    }
}

/// A map key as [`CodecError::UnexpectedKey`] names it: text quoted, an integer in
/// decimal, anything else by its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Text(String),
    Integer(i128),
    Other(Item),
}

impl Key {
    fn of(k: &Value) -> Key {
        match k {
            Value::Text(s) => Key::Text(s.clone()),
            Value::Integer(i) => Key::Integer(i128::from(*i)),
            other => Key::Other(Item::of(other)),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Text(s) => write!(f, "{s:?}"),
            Key::Integer(i) => write!(f, "{i}"),
            Key::Other(item) => write!(f, "{item}"),
        }
    }
}

fn wrong_type(path: &str, expected: Expected, got: &Value) -> CodecError {
    CodecError::WrongType {
        path: path.to_owned(),
        expected,
        got: Item::of(got),
    }
}

// ---------------------------------------------------------------------------------
// Encoding: build a value tree, then write it.

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn uint(v: u64) -> Value {
    Value::Integer(v.into())
}

fn set(items: &BTreeSet<ShareNum>) -> Value {
    Value::Tag(
        SET_TAG,
        Box::new(Value::Array(
            items.iter().map(|&s| uint(s.into())).collect(),
        )),
    )
}

fn to_cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).expect("writing CBOR into a Vec cannot fail");
    out
}

/// Render a message value as JSON with the specification's rules.
fn json_of(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Integer(i) => match u64::try_from(*i) {
            Ok(u) => J::from(u),
            Err(_) => J::from(i128::from(*i) as f64),
        },
        Value::Bytes(b) => J::String(BASE64.encode(b)),
        Value::Float(f) => J::from(*f),
        Value::Text(s) => J::String(s.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Null => J::Null,
        Value::Tag(_, inner) => json_of(inner),
        Value::Array(items) => J::Array(items.iter().map(json_of).collect()),
        Value::Map(entries) => {
            let mut m = serde_json::Map::new();
            for (k, v) in entries {
                let key = match k {
                    Value::Text(s) => s.clone(),
                    Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    Value::Integer(i) => i128::from(*i).to_string(),
                    other => json_of(other).to_string(),
                };
                m.insert(key, json_of(v));
            }
            J::Object(m)
        }
        _ => J::Null,
    }
}

fn encode_value(v: &Value, fmt: Format) -> Vec<u8> {
    match fmt {
        Format::Cbor => to_cbor(v),
        Format::Json => serde_json::to_vec(&json_of(v)).expect("JSON of a Value"),
    }
}

// ---------------------------------------------------------------------------------
// Decoding: parse into a value tree, then take it apart with the location in hand.

/// Parse a body into a value tree. JSON is mapped onto CBOR values (objects become
/// maps with text keys) and the `Format` tells the validators how to read sets, byte
/// strings and share-number keys.
fn parse(body: &[u8], fmt: Format) -> Result<Value, CodecError> {
    match fmt {
        Format::Cbor => ciborium::de::from_reader_with_recursion_limit(body, RECURSION_LIMIT)
            .map_err(|e| CodecError::InvalidCbor(e.to_string())),
        Format::Json => {
            let j: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| CodecError::InvalidJson(e.to_string()))?;
            Ok(value_of_json(&j))
        }
    }
}

fn value_of_json(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                uint(u)
            } else if let Some(i) = n.as_i64() {
                Value::Integer(i.into())
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::Text(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(value_of_json).collect()),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::Text(k.clone()), value_of_json(v)))
                .collect(),
        ),
    }
}

fn as_map<'a>(v: &'a Value, path: &str) -> Result<&'a [(Value, Value)], CodecError> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(wrong_type(path, Expected::Map, other)),
    }
}

fn as_array<'a>(v: &'a Value, path: &str) -> Result<&'a [Value], CodecError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(wrong_type(path, Expected::Array, other)),
    }
}

fn as_uint(v: &Value, path: &str) -> Result<u64, CodecError> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| CodecError::NotU64 {
            path: path.to_owned(),
        }),
        other => Err(wrong_type(path, Expected::UnsignedInteger, other)),
    }
}

fn as_bytes(v: &Value, path: &str, fmt: Format) -> Result<Bytes, CodecError> {
    match (v, fmt) {
        (Value::Bytes(b), Format::Cbor) => Ok(Bytes::copy_from_slice(b)),
        (Value::Text(s), Format::Json) => match BASE64.decode(s.as_bytes()) {
            Ok(b) => Ok(Bytes::from(b)),
            Err(_) => Err(CodecError::BadBase64 {
                path: path.to_owned(),
            }),
        },
        (other, Format::Cbor) => Err(wrong_type(path, Expected::ByteString, other)),
        (other, Format::Json) => Err(wrong_type(path, Expected::Base64String, other)),
    }
}

fn share_number(v: u64, path: &str) -> Result<ShareNum, CodecError> {
    ShareNum::try_from(v).map_err(|_| CodecError::ShareNumberTooLarge {
        path: path.to_owned(),
        number: v,
    })
}

/// A share-number map key: an integer, or in JSON a decimal string.
fn share_key(k: &Value, path: &str, fmt: Format) -> Result<ShareNum, CodecError> {
    match (k, fmt) {
        (Value::Integer(_), _) => share_number(as_uint(k, path)?, path),
        (Value::Text(s), Format::Json) => match s.parse::<u64>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => share_number(n, path),
            _ => Err(CodecError::ShareKeyNotNumber {
                path: path.to_owned(),
                key: s.clone(),
            }),
        },
        (other, _) => Err(CodecError::ShareKeyNotInteger {
            path: path.to_owned(),
            got: Item::of(other),
        }),
    }
}

/// A set of share numbers: tag 258 around an array in CBOR, an array in JSON.
fn as_share_set(v: &Value, path: &str, fmt: Format) -> Result<BTreeSet<ShareNum>, CodecError> {
    let items = match (v, fmt) {
        (Value::Tag(SET_TAG, inner), Format::Cbor) => as_array(inner, path)?,
        (Value::Array(items), Format::Json) => items.as_slice(),
        (other, Format::Cbor) => return Err(wrong_type(path, Expected::Set, other)),
        (other, Format::Json) => return Err(wrong_type(path, Expected::Array, other)),
    };
    if items.len() > MAX_SHARES {
        return Err(CodecError::TooManyItems {
            path: path.to_owned(),
            max: MAX_SHARES,
        });
    }
    let mut out = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}/{i}");
        out.insert(share_number(as_uint(item, &p)?, &p)?);
    }
    Ok(out)
}

fn key_name(k: &Value) -> Option<&str> {
    match k {
        Value::Text(s) => Some(s),
        _ => None,
    }
}

/// Take the named fields of a map: every one required; `strict` refuses other keys.
fn fields<'a, const N: usize>(
    v: &'a Value,
    path: &str,
    names: [&'static str; N],
    strict: bool,
) -> Result<[&'a Value; N], CodecError> {
    let map = as_map(v, path)?;
    let mut found: [Option<&Value>; N] = [None; N];
    for (k, val) in map {
        match key_name(k).and_then(|n| names.iter().position(|x| *x == n)) {
            Some(i) => found[i] = Some(val),
            None if strict => {
                return Err(CodecError::UnexpectedKey {
                    path: path.to_owned(),
                    key: Key::of(k),
                });
            }
            None => {}
        }
    }
    let mut out = [&Value::Null; N];
    for i in 0..N {
        match found[i] {
            Some(v) => out[i] = v,
            None => {
                return Err(CodecError::MissingKey {
                    path: path.to_owned(),
                    key: names[i],
                })
            }
        }
    }
    Ok(out)
}

/// The path of a map entry.
fn child(path: &str, key: &str) -> String {
    format!("{path}/\"{key}\"")
}

/// A map entry by text or byte-string key (responses, which are lenient).
fn map_get<'a>(m: &'a [(Value, Value)], key: &[u8]) -> Option<&'a Value> {
    m.iter().find_map(|(k, v)| match k {
        Value::Bytes(b) if b == key => Some(v),
        Value::Text(s) if s.as_bytes() == key => Some(v),
        _ => None,
    })
}

fn required_field<'a>(
    m: &'a [(Value, Value)],
    key: &'static str,
    path: &str,
) -> Result<&'a Value, CodecError> {
    map_get(m, key.as_bytes()).ok_or_else(|| CodecError::MissingKey {
        path: path.to_owned(),
        key,
    })
}

#[cfg(test)]
mod test_support {
    use super::*;

    /// A captured Tahoe 1.20 CBOR body from `testdata/cbor_vectors.txt`.
    pub fn vector(name: &str) -> Vec<u8> {
        let all = include_str!("../testdata/cbor_vectors.txt");
        let hex_str = all
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no vector {name}"));
        hex::decode(hex_str.trim()).unwrap()
    }

    pub fn shares(s: &[ShareNum]) -> BTreeSet<ShareNum> {
        s.iter().copied().collect()
    }

    pub fn cbor(v: Value) -> Vec<u8> {
        to_cbor(&v)
    }

    /// Decode, expecting `want`, and check the error's text too: it is the 400 body.
    pub fn assert_refused<T: Body + fmt::Debug>(
        body: &[u8],
        fmt: Format,
        want: CodecError,
        message: &str,
    ) {
        let e = T::decode(body, fmt).unwrap_err();
        assert_eq!(e, want);
        assert_eq!(e.to_string(), message);
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::storage::{
        AllocateResult, ByteRange, ReadTestWriteResult, VersionInfo, WriteProgress,
    };

    #[test]
    fn messages_are_the_400_bodies() {
        // One of each: the text is the interface.
        let p = |s: &str| s.to_owned();
        let cases = [
            (
                CodecError::WrongType {
                    path: p(""),
                    expected: Expected::Map,
                    got: Item::Array,
                },
                "error validating at location /: expected a map, got array",
            ),
            (
                CodecError::WrongType {
                    path: p("/\"share-numbers\""),
                    expected: Expected::Set,
                    got: Item::Array,
                },
                "error validating at location /\"share-numbers\": expected a set (tag 258), \
                 got array",
            ),
            (
                CodecError::MissingKey {
                    path: p(""),
                    key: "reason",
                },
                "error validating at location /: missing key \"reason\"",
            ),
            (
                CodecError::UnexpectedKey {
                    path: p(""),
                    key: Key::Text(p("x")),
                },
                "error validating at location /: unexpected key \"x\"",
            ),
            (
                CodecError::UnexpectedKey {
                    path: p(""),
                    key: Key::Integer(-3),
                },
                "error validating at location /: unexpected key -3",
            ),
            (
                CodecError::UnexpectedKey {
                    path: p(""),
                    key: Key::Other(Item::ByteString),
                },
                "error validating at location /: unexpected key byte string",
            ),
            (
                CodecError::TooManyItems {
                    path: p("/\"read-vector\""),
                    max: MAX_VECTORS,
                },
                "error validating at location /\"read-vector\": array must have between 0 \
                 and 30 items",
            ),
            (
                CodecError::TooManyEntries {
                    path: p("/\"test-write-vectors\""),
                    max: MAX_SHARES,
                },
                "error validating at location /\"test-write-vectors\": map must have between \
                 0 and 256 entries",
            ),
            (
                CodecError::NotU64 {
                    path: p("/\"allocated-size\""),
                },
                "error validating at location /\"allocated-size\": expected an unsigned \
                 integer below 2**64",
            ),
            (
                CodecError::ShareNumberTooLarge {
                    path: p("/0"),
                    number: 65536,
                },
                "error validating at location /0: share number 65536 is too large",
            ),
            (
                CodecError::ShareKeyNotNumber {
                    path: p("/\"test-write-vectors\""),
                    key: p("x"),
                },
                "error validating at location /\"test-write-vectors\": share number key \"x\" \
                 is not a number",
            ),
            (
                CodecError::ShareKeyNotInteger {
                    path: p("/\"test-write-vectors\""),
                    got: Item::TextString,
                },
                "error validating at location /\"test-write-vectors\": share number keys must \
                 be unsigned integers, got text string",
            ),
            (
                CodecError::BadBase64 { path: p("/x") },
                "error validating at location /x: expected a base64 string",
            ),
            (
                CodecError::StringLength {
                    path: p("/\"reason\""),
                    min: 1,
                    max: MAX_REASON_LEN,
                    got: 0,
                },
                "error validating at location /\"reason\": string length must be between 1 \
                 and 32765 bytes, got 0",
            ),
            (
                CodecError::UnsupportedOperator { path: p("/x") },
                "error validating at location /x: only the \"eq\" test operator is supported",
            ),
            (
                CodecError::MissingVersionEntry { path: p("") },
                "error validating at location /: missing the storage protocol v1 entry",
            ),
            (
                CodecError::BadRange { path: p("/0") },
                "error validating at location /0: begin is after end",
            ),
            (CodecError::InvalidCbor(p("EOF")), "invalid CBOR: EOF"),
            (CodecError::InvalidJson(p("EOF")), "invalid JSON: EOF"),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(258);
        let seeds: Vec<Vec<u8>> = [
            "allocate_request",
            "rtw_request",
            "corrupt_request",
            "version",
            "rtw_response",
            "write_progress",
        ]
        .iter()
        .map(|n| vector(n))
        .collect();
        for i in 0..10_000 {
            // Mutations of valid messages reach deeper than random bytes.
            let mut b = seeds[i % seeds.len()].clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..b.len());
                match rng.gen_range(0..3) {
                    0 => b[at] = rng.gen(),
                    1 => {
                        b.truncate(at);
                    }
                    _ => b.insert(at, rng.gen()),
                }
                if b.is_empty() {
                    b.push(rng.gen());
                }
            }
            for fmt in [Format::Cbor, Format::Json] {
                let _ = AllocateBody::decode(&b, fmt);
                let _ = CorruptBody::decode(&b, fmt);
                let _ = ReadTestWriteBody::decode(&b, fmt);
                let _ = VersionInfo::decode(&b, fmt);
                let _ = AllocateResult::decode(&b, fmt);
                let _ = ShareSet::decode(&b, fmt);
                let _ = WriteProgress::decode(&b, fmt);
                let _ = ReadTestWriteResult::decode(&b, fmt);
            }
        }
    }

    #[test]
    fn every_body_round_trips_in_both_formats() {
        fn round_trip<T: Body + PartialEq + fmt::Debug>(v: T) {
            for fmt in [Format::Cbor, Format::Json] {
                assert_eq!(T::decode(&v.encode(fmt), fmt).unwrap(), v, "{fmt:?}");
            }
        }
        round_trip(AllocateBody {
            share_numbers: shares(&[0, 9, 255]),
            allocated_size: u64::MAX,
        });
        round_trip(CorruptBody {
            reason: "bad hash \u{1f986}".to_owned(),
        });
        round_trip(ReadTestWriteBody {
            test_write_vectors: [(
                7,
                crate::storage::TestWriteVectors {
                    test: vec![crate::storage::TestVector {
                        offset: 1,
                        size: 2,
                        specimen: Bytes::from_static(b"\0\xff"),
                    }],
                    write: vec![crate::storage::WriteVector {
                        offset: 3,
                        data: Bytes::from_static(b"xyz"),
                    }],
                    new_length: Some(4),
                },
            )]
            .into_iter()
            .collect(),
            read_vector: vec![crate::storage::ReadVector { offset: 5, size: 6 }],
        });
        round_trip(VersionInfo {
            maximum_immutable_share_size: 1,
            maximum_mutable_share_size: 2,
            available_space: 3,
            application_version: b"\xffswampgate".to_vec(),
        });
        round_trip(AllocateResult {
            already_have: shares(&[1]),
            allocated: shares(&[2, 3]),
        });
        round_trip(ShareSet(shares(&[4, 5])));
        round_trip(WriteProgress {
            required: vec![ByteRange { begin: 1, end: 2 }],
        });
        round_trip(ReadTestWriteResult {
            success: false,
            data: [(12, vec![Bytes::from_static(b"ab"), Bytes::new()])]
                .into_iter()
                .collect(),
        });
    }
}
