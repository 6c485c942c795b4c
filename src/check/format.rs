//! How the report writes what a server did: error kinds, share sets, byte ranges and
//! read-vector results, normalised (no storage indexes, no secrets, no random bytes)
//! so that `--compare` can compare the "got" of two servers as strings.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::storage::*;

/// A storage error's kind, as the report shows it.
pub fn error_kind(e: &StorageError) -> String {
    match e {
        // The upstream's own name for the failure says more than `remote`.
        StorageError::Remote { kind, .. } => format!("{} {kind}", e.kind()),
        e => e.kind().as_str().into(),
    }
}

/// A call's outcome: `show` of its value, or "error KIND".
pub(super) fn outcome<T>(r: &StorageResult<T>, show: impl FnOnce(&T) -> String) -> String {
    match r {
        Ok(v) => show(v),
        Err(e) => format!("error {}", error_kind(e)),
    }
}

/// "ok", or "error KIND".
pub(super) fn err<T>(r: &StorageResult<T>) -> String {
    outcome(r, |_| "ok".into())
}

/// The error with its message, for a failure's "got" (messages can name storage
/// indexes, never secrets).
pub(super) fn err_detail<T>(r: &StorageResult<T>) -> Option<String> {
    r.as_ref().err().map(|e| e.to_string())
}

/// `{0,1,2}`.
pub(super) fn shares(s: &BTreeSet<ShareNum>) -> String {
    let v: Vec<String> = s.iter().map(|x| x.to_string()).collect();
    format!("{{{}}}", v.join(","))
}

/// `[50..100]`.
pub(super) fn ranges(r: &[ByteRange]) -> String {
    let v: Vec<String> = r
        .iter()
        .map(|x| format!("{}..{}", x.begin, x.end))
        .collect();
    format!("[{}]", v.join(","))
}

/// `{0:[D[0..10]] 1:['']}`: each share's data, named by the label of the bytes the
/// suite wrote (`ours`), `''` when empty, else by its length.
pub(super) fn readv_result(d: &BTreeMap<ShareNum, Vec<Bytes>>, ours: &[(&[u8], &str)]) -> String {
    let name = |b: &Bytes| -> String {
        if b.is_empty() {
            return "''".into();
        }
        for (bytes, label) in ours {
            if b.as_ref() == *bytes {
                return (*label).to_string();
            }
        }
        format!("<{} other bytes>", b.len())
    };
    let v: Vec<String> = d
        .iter()
        .map(|(sh, datas)| {
            let ds: Vec<String> = datas.iter().map(name).collect();
            format!("{sh}:[{}]", ds.join(","))
        })
        .collect();
    format!("{{{}}}", v.join(" "))
}
