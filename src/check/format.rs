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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_a_braced_sorted_list() {
        assert_eq!(shares(&BTreeSet::new()), "{}");
        assert_eq!(shares(&[7].into_iter().collect()), "{7}");
        assert_eq!(shares(&[2, 0, 1].into_iter().collect()), "{0,1,2}");
    }

    #[test]
    fn ranges_are_half_open_in_order() {
        assert_eq!(ranges(&[]), "[]");
        assert_eq!(
            ranges(&[
                ByteRange { begin: 0, end: 10 },
                ByteRange {
                    begin: 50,
                    end: 100
                }
            ]),
            "[0..10,50..100]"
        );
    }

    #[test]
    fn readv_result_names_our_bytes_empty_and_other() {
        let ours: [(&[u8], &str); 2] = [(b"abc", "A"), (b"xyz", "X")];
        assert_eq!(readv_result(&BTreeMap::new(), &ours), "{}");
        let d: BTreeMap<ShareNum, Vec<Bytes>> = [
            (0, vec![Bytes::from_static(b"abc"), Bytes::new()]),
            (3, vec![Bytes::from_static(b"xyz")]),
            (4, vec![Bytes::from_static(b"abcd")]),
            (5, vec![]),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            readv_result(&d, &ours),
            "{0:[A,''] 3:[X] 4:[<4 other bytes>] 5:[]}"
        );
    }

    #[test]
    fn error_kind_is_the_kind_and_a_remote_error_adds_the_upstream_kind() {
        assert_eq!(error_kind(&StorageError::NotFound("x".into())), "not_found");
        assert_eq!(
            error_kind(&StorageError::WrongUploadSecret),
            "wrong_upload_secret"
        );
        for e in [
            StorageError::ConflictingWrite("x".into()),
            StorageError::Unavailable("x".into()),
            StorageError::Internal("x".into()),
        ] {
            assert_eq!(error_kind(&e), e.kind().as_str());
        }
        let e = StorageError::Remote {
            kind: "HTTP 500".into(),
            message: "boom".into(),
        };
        assert_eq!(error_kind(&e), "remote HTTP 500");
    }

    #[test]
    fn outcomes_name_a_value_or_an_error_kind() {
        let ok: StorageResult<u64> = Ok(58);
        let no: StorageResult<u64> = Err(StorageError::NotFound("share 7".into()));
        assert_eq!(outcome(&ok, |n| n.to_string()), "58");
        assert_eq!(outcome(&no, |n| n.to_string()), "error not_found");
        assert_eq!(err(&ok), "ok");
        assert_eq!(err(&no), "error not_found");
        assert_eq!(err_detail(&ok), None);
        assert_eq!(err_detail(&no).as_deref(), Some("not found: share 7"));
    }
}
