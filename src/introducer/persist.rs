//! The relay's announcements on disk, so a restarted swampgate serves every
//! announcement at once, before any node reconnects and publishes again. A
//! publisher is answered only once its announcement is on disk
//! ([`Relay::accept_saved`]).
//!
//! One JSON file, replaced whole and crash-safely ([`crate::durable`]) shortly after
//! each change: a kill at any point leaves the previous or the new set. Each entry is
//! an announcement exactly as signed (the signed bytes as text: they are JSON, so
//! UTF-8) and where it came from; on load every signature is checked again, so a
//! damaged or edited entry is refused and logged, never served.
//!
//! ```json
//! {"format": "swampgate-announcements/1",
//!  "announcements": [{"origin": "local", "key": "v0-…", "sig": "v0-…", "msg": "{…}"}]}
//! ```

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::announcement::SignedAnnouncement;
use super::relay::{Origin, Relay};

const FORMAT: &str = "swampgate-announcements/1";

/// How long the writer waits after a change for more before writing: a burst of
/// publications (a grid reconnecting) is one write, and each publisher waits for
/// its answer at most this long plus one write.
const COALESCE: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error("{path}: not a swampgate announcements file: {why}")]
    Format { path: String, why: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    announcements: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    origin: OriginName,
    key: String,
    sig: String,
    msg: String,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum OriginName {
    Local,
    Upstream,
}

/// The file's bytes for these announcements. Announcements whose signed bytes are
/// not UTF-8 cannot have verified, and are left out.
pub fn encode(entries: &[(Origin, SignedAnnouncement)]) -> Vec<u8> {
    let file = File {
        format: FORMAT.into(),
        announcements: entries
            .iter()
            .filter_map(|(origin, s)| {
                Some(Entry {
                    origin: match origin {
                        Origin::Local => OriginName::Local,
                        Origin::Upstream => OriginName::Upstream,
                    },
                    key: s.key.clone(),
                    sig: s.sig.clone(),
                    msg: String::from_utf8(s.msg.to_vec()).ok()?,
                })
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&file).expect("serializable")
}

/// The announcements in a file's bytes (not yet verified).
pub fn decode(bytes: &[u8]) -> Result<Vec<(Origin, SignedAnnouncement)>, String> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.format != FORMAT {
        return Err(format!("format {:?}, expected {FORMAT:?}", file.format));
    }
    Ok(file
        .announcements
        .into_iter()
        .map(|e| {
            let origin = match e.origin {
                OriginName::Local => Origin::Local,
                OriginName::Upstream => Origin::Upstream,
            };
            let signed = SignedAnnouncement {
                msg: Bytes::from(e.msg.into_bytes()),
                sig: e.sig,
                key: e.key,
            };
            (origin, signed)
        })
        .collect())
}

/// Read the file at `path`; no file is no announcements.
pub fn load(path: &Path) -> Result<Vec<(Origin, SignedAnnouncement)>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(PersistError::Io {
                path: path.display().to_string(),
                why: e.to_string(),
            })
        }
    };
    decode(&bytes).map_err(|why| PersistError::Format {
        path: path.display().to_string(),
        why,
    })
}

/// Write the relay's announcements to `path` after every change (coalesced) until
/// `stop`, and once more then. A failed write is logged and retried at the next
/// change.
pub async fn keep_persisted(relay: Relay, path: std::path::PathBuf, stop: CancellationToken) {
    let mut changes = relay.changes();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = changes.recv() => match r {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
        }
        tokio::time::sleep(COALESCE).await;
        while changes.try_recv().is_ok() {}
        write(&relay, &path).await;
    }
    write(&relay, &path).await;
}

async fn write(relay: &Relay, path: &Path) {
    let (generation, entries) = relay.snapshot();
    let bytes = encode(&entries);
    let p = path.to_path_buf();
    let r =
        tokio::task::spawn_blocking(move || crate::durable::write_atomic(&p, &bytes, false)).await;
    match r {
        Ok(Ok(())) => {
            relay.saved(generation);
            debug!(path = %path.display(), generation, "announcements written");
        }
        Ok(Err(e)) => warn!(path = %path.display(), "cannot write the announcements: {e}"),
        Err(e) => warn!(path = %path.display(), "announcement writer failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let a = SignedAnnouncement {
            msg: Bytes::from_static(b"{\"a\": 1}"),
            sig: "v0-sig".into(),
            key: "v0-key".into(),
        };
        let entries = vec![(Origin::Local, a.clone()), (Origin::Upstream, a.clone())];
        let back = decode(&encode(&entries)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, Origin::Local);
        assert_eq!(back[1].0, Origin::Upstream);
        assert_eq!(back[0].1, a);
        // Not UTF-8: left out.
        let bad = SignedAnnouncement {
            msg: Bytes::from_static(b"\xff"),
            ..a.clone()
        };
        assert_eq!(decode(&encode(&[(Origin::Local, bad)])).unwrap().len(), 0);
        // Damaged files are refused with the reason.
        assert!(decode(b"{").is_err());
        let other = br#"{"format": "other/9", "announcements": []}"#;
        assert!(decode(other).unwrap_err().contains("other/9"));
        let d = tempfile::tempdir().unwrap();
        assert!(load(&d.path().join("none.json")).unwrap().is_empty());
        std::fs::write(d.path().join("bad.json"), b"[]").unwrap();
        let e = load(&d.path().join("bad.json")).unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
    }
}
