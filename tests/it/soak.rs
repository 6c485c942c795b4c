//! Soak: mixed traffic from real Tahoe-LAFS 1.20 clients through one swampgate, in
//! both directions at once, for a given time; every byte read back is compared with
//! what was written, and swampgate's memory is watched.
//!
//! ```sh
//! cargo test --test soak -- --nocapture                                # short (CI)
//! SWAMPGATE_SOAK_SECS=1800 cargo test --release --test soak -- --nocapture  # 30 minutes
//! ```
//!
//! Setup: a Tahoe storage node speaking GBS and Foolscap, a Foolscap-only Tahoe
//! storage node, and one `swampgate run --config` with two links on one port:
//! `to-gbs` (upstream: the first node's NURL) and `to-foolscap` (upstream: the
//! second node's FURL). No link adopts a node (links on one port share one
//! identity), so both clients see swampgate's own tubid, which is what they derive
//! lease secrets and write enablers from; they reach storage only through swampgate.
//! Two Tahoe client nodes:
//!
//! - `foolscap->gbs`: a client with `[client] force_foolscap = true` whose only
//!   server is link `to-gbs` (its FURL): Foolscap client, GBS upstream;
//! - `gbs->foolscap`: an HTTP client whose only server is link `to-foolscap` (its
//!   NURL): GBS client, Foolscap upstream.
//!
//! One thread per direction drives its client's web API (plain HTTP to the client's
//! web port) in a bounded loop: until the duration is up it runs one more iteration
//! of a fixed list of requests, each with a timeout of [`OP_TIMEOUT`], so a run
//! ends at most one iteration after its duration. One iteration:
//!
//! - immutable: a literal (under 56 bytes, kept in the cap), a small CHK file
//!   (1-8 KB) and a multi-segment CHK file (0.75-1.25 MB, 128 KiB segments), each
//!   put, read back whole, and the large one read back by a `Range` too;
//! - mutable: an SDMF file created, overwritten, read back; an MDMF file
//!   (three segments) created, overwritten, updated in place at an offset, read back;
//! - directory: created, a child file added, listed (child, size and cap checked),
//!   the child read back through the directory;
//! - one file from an earlier iteration (a bounded history of 32) read back again.
//!
//! File contents are pseudo-random per direction, iteration and request, so no two
//! uploads converge to the same storage index. Errors (a failed request, a wrong
//! status or cap, a byte that differs) are counted, not fatal, so the run goes on and
//! the report shows them all; the test fails at the end if there was any.
//!
//! Memory: swampgate's `VmRSS` and `VmHWM` (from `/proc/PID/status`) are sampled
//! every [`RSS_INTERVAL`]; the peak is the largest `VmHWM`. The warm-up point is the
//! later of a quarter of the duration and the end of each direction's first
//! iteration (so every request kind has run once). RSS is compared as the median of
//! the samples in two windows, each a twentieth of the duration (5 s to 60 s): the
//! one starting at the warm-up point and the last one of the traffic; a single
//! sample moves by several MiB with whatever bodies are in flight. The growth, end
//! minus warm-up, must stay within `max(16 MiB, 25% of the warm-up RSS)`: the floor
//! absorbs allocator noise (malloc arenas per worker thread, buffers sized by the
//! bodies in flight), the fraction scales with the size of the process. A leak per
//! request or per connection climbs with the traffic, so a long run pushes it past
//! the bound; the least-squares slope after warm-up (KiB/min) is reported too.
//!
//! The report is printed and written as JSON to `SWAMPGATE_SOAK_REPORT` (default
//! `target/tmp/soak-report.json`); its path is printed. It is written before the
//! assertions, so a failed run leaves its report too.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::kit::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Seconds of traffic; unset means [`DEFAULT_SECS`].
const SECS_ENV: &str = "SWAMPGATE_SOAK_SECS";
/// The short soak plain `cargo test` runs.
const DEFAULT_SECS: u64 = 45;
/// Where the JSON report goes (default `$CARGO_TARGET_TMPDIR/soak-report.json`).
const REPORT_ENV: &str = "SWAMPGATE_SOAK_REPORT";
/// Upper bound for one web API request (connect, send, whole response).
const OP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often swampgate's memory is sampled.
const RSS_INTERVAL: Duration = Duration::from_secs(1);
/// RSS growth after warm-up that always passes.
const GROWTH_FLOOR_KIB: u64 = 16 * 1024;
/// RSS growth after warm-up that passes, as a fraction of the warm-up RSS.
const GROWTH_FRACTION: f64 = 0.25;
/// The warm-up point is at least this fraction of the duration into the run.
const WARMUP_FRACTION: f64 = 0.25;
/// The warm-up and end windows last a twentieth of the duration, within these.
const WINDOW_MIN_SECS: f64 = 5.0;
const WINDOW_MAX_SECS: f64 = 60.0;
/// Files from earlier iterations kept for reading back again.
const HISTORY: usize = 32;
/// Error messages kept per direction (all are counted).
const KEPT_ERRORS: usize = 20;
/// Tahoe's largest literal (`URI:LIT:`) file.
const LIT_MAX: usize = 55;

#[test]
fn soak_mixed_traffic_both_directions() {
    let secs = soak_secs();
    let duration = Duration::from_secs(secs);
    let (gbs_node, foolscap_node) = join(
        || {
            storage_node(StorageOptions {
                nickname: "storage-gbs".into(),
                ..StorageOptions::default()
            })
        },
        || storage_node(StorageOptions::foolscap_only()),
    );
    let mut work = tempfile::Builder::new()
        .prefix("swampgate-soak-")
        .tempdir()
        .unwrap();
    if std::env::var_os(KEEP_ENV).is_some() {
        work.disable_cleanup(true);
        eprintln!(
            "soak: swampgate lives in {} (kept: {KEEP_ENV} is set)",
            work.path().display()
        );
    }
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         [[link]]\nname = \"to-gbs\"\nupstream = \"{}\"\n\
         [[link]]\nname = \"to-foolscap\"\nupstream = \"{}\"\n",
        gbs_node.nurl(),
        foolscap_node.furl()
    );
    std::fs::write(work.path().join("soak.toml"), config).unwrap();
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "soak.toml", "--state-dir", "state"])
        .current_dir(work.path());
    let mut sg = Process::spawn("swampgate", cmd, work.path());
    let url = |sg: &mut Process, prefix: &str| {
        let line = sg.wait_for_line(prefix, STARTUP_TIMEOUT);
        line.rsplit(' ').next().unwrap().to_owned()
    };
    let to_gbs_furl = url(&mut sg, "link to-gbs furl ");
    let to_foolscap_furl = url(&mut sg, "link to-foolscap furl ");
    let to_foolscap_nurl = url(&mut sg, "link to-foolscap nurl ");
    let (foolscap_client, http_client) = join(
        || {
            client_node(ClientOptions {
                nickname: "client-foolscap".into(),
                force_foolscap: true,
                servers: vec![StaticServer {
                    furl: to_gbs_furl.clone(),
                    nurls: vec![],
                    ..gbs_node.static_server()
                }],
                ..ClientOptions::default()
            })
        },
        || {
            client_node(ClientOptions {
                nickname: "client-http".into(),
                force_foolscap: false,
                servers: vec![StaticServer {
                    furl: to_foolscap_furl.clone(),
                    nurls: vec![to_foolscap_nurl.clone()],
                    ..foolscap_node.static_server()
                }],
                ..ClientOptions::default()
            })
        },
    );
    // Both clients say "connected" by now; which protocol each uses is in the
    // summary Tahoe shows (Foolscap: "Connected to tcp:...", HTTP: "connected").
    let summary = |c: &ClientNode| c.server_statuses()[0].summary.clone();
    assert!(
        summary(&foolscap_client).starts_with("Connected to tcp:"),
        "the Foolscap client speaks Foolscap: {}",
        summary(&foolscap_client)
    );
    assert_eq!(
        summary(&http_client),
        "connected",
        "the HTTP client speaks HTTP"
    );

    let pid = sg.pid();
    println!(
        "soak: {secs} s of traffic, swampgate pid {pid} ({} build)",
        profile()
    );
    let start = Instant::now();
    let deadline = start + duration;
    let stop_sampling = AtomicBool::new(false);
    let samples = Mutex::new(Vec::<RssSample>::new());
    let directions = [
        Direction {
            name: "foolscap->gbs",
            path: "Foolscap-only Tahoe client -> swampgate link to-gbs -> Tahoe storage node over GBS",
            seed: 1,
            web_port: foolscap_client.web_port(),
        },
        Direction {
            name: "gbs->foolscap",
            path: "HTTP Tahoe client -> swampgate link to-foolscap -> Foolscap-only Tahoe storage node",
            seed: 2,
            web_port: http_client.web_port(),
        },
    ];
    let stats: Vec<Stats> = thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            while !stop_sampling.load(Ordering::Relaxed) {
                let sample = RssSample::take(pid, start);
                samples.lock().unwrap().push(sample);
                let next = Instant::now() + RSS_INTERVAL;
                while Instant::now() < next && !stop_sampling.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                }
            }
        });
        let workers: Vec<_> = directions
            .iter()
            .map(|d| scope.spawn(move || d.run(start, deadline)))
            .collect();
        // Stop the sampler even if a worker panicked, then pass the panic on.
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        stop_sampling.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let traffic = start.elapsed();
    let mut samples = samples.into_inner().unwrap();
    // The RSS after the last request.
    samples.push(RssSample::take(pid, start));
    let swampgate_exited = sg.try_status();

    let report = Report::new(secs, traffic, &stats, &samples);
    let path = report_path();
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report.json(&directions, &stats, &samples)).unwrap() + "\n",
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    report.print(&directions, &stats);
    println!("soak: report written to {}", path.display());

    assert!(
        swampgate_exited.is_none(),
        "swampgate exited during the soak ({swampgate_exited:?})\n{}",
        sg.log_tail()
    );
    for (d, s) in directions.iter().zip(&stats) {
        assert_eq!(
            s.errors,
            0,
            "{}: {} errors, first ones:\n{}\n{}",
            d.name,
            s.errors,
            s.error_messages.join("\n"),
            sg.log_tail()
        );
        assert!(s.iterations >= 1, "{}: no iteration completed", d.name);
        assert!(s.bytes_verified > 0, "{}: nothing verified", d.name);
    }
    assert_eq!(
        report.sample_gaps, 0,
        "RSS samples failed (swampgate gone?)"
    );
    let (Some(warm), Some(end)) = (report.warmup, report.end) else {
        panic!(
            "the run was too short to measure RSS growth (warm-up due at {:.1} s, windows of \
             {:.0} s, {:.1} s of traffic): raise {SECS_ENV}",
            report.warmup_due, report.window_secs, report.traffic_secs
        )
    };
    assert!(
        report.growth_kib <= report.bound_kib as i64,
        "swampgate's RSS grew by {} KiB after warm-up (median {} KiB at {:.0}-{:.0} s, \
         {} KiB at {:.0}-{:.0} s), over the bound of {} KiB",
        report.growth_kib,
        warm.median_kib,
        warm.from_secs,
        warm.to_secs,
        end.median_kib,
        end.from_secs,
        report.traffic_secs,
        report.bound_kib
    );
}

fn soak_secs() -> u64 {
    match std::env::var(SECS_ENV) {
        Err(_) => DEFAULT_SECS,
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{SECS_ENV}={s:?}: want a positive number of seconds"),
        },
    }
}

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn report_path() -> PathBuf {
    match std::env::var_os(REPORT_ENV) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("soak-report.json"),
    }
}

// ---------------------------------------------------------------------------------
// Traffic

/// One direction: a Tahoe client node, reached by its web API.
struct Direction {
    name: &'static str,
    path: &'static str,
    seed: u64,
    web_port: u16,
}

/// What one direction did.
#[derive(Default)]
struct Stats {
    iterations: u64,
    operations: u64,
    ops_by_kind: BTreeMap<&'static str, u64>,
    bytes_uploaded: u64,
    bytes_verified: u64,
    errors: u64,
    error_messages: Vec<String>,
    /// Slowest request (ms) and what it was.
    slowest: (u128, String),
    /// Seconds from the start when the first iteration ended.
    first_iteration_done: Option<f64>,
}

/// A file written earlier and what it must read back as.
struct Stored {
    what: String,
    cap: String,
    len: usize,
    sha256: [u8; 32],
}

/// The state of one direction's loop.
struct Traffic<'a> {
    dir: &'a Direction,
    stats: Stats,
    history: VecDeque<Stored>,
    iteration: u64,
}

impl Direction {
    /// The bounded loop: iterations until `deadline`, each a fixed list of requests.
    fn run(&self, start: Instant, deadline: Instant) -> Stats {
        let mut t = Traffic {
            dir: self,
            stats: Stats::default(),
            history: VecDeque::new(),
            iteration: 0,
        };
        while Instant::now() < deadline {
            t.iteration();
            t.stats.iterations += 1;
            t.iteration += 1;
            if t.stats.first_iteration_done.is_none() {
                t.stats.first_iteration_done = Some(start.elapsed().as_secs_f64());
            }
        }
        t.stats
    }
}

impl Traffic<'_> {
    fn iteration(&mut self) {
        let i = self.iteration;
        let vary = |modulus: u64| (i.wrapping_mul(7919) + self.dir.seed * 104_729) % modulus;
        let lit_len = 1 + vary(LIT_MAX as u64) as usize;
        let small_len = 1000 + vary(7000) as usize;
        let large_len = 750_000 + vary(500_000) as usize;
        for scenario in [
            "literal",
            "small",
            "large",
            "sdmf",
            "mdmf",
            "directory",
            "reread",
        ] {
            let result = match scenario {
                "literal" => self.immutable("literal", lit_len, "URI:LIT:", false),
                "small" => self.immutable("small", small_len, "URI:CHK:", false),
                "large" => self.immutable("large", large_len, "URI:CHK:", true),
                "sdmf" => self.sdmf(),
                "mdmf" => self.mdmf(),
                "directory" => self.directory(),
                _ => self.reread(),
            };
            if let Err(e) = result {
                self.error(format!("iteration {i} {scenario}: {e}"));
            }
        }
    }

    fn error(&mut self, message: String) {
        self.stats.errors += 1;
        if self.stats.error_messages.len() < KEPT_ERRORS {
            self.stats.error_messages.push(message);
        }
    }

    /// Contents for request `n` of this iteration.
    fn data(&self, n: u64, len: usize) -> Vec<u8> {
        pseudo_random((self.dir.seed << 56) ^ (self.iteration << 8) ^ n, len)
    }

    /// One web API request, counted under `kind`; the response body if the status
    /// is one of `ok`.
    fn request(
        &mut self,
        kind: &'static str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        ok: &[u16],
    ) -> Result<Vec<u8>, String> {
        self.stats.operations += 1;
        *self.stats.ops_by_kind.entry(kind).or_default() += 1;
        self.stats.bytes_uploaded += body.len() as u64;
        let started = Instant::now();
        let result = http(self.dir.web_port, method, path, headers, body, OP_TIMEOUT);
        let ms = started.elapsed().as_millis();
        if ms > self.stats.slowest.0 {
            self.stats.slowest = (ms, format!("{kind} {method} {}", short(path)));
        }
        let (status, body) = result.map_err(|e| format!("{method} {}: {e}", short(path)))?;
        if !ok.contains(&status) {
            return Err(format!(
                "{method} {}: status {status}: {}",
                short(path),
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ));
        }
        Ok(body)
    }

    /// `PUT /uri` (with `query`): returns the new cap, which must start with `prefix`.
    fn put_new(
        &mut self,
        kind: &'static str,
        query: &str,
        data: &[u8],
        prefix: &str,
    ) -> Result<String, String> {
        let body = self.request(kind, "PUT", &format!("/uri{query}"), &[], data, &[200, 201])?;
        let cap = String::from_utf8(body).map_err(|_| "cap is not UTF-8".to_owned())?;
        let cap = cap.trim().to_owned();
        if !cap.starts_with(prefix) {
            return Err(format!(
                "PUT /uri{query}: cap {cap:?} does not start with {prefix}"
            ));
        }
        Ok(cap)
    }

    /// `GET /uri/CAP` and compare with `want`.
    fn get_and_compare(
        &mut self,
        kind: &'static str,
        cap: &str,
        want: &[u8],
    ) -> Result<(), String> {
        let got = self.request(kind, "GET", &format!("/uri/{cap}"), &[], &[], &[200])?;
        self.compare(cap, &got, want)
    }

    fn compare(&mut self, what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
        if got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b);
            return Err(format!(
                "{}: read back {} bytes, wrote {}, first difference at {:?}",
                short(what),
                got.len(),
                want.len(),
                first
            ));
        }
        self.stats.bytes_verified += got.len() as u64;
        Ok(())
    }

    fn remember(&mut self, what: String, cap: String, data: &[u8]) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Stored {
            what,
            cap,
            len: data.len(),
            sha256: Sha256::digest(data).into(),
        });
    }

    fn immutable(
        &mut self,
        kind: &'static str,
        len: usize,
        prefix: &str,
        range: bool,
    ) -> Result<(), String> {
        let data = self.data(kind.len() as u64, len);
        let cap = self.put_new("put-immutable", "", &data, prefix)?;
        self.get_and_compare("get", &cap, &data)?;
        if range {
            // A range across a segment boundary (128 KiB segments).
            let from = 100_000 + (self.iteration as usize * 4099) % 200_000;
            let to = from + 150_000;
            let header = format!("bytes={from}-{}", to - 1);
            let got = self.request(
                "get-range",
                "GET",
                &format!("/uri/{cap}"),
                &[("Range", header.as_str())],
                &[],
                &[206],
            )?;
            self.compare(&format!("{cap} {header}"), &got, &data[from..to])?;
        }
        self.remember(
            format!("{kind} file of iteration {}", self.iteration),
            cap,
            &data,
        );
        Ok(())
    }

    /// Replace a mutable file's contents with `data`, then read it back.
    fn overwrite_and_compare(&mut self, cap: &str, data: &[u8]) -> Result<(), String> {
        self.request(
            "overwrite-mutable",
            "PUT",
            &format!("/uri/{cap}"),
            &[],
            data,
            &[200, 201],
        )?;
        self.get_and_compare("get", cap, data)
    }

    /// SDMF: create, overwrite with other contents, read back.
    fn sdmf(&mut self) -> Result<(), String> {
        let v1 = self.data(10, 2000 + (self.iteration as usize * 31) % 8000);
        let v2 = self.data(11, 3000 + (self.iteration as usize * 37) % 12000);
        let cap = self.put_new("create-mutable", "?format=SDMF", &v1, "URI:SSK:")?;
        self.get_and_compare("get", &cap, &v1)?;
        self.overwrite_and_compare(&cap, &v2)?;
        self.remember(
            format!("SDMF file of iteration {}", self.iteration),
            cap,
            &v2,
        );
        Ok(())
    }

    /// MDMF (three segments): create, overwrite, update in place at an offset across
    /// a segment boundary, read back.
    fn mdmf(&mut self) -> Result<(), String> {
        let v1 = self.data(20, 300_000);
        let v2 = self.data(21, 280_000 + (self.iteration as usize * 41) % 40_000);
        let cap = self.put_new("create-mutable", "?format=MDMF", &v1, "URI:MDMF:")?;
        self.overwrite_and_compare(&cap, &v2)?;
        let patch = self.data(22, 5000);
        let offset = 128 * 1024 - 2000;
        self.request(
            "update-mutable",
            "PUT",
            &format!("/uri/{cap}?offset={offset}"),
            &[],
            &patch,
            &[200, 201],
        )?;
        let mut v3 = v2;
        v3[offset..offset + patch.len()].copy_from_slice(&patch);
        self.get_and_compare("get", &cap, &v3)?;
        self.remember(
            format!("MDMF file of iteration {}", self.iteration),
            cap,
            &v3,
        );
        Ok(())
    }

    /// A directory: create, add a child, list it, read the child through it.
    fn directory(&mut self) -> Result<(), String> {
        let body = self.request("mkdir", "POST", "/uri?t=mkdir", &[], &[], &[200, 201])?;
        let dircap = String::from_utf8_lossy(&body).trim().to_owned();
        if !dircap.starts_with("URI:DIR2:") {
            return Err(format!("mkdir: {dircap:?} is no directory cap"));
        }
        let name = format!("child-{}", self.iteration);
        let data = self.data(30, 4000 + (self.iteration as usize * 53) % 4000);
        let body = self.request(
            "add-child",
            "PUT",
            &format!("/uri/{dircap}/{name}"),
            &[],
            &data,
            &[200, 201],
        )?;
        let filecap = String::from_utf8_lossy(&body).trim().to_owned();
        let listing = self.request(
            "list-dir",
            "GET",
            &format!("/uri/{dircap}?t=json"),
            &[],
            &[],
            &[200],
        )?;
        let listing: Value =
            serde_json::from_slice(&listing).map_err(|e| format!("listing: {e}"))?;
        let child = &listing[1]["children"][&name];
        if child[0] != "filenode"
            || child[1]["size"] != json!(data.len())
            || child[1]["ro_uri"] != json!(filecap)
        {
            return Err(format!(
                "listing of {}: child {name} is {child}, want a filenode of {} bytes, {filecap}",
                short(&dircap),
                data.len()
            ));
        }
        let got = self.request(
            "get",
            "GET",
            &format!("/uri/{dircap}/{name}"),
            &[],
            &[],
            &[200],
        )?;
        self.compare(&format!("{dircap}/{name}"), &got, &data)?;
        self.remember(
            format!("directory child of iteration {}", self.iteration),
            format!("{dircap}/{name}"),
            &data,
        );
        Ok(())
    }

    /// Read back a file from an earlier iteration.
    fn reread(&mut self) -> Result<(), String> {
        if self.history.is_empty() {
            return Ok(());
        }
        let n = (self.iteration as usize * 13) % self.history.len();
        let (what, cap, len, sha256) = {
            let s = &self.history[n];
            (s.what.clone(), s.cap.clone(), s.len, s.sha256)
        };
        let got = self.request("reread", "GET", &format!("/uri/{cap}"), &[], &[], &[200])?;
        if got.len() != len || <[u8; 32]>::from(Sha256::digest(&got)) != sha256 {
            return Err(format!(
                "{what} ({}) read back as {} bytes that differ from the {len} written",
                short(&cap),
                got.len()
            ));
        }
        self.stats.bytes_verified += got.len() as u64;
        Ok(())
    }
}

/// `len` bytes from a SplitMix64 stream seeded by `seed`.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A path for messages: caps shortened.
fn short(s: &str) -> String {
    if s.len() > 60 {
        format!("{}...", &s[..60])
    } else {
        s.to_owned()
    }
}

// ---------------------------------------------------------------------------------
// Memory

#[derive(Clone, Copy, Debug)]
struct RssSample {
    at_secs: f64,
    /// `VmRSS` in KiB; 0 if `/proc/PID/status` could not be read.
    rss_kib: u64,
    /// `VmHWM` (peak RSS so far) in KiB.
    hwm_kib: u64,
}

impl RssSample {
    fn take(pid: u32, start: Instant) -> RssSample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        RssSample {
            at_secs: start.elapsed().as_secs_f64(),
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }
}

/// The median RSS over a window of the run.
#[derive(Clone, Copy, Debug)]
struct Window {
    from_secs: f64,
    to_secs: f64,
    samples: usize,
    median_kib: u64,
}

impl Window {
    /// The samples in `[from, to]`; `None` if there are none.
    fn of(samples: &[RssSample], from_secs: f64, to_secs: f64) -> Option<Window> {
        let mut kib: Vec<u64> = samples
            .iter()
            .filter(|s| s.at_secs >= from_secs && s.at_secs <= to_secs && s.rss_kib > 0)
            .map(|s| s.rss_kib)
            .collect();
        kib.sort_unstable();
        (!kib.is_empty()).then(|| Window {
            from_secs,
            to_secs,
            samples: kib.len(),
            median_kib: kib[kib.len() / 2],
        })
    }

    fn json(&self) -> Value {
        json!({
            "from_secs": self.from_secs,
            "to_secs": self.to_secs,
            "samples": self.samples,
            "median_kib": self.median_kib,
        })
    }
}

/// The numbers the test asserts on.
struct Report {
    secs: u64,
    traffic_secs: f64,
    /// Length of the warm-up and end windows.
    window_secs: f64,
    /// When the warm-up point is due (seconds from the start).
    warmup_due: f64,
    /// The window from the warm-up point on; `None` if the run was too short to
    /// have it before the end window.
    warmup: Option<Window>,
    /// The last window of traffic.
    end: Option<Window>,
    /// RSS after the last request.
    final_kib: u64,
    peak_hwm_kib: u64,
    growth_kib: i64,
    bound_kib: u64,
    slope_kib_per_min: Option<f64>,
    sample_gaps: usize,
}

impl Report {
    /// `samples` ends with the one taken after the last request.
    fn new(secs: u64, traffic: Duration, stats: &[Stats], samples: &[RssSample]) -> Report {
        let traffic_secs = traffic.as_secs_f64();
        let window_secs = (secs as f64 / 20.0).clamp(WINDOW_MIN_SECS, WINDOW_MAX_SECS);
        let warmup_due = stats
            .iter()
            .map(|s| s.first_iteration_done.unwrap_or(f64::INFINITY))
            .fold(secs as f64 * WARMUP_FRACTION, f64::max);
        let end_from = traffic_secs - window_secs;
        let last = samples.last().map_or(traffic_secs, |s| s.at_secs);
        let end = Window::of(samples, end_from, last);
        let warmup = if warmup_due + window_secs <= end_from {
            Window::of(samples, warmup_due, warmup_due + window_secs)
        } else {
            None
        };
        let growth_kib = match (warmup, end) {
            (Some(w), Some(e)) => e.median_kib as i64 - w.median_kib as i64,
            _ => 0,
        };
        let bound_kib = GROWTH_FLOOR_KIB
            .max((warmup.map_or(0, |w| w.median_kib) as f64 * GROWTH_FRACTION) as u64);
        let after: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.at_secs >= warmup_due && s.rss_kib > 0)
            .map(|s| (s.at_secs / 60.0, s.rss_kib as f64))
            .collect();
        Report {
            secs,
            traffic_secs,
            window_secs,
            warmup_due,
            warmup,
            end,
            final_kib: samples.last().map_or(0, |s| s.rss_kib),
            peak_hwm_kib: samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0),
            growth_kib,
            bound_kib,
            slope_kib_per_min: slope(&after),
            sample_gaps: samples.iter().filter(|s| s.rss_kib == 0).count(),
        }
    }

    fn passed(&self, stats: &[Stats]) -> bool {
        stats
            .iter()
            .all(|s| s.errors == 0 && s.iterations > 0 && s.bytes_verified > 0)
            && self.warmup.is_some()
            && self.end.is_some()
            && self.sample_gaps == 0
            && self.growth_kib <= self.bound_kib as i64
    }

    fn print(&self, directions: &[Direction], stats: &[Stats]) {
        println!(
            "soak: {:.1} s of traffic ({} s requested, {} build)",
            self.traffic_secs,
            self.secs,
            profile()
        );
        for (d, s) in directions.iter().zip(stats) {
            println!(
                "soak: {:<14} {} iterations, {} operations, {:.1} MB uploaded, \
                 {:.1} MB verified by download, {} errors; slowest {} ms ({})",
                d.name,
                s.iterations,
                s.operations,
                s.bytes_uploaded as f64 / 1e6,
                s.bytes_verified as f64 / 1e6,
                s.errors,
                s.slowest.0,
                s.slowest.1
            );
            for m in &s.error_messages {
                println!("soak:   error: {m}");
            }
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "soak: swampgate RSS: peak {:.1} MiB (VmHWM), {:.1} MiB after the last request",
            mib(self.peak_hwm_kib),
            mib(self.final_kib)
        );
        match (self.warmup, self.end) {
            (Some(w), Some(e)) => println!(
                "soak: swampgate RSS: median {:.1} MiB at warm-up ({:.0}-{:.0} s), \
                 {:.1} MiB at the end ({:.0}-{:.0} s): growth {:+.1} MiB, bound {:.1} MiB; \
                 slope after warm-up {}",
                mib(w.median_kib),
                w.from_secs,
                w.to_secs,
                mib(e.median_kib),
                e.from_secs,
                self.traffic_secs,
                self.growth_kib as f64 / 1024.0,
                mib(self.bound_kib),
                self.slope_kib_per_min
                    .map_or("n/a".to_owned(), |s| format!("{s:+.0} KiB/min"))
            ),
            _ => println!(
                "soak: no RSS growth measured: the warm-up window ({:.1} s + {:.0} s) does not \
                 end before the end window",
                self.warmup_due, self.window_secs
            ),
        }
        println!(
            "soak: {}",
            if self.passed(stats) {
                "PASSED"
            } else {
                "FAILED"
            }
        );
    }

    fn json(&self, directions: &[Direction], stats: &[Stats], samples: &[RssSample]) -> Value {
        json!({
            "requested_secs": self.secs,
            "traffic_secs": self.traffic_secs,
            "build": profile(),
            "finished_unix": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "passed": self.passed(stats),
            "directions": directions.iter().zip(stats).map(|(d, s)| json!({
                "name": d.name,
                "path": d.path,
                "iterations": s.iterations,
                "operations": s.operations,
                "operations_by_kind": s.ops_by_kind,
                "bytes_uploaded": s.bytes_uploaded,
                "bytes_verified": s.bytes_verified,
                "errors": s.errors,
                "error_messages": s.error_messages,
                "slowest_ms": s.slowest.0,
                "slowest": s.slowest.1,
                "first_iteration_done_secs": s.first_iteration_done,
            })).collect::<Vec<_>>(),
            "rss": {
                "interval_secs": RSS_INTERVAL.as_secs_f64(),
                "samples": samples.len(),
                "failed_samples": self.sample_gaps,
                "peak_kib": self.peak_hwm_kib,
                "final_kib": self.final_kib,
                "window_secs": self.window_secs,
                "warmup_due_secs": self.warmup_due,
                "warmup": self.warmup.map(|w| w.json()),
                "end": self.end.map(|e| e.json()),
                "growth_kib": self.growth_kib,
                "bound_kib": self.bound_kib,
                "bound_rule": format!(
                    "median(end window) - median(warm-up window) <= max({} KiB, {}% of median(warm-up window))",
                    GROWTH_FLOOR_KIB,
                    GROWTH_FRACTION * 100.0
                ),
                "slope_after_warmup_kib_per_min": self.slope_kib_per_min,
                "series": samples.iter()
                    .map(|s| json!([(s.at_secs * 10.0).round() / 10.0, s.rss_kib]))
                    .collect::<Vec<_>>(),
            },
        })
    }
}

/// Least-squares slope of `points` (y per unit of x); `None` with fewer than 2.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}
