//! `swampgate check`: a conformance suite for any Tahoe storage server.
//!
//! Every storage check runs through the [`StorageApi`] seam, so one suite serves a
//! Foolscap server (through [`FoolscapBackend`]) and a GBS server (through
//! [`GbsClient`]). What each check expects is what a Tahoe-LAFS 1.20 storage server
//! answers *over that protocol*: where the protocols differ (a lease on an unknown
//! storage index is silently ignored over Foolscap and a 404 over GBS), the check
//! says which protocol it expects what of, and is marked protocol-specific so that
//! `--compare` of two servers on different protocols does not count it.
//!
//! Protocol edges that the seam cannot express (a wrong swissnum, a malformed
//! request, a wrong `Accept`) use raw access to the server: see [`raw`].
//!
//! Every run uses fresh random storage indexes and secrets. What the suite can undo
//! it undoes (unfinished uploads are aborted, mutable shares deleted with a zero new
//! length); what it cannot (completed immutable shares, leases, corruption advisories)
//! is listed in the report's `left_behind`.

pub mod cli;
pub mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::foolscap::storage::backend::FoolscapBackend;
use crate::foolscap::{Furl, Tub, TubConfig};
use crate::gbs::client::{ClientConfig, GbsClient};
use crate::gbs::nurl::Nurl;
use crate::identity::Identity;
use crate::storage::*;

/// The groups of checks, in the order they run.
pub const GROUPS: [&str; 6] = [
    "version",
    "immutable",
    "mutable",
    "leases",
    "corruption",
    "edges",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Foolscap,
    Gbs,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Foolscap => "foolscap",
            Protocol::Gbs => "gbs",
        })
    }
}

/// A server to check: its URL parsed, and how to reach it.
#[derive(Clone)]
pub enum Target {
    Foolscap(Furl),
    Gbs(Nurl),
}

impl Target {
    /// A FURL (`pb://TUBID@HINTS/SWISSNUM`) or a NURL (`pb://HASH@HOST:PORT/SWISSNUM#v=1`).
    pub fn parse(url: &str) -> Result<Target, String> {
        let s = url.trim();
        if !s.starts_with("pb://") {
            return Err(
                "expected a FURL (pb://TUBID@HINTS/NAME) or a NURL (pb://HASH@HOST:PORT/NAME#v=1)"
                    .into(),
            );
        }
        if s.contains('#') {
            s.parse::<Nurl>()
                .map(Target::Gbs)
                .map_err(|e| format!("bad NURL: {e}"))
        } else {
            Furl::parse(s)
                .map(Target::Foolscap)
                .map_err(|e| format!("bad FURL: {e}"))
        }
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            Target::Foolscap(_) => Protocol::Foolscap,
            Target::Gbs(_) => Protocol::Gbs,
        }
    }

    /// The URL without its swissnum, for reports.
    pub fn redacted(&self) -> String {
        match self {
            Target::Foolscap(f) => format!("{f:?}"),
            Target::Gbs(n) => n.redacted(),
        }
    }
}

/// What a run includes.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only these groups (all when empty).
    pub only: Vec<String>,
    /// Also run checks that leave state the suite cannot remove beyond test shares
    /// (corruption advisories about existing shares, which the server keeps for its
    /// operator).
    pub destructive: bool,
}

impl Options {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// The property cannot be seen from outside the server; nothing was asserted.
    NotObservable,
    /// Not run (needs `--destructive`, or a prerequisite failed).
    Skipped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotObservable => "N/OBS",
            Status::Skipped => "SKIP",
        })
    }
}

/// The result of one check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// `group.name`, stable across runs and servers.
    pub id: String,
    pub group: String,
    pub description: String,
    pub status: Status,
    pub expected: String,
    /// What the server did, normalised (no storage indexes, no secrets): compared
    /// between servers by `--compare`.
    pub got: String,
    /// The expectation depends on the protocol (Tahoe answers differently over
    /// Foolscap and GBS).
    pub protocol_specific: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub not_observable: usize,
    pub skipped: usize,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub server: String,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_version: Option<String>,
    pub checks: Vec<CheckResult>,
    /// What the run created and could not remove.
    pub left_behind: Vec<String>,
    /// What the run created and removed again.
    pub cleaned_up: Vec<String>,
    pub summary: Summary,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.summary.fail > 0
    }

    /// One line per check, then what was left behind and the summary.
    pub fn to_text(&self) -> String {
        let mut out = format!("checking {} over {}\n", self.server, self.protocol);
        if let Some(v) = &self.application_version {
            out.push_str(&format!("server says it is {v}\n"));
        }
        for c in &self.checks {
            out.push_str(&format!("{:<5} {:<44} {}", c.status, c.id, c.description));
            match c.status {
                Status::Fail => {
                    out.push_str(&format!(
                        "\n      expected: {}\n      got:      {}",
                        c.expected, c.got
                    ));
                    if let Some(n) = &c.note {
                        out.push_str(&format!("\n      detail:   {n}"));
                    }
                }
                Status::NotObservable | Status::Skipped => {
                    if let Some(n) = &c.note {
                        out.push_str(&format!(" ({n})"));
                    }
                }
                Status::Pass => {}
            }
            out.push('\n');
        }
        for c in &self.cleaned_up {
            out.push_str(&format!("cleaned up: {c}\n"));
        }
        for l in &self.left_behind {
            out.push_str(&format!("left behind: {l}\n"));
        }
        let s = &self.summary;
        out.push_str(&format!(
            "{} passed, {} failed, {} not observable, {} skipped\n",
            s.pass, s.fail, s.not_observable, s.skipped
        ));
        out
    }
}

/// A backend for the target: the same clients swampgate bridges with.
pub fn backend(target: &Target, tub: &Tub) -> Result<Arc<dyn StorageApi>, String> {
    Ok(match target {
        Target::Foolscap(furl) => Arc::new(FoolscapBackend::new(tub.clone(), furl.clone())),
        Target::Gbs(nurl) => {
            Arc::new(GbsClient::new(nurl, ClientConfig::default()).map_err(|e| e.to_string())?)
        }
    })
}

/// A fresh client Tub (its own random identity).
pub fn client_tub() -> Result<Tub, String> {
    let id = Identity::generate().map_err(|e| e.to_string())?;
    Tub::new(id, TubConfig::default()).map_err(|e| e.to_string())
}

/// Run the suite against `url`.
pub async fn run_url(url: &str, opts: &Options) -> Result<Report, String> {
    let target = Target::parse(url)?;
    let tub = client_tub()?;
    let api = backend(&target, &tub)?;
    Ok(run(&target, api, &tub, opts).await)
}

/// Run the suite against `api`, which reaches `target`.
pub async fn run(target: &Target, api: Arc<dyn StorageApi>, tub: &Tub, opts: &Options) -> Report {
    let mut s = Suite {
        proto: target.protocol(),
        api,
        checks: Vec::new(),
        left_behind: Vec::new(),
        cleaned_up: Vec::new(),
        destructive: opts.destructive,
    };
    let application_version = match s.api.version().await {
        Ok(v) => Some(String::from_utf8_lossy(&v.application_version).into_owned()),
        Err(StorageError::Unavailable(why)) => {
            // Nothing else can be learnt; say so once rather than fail every check.
            s.record(
                "version",
                "reachable",
                "the server can be reached",
                "ok",
                "error unavailable",
                Some(why),
                false,
            );
            for g in GROUPS.iter().filter(|g| opts.wants(g)) {
                s.special(
                    g,
                    "all",
                    "every check of the group",
                    Status::Skipped,
                    "the server cannot be reached",
                );
            }
            None
        }
        Err(_) => None,
    };
    let reachable = s.checks.is_empty();
    if reachable && opts.wants("version") {
        s.version().await;
    }
    if reachable && opts.wants("immutable") {
        s.immutable().await;
    }
    if reachable && opts.wants("mutable") {
        s.mutable().await;
    }
    if reachable && opts.wants("leases") {
        s.leases(target, tub).await;
    }
    if reachable && opts.wants("corruption") {
        s.corruption().await;
    }
    if reachable && opts.wants("edges") {
        let edges = raw::edges(target, tub).await;
        s.checks.extend(edges);
    }
    let mut summary = Summary::default();
    for c in &s.checks {
        match c.status {
            Status::Pass => summary.pass += 1,
            Status::Fail => summary.fail += 1,
            Status::NotObservable => summary.not_observable += 1,
            Status::Skipped => summary.skipped += 1,
        }
    }
    Report {
        server: target.redacted(),
        protocol: target.protocol(),
        application_version,
        checks: s.checks,
        left_behind: s.left_behind,
        cleaned_up: s.cleaned_up,
        summary,
    }
}

/// A storage error's kind, as the report shows it.
pub fn error_kind(e: &StorageError) -> String {
    match e {
        // The upstream's own name for the failure says more than `remote`.
        StorageError::Remote { kind, .. } => format!("{} {kind}", e.kind()),
        e => e.kind().as_str().into(),
    }
}

fn err<T>(r: &StorageResult<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("error {}", error_kind(e)),
    }
}

/// The error with its message, for a failure's "got" (messages can name storage
/// indexes, never secrets).
fn err_detail<T>(r: &StorageResult<T>) -> Option<String> {
    r.as_ref().err().map(|e| e.to_string())
}

fn shares(s: &BTreeSet<ShareNum>) -> String {
    let v: Vec<String> = s.iter().map(|x| x.to_string()).collect();
    format!("{{{}}}", v.join(","))
}

fn ranges(r: &[ByteRange]) -> String {
    let v: Vec<String> = r
        .iter()
        .map(|x| format!("{}..{}", x.begin, x.end))
        .collect();
    format!("[{}]", v.join(","))
}

fn readv_result(d: &BTreeMap<ShareNum, Vec<Bytes>>, ours: &[(&[u8], &str)]) -> String {
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

fn random_si() -> StorageIndex {
    StorageIndex(rand::random())
}

fn secret() -> Secret {
    Secret(rand::random::<[u8; 32]>().to_vec())
}

fn lease() -> LeaseSecrets {
    LeaseSecrets {
        renew: secret(),
        cancel: secret(),
    }
}

fn data(n: usize) -> Bytes {
    Bytes::from((0..n).map(|_| rand::random::<u8>()).collect::<Vec<u8>>())
}

struct Suite {
    proto: Protocol,
    api: Arc<dyn StorageApi>,
    checks: Vec<CheckResult>,
    left_behind: Vec<String>,
    cleaned_up: Vec<String>,
    destructive: bool,
}

impl Suite {
    /// Record a check: it passes when `got == expected`.
    fn check(
        &mut self,
        group: &str,
        name: &str,
        description: &str,
        expected: impl Into<String>,
        got: impl Into<String>,
        detail: Option<String>,
    ) -> bool {
        self.record(group, name, description, expected, got, detail, false)
    }

    /// A check whose expectation differs between the protocols.
    #[allow(clippy::too_many_arguments)]
    fn check_proto(
        &mut self,
        group: &str,
        name: &str,
        description: &str,
        foolscap: &str,
        gbs: &str,
        got: impl Into<String>,
        detail: Option<String>,
    ) -> bool {
        let expected = match self.proto {
            Protocol::Foolscap => foolscap,
            Protocol::Gbs => gbs,
        };
        self.record(group, name, description, expected, got, detail, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        group: &str,
        name: &str,
        description: &str,
        expected: impl Into<String>,
        got: impl Into<String>,
        detail: Option<String>,
        protocol_specific: bool,
    ) -> bool {
        let expected = expected.into();
        let got = got.into();
        let pass = expected == got;
        self.checks.push(CheckResult {
            id: format!("{group}.{name}"),
            group: group.into(),
            description: description.into(),
            status: if pass { Status::Pass } else { Status::Fail },
            expected,
            got,
            protocol_specific,
            note: if pass { None } else { detail },
        });
        pass
    }

    fn special(&mut self, group: &str, name: &str, description: &str, status: Status, note: &str) {
        self.checks.push(CheckResult {
            id: format!("{group}.{name}"),
            group: group.into(),
            description: description.into(),
            status,
            expected: String::new(),
            got: match status {
                Status::NotObservable => "not observable".into(),
                _ => "skipped".into(),
            },
            protocol_specific: false,
            note: Some(note.into()),
        });
    }

    async fn version(&mut self) {
        let g = "version";
        let r = self.api.version().await;
        let d = err_detail(&r);
        self.check(
            g,
            "answers",
            "the server describes itself",
            "ok",
            err(&r),
            d,
        );
        if let Ok(v) = r {
            let got = if v.maximum_immutable_share_size > 0 && v.maximum_mutable_share_size > 0 {
                "positive"
            } else {
                "zero"
            };
            self.check(
                g,
                "share-sizes",
                "maximum immutable and mutable share sizes are positive",
                "positive",
                got,
                Some(format!(
                    "immutable {}, mutable {}",
                    v.maximum_immutable_share_size, v.maximum_mutable_share_size
                )),
            );
            let got = if v.application_version.is_empty() {
                "empty"
            } else {
                "present"
            };
            self.check(
                g,
                "application-version",
                "the server names its software",
                "present",
                got,
                None,
            );
        }
    }

    async fn immutable(&mut self) {
        let g = "immutable";
        let si = random_si();
        let up = secret();
        let size = 100u64;
        let body = data(size as usize);
        let alloc = |shares: &[ShareNum], up: &Secret| AllocateRequest {
            storage_index: si,
            lease: lease(),
            upload_secret: up.clone(),
            share_numbers: shares.iter().copied().collect(),
            allocated_size: size,
        };
        let show = |r: &StorageResult<AllocateResult>| match r {
            Ok(a) => format!(
                "allocated {} already-have {}",
                shares(&a.allocated),
                shares(&a.already_have)
            ),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let r = self.api.allocate_buckets(alloc(&[0, 1, 2], &up)).await;
        let d = err_detail(&r);
        if !self.check(
            g,
            "allocate",
            "allocating three new shares allocates all three",
            "allocated {0,1,2} already-have {}",
            show(&r),
            d,
        ) {
            self.special(
                g,
                "rest",
                "the rest of the immutable group",
                Status::Skipped,
                "allocation failed",
            );
            self.abort_all(si, &[0, 1, 2], &up).await;
            return;
        }
        let r = self
            .api
            .allocate_buckets(alloc(&[0, 1, 2], &secret()))
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "repeat-allocate",
            "allocating shares whose upload is in progress allocates nothing",
            "allocated {} already-have {}",
            show(&r),
            d,
        );
        let r = self.api.list_immutable_shares(si).await;
        let got = match &r {
            Ok(s) => shares(s),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "list-skips-unfinished",
            "listing shares omits unfinished uploads",
            "{}",
            got,
            d,
        );
        let r = self.api.read_immutable(si, 0, 0, 10).await;
        let d = err_detail(&r);
        self.check(
            g,
            "read-unfinished",
            "reading an unfinished share is refused as not found",
            "error not_found",
            err(&r),
            d,
        );
        let w = |r: &StorageResult<WriteProgress>| match r {
            Ok(p) => format!("required {}", ranges(&p.required)),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let r = self
            .api
            .write_immutable(si, 0, &up, 0, body.slice(0..50))
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "write",
            "a first write leaves the rest required",
            "required [50..100]",
            w(&r),
            d,
        );
        let r = self
            .api
            .write_immutable(si, 0, &up, 25, body.slice(25..75))
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "overlap-matching",
            "an overlapping write of the same bytes is accepted",
            "required [75..100]",
            w(&r),
            d,
        );
        let mut conflicting = body.slice(60..80).to_vec();
        conflicting[0] ^= 0xff;
        let r = self
            .api
            .write_immutable(si, 0, &up, 60, Bytes::from(conflicting))
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "overlap-conflicting",
            "an overlapping write of different bytes is refused",
            "error conflicting_write",
            w(&r),
            d,
        );
        let r = self.api.write_immutable(si, 1, &up, 90, data(20)).await;
        let d = err_detail(&r);
        self.check_proto(
            g,
            "write-past-end",
            "a write past the allocated size is refused (GBS: Tahoe's unhandled 500)",
            "error data_too_large",
            "error remote HTTP 500",
            w(&r),
            d,
        );
        if self.proto == Protocol::Gbs {
            let r = self
                .api
                .write_immutable(si, 0, &secret(), 75, body.slice(75..100))
                .await;
            let d = err_detail(&r);
            self.check_proto(
                g,
                "wrong-upload-secret",
                "a write with another upload secret is refused (GBS only)",
                "",
                "error wrong_upload_secret",
                w(&r),
                d,
            );
        }
        let r = self
            .api
            .write_immutable(si, 0, &up, 75, body.slice(75..100))
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "complete",
            "writing the last bytes completes the share",
            "required []",
            w(&r),
            d,
        );
        if self.proto == Protocol::Gbs {
            let r = self
                .api
                .write_immutable(si, 0, &up, 0, body.slice(0..10))
                .await;
            let d = err_detail(&r);
            self.check_proto(
                g,
                "write-after-complete",
                "a write to a completed share finds no upload in progress (GBS only: 404)",
                "",
                "error not_found",
                w(&r),
                d,
            );
        }
        let r = self.api.list_immutable_shares(si).await;
        let got = match &r {
            Ok(s) => shares(s),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "list-complete",
            "listing shares shows the completed share only",
            "{0}",
            got,
            d,
        );
        let rd = |r: &StorageResult<Bytes>, want: &[u8]| match r {
            Ok(b) if b.as_ref() == want => format!("{} bytes as written", b.len()),
            Ok(b) => format!("{} bytes, not as written", b.len()),
            Err(e) => format!("error {}", error_kind(e)),
        };
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
            let r = self.api.read_immutable(si, 0, off, len).await;
            let d = err_detail(&r);
            let expected = format!("{} bytes as written", want.len());
            self.check(g, name, desc, expected, rd(&r, want), d);
        }
        let r = self.api.immutable_share_length(si, 0).await;
        let got = match &r {
            Ok(n) => n.to_string(),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "length",
            "the share's length is its allocated size",
            "100",
            got,
            d,
        );
        let r = self.api.read_immutable(si, 7, 0, 10).await;
        let d = err_detail(&r);
        self.check(
            g,
            "read-unknown-share",
            "reading a share that does not exist is refused as not found",
            "error not_found",
            err(&r),
            d,
        );
        let r = self.api.allocate_buckets(alloc(&[0], &secret())).await;
        let d = err_detail(&r);
        self.check(
            g,
            "allocate-existing",
            "allocating a completed share reports it as already held",
            "allocated {} already-have {0}",
            show(&r),
            d,
        );
        // Abort share 1 (partially refused above, still in progress).
        let r = self.api.abort_immutable(si, 1, &up).await;
        let d = err_detail(&r);
        self.check(
            g,
            "abort",
            "aborting an unfinished upload succeeds",
            "ok",
            err(&r),
            d,
        );
        let r = self.api.allocate_buckets(alloc(&[1], &up)).await;
        let d = err_detail(&r);
        self.check(
            g,
            "allocate-after-abort",
            "an aborted share can be allocated again; already-have lists every complete share",
            "allocated {1} already-have {0}",
            show(&r),
            d,
        );
        if self.proto == Protocol::Gbs {
            let r = self.api.abort_immutable(si, 0, &up).await;
            let d = err_detail(&r);
            self.check_proto(
                g,
                "abort-completed",
                "aborting a completed share is not allowed (GBS only: 405)",
                "",
                "error not_allowed",
                err(&r),
                d,
            );
            let r = self.api.abort_immutable(si, 1, &secret()).await;
            let d = err_detail(&r);
            self.check_proto(
                g,
                "abort-wrong-secret",
                "aborting with another upload secret is refused (GBS only: 401)",
                "",
                "error wrong_upload_secret",
                err(&r),
                d,
            );
        }
        if self.proto == Protocol::Foolscap {
            // Foolscap's close() completes a share with holes, which read as zeros.
            let r = self
                .api
                .write_immutable(si, 2, &up, 0, body.slice(0..10))
                .await;
            let r2 = match r {
                Ok(_) => self.api.close_immutable(si, 2, &up).await,
                Err(e) => Err(e),
            };
            let r3 = match r2 {
                Ok(()) => self.api.read_immutable(si, 2, 0, 100).await,
                Err(e) => Err(e),
            };
            let mut want = body[0..10].to_vec();
            want.resize(100, 0);
            let d = err_detail(&r3);
            self.check_proto(
                g,
                "close-incomplete",
                "close() completes an incomplete share; holes read as zeros (Foolscap only)",
                "100 bytes as written",
                "",
                rd(&r3, &want),
                d,
            );
        }
        self.abort_all(si, &[1, 2], &up).await;
        let left: BTreeSet<ShareNum> = self.api.list_immutable_shares(si).await.unwrap_or_default();
        if !left.is_empty() {
            self.left_behind.push(format!(
                "immutable shares {} of {si} ({size} bytes each; no protocol deletes them, they go when their lease expires)",
                shares(&left)
            ));
        }
    }

    async fn abort_all(&mut self, si: StorageIndex, shs: &[ShareNum], up: &Secret) {
        let mut aborted = BTreeSet::new();
        for &sh in shs {
            if self.api.abort_immutable(si, sh, up).await.is_ok() {
                aborted.insert(sh);
            }
        }
        if !aborted.is_empty() {
            self.cleaned_up.push(format!(
                "unfinished uploads of shares {} of {si} aborted",
                shares(&aborted)
            ));
        }
    }

    async fn rtw(
        &self,
        si: StorageIndex,
        we: &Secret,
        tw: Vec<(ShareNum, TestWriteVectors)>,
        readv: Vec<ReadVector>,
    ) -> StorageResult<ReadTestWriteResult> {
        self.api
            .read_test_write(ReadTestWriteRequest {
                storage_index: si,
                secrets: MutableSecrets {
                    write_enabler: we.clone(),
                    lease: lease(),
                },
                test_write_vectors: tw.into_iter().collect(),
                read_vector: readv,
            })
            .await
    }

    /// Delete every mutable share of `si` (a zero new length).
    async fn delete_mutable(&mut self, si: StorageIndex, we: &Secret) {
        let existing = self.api.list_mutable_shares(si).await.unwrap_or_default();
        if existing.is_empty() {
            return;
        }
        let tw = existing
            .iter()
            .map(|&sh| {
                (
                    sh,
                    TestWriteVectors {
                        new_length: Some(0),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let r = self.rtw(si, we, tw, vec![]).await;
        let left = self.api.list_mutable_shares(si).await.unwrap_or_default();
        if r.is_ok() && left.is_empty() {
            self.cleaned_up.push(format!(
                "mutable shares {} of {si} deleted",
                shares(&existing)
            ));
        } else {
            self.left_behind.push(format!(
                "mutable shares {} of {si} (deleting them failed)",
                shares(&left)
            ));
        }
    }

    async fn mutable(&mut self) {
        let g = "mutable";
        let si = random_si();
        let we = secret();
        let d1 = data(50);
        let patch = Bytes::from_static(b"patched!");
        let show = |r: &StorageResult<ReadTestWriteResult>, ours: &[(&[u8], &str)]| match r {
            Ok(x) => format!("success {} data {}", x.success, readv_result(&x.data, ours)),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let labels: Vec<(&[u8], &str)> = vec![(&d1[0..10], "D[0..10]"), (&d1[45..50], "D[45..50]")];
        let r = self.api.list_mutable_shares(si).await;
        let got = match &r {
            Ok(s) => shares(s),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "list-before-write",
            "a fresh storage index has no mutable shares",
            "{}",
            got,
            d,
        );
        let r = self
            .api
            .slot_readv(
                si,
                vec![],
                vec![ReadVector {
                    offset: 0,
                    size: 10,
                }],
            )
            .await;
        let got = match &r {
            Ok(m) => readv_result(m, &labels),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "readv-before-write",
            "reading a fresh storage index returns no shares",
            "{}",
            got,
            d,
        );
        let r = self.api.read_mutable(si, 0, 0, 10).await;
        let d = err_detail(&r);
        self.check(
            g,
            "read-unknown-share",
            "reading a mutable share that does not exist is refused as not found",
            "error not_found",
            err(&r),
            d,
        );
        let create = |sh| {
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
                        data: d1.clone(),
                    }],
                    new_length: None,
                },
            )
        };
        let r = self
            .rtw(
                si,
                &we,
                vec![create(0), create(1)],
                vec![ReadVector {
                    offset: 0,
                    size: 10,
                }],
            )
            .await;
        let d = err_detail(&r);
        if !self.check(
            g,
            "create",
            "a test-and-write creating two shares succeeds; the read sees nothing before it",
            "success true data {}",
            show(&r, &labels),
            d,
        ) {
            self.special(
                g,
                "rest",
                "the rest of the mutable group",
                Status::Skipped,
                "creating the shares failed",
            );
            self.delete_mutable(si, &we).await;
            return;
        }
        let r = self
            .rtw(
                si,
                &we,
                vec![create(0)],
                vec![ReadVector {
                    offset: 0,
                    size: 10,
                }],
            )
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "test-fails",
            "a failed test writes nothing and returns the read vector of every share",
            "success false data {0:[D[0..10]] 1:[D[0..10]]}",
            show(&r, &labels),
            d,
        );
        let tw = (
            0,
            TestWriteVectors {
                test: vec![TestVector {
                    offset: 0,
                    size: 10,
                    specimen: d1.slice(0..10),
                }],
                write: vec![WriteVector {
                    offset: 50,
                    data: patch.clone(),
                }],
                new_length: None,
            },
        );
        let r = self
            .rtw(
                si,
                &we,
                vec![tw],
                vec![ReadVector {
                    offset: 45,
                    size: 10,
                }],
            )
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "test-passes",
            "a passing test writes, and the read returns what was there before (truncated at the end)",
            "success true data {0:[D[45..50]] 1:[D[45..50]]}",
            show(&r, &labels),
            d,
        );
        let r = self.api.read_mutable(si, 0, 48, 100).await;
        let mut want = d1[48..50].to_vec();
        want.extend_from_slice(&patch);
        let got = match &r {
            Ok(b) if b.as_ref() == want.as_slice() => "written bytes".to_string(),
            Ok(b) => format!("{} other bytes", b.len()),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "read-after-write",
            "a read past the end of a written share is truncated and shows the write",
            "written bytes",
            got,
            d,
        );
        let r = self.api.mutable_share_length(si, 0).await;
        let got = match &r {
            Ok(n) => n.to_string(),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(g, "length", "the share grew with the write", "58", got, d);
        let test_past_end = |specimen: &'static [u8]| {
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
        };
        let r = self.rtw(si, &we, vec![test_past_end(b"")], vec![]).await;
        let d = err_detail(&r);
        self.check(
            g,
            "test-past-end-empty",
            "a test past the end reads nothing, so it passes against an empty specimen",
            "success true data {0:[] 1:[]}",
            show(&r, &labels),
            d,
        );
        let r = self
            .rtw(si, &we, vec![test_past_end(b"abcde")], vec![])
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "test-past-end-data",
            "a test past the end fails against a non-empty specimen",
            "success false data {0:[] 1:[]}",
            show(&r, &labels),
            d,
        );
        let r = self
            .rtw(
                si,
                &secret(),
                vec![(
                    0,
                    TestWriteVectors {
                        write: vec![WriteVector {
                            offset: 0,
                            data: Bytes::from_static(b"x"),
                        }],
                        ..Default::default()
                    },
                )],
                vec![],
            )
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "write-enabler",
            "a write with another write enabler is refused",
            "error bad_write_enabler",
            show(&r, &labels),
            d,
        );
        let r = self
            .rtw(
                si,
                &secret(),
                vec![],
                vec![ReadVector {
                    offset: 0,
                    size: 10,
                }],
            )
            .await;
        let d = err_detail(&r);
        self.check(
            g,
            "write-enabler-read-only",
            "a read-only test-and-write with another write enabler is refused too",
            "error bad_write_enabler",
            show(&r, &labels),
            d,
        );
        let rv = vec![ReadVector {
            offset: 0,
            size: 10,
        }];
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
            let r = self.api.slot_readv(si, which, rv.clone()).await;
            let got = match &r {
                Ok(m) => readv_result(m, &labels),
                Err(e) => format!("error {}", error_kind(e)),
            };
            let d = err_detail(&r);
            self.check(g, name, desc, expected, got, d);
        }
        let r = self
            .rtw(
                si,
                &we,
                vec![(
                    1,
                    TestWriteVectors {
                        new_length: Some(0),
                        ..Default::default()
                    },
                )],
                vec![],
            )
            .await;
        let r = match r {
            Ok(x) if x.success => self.api.list_mutable_shares(si).await,
            Ok(_) => Err(StorageError::Internal("the write did not succeed".into())),
            Err(e) => Err(e),
        };
        let got = match &r {
            Ok(s) => shares(s),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "zero-length-deletes",
            "a zero new length deletes the share",
            "{0}",
            got,
            d,
        );
        self.delete_mutable(si, &we).await;
        let r = self.api.list_mutable_shares(si).await;
        let got = match &r {
            Ok(s) => shares(s),
            Err(e) => format!("error {}", error_kind(e)),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "delete-last",
            "deleting the last share leaves no shares",
            "{}",
            got,
            d,
        );
    }

    async fn leases(&mut self, target: &Target, tub: &Tub) {
        let g = "leases";
        // An immutable share to lease.
        let si = random_si();
        let up = secret();
        let l = lease();
        let made = async {
            self.api
                .allocate_buckets(AllocateRequest {
                    storage_index: si,
                    lease: lease(),
                    upload_secret: up.clone(),
                    share_numbers: [0].into_iter().collect(),
                    allocated_size: 10,
                })
                .await?;
            self.api.write_immutable(si, 0, &up, 0, data(10)).await
        }
        .await;
        let d = err_detail(&made);
        if self.check(
            g,
            "setup",
            "an immutable share to lease is uploaded",
            "ok",
            err(&made),
            d,
        ) {
            let r = self.api.add_lease(si, l.clone()).await;
            let d = err_detail(&r);
            self.check(
                g,
                "add",
                "adding a lease to a share succeeds",
                "ok",
                err(&r),
                d,
            );
            let r = self.api.add_lease(si, l.clone()).await;
            let d = err_detail(&r);
            self.check(
                g,
                "renew",
                "adding it again with the same secrets renews it",
                "ok",
                err(&r),
                d,
            );
            self.left_behind.push(format!(
                "immutable share 0 of {si} (10 bytes) with its leases"
            ));
        }
        // A mutable slot to lease, deleted afterwards.
        let msi = random_si();
        let we = secret();
        let r = self
            .rtw(
                msi,
                &we,
                vec![(
                    0,
                    TestWriteVectors {
                        write: vec![WriteVector {
                            offset: 0,
                            data: data(10),
                        }],
                        ..Default::default()
                    },
                )],
                vec![],
            )
            .await;
        let r = match r {
            Ok(_) => self.api.add_lease(msi, lease()).await,
            Err(e) => Err(e),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "add-mutable",
            "adding a lease to a mutable share succeeds",
            "ok",
            err(&r),
            d,
        );
        self.delete_mutable(msi, &we).await;
        let unknown = random_si();
        match target {
            Target::Gbs(_) => {
                let r = self.api.add_lease(unknown, lease()).await;
                let d = err_detail(&r);
                self.check_proto(
                    g,
                    "unknown",
                    "a lease on a storage index without shares: ignored over Foolscap, 404 over GBS",
                    "ok",
                    "error not_found",
                    err(&r),
                    d,
                );
            }
            Target::Foolscap(furl) => {
                // The Foolscap backend refuses unknown storage indexes itself (as GBS
                // does); ask the server directly.
                let r = raw::foolscap_add_lease(tub, furl, unknown).await;
                let d = err_detail(&r);
                self.check_proto(
                    g,
                    "unknown",
                    "a lease on a storage index without shares: ignored over Foolscap, 404 over GBS",
                    "ok",
                    "error not_found",
                    err(&r),
                    d,
                );
            }
        }
        self.special(
            g,
            "expiry",
            "leases expire 31 days after they were added or renewed",
            Status::NotObservable,
            "lease expiry times are internal to the server; no protocol call shows them",
        );
    }

    async fn corruption(&mut self) {
        let g = "corruption";
        let unknown = random_si();
        for (name, st) in [
            ("unknown-immutable", ShareType::Immutable),
            ("unknown-mutable", ShareType::Mutable),
        ] {
            let r = self
                .api
                .advise_corrupt_share(st, unknown, 0, "swampgate check: no such share".into())
                .await;
            let d = err_detail(&r);
            self.check_proto(
                g,
                name,
                &format!(
                    "an advisory about an unknown {} share: ignored over Foolscap, 404 over GBS",
                    st.as_str()
                ),
                "ok",
                "error not_found",
                err(&r),
                d,
            );
        }
        if !self.destructive {
            self.special(
                g,
                "existing",
                "advisories about existing shares are accepted",
                Status::Skipped,
                "needs --destructive: the server keeps every advisory for its operator",
            );
            return;
        }
        let si = random_si();
        let up = secret();
        let r = async {
            self.api
                .allocate_buckets(AllocateRequest {
                    storage_index: si,
                    lease: lease(),
                    upload_secret: up.clone(),
                    share_numbers: [0].into_iter().collect(),
                    allocated_size: 10,
                })
                .await?;
            self.api.write_immutable(si, 0, &up, 0, data(10)).await?;
            self.api
                .advise_corrupt_share(
                    ShareType::Immutable,
                    si,
                    0,
                    "swampgate check: a test advisory".into(),
                )
                .await
        }
        .await;
        let d = err_detail(&r);
        self.check(
            g,
            "existing-immutable",
            "an advisory about an existing immutable share is accepted",
            "ok",
            err(&r),
            d,
        );
        self.left_behind.push(format!(
            "immutable share 0 of {si} (10 bytes) and a corruption advisory about it"
        ));
        let msi = random_si();
        let we = secret();
        let r = self
            .rtw(
                msi,
                &we,
                vec![(
                    0,
                    TestWriteVectors {
                        write: vec![WriteVector {
                            offset: 0,
                            data: data(10),
                        }],
                        ..Default::default()
                    },
                )],
                vec![],
            )
            .await;
        let r = match r {
            Ok(_) => {
                self.api
                    .advise_corrupt_share(
                        ShareType::Mutable,
                        msi,
                        0,
                        "swampgate check: a test advisory".into(),
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        let d = err_detail(&r);
        self.check(
            g,
            "existing-mutable",
            "an advisory about an existing mutable share is accepted",
            "ok",
            err(&r),
            d,
        );
        self.left_behind.push(format!(
            "a corruption advisory about mutable share 0 of {msi}"
        ));
        self.delete_mutable(msi, &we).await;
    }
}

/// One difference between two servers.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    pub id: String,
    pub description: String,
    pub a: String,
    pub b: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub a: Report,
    pub b: Report,
    /// Checks whose results differ.
    pub differences: Vec<Difference>,
    /// Checks that differ only as Tahoe itself differs between the two protocols.
    pub protocol_differences: Vec<Difference>,
    /// Checks run against only one of the two (protocol edges of different protocols).
    pub only_one: Vec<String>,
}

impl Comparison {
    pub fn new(a: Report, b: Report) -> Comparison {
        let mut differences = Vec::new();
        let mut protocol_differences = Vec::new();
        let mut only_one = Vec::new();
        let bmap: BTreeMap<&str, &CheckResult> =
            b.checks.iter().map(|c| (c.id.as_str(), c)).collect();
        let amap: BTreeMap<&str, &CheckResult> =
            a.checks.iter().map(|c| (c.id.as_str(), c)).collect();
        for ca in &a.checks {
            let Some(cb) = bmap.get(ca.id.as_str()) else {
                only_one.push(format!("{} (only {})", ca.id, a.server));
                continue;
            };
            if ca.got != cb.got {
                let d = Difference {
                    id: ca.id.clone(),
                    description: ca.description.clone(),
                    a: ca.got.clone(),
                    b: cb.got.clone(),
                };
                if a.protocol != b.protocol
                    && ca.protocol_specific
                    && ca.status == Status::Pass
                    && cb.status == Status::Pass
                {
                    protocol_differences.push(d);
                } else {
                    differences.push(d);
                }
            }
        }
        for cb in &b.checks {
            if !amap.contains_key(cb.id.as_str()) {
                only_one.push(format!("{} (only {})", cb.id, b.server));
            }
        }
        Comparison {
            a,
            b,
            differences,
            protocol_differences,
            only_one,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "A: {} over {}\nB: {} over {}\n",
            self.a.server, self.a.protocol, self.b.server, self.b.protocol
        );
        for d in &self.differences {
            out.push_str(&format!(
                "DIFF  {:<44} {}\n      A: {}\n      B: {}\n",
                d.id, d.description, d.a, d.b
            ));
        }
        for d in &self.protocol_differences {
            out.push_str(&format!(
                "PROTO {:<44} differs as Tahoe's protocols do (A: {}; B: {})\n",
                d.id, d.a, d.b
            ));
        }
        for o in &self.only_one {
            out.push_str(&format!("ONLY  {o}\n"));
        }
        out.push_str(&format!(
            "{} differences, {} protocol differences, {} checks run against one server only\n",
            self.differences.len(),
            self.protocol_differences.len(),
            self.only_one.len()
        ));
        out
    }
}

/// Run the suite against both servers and compare.
pub async fn compare_urls(a: &str, b: &str, opts: &Options) -> Result<Comparison, String> {
    let ta = Target::parse(a).map_err(|e| format!("URL_A: {e}"))?;
    let tb = Target::parse(b).map_err(|e| format!("URL_B: {e}"))?;
    let tub = client_tub()?;
    let ra = run(&ta, backend(&ta, &tub)?, &tub, opts).await;
    let rb = run(&tb, backend(&tb, &tub)?, &tub, opts).await;
    Ok(Comparison::new(ra, rb))
}
