//! Introducer announcements as they arrive from the network, and what the relay does
//! with them.
//!
//! Byte 0 picks the path (`% 3`), the signing key and the adopted endpoint:
//!
//! - 0, Foolscap: the rest describes the argument of `publish_v2` / `announce_v2`
//!   (byte 1: container and item count; each item: a kind byte, a 16-bit length,
//!   the bytes) for `SignedAnnouncement::from_value`;
//! - 1, HTTP: the rest is the body of `POST /introducer/v1/announcements`, parsed
//!   as JSON and then as the envelope (`from_envelope`);
//! - 2, contents: the rest is the `msg`, signed here with a fixed key so that the
//!   contents are parsed behind a valid signature.
//!
//! Whatever parses must re-serialise to the same bytes: the `(msg, sig, key)` tuple
//! and the envelope come back out as they went in; verification gives the same
//! answer again; an announcement we sign again verifies to the same dict, and
//! signing that dict again gives the same bytes. Behind a valid signature the only
//! refusals are about the contents. The augmentation of an adopted node's storage
//! announcement always verifies, keeps the key and seqnum and adds exactly the
//! endpoint; the relay stores what verifies, once.
#![no_main]

use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value as Json};
use swampgate::foolscap::Value;
use swampgate::introducer::announcement::{key_string, Replace};
use swampgate::introducer::augment::{Adopted, AdoptedNodes, Endpoint};
use swampgate::introducer::{
    Announcement, AnnouncementError, Augment, Origin, Relay, SignedAnnouncement,
};
use swampgate::base32::base32_lower;

const NURL: &str = "pb://1WUX-ARRndsyRZS6BlLd1eDZo2AMRYkUEDC_dCPPQmQ@127.0.0.1:7750/swiss#v=1";
const FURL: &str = "pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:7750/swiss";

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    // The adopted node's key, or another one.
    let key = SigningKey::from_bytes(&[if (ctl / 3) & 1 == 0 { 7 } else { 8 }; 32]);
    let endpoint = if (ctl / 6) & 1 == 0 {
        Endpoint::Nurl(NURL.into())
    } else {
        Endpoint::Furl(FURL.into())
    };
    match ctl % 3 {
        0 => foolscap(rest, &endpoint),
        1 => http(rest, &endpoint),
        _ => contents(rest, &key, &endpoint),
    }
});

/// The adopted node: key 7.
fn adopted(endpoint: &Endpoint) -> AdoptedNodes {
    AdoptedNodes::new(vec![Adopted {
        key: SigningKey::from_bytes(&[7; 32]),
        endpoint: endpoint.clone(),
    }])
}

fn foolscap(rest: &[u8], endpoint: &Endpoint) {
    let Some((&shape, mut rest)) = rest.split_first() else {
        return;
    };
    let mut items = Vec::new();
    for _ in 0..(shape >> 2) % 5 {
        let [kind, lo, hi, tail @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        items.push(match kind % 4 {
            0 | 1 => Value::bytes(bytes.to_vec()),
            2 => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
            _ => Value::int(len as i64),
        });
        rest = tail;
    }
    let v = match shape % 4 {
        0 => Value::Tuple(items.clone()),
        1 => Value::List(items.clone()),
        2 => Value::Set(items.clone()),
        _ => Value::Dict(vec![]),
    };
    let Ok(signed) = SignedAnnouncement::from_value(&v) else {
        return;
    };
    // The same three byte strings go back out, as a tuple.
    assert_eq!(signed.to_value(), Value::Tuple(items));
    assert_eq!(
        SignedAnnouncement::from_value(&signed.to_value()).as_ref(),
        Ok(&signed)
    );
    check_signed(&signed, None, endpoint);
}

fn http(body: &[u8], endpoint: &Endpoint) {
    let Ok(json) = serde_json::from_slice::<Json>(body) else {
        return;
    };
    let Ok(signed) = SignedAnnouncement::from_envelope(&json) else {
        return;
    };
    // One envelope per announcement: it re-serialises to exactly what came in.
    assert_eq!(signed.to_envelope(), json);
    check_signed(&signed, None, endpoint);
}

fn contents(msg: &[u8], key: &SigningKey, endpoint: &Endpoint) {
    let signed = SignedAnnouncement {
        msg: msg.to_vec().into(),
        sig: format!("v0-{}", base32_lower(&key.sign(msg).to_bytes())),
        key: key_string(&key.verifying_key()),
    };
    check_signed(&signed, Some(key), endpoint);
}

/// `key`: the signing key, if known.
fn check_signed(signed: &SignedAnnouncement, key: Option<&SigningKey>, endpoint: &Endpoint) {
    // The envelope round trip, through its JSON text.
    let text = serde_json::to_vec(&signed.to_envelope()).unwrap();
    let back = SignedAnnouncement::from_envelope(&serde_json::from_slice(&text).unwrap())
        .expect("our envelope parses back");
    assert_eq!(&back, signed);
    let verified = signed.verify();
    assert_eq!(back.verify(), verified, "verification is deterministic");
    let ann = match verified {
        Ok(ann) => ann,
        Err(e) => {
            let _ = e.to_string();
            if key.is_some() {
                // Validly signed: only the contents can be wrong.
                assert!(
                    matches!(
                        e,
                        AnnouncementError::TooLarge(_)
                            | AnnouncementError::NotUtf8
                            | AnnouncementError::NotJson(_)
                            | AnnouncementError::NotObject(_)
                            | AnnouncementError::NoServiceName
                    ),
                    "a valid signature refused: {e}"
                );
            }
            return;
        }
    };
    assert_eq!(&ann.signed, signed);
    let _ = (ann.service(), ann.key(), ann.seqnum(), ann.nickname());
    assert_eq!(ann.replaces(&ann), Replace::Duplicate);
    if let Some(key) = key {
        resign(&ann, key);
    }
    augment_and_relay(&ann, endpoint);
}

/// Signing the parsed dict again gives an announcement that verifies to the same
/// dict; signing that again gives the same bytes.
fn resign(ann: &Announcement, key: &SigningKey) {
    let again = SignedAnnouncement::sign(&ann.ann, key);
    let parsed = again
        .verify()
        .unwrap_or_else(|e| panic!("re-signed announcement refused: {e}: {:?}", again.msg));
    assert_eq!(parsed.ann, ann.ann, "re-signed: {:?}", again.msg);
    assert_eq!(SignedAnnouncement::sign(&parsed.ann, key), again);
    if ann.signed.msg == again.msg {
        assert_eq!(again, ann.signed, "same bytes, same signature");
    }
}

fn augment_and_relay(ann: &Announcement, endpoint: &Endpoint) {
    let nodes = adopted(endpoint);
    let applies = ann.key() == key_string(&SigningKey::from_bytes(&[7; 32]).verifying_key())
        && ann.service() == "storage"
        && match endpoint {
            Endpoint::Nurl(_) => !ann.ann.contains_key("anonymous-storage-NURLs"),
            Endpoint::Furl(furl) => {
                ann.ann.get("anonymous-storage-FURL").and_then(Json::as_str) != Some(furl.as_str())
            }
        };
    let augmented = nodes.augment(ann);
    assert_eq!(
        augmented.is_some(),
        applies,
        "augmentation of {:?}",
        ann.ann
    );
    if let Some(aug) = &augmented {
        assert_eq!(aug.key(), ann.key());
        assert_eq!(aug.service(), ann.service());
        assert_eq!(aug.seqnum(), ann.seqnum());
        let mut want: Map<String, Json> = ann.ann.clone();
        match endpoint {
            Endpoint::Nurl(nurl) => {
                want.insert(
                    "anonymous-storage-NURLs".into(),
                    Json::from(vec![nurl.clone()]),
                );
            }
            Endpoint::Furl(furl) => {
                want.insert("anonymous-storage-FURL".into(), Json::from(furl.clone()));
            }
        }
        assert_eq!(aug.ann, want);
        assert_eq!(aug.signed.verify().as_ref(), Ok(aug));
    }
    let relay = Relay::new("fuzz", Some(Arc::new(nodes) as Arc<dyn Augment>));
    for _ in 0..2 {
        relay
            .accept(&ann.signed, Origin::Local, "fuzz")
            .expect("a verified announcement is accepted");
        let stored = relay.announcements(ann.service());
        assert_eq!(stored.len(), 1);
        assert_eq!(&stored[0], augmented.as_ref().unwrap_or(ann));
    }
}
