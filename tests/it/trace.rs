//! A call-by-call trace of a real `tahoe put` and `tahoe get` through swampgate:
//! the calls Tahoe made are listed, and no secret (swissnum, client secrets) or share
//! data is in the file.

use std::collections::BTreeSet;

use crate::kit::*;

#[test]
fn trace_of_a_tahoe_put_lists_its_calls_and_holds_no_secrets() {
    let node = storage_node(StorageOptions::foolscap_only());
    let work = tempfile::tempdir().unwrap();
    let trace = work.path().join("link.trace.jsonl");
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        node.furl(),
        "--listen",
        "127.0.0.1:0",
    ])
    .arg("--state-dir")
    .arg(work.path().join("state"))
    .arg("--adopt")
    .arg(node.dir())
    .arg("--trace")
    .arg(&trace);
    let mut sg = Process::spawn("swampgate", cmd, work.path());
    let furl = sg.wait_for_line("link default furl ", STARTUP_TIMEOUT);
    let nurl = sg.wait_for_line("link default nurl ", STARTUP_TIMEOUT);
    let client = client_node(ClientOptions {
        force_foolscap: false,
        servers: vec![StaticServer {
            furl: furl.rsplit(' ').next().unwrap().to_string(),
            nurls: vec![nurl.rsplit(' ').next().unwrap().to_string()],
            ..node.static_server()
        }],
        ..ClientOptions::default()
    });
    let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let file = work.path().join("file");
    std::fs::write(&file, &plain).unwrap();
    let cap = client.tahoe(["put".as_ref(), file.as_os_str()]);
    let cap = cap.trim().to_string();
    assert!(cap.starts_with("URI:CHK:"), "{cap}");
    let out = work.path().join("back");
    client.tahoe(["get".as_ref(), cap.as_ref(), out.as_os_str()]);
    assert_eq!(std::fs::read(&out).unwrap(), plain);

    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let methods: BTreeSet<&str> = lines
        .iter()
        .map(|l| l["method"].as_str().unwrap())
        .collect();
    for m in [
        "allocate_buckets",
        "write_immutable",
        "list_immutable_shares",
        "read_immutable",
    ] {
        assert!(methods.contains(m), "{m} not in {methods:?}");
    }
    let allowed: BTreeSet<&str> = [
        "time",
        "link",
        "direction",
        "protocol",
        "method",
        "endpoint",
        "storage_index",
        "shares",
        "offset",
        "length",
        "bytes_in",
        "bytes_out",
        "outcome",
        "success",
        "latency_ms",
    ]
    .into_iter()
    .collect();
    let mut written = 0;
    for l in &lines {
        let o = l.as_object().unwrap();
        for (k, v) in o {
            assert!(allowed.contains(k.as_str()), "unexpected field {k}: {l}");
            // No room for share data or secrets: every string is short and known.
            if let Some(s) = v.as_str() {
                assert!(s.len() <= 60, "{k} too long: {l}");
            }
        }
        assert_eq!(l["protocol"], "gbs");
        assert_eq!(l["direction"], "gbs->foolscap");
        assert!(l["latency_ms"].as_f64().unwrap() >= 0.0);
        if l["method"] == "write_immutable" {
            assert_eq!(l["outcome"], "ok", "{l}");
            assert_eq!(l["shares"].as_array().unwrap().len(), 1);
            written += l["bytes_in"].as_u64().unwrap();
        }
    }
    assert!(
        written > plain.len() as u64,
        "every share byte counted: {written}"
    );
    // No secret in any form it exists in on disk.
    let swissnum = node.swissnum();
    assert!(!text.contains(swissnum));
    for f in ["private/secret", "private/convergence"] {
        let s = std::fs::read_to_string(client.dir().join(f)).unwrap();
        assert!(!text.contains(s.trim()), "{f} in the trace");
    }
    // The summary counts the calls per method.
    let mut cmd = swampgate_command();
    cmd.args(["trace", "summarize"]).arg(&trace);
    let summary = run_ok("summarize", cmd, work.path(), CLI_TIMEOUT);
    assert!(summary.contains("gbs write_immutable"), "{summary}");
    assert!(summary.contains("gbs allocate_buckets"), "{summary}");
    assert!(
        summary.contains(&format!("{} calls", lines.len())),
        "{summary}"
    );
    sg.stop();
}

/// The per-link `trace` key of the config file: both fronts of the link write to
/// one file under the state dir, and a link without the key writes nothing.
#[test]
fn config_trace_key_records_both_fronts() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("swampgate.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n\
         [[link]]\nname = \"traced\"\nupstream = \"local:a\"\ntrace = \"traced.jsonl\"\n\
         [[link]]\nname = \"quiet\"\nupstream = \"local:b\"\n",
    )
    .unwrap();
    let state = work.path().join("state");
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(&state);
    let mut sg = Process::spawn("swampgate", cmd, work.path());
    let url = |l: String| l.rsplit(' ').next().unwrap().to_string();
    let furl = url(sg.wait_for_line("link traced furl ", STARTUP_TIMEOUT));
    let nurl = url(sg.wait_for_line("link traced nurl ", STARTUP_TIMEOUT));
    let quiet = url(sg.wait_for_line("link quiet nurl ", STARTUP_TIMEOUT));
    for u in [&furl, &nurl, &quiet] {
        let mut cmd = swampgate_command();
        cmd.args(["check", u, "--only", "immutable"]);
        run_ok("check", cmd, work.path(), CLI_TIMEOUT);
    }
    let text = std::fs::read_to_string(state.join("traced.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let directions: BTreeSet<&str> = lines
        .iter()
        .map(|l| l["direction"].as_str().unwrap())
        .collect();
    assert_eq!(
        directions,
        ["foolscap->local", "gbs->local"].into_iter().collect()
    );
    assert!(lines.iter().all(|l| l["link"] == "traced"));
    // The check's conflicting write shows as an error outcome.
    assert!(lines
        .iter()
        .any(|l| l["method"] == "write_immutable" && l["outcome"] == "conflicting_write"));
    let files: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "only the traced link writes a trace");
    sg.stop();
}
