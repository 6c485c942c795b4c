//! Immutable shares: allocation, upload sessions, completion, reads.
//!
//! An upload session lives in memory (an [`Upload`] per `(storage index, share)`)
//! and on disk as the share's container in `incoming/`, created at allocation with
//! its header and first lease, and filled in place by writes. Completion fsyncs it
//! and renames it into `shares/`; abort and timeout delete it.

use std::collections::{BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rangemap::RangeSet;
use tokio::sync::OwnedMutexGuard;

use super::container::{self, Kind, NewLease, IMM_HEADER_SIZE};
use super::layout::{self, create_dir_durable, sync_dir};
use super::overlay::Overlay;
use super::{journal, share_err, si_err, Inner, Store};
use crate::storage::{
    AllocateRequest, AllocateResult, ByteRange, Secret, ShareNum, StorageError, StorageIndex,
    StorageResult, WriteProgress,
};

/// Conflict checks compare already-written bytes in pieces of this size, so a large
/// write is never doubled in memory.
const COMPARE_CHUNK: u64 = 64 * 1024;

/// One immutable share being uploaded.
pub(super) struct Upload {
    si: StorageIndex,
    shnum: ShareNum,
    secret: Vec<u8>,
    pub allocated: u64,
    last_activity: AtomicU64,
    state: Arc<tokio::sync::Mutex<UploadState>>,
}

#[derive(Default)]
pub(super) struct UploadState {
    written: RangeSet<u64>,
    /// Completed, aborted or timed out: the session is over.
    done: bool,
}

impl Upload {
    fn expired(&self, now: u64, timeout: u64) -> bool {
        now.saturating_sub(self.last_activity.load(Ordering::Relaxed)) >= timeout
    }
}

/// The upload sessions in progress.
#[derive(Default)]
pub(super) struct Uploads {
    map: Mutex<HashMap<(StorageIndex, ShareNum), Arc<Upload>>>,
}

impl Uploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(StorageIndex, ShareNum), Arc<Upload>>> {
        // A panic elsewhere while holding the map leaves it consistent (every
        // mutation is a single insert or remove), so poisoning is ignored.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, si: &StorageIndex, shnum: ShareNum) -> Option<Arc<Upload>> {
        self.lock().get(&(*si, shnum)).cloned()
    }

    fn remove(&self, up: &Arc<Upload>) {
        let mut map = self.lock();
        if map
            .get(&(up.si, up.shnum))
            .is_some_and(|cur| Arc::ptr_eq(cur, up))
        {
            map.remove(&(up.si, up.shnum));
        }
    }

    /// Space promised to uploads in progress.
    fn allocated_total(&self) -> u64 {
        self.lock().values().map(|u| u.allocated).sum()
    }

    pub fn any_for(&self, si: &StorageIndex) -> bool {
        self.lock().keys().any(|(s, _)| s == si)
    }

    fn all(&self) -> Vec<Arc<Upload>> {
        self.lock().values().cloned().collect()
    }
}

/// The byte ranges of `[0, allocated)` not yet written.
fn required_ranges(written: &RangeSet<u64>, allocated: u64) -> Vec<ByteRange> {
    if allocated == 0 {
        return Vec::new();
    }
    written
        .gaps(&(0..allocated))
        .map(|r| ByteRange {
            begin: r.start,
            end: r.end,
        })
        .collect()
}

/// Whether writing `len` bytes at `offset` would leave nothing unwritten (if the
/// write succeeds).
pub(super) fn would_complete(state: &UploadState, allocated: u64, offset: u64, len: usize) -> bool {
    let Some(end) = offset.checked_add(len as u64) else {
        return false;
    };
    if end > allocated {
        return false;
    }
    let mut written = state.written.clone();
    if end > offset {
        written.insert(offset..end);
    }
    required_ranges(&written, allocated).is_empty()
}

fn no_upload(si: &StorageIndex, shnum: ShareNum) -> StorageError {
    StorageError::NotFound(format!("share {si}/{shnum}: no upload in progress"))
}

impl Store {
    /// The upload of `si`/`shnum`, locked, after checking its secret and timeout.
    pub(super) async fn active_upload(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        secret: &Secret,
    ) -> StorageResult<(Arc<Upload>, OwnedMutexGuard<UploadState>)> {
        let up = self
            .inner
            .uploads
            .get(si, shnum)
            .ok_or_else(|| no_upload(si, shnum))?;
        if !container::secrets_equal(&up.secret, &secret.0) {
            return Err(StorageError::WrongUploadSecret);
        }
        let state = up.state.clone().lock_owned().await;
        if state.done {
            return Err(no_upload(si, shnum));
        }
        if up.expired(self.inner.clock.now(), self.inner.idle_timeout_secs) {
            let expired = up.clone();
            self.blocking(move |inner| inner.abort_upload(&expired, state))
                .await?;
            return Err(no_upload(si, shnum));
        }
        Ok((up, state))
    }
}

impl Inner {
    /// Tahoe's `allocate_buckets`.
    pub(super) fn allocate(&self, req: &AllocateRequest) -> StorageResult<AllocateResult> {
        let si = &req.storage_index;
        let now = self.clock.now();
        self.reap_expired(now);
        journal::replay_pending(&self.layout, si).map_err(si_err(si, "replaying journal"))?;
        let available = self.available_space();
        // Signed, as in Tahoe: promised space may exceed what is free.
        let mut remaining = available as i128 - self.uploads.allocated_total() as i128;

        let lease = NewLease {
            owner_num: 0,
            renew_secret: &req.lease.renew.0,
            cancel_secret: &req.lease.cancel.0,
            expiration: now.saturating_add(container::LEASE_DURATION_SECS),
            nodeid: self.nodeid,
        };

        // Every share already here is reported, and gets the lease.
        let existing = layout::list_share_numbers(&self.layout.bucket_dir(si))
            .map_err(si_err(si, "listing shares"))?;
        let mut opened = Vec::new();
        for &sh in &existing {
            match self.open_share(si, sh)? {
                Some((file, kind @ Kind::Immutable(_))) => opened.push((sh, file, kind)),
                Some((_, Kind::Mutable(_))) => {
                    return Err(StorageError::WrongContainer(format!(
                        "storage index {si} is a mutable slot (share {sh}), not an immutable file"
                    )))
                }
                Some((_, Kind::Unknown)) => {
                    return Err(StorageError::Internal(format!(
                        "share {si}/{sh}: not a share container"
                    )))
                }
                None => {}
            }
        }
        let mut ops = Vec::new();
        for (sh, file, kind) in opened {
            ops.extend(self.lease_ops(si, sh, file, kind, available, &lease)?);
        }
        journal::Journal { si: *si, ops }
            .run(&self.layout)
            .map_err(si_err(si, "writing leases"))?;

        let size = req.allocated_size;
        let mut allocated = BTreeSet::new();
        for &sh in &req.share_numbers {
            if existing.contains(&sh) || self.uploads.get(si, sh).is_some() {
                // Finished, or being uploaded by someone (perhaps this very client):
                // reported in neither set.
                continue;
            }
            if size > self.max_share_size || remaining < size as i128 {
                continue;
            }
            self.create_incoming(si, sh, size, &lease)?;
            let up = Arc::new(Upload {
                si: *si,
                shnum: sh,
                secret: req.upload_secret.0.clone(),
                allocated: size,
                last_activity: AtomicU64::new(now),
                state: Default::default(),
            });
            self.uploads.lock().insert((*si, sh), up);
            remaining -= size as i128;
            allocated.insert(sh);
        }
        Ok(AllocateResult {
            already_have: existing,
            allocated,
        })
    }

    /// The new share's container: header, a hole for the data, the first lease.
    fn create_incoming(
        &self,
        si: &StorageIndex,
        sh: ShareNum,
        size: u64,
        lease: &NewLease<'_>,
    ) -> StorageResult<()> {
        let err = || share_err(si, sh, "creating upload");
        let lease_at = size.checked_add(IMM_HEADER_SIZE).ok_or_else(|| {
            StorageError::DataTooLarge(format!("share {si}/{sh}: allocated size {size}"))
        })?;
        std::fs::create_dir_all(self.layout.incoming_bucket_dir(si)).map_err(err())?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.layout.incoming_share_path(si, sh))
            .map_err(err())?;
        let mut header = container::immutable_header(size);
        header[8..12].copy_from_slice(&1u32.to_be_bytes());
        file.write_all_at(&header, 0).map_err(err())?;
        file.write_all_at(&container::immutable_first_lease(lease), lease_at)
            .map_err(err())
    }

    /// Tahoe's `BucketWriter.write`: conflicts first, then the size limit; the
    /// write that leaves nothing unwritten completes the share.
    pub(super) fn write_upload(
        &self,
        up: &Arc<Upload>,
        mut state: OwnedMutexGuard<UploadState>,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        let (si, sh) = (&up.si, up.shnum);
        up.last_activity.store(self.clock.now(), Ordering::Relaxed);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.layout.incoming_share_path(si, sh))
            .map_err(share_err(si, sh, "opening upload"))?;

        let len = data.len() as u64;
        let end = offset.saturating_add(len);
        if end > offset {
            let mut buf = vec![0u8; COMPARE_CHUNK.min(len) as usize];
            for r in state.written.overlapping(&(offset..end)) {
                let (s, e) = (r.start.max(offset), r.end.min(end));
                let mut at = s;
                while at < e {
                    let n = (e - at).min(COMPARE_CHUNK) as usize;
                    file.read_exact_at(&mut buf[..n], IMM_HEADER_SIZE + at)
                        .map_err(share_err(si, sh, "reading upload"))?;
                    let from = (at - offset) as usize;
                    if buf[..n] != data[from..from + n] {
                        return Err(StorageError::ConflictingWrite(format!(
                            "share {si}/{sh}: bytes {s}-{e} differ from the data already written"
                        )));
                    }
                    at += n as u64;
                }
            }
        }
        if offset.checked_add(len).is_none_or(|end| end > up.allocated) {
            return Err(StorageError::DataTooLarge(format!(
                "share {si}/{sh}: {len} bytes at offset {offset} pass the allocated size {}",
                up.allocated
            )));
        }
        file.write_all_at(&data, IMM_HEADER_SIZE + offset)
            .map_err(share_err(si, sh, "writing upload"))?;
        if end > offset {
            state.written.insert(offset..end);
        }
        let required = required_ranges(&state.written, up.allocated);
        if required.is_empty() {
            self.finish_upload(up, &mut state, file)?;
        }
        Ok(WriteProgress { required })
    }

    /// Tahoe's `BucketWriter.close`: complete the share, holes and all.
    pub(super) fn close_upload(
        &self,
        up: &Arc<Upload>,
        mut state: OwnedMutexGuard<UploadState>,
    ) -> StorageResult<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.layout.incoming_share_path(&up.si, up.shnum))
            .map_err(share_err(&up.si, up.shnum, "opening upload"))?;
        self.finish_upload(up, &mut state, file)
    }

    /// Make the share durable, then visible: fsync, rename into `shares/`, fsync the
    /// directory. The caller holds the storage index's write lock.
    fn finish_upload(
        &self,
        up: &Arc<Upload>,
        state: &mut UploadState,
        file: std::fs::File,
    ) -> StorageResult<()> {
        let (si, sh) = (&up.si, up.shnum);
        let err = || share_err(si, sh, "completing upload");
        file.sync_all().map_err(err())?;
        drop(file);
        let dir = self.layout.bucket_dir(si);
        create_dir_durable(&self.layout.shares, &dir).map_err(err())?;
        std::fs::rename(
            self.layout.incoming_share_path(si, sh),
            self.layout.share_path(si, sh),
        )
        .map_err(err())?;
        sync_dir(&dir).map_err(err())?;
        self.tidy_incoming(si);
        state.done = true;
        self.uploads.remove(up);
        Ok(())
    }

    /// Tahoe's `BucketWriter.abort`: the partial share disappears.
    pub(super) fn abort_upload(
        &self,
        up: &Arc<Upload>,
        mut state: OwnedMutexGuard<UploadState>,
    ) -> StorageResult<()> {
        match std::fs::remove_file(self.layout.incoming_share_path(&up.si, up.shnum)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(share_err(&up.si, up.shnum, "aborting upload")(e))
            }
            _ => {}
        }
        self.tidy_incoming(&up.si);
        state.done = true;
        self.uploads.remove(up);
        Ok(())
    }

    /// Remove the incoming directories of `si` if nothing else is uploading there.
    fn tidy_incoming(&self, si: &StorageIndex) {
        let dir = self.layout.incoming_bucket_dir(si);
        if std::fs::remove_dir(&dir).is_ok() {
            if let Some(prefix) = dir.parent() {
                let _ = std::fs::remove_dir(prefix);
            }
        }
    }

    /// Abort uploads idle for longer than the timeout (Tahoe's 30-minute timer),
    /// skipping any busy with a write right now.
    fn reap_expired(&self, now: u64) {
        for up in self.uploads.all() {
            if !up.expired(now, self.idle_timeout_secs) {
                continue;
            }
            let Ok(state) = up.state.clone().try_lock_owned() else {
                continue;
            };
            if state.done {
                continue;
            }
            if let Err(e) = self.abort_upload(&up, state) {
                tracing::warn!(error = %e, "store: cannot abort an idle upload");
            }
        }
    }

    /// A finished immutable share and its data length.
    pub(super) fn open_immutable(
        &self,
        si: &StorageIndex,
        sh: ShareNum,
    ) -> StorageResult<(Overlay, u64)> {
        match self.open_share(si, sh)? {
            Some((file, Kind::Immutable(_))) => {
                let num_leases =
                    file.read_array::<4>(8)
                        .map_err(share_err(si, sh, "reading header"))?;
                let len = container::immutable_data_len(file.len(), u32::from_be_bytes(num_leases))
                    .ok_or_else(|| {
                        StorageError::Internal(format!("share {si}/{sh}: corrupt container"))
                    })?;
                Ok((file, len))
            }
            Some((_, Kind::Mutable(_))) => Err(StorageError::WrongContainer(format!(
                "share {si}/{sh} is a mutable share, not immutable"
            ))),
            Some((_, Kind::Unknown)) => Err(StorageError::Internal(format!(
                "share {si}/{sh}: not a share container"
            ))),
            None => Err(StorageError::NotFound(format!(
                "share {si}/{sh}: no such immutable share"
            ))),
        }
    }

    /// Up to `length` bytes at `offset`, truncated at the end of the data.
    pub(super) fn read_immutable(
        &self,
        si: &StorageIndex,
        sh: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let (file, data_len) = self.open_immutable(si, sh)?;
        let n = length.min(data_len.saturating_sub(offset));
        if n == 0 {
            return Ok(Bytes::new());
        }
        let data =
            file.read(IMM_HEADER_SIZE + offset, n)
                .map_err(share_err(si, sh, "reading share"))?;
        Ok(Bytes::from(data))
    }

    /// The finished immutable shares of `si`. Like Tahoe's `get_buckets`, a mutable
    /// share there is an error.
    pub(super) fn list_immutable(&self, si: &StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        let shares = layout::list_share_numbers(&self.layout.bucket_dir(si))
            .map_err(si_err(si, "listing shares"))?;
        for &sh in &shares {
            self.open_immutable(si, sh)?;
        }
        Ok(shares)
    }
}
