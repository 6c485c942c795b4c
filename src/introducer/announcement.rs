//! Signed announcements in Tahoe's `sign_to_foolscap` format.
//!
//! On the wire an announcement is a 3-tuple of byte strings `(msg, sig, key)`:
//! - `msg`: the UTF-8 JSON of the announcement dict (Python's `json.dumps` layout:
//!   `", "` and `": "` separators, non-ASCII escaped);
//! - `sig`: `v0-` + lowercase unpadded base32 of the 64-byte Ed25519 signature over
//!   exactly the bytes of `msg`;
//! - `key`: `v0-` + base32 of the 32-byte Ed25519 public key (Tahoe's `pub-v0-…`
//!   without `pub-`). It is also the announcing node's server id.
//!
//! Verification works on the bytes received, never on a re-serialisation: verify,
//! then parse. A planned HTTP form carries the same three parts as the JSON envelope
//! `{"msg": base64(msg), "sig": "v0-…", "pubkey": "v0-…"}`.

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{Map, Value as Json};

use crate::base32::{base32_lower, base32_lower_decode};
use crate::foolscap::Value;

/// The most bytes of `msg` accepted (Tahoe's are well under 1 KiB).
pub const MAX_MSG_BYTES: usize = 64 * 1024;

/// Why an announcement was refused. The text names what was wrong and never
/// quotes a secret (announcements hold none; FURL swissnums are public there).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnouncementError {
    #[error("announcement is a {0}, not a (msg, sig, key) tuple")]
    NotATuple(&'static str),
    #[error("announcement tuple has {0} items, not 3 (msg, sig, key)")]
    WrongLength(usize),
    #[error("announcement item {0} ({1}) is a {2}, not bytes")]
    NotBytes(usize, &'static str, &'static str),
    #[error("announcement is unsigned (empty signature or key)")]
    Unsigned,
    #[error(
        "announcement {0} does not start with v0- (only v0- signatures and keys are recognized)"
    )]
    NotV0(&'static str),
    #[error("announcement {0} is not lowercase unpadded base32 of {1} bytes")]
    BadEncoding(&'static str, usize),
    #[error("announcement key is not a valid Ed25519 public key")]
    BadKey,
    #[error("bad signature: the signature does not verify against the announcement's key")]
    BadSignature,
    #[error("announcement message is {0} bytes, more than the {MAX_MSG_BYTES} accepted")]
    TooLarge(usize),
    #[error("announcement message is not UTF-8")]
    NotUtf8,
    #[error("announcement message is not JSON: {0}")]
    NotJson(String),
    #[error("announcement message is JSON {0}, not an object")]
    NotObject(&'static str),
    #[error("announcement has no text \"service-name\"")]
    NoServiceName,
    #[error("announcement envelope: {0}")]
    Envelope(String),
    #[error("the relay already holds {0} announcements: no room for another server")]
    Full(usize),
}

/// The three parts as received (or as we signed them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SignedAnnouncement {
    pub msg: Bytes,
    /// `v0-…` (ASCII).
    pub sig: String,
    /// `v0-…` (ASCII): the announcer's server id.
    pub key: String,
}

/// A verified announcement: the signed parts and the parsed dict.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    pub signed: SignedAnnouncement,
    pub ann: Map<String, Json>,
}

impl Announcement {
    /// `service-name` (checked present at verification).
    pub fn service(&self) -> &str {
        self.ann
            .get("service-name")
            .and_then(Json::as_str)
            .unwrap_or_default()
    }

    /// The server id: the `v0-` key.
    pub fn key(&self) -> &str {
        &self.signed.key
    }

    /// `seqnum` if it is an integer (Tahoe ignores any other kind).
    pub fn seqnum(&self) -> Option<i64> {
        self.ann.get("seqnum").and_then(Json::as_i64)
    }

    pub fn nickname(&self) -> &str {
        self.ann
            .get("nickname")
            .and_then(Json::as_str)
            .unwrap_or_default()
    }

    /// Whether `self` may replace `old` (same index): Tahoe's rule. A different
    /// announcement replaces one without a seqnum; otherwise it needs a higher
    /// integer seqnum. The same dict again is a duplicate, not a replacement.
    pub fn replaces(&self, old: &Announcement) -> Replace {
        if self.ann == old.ann {
            return Replace::Duplicate;
        }
        if old.ann.contains_key("seqnum") {
            let (Some(new), Some(prev)) = (self.seqnum(), old.seqnum()) else {
                return Replace::Stale("no valid seqnum".into());
            };
            if new <= prev {
                return Replace::Stale(format!("seqnum {new} <= {prev} (replay?)"));
            }
        }
        Replace::Yes
    }
}

/// The outcome of comparing an announcement with the one it would replace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replace {
    Yes,
    Duplicate,
    Stale(String),
}

fn part(items: &[Value], i: usize, name: &'static str) -> Result<Bytes, AnnouncementError> {
    match &items[i] {
        Value::Bytes(b) => Ok(b.clone()),
        other => Err(AnnouncementError::NotBytes(i, name, other.type_name())),
    }
}

fn ascii(b: Bytes, name: &'static str) -> Result<String, AnnouncementError> {
    String::from_utf8(b.to_vec()).map_err(|_| AnnouncementError::BadEncoding(name, 0))
}

impl SignedAnnouncement {
    /// From the Foolscap value Tahoe sends (a tuple; a list is accepted too, as the
    /// real introducer does).
    pub fn from_value(v: &Value) -> Result<SignedAnnouncement, AnnouncementError> {
        let items = match v {
            Value::Tuple(items) | Value::List(items) => items,
            other => return Err(AnnouncementError::NotATuple(other.type_name())),
        };
        if items.len() != 3 {
            return Err(AnnouncementError::WrongLength(items.len()));
        }
        Ok(SignedAnnouncement {
            msg: part(items, 0, "msg")?,
            sig: ascii(part(items, 1, "sig")?, "signature")?,
            key: ascii(part(items, 2, "key")?, "key")?,
        })
    }

    /// The Foolscap value: a tuple of three byte strings.
    pub fn to_value(&self) -> Value {
        Value::Tuple(vec![
            Value::Bytes(self.msg.clone()),
            Value::bytes(self.sig.clone().into_bytes()),
            Value::bytes(self.key.clone().into_bytes()),
        ])
    }

    /// Check the signature over the bytes as received, then parse them.
    pub fn verify(&self) -> Result<Announcement, AnnouncementError> {
        if self.sig.is_empty() || self.key.is_empty() {
            return Err(AnnouncementError::Unsigned);
        }
        let sig_b32 = self
            .sig
            .strip_prefix("v0-")
            .ok_or(AnnouncementError::NotV0("signature"))?;
        let key_b32 = self
            .key
            .strip_prefix("v0-")
            .ok_or(AnnouncementError::NotV0("key"))?;
        if self.msg.len() > MAX_MSG_BYTES {
            return Err(AnnouncementError::TooLarge(self.msg.len()));
        }
        let key = verifying_key_from_b32(key_b32)?;
        let sig = base32_lower_decode::<64>(sig_b32)
            .ok_or(AnnouncementError::BadEncoding("signature", 64))?;
        key.verify(&self.msg, &Signature::from_bytes(&sig))
            .map_err(|_| AnnouncementError::BadSignature)?;
        let text = std::str::from_utf8(&self.msg).map_err(|_| AnnouncementError::NotUtf8)?;
        let ann = match serde_json::from_str::<Json>(text) {
            Ok(Json::Object(m)) => m,
            Ok(other) => return Err(AnnouncementError::NotObject(json_kind(&other))),
            Err(e) => return Err(AnnouncementError::NotJson(e.to_string())),
        };
        if !matches!(ann.get("service-name"), Some(Json::String(_))) {
            return Err(AnnouncementError::NoServiceName);
        }
        Ok(Announcement {
            signed: self.clone(),
            ann,
        })
    }

    /// Sign `ann` as Tahoe's `sign_to_foolscap` does.
    pub fn sign(ann: &Map<String, Json>, key: &SigningKey) -> SignedAnnouncement {
        let msg = python_json_dumps(&Json::Object(ann.clone())).into_bytes();
        let sig = key.sign(&msg);
        SignedAnnouncement {
            msg: Bytes::from(msg),
            sig: format!("v0-{}", base32_lower(&sig.to_bytes())),
            key: key_string(&key.verifying_key()),
        }
    }

    /// The HTTP/JSON envelope: `{"msg": base64(msg), "sig": "v0-…", "pubkey": "v0-…"}`.
    pub fn to_envelope(&self) -> Json {
        serde_json::json!({
            "msg": data_encoding::BASE64.encode(&self.msg),
            "sig": self.sig,
            "pubkey": self.key,
        })
    }

    /// Parse the envelope (not verified yet: call [`SignedAnnouncement::verify`]).
    pub fn from_envelope(v: &Json) -> Result<SignedAnnouncement, AnnouncementError> {
        let obj = v.as_object().ok_or_else(|| {
            AnnouncementError::Envelope(format!("{} is not an object", json_kind(v)))
        })?;
        let field = |k: &str| {
            obj.get(k).and_then(Json::as_str).ok_or_else(|| {
                AnnouncementError::Envelope(format!("\"{k}\" is missing or not a string"))
            })
        };
        if let Some(extra) = obj
            .keys()
            .find(|k| !["msg", "sig", "pubkey"].contains(&k.as_str()))
        {
            return Err(AnnouncementError::Envelope(format!(
                "unknown field \"{extra}\""
            )));
        }
        let msg = data_encoding::BASE64
            .decode(field("msg")?.as_bytes())
            .map_err(|e| {
                AnnouncementError::Envelope(format!("\"msg\" is not padded base64: {e}"))
            })?;
        Ok(SignedAnnouncement {
            msg: Bytes::from(msg),
            sig: field("sig")?.to_string(),
            key: field("pubkey")?.to_string(),
        })
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn verifying_key_from_b32(b32: &str) -> Result<VerifyingKey, AnnouncementError> {
    let raw = base32_lower_decode::<32>(b32).ok_or(AnnouncementError::BadEncoding("key", 32))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| AnnouncementError::BadKey)
}

/// `v0-` + base32 of the public key: the server id Tahoe derives from it.
pub fn key_string(key: &VerifyingKey) -> String {
    format!("v0-{}", base32_lower(key.as_bytes()))
}

/// Errors reading a Tahoe node key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read: {why}")]
    Read { path: String, why: String },
    #[error("{path}: not a Tahoe signing key (expected priv-v0- and base32 of 32 bytes)")]
    Format { path: String },
}

/// Parse Tahoe's `private/node.privkey` text (`priv-v0-<base32 of the seed>`).
pub fn signing_key_from_tahoe(text: &str, path: &str) -> Result<SigningKey, KeyError> {
    let seed = text
        .trim()
        .strip_prefix("priv-v0-")
        .and_then(base32_lower_decode::<32>)
        .ok_or_else(|| KeyError::Format { path: path.into() })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Read a Tahoe node's signing key (`NODEDIR/private/node.privkey`).
pub fn load_tahoe_signing_key(path: &std::path::Path) -> Result<SigningKey, KeyError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
        path: p.clone(),
        why: e.to_string(),
    })?;
    signing_key_from_tahoe(&text, &p)
}

/// Serialise as Python's `json.dumps(v)` with its defaults: `", "` and `": "`
/// separators, every non-ASCII character escaped (`ensure_ascii`). Object keys
/// come out in the map's order.
pub fn python_json_dumps(v: &Json) -> String {
    let mut out = String::new();
    dump(v, &mut out);
    out
}

fn dump(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(n) => out.push_str(&n.to_string()),
        Json::String(s) => dump_str(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(x, out);
            }
            out.push(']');
        }
        Json::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump_str(k, out);
                out.push_str(": ");
                dump(x, out);
            }
            out.push('}');
        }
    }
}

fn dump_str(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> Vec<SignedAnnouncement> {
        let text = include_str!("../../fixtures/introducer-announcements.json");
        let doc: Json = serde_json::from_str(text).unwrap();
        doc["announcements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| SignedAnnouncement {
                msg: Bytes::from(a["msg"].as_str().unwrap().as_bytes().to_vec()),
                sig: a["sig"].as_str().unwrap().into(),
                key: a["key"].as_str().unwrap().into(),
            })
            .collect()
    }

    #[test]
    fn captured_announcements_verify() {
        let anns = captured();
        assert_eq!(anns.len(), 3);
        let mut nicks = Vec::new();
        for s in &anns {
            assert_eq!(s.sig.len(), 106);
            assert_eq!(s.key.len(), 55);
            let a = s.verify().unwrap();
            assert_eq!(a.service(), "storage");
            assert_eq!(a.seqnum(), Some(1));
            nicks.push(a.nickname().to_string());
            // Round trip through the Foolscap value and the HTTP envelope.
            assert_eq!(&SignedAnnouncement::from_value(&s.to_value()).unwrap(), s);
            assert_eq!(
                &SignedAnnouncement::from_envelope(&s.to_envelope()).unwrap(),
                s
            );
        }
        nicks.sort();
        assert_eq!(nicks, ["capture-client", "storage1", "storage2"]);
        // storage1 forces Foolscap: no NURLs; storage2 announces them.
        let s2 = anns
            .iter()
            .map(|s| s.verify().unwrap())
            .find(|a| a.nickname() == "storage2")
            .unwrap();
        assert!(s2.ann["anonymous-storage-NURLs"].is_array());
    }

    #[test]
    fn python_layout_reproduces_captured_bytes() {
        // Tahoe's msg is json.dumps in insertion order; with the keys in that order
        // our serialiser gives the same bytes (so our signatures cover what Tahoe
        // would have written).
        for s in captured() {
            let text = std::str::from_utf8(&s.msg).unwrap();
            let mut de = serde_json::Deserializer::from_str(text);
            let pairs = ordered_pairs(&mut de);
            let mut out = String::from("{");
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&python_json_dumps(&Json::String(k.clone())));
                out.push_str(": ");
                out.push_str(&python_json_dumps(v));
            }
            out.push('}');
            assert_eq!(out, text);
        }
        assert_eq!(
            python_json_dumps(&serde_json::json!({"a": ["é", "𝄞", "\"\n", 1, null, true]})),
            r#"{"a": ["\u00e9", "\ud834\udd1e", "\"\n", 1, null, true]}"#
        );
    }

    fn ordered_pairs(
        de: &mut serde_json::Deserializer<serde_json::de::StrRead>,
    ) -> Vec<(String, Json)> {
        use serde::de::{Deserializer, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<(String, Json)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Json>()? {
                    out.push((k, v));
                }
                Ok(out)
            }
        }
        de.deserialize_map(V).unwrap()
    }

    #[test]
    fn tampering_is_refused_with_a_reason() {
        let good = captured().remove(0);
        // One byte of the message changed: the signature no longer verifies.
        let mut msg = good.msg.to_vec();
        let i = msg.iter().position(|&b| b == b'2').unwrap();
        msg[i] = b'3';
        let bad = SignedAnnouncement {
            msg: msg.into(),
            ..good.clone()
        };
        assert_eq!(bad.verify().unwrap_err(), AnnouncementError::BadSignature);
        // Someone else's key.
        let other = captured().remove(1);
        let bad = SignedAnnouncement {
            key: other.key,
            ..good.clone()
        };
        assert_eq!(bad.verify().unwrap_err(), AnnouncementError::BadSignature);
        // Unsigned, wrong prefixes, bad encodings.
        let bad = SignedAnnouncement {
            sig: String::new(),
            ..good.clone()
        };
        assert_eq!(bad.verify().unwrap_err(), AnnouncementError::Unsigned);
        let bad = SignedAnnouncement {
            sig: good.sig.replacen("v0-", "v1-", 1),
            ..good.clone()
        };
        assert_eq!(
            bad.verify().unwrap_err(),
            AnnouncementError::NotV0("signature")
        );
        let bad = SignedAnnouncement {
            key: good.key.replacen("v0-", "pub-v0-", 1),
            ..good.clone()
        };
        assert_eq!(bad.verify().unwrap_err(), AnnouncementError::NotV0("key"));
        let bad = SignedAnnouncement {
            key: good.key.to_uppercase().replacen("V0-", "v0-", 1),
            ..good.clone()
        };
        assert_eq!(
            bad.verify().unwrap_err(),
            AnnouncementError::BadEncoding("key", 32)
        );
        let bad = SignedAnnouncement {
            sig: format!("{}a", good.sig),
            ..good.clone()
        };
        assert_eq!(
            bad.verify().unwrap_err(),
            AnnouncementError::BadEncoding("signature", 64)
        );
        // Wrong shapes on the wire.
        assert_eq!(
            SignedAnnouncement::from_value(&Value::Dict(vec![])).unwrap_err(),
            AnnouncementError::NotATuple("dict")
        );
        let v = Value::Tuple(vec![
            Value::text("x"),
            Value::bytes(b"v0-".to_vec()),
            Value::bytes(b"v0-".to_vec()),
        ]);
        assert_eq!(
            SignedAnnouncement::from_value(&v).unwrap_err(),
            AnnouncementError::NotBytes(0, "msg", "str")
        );
        let e = SignedAnnouncement::from_envelope(
            &serde_json::json!({"msg": "!!", "sig": "v0-", "pubkey": "v0-"}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("\"msg\" is not padded base64"),
            "{e}"
        );
    }

    #[test]
    fn signed_announcements_verify_and_replace_by_seqnum() {
        let key =
            signing_key_from_tahoe(&format!("priv-v0-{}\n", base32_lower(&[7u8; 32])), "test")
                .unwrap();
        let mut ann = Map::new();
        ann.insert("service-name".into(), "storage".into());
        ann.insert("nickname".into(), "caf\u{e9}".into());
        ann.insert("seqnum".into(), 3.into());
        let s = SignedAnnouncement::sign(&ann, &key);
        assert!(s.msg.is_ascii());
        let a = s.verify().unwrap();
        assert_eq!(a.ann, ann);
        assert_eq!(a.key(), key_string(&key.verifying_key()));
        ann.insert("seqnum".into(), 4.into());
        let newer = SignedAnnouncement::sign(&ann, &key).verify().unwrap();
        assert_eq!(newer.replaces(&a), Replace::Yes);
        assert!(matches!(a.replaces(&newer), Replace::Stale(_)));
        assert_eq!(a.replaces(&a), Replace::Duplicate);
        assert!(signing_key_from_tahoe("pub-v0-abc", "p").is_err());
    }
}
