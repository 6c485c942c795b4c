//! One account's view of a link: a [`Layer`] that charges what the account stores
//! to it, refuses what does not fit its quota as a full server would, paces its
//! reads, and counts its calls and bytes.
//!
//! - Immutable shares: an allocation is granted only for the shares that fit
//!   ([`Ledger::reserve`], a `pending` charge at once); the others are left out of
//!   `allocated`, which both protocols' clients read as "no room here". A completed
//!   share turns `stored`; an abort drops the charge.
//! - Mutable shares: charged to the account whose write created them, at their size
//!   after each write; a write that would grow an account's own slot past its quota
//!   fails with `NoSpace`.
//! - Reads: answered after the account's token bucket allows their bytes (pacing,
//!   never failure).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::ledger::{Counts, Ledger};
use super::metrics::AccountSeries;
use crate::storage::layer::Layer;
use crate::storage::{
    Call, Reply, ShareNum, StorageApi, StorageError, StorageIndex, StorageResult,
};

/// `u64::MAX` in an atomic: no limit.
const NONE: u64 = u64::MAX;

/// A token bucket of read bytes: up to one second's worth of burst, debt paid by
/// waiting.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// An account served by this process: its limits (updated live), its counters
/// since the last flush, its read pacing and its revocation.
pub struct AccountHandle {
    pub name: String,
    pub link: String,
    ledger: Ledger,
    quota: AtomicU64,
    read_rate: AtomicU64,
    counts: Mutex<Counts>,
    bucket: Mutex<Bucket>,
    /// Serialises this account's allocations in this process, so concurrent uploads
    /// cannot both take the last of its quota.
    reserving: tokio::sync::Mutex<()>,
    /// Cancelled when the account is disabled or removed: its connections close.
    revoked: CancellationToken,
    /// Shares allocated to this account's uploads in this process, until they
    /// complete or abort, or go idle (the upload sessions abort those upstream).
    uploading: Mutex<HashMap<(StorageIndex, ShareNum), Upload>>,
    upload_idle: Duration,
    series: AccountSeries,
}

/// An upload in progress here: its allocated size and its last call.
struct Upload {
    size: u64,
    touched: Instant,
}

impl std::fmt::Debug for AccountHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountHandle")
            .field("name", &self.name)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl AccountHandle {
    /// `upload_idle`: how long an upload may go without a call before it counts as
    /// abandoned (`[limits] upload_idle_timeout_secs`).
    pub fn new(
        name: &str,
        link: &str,
        ledger: Ledger,
        quota: Option<u64>,
        read_rate: Option<u64>,
        upload_idle: Duration,
    ) -> AccountHandle {
        let h = AccountHandle {
            name: name.to_string(),
            link: link.to_string(),
            ledger,
            quota: AtomicU64::new(NONE),
            read_rate: AtomicU64::new(NONE),
            counts: Mutex::new(Counts::default()),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
            reserving: tokio::sync::Mutex::new(()),
            revoked: CancellationToken::new(),
            uploading: Mutex::new(HashMap::new()),
            upload_idle,
            series: AccountSeries::default(),
        };
        h.set_limits(quota, read_rate);
        h
    }

    /// Count into these metric series.
    pub fn with_series(mut self, series: AccountSeries) -> AccountHandle {
        self.series = series;
        self
    }

    pub fn series(&self) -> &AccountSeries {
        &self.series
    }

    /// Take new limits (a running daemon sees `account set` this way).
    pub fn set_limits(&self, quota: Option<u64>, read_rate: Option<u64>) {
        self.quota.store(quota.unwrap_or(NONE), Ordering::Relaxed);
        let rate = read_rate.filter(|&r| r > 0).unwrap_or(NONE);
        if self.read_rate.swap(rate, Ordering::Relaxed) != rate {
            // A new rate starts with a full second's burst.
            let mut b = self.bucket.lock().expect("bucket");
            b.tokens = if rate == NONE { 0.0 } else { rate as f64 };
            b.last = Instant::now();
        }
    }

    pub fn quota(&self) -> Option<u64> {
        Some(self.quota.load(Ordering::Relaxed)).filter(|&q| q != NONE)
    }

    pub fn read_rate(&self) -> Option<u64> {
        Some(self.read_rate.load(Ordering::Relaxed)).filter(|&r| r != NONE)
    }

    /// Disable: every connection that used the account closes.
    pub fn revoke(&self) {
        self.revoked.cancel();
    }

    pub fn revoked(&self) -> &CancellationToken {
        &self.revoked
    }

    /// The counts since the last call, reset.
    pub fn take_counts(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().expect("counts"))
    }

    /// Give back counts a failed flush could not write.
    pub fn return_counts(&self, c: Counts) {
        let mut m = self.counts.lock().expect("counts");
        m.calls += c.calls;
        m.bytes_read += c.bytes_read;
        m.bytes_written += c.bytes_written;
        m.last_seen = m.last_seen.max(c.last_seen);
    }

    fn count(&self, written: u64) {
        self.series.calls.inc();
        self.series.written_bytes.inc_by(written);
        let mut c = self.counts.lock().expect("counts");
        c.calls += 1;
        c.bytes_written += written;
        c.last_seen = super::ledger::now();
    }

    /// Wait until the read rate allows `n` more bytes.
    async fn pace(&self, n: u64) {
        self.series.read_bytes.inc_by(n);
        {
            self.counts.lock().expect("counts").bytes_read += n;
        }
        let rate = self.read_rate.load(Ordering::Relaxed);
        if rate == NONE || n == 0 {
            return;
        }
        let wait = {
            let mut b = self.bucket.lock().expect("bucket");
            let now = Instant::now();
            let rate = rate as f64;
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
            b.last = now;
            b.tokens -= n as f64;
            if b.tokens < 0.0 {
                Duration::from_secs_f64(-b.tokens / rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether an upload of this share is in progress here.
    pub fn is_uploading(&self, si: StorageIndex, sh: ShareNum) -> bool {
        self.uploading
            .lock()
            .expect("uploading")
            .get(&(si, sh))
            .is_some_and(|u| u.touched.elapsed() < self.upload_idle)
    }

    fn touch(&self, si: StorageIndex, sh: ShareNum) {
        if let Some(u) = self.uploading.lock().expect("uploading").get_mut(&(si, sh)) {
            u.touched = Instant::now();
        }
    }

    fn forget_uploads(&self, si: StorageIndex, shares: &[ShareNum]) {
        let mut up = self.uploading.lock().expect("uploading");
        for &sh in shares {
            up.remove(&(si, sh));
        }
    }

    async fn completed(&self, si: StorageIndex, sh: ShareNum) {
        let up = self.uploading.lock().expect("uploading").remove(&(si, sh));
        let charge = up.map(|u| (self.name.as_str(), u.size));
        if let Err(e) = self.ledger.complete(&self.link, si, sh, charge).await {
            self.ledger_failed("a completed share", e);
        }
    }

    async fn aborted(&self, si: StorageIndex, sh: ShareNum) {
        self.uploading.lock().expect("uploading").remove(&(si, sh));
        if let Err(e) = self.ledger.release(&self.link, si, sh).await {
            self.ledger_failed("an aborted upload", e);
        }
    }

    fn ledger_failed(&self, what: &str, e: impl std::fmt::Display) {
        warn!(
            account = %self.name,
            link = %self.link,
            "accounting: cannot record {what}: {e} (settled by the next reconcile)"
        );
    }
}

/// The layer: one per account and front set.
pub struct Accounted {
    pub handle: Arc<AccountHandle>,
}

impl Accounted {
    async fn allocate(
        &self,
        mut req: crate::storage::AllocateRequest,
        next: &dyn StorageApi,
    ) -> StorageResult<Reply> {
        let h = &*self.handle;
        let si = req.storage_index;
        let wanted: Vec<_> = req.share_numbers.iter().copied().collect();
        let size = req.allocated_size;
        // In progress here before the pending charges exist: a reconcile running
        // meanwhile leaves them alone.
        {
            let mut up = h.uploading.lock().expect("uploading");
            // Uploads abandoned here were aborted upstream by the sessions' reaper;
            // a reconcile settles their charges.
            up.retain(|_, u| u.touched.elapsed() < h.upload_idle);
            let touched = Instant::now();
            for &sh in &wanted {
                up.entry((si, sh)).or_insert(Upload { size, touched });
            }
        }
        let reserved = {
            let _one = h.reserving.lock().await;
            h.ledger
                .reserve(&h.name, &h.link, si, &wanted, size, h.quota())
                .await
        };
        let (granted, refused) = match reserved {
            Ok(x) => x,
            Err(e) => {
                h.forget_uploads(si, &wanted);
                return Err(StorageError::Internal(e.to_string()));
            }
        };
        h.series.refused_shares.inc_by(refused as u64);
        req.share_numbers = granted.iter().copied().collect();
        let r = Call::AllocateBuckets(req).send(next).await;
        let allocated: BTreeSet<_> = match &r {
            Ok(Reply::Allocated(a)) => a.allocated.clone(),
            _ => BTreeSet::new(),
        };
        let not_allocated: Vec<_> = wanted
            .iter()
            .copied()
            .filter(|s| !allocated.contains(s))
            .collect();
        h.forget_uploads(si, &not_allocated);
        for &sh in granted.iter().filter(|s| !allocated.contains(s)) {
            h.aborted(si, sh).await;
        }
        r
    }

    async fn read_test_write(
        &self,
        req: crate::storage::ReadTestWriteRequest,
        next: &dyn StorageApi,
    ) -> StorageResult<Reply> {
        let h = &*self.handle;
        let si = req.storage_index;
        // Each written share's size after the write, and whom it is charged to.
        let mut after = Vec::new();
        let mut growth = 0u64;
        for (&sh, tw) in &req.test_write_vectors {
            if tw.write.is_empty() && tw.new_length.is_none() {
                continue;
            }
            let row = h
                .ledger
                .mutable(&h.link, si, sh)
                .await
                .map_err(|e| StorageError::Internal(e.to_string()))?;
            let created = row.is_none();
            let (owner, before) = row.unwrap_or_else(|| (h.name.clone(), 0));
            let end = tw
                .write
                .iter()
                .map(|w| w.offset.saturating_add(w.data.len() as u64))
                .max()
                .unwrap_or(0);
            let mut size = before.max(end);
            if let Some(n) = tw.new_length {
                size = size.min(n);
            }
            if owner == h.name {
                growth += size.saturating_sub(before);
            }
            after.push((sh, owner, size, created));
        }
        if growth > 0 {
            if let Some(q) = h.quota() {
                let stored = h
                    .ledger
                    .stored(&h.name)
                    .await
                    .map_err(|e| StorageError::Internal(e.to_string()))?;
                if stored.saturating_add(growth) > q {
                    return Err(StorageError::NoSpace(format!(
                        "account {:?} would exceed its quota of {q} bytes",
                        h.name
                    )));
                }
            }
        }
        // A share this write may create is charged `pending` first: a kill after the
        // write cannot lose the charge (a reconcile settles it).
        let mut pending = Vec::new();
        for (sh, owner, size, created) in &after {
            if *created && *size > 0 {
                match h
                    .ledger
                    .create_mutable(&h.link, si, *sh, owner, *size)
                    .await
                {
                    Ok(true) => pending.push(*sh),
                    Ok(false) => {}
                    Err(e) => return Err(StorageError::Internal(e.to_string())),
                }
            }
        }
        let r = Call::ReadTestWrite(req).send(next).await;
        let success = matches!(&r, Ok(Reply::ReadTestWrite(res)) if res.success);
        if success {
            for (sh, owner, size, _) in after {
                if let Err(e) = h.ledger.set_mutable(&h.link, si, sh, &owner, size).await {
                    h.ledger_failed("a mutable share's size", e);
                }
            }
        } else {
            for sh in pending {
                if let Err(e) = h.ledger.release(&h.link, si, sh).await {
                    h.ledger_failed("a mutable write that failed", e);
                }
            }
        }
        let r = r?;
        h.pace(r.bytes_out()).await;
        Ok(r)
    }
}

impl Layer for Accounted {
    async fn call<'a>(&'a self, call: Call<'a>, next: &'a dyn StorageApi) -> StorageResult<Reply> {
        let h = &*self.handle;
        if h.revoked.is_cancelled() {
            return Err(StorageError::NotAllowed(format!(
                "account {:?} is disabled",
                h.name
            )));
        }
        h.count(call.bytes_in());
        match call {
            Call::AllocateBuckets(req) => self.allocate(req, next).await,
            Call::ReadTestWrite(req) => self.read_test_write(req, next).await,
            Call::WriteImmutable { si, shnum, .. } => {
                h.touch(si, shnum);
                let r = call.send(next).await;
                if let Ok(Reply::Written(p)) = &r {
                    if p.complete() {
                        h.completed(si, shnum).await;
                    }
                }
                r
            }
            Call::CloseImmutable { si, shnum, .. } => {
                let r = call.send(next).await?;
                h.completed(si, shnum).await;
                Ok(r)
            }
            Call::AbortImmutable { si, shnum, .. } => {
                let r = call.send(next).await?;
                h.aborted(si, shnum).await;
                Ok(r)
            }
            call => {
                let r = call.send(next).await?;
                h.pace(r.bytes_out()).await;
                Ok(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::ledger::Account;
    use crate::storage::layer::wrap;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::*;
    use bytes::Bytes;

    fn secret(b: u8) -> Secret {
        Secret(vec![b; 32])
    }

    fn alloc(si: u8, shares: &[ShareNum], size: u64) -> AllocateRequest {
        AllocateRequest {
            storage_index: StorageIndex([si; 16]),
            lease: LeaseSecrets {
                renew: secret(1),
                cancel: secret(2),
            },
            upload_secret: secret(3),
            share_numbers: shares.iter().copied().collect(),
            allocated_size: size,
        }
    }

    async fn setup(quota: Option<u64>) -> (tempfile::TempDir, Ledger, Arc<dyn StorageApi>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("a.sqlite").display()
        );
        let ledger = Ledger::open(&url).await.unwrap();
        ledger
            .add(&Account {
                name: "alice".into(),
                link: "l".into(),
                swissnum: "s".into(),
                enabled: true,
                quota,
                read_rate: None,
                generation: 0,
            })
            .await
            .unwrap();
        let handle = Arc::new(AccountHandle::new(
            "alice",
            "l",
            ledger.clone(),
            quota,
            None,
            Duration::from_secs(300),
        ));
        let api = wrap(
            Arc::new(Accounted { handle }),
            Arc::new(MemoryStorage::new(1 << 30)),
        );
        (dir, ledger, api)
    }

    #[tokio::test]
    async fn allocations_past_the_quota_are_left_out_and_completed_shares_charged() {
        let (_d, ledger, api) = setup(Some(25)).await;
        let a = api
            .allocate_buckets(alloc(1, &[0, 1, 2], 10))
            .await
            .unwrap();
        assert_eq!(a.allocated, BTreeSet::from([0, 1]), "two of 10 fit in 25");
        assert_eq!(ledger.stored("alice").await.unwrap(), 20, "pending counts");
        let si = StorageIndex([1; 16]);
        let p = api
            .write_immutable(si, 0, &secret(3), 0, Bytes::from(vec![7; 10]))
            .await
            .unwrap();
        assert!(p.complete());
        api.abort_immutable(si, 1, &secret(3)).await.unwrap();
        assert_eq!(ledger.stored("alice").await.unwrap(), 10);
        assert!(ledger.pending("l", i64::MAX).await.unwrap().is_empty());
        // Full: nothing allocated, the server's answer otherwise unchanged.
        let a = api.allocate_buckets(alloc(2, &[0, 1], 20)).await.unwrap();
        assert!(a.allocated.is_empty());
        assert_eq!(ledger.stored("alice").await.unwrap(), 10);
    }

    #[tokio::test]
    async fn concurrent_allocations_of_one_account_never_overshoot_its_quota() {
        let (_d, ledger, api) = setup(Some(50)).await;
        let calls = (0..20u8).map(|i| {
            let api = api.clone();
            async move { api.allocate_buckets(alloc(100 + i, &[0], 10)).await }
        });
        let granted: usize = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.unwrap().allocated.len())
            .sum();
        assert_eq!(granted, 5, "50 bytes hold five shares of 10, and no more");
        assert_eq!(ledger.stored("alice").await.unwrap(), 50);
    }

    #[tokio::test]
    async fn a_mutable_write_past_the_quota_is_refused() {
        let (_d, ledger, api) = setup(Some(100)).await;
        let si = StorageIndex([5; 16]);
        let write = |len: usize| ReadTestWriteRequest {
            storage_index: si,
            secrets: MutableSecrets {
                write_enabler: secret(9),
                lease: LeaseSecrets {
                    renew: secret(1),
                    cancel: secret(2),
                },
            },
            test_write_vectors: [(
                0,
                TestWriteVectors {
                    test: vec![],
                    write: vec![WriteVector {
                        offset: 0,
                        data: Bytes::from(vec![1; len]),
                    }],
                    new_length: None,
                },
            )]
            .into(),
            read_vector: vec![],
        };
        assert!(api.read_test_write(write(60)).await.unwrap().success);
        assert_eq!(ledger.stored("alice").await.unwrap(), 60);
        assert!(api.read_test_write(write(90)).await.unwrap().success);
        assert_eq!(ledger.stored("alice").await.unwrap(), 90);
        let e = api.read_test_write(write(101)).await.unwrap_err();
        assert!(matches!(e, StorageError::NoSpace(_)), "{e:?}");
        assert_eq!(ledger.stored("alice").await.unwrap(), 90);
    }

    #[tokio::test]
    async fn reads_are_paced_by_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("a.sqlite").display()
        );
        let ledger = Ledger::open(&url).await.unwrap();
        // Paused once the database is open (its pool has timeouts of its own).
        tokio::time::pause();
        let h = AccountHandle::new("a", "l", ledger, None, Some(1000), Duration::from_secs(300));
        let t0 = tokio::time::Instant::now();
        // One second's burst, then 1000 bytes a second.
        h.pace(1000).await;
        assert!(t0.elapsed() < Duration::from_millis(50));
        h.pace(3000).await;
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(2900) && took < Duration::from_millis(3200),
            "{took:?}"
        );
        assert_eq!(h.take_counts().bytes_read, 4000);
    }
}
