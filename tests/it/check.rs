//! `swampgate check` against real servers: Tahoe-LAFS 1.20 over Foolscap and HTTP,
//! swampgate's embedded store over each front, each bridge direction, and a server
//! with a fault injected (which must fail the right check).

use std::path::Path;
use std::time::Duration;

use crate::kit::*;

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

/// `swampgate bridge --upstream UPSTREAM`: the process and its FURL and NURL.
fn bridge(upstream: &str, dir: &Path, extra: &[&str]) -> (Process, String, String) {
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
    ])
    .arg(dir.join("state"))
    .args(extra);
    let mut p = Process::spawn("swampgate", cmd, dir);
    let furl = p.wait_for_line("link default furl ", STARTUP_TIMEOUT);
    let nurl = p.wait_for_line("link default nurl ", STARTUP_TIMEOUT);
    let furl = furl.rsplit(' ').next().unwrap().to_string();
    let nurl = nurl.rsplit(' ').next().unwrap().to_string();
    (p, furl, nurl)
}

#[test]
fn check_passes_against_the_embedded_store_over_each_front() {
    let dir = tempfile::tempdir().unwrap();
    let (_p, furl, nurl) = bridge("local:shares", dir.path(), &[]);
    let (ok, report, _) = check(&furl, dir.path(), &[]);
    assert_passes("embedded store over foolscap", ok, &report);
    let (ok, report, _) = check(&nurl, dir.path(), &[]);
    assert_passes("embedded store over gbs", ok, &report);
}

#[test]
fn check_passes_through_the_bridge_in_each_direction() {
    let node = storage_node(StorageOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("to-foolscap"), dir.path().join("to-gbs"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // GBS clients, Foolscap server.
    let (_p1, _, nurl) = bridge(node.furl(), &a, &[]);
    let (ok, report, _) = check(&nurl, &a, &[]);
    assert_passes("GBS through the bridge to Tahoe over Foolscap", ok, &report);
    // Foolscap clients, GBS server.
    let (_p2, furl, _) = bridge(node.nurl(), &b, &[]);
    let (ok, report, _) = check(&furl, &b, &[]);
    assert_passes(
        "Foolscap through the bridge to Tahoe over HTTP",
        ok,
        &report,
    );
}

#[test]
fn compare_of_tahoe_and_the_embedded_store_finds_no_differences() {
    let node = storage_node(StorageOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (_p, furl, nurl) = bridge("local:shares", dir.path(), &[]);
    for (a, b, same_protocol) in [
        (node.nurl().to_string(), nurl.clone(), true),
        (node.furl().to_string(), furl.clone(), true),
        (node.furl().to_string(), nurl.clone(), false),
    ] {
        let mut cmd = swampgate_command();
        cmd.args(["check", "--compare", &a, &b, "--destructive", "--json"]);
        let f = run("swampgate-compare", cmd, dir.path(), CHECK_TIMEOUT);
        let c: serde_json::Value = serde_json::from_str(&f.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", f.stdout, f.stderr));
        assert_eq!(c["differences"], serde_json::json!([]), "{}", f.stdout);
        assert!(f.status.success(), "{}", f.stderr);
        let proto = c["protocol_differences"].as_array().unwrap();
        if same_protocol {
            assert!(proto.is_empty(), "{}", f.stdout);
            assert!(c["only_one"].as_array().unwrap().is_empty());
        } else {
            // Tahoe's own protocol differences are named, not hidden.
            assert!(
                proto.iter().any(|d| d["id"] == "leases.unknown"),
                "{}",
                f.stdout
            );
        }
    }
    // And a broken comparison is reported: a text run, exit status 0 here.
    let mut cmd = swampgate_command();
    cmd.args([
        "check",
        "--compare",
        node.nurl(),
        &nurl,
        "--only",
        "version",
    ]);
    let out = run_ok("swampgate-compare-text", cmd, dir.path(), CHECK_TIMEOUT);
    assert!(out.contains("0 differences"), "{out}");
}

#[test]
fn check_refuses_bad_urls_and_groups_and_prints_text() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["check", "http://example.org/"], "URL"),
        (vec!["check", "pb://short@tcp:h:1/x"], "URL"),
        (vec!["check", "pb://x", "--only", "bogus"], "--only"),
    ] {
        let mut cmd = swampgate_command();
        cmd.args(&args);
        let f = run("check-bad", cmd, dir.path(), CHECK_TIMEOUT);
        assert_eq!(f.status.code(), Some(2), "{args:?}: {}", f.stderr);
        assert!(f.stderr.contains(needle), "{args:?}: {}", f.stderr);
    }
    // An unreachable server: one failure saying so, the rest skipped, exit 1.
    let port = free_port();
    let furl = format!("pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:{port}/yci4erqgi6kgb3ybym4y3qlox2zawafr");
    let (ok, report, _) = check(&furl, dir.path(), &[]);
    assert!(!ok);
    assert_eq!(report["summary"]["fail"], 1, "{report}");
    assert_eq!(report["checks"][0]["id"], "version.reachable");
    // Text output: one line per check and a summary.
    let (_p, _furl, nurl) = bridge("local:shares", dir.path(), &[]);
    let mut cmd = swampgate_command();
    cmd.args(["check", &nurl, "--only", "version", "--only", "corruption"]);
    let out = run_ok("check-text", cmd, dir.path(), CHECK_TIMEOUT);
    assert!(out.contains("PASS  version.answers"), "{out}");
    assert!(out.contains("SKIP  corruption.existing"), "{out}");
    assert!(!out.contains("immutable."), "{out}");
    assert!(out.contains("0 failed"), "{out}");
    assert!(!out.contains(&nurl), "the swissnum is not printed: {out}");

    // An introducer's FURL: refused as what it is, no storage check run.
    let other = tempfile::tempdir().unwrap();
    let (_q, _, _) = bridge(
        "local:shares",
        other.path(),
        &["--introducer-upstream", &furl],
    );
    let intro = std::fs::read_to_string(other.path().join("state/introducer.furl")).unwrap();
    let mut cmd = swampgate_command();
    cmd.args(["check", intro.trim()]);
    let f = run("check-introducer", cmd, dir.path(), CHECK_TIMEOUT);
    assert_eq!(f.status.code(), Some(2), "{}", f.stderr);
    assert!(
        f.stderr.contains("not a storage server")
            && f.stderr
                .contains("RIIntroducerPublisherAndSubscriberService_v2"),
        "{}",
        f.stderr
    );
    assert!(
        !f.stdout.contains("PASS") && !f.stdout.contains("FAIL"),
        "{}",
        f.stdout
    );
}
