//! Request bodies: what a client sends and the server validates.
//!
//! Decoding is strict, as Tahoe's pycddl schemas are: exactly the schema's keys at the
//! top level, the schema's limits, and the location of the first problem in the
//! error. The server runs these decoders on untrusted bytes; the client only encodes
//! (in CBOR, as Tahoe's client does).

use std::collections::{BTreeMap, BTreeSet};

use ciborium::Value;

use super::{
    as_array, as_bytes, as_map, as_share_set, as_uint, child, encode_value, fields, key_name,
    parse, set, share_key, text, uint, wrong_type, Body, CodecError, Expected, MAX_REASON_LEN,
    MAX_VECTORS,
};
use crate::gbs::media::Format;
use crate::storage::{ReadVector, ShareNum, TestVector, TestWriteVectors, WriteVector, MAX_SHARES};

/// The body of `POST /storage/v1/immutable/:si`: `{share-numbers: #6.258([0*256
/// uint]), allocated-size: uint}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocateBody {
    pub share_numbers: BTreeSet<ShareNum>,
    pub allocated_size: u64,
}

impl Body for AllocateBody {
    fn encode(&self, fmt: Format) -> Vec<u8> {
        encode_value(
            &Value::Map(vec![
                (text("share-numbers"), set(&self.share_numbers)),
                (text("allocated-size"), uint(self.allocated_size)),
            ]),
            fmt,
        )
    }

    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError> {
        let v = parse(body, fmt)?;
        let [sn, size] = fields(&v, "", ["share-numbers", "allocated-size"], true)?;
        Ok(AllocateBody {
            share_numbers: as_share_set(sn, &child("", "share-numbers"), fmt)?,
            allocated_size: as_uint(size, &child("", "allocated-size"))?,
        })
    }
}

/// The body of `POST /storage/v1/{immutable,mutable}/:si/:sh/corrupt`: `{reason: tstr
/// .size (1..32765)}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptBody {
    pub reason: String,
}

impl Body for CorruptBody {
    fn encode(&self, fmt: Format) -> Vec<u8> {
        encode_value(&Value::Map(vec![(text("reason"), text(&self.reason))]), fmt)
    }

    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError> {
        let v = parse(body, fmt)?;
        let [reason] = fields(&v, "", ["reason"], true)?;
        let path = child("", "reason");
        match reason {
            Value::Text(s) if (1..=MAX_REASON_LEN).contains(&s.len()) => {
                Ok(CorruptBody { reason: s.clone() })
            }
            Value::Text(s) => Err(CodecError::StringLength {
                path,
                min: 1,
                max: MAX_REASON_LEN,
                got: s.len(),
            }),
            other => Err(wrong_type(&path, Expected::TextString, other)),
        }
    }
}

/// The body of `POST /storage/v1/mutable/:si/read-test-write`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadTestWriteBody {
    pub test_write_vectors: BTreeMap<ShareNum, TestWriteVectors>,
    pub read_vector: Vec<ReadVector>,
}

impl Body for ReadTestWriteBody {
    fn encode(&self, fmt: Format) -> Vec<u8> {
        let twv = self
            .test_write_vectors
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
        let reads = self
            .read_vector
            .iter()
            .map(|r| {
                Value::Map(vec![
                    (text("offset"), uint(r.offset)),
                    (text("size"), uint(r.size)),
                ])
            })
            .collect();
        encode_value(
            &Value::Map(vec![
                (text("test-write-vectors"), Value::Map(twv)),
                (text("read-vector"), Value::Array(reads)),
            ]),
            fmt,
        )
    }

    fn decode(body: &[u8], fmt: Format) -> Result<Self, CodecError> {
        let v = parse(body, fmt)?;
        let [twv, rv] = fields(&v, "", ["test-write-vectors", "read-vector"], true)?;
        let twv_path = child("", "test-write-vectors");
        let twv_map = as_map(twv, &twv_path)?;
        if twv_map.len() > MAX_SHARES {
            return Err(CodecError::TooManyEntries {
                path: twv_path,
                max: MAX_SHARES,
            });
        }
        let mut test_write_vectors = BTreeMap::new();
        for (k, val) in twv_map {
            let sh = share_key(k, &twv_path, fmt)?;
            let sp = format!("{twv_path}/{sh}");
            test_write_vectors.insert(sh, test_write_vectors_at(val, &sp, fmt)?);
        }
        let rv_path = child("", "read-vector");
        let reads = as_array(rv, &rv_path)?;
        if reads.len() > MAX_VECTORS {
            return Err(CodecError::TooManyItems {
                path: rv_path,
                max: MAX_VECTORS,
            });
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
}

/// One share's `{test, write, new-length}` at `sp`.
fn test_write_vectors_at(
    val: &Value,
    sp: &str,
    fmt: Format,
) -> Result<TestWriteVectors, CodecError> {
    let [test, write, new_length] = fields(val, sp, ["test", "write", "new-length"], true)?;
    let test_path = child(sp, "test");
    let tests = as_array(test, &test_path)?;
    if tests.len() > MAX_VECTORS {
        return Err(CodecError::TooManyItems {
            path: test_path,
            max: MAX_VECTORS,
        });
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
    let write_path = child(sp, "write");
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
        other => Some(as_uint(other, &child(sp, "new-length"))?),
    };
    Ok(TestWriteVectors {
        test: tv,
        write: wv,
        new_length,
    })
}

/// Refuse a test vector whose `operator` (which the wire format dropped) is not
/// equality, rather than silently read it as equality.
fn check_operator(v: &Value, path: &str) -> Result<(), CodecError> {
    if let Value::Map(m) = v {
        for (k, val) in m {
            if key_name(k) == Some("operator") {
                let ok = matches!(val, Value::Text(s) if s == "eq")
                    || matches!(val, Value::Bytes(b) if b == b"eq");
                if !ok {
                    return Err(CodecError::UnsupportedOperator {
                        path: child(path, "operator"),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::test_support::{assert_refused, cbor, shares, vector};
    use super::super::{Item, Key, SET_TAG};
    use super::*;

    #[test]
    fn request_bytes_match_tahoe() {
        let allocate = AllocateBody {
            share_numbers: shares(&[1, 2, 3]),
            allocated_size: 48,
        };
        assert_eq!(allocate.encode(Format::Cbor), vector("allocate_request"));
        assert_eq!(
            AllocateBody::decode(&vector("allocate_request"), Format::Cbor).unwrap(),
            allocate
        );
        let corrupt = CorruptBody {
            reason: "bad hash".to_owned(),
        };
        assert_eq!(corrupt.encode(Format::Cbor), vector("corrupt_request"));
        assert_eq!(
            CorruptBody::decode(&vector("corrupt_request"), Format::Cbor).unwrap(),
            corrupt
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
        let rtw = ReadTestWriteBody {
            test_write_vectors: tw,
            read_vector: rv,
        };
        assert_eq!(rtw.encode(Format::Cbor), vector("rtw_request"));
        assert_eq!(
            ReadTestWriteBody::decode(&vector("rtw_request"), Format::Cbor).unwrap(),
            rtw
        );
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
            AllocateBody::decode(&body, Format::Cbor)
                .unwrap()
                .share_numbers,
            shares(&[1])
        );
        // Untagged array.
        let untagged = cbor(Value::Map(vec![
            (text("share-numbers"), Value::Array(vec![uint(1)])),
            (text("allocated-size"), uint(48)),
        ]));
        assert_refused::<AllocateBody>(
            &untagged,
            Format::Cbor,
            CodecError::WrongType {
                path: "/\"share-numbers\"".into(),
                expected: Expected::Set,
                got: Item::Array,
            },
            "error validating at location /\"share-numbers\": expected a set (tag 258), got \
             array",
        );
        // Extra key, missing key.
        let extra = cbor(Value::Map(vec![
            (text("share-numbers"), ok_set.clone()),
            (text("allocated-size"), uint(48)),
            (text("x"), uint(1)),
        ]));
        assert_refused::<AllocateBody>(
            &extra,
            Format::Cbor,
            CodecError::UnexpectedKey {
                path: "".into(),
                key: Key::Text("x".into()),
            },
            "error validating at location /: unexpected key \"x\"",
        );
        let missing = cbor(Value::Map(vec![(text("share-numbers"), ok_set)]));
        assert_refused::<AllocateBody>(
            &missing,
            Format::Cbor,
            CodecError::MissingKey {
                path: "".into(),
                key: "allocated-size",
            },
            "error validating at location /: missing key \"allocated-size\"",
        );
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
        assert_refused::<AllocateBody>(
            &many,
            Format::Cbor,
            CodecError::TooManyItems {
                path: "/\"share-numbers\"".into(),
                max: 256,
            },
            "error validating at location /\"share-numbers\": array must have between 0 and \
             256 items",
        );
        // Negative size, not CBOR at all, empty body.
        let neg = cbor(Value::Map(vec![
            (
                text("share-numbers"),
                Value::Tag(SET_TAG, Box::new(Value::Array(vec![]))),
            ),
            (text("allocated-size"), Value::Integer((-1).into())),
        ]));
        assert_refused::<AllocateBody>(
            &neg,
            Format::Cbor,
            CodecError::NotU64 {
                path: "/\"allocated-size\"".into(),
            },
            "error validating at location /\"allocated-size\": expected an unsigned integer \
             below 2**64",
        );
        let e = AllocateBody::decode(b"\xff\xff", Format::Cbor).unwrap_err();
        assert!(matches!(e, CodecError::InvalidCbor(_)), "{e:?}");
        assert!(e.to_string().starts_with("invalid CBOR"), "{e}");
        assert_eq!(e.path(), None);
        assert!(matches!(
            AllocateBody::decode(b"", Format::Cbor),
            Err(CodecError::InvalidCbor(_))
        ));
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
            AllocateBody::decode(&indef, Format::Cbor)
                .unwrap()
                .allocated_size,
            5
        );
        // Deep nesting is refused, not a stack overflow.
        let deep = vec![0x81; 10_000];
        assert!(matches!(
            AllocateBody::decode(&deep, Format::Cbor),
            Err(CodecError::InvalidCbor(_))
        ));
    }

    #[test]
    fn corrupt_validation() {
        let enc = |v: Value| cbor(Value::Map(vec![(text("reason"), v)]));
        let length = |got| CodecError::StringLength {
            path: "/\"reason\"".into(),
            min: 1,
            max: MAX_REASON_LEN,
            got,
        };
        assert_refused::<CorruptBody>(
            &enc(text("")),
            Format::Cbor,
            length(0),
            "error validating at location /\"reason\": string length must be between 1 and \
             32765 bytes, got 0",
        );
        assert_refused::<CorruptBody>(
            &enc(Value::Bytes(b"x".to_vec())),
            Format::Cbor,
            CodecError::WrongType {
                path: "/\"reason\"".into(),
                expected: Expected::TextString,
                got: Item::ByteString,
            },
            "error validating at location /\"reason\": expected a text string, got byte string",
        );
        assert!(CorruptBody::decode(&enc(text(&"x".repeat(32765))), Format::Cbor).is_ok());
        assert_refused::<CorruptBody>(
            &enc(text(&"x".repeat(32766))),
            Format::Cbor,
            length(32766),
            "error validating at location /\"reason\": string length must be between 1 and \
             32765 bytes, got 32766",
        );
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
        let decode = |b: &[u8]| ReadTestWriteBody::decode(b, Format::Cbor);
        assert!(decode(&tv(vec![])).is_ok());
        assert!(decode(&tv(vec![(text("operator"), text("eq"))])).is_ok());
        assert!(decode(&tv(vec![(text("x"), uint(1))])).is_ok());
        assert_refused::<ReadTestWriteBody>(
            &tv(vec![(text("operator"), text("gt"))]),
            Format::Cbor,
            CodecError::UnsupportedOperator {
                path: "/\"test-write-vectors\"/0/\"test\"/0/\"operator\"".into(),
            },
            "error validating at location /\"test-write-vectors\"/0/\"test\"/0/\"operator\": \
             only the \"eq\" test operator is supported",
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
        assert_eq!(decode(&reads(30)).unwrap().read_vector.len(), 30);
        assert_refused::<ReadTestWriteBody>(
            &reads(31),
            Format::Cbor,
            CodecError::TooManyItems {
                path: "/\"read-vector\"".into(),
                max: 30,
            },
            "error validating at location /\"read-vector\": array must have between 0 and 30 \
             items",
        );
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
        assert_refused::<ReadTestWriteBody>(
            &text_key,
            Format::Cbor,
            CodecError::ShareKeyNotInteger {
                path: "/\"test-write-vectors\"".into(),
                got: Item::TextString,
            },
            "error validating at location /\"test-write-vectors\": share number keys must be \
             unsigned integers, got text string",
        );
    }

    #[test]
    fn json_requests() {
        let a = AllocateBody::decode(
            br#"{"share-numbers": [1, 7], "allocated-size": 12345}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(a.share_numbers, shares(&[1, 7]));
        assert_eq!(a.allocated_size, 12345);
        assert_refused::<AllocateBody>(
            br#"{"share-numbers": [1], "allocated-size": -1}"#,
            Format::Json,
            CodecError::NotU64 {
                path: "/\"allocated-size\"".into(),
            },
            "error validating at location /\"allocated-size\": expected an unsigned integer \
             below 2**64",
        );
        assert_refused::<AllocateBody>(
            br#"{"share-numbers": [1], "allocated-size": 1.5}"#,
            Format::Json,
            CodecError::WrongType {
                path: "/\"allocated-size\"".into(),
                expected: Expected::UnsignedInteger,
                got: Item::Float,
            },
            "error validating at location /\"allocated-size\": expected an unsigned integer, \
             got float",
        );
        let e = AllocateBody::decode(br#"{"share-numbers": [1]"#, Format::Json).unwrap_err();
        assert!(matches!(e, CodecError::InvalidJson(_)), "{e:?}");
        assert!(e.to_string().starts_with("invalid JSON"), "{e}");
        assert_eq!(
            CorruptBody::decode(br#"{"reason": "bad"}"#, Format::Json).unwrap(),
            CorruptBody {
                reason: "bad".into()
            }
        );
        let rtw = ReadTestWriteBody::decode(
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
        assert_refused::<ReadTestWriteBody>(
            br#"{"test-write-vectors": {"x": {"test": [], "write": [], "new-length": null}}, "read-vector": []}"#,
            Format::Json,
            CodecError::ShareKeyNotNumber {
                path: "/\"test-write-vectors\"".into(),
                key: "x".into(),
            },
            "error validating at location /\"test-write-vectors\": share number key \"x\" is \
             not a number",
        );
        assert_refused::<ReadTestWriteBody>(
            br#"{"test-write-vectors": {"1": {"test": [{"offset": 0, "size": 1, "specimen": "!"}],
                 "write": [], "new-length": null}}, "read-vector": []}"#,
            Format::Json,
            CodecError::BadBase64 {
                path: "/\"test-write-vectors\"/1/\"test\"/0/\"specimen\"".into(),
            },
            "error validating at location /\"test-write-vectors\"/1/\"test\"/0/\"specimen\": \
             expected a base64 string",
        );
    }
}
