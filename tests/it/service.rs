//! Running as a service: the systemd unit in `docs/systemd/` verifies with
//! `systemd-analyze verify` (no error, no warning), and its `ExecStart` command line,
//! run as systemd would with `NOTIFY_SOCKET`, reports READY=1 only once every link
//! listens and its URL files are written, and STOPPING=1 on SIGTERM.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::kit::*;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/systemd/swampgate.service")
}

const INSTALLED: &str = "/usr/local/bin/swampgate";

/// The unit with `ExecStart` pointing at the binary under test.
fn unit_for_test() -> String {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    assert!(unit.contains(&format!("ExecStart={INSTALLED} ")), "{unit}");
    unit.replace(INSTALLED, env!("CARGO_BIN_EXE_swampgate"))
}

#[test]
fn unit_verifies_without_warnings() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("swampgate.service");
    std::fs::write(&path, unit_for_test()).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package) is needed: .ci/run installs it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned: {stderr}"
    );
}

#[test]
fn exec_start_notifies_ready_once_listening_and_stopping_on_term() {
    let unit = unit_for_test();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let config = dir.join("swampgate.toml");
    let state = dir.join("state");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n[[link]]\nname = \"default\"\nupstream = \"local:shares\"\n",
    )
    .unwrap();
    let args: Vec<String> = exec
        .split_whitespace()
        .map(|a| match a {
            "/etc/swampgate/swampgate.toml" => config.display().to_string(),
            "/var/lib/swampgate" => state.display().to_string(),
            other => other.to_string(),
        })
        .collect();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(STARTUP_TIMEOUT)).unwrap();
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).env("NOTIFY_SOCKET", &socket_path);
    let mut p = Process::spawn("swampgate", cmd, dir);

    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification: {e}\n{}", p.log_tail()));
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // At READY=1 the URL files are there and the port accepts connections.
    let nurl = std::fs::read_to_string(state.join("links/default.nurl")).unwrap();
    assert!(state.join("links/default.furl").exists());
    let hostport = nurl.split('@').nth(1).unwrap().split('/').next().unwrap();
    let addr: SocketAddr = hostport.parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("listening when ready");

    p.signal(libc::SIGTERM);
    let n = socket.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    let status = p.wait_timeout(Duration::from_secs(30)).expect("stopped");
    assert!(status.success(), "{status}\n{}", p.log_tail());
}
