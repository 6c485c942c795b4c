//! Response bodies: what a server answers and the client reads.
//!
//! Most of them are the seam's own types, which implement [`Body`] here; only the bare
//! share set of `GET …/shares` gets a newtype ([`ShareSet`]), so that a set of share
//! numbers is not itself a message.
//!
//! Decoding is lenient about extra keys (Tahoe's client is not), so a newer server's
//! additions do not break the client. GBS servers answer in CBOR, which is what the
//! client asks for; JSON decodes too, with the specification's rules.

use std::collections::{BTreeMap, BTreeSet};

use ciborium::Value;

use super::{
    as_array, as_bytes, as_map, as_share_set, as_uint, child, encode_value, map_get, parse,
    required_field, set, share_key, share_number, text, uint, wrong_type, Body, CodecError,
    Expected,
};
use crate::gbs::media::Format;
use crate::gbs::VERSION_V1_KEY;
use crate::storage::{
    AllocateResult, ByteRange, ReadTestWriteResult, ShareNum, VersionInfo, WriteProgress,
};

/// `GET /storage/v1/version`: exactly the three sizes and `application-version`, with
/// byte-string keys; Tahoe's client refuses anything else.
impl Body for VersionInfo {
    fn encode(&self, fmt: Format) -> Vec<u8> {
        let b = |s: &[u8]| Value::Bytes(s.to_vec());
        encode_value(
            &Value::Map(vec![
                (
                    b(VERSION_V1_KEY),
                    Value::Map(vec![
                        (
                            b(b"maximum-immutable-share-size"),
                            uint(self.maximum_immutable_share_size),
                        ),
                        (
                            b(b"maximum-mutable-share-size"),
                            uint(self.maximum_mutable_share_size),
                        ),
                        (b(b"available-space"), uint(self.available_space)),
                    ]),
                ),
                (b(b"application-version"), b(&self.application_version)),
            ]),
            fmt,
        )
    }

    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError> {
        let v = parse(body, fmt)?;
        let m = as_map(&v, "")?;
        let v1_path = "/v1";
        let v1 = as_map(
            map_get(m, VERSION_V1_KEY).ok_or_else(|| CodecError::MissingVersionEntry {
                path: String::new(),
            })?,
            v1_path,
        )?;
        let size = |k: &'static str| as_uint(required_field(v1, k, v1_path)?, &child(v1_path, k));
        let application_version = match (map_get(m, b"application-version"), fmt) {
            (None, _) => Vec::new(),
            (Some(Value::Bytes(b)), Format::Cbor) => b.clone(),
            // Lenient: a CBOR text string is taken as its UTF-8 bytes.
            (Some(Value::Text(s)), Format::Cbor) => s.clone().into_bytes(),
            (Some(other), _) => as_bytes(other, "/\"application-version\"", fmt)?.to_vec(),
        };
        Ok(VersionInfo {
            maximum_immutable_share_size: size("maximum-immutable-share-size")?,
            maximum_mutable_share_size: size("maximum-mutable-share-size")?,
            available_space: size("available-space")?,
            application_version,
        })
    }
}

/// `POST /storage/v1/immutable/:si`: `{already-have: set, allocated: set}`.
impl Body for AllocateResult {
    fn encode(&self, fmt: Format) -> Vec<u8> {
        encode_value(
            &Value::Map(vec![
                (text("already-have"), set(&self.already_have)),
                (text("allocated"), set(&self.allocated)),
            ]),
            fmt,
        )
    }

    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError> {
        let v = parse(body, fmt)?;
        let m = as_map(&v, "")?;
        Ok(AllocateResult {
            already_have: as_share_set(
                required_field(m, "already-have", "")?,
                "/\"already-have\"",
                fmt,
            )?,
            allocated: as_share_set(required_field(m, "allocated", "")?, "/\"allocated\"", fmt)?,
        })
    }
}

/// `GET /storage/v1/{immutable,mutable}/:si/shares`: a bare set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareSet(pub BTreeSet<ShareNum>);

impl Body for ShareSet {
    fn encode(&self, fmt: Format) -> Vec<u8> {
        encode_value(&set(&self.0), fmt)
    }

    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError> {
        as_share_set(&parse(body, fmt)?, "", fmt).map(ShareSet)
    }
}

/// `PATCH /storage/v1/immutable/:si/:sh` (200 and 201): `{"required": [{"begin",
/// "end"}…]}`.
impl Body for WriteProgress {
    fn encode(&self, fmt: Format) -> Vec<u8> {
        let ranges = self
            .required
            .iter()
            .map(|r| {
                Value::Map(vec![
                    (text("begin"), uint(r.begin)),
                    (text("end"), uint(r.end)),
                ])
            })
            .collect();
        encode_value(
            &Value::Map(vec![(text("required"), Value::Array(ranges))]),
            fmt,
        )
    }

    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError> {
        let v = parse(body, fmt)?;
        let m = as_map(&v, "")?;
        let path = "/\"required\"";
        let items = as_array(required_field(m, "required", "")?, path)?;
        let mut required = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}/{i}");
            let r = as_map(item, &p)?;
            let begin = as_uint(required_field(r, "begin", &p)?, &p)?;
            let end = as_uint(required_field(r, "end", &p)?, &p)?;
            if begin > end {
                return Err(CodecError::BadRange { path: p });
            }
            required.push(ByteRange { begin, end });
        }
        Ok(WriteProgress { required })
    }
}

/// `POST /storage/v1/mutable/:si/read-test-write`: `{success: bool, data: {share
/// number: [bytes…]}}`.
impl Body for ReadTestWriteResult {
    fn encode(&self, fmt: Format) -> Vec<u8> {
        let data = self
            .data
            .iter()
            .map(|(sh, reads)| {
                (
                    uint((*sh).into()),
                    Value::Array(reads.iter().map(|b| Value::Bytes(b.to_vec())).collect()),
                )
            })
            .collect();
        encode_value(
            &Value::Map(vec![
                (text("success"), Value::Bool(self.success)),
                (text("data"), Value::Map(data)),
            ]),
            fmt,
        )
    }

    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError> {
        let v = parse(body, fmt)?;
        let m = as_map(&v, "")?;
        let success = match required_field(m, "success", "")? {
            Value::Bool(b) => *b,
            other => return Err(wrong_type("/\"success\"", Expected::Bool, other)),
        };
        let data_path = "/\"data\"";
        let mut data = BTreeMap::new();
        for (k, val) in as_map(required_field(m, "data", "")?, data_path)? {
            let sh = match fmt {
                // A CBOR key must be an unsigned integer (and says so in those words).
                Format::Cbor => share_number(as_uint(k, data_path)?, data_path)?,
                Format::Json => share_key(k, data_path, fmt)?,
            };
            let p = format!("{data_path}/{sh}");
            let reads = as_array(val, &p)?
                .iter()
                .enumerate()
                .map(|(i, b)| as_bytes(b, &format!("{p}/{i}"), fmt))
                .collect::<Result<Vec<_>, _>>()?;
            data.insert(sh, reads);
        }
        Ok(ReadTestWriteResult { success, data })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::test_support::{assert_refused, cbor, shares, vector};
    use super::super::Item;
    use super::*;

    #[test]
    fn version_bytes_match_tahoe() {
        let v = VersionInfo {
            maximum_immutable_share_size: 84598329344,
            maximum_mutable_share_size: 69105000000000000,
            available_space: 84598329344,
            application_version: b"tahoe-lafs/1.20.0".to_vec(),
        };
        let enc = v.encode(Format::Cbor);
        assert_eq!(enc, vector("version"));
        assert_eq!(VersionInfo::decode(&enc, Format::Cbor).unwrap(), v);
        let small = VersionInfo {
            maximum_immutable_share_size: 0,
            maximum_mutable_share_size: 23,
            available_space: u64::MAX,
            application_version: vec![],
        };
        assert_eq!(small.encode(Format::Cbor), vector("version_small"));
        assert_eq!(
            VersionInfo::decode(&vector("version_small"), Format::Cbor).unwrap(),
            small
        );
    }

    #[test]
    fn response_bytes_match_tahoe() {
        let r = AllocateResult {
            already_have: shares(&[1]),
            allocated: shares(&[2, 3, 7]),
        };
        assert_eq!(r.encode(Format::Cbor), vector("allocate_response"));
        assert_eq!(
            AllocateResult::decode(&vector("allocate_response"), Format::Cbor).unwrap(),
            r
        );
        assert_eq!(
            AllocateResult::default().encode(Format::Cbor),
            vector("allocate_response_empty")
        );
        let ten = ShareSet((0..10).collect());
        assert_eq!(ten.encode(Format::Cbor), vector("share_set"));
        assert_eq!(
            ShareSet::decode(&vector("share_set"), Format::Cbor).unwrap(),
            ten
        );
        assert_eq!(
            ShareSet::default().encode(Format::Cbor),
            vector("share_set_empty")
        );
        let progress = WriteProgress {
            required: vec![
                ByteRange { begin: 16, end: 48 },
                ByteRange {
                    begin: 100,
                    end: 70000,
                },
            ],
        };
        assert_eq!(progress.encode(Format::Cbor), vector("write_progress"));
        assert_eq!(
            WriteProgress::decode(&vector("write_progress"), Format::Cbor).unwrap(),
            progress
        );
        assert_eq!(
            WriteProgress { required: vec![] }.encode(Format::Cbor),
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
        assert_eq!(rtw.encode(Format::Cbor), vector("rtw_response"));
        assert_eq!(
            ReadTestWriteResult::decode(&vector("rtw_response"), Format::Cbor).unwrap(),
            rtw
        );
        assert_eq!(
            ReadTestWriteResult::default().encode(Format::Cbor),
            vector("rtw_response_empty")
        );
    }

    #[test]
    fn json_responses() {
        let version = VersionInfo {
            maximum_immutable_share_size: 1,
            maximum_mutable_share_size: 2,
            available_space: 3,
            application_version: b"swampgate/0.1.0".to_vec(),
        };
        let j: serde_json::Value = serde_json::from_slice(&version.encode(Format::Json)).unwrap();
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
        let j: serde_json::Value = serde_json::from_slice(&r.encode(Format::Json)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"success": true, "data": {"2": ["aGk="]}})
        );
        let j: serde_json::Value =
            serde_json::from_slice(&ShareSet(shares(&[3, 1])).encode(Format::Json)).unwrap();
        assert_eq!(j, serde_json::json!([1, 3]));
    }

    #[test]
    fn set_order_does_not_matter_when_decoding() {
        // cbor2 writes {2, 3, 200} as 200, 2, 3.
        let body = hex::decode(
            "a26c616c72656164792d68617665d90102810169616c6c6f6361746564d901028318c80203",
        )
        .unwrap();
        let r = AllocateResult::decode(&body, Format::Cbor).unwrap();
        assert_eq!(r.allocated, shares(&[2, 3, 200]));
    }

    #[test]
    fn response_validation() {
        assert_refused::<VersionInfo>(
            &cbor(Value::Map(vec![])),
            Format::Cbor,
            CodecError::MissingVersionEntry { path: "".into() },
            "error validating at location /: missing the storage protocol v1 entry",
        );
        let range = |begin, end| {
            cbor(Value::Map(vec![(
                text("required"),
                Value::Array(vec![Value::Map(vec![
                    (text("begin"), uint(begin)),
                    (text("end"), uint(end)),
                ])]),
            )]))
        };
        assert!(WriteProgress::decode(&range(5, 5), Format::Cbor).is_ok());
        assert_refused::<WriteProgress>(
            &range(6, 5),
            Format::Cbor,
            CodecError::BadRange {
                path: "/\"required\"/0".into(),
            },
            "error validating at location /\"required\"/0: begin is after end",
        );
        assert_refused::<ReadTestWriteResult>(
            &cbor(Value::Map(vec![
                (text("success"), uint(1)),
                (text("data"), Value::Map(vec![])),
            ])),
            Format::Cbor,
            CodecError::WrongType {
                path: "/\"success\"".into(),
                expected: Expected::Bool,
                got: Item::Integer,
            },
            "error validating at location /\"success\": expected a bool, got integer",
        );
        assert_refused::<ReadTestWriteResult>(
            &cbor(Value::Map(vec![
                (text("success"), Value::Bool(true)),
                (
                    text("data"),
                    Value::Map(vec![(text("0"), Value::Array(vec![]))]),
                ),
            ])),
            Format::Cbor,
            CodecError::WrongType {
                path: "/\"data\"".into(),
                expected: Expected::UnsignedInteger,
                got: Item::TextString,
            },
            "error validating at location /\"data\": expected an unsigned integer, got text \
             string",
        );
        assert_refused::<ShareSet>(
            &cbor(uint(70000)),
            Format::Cbor,
            CodecError::WrongType {
                path: "".into(),
                expected: Expected::Set,
                got: Item::Integer,
            },
            "error validating at location /: expected a set (tag 258), got integer",
        );
        assert_refused::<ShareSet>(
            b"[70000]",
            Format::Json,
            CodecError::ShareNumberTooLarge {
                path: "/0".into(),
                number: 70000,
            },
            "error validating at location /0: share number 70000 is too large",
        );
    }
}
