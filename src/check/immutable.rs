//! The `immutable` group: one upload of three 100-byte shares, through allocation,
//! partial and overlapping writes, completion, reads at and past the end, and abort.
//! These are the rules a Tahoe client relies on to upload and download a file and to
//! resume an interrupted upload; where Tahoe answers differently over Foolscap and GBS
//! (a write past the allocated size, abort of a completed share, `close()` of an
//! incomplete one) the check says which protocol it expects what of.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::format::{err, err_detail, outcome, ranges, shares};
use super::suite::{data, lease, random_si, secret, Suite};
use super::{Group, Protocol, Status};
use crate::storage::*;

const G: Group = Group::Immutable;

/// The allocated size of every share of the upload.
const SIZE: u64 = 100;

/// The upload the group works on.
struct Upload {
    si: StorageIndex,
    up: Secret,
    body: Bytes,
}

impl Upload {
    fn new() -> Upload {
        Upload {
            si: random_si(),
            up: secret(),
            body: data(SIZE as usize),
        }
    }

    /// Allocate `shares` of the upload with upload secret `up`.
    fn allocate(&self, shares: &[ShareNum], up: &Secret) -> AllocateRequest {
        AllocateRequest {
            storage_index: self.si,
            lease: lease(),
            upload_secret: up.clone(),
            share_numbers: shares.iter().copied().collect(),
            allocated_size: SIZE,
        }
    }
}

fn show_allocation(a: &AllocateResult) -> String {
    format!(
        "allocated {} already-have {}",
        shares(&a.allocated),
        shares(&a.already_have)
    )
}

fn show_progress(p: &WriteProgress) -> String {
    format!("required {}", ranges(&p.required))
}

fn show_read(b: &Bytes, want: &[u8]) -> String {
    if b.as_ref() == want {
        format!("{} bytes as written", b.len())
    } else {
        format!("{} bytes, not as written", b.len())
    }
}

impl Suite {
    pub(super) async fn immutable(&mut self) {
        let u = Upload::new();
        if !allocate(self, &u).await {
            self.special(
                G,
                "rest",
                "the rest of the immutable group",
                Status::Skipped,
                "allocation failed",
            );
            self.abort_all(u.si, &[0, 1, 2], &u.up).await;
            return;
        }
        unfinished(self, &u).await;
        writes(self, &u).await;
        wrong_secret_writes(self, &u).await;
        complete(self, &u).await;
        reads(self, &u).await;
        reallocation(self, &u).await;
        if self.proto == Protocol::Gbs {
            gbs_aborts(self, &u).await;
        }
        if self.proto == Protocol::Foolscap {
            close_incomplete(self, &u).await;
        }
        cleanup(self, &u).await;
    }
}

/// Allocate shares 0, 1 and 2; whether that worked.
async fn allocate(s: &mut Suite, u: &Upload) -> bool {
    let r = s.api.allocate_buckets(u.allocate(&[0, 1, 2], &u.up)).await;
    s.check_outcome(
        G,
        "allocate",
        "allocating three new shares allocates all three",
        "allocated {0,1,2} already-have {}",
        &r,
        show_allocation,
    )
}

/// An upload in progress is neither allocated again, nor listed, nor readable.
async fn unfinished(s: &mut Suite, u: &Upload) {
    let r = s
        .api
        .allocate_buckets(u.allocate(&[0, 1, 2], &secret()))
        .await;
    s.check_outcome(
        G,
        "repeat-allocate",
        "allocating shares whose upload is in progress allocates nothing",
        "allocated {} already-have {}",
        &r,
        show_allocation,
    );
    let r = s.api.list_immutable_shares(u.si).await;
    s.check_outcome(
        G,
        "list-skips-unfinished",
        "listing shares omits unfinished uploads",
        "{}",
        &r,
        shares,
    );
    let r = s.api.read_immutable(u.si, 0, 0, 10).await;
    let d = err_detail(&r);
    s.check(
        G,
        "read-unfinished",
        "reading an unfinished share is refused as not found",
        "error not_found",
        err(&r),
        d,
    );
}

/// Partial writes of share 0 report what is still required; overlaps must agree;
/// share 1 cannot be written past its allocated size.
async fn writes(s: &mut Suite, u: &Upload) {
    let (si, up, body) = (u.si, &u.up, &u.body);
    let r = s.api.write_immutable(si, 0, up, 0, body.slice(0..50)).await;
    s.check_outcome(
        G,
        "write",
        "a first write leaves the rest required",
        "required [50..100]",
        &r,
        show_progress,
    );
    let r = s
        .api
        .write_immutable(si, 0, up, 25, body.slice(25..75))
        .await;
    s.check_outcome(
        G,
        "overlap-matching",
        "an overlapping write of the same bytes is accepted",
        "required [75..100]",
        &r,
        show_progress,
    );
    let mut conflicting = body.slice(60..80).to_vec();
    conflicting[0] ^= 0xff;
    let r = s
        .api
        .write_immutable(si, 0, up, 60, Bytes::from(conflicting))
        .await;
    s.check_outcome(
        G,
        "overlap-conflicting",
        "an overlapping write of different bytes is refused",
        "error conflicting_write",
        &r,
        show_progress,
    );
    let r = s.api.write_immutable(si, 1, up, 90, data(20)).await;
    s.check_proto(
        G,
        "write-past-end",
        "a write past the allocated size is refused (GBS: Tahoe's unhandled 500)",
        "error data_too_large",
        "error remote HTTP 500",
        outcome(&r, show_progress),
        err_detail(&r),
    );
}

/// GBS only: a write with another upload secret is refused.
async fn wrong_secret_writes(s: &mut Suite, u: &Upload) {
    if s.proto != Protocol::Gbs {
        return;
    }
    let r = s
        .api
        .write_immutable(u.si, 0, &secret(), 75, u.body.slice(75..100))
        .await;
    s.check_proto(
        G,
        "wrong-upload-secret",
        "a write with another upload secret is refused (GBS only)",
        "",
        "error wrong_upload_secret",
        outcome(&r, show_progress),
        err_detail(&r),
    );
}

/// The last bytes complete share 0: it is listed, and (GBS) no longer writable.
async fn complete(s: &mut Suite, u: &Upload) {
    let r = s
        .api
        .write_immutable(u.si, 0, &u.up, 75, u.body.slice(75..100))
        .await;
    s.check_outcome(
        G,
        "complete",
        "writing the last bytes completes the share",
        "required []",
        &r,
        show_progress,
    );
    if s.proto == Protocol::Gbs {
        let r = s
            .api
            .write_immutable(u.si, 0, &u.up, 0, u.body.slice(0..10))
            .await;
        s.check_proto(
            G,
            "write-after-complete",
            "a write to a completed share finds no upload in progress (GBS only: 404)",
            "",
            "error not_found",
            outcome(&r, show_progress),
            err_detail(&r),
        );
    }
    let r = s.api.list_immutable_shares(u.si).await;
    s.check_outcome(
        G,
        "list-complete",
        "listing shares shows the completed share only",
        "{0}",
        &r,
        shares,
    );
}

/// Reads of the completed share: inside, across and past its end; its length; and a
/// share that does not exist.
async fn reads(s: &mut Suite, u: &Upload) {
    let body = &u.body;
    for (name, desc, off, len, want) in [
        ("read-start", "reading the start", 0u64, 10u64, &body[0..10]),
        ("read-middle", "reading at an offset", 37, 20, &body[37..57]),
        (
            "read-overrun",
            "a read running past the end is truncated",
            90,
            20,
            &body[90..100],
        ),
        (
            "read-past-end",
            "a read starting at the end is empty",
            100,
            10,
            &[][..],
        ),
        (
            "read-far-past-end",
            "a read starting past the end is empty",
            1000,
            10,
            &[][..],
        ),
    ] {
        let r = s.api.read_immutable(u.si, 0, off, len).await;
        let expected = format!("{} bytes as written", want.len());
        s.check_outcome(G, name, desc, expected, &r, |b| show_read(b, want));
    }
    let r = s.api.immutable_share_length(u.si, 0).await;
    s.check_outcome(
        G,
        "length",
        "the share's length is its allocated size",
        "100",
        &r,
        |n| n.to_string(),
    );
    let r = s.api.read_immutable(u.si, 7, 0, 10).await;
    let d = err_detail(&r);
    s.check(
        G,
        "read-unknown-share",
        "reading a share that does not exist is refused as not found",
        "error not_found",
        err(&r),
        d,
    );
}

/// A completed share is already held; an aborted one can be allocated again.
async fn reallocation(s: &mut Suite, u: &Upload) {
    let r = s.api.allocate_buckets(u.allocate(&[0], &secret())).await;
    s.check_outcome(
        G,
        "allocate-existing",
        "allocating a completed share reports it as already held",
        "allocated {} already-have {0}",
        &r,
        show_allocation,
    );
    // Abort share 1 (partially refused above, still in progress).
    let r = s.api.abort_immutable(u.si, 1, &u.up).await;
    let d = err_detail(&r);
    s.check(
        G,
        "abort",
        "aborting an unfinished upload succeeds",
        "ok",
        err(&r),
        d,
    );
    let r = s.api.allocate_buckets(u.allocate(&[1], &u.up)).await;
    s.check_outcome(
        G,
        "allocate-after-abort",
        "an aborted share can be allocated again; already-have lists every complete share",
        "allocated {1} already-have {0}",
        &r,
        show_allocation,
    );
}

/// GBS only: a completed share cannot be aborted, nor an upload with another secret.
async fn gbs_aborts(s: &mut Suite, u: &Upload) {
    let r = s.api.abort_immutable(u.si, 0, &u.up).await;
    s.check_proto(
        G,
        "abort-completed",
        "aborting a completed share is not allowed (GBS only: 405)",
        "",
        "error not_allowed",
        err(&r),
        err_detail(&r),
    );
    let r = s.api.abort_immutable(u.si, 1, &secret()).await;
    s.check_proto(
        G,
        "abort-wrong-secret",
        "aborting with another upload secret is refused (GBS only: 401)",
        "",
        "error wrong_upload_secret",
        err(&r),
        err_detail(&r),
    );
}

/// Foolscap only: `close()` completes a share with holes, which read as zeros.
async fn close_incomplete(s: &mut Suite, u: &Upload) {
    let (si, up) = (u.si, &u.up);
    let r = s
        .api
        .write_immutable(si, 2, up, 0, u.body.slice(0..10))
        .await;
    let r2 = match r {
        Ok(_) => s.api.close_immutable(si, 2, up).await,
        Err(e) => Err(e),
    };
    let r3 = match r2 {
        Ok(()) => s.api.read_immutable(si, 2, 0, 100).await,
        Err(e) => Err(e),
    };
    let mut want = u.body[0..10].to_vec();
    want.resize(100, 0);
    s.check_proto(
        G,
        "close-incomplete",
        "close() completes an incomplete share; holes read as zeros (Foolscap only)",
        "100 bytes as written",
        "",
        outcome(&r3, |b| show_read(b, &want)),
        err_detail(&r3),
    );
}

/// Abort what is unfinished; note the completed shares no protocol can delete.
async fn cleanup(s: &mut Suite, u: &Upload) {
    s.abort_all(u.si, &[1, 2], &u.up).await;
    let left: BTreeSet<ShareNum> = s.api.list_immutable_shares(u.si).await.unwrap_or_default();
    if !left.is_empty() {
        s.left_behind.push(format!(
            "immutable shares {} of {} ({SIZE} bytes each; no protocol deletes them, they go when their lease expires)",
            shares(&left),
            u.si
        ));
    }
}
