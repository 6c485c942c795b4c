//! Announcement augmentation for bridged storage links.
//!
//! When a link adopts a storage node's identity, that node's announcements passing
//! through the relay gain the bridged endpoint, re-signed with the node's own key
//! (`private/node.privkey`): a Foolscap-only node gains `anonymous-storage-NURLs`
//! pointing at swampgate; a node reached over GBS gets an `anonymous-storage-FURL`
//! pointing at swampgate (same tubid and swissnum, swampgate's hints). Everything
//! else stays: server id (the key), permutation seed, seqnum, nonce. Clients derive
//! share placement from the server id and permutation seed, so placement is the same
//! whichever way they reach the node.

use ed25519_dalek::SigningKey;
use serde_json::Value as Json;
use tracing::debug;

use super::announcement::{key_string, Announcement, SignedAnnouncement};
use super::relay::Augment;

/// What to add to the announcements of one adopted node.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// The node speaks only Foolscap: announce swampgate's NURL.
    Nurl(String),
    /// The node is reached over GBS: announce swampgate's FURL.
    Furl(String),
}

/// One adopted node: its signing key and the endpoint swampgate serves for it.
pub struct Adopted {
    pub key: SigningKey,
    pub endpoint: Endpoint,
}

/// The augmenter of every adopted node.
pub struct AdoptedNodes {
    nodes: Vec<(String, Adopted)>,
}

impl AdoptedNodes {
    pub fn new(nodes: Vec<Adopted>) -> AdoptedNodes {
        AdoptedNodes {
            nodes: nodes
                .into_iter()
                .map(|a| (key_string(&a.key.verifying_key()), a))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl Augment for AdoptedNodes {
    fn augment(&self, ann: &Announcement) -> Option<Announcement> {
        let (_, node) = self.nodes.iter().find(|(k, _)| k == ann.key())?;
        if ann.service() != "storage" {
            return None;
        }
        let mut dict = ann.ann.clone();
        match &node.endpoint {
            Endpoint::Nurl(nurl) => {
                if dict.contains_key("anonymous-storage-NURLs") {
                    // The node speaks GBS itself.
                    return None;
                }
                dict.insert(
                    "anonymous-storage-NURLs".into(),
                    Json::Array(vec![Json::String(nurl.clone())]),
                );
            }
            Endpoint::Furl(furl) => {
                if dict.get("anonymous-storage-FURL").and_then(Json::as_str) == Some(furl) {
                    return None;
                }
                dict.insert("anonymous-storage-FURL".into(), Json::String(furl.clone()));
            }
        }
        let signed = SignedAnnouncement::sign(&dict, &node.key);
        debug!(server = %ann.key(), "announcement augmented with the bridged endpoint");
        signed.verify().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn adds_the_endpoint_and_keeps_identity_and_seqnum() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let mut d = Map::new();
        d.insert("service-name".into(), "storage".into());
        d.insert("permutation-seed-base32".into(), "abcd".into());
        d.insert("anonymous-storage-FURL".into(), "pb://t@tcp:h:1/s".into());
        d.insert("seqnum".into(), 5.into());
        let original = SignedAnnouncement::sign(&d, &key).verify().unwrap();
        let nodes = AdoptedNodes::new(vec![Adopted {
            key: key.clone(),
            endpoint: Endpoint::Nurl("pb://x@127.0.0.1:9/s#v=1".into()),
        }]);
        let aug = nodes.augment(&original).unwrap();
        assert_eq!(aug.key(), original.key());
        assert_eq!(aug.seqnum(), Some(5));
        assert_eq!(aug.ann["permutation-seed-base32"], "abcd");
        assert_eq!(
            aug.ann["anonymous-storage-NURLs"][0],
            "pb://x@127.0.0.1:9/s#v=1"
        );
        assert!(aug.signed.verify().is_ok());
        // Already bridged, or another node's: left alone.
        assert!(nodes.augment(&aug).is_none());
        let other = SignedAnnouncement::sign(&d, &SigningKey::from_bytes(&[1u8; 32]))
            .verify()
            .unwrap();
        assert!(nodes.augment(&other).is_none());
        let furl_nodes = AdoptedNodes::new(vec![Adopted {
            key,
            endpoint: Endpoint::Furl("pb://t@tcp:127.0.0.1:9/s".into()),
        }]);
        let aug = furl_nodes.augment(&original).unwrap();
        assert_eq!(
            aug.ann["anonymous-storage-FURL"],
            "pb://t@tcp:127.0.0.1:9/s"
        );
    }

    /// Fuzzing finding 4 (`announcement` target): serde_json parsed a float with
    /// more digits than an f64 holds to a neighbour of the right value, and the
    /// re-signed form parsed to yet another, so augmentation changed the numbers of
    /// what the node had signed. With `float_roundtrip` every value is the one
    /// Python's `float()` gives and survives re-signing exactly.
    #[test]
    fn augmentation_keeps_every_float_exactly() {
        use ed25519_dalek::Signer;
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let msg: &[u8] = br#"{"service-name": "storage", "x": 917.5048285057433917e-125, "y": 94.3526263339733094e-19, "z": 0.1}"#;
        let original = SignedAnnouncement {
            msg: bytes::Bytes::from_static(msg),
            sig: format!(
                "v0-{}",
                crate::base32::base32_lower(&key.sign(msg).to_bytes())
            ),
            key: key_string(&key.verifying_key()),
        }
        .verify()
        .unwrap();
        // Python: float("917.5048285057433917e-125") etc.
        assert_eq!(original.ann["x"].as_f64(), Some(9.175048285057434e-123));
        assert_eq!(original.ann["y"].as_f64(), Some(9.435262633397331e-18));
        assert_eq!(original.ann["z"].as_f64(), Some(0.1));
        let nodes = AdoptedNodes::new(vec![Adopted {
            key,
            endpoint: Endpoint::Nurl("pb://x@127.0.0.1:9/s#v=1".into()),
        }]);
        let aug = nodes.augment(&original).unwrap();
        for k in ["x", "y", "z"] {
            assert_eq!(aug.ann[k], original.ann[k], "{k}");
        }
    }
}
