//! `swampgate check` against real servers: Tahoe-LAFS 1.20 over Foolscap and HTTP,
//! swampgate's embedded store over each front, each bridge direction, and a server
//! with a fault injected (which must fail the right check).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

/// `swampgate check URL --destructive --json`: the exit status and the report.
fn check(url: &str, dir: &Path, extra: &[&str]) -> (bool, serde_json::Value, String) {
    let mut cmd = swampgate_command();
    cmd.args(["check", url, "--destructive", "--json"])
        .args(extra);
    let f = run("swampgate-check", cmd, dir, CHECK_TIMEOUT);
    let report: serde_json::Value = serde_json::from_str(&f.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", f.stdout, f.stderr));
    (f.status.success(), report, f.stdout)
}

/// Assert a report passed every check, naming the failures otherwise.
fn assert_passes(what: &str, ok: bool, report: &serde_json::Value) {
    let failures: Vec<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            format!(
                "{}: expected {} got {} ({})",
                c["id"], c["expected"], c["got"], c["note"]
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{what}: failures:\n{}",
        failures.join("\n")
    );
    assert!(ok, "{what}: non-zero exit without failures: {report}");
    assert_eq!(report["summary"]["fail"], 0);
    // Every group ran.
    for g in [
        "version",
        "immutable",
        "mutable",
        "leases",
        "corruption",
        "edges",
    ] {
        assert!(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["group"] == g && c["status"] == "pass"),
            "{what}: no passing check in group {g}"
        );
    }
    // Lease expiry is reported as not observable, not faked.
    let expiry = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "leases.expiry")
        .unwrap();
    assert_eq!(expiry["status"], "not-observable");
}

#[test]
fn check_passes_against_tahoe_over_foolscap_and_http() {
    let node = storage_node(StorageOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (ok, report, text) = check(node.furl(), dir.path(), &[]);
    eprintln!("{text}");
    assert_eq!(report["protocol"], "foolscap");
    assert_passes("tahoe over foolscap", ok, &report);
    let (ok, report, text) = check(node.nurl(), dir.path(), &[]);
    eprintln!("{text}");
    assert_eq!(report["protocol"], "gbs");
    assert_passes("tahoe over http", ok, &report);
}
