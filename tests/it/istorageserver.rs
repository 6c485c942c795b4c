//! Tahoe-LAFS 1.20's own `IStorageServer` test suite (`allmydata.test.
//! test_istorageserver`: the shared, immutable and mutable API mixins) against
//! swampgate, in four placements:
//!
//! - `f2h`: Tahoe's Foolscap client → swampgate → GBS → Tahoe's HTTP storage server;
//! - `h2f`: Tahoe's HTTP client → swampgate → Foolscap → Tahoe's Foolscap storage
//!   server;
//! - `local_foolscap`, `local_gbs`: Tahoe's Foolscap or HTTP client → swampgate's
//!   embedded store.
//!
//! The adapter is `tests/interop/istorageserver_suite.py` (see its docs): for the
//! bridges the upstream Tahoe storage server runs inside the suite's Python
//! process, as in the suite, so its lease assertions read the upstream's leases;
//! here we make its identity, start swampgate pointed at it, and run the suite
//! with `python -m twisted.trial`. A run passes only if trial reports exactly the
//! expected number of successes and nothing else (no failure, error, skip or
//! expected failure), so a run that collected nothing fails too.

use std::path::Path;
use std::time::Duration;

use crate::kit::*;

/// Tests of the suite's Foolscap classes: shared 1, immutable 16 + the
/// Foolscap-only `test_disconnection`, mutable 17.
const FOOLSCAP_TESTS: usize = 35;
/// Tests of the suite's HTTP classes: shared 1, immutable 16, mutable 17.
const HTTP_TESTS: usize = 34;

/// Upper bound for one placement's trial run.
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

/// `swampgate bridge --upstream UPSTREAM` with its state in `dir/state` and the extra
/// environment `env`; returns the
/// process and its FURL and NURL.
fn swampgate(upstream: &str, dir: &Path, env: &[(&str, &Path)]) -> (Process, String, String) {
    let mut cmd = swampgate_command();
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.args(["bridge", "--upstream", upstream, "--listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--log", "swampgate=debug"]);
    let mut p = Process::spawn("swampgate", cmd, &dir.join("logs"));
    let url = |p: &mut Process, kind: &str| {
        let line = p.wait_for_line(&format!("link default {kind} "), STARTUP_TIMEOUT);
        line.rsplit(' ').next().expect("a URL").to_owned()
    };
    let furl = url(&mut p, "furl");
    let nurl = url(&mut p, "nurl");
    (p, furl, nurl)
}

/// Runs the suite for `placement` against `url` with the extra environment `env`
/// and asserts that exactly `expected` tests ran and all passed.
fn run_suite(
    placement: &str,
    url: &str,
    env: &[(&str, &Path)],
    expected: usize,
    dir: &Path,
    swampgate: &mut Process,
) {
    let trial_dir = dir.join("trial");
    std::fs::create_dir_all(&trial_dir).unwrap();
    let mut cmd = venv().command("python");
    cmd.args(["-m", "twisted.trial", "--temp-directory"])
        .arg(trial_dir.join("_trial_temp"))
        .arg("istorageserver_suite")
        .current_dir(&trial_dir)
        .env("PYTHONPATH", interop_dir())
        .env("SWAMPGATE_SUITE_PLACEMENT", placement)
        .env("SWAMPGATE_SUITE_URL", url);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let finished = run(
        &format!("trial-{placement}"),
        cmd,
        &dir.join("logs"),
        SUITE_TIMEOUT,
    );
    let summary = finished
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("PASSED") || l.starts_with("FAILED"))
        .unwrap_or("(no summary line)")
        .to_owned();
    let want = format!("PASSED (successes={expected})");
    assert!(
        finished.status.success() && summary == want,
        "{placement}: trial reported {summary:?}, expected {want:?} ({})\n\
         --- trial output ---\n{}\n--- trial stderr ---\n{}\n--- swampgate ---\n{}",
        finished.status,
        finished.stdout,
        finished.stderr,
        swampgate.log_tail()
    );
    assert!(
        swampgate.try_status().is_none(),
        "swampgate exited during the suite\n{}",
        swampgate.log_tail()
    );
}

/// A bridge placement: makes the upstream identity, starts swampgate on it, runs
/// the suite (which serves the upstream in its own process).
fn bridge(placement: &str, upstream_kind: &str, client_speaks_foolscap: bool) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("swampgate-suite-{placement}-"))
        .tempdir()
        .unwrap();
    let upstream_dir = dir.path().join("upstream");
    let port = free_port().to_string();
    // Run in the temp dir: importing allmydata.test writes `eliot.log` to the cwd.
    let mut make = venv().command("python");
    make.arg(interop_dir().join("istorageserver_suite.py"))
        .arg("make-upstream")
        .arg(&upstream_dir)
        .args([port.as_str(), upstream_kind])
        .current_dir(dir.path());
    let upstream_url = run_ok("make-upstream", make, &dir.path().join("logs"), CLI_TIMEOUT)
        .trim()
        .to_owned();
    let (mut gate, furl, nurl) = swampgate(&upstream_url, dir.path(), &[]);
    let (url, expected) = if client_speaks_foolscap {
        (furl, FOOLSCAP_TESTS)
    } else {
        (nurl, HTTP_TESTS)
    };
    run_suite(
        placement,
        &url,
        &[("SWAMPGATE_SUITE_UPSTREAM", &upstream_dir)],
        expected,
        dir.path(),
        &mut gate,
    );
}

/// An embedded-store placement, with the store's clock read from a file the suite
/// advances (`SWAMPGATE_TEST_CLOCK_FILE`).
fn embedded(placement: &str, client_speaks_foolscap: bool) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("swampgate-suite-{placement}-"))
        .tempdir()
        .unwrap();
    // The store's clock, driven by the suite's fake_sleep(); it starts now.
    let clock = dir.path().join("clock");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(&clock, format!("{now}\n")).unwrap();
    let (mut gate, furl, nurl) = swampgate(
        "local:store",
        dir.path(),
        &[("SWAMPGATE_TEST_CLOCK_FILE", &clock)],
    );
    let (url, expected) = if client_speaks_foolscap {
        (furl, FOOLSCAP_TESTS)
    } else {
        (nurl, HTTP_TESTS)
    };
    let store = dir.path().join("state/store");
    run_suite(
        placement,
        &url,
        &[
            ("SWAMPGATE_SUITE_STORE", &store),
            ("SWAMPGATE_SUITE_CLOCK", &clock),
        ],
        expected,
        dir.path(),
        &mut gate,
    );
}

#[test]
fn f2h() {
    bridge("f2h", "http", true);
}

#[test]
fn h2f() {
    bridge("h2f", "foolscap", false);
}

#[test]
fn local_foolscap() {
    embedded("local-foolscap", true);
}

#[test]
fn local_gbs() {
    embedded("local-gbs", false);
}
