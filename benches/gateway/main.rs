//! The gateway benchmark driver: swampgate side by side with direct connections, a
//! plain TLS relay and Tahoe-LAFS's own storage node, in one run, reported as medians,
//! min–max and ratios. See BENCHMARKS.md.
//!
//! ```sh
//! cargo bench --bench gateway                 # the whole suite (~10 minutes)
//! cargo bench --bench gateway -- --quick      # every measurement, smaller (~3 minutes)
//! cargo bench --bench gateway -- --only bulk,latency,scale,tahoe
//! ```
//!
//! Everything measured runs as its own process on 127.0.0.1 (swampgate, the relay,
//! real Tahoe 1.20 nodes from the test harness's venv) so that each one's CPU time and
//! memory can be read from `/proc`; the driver is the client and stops them all.

// The integration tests' kit: the bench uses only part of it.
#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/kit/mod.rs"]
mod kit;
mod relay;
mod report;
mod sys;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kit::*;
use report::Report;

/// What a run measures, and how much of it.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub groups: Vec<String>,
    /// Repetitions of each bulk, latency and Tahoe measurement.
    pub reps: usize,
    /// Bytes uploaded (then downloaded) per bulk measurement, over `bulk_shares`.
    pub bulk_bytes: u64,
    pub bulk_shares: u16,
    /// Calls per latency measurement.
    pub calls: usize,
    pub concurrent_uploads: usize,
    pub idle_connections: usize,
    /// Share sizes for the memory-flatness check (small, then large).
    pub share_sizes: (u64, u64),
    /// Bytes per Tahoe put/get.
    pub tahoe_bytes: usize,
    pub tahoe_reps: usize,
    /// Seconds of get_version calls per server.
    pub rate_secs: u64,
}

const MIB: u64 = 1 << 20;
const ALL_GROUPS: &[&str] = &["bulk", "latency", "scale", "tahoe"];

impl Plan {
    fn new(quick: bool, groups: Vec<String>) -> Plan {
        if quick {
            Plan {
                quick,
                groups,
                reps: 2,
                bulk_bytes: 128 * MIB,
                bulk_shares: 4,
                calls: 500,
                concurrent_uploads: 1000,
                idle_connections: 1000,
                share_sizes: (16 * MIB, 128 * MIB),
                tahoe_bytes: 16 << 20,
                tahoe_reps: 1,
                rate_secs: 2,
            }
        } else {
            Plan {
                quick,
                groups,
                reps: 3,
                bulk_bytes: 1024 * MIB,
                bulk_shares: 4,
                calls: 3000,
                concurrent_uploads: 1000,
                idle_connections: 10_000,
                share_sizes: (64 * MIB, 1024 * MIB),
                tahoe_bytes: 64 << 20,
                tahoe_reps: 3,
                rate_secs: 5,
            }
        }
    }

    fn runs(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench gateway [-- [--quick] [--only GROUP,...] [--out FILE.md]]\n\
         groups: {}",
        ALL_GROUPS.join(", ")
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__relay") {
        relay::main(&args[1], &args[2]);
        return;
    }
    let mut quick = false;
    let mut groups: Vec<String> = ALL_GROUPS.iter().map(|s| s.to_string()).collect();
    let mut out: Option<PathBuf> = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "--quick" => quick = true,
            "--only" => {
                let v = it.next().unwrap_or_else(|| usage());
                groups = v.split(',').map(str::to_owned).collect();
                if let Some(g) = groups.iter().find(|g| !ALL_GROUPS.contains(&g.as_str())) {
                    eprintln!("unknown group {g:?}");
                    usage();
                }
            }
            "--out" => out = Some(it.next().unwrap_or_else(|| usage()).into()),
            _ => {
                eprintln!("unknown argument {a:?}");
                usage();
            }
        }
    }
    let plan = Plan::new(quick, groups);
    let started = std::time::SystemTime::now();
    let mut report = Report::default();
    eprintln!("gateway benchmarks: {plan:?}");
    report.note(
        "the driver process is the client of every Rust-client measurement; it shares \
         the machine's cores with the processes it measures, as every case does",
    );
    if plan.runs("bulk") || plan.runs("latency") {
        workloads::embedded(&plan, &mut report);
    }
    if plan.runs("scale") {
        workloads::scale(&plan, &mut report);
    }
    if plan.runs("tahoe") {
        workloads::tahoe(&plan, &mut report);
    }
    workloads::verdicts(&plan, &mut report);

    let secs = started.elapsed().map_or(0, |d| d.as_secs());
    let header = format!(
        "Run: `cargo bench --bench gateway{}{}`, {}, {} s, on {}.\n",
        if plan.quick { " -- --quick" } else { "" },
        if plan.groups.len() < ALL_GROUPS.len() {
            format!(" --only {}", plan.groups.join(","))
        } else {
            String::new()
        },
        date(),
        secs,
        sys::machine()
    );
    let md = header + &report.markdown();
    println!("{md}");
    let out =
        out.unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("gateway-bench.md"));
    std::fs::write(&out, &md).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    let json = out.with_extension("json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).expect("report is JSON"),
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", json.display()));
    eprintln!("written: {} and {}", out.display(), json.display());
}

/// Today's date (UTC) as YYYY-MM-DD.
fn date() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A swampgate process serving one link, with an admin port.
pub struct Gateway {
    pub process: Process,
    pub furl: String,
    pub nurl: String,
    pub port: u16,
}

impl Gateway {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Starts `swampgate run` with one link to `upstream` (adopting `adopt` if given), in
/// `dir`, with limits raised past what the benchmarks open (10,000 connections from
/// one address would otherwise be refused, as they should be on a real network).
pub fn gateway(name: &str, dir: &Path, upstream: &str, adopt: Option<&Path>) -> Gateway {
    std::fs::create_dir_all(dir).unwrap();
    let mut toml = format!(
        "listen = \"127.0.0.1:0\"\n\n[[link]]\nname = \"default\"\nupstream = {upstream:?}\n"
    );
    if let Some(a) = adopt {
        toml += &format!("adopt = {:?}\n", a.display().to_string());
    }
    toml += "\n[limits]\nmax_connections = 30000\nmax_connections_per_ip = 30000\n\
             max_inflight_uploads = 20000\nmax_inflight_upload_bytes = 1099511627776\n";
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, toml).unwrap();
    let mut cmd = swampgate_command();
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join(format!("{name}-state")));
    let mut process = Process::spawn(name, cmd, dir);
    let last = |l: String| l.rsplit(' ').next().unwrap().to_owned();
    let furl = last(process.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let nurl = last(process.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    let port = furl
        .split("@tcp:127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no 127.0.0.1 port in {furl}"));
    Gateway {
        process,
        furl,
        nurl,
        port,
    }
}

/// Adds an account (no quota, no read rate) to gateway `name`'s link; its FURL and
/// NURL, once the daemon serves it.
pub fn account(name: &str, dir: &Path) -> (String, String) {
    let out = swampgate_command()
        .args(["account", "add", "bench", "--link", "default", "--config"])
        .arg(dir.join(format!("{name}.toml")))
        .arg("--state-dir")
        .arg(dir.join(format!("{name}-state")))
        .output()
        .expect("swampgate account add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let url = |kind: &str| {
        let prefix = format!("account bench {kind} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {kind} in {text}"))
            .to_string()
    };
    // The daemon reads the accounts every 500 ms.
    std::thread::sleep(Duration::from_millis(1200));
    (url("furl"), url("nurl"))
}

/// Starts the TLS relay in front of `upstream_nurl`'s server; returns it and the NURL
/// a client uses to go through it (the relay's address and pin, the upstream's
/// swissnum).
pub fn relay(dir: &Path, upstream_nurl: &str) -> (Process, String) {
    let nurl: swampgate::gbs::nurl::Nurl = upstream_nurl.parse().expect("upstream NURL");
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("own path"));
    cmd.arg("__relay")
        .arg(format!("{}:{}", nurl.host, nurl.port))
        .arg(&nurl.spki_hash);
    let mut p = Process::spawn("tls-relay", cmd, dir);
    let last = |l: String| l.rsplit(' ').next().unwrap().to_owned();
    let port: u16 = last(p.wait_for_line("relay port ", STARTUP_TIMEOUT))
        .parse()
        .unwrap();
    let pin = last(p.wait_for_line("relay pin ", STARTUP_TIMEOUT));
    let through = swampgate::gbs::nurl::Nurl {
        spki_hash: pin,
        port,
        ..nurl
    };
    (p, through.to_string())
}

/// Gives the driver's measurements a moment without its own startup work.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}
