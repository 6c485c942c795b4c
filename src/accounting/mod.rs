//! Accounting: per-client credentials, storage quotas, read rates and usage, for
//! clients that change nothing but the URL they are given.
//!
//! An account belongs to a link and has its own swissnum, so its own FURL and NURL
//! with the link's tubid and SPKI hash: lease secrets, write enablers and share
//! placement are as they were. [`ledger`] keeps the accounts and what each has
//! stored in SQL (SQLite by default, PostgreSQL to share them between processes);
//! [`layer`] is the storage layer around one account's calls. The daemon serves
//! accounts (`daemon::accounts`) and `swampgate account` edits them.
//!
//! DESIGN: several processes, one PostgreSQL ledger. Everything a process needs to
//! serve an account is in the database (polled every 500 ms), and every charge is
//! written there when it is made, so any process can serve any account. What is
//! not shared is a session: an immutable upload's bucket writers live in the
//! process that granted the allocation (over an H→F link, in its own Foolscap
//! session with the node). A load balancer in front must therefore keep each client
//! on one process; since a Tahoe client makes all its connections from one address,
//! source affinity does (HAProxy `balance source`, tested in `tests/it/scaleout.rs`).
//! A quota is checked in the reserving transaction against the committed charges of
//! all processes, with reservations serialised per account within a process, so
//! concurrent uploads overshoot by at most one allocation in flight per process.

pub mod layer;
pub mod ledger;
pub mod metrics;

pub use layer::{AccountHandle, Accounted};
pub use ledger::{Account, Ledger, LedgerError};

/// Parse a size: `10GiB` (binary), `500MB` (decimal), `1.5 TiB`, plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s.trim())
        .ok()
        .filter(|_| !s.trim().is_empty())
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 10GiB, 500MB, 1048576)"))
}

/// `SIZE` or `none`.
pub fn parse_limit(s: &str) -> Result<Option<u64>, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        Ok(None)
    } else {
        parse_size(s).map(Some)
    }
}

/// The SQLite database of a state dir, as an sqlx URL.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("ten").unwrap_err().contains("\"ten\""));
        assert!(parse_size("").is_err());
        assert_eq!(parse_limit("none"), Ok(None));
        assert_eq!(parse_limit("1KiB"), Ok(Some(1024)));
    }
}
