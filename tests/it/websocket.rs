//! RFC 6455 conformance of the announcement subscription endpoint
//! (`/introducer/v1/subscribe/SERVICE`), checked by an independent implementation:
//! `tests/interop/ws_conformance.py` drives Autobahn|Python's WebSocket client
//! against a real swampgate relay (handshake and a publication delivered, close
//! handshake, ping/pong, fragmented messages, unmasked frames refused with 1002,
//! oversized frames and messages refused with 1009 at the configured
//! `max_websocket_message_bytes`, an over-long control frame refused with 1002).

use crate::kit::*;

#[test]
fn subscription_endpoint_conforms_to_rfc6455_for_autobahn() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Not the default, so the test shows the limit is the configured one.
    let limit = 4096;
    std::fs::write(
        dir.path().join("sg.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\n[[link]]\nname = \"default\"\n\
             upstream = \"local:shares\"\n[introducer]\n\
             [limits]\nmax_websocket_message_bytes = {limit}\n"
        ),
    )
    .unwrap();
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "sg.toml", "--state-dir", "st"])
        .args(["--log", "swampgate=debug"])
        .current_dir(dir.path());
    let mut gate = Process::spawn("swampgate", cmd, &dir.path().join("logs"));
    let intro = last_word(&gate.wait_for_line("introducer furl ", STARTUP_TIMEOUT));
    let swissnum = intro.rsplit('/').next().unwrap().to_string();
    let hostport = format!("127.0.0.1:{port}");
    let out = run_python_script(
        "ws_conformance.py",
        [hostport.as_str(), swissnum.as_str(), &limit.to_string()],
        dir.path(),
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let failed: Vec<_> = lines
        .iter()
        .filter(|v| v.get("case").is_some() && v["ok"] != true)
        .collect();
    assert!(failed.is_empty(), "cases failed: {failed:#?}");
    let cases: Vec<_> = lines.iter().filter_map(|v| v["case"].as_str()).collect();
    assert_eq!(
        cases,
        [
            "handshake",
            "close-handshake",
            "ping-pong",
            "fragmented",
            "unmasked",
            "oversized-frame",
            "oversized-message",
            "control-too-long"
        ]
    );
    assert_eq!(lines.last().unwrap()["done"], true, "{out}");
    assert!(
        gate.try_status().is_none(),
        "swampgate exited: {}",
        gate.log_tail()
    );
}
