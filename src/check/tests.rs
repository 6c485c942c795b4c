//! The suite run in-process against swampgate's embedded store, through the storage
//! seam and no sockets: healthy, every check passes; with a fault injected by a
//! storage layer, exactly the checks that see the fault fail. The groups that need
//! raw access to a server (`edges`) are left to the integration tests
//! (`tests/check.rs`, `tests/check_faults.rs`), which serve the store over both fronts.
//!
//! The suite runs as against a GBS server: [`OverHttp`] gives each failure the meaning
//! it has after crossing GBS (the status swampgate's GBS front answers, as swampgate's
//! GBS client reads it), using the same two mappings as the front and the client.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::*;
use crate::base32::base32_lower;
use crate::gbs::errors::{error_for, status_for, Operation};
use crate::storage::layer::{wrap, Layer};
use crate::storage::store::{Store, StoreConfig};

/// Every check the suite runs against a healthy GBS server, in order, but the edges.
const CHECKS: [&str; 54] = [
    "version.answers",
    "version.share-sizes",
    "version.application-version",
    "immutable.allocate",
    "immutable.repeat-allocate",
    "immutable.list-skips-unfinished",
    "immutable.read-unfinished",
    "immutable.write",
    "immutable.overlap-matching",
    "immutable.overlap-conflicting",
    "immutable.write-past-end",
    "immutable.wrong-upload-secret",
    "immutable.complete",
    "immutable.write-after-complete",
    "immutable.list-complete",
    "immutable.read-start",
    "immutable.read-middle",
    "immutable.read-overrun",
    "immutable.read-past-end",
    "immutable.read-far-past-end",
    "immutable.length",
    "immutable.read-unknown-share",
    "immutable.allocate-existing",
    "immutable.abort",
    "immutable.allocate-after-abort",
    "immutable.abort-completed",
    "immutable.abort-wrong-secret",
    "mutable.list-before-write",
    "mutable.readv-before-write",
    "mutable.read-unknown-share",
    "mutable.create",
    "mutable.test-fails",
    "mutable.test-passes",
    "mutable.read-after-write",
    "mutable.length",
    "mutable.test-past-end-empty",
    "mutable.test-past-end-data",
    "mutable.write-enabler",
    "mutable.write-enabler-read-only",
    "mutable.readv-all",
    "mutable.readv-some",
    "mutable.readv-none",
    "mutable.zero-length-deletes",
    "mutable.delete-last",
    "leases.setup",
    "leases.add",
    "leases.renew",
    "leases.add-mutable",
    "leases.unknown",
    "leases.expiry",
    "corruption.unknown-immutable",
    "corruption.unknown-mutable",
    "corruption.existing-immutable",
    "corruption.existing-mutable",
];

/// The GBS operation a call is made with.
fn operation(call: &Call<'_>) -> Operation {
    match call {
        Call::Version => Operation::Version,
        Call::AllocateBuckets(_) => Operation::Allocate,
        Call::WriteImmutable { .. } | Call::CloseImmutable { .. } => Operation::Write,
        Call::AbortImmutable { .. } => Operation::Abort,
        Call::ListImmutableShares { .. } => Operation::ListImmutable,
        Call::ReadImmutable { .. } | Call::ImmutableShareLength { .. } => Operation::ReadImmutable,
        Call::AddLease { .. } => Operation::AddLease,
        Call::AdviseCorruptShare {
            share_type: ShareType::Immutable,
            ..
        } => Operation::CorruptImmutable,
        Call::AdviseCorruptShare { .. } => Operation::CorruptMutable,
        Call::ReadTestWrite(_) => Operation::ReadTestWrite,
        Call::ListMutableShares { .. } => Operation::ListMutable,
        Call::ReadMutable { .. } | Call::MutableShareLength { .. } | Call::SlotReadv { .. } => {
            Operation::ReadMutable
        }
    }
}

/// A failure as it reads after crossing GBS.
struct OverHttp;

impl Layer for OverHttp {
    async fn call<'a>(&'a self, call: Call<'a>, next: &'a dyn StorageApi) -> StorageResult<Reply> {
        let op = operation(&call);
        call.send(next).await.map_err(|e| {
            let status = status_for(op, &e);
            error_for(op, status, e.to_string().as_bytes())
        })
    }
}

#[derive(Clone, Copy)]
enum Fault {
    /// None: the embedded store as it is.
    Healthy,
    /// Reads starting at or past the end of an immutable share are refused instead of
    /// returning nothing.
    RefuseReadPastEnd,
    /// Mutable writes are made without evaluating their test vectors.
    IgnoreTestVectors,
    /// Mutable writes are made whatever the write enabler.
    IgnoreWriteEnabler,
    /// Leases are refused.
    RefuseLeases,
    /// The server cannot be reached at all.
    Unreachable,
}

struct Faulty {
    fault: Fault,
    /// Each slot's first write enabler (for `IgnoreWriteEnabler`).
    enablers: Mutex<BTreeMap<StorageIndex, Secret>>,
}

impl Layer for Faulty {
    async fn call<'a>(&'a self, call: Call<'a>, next: &'a dyn StorageApi) -> StorageResult<Reply> {
        match (self.fault, call) {
            (
                Fault::RefuseReadPastEnd,
                Call::ReadImmutable {
                    si, shnum, offset, ..
                },
            ) if offset >= next.immutable_share_length(si, shnum).await? => {
                Err(StorageError::InvalidRequest("offset past the end".into()))
            }
            (Fault::IgnoreTestVectors, Call::ReadTestWrite(mut req)) => {
                for tw in req.test_write_vectors.values_mut() {
                    tw.test.clear();
                }
                Call::ReadTestWrite(req).send(next).await
            }
            (Fault::IgnoreWriteEnabler, Call::ReadTestWrite(mut req)) => {
                // Whatever the request's write enabler, the slot's own.
                req.secrets.write_enabler = (self.enablers.lock().unwrap())
                    .entry(req.storage_index)
                    .or_insert(req.secrets.write_enabler.clone())
                    .clone();
                Call::ReadTestWrite(req).send(next).await
            }
            (Fault::RefuseLeases, Call::AddLease { .. }) => {
                Err(StorageError::NotAllowed("no leases here".into()))
            }
            (Fault::Unreachable, _) => Err(StorageError::Unavailable("no route".into())),
            (_, call) => call.send(next).await,
        }
    }
}

/// A GBS target the suite never dials (only `edges` would).
fn target() -> Target {
    let hash = crate::identity::spki_hash_of_spki(b"swampgate check unit tests");
    Target::parse(&format!("pb://{hash}@127.0.0.1:9/swissnum#v=1")).unwrap()
}

/// Every group but `edges`, against the store with `fault`, as over GBS.
async fn report(fault: Fault, destructive: bool) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::open(StoreConfig::new(dir.path(), base32_lower(&[7; 20]))).unwrap());
    let faulty = Faulty {
        fault,
        enablers: Mutex::default(),
    };
    let api = wrap(Arc::new(OverHttp), wrap(Arc::new(faulty), store));
    let opts = Options {
        only: Group::ALL
            .into_iter()
            .filter(|g| *g != Group::Edges)
            .map(|g| g.as_str().to_string())
            .collect(),
        destructive,
    };
    let tub = client_tub().unwrap();
    run(&target(), api, &tub, &opts).await
}

fn failed(r: &Report) -> BTreeSet<&str> {
    r.checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.id.as_str())
        .collect()
}

fn set<'a>(ids: &[&'a str]) -> BTreeSet<&'a str> {
    ids.iter().copied().collect()
}

#[tokio::test]
async fn every_check_passes_against_the_embedded_store() {
    let r = report(Fault::Healthy, true).await;
    let ids: Vec<&str> = r.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, CHECKS, "{}", r.to_text());
    assert!(!r.failed(), "{}", r.to_text());
    assert_eq!(failed(&r), set(&[]));
    for c in &r.checks {
        let want = match c.id.as_str() {
            "leases.expiry" => Status::NotObservable,
            _ => Status::Pass,
        };
        assert_eq!(c.status, want, "{}", c.id);
        assert!(c.id.starts_with(&format!("{}.", c.group)), "{}", c.id);
    }
    let s = &r.summary;
    assert_eq!((s.pass, s.fail, s.not_observable, s.skipped), (53, 0, 1, 0));
    let version = r.application_version.as_deref().unwrap_or_default();
    assert!(version.starts_with("swampgate/"), "{version}");
    // Mutable slots are deleted; immutable shares and advisories stay.
    assert_eq!(r.cleaned_up.len(), 4, "{:?}", r.cleaned_up);
    assert_eq!(r.left_behind.len(), 4, "{:?}", r.left_behind);
    assert!(r
        .to_text()
        .ends_with("53 passed, 0 failed, 1 not observable, 0 skipped\n"));
}

#[tokio::test]
async fn without_destructive_advisories_about_existing_shares_are_skipped() {
    let r = report(Fault::Healthy, false).await;
    assert_eq!(failed(&r), set(&[]));
    let skipped: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| c.status == Status::Skipped)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(skipped, ["corruption.existing"]);
    assert!(!r
        .checks
        .iter()
        .any(|c| c.id.starts_with("corruption.existing-")));
}

#[tokio::test]
async fn a_read_past_the_end_refused_fails_the_reads_past_the_end() {
    let r = report(Fault::RefuseReadPastEnd, true).await;
    assert_eq!(
        failed(&r),
        set(&["immutable.read-past-end", "immutable.read-far-past-end"])
    );
    let c = r.checks.iter().find(|c| c.id == "immutable.read-past-end");
    let c = c.unwrap();
    assert_eq!(c.expected, "0 bytes as written");
    assert_eq!(c.got, "error invalid_request");
    assert!(r.to_text().contains("FAIL  immutable.read-past-end"));
}

#[tokio::test]
async fn test_vectors_ignored_fail_the_failing_tests() {
    let r = report(Fault::IgnoreTestVectors, true).await;
    assert_eq!(
        failed(&r),
        set(&["mutable.test-fails", "mutable.test-past-end-data"])
    );
}

#[tokio::test]
async fn a_write_enabler_ignored_fails_the_write_enabler_checks() {
    let r = report(Fault::IgnoreWriteEnabler, true).await;
    // The write that should have been refused overwrote share 0's first byte, which
    // the next read sees.
    assert_eq!(
        failed(&r),
        set(&[
            "mutable.write-enabler",
            "mutable.write-enabler-read-only",
            "mutable.readv-all"
        ])
    );
    let got = |id: &str| &r.checks.iter().find(|c| c.id == id).unwrap().got;
    assert_eq!(
        got("mutable.write-enabler"),
        "success true data {0:[] 1:[]}"
    );
    assert_eq!(
        got("mutable.readv-all"),
        "{0:[<10 other bytes>] 1:[D[0..10]]}"
    );
}

#[tokio::test]
async fn leases_refused_fail_the_lease_checks() {
    let r = report(Fault::RefuseLeases, true).await;
    assert_eq!(
        failed(&r),
        set(&[
            "leases.add",
            "leases.renew",
            "leases.add-mutable",
            "leases.unknown"
        ])
    );
}

#[tokio::test]
async fn an_unreachable_server_fails_once_and_skips_every_group() {
    let r = report(Fault::Unreachable, true).await;
    let ids: Vec<(&str, Status)> = r.checks.iter().map(|c| (c.id.as_str(), c.status)).collect();
    assert_eq!(
        ids,
        [
            ("version.reachable", Status::Fail),
            ("version.all", Status::Skipped),
            ("immutable.all", Status::Skipped),
            ("mutable.all", Status::Skipped),
            ("leases.all", Status::Skipped),
            ("corruption.all", Status::Skipped),
        ]
    );
    assert_eq!(r.checks[0].got, "error unavailable");
    assert_eq!(r.application_version, None);
}

#[test]
fn groups_are_named_as_the_report_and_only_name_them() {
    let names: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
    assert_eq!(
        names,
        [
            "version",
            "immutable",
            "mutable",
            "leases",
            "corruption",
            "edges"
        ]
    );
    for g in Group::ALL {
        assert_eq!(Group::parse(g.as_str()), Some(g));
        assert_eq!(g.to_string(), g.as_str());
        assert_eq!(serde_json::to_value(g).unwrap(), g.as_str());
    }
    assert_eq!(Group::parse("Version"), None);
    assert_eq!(Group::parse("all"), None);
    assert!(Options::default().wants(Group::Edges));
    let only = Options {
        only: vec!["leases".into()],
        destructive: false,
    };
    assert!(only.wants(Group::Leases));
    assert!(!only.wants(Group::Version));
}

#[test]
fn a_check_line_says_what_failed_or_why_nothing_was_asserted() {
    let c = |status, note: Option<&str>| CheckResult {
        id: "mutable.length".into(),
        group: Group::Mutable,
        description: "the share grew with the write".into(),
        status,
        expected: "58".into(),
        got: "50".into(),
        protocol_specific: false,
        note: note.map(Into::into),
    };
    assert_eq!(
        c(Status::Pass, None).to_text(),
        "PASS  mutable.length                               the share grew with the write\n"
    );
    assert_eq!(
        c(Status::Fail, Some("why")).to_text(),
        "FAIL  mutable.length                               the share grew with the write\n      \
         expected: 58\n      got:      50\n      detail:   why\n"
    );
    assert_eq!(
        c(Status::Skipped, Some("needs more")).to_text(),
        "SKIP  mutable.length                               the share grew with the write (needs more)\n"
    );
    let json = serde_json::to_value(c(Status::NotObservable, None)).unwrap();
    assert_eq!(json["group"], "mutable");
    assert_eq!(json["status"], "not-observable");
    assert!(json.get("note").is_none());
}
