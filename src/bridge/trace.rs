//! A call-by-call trace of a link: one JSON line per storage call crossing it.
//!
//! [`Traced`] wraps a link's backend (usually the [`Instrumented`](super::instrument::Instrumented)
//! one, so metrics and traces see the same calls) once per front, so each line says
//! which protocol the client spoke and which the upstream speaks. A line holds the
//! time, the direction (`foolscap->gbs`: a Foolscap client's call going to a GBS
//! upstream), the front's protocol, the seam method and the front's endpoint or
//! remote method, the storage index, share numbers, offsets and sizes, the outcome
//! and the latency. It never holds a secret (lease, upload or write-enabler secrets,
//! swissnums) nor share data: only their lengths.
//!
//! `swampgate trace summarize FILE` reads a trace back: [`summarize`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

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
    /// `ok`, or the error kind (`not-found`, `conflicting-write`, …).
    pub outcome: String,
    /// Only for mutable test-and-write: whether the tests passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    pub latency_ms: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The protocol a front speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    Foolscap,
    Gbs,
}

impl Front {
    fn name(self) -> &'static str {
        match self {
            Front::Foolscap => "foolscap",
            Front::Gbs => "gbs",
        }
    }
}

/// The front's name for a seam method.
fn endpoint(front: Front, method: &str, share_type: Option<ShareType>) -> String {
    let s = match (front, method) {
        (Front::Gbs, "version") => "GET /storage/v1/version",
        (Front::Gbs, "allocate_buckets") => "POST /storage/v1/immutable/:si",
        (Front::Gbs, "write_immutable") => "PATCH /storage/v1/immutable/:si/:shnum",
        (Front::Gbs, "close_immutable") => "PATCH /storage/v1/immutable/:si/:shnum",
        (Front::Gbs, "abort_immutable") => "PUT /storage/v1/immutable/:si/:shnum/abort",
        (Front::Gbs, "list_immutable_shares") => "GET /storage/v1/immutable/:si/shares",
        (Front::Gbs, "read_immutable") => "GET /storage/v1/immutable/:si/:shnum",
        (Front::Gbs, "immutable_share_length") => "GET /storage/v1/immutable/:si/:shnum",
        (Front::Gbs, "add_lease") => "PUT /storage/v1/lease/:si",
        (Front::Gbs, "advise_corrupt_share") => {
            return format!(
                "POST /storage/v1/{}/:si/:shnum/corrupt",
                share_type.unwrap_or(ShareType::Immutable).as_str()
            )
        }
        (Front::Gbs, "read_test_write") => "POST /storage/v1/mutable/:si/read-test-write",
        (Front::Gbs, "list_mutable_shares") => "GET /storage/v1/mutable/:si/shares",
        (Front::Gbs, "read_mutable") => "GET /storage/v1/mutable/:si/:shnum",
        (Front::Gbs, "mutable_share_length") => "GET /storage/v1/mutable/:si/:shnum",
        (Front::Gbs, "slot_readv") => "GET /storage/v1/mutable/:si/:shnum",
        (Front::Foolscap, "version") => "get_version",
        (Front::Foolscap, "write_immutable") => "RIBucketWriter.write",
        (Front::Foolscap, "close_immutable") => "RIBucketWriter.close",
        (Front::Foolscap, "abort_immutable") => "RIBucketWriter.abort",
        (Front::Foolscap, "list_immutable_shares") => "get_buckets",
        (Front::Foolscap, "read_immutable") => "RIBucketReader.read",
        (Front::Foolscap, "immutable_share_length") => "RIBucketReader.read",
        (Front::Foolscap, "read_test_write") => "slot_testv_and_readv_and_writev",
        (Front::Foolscap, "list_mutable_shares") => "slot_readv",
        (Front::Foolscap, "read_mutable") => "slot_readv",
        (Front::Foolscap, "mutable_share_length") => "slot_readv",
        (Front::Foolscap, m) => m,
        (Front::Gbs, m) => m,
    };
    s.to_string()
}

fn kind(e: &StorageError) -> String {
    crate::check::error_kind(e).replace(' ', "-")
}

/// A backend wrapped to trace the calls one front makes on it.
pub struct Traced {
    link: String,
    front: Front,
    upstream: String,
    inner: Arc<dyn StorageApi>,
    sink: Arc<TraceSink>,
}

impl Traced {
    /// Trace `front`'s calls on `inner`, a backend speaking `upstream` (`foolscap`,
    /// `gbs` or `local`), into `sink`.
    pub fn new(
        link: &str,
        front: Front,
        upstream: &str,
        inner: Arc<dyn StorageApi>,
        sink: Arc<TraceSink>,
    ) -> Traced {
        Traced {
            link: link.to_string(),
            front,
            upstream: upstream.to_string(),
            inner,
            sink,
        }
    }

    fn line(&self, method: &str, si: Option<StorageIndex>) -> TraceLine {
        TraceLine {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            link: self.link.clone(),
            direction: format!("{}->{}", self.front.name(), self.upstream),
            protocol: self.front.name().into(),
            method: method.into(),
            endpoint: endpoint(self.front, method, None),
            storage_index: si.map(|s| s.to_base32()),
            ..Default::default()
        }
    }

    fn finish<T>(&self, mut line: TraceLine, start: Instant, r: &StorageResult<T>) {
        line.latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        line.outcome = match r {
            Ok(_) => "ok".into(),
            Err(e) => kind(e),
        };
        self.sink.write(&line);
    }
}

#[async_trait::async_trait]
impl StorageApi for Traced {
    async fn version(&self) -> StorageResult<VersionInfo> {
        let (l, t) = (self.line("version", None), Instant::now());
        let r = self.inner.version().await;
        self.finish(l, t, &r);
        r
    }

    async fn allocate_buckets(&self, req: AllocateRequest) -> StorageResult<AllocateResult> {
        let mut l = self.line("allocate_buckets", Some(req.storage_index));
        l.shares = req.share_numbers.iter().copied().collect();
        l.length = Some(req.allocated_size);
        let t = Instant::now();
        let r = self.inner.allocate_buckets(req).await;
        self.finish(l, t, &r);
        r
    }

    async fn write_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        let mut l = self.line("write_immutable", Some(si));
        l.shares = vec![shnum];
        l.offset = Some(offset);
        l.bytes_in = data.len() as u64;
        let t = Instant::now();
        let r = self
            .inner
            .write_immutable(si, shnum, upload_secret, offset, data)
            .await;
        self.finish(l, t, &r);
        r
    }

    async fn close_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let mut l = self.line("close_immutable", Some(si));
        l.shares = vec![shnum];
        let t = Instant::now();
        let r = self.inner.close_immutable(si, shnum, upload_secret).await;
        self.finish(l, t, &r);
        r
    }

    async fn abort_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let mut l = self.line("abort_immutable", Some(si));
        l.shares = vec![shnum];
        let t = Instant::now();
        let r = self.inner.abort_immutable(si, shnum, upload_secret).await;
        self.finish(l, t, &r);
        r
    }

    async fn list_immutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        let mut l = self.line("list_immutable_shares", Some(si));
        let t = Instant::now();
        let r = self.inner.list_immutable_shares(si).await;
        if let Ok(s) = &r {
            l.shares = s.iter().copied().collect();
        }
        self.finish(l, t, &r);
        r
    }

    async fn read_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let mut l = self.line("read_immutable", Some(si));
        l.shares = vec![shnum];
        l.offset = Some(offset);
        l.length = Some(length);
        let t = Instant::now();
        let r = self.inner.read_immutable(si, shnum, offset, length).await;
        if let Ok(b) = &r {
            l.bytes_out = b.len() as u64;
        }
        self.finish(l, t, &r);
        r
    }

    async fn immutable_share_length(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> StorageResult<u64> {
        let mut l = self.line("immutable_share_length", Some(si));
        l.shares = vec![shnum];
        let t = Instant::now();
        let r = self.inner.immutable_share_length(si, shnum).await;
        self.finish(l, t, &r);
        r
    }

    async fn add_lease(&self, si: StorageIndex, lease: LeaseSecrets) -> StorageResult<()> {
        let (l, t) = (self.line("add_lease", Some(si)), Instant::now());
        let r = self.inner.add_lease(si, lease).await;
        self.finish(l, t, &r);
        r
    }

    async fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> StorageResult<()> {
        let mut l = self.line("advise_corrupt_share", Some(si));
        l.endpoint = endpoint(self.front, "advise_corrupt_share", Some(share_type));
        l.shares = vec![shnum];
        let t = Instant::now();
        let r = self
            .inner
            .advise_corrupt_share(share_type, si, shnum, reason)
            .await;
        self.finish(l, t, &r);
        r
    }

    async fn read_test_write(
        &self,
        req: ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult> {
        let mut l = self.line("read_test_write", Some(req.storage_index));
        l.shares = req.test_write_vectors.keys().copied().collect();
        l.bytes_in = req
            .test_write_vectors
            .values()
            .flat_map(|t| t.write.iter().map(|w| w.data.len() as u64))
            .sum();
        let t = Instant::now();
        let r = self.inner.read_test_write(req).await;
        if let Ok(x) = &r {
            l.success = Some(x.success);
            l.bytes_out = x.data.values().flatten().map(|b| b.len() as u64).sum();
        }
        self.finish(l, t, &r);
        r
    }

    async fn list_mutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        let mut l = self.line("list_mutable_shares", Some(si));
        let t = Instant::now();
        let r = self.inner.list_mutable_shares(si).await;
        if let Ok(s) = &r {
            l.shares = s.iter().copied().collect();
        }
        self.finish(l, t, &r);
        r
    }

    async fn read_mutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let mut l = self.line("read_mutable", Some(si));
        l.shares = vec![shnum];
        l.offset = Some(offset);
        l.length = Some(length);
        let t = Instant::now();
        let r = self.inner.read_mutable(si, shnum, offset, length).await;
        if let Ok(b) = &r {
            l.bytes_out = b.len() as u64;
        }
        self.finish(l, t, &r);
        r
    }

    async fn mutable_share_length(&self, si: StorageIndex, shnum: ShareNum) -> StorageResult<u64> {
        let mut l = self.line("mutable_share_length", Some(si));
        l.shares = vec![shnum];
        let t = Instant::now();
        let r = self.inner.mutable_share_length(si, shnum).await;
        self.finish(l, t, &r);
        r
    }

    async fn slot_readv(
        &self,
        si: StorageIndex,
        shares: Vec<ShareNum>,
        readv: Vec<ReadVector>,
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        let mut l = self.line("slot_readv", Some(si));
        l.shares = shares.clone();
        let t = Instant::now();
        let r = self.inner.slot_readv(si, shares, readv).await;
        if let Ok(m) = &r {
            l.bytes_out = m.values().flatten().map(|b| b.len() as u64).sum();
            if l.shares.is_empty() {
                l.shares = m.keys().copied().collect();
            }
        }
        self.finish(l, t, &r);
        r
    }
}

/// A link's two fronts' views of `api`, each traced into the file at `path`.
#[allow(clippy::type_complexity)]
pub fn traced_fronts(
    link: &str,
    path: &Path,
    upstream: &str,
    api: Arc<dyn StorageApi>,
) -> Result<(Arc<dyn StorageApi>, Arc<dyn StorageApi>), String> {
    let sink = TraceSink::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok((
        Arc::new(Traced::new(
            link,
            Front::Foolscap,
            upstream,
            api.clone(),
            sink.clone(),
        )),
        Arc::new(Traced::new(link, Front::Gbs, upstream, api, sink)),
    ))
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

    #[test]
    fn summarize_counts_errors_and_percentiles() {
        let mut text = String::new();
        for i in 1..=100 {
            let l = TraceLine {
                protocol: "gbs".into(),
                method: "read_immutable".into(),
                outcome: if i % 10 == 0 {
                    "not-found".into()
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
        assert_eq!(m.errors["not-found"], 10);
        assert_eq!(m.bytes_out, 1000);
        assert_eq!(
            (m.p50_ms, m.p90_ms, m.p99_ms, m.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert!(s.to_text().contains("10 x not-found"));
    }

    #[tokio::test]
    async fn trace_lines_hold_no_secrets_or_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let sink = TraceSink::open(&path).unwrap();
        let api = Traced::new(
            "l",
            Front::Gbs,
            "local",
            Arc::new(crate::storage::memory::MemoryStorage::default()),
            sink,
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
        assert_eq!(lines[3].outcome, "not-found");
        assert_eq!(lines[0].direction, "gbs->local");
        assert!(!text.contains("DATA"));
        for secret in [[0xa5u8; 32], [0xb6; 32], [0xc7; 32]] {
            assert!(!text.contains(&crate::storage::base32_lower(&secret)));
            assert!(!text.contains(&data_encoding::BASE64.encode(&secret)));
            assert!(!text.contains(&hex_lower(&secret)));
        }
    }

    fn hex_lower(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
