//! Mutable slots: read-test-write and reads, with Tahoe's container semantics.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::container::{self, Kind, MutableShare, NewLease, Schema};
use super::journal::{self, Op};
use super::layout;
use super::overlay::Overlay;
use super::{no_space_for_lease, share_err, si_err, Inner};
use crate::base32::base32_lower;
use crate::storage::{
    ReadTestWriteRequest, ReadTestWriteResult, ReadVector, ShareNum, StorageError, StorageIndex,
    StorageResult,
};

impl Inner {
    /// A finished mutable share of `si`.
    pub(super) fn open_mutable(
        &self,
        si: &StorageIndex,
        sh: ShareNum,
    ) -> StorageResult<MutableShare> {
        match self.open_share(si, sh)? {
            Some((file, Kind::Mutable(schema))) => Ok(MutableShare::open(file, schema)),
            // Tahoe's UnknownMutableContainerVersionError.
            Some(_) => Err(StorageError::WrongContainer(format!(
                "share {si}/{sh} is not a mutable share"
            ))),
            None => Err(StorageError::NotFound(format!(
                "share {si}/{sh}: no such mutable share"
            ))),
        }
    }

    pub(super) fn read_mutable_data(
        &self,
        si: &StorageIndex,
        sh: ShareNum,
        share: &MutableShare,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        share
            .read_data(offset, length)
            .map(Bytes::from)
            .map_err(share_err(si, sh, "reading share"))
    }

    /// Tahoe's `enumerate_mutable_shares`: every share file of `si`, whatever its
    /// container (reads then tell an immutable share apart).
    pub(super) fn list_mutable(&self, si: &StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        layout::list_share_numbers(&self.layout.bucket_dir(si))
            .map_err(si_err(si, "listing shares"))
    }

    /// Tahoe's `slot_readv`: `readv` on each wanted share (all if `wanted` is empty)
    /// that exists.
    pub(super) fn slot_readv(
        &self,
        si: &StorageIndex,
        wanted: &[ShareNum],
        readv: &[ReadVector],
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        let mut out = BTreeMap::new();
        for sh in self.list_mutable(si)? {
            if !wanted.is_empty() && !wanted.contains(&sh) {
                continue;
            }
            let share = self.open_mutable(si, sh)?;
            let datas = readv
                .iter()
                .map(|rv| self.read_mutable_data(si, sh, &share, rv.offset, rv.size))
                .collect::<StorageResult<Vec<_>>>()?;
            out.insert(sh, datas);
        }
        Ok(out)
    }

    /// Tahoe's `slot_testv_and_readv_and_writev`, planned in full and applied
    /// atomically through the journal.
    pub(super) fn read_test_write(
        &self,
        req: &ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult> {
        let si = &req.storage_index;
        journal::replay_pending(&self.layout, si).map_err(si_err(si, "replaying journal"))?;

        // Every existing share must be a mutable container with this write enabler
        // (even for a read-only request).
        let mut shares = BTreeMap::new();
        for sh in self.list_mutable(si)? {
            let share = self.open_mutable(si, sh).map_err(|e| match e {
                StorageError::WrongContainer(_) => StorageError::WrongContainer(format!(
                    "storage index {si} holds immutable share {sh}, not a mutable slot"
                )),
                e => e,
            })?;
            let record = share
                .write_enabler()
                .map_err(share_err(si, sh, "reading header"))?;
            if !container::secrets_equal(&req.secrets.write_enabler.0, &record.write_enabler) {
                tracing::info!(%si, sh, "store: bad write enabler");
                return Err(StorageError::BadWriteEnabler(format!(
                    "The write enabler was recorded by nodeid '{}'.",
                    base32_lower(&record.nodeid)
                )));
            }
            shares.insert(sh, share);
        }

        // Tests: the `size` bytes read at the offset (short at the end) must equal
        // the specimen; a missing share reads as empty. The size is not implied by
        // the specimen: Tahoe creates shares under (0, 1, b""), which must fail once
        // the share holds data.
        let mut success = true;
        'tests: for (sh, tw) in &req.test_write_vectors {
            for tv in &tw.test {
                let actual = match shares.get(sh) {
                    Some(share) => share.read_data(tv.offset, tv.size).map_err(share_err(
                        si,
                        *sh,
                        "reading share",
                    ))?,
                    None => Vec::new(),
                };
                if actual != tv.specimen {
                    success = false;
                    break 'tests;
                }
            }
        }

        // Reads: every existing share, before any write.
        let mut data = BTreeMap::new();
        for (sh, share) in &shares {
            let datas = req
                .read_vector
                .iter()
                .map(|rv| self.read_mutable_data(si, *sh, share, rv.offset, rv.size))
                .collect::<StorageResult<Vec<_>>>()?;
            data.insert(*sh, datas);
        }
        if !success {
            return Ok(ReadTestWriteResult { success, data });
        }

        let available = self.available_space();
        let max = self.max_mutable_share_size();
        let lease = NewLease {
            owner_num: 1,
            renew_secret: &req.secrets.lease.renew.0,
            cancel_secret: &req.secrets.lease.cancel.0,
            expiration: self.lease_expiration(),
            nodeid: self.nodeid,
        };
        let mut ops = Vec::new();
        let mut unlinks = Vec::new();
        let mut creates_dir = false;
        let mut deletes = false;
        let mut growth: u64 = 0;
        for (&sh, tw) in &req.test_write_vectors {
            if tw.new_length == Some(0) {
                deletes = true;
                if shares.remove(&sh).is_some() {
                    unlinks.push(Op::Unlink(sh));
                }
                continue;
            }
            let (mut share, created) = match shares.remove(&sh) {
                Some(share) => (share, false),
                None => {
                    if self.uploads.any_for(si) {
                        return Err(StorageError::WrongContainer(format!(
                            "storage index {si} has an immutable upload in progress"
                        )));
                    }
                    let mut file = Overlay::empty();
                    file.write(
                        0,
                        container::mutable_new_container(
                            &self.nodeid,
                            &req.secrets.write_enabler.0,
                        ),
                    );
                    (MutableShare::open(file, Schema::V2), true)
                }
            };
            let before = if created { 0 } else { share.file.len() };
            let writes: Vec<(u64, Bytes)> = tw
                .write
                .iter()
                .map(|w| (w.offset, w.data.clone()))
                .collect();
            share
                .writev(&writes, tw.new_length, max)
                .map_err(share_err(si, sh, "planning writes"))?
                .map_err(|e| {
                    StorageError::DataTooLarge(format!(
                        "share {si}/{sh}: writes need {} bytes, more than the maximum {}",
                        e.requested, e.max
                    ))
                })?;
            share
                .add_or_renew_lease(available, &lease)
                .map_err(share_err(si, sh, "planning lease"))?
                .map_err(|_| no_space_for_lease(si, sh))?;
            growth = growth.saturating_add(share.file.len().saturating_sub(before));
            if created {
                creates_dir = true;
                ops.push(Op::Create(sh));
            }
            ops.extend(share.file.into_ops().into_iter().map(|op| Op::File(sh, op)));
        }
        if growth > available {
            return Err(StorageError::NoSpace(format!(
                "storage index {si}: writes need {growth} more bytes, {available} available"
            )));
        }

        let mut all = Vec::with_capacity(ops.len() + unlinks.len() + 2);
        if creates_dir {
            all.push(Op::MakeBucketDir);
        }
        all.extend(ops);
        all.extend(unlinks);
        if deletes && self.layout.bucket_dir(si).is_dir() {
            all.push(Op::RemoveBucketDirIfEmpty);
        }
        journal::Journal { si: *si, ops: all }
            .run(&self.layout)
            .map_err(si_err(si, "writing shares"))?;
        Ok(ReadTestWriteResult { success, data })
    }
}
