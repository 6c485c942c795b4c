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
//! request, a wrong `Accept`) use raw access to the server: see [`edges`].
//!
//! Every run uses fresh random storage indexes and secrets. What the suite can undo
//! it undoes (unfinished uploads are aborted, mutable shares deleted with a zero new
//! length); what it cannot (completed immutable shares, leases, corruption advisories)
//! is listed in the report's `left_behind`.
//!
//! One file per [`Group`] of checks (`version`, `immutable`, `mutable`, `leases`,
//! `corruption`, `edges`); `suite` records results and holds the clean-up the groups
//! share, `format` writes what a server did into the report, [`compare`] runs the
//! suite against two servers and `cli` is the command line. Here: what a run is given
//! and what it reports.

pub mod cli;
pub mod compare;
mod corruption;
pub mod edges;
mod format;
mod immutable;
mod leases;
mod mutable;
mod suite;
#[cfg(test)]
mod tests;
mod version;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::foolscap::storage::backend::FoolscapBackend;
use crate::foolscap::{Furl, Tub, TubConfig};
use crate::gbs::client::{ClientConfig, GbsClient};
use crate::gbs::nurl::Nurl;
use crate::identity::Identity;
use crate::storage::*;
pub use compare::{compare_urls, Comparison, Difference};
pub use format::error_kind;
use suite::Suite;

/// A group of checks. Its name (`as_str`) is the prefix of its checks' ids, the
/// `group` of the JSON report and the argument of `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Version,
    Immutable,
    Mutable,
    Leases,
    Corruption,
    Edges,
}

impl Group {
    /// Every group, in the order they run.
    pub const ALL: [Group; 6] = [
        Group::Version,
        Group::Immutable,
        Group::Mutable,
        Group::Leases,
        Group::Corruption,
        Group::Edges,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Version => "version",
            Group::Immutable => "immutable",
            Group::Mutable => "mutable",
            Group::Leases => "leases",
            Group::Corruption => "corruption",
            Group::Edges => "edges",
        }
    }

    /// The group named `name`, exactly as [`Group::as_str`] writes it.
    pub fn parse(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.as_str() == name)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Group {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

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
            Target::Foolscap(f) => f.redacted(),
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
    fn wants(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group.as_str())
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
    pub group: Group,
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

impl CheckResult {
    /// The check's line of the report: what failed says what was expected and what
    /// came; what asserted nothing says why.
    pub fn to_text(&self) -> String {
        let mut out = format!("{:<5} {:<44} {}", self.status, self.id, self.description);
        match self.status {
            Status::Fail => {
                out.push_str(&format!(
                    "\n      expected: {}\n      got:      {}",
                    self.expected, self.got
                ));
                if let Some(n) = &self.note {
                    out.push_str(&format!("\n      detail:   {n}"));
                }
            }
            Status::NotObservable | Status::Skipped => {
                if let Some(n) = &self.note {
                    out.push_str(&format!(" ({n})"));
                }
            }
            Status::Pass => {}
        }
        out.push('\n');
        out
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub not_observable: usize,
    pub skipped: usize,
}

impl Summary {
    /// How many checks ended in each status.
    pub fn of(checks: &[CheckResult]) -> Summary {
        let mut summary = Summary::default();
        for c in checks {
            match c.status {
                Status::Pass => summary.pass += 1,
                Status::Fail => summary.fail += 1,
                Status::NotObservable => summary.not_observable += 1,
                Status::Skipped => summary.skipped += 1,
            }
        }
        summary
    }
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
            out.push_str(&c.to_text());
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
    if let Target::Foolscap(furl) = &target {
        refuse_other_services(&tub, furl).await?;
    }
    let api = backend(&target, &tub)?;
    Ok(run(&target, api, &tub, opts).await)
}

/// Refuse a FURL that names something other than a storage server (an
/// introducer's FURL is the usual mistake) before running storage checks on it:
/// Foolscap tells the remote interface with the reference. A FURL that cannot be
/// reached is left to the suite, which reports it.
async fn refuse_other_services(tub: &Tub, furl: &crate::foolscap::Furl) -> Result<(), String> {
    let Ok(rref) = tub.get_reference(furl).await else {
        return Ok(());
    };
    match rref.interface() {
        Some(iface) if iface != crate::foolscap::schema::RI_STORAGE_SERVER.name => Err(format!(
            "{} is not a storage server but a {iface}: check takes a storage server's \
             FURL (NODEDIR/private/storage.furl, or swampgate's STATE/links/NAME.furl) or NURL",
            furl.redacted()
        )),
        _ => Ok(()),
    }
}

/// Run the suite against `api`, which reaches `target`.
pub async fn run(target: &Target, api: Arc<dyn StorageApi>, tub: &Tub, opts: &Options) -> Report {
    let mut s = Suite::new(target.protocol(), api, opts.destructive);
    let application_version = match s.api.version().await {
        Ok(v) => Some(String::from_utf8_lossy(&v.application_version).into_owned()),
        Err(StorageError::Unavailable(why)) => {
            unreachable(&mut s, why, opts);
            None
        }
        Err(_) => None,
    };
    if s.checks.is_empty() {
        for group in Group::ALL.into_iter().filter(|g| opts.wants(*g)) {
            run_group(&mut s, group, target, tub).await;
        }
    }
    Report {
        server: target.redacted(),
        protocol: target.protocol(),
        application_version,
        summary: Summary::of(&s.checks),
        checks: s.checks,
        left_behind: s.left_behind,
        cleaned_up: s.cleaned_up,
    }
}

/// Nothing can be learnt from a server that cannot be reached: say so once rather
/// than fail every check.
fn unreachable(s: &mut Suite, why: String, opts: &Options) {
    s.record(
        Group::Version,
        "reachable",
        "the server can be reached",
        "ok",
        "error unavailable",
        Some(why),
        false,
    );
    for g in Group::ALL.into_iter().filter(|g| opts.wants(*g)) {
        s.special(
            g,
            "all",
            "every check of the group",
            Status::Skipped,
            "the server cannot be reached",
        );
    }
}

async fn run_group(s: &mut Suite, group: Group, target: &Target, tub: &Tub) {
    match group {
        Group::Version => s.version().await,
        Group::Immutable => s.immutable().await,
        Group::Mutable => s.mutable().await,
        Group::Leases => s.leases(target, tub).await,
        Group::Corruption => s.corruption().await,
        Group::Edges => s.checks.extend(edges::edges(target, tub).await),
    }
}
