//! The embedded share store: shares on local disk, the default backend.
//!
//! [`Store`] implements [`StorageApi`] with the semantics of Tahoe-LAFS 1.20's
//! `StorageServer`, and keeps its shares in **Tahoe's own on-disk format**: a store
//! directory is laid out like a Tahoe node's `storage/` directory and its share files
//! are Tahoe's v2 containers (described in `container.rs`), so a Tahoe storage
//! server can serve shares this store wrote and this store can serve a Tahoe node's
//! shares. Adopting the format cost little: the containers are simple, and matching
//! them byte for byte is what the differential test against Tahoe checks.
//!
//! # On disk
//! ```text
//! <root>/shares/<p>/<si>/<shnum>           finished shares, mutable or immutable
//! <root>/shares/incoming/<p>/<si>/<shnum>  immutable shares being uploaded
//! <root>/corruption-advisories/<time>--<si>-<shnum>   corruption reports
//! <root>/mutation-journal/<si>             committed redo journal (ours)
//! <root>/swampgate-store.lock              held locked while the store is open (ours)
//! ```
//! `<si>` is the storage index in lowercase base32, `<p>` its first two characters,
//! `<shnum>` the share number in decimal: paths are built from typed values only.
//! Leases (owner, hashed renew and cancel secrets, expiry = now + 31 days) and the
//! write enabler of a mutable share (with the nodeid that recorded it) live inside
//! the share files, as in Tahoe, so they persist with the shares.
//!
//! # Durability
//! - An immutable share is written in `incoming/` and becomes visible only when it
//!   is complete: the file is fsynced, renamed into `shares/`, and the directory is
//!   fsynced. Opening the store deletes `incoming/`: a restarted store has no upload
//!   sessions, exactly like Tahoe after a restart. An abort deletes the file.
//! - Every change to a finished share (mutable read-test-write, leases) goes through
//!   a per-storage-index redo journal (see `journal.rs`): the whole change is planned
//!   against an overlay of the files, written to a journal that is fsynced and
//!   committed by rename, then applied and fsynced. A crash at any point leaves
//!   either the old shares or, after replay at the next open, the new ones. This is
//!   stronger than Tahoe, which writes mutable containers in place: one
//!   read-test-write is atomic across all the shares it touches, and a failure while
//!   planning (container too large, no space) changes nothing at all. Mutable data is
//!   written twice (journal, then share); rewriting whole shares instead would cost
//!   far more for large MDMF shares.
//!
//! # Concurrency
//! Every operation runs its file IO on tokio's blocking pool. Per storage index, a
//! read-write lock (striped over a fixed table) makes mutations exclusive: a
//! read-test-write's tests, reads and writes are atomic, and reads see no
//! half-applied change. Immutable uploads run in parallel, one lock per upload; only
//! completing an upload takes its storage index's lock. Guards move into the
//! blocking task, so a caller that goes away never cuts an operation short.
//!
//! # Where this differs from Tahoe
//! - Multi-share changes are atomic (see above); Tahoe may apply part of one.
//! - Immutable uploads and mutable slots never mix in one storage index: allocating
//!   on a mutable slot, or creating a mutable share while an immutable upload of the
//!   same index is in progress, fails with [`StorageError::WrongContainer`].
//! - A mutable write whose container growth exceeds the available space fails with
//!   [`StorageError::NoSpace`] instead of running the disk full.
//! - [`StorageApi::close_immutable`] on a share already completed (by its last
//!   write) succeeds, so a Foolscap front can `close()` after the implicit
//!   completion.

mod container;
mod immutable;
mod journal;
mod layout;
mod mutable;
mod overlay;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::RwLock;

use self::container::{Kind, LEASE_DURATION_SECS};
use self::immutable::Uploads;
use self::layout::Layout;
use super::{
    AllocateRequest, AllocateResult, LeaseSecrets, ReadTestWriteRequest, ReadTestWriteResult,
    ReadVector, Secret, ShareNum, ShareType, StorageApi, StorageError, StorageIndex, StorageResult,
    VersionInfo, WriteProgress,
};
use crate::base32::base32_lower_decode;

/// Tahoe's largest mutable share (`allmydata.mutable.layout.MAX_MUTABLE_SHARE_SIZE`).
pub use self::container::MAX_MUTABLE_SHARE_SIZE;

/// Tahoe aborts an upload that has seen no write for 30 minutes.
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Striping of the per-storage-index locks: enough that unrelated storage indexes
/// rarely share one, small enough to allocate up front.
const LOCK_STRIPES: usize = 1024;

/// The time source for lease expiry and upload timeouts, in seconds since the epoch.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        }))
    }

    /// A clock reading `f`, e.g. a test's settable time.
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(now={})", self.now())
    }
}

/// How to open a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The store directory (the equivalent of a Tahoe node's `storage/`); created if
    /// missing.
    pub root: PathBuf,
    /// The Foolscap tubid of the server this store serves as: 32 lowercase base32
    /// characters (20 bytes). Recorded in new mutable shares beside their write
    /// enabler, and named by "The write enabler was recorded by nodeid '…'."
    pub nodeid: String,
    /// Bytes of free disk space never to use (Tahoe's `reserved_space`).
    pub reserved_space: u64,
    /// The largest share accepted, if smaller than the free space (immutable) or
    /// Tahoe's mutable maximum (mutable).
    pub max_share_size: Option<u64>,
    /// An upload with no write for this long is aborted.
    pub upload_idle_timeout: Duration,
    pub clock: Clock,
}

impl StoreConfig {
    pub fn new(root: impl Into<PathBuf>, nodeid: impl Into<String>) -> StoreConfig {
        StoreConfig {
            root: root.into(),
            nodeid: nodeid.into(),
            reserved_space: 0,
            max_share_size: None,
            upload_idle_timeout: DEFAULT_UPLOAD_IDLE_TIMEOUT,
            clock: Clock::system(),
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store nodeid {0:?} is not a Foolscap tubid (32 lowercase base32 characters)")]
    BadNodeId(String),
    #[error("store {}: already open in another process or handle", .0.display())]
    InUse(PathBuf),
    #[error("store {}: {what}: {source}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

/// The embedded share store. Cheap to clone; clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.layout.root)
            .finish_non_exhaustive()
    }
}

struct Inner {
    layout: Layout,
    nodeid: [u8; 20],
    reserved_space: u64,
    max_share_size: u64,
    idle_timeout_secs: u64,
    clock: Clock,
    locks: Box<[Arc<RwLock<()>>]>,
    uploads: Uploads,
    /// Held (flock) for the life of the store.
    _lock_file: File,
}

impl Store {
    /// Open (creating if needed) the store at `config.root`: discard unfinished
    /// uploads, replay committed journals, and take the store's lock file. Blocking;
    /// call it at startup.
    pub fn open(config: StoreConfig) -> Result<Store, OpenError> {
        let Some(nodeid) = base32_lower_decode::<20>(&config.nodeid) else {
            return Err(OpenError::BadNodeId(config.nodeid));
        };
        let layout = Layout::new(&config.root);
        let io_err = |path: &Path, what: &'static str| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, what, source }
        };
        for dir in [
            &layout.root,
            &layout.shares,
            &layout.advisories,
            &layout.journal,
        ] {
            std::fs::create_dir_all(dir).map_err(io_err(dir, "cannot create directory"))?;
        }
        let lock_path = layout.root.join(layout::LOCK_FILE);
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "cannot open lock file"))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&lock_file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(OpenError::InUse(layout.root.clone()))
            }
            Err(e) => return Err(io_err(&lock_path, "cannot lock")(e)),
        }
        match std::fs::remove_dir_all(&layout.incoming) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(
                    &layout.incoming,
                    "cannot discard unfinished uploads",
                )(e))
            }
            _ => {}
        }
        std::fs::create_dir_all(&layout.incoming)
            .map_err(io_err(&layout.incoming, "cannot create directory"))?;
        let replayed =
            journal::recover(&layout).map_err(io_err(&layout.journal, "cannot replay journal"))?;
        if replayed > 0 {
            tracing::info!(replayed, "store: replayed committed mutation journals");
        }
        let locks = (0..LOCK_STRIPES)
            .map(|_| Arc::new(RwLock::new(())))
            .collect();
        Ok(Store {
            inner: Arc::new(Inner {
                layout,
                nodeid,
                reserved_space: config.reserved_space,
                max_share_size: config.max_share_size.unwrap_or(u64::MAX),
                idle_timeout_secs: config.upload_idle_timeout.as_secs(),
                clock: config.clock,
                locks,
                uploads: Uploads::default(),
                _lock_file: lock_file,
            }),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    fn si_lock(&self, si: &StorageIndex) -> Arc<RwLock<()>> {
        let stripe = u16::from_be_bytes([si.0[0], si.0[1]]) as usize % LOCK_STRIPES;
        self.inner.locks[stripe].clone()
    }

    /// Run `f` on the blocking pool holding `si`'s lock shared (reads).
    async fn reading<T, F>(&self, si: StorageIndex, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> StorageResult<T> + Send + 'static,
    {
        let guard = self.si_lock(&si).read_owned().await;
        self.blocking(move |inner| {
            let _guard = guard;
            f(inner)
        })
        .await
    }

    /// Run `f` on the blocking pool holding `si`'s lock exclusively (changes).
    async fn writing<T, F>(&self, si: StorageIndex, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> StorageResult<T> + Send + 'static,
    {
        let guard = self.si_lock(&si).write_owned().await;
        self.blocking(move |inner| {
            let _guard = guard;
            f(inner)
        })
        .await
    }

    /// Run `f` on the blocking pool. Whatever `f` captures (lock guards included)
    /// lives until it returns, even if the caller stops waiting.
    async fn blocking<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> StorageResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StorageError::Internal(format!("store task failed: {e}")))?
    }
}

/// An `io::Error` while doing `what` to a share, as a [`StorageError`] naming it.
fn share_err(
    si: &StorageIndex,
    sh: ShareNum,
    what: &'static str,
) -> impl FnOnce(io::Error) -> StorageError {
    let si = *si;
    move |e| StorageError::Internal(format!("share {si}/{sh}: {what}: {e}"))
}

/// An `io::Error` while doing `what` to a storage index, as a [`StorageError`].
fn si_err(si: &StorageIndex, what: &'static str) -> impl FnOnce(io::Error) -> StorageError {
    let si = *si;
    move |e| StorageError::Internal(format!("storage index {si}: {what}: {e}"))
}

impl Inner {
    /// Free space for shares: the filesystem's space available to unprivileged users
    /// minus the reserve (0 if it cannot be read, as Tahoe does).
    fn available_space(&self) -> u64 {
        match fs4::available_space(&self.layout.shares) {
            Ok(n) => n.saturating_sub(self.reserved_space),
            Err(e) => {
                tracing::warn!(error = %e, "store: cannot read free disk space");
                0
            }
        }
    }

    fn max_mutable_share_size(&self) -> u64 {
        self.max_share_size.min(MAX_MUTABLE_SHARE_SIZE)
    }

    fn lease_expiration(&self) -> u64 {
        self.clock.now().saturating_add(LEASE_DURATION_SECS)
    }

    fn version(&self) -> VersionInfo {
        let available = self.available_space();
        VersionInfo {
            maximum_immutable_share_size: available.min(self.max_share_size),
            maximum_mutable_share_size: self.max_mutable_share_size(),
            available_space: available,
            application_version: format!("swampgate/{}", env!("CARGO_PKG_VERSION")).into_bytes(),
        }
    }

    /// Add or renew a lease on every share of `si` (Tahoe's `add_lease`).
    fn add_lease(&self, si: &StorageIndex, lease: &LeaseSecrets) -> StorageResult<()> {
        journal::replay_pending(&self.layout, si).map_err(si_err(si, "replaying journal"))?;
        let shares = layout::list_share_numbers(&self.layout.bucket_dir(si))
            .map_err(si_err(si, "listing shares"))?;
        if shares.is_empty() {
            return Err(StorageError::NotFound(format!(
                "storage index {si}: no shares to lease"
            )));
        }
        let new_lease = container::NewLease {
            owner_num: 1,
            renew_secret: &lease.renew.0,
            cancel_secret: &lease.cancel.0,
            expiration: self.lease_expiration(),
            nodeid: self.nodeid,
        };
        let available = self.available_space();
        let mut ops = Vec::new();
        for sh in shares {
            if let Some((file, kind)) = self.open_share(si, sh)? {
                ops.extend(self.lease_ops(si, sh, file, kind, available, &new_lease)?);
            }
        }
        journal::Journal { si: *si, ops }
            .run(&self.layout)
            .map_err(si_err(si, "writing leases"))
    }

    /// Share `sh` of `si` and the kind of container it is, or `None` if there is no
    /// such file.
    fn open_share(
        &self,
        si: &StorageIndex,
        sh: ShareNum,
    ) -> StorageResult<Option<(overlay::Overlay, Kind)>> {
        let file = match overlay::Overlay::open(&self.layout.share_path(si, sh)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(share_err(si, sh, "opening share")(e)),
        };
        let header = file
            .read(0, 32)
            .map_err(share_err(si, sh, "reading header"))?;
        Ok(Some((file, container::kind_of(&header))))
    }

    /// The journal operations that add or renew `lease` on one share. A file that
    /// is no share container gets none (Tahoe skips it too).
    fn lease_ops(
        &self,
        si: &StorageIndex,
        sh: ShareNum,
        file: overlay::Overlay,
        kind: Kind,
        available: u64,
        lease: &container::NewLease<'_>,
    ) -> StorageResult<Vec<journal::Op>> {
        let err = || share_err(si, sh, "planning lease");
        let (result, file) = match kind {
            Kind::Immutable(schema) => {
                let mut s = container::ImmutableShare::open(file, schema).map_err(err())?;
                (
                    s.add_or_renew_lease(available, lease).map_err(err())?,
                    s.file,
                )
            }
            Kind::Mutable(schema) => {
                let mut s = container::MutableShare::open(file, schema);
                (
                    s.add_or_renew_lease(available, lease).map_err(err())?,
                    s.file,
                )
            }
            Kind::Unknown => return Ok(Vec::new()),
        };
        result.map_err(|_| no_space_for_lease(si, sh))?;
        Ok(file
            .into_ops()
            .into_iter()
            .map(|op| journal::Op::File(sh, op))
            .collect())
    }

    /// Record a client's corruption report in `corruption-advisories/` (Tahoe's
    /// format and file name). Silently dropped, as in Tahoe, when the report would
    /// not fit in the available space.
    fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: &StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> StorageResult<()> {
        if !self.layout.share_path(si, shnum).is_file() {
            return Err(StorageError::NotFound(format!(
                "share {si}/{shnum}: no such share to report corrupt"
            )));
        }
        let report = format!(
            "report: Share Corruption\ntype: {}\nstorage_index: {si}\nshare_number: {shnum}\n\n{reason}\n\n",
            share_type.as_str()
        );
        if report.len() as u64 > self.available_space() {
            return Ok(());
        }
        let path = self.layout.advisory_path(&report_stamp(), si, shnum);
        std::fs::write(&path, report).map_err(share_err(si, shnum, "writing corruption report"))
    }
}

fn no_space_for_lease(si: &StorageIndex, sh: ShareNum) -> StorageError {
    StorageError::NoSpace(format!("share {si}/{sh}: no space for another lease"))
}

/// The time as Tahoe names corruption reports: `datetime.isoformat("T")` in UTC
/// with the colons removed (microseconds only when non-zero).
fn report_stamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.microsecond() != 0 {
        s.push_str(&format!(".{:06}", t.microsecond()));
    }
    s
}

#[async_trait::async_trait]
impl StorageApi for Store {
    async fn version(&self) -> StorageResult<VersionInfo> {
        self.blocking(|inner| Ok(inner.version())).await
    }

    async fn allocate_buckets(&self, req: AllocateRequest) -> StorageResult<AllocateResult> {
        self.writing(req.storage_index, move |inner| inner.allocate(&req))
            .await
    }

    async fn write_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        let (upload, state) = self.active_upload(&si, shnum, upload_secret).await?;
        // Only the write that completes the share publishes it into the storage
        // index's directory, which needs the storage index's lock.
        let guard = if immutable::would_complete(&state, upload.allocated, offset, data.len()) {
            Some(self.si_lock(&si).write_owned().await)
        } else {
            None
        };
        self.blocking(move |inner| {
            let _guard = guard;
            inner.write_upload(&upload, state, offset, data)
        })
        .await
    }

    async fn close_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let (upload, state) = match self.active_upload(&si, shnum, upload_secret).await {
            Ok(active) => active,
            // Completed by its last write: closing it again changes nothing.
            Err(StorageError::NotFound(msg)) => {
                return match self.finished_share_exists(si, shnum).await? {
                    true => Ok(()),
                    false => Err(StorageError::NotFound(msg)),
                }
            }
            Err(e) => return Err(e),
        };
        self.writing(si, move |inner| inner.close_upload(&upload, state))
            .await
    }

    async fn abort_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let (upload, state) = match self.active_upload(&si, shnum, upload_secret).await {
            Ok(active) => active,
            Err(StorageError::NotFound(msg)) => {
                return Err(match self.finished_share_exists(si, shnum).await? {
                    true => StorageError::NotAllowed(format!(
                        "share {si}/{shnum}: upload already complete, cannot abort"
                    )),
                    false => StorageError::NotFound(msg),
                })
            }
            Err(e) => return Err(e),
        };
        self.blocking(move |inner| inner.abort_upload(&upload, state))
            .await
    }

    async fn list_immutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        self.reading(si, move |inner| inner.list_immutable(&si))
            .await
    }

    async fn read_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        self.reading(si, move |inner| {
            inner.read_immutable(&si, shnum, offset, length)
        })
        .await
    }

    async fn immutable_share_length(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> StorageResult<u64> {
        self.reading(si, move |inner| Ok(inner.open_immutable(&si, shnum)?.1))
            .await
    }

    async fn add_lease(&self, si: StorageIndex, lease: LeaseSecrets) -> StorageResult<()> {
        self.writing(si, move |inner| inner.add_lease(&si, &lease))
            .await
    }

    async fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> StorageResult<()> {
        self.reading(si, move |inner| {
            inner.advise_corrupt_share(share_type, &si, shnum, &reason)
        })
        .await
    }

    async fn read_test_write(
        &self,
        req: ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult> {
        self.writing(req.storage_index, move |inner| inner.read_test_write(&req))
            .await
    }

    async fn list_mutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        self.reading(si, move |inner| inner.list_mutable(&si)).await
    }

    async fn read_mutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        self.reading(si, move |inner| {
            let share = inner.open_mutable(&si, shnum)?;
            inner.read_mutable_data(&si, shnum, &share, offset, length)
        })
        .await
    }

    async fn mutable_share_length(&self, si: StorageIndex, shnum: ShareNum) -> StorageResult<u64> {
        self.reading(si, move |inner| {
            let share = inner.open_mutable(&si, shnum)?;
            share
                .data_length()
                .map_err(share_err(&si, shnum, "reading length"))
        })
        .await
    }

    /// Atomic: no read-test-write of `si` lands between the reads of one call.
    async fn slot_readv(
        &self,
        si: StorageIndex,
        shares: Vec<ShareNum>,
        readv: Vec<ReadVector>,
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        self.reading(si, move |inner| inner.slot_readv(&si, &shares, &readv))
            .await
    }
}

impl Store {
    /// Whether `si`/`shnum` is a finished immutable share (to tell an upload that is
    /// done from one that never was).
    async fn finished_share_exists(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> StorageResult<bool> {
        self.reading(si, move |inner| match inner.open_immutable(&si, shnum) {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound(_) | StorageError::WrongContainer(_)) => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }
}
