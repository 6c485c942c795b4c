//! The `mutable` group: one slot of two 50-byte shares, through test-and-write
//! (creation, failing and passing tests, tests past the end), reads, the write
//! enabler, and deletion by a zero new length. Mutable files (directories among
//! them) are only as safe as these rules: a failed test must write nothing, and a
//! write with another write enabler must be refused.

use bytes::Bytes;

use super::format::{err, err_detail, readv_result, shares};
use super::suite::{data, random_si, secret, Suite};
use super::{Group, Status};
use crate::storage::*;

const G: Group = Group::Mutable;

/// The slot the group works on.
struct Slot {
    si: StorageIndex,
    we: Secret,
    /// What each share holds after creation.
    d1: Bytes,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            si: random_si(),
            we: secret(),
            d1: data(50),
        }
    }

    /// The names the report gives the bytes the suite wrote.
    fn labels(&self) -> [(&[u8], &str); 2] {
        [
            (&self.d1[0..10], "D[0..10]"),
            (&self.d1[45..50], "D[45..50]"),
        ]
    }

    /// Create share `sh` with `d1`, testing that it does not exist yet.
    fn create(&self, sh: ShareNum) -> (ShareNum, TestWriteVectors) {
        (
            sh,
            TestWriteVectors {
                test: vec![TestVector {
                    offset: 0,
                    size: 1,
                    specimen: Bytes::new(),
                }],
                write: vec![WriteVector {
                    offset: 0,
                    data: self.d1.clone(),
                }],
                new_length: None,
            },
        )
    }

    fn show(&self, x: &ReadTestWriteResult) -> String {
        format!(
            "success {} data {}",
            x.success,
            readv_result(&x.data, &self.labels())
        )
    }

    fn show_readv(&self, m: &std::collections::BTreeMap<ShareNum, Vec<Bytes>>) -> String {
        readv_result(m, &self.labels())
    }
}

/// The first ten bytes of every share.
fn first_ten() -> Vec<ReadVector> {
    vec![ReadVector {
        offset: 0,
        size: 10,
    }]
}

/// A test of share 1 far past its end against `specimen`, writing nothing.
fn test_past_end(specimen: &'static [u8]) -> (ShareNum, TestWriteVectors) {
    (
        1,
        TestWriteVectors {
            test: vec![TestVector {
                offset: 1000,
                size: 5,
                specimen: Bytes::from_static(specimen),
            }],
            write: vec![],
            new_length: None,
        },
    )
}

impl Suite {
    pub(super) async fn mutable(&mut self) {
        let slot = Slot::new();
        before_write(self, &slot).await;
        if !create(self, &slot).await {
            self.special(
                G,
                "rest",
                "the rest of the mutable group",
                Status::Skipped,
                "creating the shares failed",
            );
            self.delete_mutable(slot.si, &slot.we).await;
            return;
        }
        test_and_write(self, &slot).await;
        tests_past_end(self, &slot).await;
        write_enabler(self, &slot).await;
        readv(self, &slot).await;
        deletion(self, &slot).await;
    }
}

/// A fresh storage index has no shares to list, read or readv.
async fn before_write(s: &mut Suite, slot: &Slot) {
    let r = s.api.list_mutable_shares(slot.si).await;
    s.check_outcome(
        G,
        "list-before-write",
        "a fresh storage index has no mutable shares",
        "{}",
        &r,
        shares,
    );
    let r = s.api.slot_readv(slot.si, vec![], first_ten()).await;
    s.check_outcome(
        G,
        "readv-before-write",
        "reading a fresh storage index returns no shares",
        "{}",
        &r,
        |m| slot.show_readv(m),
    );
    let r = s.api.read_mutable(slot.si, 0, 0, 10).await;
    let d = err_detail(&r);
    s.check(
        G,
        "read-unknown-share",
        "reading a mutable share that does not exist is refused as not found",
        "error not_found",
        err(&r),
        d,
    );
}

/// Create shares 0 and 1; whether that worked.
async fn create(s: &mut Suite, slot: &Slot) -> bool {
    let tw = vec![slot.create(0), slot.create(1)];
    let r = s.rtw(slot.si, &slot.we, tw, first_ten()).await;
    s.check_outcome(
        G,
        "create",
        "a test-and-write creating two shares succeeds; the read sees nothing before it",
        "success true data {}",
        &r,
        |x| slot.show(x),
    )
}

/// A failing test writes nothing; a passing one writes, growing the share.
async fn test_and_write(s: &mut Suite, slot: &Slot) {
    let (si, we) = (slot.si, &slot.we);
    let r = s.rtw(si, we, vec![slot.create(0)], first_ten()).await;
    s.check_outcome(
        G,
        "test-fails",
        "a failed test writes nothing and returns the read vector of every share",
        "success false data {0:[D[0..10]] 1:[D[0..10]]}",
        &r,
        |x| slot.show(x),
    );
    let patch = Bytes::from_static(b"patched!");
    let tw = TestWriteVectors {
        test: vec![TestVector {
            offset: 0,
            size: 10,
            specimen: slot.d1.slice(0..10),
        }],
        write: vec![WriteVector {
            offset: 50,
            data: patch.clone(),
        }],
        new_length: None,
    };
    let rv = vec![ReadVector {
        offset: 45,
        size: 10,
    }];
    let r = s.rtw(si, we, vec![(0, tw)], rv).await;
    s.check_outcome(
        G,
        "test-passes",
        "a passing test writes, and the read returns what was there before (truncated at the end)",
        "success true data {0:[D[45..50]] 1:[D[45..50]]}",
        &r,
        |x| slot.show(x),
    );
    let r = s.api.read_mutable(si, 0, 48, 100).await;
    let mut want = slot.d1[48..50].to_vec();
    want.extend_from_slice(&patch);
    s.check_outcome(
        G,
        "read-after-write",
        "a read past the end of a written share is truncated and shows the write",
        "written bytes",
        &r,
        |b| match b {
            b if b.as_ref() == want.as_slice() => "written bytes".to_string(),
            b => format!("{} other bytes", b.len()),
        },
    );
    let r = s.api.mutable_share_length(si, 0).await;
    let got = |n: &u64| n.to_string();
    s.check_outcome(G, "length", "the share grew with the write", "58", &r, got);
}

/// A test past the end reads nothing.
async fn tests_past_end(s: &mut Suite, slot: &Slot) {
    let (si, we) = (slot.si, &slot.we);
    let r = s.rtw(si, we, vec![test_past_end(b"")], vec![]).await;
    s.check_outcome(
        G,
        "test-past-end-empty",
        "a test past the end reads nothing, so it passes against an empty specimen",
        "success true data {0:[] 1:[]}",
        &r,
        |x| slot.show(x),
    );
    let r = s.rtw(si, we, vec![test_past_end(b"abcde")], vec![]).await;
    s.check_outcome(
        G,
        "test-past-end-data",
        "a test past the end fails against a non-empty specimen",
        "success false data {0:[] 1:[]}",
        &r,
        |x| slot.show(x),
    );
}

/// Another write enabler is refused, for a write and for a read-only test-and-write.
async fn write_enabler(s: &mut Suite, slot: &Slot) {
    let tw = TestWriteVectors {
        write: vec![WriteVector {
            offset: 0,
            data: Bytes::from_static(b"x"),
        }],
        ..Default::default()
    };
    let r = s.rtw(slot.si, &secret(), vec![(0, tw)], vec![]).await;
    s.check_outcome(
        G,
        "write-enabler",
        "a write with another write enabler is refused",
        "error bad_write_enabler",
        &r,
        |x| slot.show(x),
    );
    let r = s.rtw(slot.si, &secret(), vec![], first_ten()).await;
    s.check_outcome(
        G,
        "write-enabler-read-only",
        "a read-only test-and-write with another write enabler is refused too",
        "error bad_write_enabler",
        &r,
        |x| slot.show(x),
    );
}

/// Reads of all shares, of one named share, and of one that does not exist.
async fn readv(s: &mut Suite, slot: &Slot) {
    for (name, desc, which, expected) in [
        (
            "readv-all",
            "reading all shares returns every share",
            vec![],
            "{0:[D[0..10]] 1:[D[0..10]]}",
        ),
        (
            "readv-some",
            "reading one named share returns that share",
            vec![1],
            "{1:[D[0..10]]}",
        ),
        (
            "readv-none",
            "reading a share that does not exist returns nothing",
            vec![7],
            "{}",
        ),
    ] {
        let r = s.api.slot_readv(slot.si, which, first_ten()).await;
        s.check_outcome(G, name, desc, expected, &r, |m| slot.show_readv(m));
    }
}

/// A zero new length deletes a share; deleting the last leaves none.
async fn deletion(s: &mut Suite, slot: &Slot) {
    let tw = TestWriteVectors {
        new_length: Some(0),
        ..Default::default()
    };
    let r = match s.rtw(slot.si, &slot.we, vec![(1, tw)], vec![]).await {
        Ok(x) if x.success => s.api.list_mutable_shares(slot.si).await,
        Ok(_) => Err(StorageError::Internal("the write did not succeed".into())),
        Err(e) => Err(e),
    };
    s.check_outcome(
        G,
        "zero-length-deletes",
        "a zero new length deletes the share",
        "{0}",
        &r,
        shares,
    );
    s.delete_mutable(slot.si, &slot.we).await;
    let r = s.api.list_mutable_shares(slot.si).await;
    s.check_outcome(
        G,
        "delete-last",
        "deleting the last share leaves no shares",
        "{}",
        &r,
        shares,
    );
}
