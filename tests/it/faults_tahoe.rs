//! Fault injection with real Tahoe-LAFS 1.20 peers on both sides of swampgate, in
//! both directions at once:
//!
//! - F→H: a Foolscap-only Tahoe client → swampgate link `fh` → a Tahoe storage node
//!   reached over HTTP (GBS);
//! - H→F: an HTTP Tahoe client → swampgate link `hf` → a Foolscap-only Tahoe storage
//!   node.
//!
//! One `swampgate run` serves both links on one port (no adoption: two nodes cannot
//! share one identity; immutable files need none), with an admin endpoint for
//! `/status`. Faults are signals sent by pid: SIGKILL (then a restart from the same
//! dir, port and state) and SIGSTOP/SIGCONT. "Mid-upload" means a `tahoe put` of a
//! large file whose share file exists in the upstream's `incoming/` and is not
//! finished. Every wait is a poll with a deadline; every fault ends in a retried
//! put whose bytes come back identical.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::kit::*;
use serde_json::Value;

/// The gateway's `[limits]` for most tests: small timers, so each fault is noticed
/// in seconds.
/// - `keepalive_secs`/`idle_timeout_secs`: a silent Foolscap peer (a stalled
///   upstream) is pinged after 2 s and dropped after 8 s of silence;
/// - `negotiation_timeout_secs`: dialling a stalled Foolscap upstream gives up;
/// - `upstream_timeout_secs`: a call to a GBS upstream gives up;
/// - `upload_idle_timeout_secs`: an upload nobody writes to (its HTTP client died)
///   is aborted upstream.
const FAST_LIMITS: &str = "[limits]\n\
    keepalive_secs = 2\n\
    idle_timeout_secs = 8\n\
    negotiation_timeout_secs = 8\n\
    upstream_timeout_secs = 8\n\
    upload_idle_timeout_secs = 5\n";

/// For holding uploads mid-way with their clients SIGSTOPped: long enough that
/// swampgate neither drops a silent client nor aborts an upload nobody writes to
/// while the test holds them.
const HOLD_LIMITS: &str = "[limits]\n\
    keepalive_secs = 60\n\
    idle_timeout_secs = 120\n\
    upload_idle_timeout_secs = 120\n";

/// Big enough that its upload is still running when its share shows up upstream.
const BIG: usize = 12 << 20;

/// Bound for a client's `tahoe put` (a Python CLI start, an HTTP request to its
/// node, then the upload) to end once a peer is gone or stalled. Tahoe's Foolscap
/// client never times out a call, so through link `fh` it is swampgate that ends it.
const FAULT_BOUND: Duration = Duration::from_secs(45);

/// Bound for one GBS call through link `hf` to a stalled Foolscap upstream: the idle
/// disconnect (8 s of silence, checked every ~2 s) or, once disconnected, the
/// negotiation timeout of the redial (8 s). Tahoe's own HTTP timeout is 60 s.
const STALLED_CALL_BOUND: Duration = Duration::from_secs(30);

/// Bound for cleanup (upstream `incoming/` empty, no upload in flight) after a fault.
const CLEANUP_BOUND: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// Foolscap client → swampgate → HTTP storage node.
    FH,
    /// HTTP client → swampgate → Foolscap-only storage node.
    HF,
}

const BOTH: [Dir; 2] = [Dir::FH, Dir::HF];

impl Dir {
    fn link(self) -> &'static str {
        match self {
            Dir::FH => "fh",
            Dir::HF => "hf",
        }
    }

    fn other(self) -> Dir {
        match self {
            Dir::FH => Dir::HF,
            Dir::HF => Dir::FH,
        }
    }
}

// ---------------------------------------------------------------------------------
// The gateway

/// `swampgate run` with links `fh` and `hf`, on fixed ports so a restart keeps them.
struct Gateway {
    dir: PathBuf,
    admin_port: u16,
    process: Process,
    /// `(link, furl, nurl)` as printed at the first start.
    urls: Vec<(String, String, String)>,
}

impl Gateway {
    fn start(dir: &Path, fh_upstream: &str, hf_upstream: &str, limits: &str) -> Gateway {
        let port = free_port();
        let admin_port = free_port();
        std::fs::write(
            dir.join("gateway.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin_port}\"\n\
                 [[link]]\nname = \"fh\"\nupstream = \"{fh_upstream}\"\n\
                 [[link]]\nname = \"hf\"\nupstream = \"{hf_upstream}\"\n{limits}"
            ),
        )
        .unwrap();
        let (process, urls) = Gateway::spawn(dir);
        Gateway {
            dir: dir.to_owned(),
            admin_port,
            process,
            urls,
        }
    }

    fn spawn(dir: &Path) -> (Process, Vec<(String, String, String)>) {
        let mut cmd = swampgate_command();
        cmd.args([
            "run",
            "--config",
            "gateway.toml",
            "--state-dir",
            "gateway-state",
            "--log",
            "swampgate=debug",
        ])
        .current_dir(dir);
        let mut p = Process::spawn("swampgate", cmd, dir);
        let mut urls = Vec::new();
        for link in ["fh", "hf"] {
            let word = |l: String| l.rsplit(' ').next().unwrap().to_owned();
            let furl = word(p.wait_for_line(&format!("link {link} furl "), STARTUP_TIMEOUT));
            let nurl = word(p.wait_for_line(&format!("link {link} nurl "), STARTUP_TIMEOUT));
            urls.push((link.to_owned(), furl, nurl));
        }
        p.wait_for_line("admin ", STARTUP_TIMEOUT);
        (p, urls)
    }

    /// Starts the gateway again (after it was killed) from the same config and state:
    /// same port, same FURLs and NURLs.
    fn restart(&mut self) {
        self.process.stop();
        let (process, urls) = Gateway::spawn(&self.dir);
        self.process = process;
        assert_eq!(urls, self.urls, "the restarted gateway has the same URLs");
    }

    fn furl(&self, dir: Dir) -> String {
        self.url(dir).1.clone()
    }

    fn nurl(&self, dir: Dir) -> String {
        self.url(dir).2.clone()
    }

    fn url(&self, dir: Dir) -> &(String, String, String) {
        self.urls.iter().find(|u| u.0 == dir.link()).unwrap()
    }

    fn status(&self) -> Value {
        let body = http_get(self.admin_port, "/status")
            .unwrap_or_else(|e| panic!("GET /status: {e}\n{}", self.process.log_tail()));
        serde_json::from_str(&body).unwrap()
    }

    /// `inflight_uploads` of the link from `/status`.
    fn inflight_uploads(&self, dir: Dir) -> u64 {
        let status = self.status();
        let link = status["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == dir.link())
            .unwrap_or_else(|| panic!("no link {} in {status}", dir.link()));
        link["inflight_uploads"].as_u64().unwrap()
    }
}

// ---------------------------------------------------------------------------------
// The grid

struct Grid {
    work: tempfile::TempDir,
    /// F→H upstream: Tahoe's default node (HTTP and Foolscap), reached over HTTP.
    http_node: StorageNode,
    /// H→F upstream: a Foolscap-only node.
    foolscap_node: StorageNode,
    gateway: Gateway,
    /// Foolscap only, through link `fh`.
    f_client: ClientNode,
    /// HTTP, through link `hf`.
    h_client: ClientNode,
}

/// The grid, its gateway started with `limits` (a `[limits]` table).
fn grid(limits: &str) -> Grid {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let (http_node, foolscap_node) = join(
        || {
            storage_node(StorageOptions {
                nickname: "upstream-http".into(),
                ..StorageOptions::default()
            })
        },
        || {
            storage_node(StorageOptions {
                nickname: "upstream-foolscap".into(),
                ..StorageOptions::foolscap_only()
            })
        },
    );
    let gateway = Gateway::start(work.path(), http_node.nurl(), foolscap_node.furl(), limits);
    let (f_client, h_client) = join(
        || {
            client_node(ClientOptions {
                nickname: "client-foolscap".into(),
                force_foolscap: true,
                servers: vec![StaticServer {
                    furl: gateway.furl(Dir::FH),
                    nurls: vec![],
                    ..http_node.static_server()
                }],
                ..ClientOptions::default()
            })
        },
        || {
            client_node(ClientOptions {
                nickname: "client-http".into(),
                force_foolscap: false,
                servers: vec![StaticServer {
                    furl: gateway.furl(Dir::HF),
                    nurls: vec![gateway.nurl(Dir::HF)],
                    ..foolscap_node.static_server()
                }],
                ..ClientOptions::default()
            })
        },
    );
    eprintln!("grid up in {:?}", started.elapsed());
    Grid {
        work,
        http_node,
        foolscap_node,
        gateway,
        f_client,
        h_client,
    }
}

impl Grid {
    fn client(&self, dir: Dir) -> &ClientNode {
        match dir {
            Dir::FH => &self.f_client,
            Dir::HF => &self.h_client,
        }
    }

    fn client_mut(&mut self, dir: Dir) -> &mut ClientNode {
        match dir {
            Dir::FH => &mut self.f_client,
            Dir::HF => &mut self.h_client,
        }
    }

    fn upstream(&self, dir: Dir) -> &StorageNode {
        match dir {
            Dir::FH => &self.http_node,
            Dir::HF => &self.foolscap_node,
        }
    }

    fn upstream_mut(&mut self, dir: Dir) -> &mut StorageNode {
        match dir {
            Dir::FH => &mut self.http_node,
            Dir::HF => &mut self.foolscap_node,
        }
    }

    /// A file of `len` bytes in the work dir, distinct per `name`.
    fn file(&self, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
        let seed = name
            .bytes()
            .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        let mut x = u32::from(seed) | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                // xorshift: incompressible, so every byte is stored.
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let path = self.work.path().join(name);
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    /// One big upload per direction (in [`BOTH`] order), started in the background
    /// after a watch on each upstream's finished shares: files named `TAG-LINK`.
    fn start_uploads(&self, tag: &str) -> Uploads {
        let files: Vec<_> = BOTH
            .iter()
            .map(|d| self.file(&format!("{tag}-{}", d.link()), BIG))
            .collect();
        let watches = BOTH
            .iter()
            .map(|d| ShareWatch::start(self.upstream(*d)))
            .collect();
        let puts = BOTH
            .iter()
            .zip(&files)
            .map(|(d, (path, _))| self.spawn_put(*d, path))
            .collect();
        Uploads {
            files,
            watches,
            puts,
        }
    }

    /// `tahoe put FILE` in the background.
    fn spawn_put(&self, dir: Dir, file: &Path) -> Process {
        self.client(dir)
            .spawn_tahoe(["put".as_ref(), file.as_os_str()])
    }

    /// `tahoe put FILE` until it succeeds (the client may need a moment to see its
    /// server again after a fault), then `tahoe get` and compare. Returns the cap.
    fn put_get_retrying(&self, dir: Dir, file: &Path, data: &[u8], within: Duration) -> String {
        let client = self.client(dir);
        let started = Instant::now();
        let deadline = started + within;
        let cap = loop {
            let done = client.tahoe_output(["put".as_ref(), file.as_os_str()]);
            if done.status.success() {
                break done.stdout.trim().to_owned();
            }
            if Instant::now() >= deadline {
                panic!(
                    "{dir:?}: put still failing after {within:?}\n{}\n{}\n{}",
                    done.process.log_tail(),
                    client.log_tail(),
                    self.gateway.process.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(500));
        };
        assert!(cap.starts_with("URI:CHK:"), "{dir:?}: {cap}");
        self.get_same(dir, &cap, data);
        eprintln!(
            "{dir:?}: put and get of {} bytes in {:?}",
            data.len(),
            started.elapsed()
        );
        cap
    }

    /// `tahoe get CAP` returns exactly `data`.
    fn get_same(&self, dir: Dir, cap: &str, data: &[u8]) {
        let out = self.work.path().join(format!("{}-get.out", dir.link()));
        let _ = std::fs::remove_file(&out);
        self.client(dir)
            .tahoe(["get".as_ref(), cap.as_ref(), out.as_os_str()]);
        let got = std::fs::read(&out).unwrap();
        assert!(
            got == data,
            "{dir:?}: read back {} bytes, differing",
            got.len()
        );
    }

    /// Waits until the upload of each direction is in progress upstream (its share
    /// in `incoming/`, its put still running) and calls `fault(dir)` at once for
    /// each, both directions watched together so neither upload finishes unseen.
    /// `puts` are in the order of [`BOTH`].
    fn on_mid_upload(&self, puts: &mut [Process], mut fault: impl FnMut(Dir)) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut waiting = BOTH.to_vec();
        while !waiting.is_empty() {
            waiting.retain(|&d| {
                let put = &mut puts[BOTH.iter().position(|&b| b == d).unwrap()];
                let started = !incoming_shares(self.upstream(d)).is_empty();
                if let Some(status) = put.try_status() {
                    panic!(
                        "{d:?}: put ended ({status}) before it was caught mid-upload\n{}",
                        put.log_tail()
                    );
                }
                if started {
                    fault(d);
                }
                !started
            });
            assert!(
                Instant::now() < deadline,
                "{waiting:?}: no share in incoming/ within 120 s"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls until the upstream of `dir` has no share file in `incoming/` and the
    /// gateway reports no upload in flight on its link.
    fn wait_clean(&self, dir: Dir, why: &str) {
        let node = self.upstream(dir);
        wait_for(
            &format!("{dir:?} ({why}): upstream incoming/ empty and 0 uploads in flight"),
            CLEANUP_BOUND,
            || incoming_shares(node).is_empty() && self.gateway.inflight_uploads(dir) == 0,
            || {
                format!(
                    "incoming: {:?}\nstatus: {}\n{}",
                    incoming_shares(node),
                    self.gateway.status(),
                    self.gateway.process.log_tail()
                )
            },
        );
    }
}

// ---------------------------------------------------------------------------------
// Shares on a Tahoe node's disk

/// Every file under `dir` (recursively), skipping a subdirectory named `skip`.
fn files_under(dir: &Path, skip: Option<&str>) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            if skip.is_some_and(|s| e.file_name() == s) {
                continue;
            }
            out.extend(files_under(&path, skip));
        } else {
            out.insert(path);
        }
    }
    out
}

/// Share files of uploads in progress (`shares/incoming/...`).
fn incoming_shares(node: &StorageNode) -> BTreeSet<PathBuf> {
    files_under(&node.incoming_dir(), None)
}

/// What [`Grid::start_uploads`] started: per direction, the file (path and
/// bytes), the watch on the upstream's finished shares, and the running `tahoe put`.
struct Uploads {
    files: Vec<(PathBuf, Vec<u8>)>,
    watches: Vec<ShareWatch>,
    puts: Vec<Process>,
}

/// Watches a node's finished shares from a thread, so that a share that appears
/// even briefly is seen; [`ShareWatch::new_shares`] says which appeared.
struct ShareWatch {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<BTreeSet<PathBuf>>>,
}

/// Stops each direction's watch (in [`BOTH`]'s order) and asserts that no share
/// appeared upstream while it watched.
fn assert_no_partial_shares(watches: Vec<ShareWatch>) {
    for (d, w) in BOTH.iter().zip(watches) {
        let seen = w.new_shares();
        assert!(
            seen.is_empty(),
            "{d:?}: partial shares became visible: {seen:?}"
        );
    }
}

impl ShareWatch {
    fn start(node: &StorageNode) -> ShareWatch {
        let shares = node.shares_dir();
        let before = files_under(&shares, Some("incoming"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut seen = BTreeSet::new();
            loop {
                let done = flag.load(Ordering::SeqCst);
                seen.extend(
                    files_under(&shares, Some("incoming"))
                        .difference(&before)
                        .cloned(),
                );
                if done {
                    return seen;
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        ShareWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops watching; the finished shares that appeared meanwhile.
    fn new_shares(mut self) -> BTreeSet<PathBuf> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for ShareWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------
// Small helpers

/// Polls `done` every 50 ms until true; panics with `what` and `detail()` after
/// `timeout`. Returns how long it took.
fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    detail: impl Fn() -> String,
) -> Duration {
    let started = Instant::now();
    loop {
        if done() {
            return started.elapsed();
        }
        if started.elapsed() >= timeout {
            panic!("not within {timeout:?}: {what}\n{}", detail());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a process to end within `bound`; returns whether it succeeded and
/// how long it took from `since`.
fn ends_within(p: &mut Process, bound: Duration, since: Instant, what: &str) -> (bool, Duration) {
    let left = bound.saturating_sub(since.elapsed());
    match p.wait_timeout(left) {
        Some(status) => (status.success(), since.elapsed()),
        None => panic!(
            "{what}: {} still running {bound:?} after the fault (a hang)\n{}",
            p.name(),
            p.log_tail()
        ),
    }
}

/// The last `n` characters of `text`.
fn tail(text: &str, n: usize) -> String {
    let skip = text.chars().count().saturating_sub(n);
    text.chars().skip(skip).collect()
}

/// SIGKILLs a node's process and waits until it is gone.
fn kill_node(process: &Process, what: &str) {
    process.signal(libc::SIGKILL);
    wait_gone(process, what);
}

/// Waits until a process that was sent SIGKILL is gone.
fn wait_gone(process: &Process, what: &str) {
    wait_for(
        &format!("{what} (pid {}) gone after SIGKILL", process.pid()),
        Duration::from_secs(10),
        || !pid_alive(process.pid()),
        String::new,
    );
}

/// True while `pid` exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": COMM may hold spaces, so read after the last ')'.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// SIGSTOPs a process; SIGCONTs it when dropped (also on panic), so it can stop.
struct Stalled<'a>(&'a Process);

impl<'a> Stalled<'a> {
    fn new(p: &'a Process) -> Stalled<'a> {
        p.signal(libc::SIGSTOP);
        Stalled(p)
    }
}

impl Drop for Stalled<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

// ---------------------------------------------------------------------------------
// 1. A Tahoe client killed mid-upload

/// The client node running an upload is SIGKILLed mid-upload, in both directions
/// at once. Its storage connection dies with it: over Foolscap, swampgate sees the
/// canary's connection drop and aborts the upload upstream; over HTTP there is no
/// connection to watch, and swampgate aborts the upload once nobody has written to
/// it for `upload_idle_timeout_secs`. Asserted: no partial share is ever visible
/// upstream; within a bound the upstream's `incoming/` is empty and `/status` shows
/// no upload in flight; the restarted client's retry stores the file, byte-identical.
#[test]
fn tahoe_client_killed_mid_upload() {
    let mut g = grid(FAST_LIMITS);
    let Uploads {
        files,
        watches,
        mut puts,
    } = g.start_uploads("killed-client");
    let mut killed_at = Vec::new();
    g.on_mid_upload(&mut puts, |d| {
        g.client(d).process().signal(libc::SIGKILL);
        killed_at.push(Instant::now());
    });
    let killed = killed_at.into_iter().min().unwrap();
    for d in BOTH {
        wait_gone(g.client(d).process(), &format!("{d:?} client"));
    }
    for (d, put) in BOTH.iter().zip(&mut puts) {
        let (ok, took) = ends_within(put, FAULT_BOUND, killed, &format!("{d:?} put"));
        assert!(!ok, "{d:?}: the put succeeded although its node was killed");
        eprintln!("{d:?}: put failed {took:?} after the client was killed");
    }
    for d in BOTH {
        g.wait_clean(d, "client killed");
        eprintln!(
            "{d:?}: upstream clean {:?} after the kill",
            killed.elapsed()
        );
    }
    assert_no_partial_shares(watches);
    for (d, (path, data)) in BOTH.iter().zip(&files) {
        g.client_mut(*d).restart();
        g.put_get_retrying(*d, path, data, Duration::from_secs(60));
        assert_eq!(g.gateway.inflight_uploads(*d), 0, "{d:?}");
    }
}

// ---------------------------------------------------------------------------------
// 2. The upstream Tahoe node killed mid-upload, then restarted

/// The upstream storage node is SIGKILLed mid-upload, in both directions at once,
/// then restarted from the same dir (same identity, port, FURL and NURL). Asserted:
/// the client's put ends within a bound (no hang); no partial share is ever visible
/// upstream, before or after the restart; swampgate forgets the lost uploads (no
/// upload left in flight); once the node is back a retried put succeeds and reads
/// back identical.
#[test]
fn upstream_node_killed_mid_upload_then_restarted() {
    let mut g = grid(FAST_LIMITS);
    let Uploads {
        files,
        watches,
        mut puts,
    } = g.start_uploads("killed-upstream");
    let mut killed_at = Vec::new();
    g.on_mid_upload(&mut puts, |d| {
        g.upstream(d).process().signal(libc::SIGKILL);
        killed_at.push(Instant::now());
    });
    let killed = killed_at.into_iter().min().unwrap();
    for d in BOTH {
        wait_gone(g.upstream(d).process(), &format!("{d:?} upstream"));
    }
    for (d, put) in BOTH.iter().zip(&mut puts) {
        let (ok, took) = ends_within(put, FAULT_BOUND, killed, &format!("{d:?} put"));
        eprintln!("{d:?}: put ended (success: {ok}) {took:?} after the upstream was killed");
    }
    for d in BOTH {
        g.upstream_mut(d).restart();
    }
    for d in BOTH {
        // Tahoe empties incoming/ at start; swampgate must let go of the uploads too.
        g.wait_clean(d, "upstream killed and restarted");
    }
    assert_no_partial_shares(watches);
    for (d, (path, data)) in BOTH.iter().zip(&files) {
        g.put_get_retrying(*d, path, data, Duration::from_secs(90));
        assert_eq!(g.gateway.inflight_uploads(*d), 0, "{d:?}");
    }
}

// ---------------------------------------------------------------------------------
// 3. A stalled upstream

/// A call through a link whose upstream is SIGSTOPped (its socket accepts, nothing
/// answers) ends with an error within a bound set by swampgate's limits, one
/// direction at a time, while the other link keeps serving its client.
/// - F→H: Tahoe's Foolscap client has no call timeout, so its put ending at all is
///   swampgate's `upstream_timeout_secs` at work;
/// - H→F: Tahoe's HTTP client gives up by itself (5 s liveness polls, 60 s
///   requests), so the bound is also checked with a direct GBS call through the
///   link, made with a 120 s timeout of its own: swampgate's idle disconnect
///   (`keepalive_secs`, `idle_timeout_secs`) answers it.
///
/// After SIGCONT the link serves again, and the failed put left no upload behind
/// (upstream `incoming/` empty, none in flight).
#[test]
fn stalled_upstream_calls_end_in_bounded_time() {
    let g = grid(FAST_LIMITS);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for d in BOTH {
        let (small, _) = g.file(&format!("stalled-{}", d.link()), 200_000);
        let (healthy, healthy_data) = g.file(&format!("meanwhile-{}", d.link()), 300_000);
        let stall = Stalled::new(g.upstream(d).process());
        let stalled_at = Instant::now();
        let mut put = g.spawn_put(d, &small);
        let ((ok, took), ()) = join(
            || ends_within(&mut put, FAULT_BOUND, stalled_at, &format!("{d:?} put")),
            // Meanwhile the other link serves its client as usual: first try.
            || {
                g.put_get_retrying(d.other(), &healthy, &healthy_data, Duration::ZERO);
            },
        );
        assert!(!ok, "{d:?}: a put to a stalled upstream succeeded");
        eprintln!(
            "{d:?}: put to the stalled upstream failed after {took:?}: {}",
            tail(put.stderr().trim(), 300)
        );
        if d == Dir::HF {
            let nurl: swampgate::gbs::nurl::Nurl = g.gateway.nurl(d).parse().unwrap();
            let config = swampgate::gbs::client::ClientConfig {
                request_timeout: Duration::from_secs(120),
                body_idle_timeout: Duration::from_secs(120),
                ..Default::default()
            };
            let client = swampgate::gbs::client::GbsClient::new(&nurl, config).unwrap();
            let asked = Instant::now();
            let r = rt.block_on(async {
                use swampgate::storage::StorageApi;
                client.version().await
            });
            assert!(r.is_err(), "{d:?}: version from a stalled upstream: {r:?}");
            assert!(
                asked.elapsed() < STALLED_CALL_BOUND,
                "{d:?}: the direct call took {:?}",
                asked.elapsed()
            );
            eprintln!(
                "{d:?}: direct GBS call failed after {:?}: {r:?}",
                asked.elapsed()
            );
        }
        drop(stall);
        let (again, again_data) = g.file(&format!("after-stall-{}", d.link()), 300_000);
        g.put_get_retrying(d, &again, &again_data, Duration::from_secs(60));
        // The put that failed during the stall left nothing behind, upstream or here.
        g.wait_clean(d, "stall over");
    }
}

// ---------------------------------------------------------------------------------
// 4. swampgate killed mid-upload, then restarted

/// swampgate is SIGKILLed while both clients upload through it (each upload held
/// mid-way by SIGSTOPping its client node until the kill, then resumed), then
/// restarted on the same port and state. Asserted: the puts end within a bound; no partial share
/// is ever visible upstream; each upstream's `incoming/` becomes empty — the
/// Foolscap node aborts on its own when swampgate's connection (holding the
/// canaries) dies, the HTTP node, which ties no upload to a connection, once the
/// restarted swampgate aborts the uploads its predecessor left unfinished; then the
/// clients' retries succeed, byte-identical.
#[test]
fn gateway_killed_mid_upload_then_restarted() {
    let mut g = grid(HOLD_LIMITS);
    let Uploads {
        files,
        watches,
        mut puts,
    } = g.start_uploads("killed-gateway");
    // Each upload is held where it was caught (its client node SIGSTOPped), so
    // that both are in progress when swampgate dies, however fast either is.
    let mut held = Vec::new();
    g.on_mid_upload(&mut puts, |d| {
        held.push(Stalled::new(g.client(d).process()))
    });
    for d in BOTH {
        // Not dropped by swampgate as a silent peer or an idle upload (HOLD_LIMITS).
        // The upstream's incoming/ share appears when it allocates, a moment before
        // swampgate has the answer and counts the upload: wait for that moment.
        wait_for(
            &format!("{d:?}: the upload is in flight when swampgate is killed"),
            Duration::from_secs(10),
            || g.gateway.inflight_uploads(d) == 1,
            || g.gateway.status().to_string(),
        );
    }
    let killed = Instant::now();
    kill_node(&g.gateway.process, "swampgate");
    drop(held);
    for (d, put) in BOTH.iter().zip(&mut puts) {
        let (ok, took) = ends_within(put, FAULT_BOUND, killed, &format!("{d:?} put"));
        assert!(
            !ok,
            "{d:?}: the put succeeded although swampgate was killed"
        );
        eprintln!("{d:?}: put failed {took:?} after swampgate was killed");
    }
    // The Foolscap upstream aborts by itself: swampgate's connection is gone.
    let node = g.upstream(Dir::HF);
    let took = wait_for(
        "H→F upstream incoming/ empty after swampgate died",
        CLEANUP_BOUND,
        || incoming_shares(node).is_empty(),
        || format!("{:?}", incoming_shares(node)),
    );
    eprintln!("HF: upstream incoming/ empty {took:?} after the kill");
    g.gateway.restart();
    for d in BOTH {
        g.wait_clean(d, "swampgate killed and restarted");
        eprintln!(
            "{d:?}: upstream clean {:?} after the kill",
            killed.elapsed()
        );
    }
    assert_no_partial_shares(watches);
    for (d, (path, data)) in BOTH.iter().zip(&files) {
        let ids = [g.upstream(*d).server_id()];
        g.client(*d).wait_for_servers(&ids);
        g.put_get_retrying(*d, path, data, Duration::from_secs(90));
        assert_eq!(g.gateway.inflight_uploads(*d), 0, "{d:?}");
    }
}
