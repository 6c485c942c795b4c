//! A link's view of its backend: every storage call counted, timed and sized for
//! `/metrics`, the upstream's state for `/status`, and the unfinished uploads
//! remembered so that a shutdown can abort them upstream, and so can
//! [`Instrumented::reap_idle_uploads`] once nobody writes to one any more.
//!
//! It wraps any [`StorageApi`] and is itself one, so the fronts see no difference.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::journal::{Leftover, UploadJournal};
use crate::storage::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub link: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub link: String,
    pub method: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub link: String,
    /// `in` (share data written by clients) or `out` (share data read by clients).
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabel {
    pub link: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// Every metric swampgate exports.
pub struct Metrics {
    pub registry: Registry,
    pub calls: Family<CallLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Family<CallLabels, Histogram, fn() -> Histogram>,
    pub bytes: Family<BytesLabels, Counter>,
    pub inflight_uploads: Family<LinkLabel, Gauge>,
    pub connections: Family<ProtocolLabel, Gauge>,
    pub connections_accepted: Family<ProtocolLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("swampgate");
        let calls = Family::<CallLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency = Family::<CallLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let bytes = Family::<BytesLabels, Counter>::default();
        let inflight_uploads = Family::<LinkLabel, Gauge>::default();
        let connections = Family::<ProtocolLabel, Gauge>::default();
        let connections_accepted = Family::<ProtocolLabel, Counter>::default();
        registry.register("calls", "Storage calls per link and method", calls.clone());
        registry.register(
            "errors",
            "Failed storage calls per link, method and error kind",
            errors.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Storage call latency per link and method",
            latency.clone(),
        );
        registry.register(
            "share_bytes",
            "Share data bytes per link and direction",
            bytes.clone(),
        );
        registry.register(
            "inflight_uploads",
            "Immutable share uploads allocated and not yet finished",
            inflight_uploads.clone(),
        );
        registry.register(
            "open_connections",
            "Open client connections per protocol",
            connections.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted per protocol",
            connections_accepted.clone(),
        );
        Metrics {
            registry,
            calls,
            errors,
            latency,
            bytes,
            inflight_uploads,
            connections,
            connections_accepted,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

fn error_kind(e: &StorageError) -> &'static str {
    match e {
        StorageError::NotFound(_) => "not_found",
        StorageError::ConflictingWrite(_) => "conflicting_write",
        StorageError::DataTooLarge(_) => "data_too_large",
        StorageError::WrongUploadSecret => "wrong_upload_secret",
        StorageError::BadWriteEnabler(_) => "bad_write_enabler",
        StorageError::NotAllowed(_) => "not_allowed",
        StorageError::InvalidRequest(_) => "invalid_request",
        StorageError::WrongContainer(_) => "wrong_container",
        StorageError::NoSpace(_) => "no_space",
        StorageError::Unavailable(_) => "unavailable",
        StorageError::Remote { .. } => "remote",
        StorageError::Internal(_) => "internal",
    }
}

/// What is known of the upstream, from the calls made to it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct UpstreamState {
    /// `up` after a call reached the upstream, `down` after one could not, `unknown`
    /// before any call.
    pub state: &'static str,
    pub last_success_unix: Option<u64>,
    pub last_failure_unix: Option<u64>,
    pub last_failure: Option<String>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One unfinished upload of one share.
struct Pending {
    /// To abort it (at shutdown, or once idle).
    secret: Secret,
    /// Its allocated size, counted against the upload limits.
    size: u64,
    /// When it was allocated, or last written to.
    last: Instant,
    /// Left unfinished by a previous run (see [`UploadJournal`]): aborted at once.
    left_over: bool,
}

/// A backend wrapped for one link.
pub struct Instrumented {
    link: String,
    inner: Arc<dyn StorageApi>,
    metrics: Arc<Metrics>,
    /// Unfinished uploads.
    uploads: Mutex<HashMap<(StorageIndex, ShareNum), Pending>>,
    /// Shares and bytes of allocations on their way upstream, counted against the
    /// limits until the upstream answers.
    reserved: Mutex<(usize, u64)>,
    upload_limits: (usize, u64),
    inflight_calls: AtomicUsize,
    upstream: Mutex<UpstreamState>,
    journal: Option<UploadJournal>,
}

/// Decrements the in-flight count however the call ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Instrumented {
    pub fn new(link: &str, inner: Arc<dyn StorageApi>, metrics: Arc<Metrics>) -> Instrumented {
        Instrumented {
            link: link.to_string(),
            inner,
            metrics,
            uploads: Mutex::new(HashMap::new()),
            reserved: Mutex::new((0, 0)),
            upload_limits: (usize::MAX, u64::MAX),
            inflight_calls: AtomicUsize::new(0),
            upstream: Mutex::new(UpstreamState {
                state: "unknown",
                ..Default::default()
            }),
            journal: None,
        }
    }

    /// Record this link's unfinished uploads in `journal`, and take over the ones a
    /// previous run left there (`leftovers`, from [`UploadJournal::open`]): they
    /// count as unfinished uploads until [`Instrumented::reap_idle_uploads`], on
    /// its first pass, aborts them upstream.
    pub fn with_journal(
        mut self,
        journal: UploadJournal,
        leftovers: Vec<Leftover>,
    ) -> Instrumented {
        let n = {
            let mut uploads = self.uploads.lock().expect("uploads");
            for (key, secret) in leftovers {
                let pending = Pending {
                    secret,
                    size: 0,
                    last: Instant::now(),
                    left_over: true,
                };
                uploads.insert(key, pending);
            }
            uploads.len()
        };
        self.journal = Some(journal);
        self.set_uploads_gauge(n);
        self
    }

    /// Limit the unfinished uploads of this link: at most `max_uploads` shares
    /// allocated and not finished, holding at most `max_bytes` allocated bytes. An
    /// allocation past either fails with [`StorageError::NoSpace`] (Foolscap clients
    /// get an `OSError`, GBS clients a 507) before it reaches the upstream; Tahoe
    /// clients then place those shares on other servers.
    pub fn with_upload_limits(mut self, max_uploads: usize, max_bytes: u64) -> Instrumented {
        self.upload_limits = (max_uploads, max_bytes);
        self
    }

    /// Allocated bytes of the unfinished uploads.
    pub fn inflight_upload_bytes(&self) -> u64 {
        self.uploads
            .lock()
            .expect("uploads")
            .values()
            .map(|p| p.size)
            .sum()
    }

    /// Reserve room for an allocation, or refuse it.
    fn reserve(&self, req: &AllocateRequest) -> StorageResult<(usize, u64)> {
        let uploads = self.uploads.lock().expect("uploads");
        let new = req
            .share_numbers
            .iter()
            .filter(|sh| !uploads.contains_key(&(req.storage_index, **sh)))
            .count();
        let bytes = (new as u64).saturating_mul(req.allocated_size);
        let held: u64 = uploads.values().map(|p| p.size).sum();
        let mut reserved = self.reserved.lock().expect("reserved");
        let (max_n, max_b) = self.upload_limits;
        if uploads.len() + reserved.0 + new > max_n {
            return Err(StorageError::NoSpace(format!(
                "this gateway link already has {} share uploads in flight (limit {max_n})",
                uploads.len() + reserved.0
            )));
        }
        if held.saturating_add(reserved.1).saturating_add(bytes) > max_b {
            return Err(StorageError::NoSpace(format!(
                "the share uploads in flight on this gateway link would hold more than {max_b} bytes"
            )));
        }
        reserved.0 += new;
        reserved.1 += bytes;
        Ok((new, bytes))
    }

    fn unreserve(&self, (n, b): (usize, u64)) {
        let mut reserved = self.reserved.lock().expect("reserved");
        reserved.0 -= n;
        reserved.1 -= b;
    }

    pub fn link(&self) -> &str {
        &self.link
    }

    /// Calls running now.
    pub fn inflight_calls(&self) -> usize {
        self.inflight_calls.load(Ordering::SeqCst)
    }

    /// Immutable uploads allocated and not yet completed or aborted.
    pub fn inflight_uploads(&self) -> usize {
        self.uploads.lock().expect("uploads").len()
    }

    pub fn upstream_state(&self) -> UpstreamState {
        self.upstream.lock().expect("upstream").clone()
    }

    /// Abort every unfinished upload upstream (at shutdown); returns how many.
    pub async fn abort_unfinished(&self) -> usize {
        self.abort_where("at shutdown", |_| true).await
    }

    /// Abort upstream every upload nobody has allocated or written to for longer
    /// than `idle`; returns how many.
    ///
    /// A Foolscap client's uploads are aborted when its connection drops (the
    /// canary), but GBS ties no upload to a connection: when an HTTP client dies
    /// mid-upload, nothing else ends its uploads here. They would stay counted in
    /// flight (against `max_inflight_uploads`) for good, and upstream hold their
    /// share in `incoming/`, where a Tahoe node allocates no second writer for it,
    /// until the node's own 30-minute timer.
    pub async fn abort_idle(&self, idle: Duration) -> usize {
        let now = Instant::now();
        self.abort_where("idle", |p| now.saturating_duration_since(p.last) > idle)
            .await
    }

    /// Runs [`Instrumented::abort_idle`] at once (for uploads left over by a previous
    /// run), then every `idle / 4` (between 1 s and 60 s) until `stop` is cancelled.
    pub async fn reap_idle_uploads(
        self: Arc<Self>,
        idle: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let tick = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let left = self
            .abort_where("left by a previous run", |p| p.left_over)
            .await;
        if left > 0 {
            tracing::info!(
                link = %self.link,
                "aborted {left} share uploads upstream that a previous run left unfinished"
            );
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let n = self.abort_idle(idle).await;
            if n > 0 {
                tracing::info!(
                    link = %self.link,
                    "aborted {n} share uploads upstream: no write for {} s",
                    idle.as_secs()
                );
            }
        }
    }

    /// Forget the unfinished uploads `expired` picks, then abort them upstream
    /// (whatever the answer: the upstream may have dropped them already).
    async fn abort_where(&self, why: &str, expired: impl Fn(&Pending) -> bool) -> usize {
        let (gone, left) = {
            let mut uploads = self.uploads.lock().expect("uploads");
            let keys: Vec<_> = uploads
                .iter()
                .filter(|(_, p)| expired(p))
                .map(|(k, _)| *k)
                .collect();
            let gone: Vec<_> = keys
                .into_iter()
                .filter_map(|k| uploads.remove(&k).map(|p| (k, p.secret)))
                .collect();
            (gone, uploads.len())
        };
        if gone.is_empty() {
            return 0;
        }
        self.set_uploads_gauge(left);
        for ((si, sh), secret) in &gone {
            let r = self.inner.abort_immutable(*si, *sh, secret).await;
            if let Some(j) = &self.journal {
                // Ended here whatever the answer: an upstream that cannot be told
                // now has its own timeout, and a restart empties Tahoe's incoming/.
                j.finished(*si, *sh);
            }
            match r {
                Ok(()) => tracing::debug!(link = %self.link, %si, sh, "aborted upload ({why})"),
                Err(e) => {
                    tracing::debug!(link = %self.link, %si, sh, "abort ({why}) failed: {e}")
                }
            }
        }
        gone.len()
    }

    /// Note a write to an unfinished upload (it is not idle).
    fn touch(&self, si: StorageIndex, sh: ShareNum) {
        if let Some(p) = self.uploads.lock().expect("uploads").get_mut(&(si, sh)) {
            p.last = Instant::now();
        }
    }

    fn set_uploads_gauge(&self, n: usize) {
        self.metrics
            .inflight_uploads
            .get_or_create(&LinkLabel {
                link: self.link.clone(),
            })
            .set(n as i64);
    }

    fn finish_upload(&self, si: StorageIndex, sh: ShareNum) {
        let n = {
            let mut u = self.uploads.lock().expect("uploads");
            u.remove(&(si, sh));
            if let Some(j) = &self.journal {
                j.finished(si, sh);
            }
            u.len()
        };
        self.set_uploads_gauge(n);
    }

    async fn measure<T, F>(&self, method: &'static str, f: F) -> StorageResult<T>
    where
        F: std::future::Future<Output = StorageResult<T>>,
    {
        self.inflight_calls.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.inflight_calls);
        let labels = CallLabels {
            link: self.link.clone(),
            method: method.to_string(),
        };
        let start = Instant::now();
        let r = f.await;
        self.metrics.calls.get_or_create(&labels).inc();
        self.metrics
            .latency
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        let mut up = self.upstream.lock().expect("upstream");
        match &r {
            Err(e) => {
                self.metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        link: self.link.clone(),
                        method: method.to_string(),
                        kind: error_kind(e).to_string(),
                    })
                    .inc();
                if matches!(e, StorageError::Unavailable(_)) {
                    up.state = "down";
                    up.last_failure_unix = Some(now_unix());
                    up.last_failure = Some(e.to_string());
                } else {
                    // Any other answer came from a reachable upstream.
                    up.state = "up";
                    up.last_success_unix = Some(now_unix());
                }
            }
            Ok(_) => {
                up.state = "up";
                up.last_success_unix = Some(now_unix());
            }
        }
        r
    }

    fn count_bytes(&self, direction: &str, n: usize) {
        self.metrics
            .bytes
            .get_or_create(&BytesLabels {
                link: self.link.clone(),
                direction: direction.to_string(),
            })
            .inc_by(n as u64);
    }
}

#[async_trait::async_trait]
impl StorageApi for Instrumented {
    async fn version(&self) -> StorageResult<VersionInfo> {
        self.measure("version", self.inner.version()).await
    }

    async fn allocate_buckets(&self, req: AllocateRequest) -> StorageResult<AllocateResult> {
        let si = req.storage_index;
        let secret = req.upload_secret.clone();
        let size = req.allocated_size;
        // Refused here, without bothering the upstream (and without counting as an
        // answer from it).
        let reservation = self.reserve(&req)?;
        let r = self
            .measure("allocate_buckets", self.inner.allocate_buckets(req))
            .await;
        let n = {
            let mut u = self.uploads.lock().expect("uploads");
            self.unreserve(reservation);
            for sh in &r.as_ref().map(|r| r.allocated.clone()).unwrap_or_default() {
                let pending = Pending {
                    secret: secret.clone(),
                    size,
                    last: Instant::now(),
                    left_over: false,
                };
                if let Some(j) = &self.journal {
                    j.started(si, *sh, &secret);
                }
                u.insert((si, *sh), pending);
            }
            u.len()
        };
        let r = r?;
        self.set_uploads_gauge(n);
        Ok(r)
    }

    async fn write_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        let len = data.len();
        // Before (a write in progress is no sign of a dead client) and after.
        self.touch(si, shnum);
        let r = self
            .measure(
                "write_immutable",
                self.inner
                    .write_immutable(si, shnum, upload_secret, offset, data),
            )
            .await;
        self.touch(si, shnum);
        let r = r?;
        self.count_bytes("in", len);
        if r.complete() {
            self.finish_upload(si, shnum);
        }
        Ok(r)
    }

    async fn close_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        self.measure(
            "close_immutable",
            self.inner.close_immutable(si, shnum, upload_secret),
        )
        .await?;
        self.finish_upload(si, shnum);
        Ok(())
    }

    async fn abort_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let r = self
            .measure(
                "abort_immutable",
                self.inner.abort_immutable(si, shnum, upload_secret),
            )
            .await;
        if !matches!(r, Err(StorageError::WrongUploadSecret)) {
            self.finish_upload(si, shnum);
        }
        r
    }

    async fn list_immutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        self.measure(
            "list_immutable_shares",
            self.inner.list_immutable_shares(si),
        )
        .await
    }

    async fn read_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let r = self
            .measure(
                "read_immutable",
                self.inner.read_immutable(si, shnum, offset, length),
            )
            .await?;
        self.count_bytes("out", r.len());
        Ok(r)
    }

    async fn immutable_share_length(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> StorageResult<u64> {
        self.measure(
            "immutable_share_length",
            self.inner.immutable_share_length(si, shnum),
        )
        .await
    }

    async fn add_lease(&self, si: StorageIndex, lease: LeaseSecrets) -> StorageResult<()> {
        self.measure("add_lease", self.inner.add_lease(si, lease))
            .await
    }

    async fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> StorageResult<()> {
        self.measure(
            "advise_corrupt_share",
            self.inner
                .advise_corrupt_share(share_type, si, shnum, reason),
        )
        .await
    }

    async fn read_test_write(
        &self,
        req: ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult> {
        let written: usize = req
            .test_write_vectors
            .values()
            .flat_map(|t| t.write.iter().map(|w| w.data.len()))
            .sum();
        let r = self
            .measure("read_test_write", self.inner.read_test_write(req))
            .await?;
        if r.success {
            self.count_bytes("in", written);
        }
        self.count_bytes("out", r.data.values().flatten().map(|b| b.len()).sum());
        Ok(r)
    }

    async fn list_mutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        self.measure("list_mutable_shares", self.inner.list_mutable_shares(si))
            .await
    }

    async fn read_mutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let r = self
            .measure(
                "read_mutable",
                self.inner.read_mutable(si, shnum, offset, length),
            )
            .await?;
        self.count_bytes("out", r.len());
        Ok(r)
    }

    async fn mutable_share_length(&self, si: StorageIndex, shnum: ShareNum) -> StorageResult<u64> {
        self.measure(
            "mutable_share_length",
            self.inner.mutable_share_length(si, shnum),
        )
        .await
    }

    async fn slot_readv(
        &self,
        si: StorageIndex,
        shares: Vec<ShareNum>,
        readv: Vec<ReadVector>,
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        let r = self
            .measure("slot_readv", self.inner.slot_readv(si, shares, readv))
            .await?;
        self.count_bytes("out", r.values().flatten().map(|b| b.len()).sum());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::LeaseSecrets;

    fn alloc(si: u8, shares: &[ShareNum], size: u64) -> AllocateRequest {
        AllocateRequest {
            storage_index: StorageIndex([si; 16]),
            lease: LeaseSecrets {
                renew: Secret(vec![1; 32]),
                cancel: Secret(vec![2; 32]),
            },
            upload_secret: Secret(vec![si; 32]),
            share_numbers: shares.iter().copied().collect(),
            allocated_size: size,
        }
    }

    fn link(max_uploads: usize, max_bytes: u64) -> Instrumented {
        Instrumented::new(
            "t",
            Arc::new(MemoryStorage::new(1 << 30)),
            Arc::new(Metrics::default()),
        )
        .with_upload_limits(max_uploads, max_bytes)
    }

    #[tokio::test]
    async fn upload_count_limit_at_and_past_the_boundary() {
        let l = link(3, u64::MAX);
        let r = l.allocate_buckets(alloc(1, &[0, 1, 2], 10)).await.unwrap();
        assert_eq!(r.allocated.len(), 3);
        assert_eq!(l.inflight_uploads(), 3);
        // One more share is past the limit: refused, and nothing reaches the store.
        let e = l.allocate_buckets(alloc(2, &[0], 10)).await.unwrap_err();
        assert!(matches!(e, StorageError::NoSpace(_)), "{e}");
        assert!(l
            .list_immutable_shares(StorageIndex([2; 16]))
            .await
            .unwrap()
            .is_empty());
        // Asking again for shares already in flight is not counted twice.
        l.allocate_buckets(alloc(1, &[0, 1], 10)).await.unwrap();
        // Finishing one upload frees its room.
        let secret = Secret(vec![1; 32]);
        let p = l
            .write_immutable(
                StorageIndex([1; 16]),
                0,
                &secret,
                0,
                Bytes::from(vec![7; 10]),
            )
            .await
            .unwrap();
        assert!(p.complete());
        assert_eq!(l.inflight_uploads(), 2);
        l.allocate_buckets(alloc(2, &[0], 10)).await.unwrap();
        // Aborting frees room too.
        l.abort_immutable(StorageIndex([1; 16]), 1, &secret)
            .await
            .unwrap();
        l.allocate_buckets(alloc(3, &[0], 10)).await.unwrap();
        assert_eq!(l.inflight_uploads(), 3);
    }

    #[tokio::test]
    async fn upload_bytes_limit_at_and_past_the_boundary() {
        let l = link(usize::MAX, 100);
        l.allocate_buckets(alloc(1, &[0, 1], 50)).await.unwrap();
        assert_eq!(l.inflight_upload_bytes(), 100);
        let e = l.allocate_buckets(alloc(2, &[0], 1)).await.unwrap_err();
        assert!(matches!(e, StorageError::NoSpace(_)), "{e}");
        let l = link(usize::MAX, 100);
        let e = l.allocate_buckets(alloc(1, &[0, 1], 51)).await.unwrap_err();
        assert!(matches!(e, StorageError::NoSpace(_)), "{e}");
        assert_eq!(l.inflight_uploads(), 0);
        // A refused allocation leaves no reservation behind.
        l.allocate_buckets(alloc(1, &[0, 1], 50)).await.unwrap();
    }

    #[tokio::test]
    async fn idle_uploads_are_aborted_upstream_and_written_ones_kept() {
        let store = Arc::new(MemoryStorage::new(1 << 30));
        let l = Arc::new(Instrumented::new(
            "t",
            store.clone(),
            Arc::new(Metrics::default()),
        ));
        l.allocate_buckets(alloc(1, &[0, 1], 10)).await.unwrap();
        let si = StorageIndex([1; 16]);
        let secret = Secret(vec![1; 32]);
        let idle = Duration::from_millis(300);
        assert_eq!(l.abort_idle(idle).await, 0, "nothing idle yet");
        // Share 0 keeps being written to; share 1 is left alone.
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            l.write_immutable(si, 0, &secret, i, Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        assert_eq!(l.abort_idle(idle).await, 1);
        assert_eq!(l.inflight_uploads(), 1);
        // Aborted in the store too: the same secret may not write to it any more...
        let e = store
            .write_immutable(si, 1, &secret, 0, Bytes::from_static(b"y"))
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::NotFound(_)), "{e}");
        // ...and a new upload of that share may start.
        let r = l.allocate_buckets(alloc(1, &[1], 10)).await.unwrap();
        assert_eq!(r.allocated, [1].into_iter().collect());
        // The reaper does the same on its own, and stops when told to.
        let stop = tokio_util::sync::CancellationToken::new();
        let reaper = tokio::spawn(l.clone().reap_idle_uploads(idle, stop.clone()));
        tokio::time::timeout(Duration::from_secs(10), async {
            while l.inflight_uploads() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the reaper aborts idle uploads");
        stop.cancel();
        reaper.await.unwrap();
    }

    #[tokio::test]
    async fn uploads_left_by_a_killed_run_are_aborted_at_the_next_start() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("l.journal");
        let store = Arc::new(MemoryStorage::new(1 << 30));
        let open = || {
            let (j, left) = UploadJournal::open(&path).unwrap();
            Arc::new(
                Instrumented::new("t", store.clone(), Arc::new(Metrics::default()))
                    .with_journal(j, left),
            )
        };
        let l = open();
        l.allocate_buckets(alloc(1, &[0, 1, 2], 4)).await.unwrap();
        let si = StorageIndex([1; 16]);
        let secret = Secret(vec![1; 32]);
        l.write_immutable(si, 0, &secret, 0, Bytes::from_static(b"done"))
            .await
            .unwrap();
        l.abort_immutable(si, 1, &secret).await.unwrap();
        // Killed: no shutdown, nothing aborted. The next run takes share 2 over...
        drop(l);
        let l = open();
        assert_eq!(l.inflight_uploads(), 1);
        // ...and its reaper aborts it at once, long before the idle timeout.
        let stop = tokio_util::sync::CancellationToken::new();
        let reaper = tokio::spawn(
            l.clone()
                .reap_idle_uploads(Duration::from_secs(3600), stop.clone()),
        );
        tokio::time::timeout(Duration::from_secs(10), async {
            while l.inflight_uploads() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the leftover is aborted");
        stop.cancel();
        reaper.await.unwrap();
        let e = store
            .write_immutable(si, 2, &secret, 0, Bytes::from_static(b"late"))
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::NotFound(_)), "{e}");
        assert_eq!(store.list_immutable_shares(si).await.unwrap().len(), 1);
        drop(l);
        let (_, left) = UploadJournal::open(&path).unwrap();
        assert!(left.is_empty(), "the journal is empty again");
    }

    #[tokio::test]
    async fn abort_unfinished_clears_the_bytes() {
        let l = link(10, 1000);
        l.allocate_buckets(alloc(1, &[0, 1], 100)).await.unwrap();
        assert_eq!(l.abort_unfinished().await, 2);
        assert_eq!(l.inflight_upload_bytes(), 0);
        let ten: Vec<ShareNum> = (0..10).collect();
        l.allocate_buckets(alloc(2, &ten, 100)).await.unwrap();
    }
}
