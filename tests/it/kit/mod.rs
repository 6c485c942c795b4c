//! Integration-test harness: real Tahoe-LAFS 1.20 peers on 127.0.0.1.
//!
//! Every suite of the `it` binary uses it as `crate::kit`. Everything here panics with a
//! clear message (and the tails of the relevant logs) instead of returning errors:
//! a test that cannot set up its peers fails, it never skips.
//!
//! - [`venv()`]: the shared Python venv with the pinned peers (`tests/interop/`
//!   `requirements.txt`), built once per target dir.
//! - [`Process`]: a guarded child process, stopped by pid (its process group) when
//!   dropped, also on panic; it dies with the test process too.
//! - [`storage_node`], [`client_node`], [`introducer_node`]: real nodes in temp
//!   dirs on free loopback ports; dropping one stops it and deletes its dir. Each
//!   can be restarted from its dir (also after [`Process::signal`] killed it).
//! - [`join`]: run two setups in parallel (nodes may be started from any thread).
//! - [`python_script`], [`run_python_script`]: the helpers in `tests/interop/`.
//! - [`postgres`], [`haproxy`]: a throwaway PostgreSQL 15 cluster (as `nobody` when
//!   the tests run as root) and an HAProxy in TCP mode, real servers on free ports,
//!   stopped by pid; [`share_files`]: a storage node's shares and their sizes.
//! - [`listening_tcp_addrs`], [`pid_exists`], [`process_group_exists`]: for
//!   asserting what a process listens on and that it is gone.
//! - [`admin_port`], [`metric`]: a swampgate's admin endpoint and its `/metrics`.
//!
//! ```ignore
//! use crate::kit::*;
//!
//! let server = storage_node(StorageOptions::default());
//! let client = client_node(ClientOptions {
//!     servers: vec![server.static_server()],
//!     ..ClientOptions::default()
//! });
//! let cap = client.tahoe(["put", "some-file"]);
//! ```
mod process;
mod services;
pub mod storage;
mod tahoe;
mod venv;

pub use process::{pid_exists, process_group_exists, run, run_ok, Process};
pub use services::{haproxy, postgres, share_files};
pub use tahoe::{
    client_node, introducer_node, introducer_node_of, python_script, run_python_script,
    storage_node, ClientNode, ClientOptions, StaticServer, StorageNode, StorageOptions,
    CLI_TIMEOUT, KEEP_ENV, STARTUP_TIMEOUT,
};
pub use venv::{venv, venv_of, Release};

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `tests/interop/`: the Python side (requirements and helper scripts).
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// A `Command` for the `swampgate` binary built for this test run; start it with
/// [`Process::spawn`] so it is guarded.
pub fn swampgate_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swampgate"))
}

/// The last space-separated word of a line, e.g. the URL of swampgate's
/// `link NAME furl URL`.
pub fn last_word(line: &str) -> String {
    line.rsplit(' ').next().unwrap().to_string()
}

/// The port of swampgate's `admin http://127.0.0.1:PORT/` stdout line (with
/// `--admin 127.0.0.1:0`).
pub fn admin_port(p: &mut Process) -> u16 {
    let line = p.wait_for_line("admin ", STARTUP_TIMEOUT);
    last_word(&line)
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The value of the sample line `name{labels} VALUE` in the `/metrics` of the
/// admin endpoint on `port`.
pub fn metric(port: u16, sample: &str) -> Option<f64> {
    let text = http_get(port, "/metrics").unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// A free TCP port on 127.0.0.1, never the same twice in one test process.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`):
/// a port taken from inside it (bind `:0`, release) can be handed by the kernel
/// to any outgoing connection — of a Tahoe node, of swampgate — before the test
/// binds it, which made tests fail with "address in use". Candidates start at a
/// random offset and each is checked bindable. (The `portpicker` crate also picks
/// below the ephemeral range, but it checks 0.0.0.0 and `::` and falls back to
/// `:0` on hosts without IPv6.)
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    const LOWEST: u16 = 10_000;
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    assert!(
        ephemeral_low > LOWEST + 1_000,
        "ip_local_port_range starts at {ephemeral_low}: no room below it for test ports"
    );
    let span = ephemeral_low - LOWEST;
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    let start = (random.finish() % u64::from(span)) as u16;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for step in 0..span {
        let port = LOWEST + (start + step) % span;
        if !handed_out.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {LOWEST}..{ephemeral_low}");
}

/// Runs `a` and `b` in parallel (b on a scoped thread) and returns both results.
/// If either panics, the other is still waited for (and its result dropped, which
/// stops any node in it), then the first panic is resumed.
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|scope| {
        let b = scope.spawn(b);
        let a = catch_unwind(AssertUnwindSafe(a));
        let b = b.join();
        match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(panic), _) | (_, Err(panic)) => resume_unwind(panic),
        }
    })
}

/// `GET path` from `127.0.0.1:port` ([`http`], 30 s timeout); the body if the
/// status is 200, else an error with the status.
pub fn http_get(port: u16, path: &str) -> Result<String, String> {
    let (status, body) = http(port, "GET", path, &[], &[], Duration::from_secs(30))?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("GET {path}: status {status}: {body}"))
    }
}

/// One HTTP/1.0 request to `127.0.0.1:port` (the response is not chunked and ends
/// at close); returns the status and the body, which must be as long as its
/// `Content-Length`. The whole exchange must end within `timeout`.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut response = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no complete response within {timeout:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response without the end of its header")?;
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let body = response.split_off(end + 4);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    if let Some(length) = length {
        if length != body.len() {
            return Err(format!(
                "status {status}: body of {} bytes, Content-Length {length}",
                body.len()
            ));
        }
    }
    Ok((status, body))
}

/// The TCP addresses process `pid` is listening on (IPv4 and IPv6), from
/// `/proc/net/tcp{,6}` and the socket inodes in `/proc/PID/fd`.
pub fn listening_tcp_addrs(pid: u32) -> Vec<SocketAddr> {
    let fd_dir = format!("/proc/{pid}/fd");
    let inodes: HashSet<String> = fs::read_dir(&fd_dir)
        .unwrap_or_else(|e| panic!("reading {fd_dir}: {e}"))
        .filter_map(|entry| {
            let target = fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut addrs = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            // sl local_address rem_address st ... uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" || !inodes.contains(cols[9]) {
                continue;
            }
            addrs.push(
                parse_proc_addr(cols[1]).unwrap_or_else(|| panic!("bad row in {table}: {row}")),
            );
        }
    }
    addrs
}

/// `0100007F:1F90` (kernel-order hex words, then the port) to a socket address.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::new();
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}
