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

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use ciborium::Value;
use data_encoding::BASE64;

use super::media::Format;
use super::VERSION_V1_KEY;
use crate::storage::{
    AllocateResult, ByteRange, ReadTestWriteResult, ReadVector, ShareNum, TestVector,
    TestWriteVectors, VersionInfo, WriteVector, MAX_SHARES,
};

/// The CBOR tag for a set (IANA registry).
pub const SET_TAG: u64 = 258;
/// Tahoe's limit on test vectors per share and on read vectors per request.
pub const MAX_VECTORS: usize = 30;
/// Tahoe's limit on a corruption reason, in UTF-8 bytes (so the encoded message fits
/// in 32768 bytes).
pub const MAX_REASON_LEN: usize = 32765;
/// No GBS message nests deeper than 6; anything much deeper is hostile.
const RECURSION_LIMIT: usize = 16;

/// A body that does not decode or does not fit the message's schema (a 400; the
/// message is the response body).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

fn err<T>(path: &str, msg: impl std::fmt::Display) -> Result<T, CodecError> {
    Err(CodecError(format!(
        "error validating at location {}: {msg}",
        if path.is_empty() { "/" } else { path }
    )))
}

// ---------------------------------------------------------------------------------
// Message types that are not already seam types.

/// The body of `POST /storage/v1/immutable/:si`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocateBody {
    pub share_numbers: BTreeSet<ShareNum>,
    pub allocated_size: u64,
}

/// The body of `POST /storage/v1/mutable/:si/read-test-write`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadTestWriteBody {
    pub test_write_vectors: BTreeMap<ShareNum, TestWriteVectors>,
    pub read_vector: Vec<ReadVector>,
}

// ---------------------------------------------------------------------------------
// Encoding.

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

/// Render a message value as JSON with the specification's rules. `key` is true for
/// map keys.
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

fn encode(v: &Value, fmt: Format) -> Vec<u8> {
    match fmt {
        Format::Cbor => to_cbor(v),
        Format::Json => serde_json::to_vec(&json_of(v)).expect("JSON of a Value"),
    }
}

fn version_value(v: &VersionInfo) -> Value {
    let b = |s: &[u8]| Value::Bytes(s.to_vec());
    Value::Map(vec![
        (
            b(VERSION_V1_KEY),
            Value::Map(vec![
                (
                    b(b"maximum-immutable-share-size"),
                    uint(v.maximum_immutable_share_size),
                ),
                (
                    b(b"maximum-mutable-share-size"),
                    uint(v.maximum_mutable_share_size),
                ),
                (b(b"available-space"), uint(v.available_space)),
            ]),
        ),
        (b(b"application-version"), b(&v.application_version)),
    ])
}

/// `GET /storage/v1/version`: exactly the three sizes and `application-version`, with
/// byte-string keys; Tahoe's client refuses anything else.
pub fn encode_version(v: &VersionInfo, fmt: Format) -> Vec<u8> {
    encode(&version_value(v), fmt)
}

pub fn encode_allocate_result(r: &AllocateResult, fmt: Format) -> Vec<u8> {
    encode(
        &Value::Map(vec![
            (text("already-have"), set(&r.already_have)),
            (text("allocated"), set(&r.allocated)),
        ]),
        fmt,
    )
}

/// `GET …/shares`: a bare set.
pub fn encode_share_set(s: &BTreeSet<ShareNum>, fmt: Format) -> Vec<u8> {
    encode(&set(s), fmt)
}

/// PATCH responses (200 and 201): `{"required": [{"begin", "end"}…]}`.
pub fn encode_write_progress(required: &[ByteRange], fmt: Format) -> Vec<u8> {
    let ranges = required
        .iter()
        .map(|r| {
            Value::Map(vec![
                (text("begin"), uint(r.begin)),
                (text("end"), uint(r.end)),
            ])
        })
        .collect();
    encode(
        &Value::Map(vec![(text("required"), Value::Array(ranges))]),
        fmt,
    )
}

pub fn encode_read_test_write_result(r: &ReadTestWriteResult, fmt: Format) -> Vec<u8> {
    let data = r
        .data
        .iter()
        .map(|(sh, reads)| {
            (
                uint((*sh).into()),
                Value::Array(reads.iter().map(|b| Value::Bytes(b.to_vec())).collect()),
            )
        })
        .collect();
    encode(
        &Value::Map(vec![
            (text("success"), Value::Bool(r.success)),
            (text("data"), Value::Map(data)),
        ]),
        fmt,
    )
}

/// Client side: the body of an allocation, as Tahoe's client writes it.
pub fn encode_allocate_request(share_numbers: &BTreeSet<ShareNum>, allocated_size: u64) -> Vec<u8> {
    to_cbor(&Value::Map(vec![
        (text("share-numbers"), set(share_numbers)),
        (text("allocated-size"), uint(allocated_size)),
    ]))
}

/// Client side: the body of a corruption advisory.
pub fn encode_corrupt_request(reason: &str) -> Vec<u8> {
    to_cbor(&Value::Map(vec![(text("reason"), text(reason))]))
}

/// Client side: the body of a read-test-write.
pub fn encode_read_test_write_request(
    tw: &BTreeMap<ShareNum, TestWriteVectors>,
    read_vector: &[ReadVector],
) -> Vec<u8> {
    let twv = tw
        .iter()
        .map(|(sh, v)| {
            let tests = v
                .test
                .iter()
                .map(|t| {
                    Value::Map(vec![
                        (text("offset"), uint(t.offset)),
                        (text("size"), uint(t.size)),
                        (text("specimen"), Value::Bytes(t.specimen.to_vec())),
                    ])
                })
                .collect();
            let writes = v
                .write
                .iter()
                .map(|w| {
                    Value::Map(vec![
                        (text("offset"), uint(w.offset)),
                        (text("data"), Value::Bytes(w.data.to_vec())),
                    ])
                })
                .collect();
            (
                uint((*sh).into()),
                Value::Map(vec![
                    (text("test"), Value::Array(tests)),
                    (text("write"), Value::Array(writes)),
                    (
                        text("new-length"),
                        v.new_length.map(uint).unwrap_or(Value::Null),
                    ),
                ]),
            )
        })
        .collect();
    let reads = read_vector
        .iter()
        .map(|r| {
            Value::Map(vec![
                (text("offset"), uint(r.offset)),
                (text("size"), uint(r.size)),
            ])
        })
        .collect();
    to_cbor(&Value::Map(vec![
        (text("test-write-vectors"), Value::Map(twv)),
        (text("read-vector"), Value::Array(reads)),
    ]))
}

// ---------------------------------------------------------------------------------
// Decoding.

/// Parse a body into a value tree. JSON is mapped onto CBOR values (objects become
/// maps with text keys) and the `Format` tells the validators how to read sets, byte
/// strings and share-number keys.
fn parse(body: &[u8], fmt: Format) -> Result<Value, CodecError> {
    match fmt {
        Format::Cbor => ciborium::de::from_reader_with_recursion_limit(body, RECURSION_LIMIT)
            .map_err(|e| CodecError(format!("invalid CBOR: {e}"))),
        Format::Json => {
            let j: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| CodecError(format!("invalid JSON: {e}")))?;
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

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "integer",
        Value::Bytes(_) => "byte string",
        Value::Float(_) => "float",
        Value::Text(_) => "text string",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Tag(..) => "tagged item",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        _ => "unknown item",
    }
}

fn as_map<'a>(v: &'a Value, path: &str) -> Result<&'a [(Value, Value)], CodecError> {
    match v {
        Value::Map(m) => Ok(m),
        other => err(
            path,
            format_args!("expected a map, got {}", describe(other)),
        ),
    }
}

fn as_array<'a>(v: &'a Value, path: &str) -> Result<&'a [Value], CodecError> {
    match v {
        Value::Array(a) => Ok(a),
        other => err(
            path,
            format_args!("expected an array, got {}", describe(other)),
        ),
    }
}

fn as_uint(v: &Value, path: &str) -> Result<u64, CodecError> {
    match v {
        Value::Integer(i) => match u64::try_from(*i) {
            Ok(u) => Ok(u),
            Err(_) => err(path, "expected an unsigned integer below 2**64"),
        },
        other => err(
            path,
            format_args!("expected an unsigned integer, got {}", describe(other)),
        ),
    }
}

fn as_bytes(v: &Value, path: &str, fmt: Format) -> Result<Bytes, CodecError> {
    match (v, fmt) {
        (Value::Bytes(b), Format::Cbor) => Ok(Bytes::copy_from_slice(b)),
        (Value::Text(s), Format::Json) => match BASE64.decode(s.as_bytes()) {
            Ok(b) => Ok(Bytes::from(b)),
            Err(_) => err(path, "expected a base64 string"),
        },
        (other, Format::Cbor) => err(
            path,
            format_args!("expected a byte string, got {}", describe(other)),
        ),
        (other, Format::Json) => err(
            path,
            format_args!("expected a base64 string, got {}", describe(other)),
        ),
    }
}

fn share_number(v: u64, path: &str) -> Result<ShareNum, CodecError> {
    match ShareNum::try_from(v) {
        Ok(s) => Ok(s),
        Err(_) => err(path, format_args!("share number {v} is too large")),
    }
}

/// A set of share numbers: tag 258 around an array in CBOR, an array in JSON.
fn as_share_set(v: &Value, path: &str, fmt: Format) -> Result<BTreeSet<ShareNum>, CodecError> {
    let items = match (v, fmt) {
        (Value::Tag(SET_TAG, inner), Format::Cbor) => as_array(inner, path)?,
        (Value::Array(items), Format::Json) => items.as_slice(),
        (other, Format::Cbor) => {
            return err(
                path,
                format_args!("expected a set (tag 258), got {}", describe(other)),
            )
        }
        (other, Format::Json) => {
            return err(
                path,
                format_args!("expected an array, got {}", describe(other)),
            )
        }
    };
    if items.len() > MAX_SHARES {
        return err(
            path,
            format_args!("array must have between 0 and {MAX_SHARES} items"),
        );
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
    names: [&str; N],
    strict: bool,
) -> Result<[&'a Value; N], CodecError> {
    let map = as_map(v, path)?;
    let mut found: [Option<&Value>; N] = [None; N];
    for (k, val) in map {
        match key_name(k).and_then(|n| names.iter().position(|x| *x == n)) {
            Some(i) => found[i] = Some(val),
            None if strict => {
                return err(path, format_args!("unexpected key {}", show_key(k)));
            }
            None => {}
        }
    }
    let mut out = [&Value::Null; N];
    for i in 0..N {
        match found[i] {
            Some(v) => out[i] = v,
            None => return err(path, format_args!("missing key \"{}\"", names[i])),
        }
    }
    Ok(out)
}

fn show_key(k: &Value) -> String {
    match k {
        Value::Text(s) => format!("{s:?}"),
        Value::Integer(i) => i128::from(*i).to_string(),
        other => describe(other).to_string(),
    }
}

fn child(path: &str, key: &str) -> String {
    format!("{path}/\"{key}\"")
}

/// `POST /storage/v1/immutable/:si`: `{share-numbers: #6.258([0*256 uint]),
/// allocated-size: uint}`.
pub fn decode_allocate(body: &[u8], fmt: Format) -> Result<AllocateBody, CodecError> {
    let v = parse(body, fmt)?;
    let [sn, size] = fields(&v, "", ["share-numbers", "allocated-size"], true)?;
    Ok(AllocateBody {
        share_numbers: as_share_set(sn, &child("", "share-numbers"), fmt)?,
        allocated_size: as_uint(size, &child("", "allocated-size"))?,
    })
}

/// `POST …/corrupt`: `{reason: tstr .size (1..32765)}`.
pub fn decode_corrupt(body: &[u8], fmt: Format) -> Result<String, CodecError> {
    let v = parse(body, fmt)?;
    let [reason] = fields(&v, "", ["reason"], true)?;
    let path = child("", "reason");
    match reason {
        Value::Text(s) if (1..=MAX_REASON_LEN).contains(&s.len()) => Ok(s.clone()),
        Value::Text(s) => err(
            &path,
            format_args!(
                "string length must be between 1 and {MAX_REASON_LEN} bytes, got {}",
                s.len()
            ),
        ),
        other => err(
            &path,
            format_args!("expected a text string, got {}", describe(other)),
        ),
    }
}

fn check_operator(v: &Value, path: &str) -> Result<(), CodecError> {
    if let Value::Map(m) = v {
        for (k, val) in m {
            if key_name(k) == Some("operator") {
                let ok = matches!(val, Value::Text(s) if s == "eq")
                    || matches!(val, Value::Bytes(b) if b == b"eq");
                if !ok {
                    return err(
                        &child(path, "operator"),
                        "only the \"eq\" test operator is supported",
                    );
                }
            }
        }
    }
    Ok(())
}

/// `POST /storage/v1/mutable/:si/read-test-write`.
pub fn decode_read_test_write(body: &[u8], fmt: Format) -> Result<ReadTestWriteBody, CodecError> {
    let v = parse(body, fmt)?;
    let [twv, rv] = fields(&v, "", ["test-write-vectors", "read-vector"], true)?;
    let twv_path = child("", "test-write-vectors");
    let twv_map = as_map(twv, &twv_path)?;
    if twv_map.len() > MAX_SHARES {
        return err(
            &twv_path,
            format_args!("map must have between 0 and {MAX_SHARES} entries"),
        );
    }
    let mut test_write_vectors = BTreeMap::new();
    for (k, val) in twv_map {
        let sh = match (k, fmt) {
            (Value::Integer(_), _) => share_number(as_uint(k, &twv_path)?, &twv_path)?,
            (Value::Text(s), Format::Json) => match s.parse::<u64>() {
                Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => share_number(n, &twv_path)?,
                _ => {
                    return err(
                        &twv_path,
                        format_args!("share number key {s:?} is not a number"),
                    )
                }
            },
            (other, _) => {
                return err(
                    &twv_path,
                    format_args!(
                        "share number keys must be unsigned integers, got {}",
                        describe(other)
                    ),
                )
            }
        };
        let sp = format!("{twv_path}/{sh}");
        let [test, write, new_length] = fields(val, &sp, ["test", "write", "new-length"], true)?;
        let test_path = child(&sp, "test");
        let tests = as_array(test, &test_path)?;
        if tests.len() > MAX_VECTORS {
            return err(
                &test_path,
                format_args!("array must have between 0 and {MAX_VECTORS} items"),
            );
        }
        let mut tv = Vec::with_capacity(tests.len());
        for (i, t) in tests.iter().enumerate() {
            let p = format!("{test_path}/{i}");
            check_operator(t, &p)?;
            let [o, s, spec] = fields(t, &p, ["offset", "size", "specimen"], false)?;
            tv.push(TestVector {
                offset: as_uint(o, &child(&p, "offset"))?,
                size: as_uint(s, &child(&p, "size"))?,
                specimen: as_bytes(spec, &child(&p, "specimen"), fmt)?,
            });
        }
        let write_path = child(&sp, "write");
        let writes = as_array(write, &write_path)?;
        let mut wv = Vec::with_capacity(writes.len());
        for (i, w) in writes.iter().enumerate() {
            let p = format!("{write_path}/{i}");
            let [o, d] = fields(w, &p, ["offset", "data"], false)?;
            wv.push(WriteVector {
                offset: as_uint(o, &child(&p, "offset"))?,
                data: as_bytes(d, &child(&p, "data"), fmt)?,
            });
        }
        let new_length = match new_length {
            Value::Null => None,
            other => Some(as_uint(other, &child(&sp, "new-length"))?),
        };
        test_write_vectors.insert(
            sh,
            TestWriteVectors {
                test: tv,
                write: wv,
                new_length,
            },
        );
    }
    let rv_path = child("", "read-vector");
    let reads = as_array(rv, &rv_path)?;
    if reads.len() > MAX_VECTORS {
        return err(
            &rv_path,
            format_args!("array must have between 0 and {MAX_VECTORS} items"),
        );
    }
    let mut read_vector = Vec::with_capacity(reads.len());
    for (i, r) in reads.iter().enumerate() {
        let p = format!("{rv_path}/{i}");
        let [o, s] = fields(r, &p, ["offset", "size"], false)?;
        read_vector.push(ReadVector {
            offset: as_uint(o, &child(&p, "offset"))?,
            size: as_uint(s, &child(&p, "size"))?,
        });
    }
    Ok(ReadTestWriteBody {
        test_write_vectors,
        read_vector,
    })
}

// Client side: responses, CBOR only (what GBS servers send). These are lenient about
// extra keys (Tahoe's client is not), so a newer server's additions do not break us.

fn map_get<'a>(m: &'a [(Value, Value)], key: &[u8]) -> Option<&'a Value> {
    m.iter().find_map(|(k, v)| match k {
        Value::Bytes(b) if b == key => Some(v),
        Value::Text(s) if s.as_bytes() == key => Some(v),
        _ => None,
    })
}

fn required_field<'a>(
    m: &'a [(Value, Value)],
    key: &str,
    path: &str,
) -> Result<&'a Value, CodecError> {
    map_get(m, key.as_bytes()).map_or_else(|| err(path, format_args!("missing key \"{key}\"")), Ok)
}

pub fn decode_version(body: &[u8]) -> Result<VersionInfo, CodecError> {
    let v = parse(body, Format::Cbor)?;
    let m = as_map(&v, "")?;
    let v1_path = "/v1";
    let v1 = as_map(
        map_get(m, VERSION_V1_KEY)
            .map_or_else(|| err("", "missing the storage protocol v1 entry"), Ok)?,
        v1_path,
    )?;
    let size = |k: &str| as_uint(required_field(v1, k, v1_path)?, &child(v1_path, k));
    let application_version = match map_get(m, b"application-version") {
        None => Vec::new(),
        Some(Value::Bytes(b)) => b.clone(),
        Some(Value::Text(s)) => s.clone().into_bytes(),
        Some(other) => {
            return err(
                "/\"application-version\"",
                format_args!("expected a byte string, got {}", describe(other)),
            )
        }
    };
    Ok(VersionInfo {
        maximum_immutable_share_size: size("maximum-immutable-share-size")?,
        maximum_mutable_share_size: size("maximum-mutable-share-size")?,
        available_space: size("available-space")?,
        application_version,
    })
}

pub fn decode_allocate_result(body: &[u8]) -> Result<AllocateResult, CodecError> {
    let v = parse(body, Format::Cbor)?;
    let m = as_map(&v, "")?;
    Ok(AllocateResult {
        already_have: as_share_set(
            required_field(m, "already-have", "")?,
            "/\"already-have\"",
            Format::Cbor,
        )?,
        allocated: as_share_set(
            required_field(m, "allocated", "")?,
            "/\"allocated\"",
            Format::Cbor,
        )?,
    })
}

pub fn decode_share_set(body: &[u8]) -> Result<BTreeSet<ShareNum>, CodecError> {
    as_share_set(&parse(body, Format::Cbor)?, "", Format::Cbor)
}

pub fn decode_write_progress(body: &[u8]) -> Result<Vec<ByteRange>, CodecError> {
    let v = parse(body, Format::Cbor)?;
    let m = as_map(&v, "")?;
    let path = "/\"required\"";
    let items = as_array(required_field(m, "required", "")?, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}/{i}");
        let r = as_map(item, &p)?;
        let begin = as_uint(required_field(r, "begin", &p)?, &p)?;
        let end = as_uint(required_field(r, "end", &p)?, &p)?;
        if begin > end {
            return err(&p, "begin is after end");
        }
        out.push(ByteRange { begin, end });
    }
    Ok(out)
}

pub fn decode_read_test_write_result(body: &[u8]) -> Result<ReadTestWriteResult, CodecError> {
    let v = parse(body, Format::Cbor)?;
    let m = as_map(&v, "")?;
    let success = match required_field(m, "success", "")? {
        Value::Bool(b) => *b,
        other => {
            return err(
                "/\"success\"",
                format_args!("expected a bool, got {}", describe(other)),
            )
        }
    };
    let data_path = "/\"data\"";
    let mut data = BTreeMap::new();
    for (k, val) in as_map(required_field(m, "data", "")?, data_path)? {
        let sh = share_number(as_uint(k, data_path)?, data_path)?;
        let p = format!("{data_path}/{sh}");
        let reads = as_array(val, &p)?
            .iter()
            .enumerate()
            .map(|(i, b)| as_bytes(b, &format!("{p}/{i}"), Format::Cbor))
            .collect::<Result<Vec<_>, _>>()?;
        data.insert(sh, reads);
    }
    Ok(ReadTestWriteResult { success, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        let all = include_str!("testdata/cbor_vectors.txt");
        let hex_str = all
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no vector {name}"));
        hex::decode(hex_str.trim()).unwrap()
    }

    fn shares(s: &[ShareNum]) -> BTreeSet<ShareNum> {
        s.iter().copied().collect()
    }

    #[test]
    fn version_bytes_match_tahoe() {
        let v = VersionInfo {
            maximum_immutable_share_size: 84598329344,
            maximum_mutable_share_size: 69105000000000000,
            available_space: 84598329344,
            application_version: b"tahoe-lafs/1.20.0".to_vec(),
        };
        let enc = encode_version(&v, Format::Cbor);
        assert_eq!(enc, vector("version"));
        assert_eq!(decode_version(&enc).unwrap(), v);
        let small = VersionInfo {
            maximum_immutable_share_size: 0,
            maximum_mutable_share_size: 23,
            available_space: u64::MAX,
            application_version: vec![],
        };
        assert_eq!(
            encode_version(&small, Format::Cbor),
            vector("version_small")
        );
        assert_eq!(decode_version(&vector("version_small")).unwrap(), small);
    }

    #[test]
    fn response_bytes_match_tahoe() {
        let r = AllocateResult {
            already_have: shares(&[1]),
            allocated: shares(&[2, 3, 7]),
        };
        assert_eq!(
            encode_allocate_result(&r, Format::Cbor),
            vector("allocate_response")
        );
        assert_eq!(
            decode_allocate_result(&vector("allocate_response")).unwrap(),
            r
        );
        assert_eq!(
            encode_allocate_result(&AllocateResult::default(), Format::Cbor),
            vector("allocate_response_empty")
        );
        let ten: BTreeSet<ShareNum> = (0..10).collect();
        assert_eq!(encode_share_set(&ten, Format::Cbor), vector("share_set"));
        assert_eq!(decode_share_set(&vector("share_set")).unwrap(), ten);
        assert_eq!(
            encode_share_set(&BTreeSet::new(), Format::Cbor),
            vector("share_set_empty")
        );
        let req = vec![
            ByteRange { begin: 16, end: 48 },
            ByteRange {
                begin: 100,
                end: 70000,
            },
        ];
        assert_eq!(
            encode_write_progress(&req, Format::Cbor),
            vector("write_progress")
        );
        assert_eq!(
            decode_write_progress(&vector("write_progress")).unwrap(),
            req
        );
        assert_eq!(
            encode_write_progress(&[], Format::Cbor),
            vector("write_complete")
        );
        let rtw = ReadTestWriteResult {
            success: true,
            data: [
                (
                    0,
                    vec![Bytes::from_static(b"012"), Bytes::from_static(b"89")],
                ),
                (1, vec![Bytes::from_static(b"abc"), Bytes::new()]),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            encode_read_test_write_result(&rtw, Format::Cbor),
            vector("rtw_response")
        );
        assert_eq!(
            decode_read_test_write_result(&vector("rtw_response")).unwrap(),
            rtw
        );
        assert_eq!(
            encode_read_test_write_result(&ReadTestWriteResult::default(), Format::Cbor),
            vector("rtw_response_empty")
        );
    }

    #[test]
    fn request_bytes_match_tahoe() {
        assert_eq!(
            encode_allocate_request(&shares(&[1, 2, 3]), 48),
            vector("allocate_request")
        );
        assert_eq!(
            decode_allocate(&vector("allocate_request"), Format::Cbor).unwrap(),
            AllocateBody {
                share_numbers: shares(&[1, 2, 3]),
                allocated_size: 48
            }
        );
        assert_eq!(
            encode_corrupt_request("bad hash"),
            vector("corrupt_request")
        );
        assert_eq!(
            decode_corrupt(&vector("corrupt_request"), Format::Cbor).unwrap(),
            "bad hash"
        );
        let tw: BTreeMap<ShareNum, TestWriteVectors> = [
            (
                0,
                TestWriteVectors {
                    test: vec![TestVector {
                        offset: 0,
                        size: 1,
                        specimen: Bytes::new(),
                    }],
                    write: vec![WriteVector {
                        offset: 0,
                        data: Bytes::from_static(b"0123456789"),
                    }],
                    new_length: None,
                },
            ),
            (
                3,
                TestWriteVectors {
                    test: vec![],
                    write: vec![],
                    new_length: Some(0),
                },
            ),
        ]
        .into_iter()
        .collect();
        let rv = vec![
            ReadVector { offset: 0, size: 3 },
            ReadVector {
                offset: 8,
                size: 1000,
            },
        ];
        assert_eq!(
            encode_read_test_write_request(&tw, &rv),
            vector("rtw_request")
        );
        assert_eq!(
            decode_read_test_write(&vector("rtw_request"), Format::Cbor).unwrap(),
            ReadTestWriteBody {
                test_write_vectors: tw,
                read_vector: rv
            }
        );
    }

    fn cbor(v: Value) -> Vec<u8> {
        to_cbor(&v)
    }

    #[test]
    fn allocate_validation() {
        let ok_set = Value::Tag(SET_TAG, Box::new(Value::Array(vec![uint(1), uint(1)])));
        // Duplicates are accepted; trailing bytes are ignored (both as pycddl does).
        let mut body = cbor(Value::Map(vec![
            (text("share-numbers"), ok_set.clone()),
            (text("allocated-size"), uint(48)),
        ]));
        body.push(0);
        assert_eq!(
            decode_allocate(&body, Format::Cbor).unwrap().share_numbers,
            shares(&[1])
        );
        // Untagged array.
        let untagged = cbor(Value::Map(vec![
            (text("share-numbers"), Value::Array(vec![uint(1)])),
            (text("allocated-size"), uint(48)),
        ]));
        let e = decode_allocate(&untagged, Format::Cbor).unwrap_err();
        assert!(
            e.0.contains("share-numbers") && e.0.contains("tag 258"),
            "{e}"
        );
        // Extra key, missing key.
        let extra = cbor(Value::Map(vec![
            (text("share-numbers"), ok_set.clone()),
            (text("allocated-size"), uint(48)),
            (text("x"), uint(1)),
        ]));
        assert!(decode_allocate(&extra, Format::Cbor)
            .unwrap_err()
            .0
            .contains("unexpected key \"x\""));
        let missing = cbor(Value::Map(vec![(text("share-numbers"), ok_set)]));
        assert!(decode_allocate(&missing, Format::Cbor)
            .unwrap_err()
            .0
            .contains("allocated-size"));
        // 257 share numbers.
        let many = cbor(Value::Map(vec![
            (
                text("share-numbers"),
                Value::Tag(
                    SET_TAG,
                    Box::new(Value::Array((0..257).map(uint).collect())),
                ),
            ),
            (text("allocated-size"), uint(48)),
        ]));
        assert!(decode_allocate(&many, Format::Cbor)
            .unwrap_err()
            .0
            .contains("256"));
        // Negative size, not CBOR at all, empty body.
        let neg = cbor(Value::Map(vec![
            (
                text("share-numbers"),
                Value::Tag(SET_TAG, Box::new(Value::Array(vec![]))),
            ),
            (text("allocated-size"), Value::Integer((-1).into())),
        ]));
        assert!(decode_allocate(&neg, Format::Cbor).is_err());
        assert!(decode_allocate(b"\xff\xff", Format::Cbor)
            .unwrap_err()
            .0
            .starts_with("invalid CBOR"));
        assert!(decode_allocate(b"", Format::Cbor).is_err());
        // Indefinite-length map (pycddl accepts it).
        let mut indef = vec![0xbf];
        indef.extend(cbor(text("share-numbers")));
        indef.extend(cbor(Value::Tag(
            SET_TAG,
            Box::new(Value::Array(vec![uint(2)])),
        )));
        indef.extend(cbor(text("allocated-size")));
        indef.extend(cbor(uint(5)));
        indef.push(0xff);
        assert_eq!(
            decode_allocate(&indef, Format::Cbor)
                .unwrap()
                .allocated_size,
            5
        );
        // Deep nesting is refused, not a stack overflow.
        let deep = vec![0x81; 10_000];
        assert!(decode_allocate(&deep, Format::Cbor).is_err());
    }

    #[test]
    fn corrupt_validation() {
        let enc = |v: Value| cbor(Value::Map(vec![(text("reason"), v)]));
        assert!(decode_corrupt(&enc(text("")), Format::Cbor).is_err());
        assert!(decode_corrupt(&enc(Value::Bytes(b"x".to_vec())), Format::Cbor).is_err());
        assert!(decode_corrupt(&enc(text(&"x".repeat(32765))), Format::Cbor).is_ok());
        assert!(decode_corrupt(&enc(text(&"x".repeat(32766))), Format::Cbor).is_err());
    }

    #[test]
    fn rtw_validation() {
        let tv = |extra: Vec<(Value, Value)>| {
            let mut m = vec![
                (text("offset"), uint(0)),
                (text("size"), uint(1)),
                (text("specimen"), Value::Bytes(vec![])),
            ];
            m.extend(extra);
            cbor(Value::Map(vec![
                (
                    text("test-write-vectors"),
                    Value::Map(vec![(
                        uint(0),
                        Value::Map(vec![
                            (text("test"), Value::Array(vec![Value::Map(m)])),
                            (text("write"), Value::Array(vec![])),
                            (text("new-length"), Value::Null),
                        ]),
                    )]),
                ),
                (text("read-vector"), Value::Array(vec![])),
            ]))
        };
        assert!(decode_read_test_write(&tv(vec![]), Format::Cbor).is_ok());
        assert!(
            decode_read_test_write(&tv(vec![(text("operator"), text("eq"))]), Format::Cbor).is_ok()
        );
        assert!(decode_read_test_write(&tv(vec![(text("x"), uint(1))]), Format::Cbor).is_ok());
        assert!(
            decode_read_test_write(&tv(vec![(text("operator"), text("gt"))]), Format::Cbor)
                .is_err()
        );
        let reads = |n: u64| {
            cbor(Value::Map(vec![
                (text("test-write-vectors"), Value::Map(vec![])),
                (
                    text("read-vector"),
                    Value::Array(
                        (0..n)
                            .map(|i| {
                                Value::Map(vec![(text("offset"), uint(i)), (text("size"), uint(1))])
                            })
                            .collect(),
                    ),
                ),
            ]))
        };
        assert_eq!(
            decode_read_test_write(&reads(30), Format::Cbor)
                .unwrap()
                .read_vector
                .len(),
            30
        );
        assert!(decode_read_test_write(&reads(31), Format::Cbor)
            .unwrap_err()
            .0
            .contains("30"));
        // Text share-number keys are refused in CBOR.
        let text_key = cbor(Value::Map(vec![
            (
                text("test-write-vectors"),
                Value::Map(vec![(
                    text("0"),
                    Value::Map(vec![
                        (text("test"), Value::Array(vec![])),
                        (text("write"), Value::Array(vec![])),
                        (text("new-length"), Value::Null),
                    ]),
                )]),
            ),
            (text("read-vector"), Value::Array(vec![])),
        ]));
        assert!(decode_read_test_write(&text_key, Format::Cbor).is_err());
    }

    #[test]
    fn json_bodies() {
        let a = decode_allocate(
            br#"{"share-numbers": [1, 7], "allocated-size": 12345}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(a.share_numbers, shares(&[1, 7]));
        assert_eq!(a.allocated_size, 12345);
        assert!(decode_allocate(
            br#"{"share-numbers": [1], "allocated-size": -1}"#,
            Format::Json
        )
        .is_err());
        assert!(decode_allocate(
            br#"{"share-numbers": [1], "allocated-size": 1.5}"#,
            Format::Json
        )
        .is_err());
        assert!(decode_allocate(br#"{"share-numbers": [1]"#, Format::Json)
            .unwrap_err()
            .0
            .starts_with("invalid JSON"));
        assert_eq!(
            decode_corrupt(br#"{"reason": "bad"}"#, Format::Json).unwrap(),
            "bad"
        );
        let rtw = decode_read_test_write(
            br#"{"test-write-vectors": {"3": {"test": [{"offset": 3, "size": 5, "specimen": "aGVsbG8="}],
                 "write": [{"offset": 9, "data": "d29ybGQ="}], "new-length": 5}},
                 "read-vector": [{"offset": 3, "size": 12}]}"#,
            Format::Json,
        )
        .unwrap();
        let v = &rtw.test_write_vectors[&3];
        assert_eq!(v.test[0].specimen, Bytes::from_static(b"hello"));
        assert_eq!(v.write[0].data, Bytes::from_static(b"world"));
        assert_eq!(v.new_length, Some(5));
        assert!(decode_read_test_write(
            br#"{"test-write-vectors": {"x": {"test": [], "write": [], "new-length": null}}, "read-vector": []}"#,
            Format::Json
        )
        .is_err());

        let version = VersionInfo {
            maximum_immutable_share_size: 1,
            maximum_mutable_share_size: 2,
            available_space: 3,
            application_version: b"swampgate/0.1.0".to_vec(),
        };
        let j: serde_json::Value =
            serde_json::from_slice(&encode_version(&version, Format::Json)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({
                "http://allmydata.org/tahoe/protocols/storage/v1": {
                    "maximum-immutable-share-size": 1,
                    "maximum-mutable-share-size": 2,
                    "available-space": 3
                },
                "application-version": "c3dhbXBnYXRlLzAuMS4w"
            })
        );
        let r = ReadTestWriteResult {
            success: true,
            data: [(2, vec![Bytes::from_static(b"hi")])].into_iter().collect(),
        };
        let j: serde_json::Value =
            serde_json::from_slice(&encode_read_test_write_result(&r, Format::Json)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"success": true, "data": {"2": ["aGk="]}})
        );
        let j: serde_json::Value =
            serde_json::from_slice(&encode_share_set(&shares(&[3, 1]), Format::Json)).unwrap();
        assert_eq!(j, serde_json::json!([1, 3]));
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
                let _ = decode_allocate(&b, fmt);
                let _ = decode_corrupt(&b, fmt);
                let _ = decode_read_test_write(&b, fmt);
            }
            let _ = decode_version(&b);
            let _ = decode_allocate_result(&b);
            let _ = decode_share_set(&b);
            let _ = decode_write_progress(&b);
            let _ = decode_read_test_write_result(&b);
        }
    }

    #[test]
    fn set_order_does_not_matter_when_decoding() {
        // cbor2 writes {2, 3, 200} as 200, 2, 3.
        let body = hex::decode(
            "a26c616c72656164792d68617665d90102810169616c6c6f6361746564d901028318c80203",
        )
        .unwrap();
        let r = decode_allocate_result(&body).unwrap();
        assert_eq!(r.allocated, shares(&[2, 3, 200]));
    }
}
