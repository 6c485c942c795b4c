//! A call-by-call trace of a link: one JSON line per storage call crossing it.
//!
//! A [`Traced`] layer sits in each front's stack of a link (above the link's shared
//! layers, so metrics and traces see the same calls), so each line says which
//! protocol the client spoke and which the upstream speaks. A line holds the
//! time, the direction (`foolscap->gbs`: a Foolscap client's call going to a GBS
//! upstream), the front's protocol, the seam method and the front's endpoint or
//! remote method, the storage index, share numbers, offsets and sizes, the outcome
//! and the latency. It never holds a secret (lease, upload or write-enabler secrets,
//! swissnums) nor share data: only their lengths.
//!
//! `swampgate trace summarize FILE` reads a trace back: [`summarize`].

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Layer;
use crate::storage::*;

/// Where a link's trace lines go: one file, appended, shared by the link's fronts.
pub struct TraceSink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl TraceSink {
    /// Open (create or append to) `path`.
    pub fn open(path: &Path) -> std::io::Result<Arc<TraceSink>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Arc::new(TraceSink {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, line: &TraceLine) {
        let mut text = serde_json::to_string(line).expect("a trace line is JSON");
        text.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(text.as_bytes()) {
            tracing::warn!(path = %self.path.display(), "cannot write the trace: {e}");
        }
    }
}

/// One call.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TraceLine {
    /// Seconds since the Unix epoch, when the call started.
    pub time: f64,
    pub link: String,
    /// The account whose URL the client used (none: the link's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `FRONT->UPSTREAM`, e.g. `gbs->foolscap`.
    pub direction: String,
    /// The protocol the client spoke (`foolscap` or `gbs`).
    pub protocol: String,
    /// The seam method, e.g. `write_immutable`.
    pub method: String,
    /// The front's endpoint (GBS) or remote method (Foolscap), e.g.
    /// `PATCH /storage/v1/immutable/:si/:shnum`.
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_index: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<ShareNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The length asked for (reads) or allocated (allocations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Share data bytes the client sent (written).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_in: u64,
    /// Share data bytes the client received (read).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_out: u64,
    /// `ok`, or the error kind ([`ErrorKind::as_str`]: `not_found`, …).
    pub outcome: String,
    /// Only for mutable test-and-write: whether the tests passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    pub latency_ms: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The front whose calls a [`Traced`] layer sees: the protocol it speaks, and its
/// name for each seam method (a GBS endpoint, a Foolscap remote method), given by the
/// protocol's own module.
#[derive(Clone, Copy)]
pub struct Front {
    /// `foolscap` or `gbs`.
    pub protocol: &'static str,
    pub endpoint: fn(Method, Option<ShareType>) -> &'static str,
}

/// The trace layer of one front of one link.
pub struct Traced {
    link: String,
    account: Option<String>,
    front: Front,
    /// `FRONT->UPSTREAM`.
    direction: String,
    sink: Arc<TraceSink>,
}

impl Traced {
    /// Trace `front`'s calls on a backend speaking `upstream` (`foolscap`, `gbs` or
    /// `local`) into `sink`.
    pub fn new(link: &str, front: Front, upstream: &str, sink: Arc<TraceSink>) -> Traced {
        Traced {
            link: link.to_string(),
            account: None,
            front,
            direction: format!("{}->{upstream}", front.protocol),
            sink,
        }
    }

    /// The same, for the calls of one account of the link.
    pub fn for_account(mut self, account: &str) -> Traced {
        self.account = Some(account.to_string());
        self
    }

    fn line(&self, call: &Call<'_>) -> TraceLine {
        let info = call.info();
        TraceLine {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            link: self.link.clone(),
            account: self.account.clone(),
            direction: self.direction.clone(),
            protocol: self.front.protocol.into(),
            method: call.method().as_str().into(),
            endpoint: (self.front.endpoint)(call.method(), info.share_type).into(),
            storage_index: info.storage_index.map(|s| s.to_base32()),
            shares: info.shares,
            offset: info.offset,
            length: info.length,
            bytes_in: info.bytes_in,
            ..Default::default()
        }
    }
}

impl Layer for Traced {
    async fn call<'a>(&'a self, call: Call<'a>, next: &'a dyn StorageApi) -> StorageResult<Reply> {
        let mut line = self.line(&call);
        let start = Instant::now();
        let r = call.send(next).await;
        line.latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        match &r {
            Ok(reply) => {
                line.outcome = "ok".into();
                line.bytes_out = reply.bytes_out();
                match reply {
                    Reply::ReadTestWrite(x) => line.success = Some(x.success),
                    // A listing names the shares it found; so does a readv of all.
                    Reply::Shares(s) => line.shares = s.iter().copied().collect(),
                    Reply::Readv(m) if line.shares.is_empty() => {
                        line.shares = m.keys().copied().collect()
                    }
                    _ => {}
                }
            }
            Err(e) => line.outcome = e.kind().as_str().into(),
        }
        self.sink.write(&line);
        r
    }
}

/// The `swampgate trace` command line.
pub mod cli {
    use std::path::PathBuf;
    use std::process::ExitCode;

    #[derive(clap::Subcommand, Debug)]
    pub enum TraceCommand {
        /// Per-method call counts, errors and latency percentiles of a trace file.
        Summarize {
            file: PathBuf,
            /// A machine-readable summary.
            #[arg(long)]
            json: bool,
        },
    }

    pub fn main(cmd: TraceCommand) -> ExitCode {
        match cmd {
            TraceCommand::Summarize { file, json } => {
                let f = match std::fs::File::open(&file) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("swampgate: {}: {e}", file.display());
                        return ExitCode::from(2);
                    }
                };
                match super::summarize(std::io::BufReader::new(f)) {
                    Ok(s) => {
                        if json {
                            println!("{}", serde_json::to_string_pretty(&s).expect("JSON"));
                        } else {
                            print!("{}", s.to_text());
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("swampgate: {}: {e}", file.display());
                        ExitCode::from(2)
                    }
                }
            }
        }
    }
}

/// Per-method figures of a trace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MethodSummary {
    pub calls: u64,
    pub errors: BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TraceSummary {
    pub lines: u64,
    /// Lines that were not trace lines (reported, not fatal).
    pub unreadable: u64,
    /// Keyed by `PROTOCOL METHOD` (`gbs write_immutable`).
    pub methods: BTreeMap<String, MethodSummary>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Read a trace and sum it up per method.
pub fn summarize(reader: impl BufRead) -> std::io::Result<TraceSummary> {
    let mut s = TraceSummary::default();
    let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(t) = serde_json::from_str::<TraceLine>(&line) else {
            s.unreadable += 1;
            continue;
        };
        s.lines += 1;
        let key = format!("{} {}", t.protocol, t.method);
        let m = s.methods.entry(key.clone()).or_default();
        m.calls += 1;
        m.bytes_in += t.bytes_in;
        m.bytes_out += t.bytes_out;
        if t.outcome != "ok" {
            *m.errors.entry(t.outcome.clone()).or_default() += 1;
        }
        latencies.entry(key).or_default().push(t.latency_ms);
    }
    for (k, mut v) in latencies {
        v.sort_by(|a, b| a.total_cmp(b));
        let m = s.methods.get_mut(&k).expect("same keys");
        m.p50_ms = percentile(&v, 50.0);
        m.p90_ms = percentile(&v, 90.0);
        m.p99_ms = percentile(&v, 99.0);
        m.max_ms = v.last().copied().unwrap_or(0.0);
    }
    Ok(s)
}

impl TraceSummary {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{:<36} {:>7} {:>7} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9}\n",
            "protocol method",
            "calls",
            "errors",
            "bytes in",
            "bytes out",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        );
        for (k, m) in &self.methods {
            let errors: u64 = m.errors.values().sum();
            out.push_str(&format!(
                "{:<36} {:>7} {:>7} {:>12} {:>12} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                k, m.calls, errors, m.bytes_in, m.bytes_out, m.p50_ms, m.p90_ms, m.p99_ms, m.max_ms
            ));
            for (kind, n) in &m.errors {
                out.push_str(&format!("    {n} x {kind}\n"));
            }
        }
        out.push_str(&format!("{} calls", self.lines));
        if self.unreadable > 0 {
            out.push_str(&format!(", {} unreadable lines skipped", self.unreadable));
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn summarize_counts_errors_and_percentiles() {
        let mut text = String::new();
        for i in 1..=100 {
            let l = TraceLine {
                protocol: "gbs".into(),
                method: "read_immutable".into(),
                outcome: if i % 10 == 0 {
                    "not_found".into()
                } else {
                    "ok".into()
                },
                latency_ms: i as f64,
                bytes_out: 10,
                ..Default::default()
            };
            text.push_str(&serde_json::to_string(&l).unwrap());
            text.push('\n');
        }
        text.push_str("not json\n");
        let s = summarize(text.as_bytes()).unwrap();
        assert_eq!(s.lines, 100);
        assert_eq!(s.unreadable, 1);
        let m = &s.methods["gbs read_immutable"];
        assert_eq!(m.calls, 100);
        assert_eq!(m.errors["not_found"], 10);
        assert_eq!(m.bytes_out, 1000);
        assert_eq!(
            (m.p50_ms, m.p90_ms, m.p99_ms, m.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert!(s.to_text().contains("10 x not_found"));
    }

    #[tokio::test]
    async fn trace_lines_hold_no_secrets_or_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let sink = TraceSink::open(&path).unwrap();
        let front = Front {
            protocol: "gbs",
            endpoint: |_, _| "PATCH /storage/v1/immutable/:si/:shnum",
        };
        let api = super::super::wrap(
            Arc::new(Traced::new("l", front, "local", sink)),
            Arc::new(crate::storage::memory::MemoryStorage::default()),
        );
        let si = StorageIndex([3; 16]);
        let up = Secret(vec![0xa5; 32]);
        api.allocate_buckets(AllocateRequest {
            storage_index: si,
            lease: LeaseSecrets {
                renew: Secret(vec![0xb6; 32]),
                cancel: Secret(vec![0xc7; 32]),
            },
            upload_secret: up.clone(),
            share_numbers: [0].into_iter().collect(),
            allocated_size: 4,
        })
        .await
        .unwrap();
        api.write_immutable(si, 0, &up, 0, Bytes::from_static(b"DATA"))
            .await
            .unwrap();
        api.read_immutable(si, 0, 0, 4).await.unwrap();
        assert!(api.read_immutable(si, 9, 0, 4).await.is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<TraceLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].endpoint, "PATCH /storage/v1/immutable/:si/:shnum");
        assert_eq!(lines[1].bytes_in, 4);
        assert_eq!(lines[2].bytes_out, 4);
        assert_eq!(lines[3].outcome, "not_found");
        assert_eq!(lines[0].direction, "gbs->local");
        assert!(!text.contains("DATA"));
        for secret in [[0xa5u8; 32], [0xb6; 32], [0xc7; 32]] {
            assert!(!text.contains(&crate::base32::base32_lower(&secret)));
            assert!(!text.contains(&data_encoding::BASE64.encode(&secret)));
            assert!(!text.contains(&hex_lower(&secret)));
        }
    }

    fn hex_lower(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
