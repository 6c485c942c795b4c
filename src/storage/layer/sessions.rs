//! A link's unfinished immutable uploads, in one table keyed by (storage index,
//! share): limited in number and allocated bytes, recorded in the upload journal, and
//! aborted upstream at shutdown or once nobody writes to them any more
//! ([`UploadSessions::reap_idle_uploads`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use super::journal::{Leftover, UploadJournal};
use super::Layer;
use crate::storage::*;

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

/// The upload-sessions layer of one link.
pub struct UploadSessions {
    link: String,
    /// Where aborts go: the backend under this layer.
    backend: Arc<dyn StorageApi>,
    /// Unfinished uploads.
    uploads: Mutex<HashMap<(StorageIndex, ShareNum), Pending>>,
    /// Shares and bytes of allocations on their way upstream, counted against the
    /// limits until the upstream answers.
    reserved: Mutex<(usize, u64)>,
    limits: (usize, u64),
    journal: Option<UploadJournal>,
    gauge: Gauge,
}

impl UploadSessions {
    /// Sessions of `link`'s uploads to `backend`, the number of them shown in `gauge`.
    pub fn new(link: &str, backend: Arc<dyn StorageApi>, gauge: Gauge) -> UploadSessions {
        UploadSessions {
            link: link.to_string(),
            backend,
            uploads: Mutex::new(HashMap::new()),
            reserved: Mutex::new((0, 0)),
            limits: (usize::MAX, u64::MAX),
            journal: None,
            gauge,
        }
    }

    /// Record this link's unfinished uploads in `journal`, and take over the ones a
    /// previous run left there (`leftovers`, from [`UploadJournal::open`]): they
    /// count as unfinished uploads until [`UploadSessions::reap_idle_uploads`], on
    /// its first pass, aborts them upstream.
    pub fn with_journal(mut self, journal: UploadJournal, leftovers: Vec<Leftover>) -> Self {
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
        self.gauge.set(n as i64);
        self
    }

    /// Limit the unfinished uploads of this link: at most `max_uploads` shares
    /// allocated and not finished, holding at most `max_bytes` allocated bytes. An
    /// allocation past either fails with [`StorageError::NoSpace`] (Foolscap clients
    /// get an `OSError`, GBS clients a 507) before it reaches the upstream; Tahoe
    /// clients then place those shares on other servers.
    pub fn with_upload_limits(mut self, max_uploads: usize, max_bytes: u64) -> Self {
        self.limits = (max_uploads, max_bytes);
        self
    }

    pub fn link(&self) -> &str {
        &self.link
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

    /// Immutable uploads allocated and not yet completed or aborted.
    pub fn inflight_uploads(&self) -> usize {
        self.uploads.lock().expect("uploads").len()
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
        let (max_n, max_b) = self.limits;
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

    /// Runs [`UploadSessions::abort_idle`] at once (for uploads left over by a
    /// previous run), then every `idle / 4` (between 1 s and 60 s) until `stop` is
    /// cancelled.
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
        self.gauge.set(left as i64);
        for ((si, sh), secret) in &gone {
            let r = self.backend.abort_immutable(*si, *sh, secret).await;
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

    /// A write to an unfinished upload failed upstream: forget the upload and abort
    /// it upstream, in the background (an upstream that stopped answering makes
    /// the abort wait for its own deadline; the client need not).
    fn abort_failed(&self, si: StorageIndex, sh: ShareNum, e: &StorageError) {
        let gone = {
            let mut u = self.uploads.lock().expect("uploads");
            let gone = u.remove(&(si, sh));
            self.gauge.set(u.len() as i64);
            gone
        };
        let Some(p) = gone else { return };
        if let Some(j) = &self.journal {
            j.finished(si, sh);
        }
        tracing::info!(link = %self.link, %si, sh, "a write failed ({e}): aborting the upload upstream");
        let (backend, link) = (self.backend.clone(), self.link.clone());
        tokio::spawn(async move {
            if let Err(e) = backend.abort_immutable(si, sh, &p.secret).await {
                tracing::debug!(%link, %si, sh, "abort after a failed write failed: {e}");
            }
        });
    }

    /// Note a write to an unfinished upload (it is not idle).
    fn touch(&self, si: StorageIndex, sh: ShareNum) {
        if let Some(p) = self.uploads.lock().expect("uploads").get_mut(&(si, sh)) {
            p.last = Instant::now();
        }
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
        self.gauge.set(n as i64);
    }

    async fn allocate(&self, req: AllocateRequest, next: &dyn StorageApi) -> StorageResult<Reply> {
        let (si, size, secret) = (
            req.storage_index,
            req.allocated_size,
            req.upload_secret.clone(),
        );
        // Refused here, without bothering the upstream.
        let reservation = self.reserve(&req)?;
        let r = next.allocate_buckets(req).await;
        let n = {
            let mut u = self.uploads.lock().expect("uploads");
            let mut reserved = self.reserved.lock().expect("reserved");
            reserved.0 -= reservation.0;
            reserved.1 -= reservation.1;
            for sh in r.iter().flat_map(|r| &r.allocated) {
                if let Some(j) = &self.journal {
                    j.started(si, *sh, &secret);
                }
                let pending = Pending {
                    secret: secret.clone(),
                    size,
                    last: Instant::now(),
                    left_over: false,
                };
                u.insert((si, *sh), pending);
            }
            u.len()
        };
        let r = r?;
        self.gauge.set(n as i64);
        Ok(Reply::Allocated(r))
    }
}

impl Layer for UploadSessions {
    async fn call<'a>(&'a self, call: Call<'a>, next: &'a dyn StorageApi) -> StorageResult<Reply> {
        match call {
            Call::AllocateBuckets(req) => self.allocate(req, next).await,
            Call::WriteImmutable { si, shnum, .. } => {
                // Before (a write in progress is no sign of a dead client) and after.
                self.touch(si, shnum);
                let r = call.send(next).await;
                self.touch(si, shnum);
                match &r {
                    Ok(Reply::Written(p)) if p.complete() => self.finish_upload(si, shnum),
                    // Gone below (lost with a Foolscap upstream's connection).
                    Err(e) if e.kind() == ErrorKind::NotFound => self.finish_upload(si, shnum),
                    // The upstream did not take the write (cut off, no answer in
                    // time): the share is unusable, and must not stay open upstream.
                    // An upstream that answered with an error (even a 500: Tahoe's
                    // HTTP server answers some client mistakes so) keeps the upload
                    // as it decided, as it would for a direct client.
                    Err(e @ StorageError::Unavailable(_)) => self.abort_failed(si, shnum, e),
                    _ => {}
                }
                r
            }
            Call::CloseImmutable { si, shnum, .. } => {
                let r = call.send(next).await?;
                self.finish_upload(si, shnum);
                Ok(r)
            }
            Call::AbortImmutable { si, shnum, .. } => {
                let r = call.send(next).await;
                if !matches!(r, Err(StorageError::WrongUploadSecret)) {
                    self.finish_upload(si, shnum);
                }
                r
            }
            call => call.send(next).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::layer::wrap;
    use crate::storage::memory::MemoryStorage;
    use bytes::Bytes;

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

    /// The sessions layer around `store`, and the API it serves.
    struct L {
        s: Arc<UploadSessions>,
        api: Arc<dyn StorageApi>,
    }

    impl std::ops::Deref for L {
        type Target = dyn StorageApi;
        fn deref(&self) -> &Self::Target {
            &*self.api
        }
    }

    impl L {
        fn over(store: Arc<dyn StorageApi>, s: UploadSessions) -> L {
            let s = Arc::new(s);
            L {
                api: wrap(s.clone(), store),
                s,
            }
        }
        fn inflight_uploads(&self) -> usize {
            self.s.inflight_uploads()
        }
        fn inflight_upload_bytes(&self) -> u64 {
            self.s.inflight_upload_bytes()
        }
        async fn abort_idle(&self, idle: Duration) -> usize {
            self.s.abort_idle(idle).await
        }
        async fn abort_unfinished(&self) -> usize {
            self.s.abort_unfinished().await
        }
    }

    fn sessions(store: &Arc<dyn StorageApi>) -> UploadSessions {
        UploadSessions::new("t", store.clone(), Gauge::default())
    }

    fn link(max_uploads: usize, max_bytes: u64) -> L {
        let store: Arc<dyn StorageApi> = Arc::new(MemoryStorage::new(1 << 30));
        L::over(
            store.clone(),
            sessions(&store).with_upload_limits(max_uploads, max_bytes),
        )
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
        let store: Arc<dyn StorageApi> = Arc::new(MemoryStorage::new(1 << 30));
        let l = L::over(store.clone(), sessions(&store));
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
        let reaper = tokio::spawn(l.s.clone().reap_idle_uploads(idle, stop.clone()));
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
        let store: Arc<dyn StorageApi> = Arc::new(MemoryStorage::new(1 << 30));
        let open = || {
            let (j, left) = UploadJournal::open(&path).unwrap();
            L::over(store.clone(), sessions(&store).with_journal(j, left))
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
            l.s.clone()
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

    /// Fails every immutable write with its error (an upstream cut off, or one
    /// that lost the upload) and counts the aborts that pass through.
    struct FailingWrites(StorageError, std::sync::atomic::AtomicUsize);

    impl Layer for FailingWrites {
        async fn call<'a>(
            &'a self,
            call: Call<'a>,
            next: &'a dyn StorageApi,
        ) -> StorageResult<Reply> {
            match call {
                Call::WriteImmutable { .. } => Err(self.0.clone()),
                call => {
                    if matches!(call, Call::AbortImmutable { .. }) {
                        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    call.send(next).await
                }
            }
        }
    }

    /// A write the upstream did not take (cut off or not answering: unavailable)
    /// leaves an upload nobody can finish: it is aborted upstream at once and
    /// forgotten; one the backend lost (not found) is forgotten; after an error the
    /// upstream answered (a client's mistake, even as a 500) it is neither.
    #[tokio::test]
    async fn a_write_the_upstream_did_not_take_aborts_its_upload_upstream() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for (error, aborts, forgotten) in [
            (StorageError::Unavailable("write stalled".into()), 1, true),
            (
                StorageError::NotFound("lost with the connection".into()),
                0,
                true,
            ),
            (StorageError::ConflictingWrite("x".into()), 0, false),
            (
                StorageError::Remote {
                    kind: "500".into(),
                    message: "a write past the allocated size".into(),
                },
                0,
                false,
            ),
        ] {
            let store: Arc<dyn StorageApi> = Arc::new(MemoryStorage::new(1 << 30));
            let layer = Arc::new(FailingWrites(error.clone(), AtomicUsize::new(0)));
            let below = wrap(layer.clone(), store);
            let l = L::over(below.clone(), sessions(&below));
            l.allocate_buckets(alloc(1, &[0], 10)).await.unwrap();
            let si = StorageIndex([1; 16]);
            let e = l
                .write_immutable(si, 0, &Secret(vec![1; 32]), 0, Bytes::from_static(b"x"))
                .await
                .unwrap_err();
            assert_eq!(e, error);
            assert_eq!(l.inflight_uploads(), usize::from(!forgotten), "{error}");
            // The abort runs in the background.
            let deadline = Instant::now() + Duration::from_secs(5);
            while layer.1.load(Ordering::SeqCst) < aborts && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(layer.1.load(Ordering::SeqCst), aborts, "{error}: aborts");
        }
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
