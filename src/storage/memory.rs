//! An in-memory [`StorageApi`] with Tahoe 1.20's storage semantics, for tests and
//! experiments. Nothing persists; every share lives in one process's memory.
//!
//! Semantics follow Tahoe's `StorageServer` as its HTTP front exposes them:
//! - allocation: complete shares are reported as `already_have`, shares with an upload
//!   in progress (under any upload secret) are neither reported nor allocated, the rest
//!   are allocated; an allocation bigger than the available space allocates nothing;
//! - immutable writes may repeat identical bytes, conflicting bytes fail, writes past
//!   the allocated size fail; the share completes when every byte is written;
//! - mutable read-test-write: the write enabler of existing shares must match; tests
//!   read `size` bytes at `offset` (absent shares read as empty); reads happen before
//!   writes and cover every existing share; `new_length` 0 deletes, smaller truncates,
//!   larger is ignored; holes read as zeros; a mentioned share is created even without
//!   writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use bytes::Bytes;
use subtle::ConstantTimeEq;

use super::*;

/// Default `available_space`: 1 GiB, plenty for tests and small enough for memory.
pub const DEFAULT_AVAILABLE_SPACE: u64 = 1 << 30;

#[derive(Default)]
struct Upload {
    secret: Vec<u8>,
    /// The allocated size.
    size: u64,
    /// The bytes up to the furthest write (grown on demand, zeros in the holes).
    data: Vec<u8>,
    /// Written ranges, non-overlapping, sorted, merged.
    written: Vec<ByteRange>,
}

impl Upload {
    fn required(&self) -> Vec<ByteRange> {
        let mut out = Vec::new();
        let mut pos = 0;
        for r in &self.written {
            if r.begin > pos {
                out.push(ByteRange {
                    begin: pos,
                    end: r.begin,
                });
            }
            pos = pos.max(r.end);
        }
        let size = self.size;
        if pos < size {
            out.push(ByteRange {
                begin: pos,
                end: size,
            });
        }
        out
    }

    /// The finished share: every allocated byte, holes as zeros.
    fn into_share(mut self) -> Bytes {
        self.data.resize(self.size as usize, 0);
        Bytes::from(self.data)
    }

    fn mark(&mut self, r: ByteRange) {
        self.written.push(r);
        self.written.sort();
        let mut merged: Vec<ByteRange> = Vec::new();
        for r in self.written.drain(..) {
            match merged.last_mut() {
                Some(last) if r.begin <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        self.written = merged;
    }
}

#[derive(Default)]
struct Immutable {
    complete: BTreeMap<ShareNum, Bytes>,
    uploads: BTreeMap<ShareNum, Upload>,
    leases: Vec<LeaseSecrets>,
    corruption_reports: Vec<(ShareNum, String)>,
}

#[derive(Default)]
struct Mutable {
    write_enabler: Vec<u8>,
    shares: BTreeMap<ShareNum, Vec<u8>>,
    leases: Vec<LeaseSecrets>,
    corruption_reports: Vec<(ShareNum, String)>,
}

#[derive(Default)]
struct State {
    immutable: HashMap<StorageIndex, Immutable>,
    mutable: HashMap<StorageIndex, Mutable>,
}

/// The in-memory store.
pub struct MemoryStorage {
    state: Mutex<State>,
    available_space: u64,
    application_version: Vec<u8>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new(DEFAULT_AVAILABLE_SPACE)
    }
}

fn read_slice(data: &[u8], offset: u64, length: u64) -> Bytes {
    let len = data.len() as u64;
    if offset >= len {
        return Bytes::new();
    }
    let end = offset.saturating_add(length).min(len);
    Bytes::copy_from_slice(&data[offset as usize..end as usize])
}

fn not_found(si: StorageIndex, sh: Option<ShareNum>) -> StorageError {
    match sh {
        Some(sh) => StorageError::NotFound(format!("share {sh} of {si}")),
        None => StorageError::NotFound(format!("storage index {si}")),
    }
}

impl MemoryStorage {
    pub fn new(available_space: u64) -> MemoryStorage {
        MemoryStorage {
            state: Mutex::new(State::default()),
            available_space,
            application_version: format!("swampgate-memory/{}", env!("CARGO_PKG_VERSION"))
                .into_bytes(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many leases a storage index carries (test introspection).
    pub fn lease_count(&self, si: StorageIndex) -> usize {
        let st = self.lock();
        st.immutable.get(&si).map_or(0, |i| i.leases.len())
            + st.mutable.get(&si).map_or(0, |m| m.leases.len())
    }

    /// Corruption reports received for a storage index (test introspection).
    pub fn corruption_reports(&self, si: StorageIndex) -> Vec<(ShareNum, String)> {
        let st = self.lock();
        let mut out = Vec::new();
        if let Some(i) = st.immutable.get(&si) {
            out.extend(i.corruption_reports.iter().cloned());
        }
        if let Some(m) = st.mutable.get(&si) {
            out.extend(m.corruption_reports.iter().cloned());
        }
        out
    }
}

fn add_or_renew(leases: &mut Vec<LeaseSecrets>, lease: LeaseSecrets) {
    if !leases.iter().any(|l| l.renew == lease.renew) {
        leases.push(lease);
    }
}

#[async_trait::async_trait]
impl StorageApi for MemoryStorage {
    async fn version(&self) -> StorageResult<VersionInfo> {
        Ok(VersionInfo {
            maximum_immutable_share_size: self.available_space,
            maximum_mutable_share_size: 69_105 * 1000 * 1000 * 1000 * 1000,
            available_space: self.available_space,
            application_version: self.application_version.clone(),
        })
    }

    async fn allocate_buckets(&self, req: AllocateRequest) -> StorageResult<AllocateResult> {
        let mut st = self.lock();
        if st.mutable.contains_key(&req.storage_index) {
            return Err(StorageError::WrongContainer(format!(
                "{} holds mutable shares",
                req.storage_index
            )));
        }
        let imm = st.immutable.entry(req.storage_index).or_default();
        let mut result = AllocateResult::default();
        let too_big = req.allocated_size > self.available_space;
        for &sh in &req.share_numbers {
            if imm.complete.contains_key(&sh) {
                result.already_have.insert(sh);
            } else if imm.uploads.contains_key(&sh) || too_big {
                // In progress: neither reported nor allocated again.
            } else {
                imm.uploads.insert(
                    sh,
                    Upload {
                        secret: req.upload_secret.0.clone(),
                        size: req.allocated_size,
                        data: Vec::new(),
                        written: Vec::new(),
                    },
                );
                result.allocated.insert(sh);
            }
        }
        if !imm.complete.is_empty() || !imm.uploads.is_empty() {
            add_or_renew(&mut imm.leases, req.lease);
        }
        Ok(result)
    }

    async fn write_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        let mut st = self.lock();
        let imm = st
            .immutable
            .get_mut(&si)
            .ok_or_else(|| not_found(si, Some(shnum)))?;
        let Some(up) = imm.uploads.get_mut(&shnum) else {
            if imm.complete.contains_key(&shnum) {
                return Err(StorageError::NotAllowed(format!(
                    "share {shnum} of {si} is complete"
                )));
            }
            return Err(not_found(si, Some(shnum)));
        };
        if !bool::from(up.secret.ct_eq(&upload_secret.0)) {
            return Err(StorageError::WrongUploadSecret);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= up.size)
            .ok_or_else(|| {
                StorageError::DataTooLarge(format!(
                    "write of {} bytes at {offset} past the allocated {} bytes",
                    data.len(),
                    up.size
                ))
            })?;
        // Bytes already written must match.
        for r in &up.written {
            let b = r.begin.max(offset);
            let e = r.end.min(end);
            if b < e {
                let old = &up.data[b as usize..e as usize];
                let new = &data[(b - offset) as usize..(e - offset) as usize];
                if old != new {
                    return Err(StorageError::ConflictingWrite(format!(
                        "bytes {b}..{e} of share {shnum} differ from those written before"
                    )));
                }
            }
        }
        if (up.data.len() as u64) < end {
            up.data.resize(end as usize, 0);
        }
        up.data[offset as usize..end as usize].copy_from_slice(&data);
        if end > offset {
            up.mark(ByteRange { begin: offset, end });
        }
        let required = up.required();
        if required.is_empty() {
            let up = imm.uploads.remove(&shnum).expect("present");
            imm.complete.insert(shnum, up.into_share());
        }
        Ok(WriteProgress { required })
    }

    async fn close_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let mut st = self.lock();
        let imm = st
            .immutable
            .get_mut(&si)
            .ok_or_else(|| not_found(si, Some(shnum)))?;
        let up = imm
            .uploads
            .get(&shnum)
            .ok_or_else(|| not_found(si, Some(shnum)))?;
        if !bool::from(up.secret.ct_eq(&upload_secret.0)) {
            return Err(StorageError::WrongUploadSecret);
        }
        let up = imm.uploads.remove(&shnum).expect("present");
        imm.complete.insert(shnum, up.into_share());
        Ok(())
    }

    async fn abort_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let mut st = self.lock();
        let imm = st
            .immutable
            .get_mut(&si)
            .ok_or_else(|| not_found(si, Some(shnum)))?;
        match imm.uploads.get(&shnum) {
            Some(up) if !bool::from(up.secret.ct_eq(&upload_secret.0)) => {
                Err(StorageError::WrongUploadSecret)
            }
            Some(_) => {
                imm.uploads.remove(&shnum);
                Ok(())
            }
            None if imm.complete.contains_key(&shnum) => Err(StorageError::NotAllowed(format!(
                "share {shnum} of {si} is complete"
            ))),
            None => Err(not_found(si, Some(shnum))),
        }
    }

    async fn list_immutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        let st = self.lock();
        if st.mutable.contains_key(&si) {
            return Err(StorageError::WrongContainer(format!(
                "{si} holds mutable shares"
            )));
        }
        Ok(st
            .immutable
            .get(&si)
            .map(|i| i.complete.keys().copied().collect())
            .unwrap_or_default())
    }

    async fn read_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let st = self.lock();
        let data = st
            .immutable
            .get(&si)
            .and_then(|i| i.complete.get(&shnum))
            .ok_or_else(|| not_found(si, Some(shnum)))?;
        Ok(read_slice(data, offset, length))
    }

    async fn immutable_share_length(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> StorageResult<u64> {
        let st = self.lock();
        st.immutable
            .get(&si)
            .and_then(|i| i.complete.get(&shnum))
            .map(|d| d.len() as u64)
            .ok_or_else(|| not_found(si, Some(shnum)))
    }

    async fn add_lease(&self, si: StorageIndex, lease: LeaseSecrets) -> StorageResult<()> {
        let mut st = self.lock();
        if let Some(imm) = st.immutable.get_mut(&si).filter(|i| !i.complete.is_empty()) {
            add_or_renew(&mut imm.leases, lease);
            return Ok(());
        }
        if let Some(m) = st.mutable.get_mut(&si).filter(|m| !m.shares.is_empty()) {
            add_or_renew(&mut m.leases, lease);
            return Ok(());
        }
        Err(not_found(si, None))
    }

    async fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> StorageResult<()> {
        let mut st = self.lock();
        match share_type {
            ShareType::Immutable => {
                let imm = st
                    .immutable
                    .get_mut(&si)
                    .filter(|i| i.complete.contains_key(&shnum))
                    .ok_or_else(|| not_found(si, Some(shnum)))?;
                imm.corruption_reports.push((shnum, reason));
            }
            ShareType::Mutable => {
                let m = st
                    .mutable
                    .get_mut(&si)
                    .filter(|m| m.shares.contains_key(&shnum))
                    .ok_or_else(|| not_found(si, Some(shnum)))?;
                m.corruption_reports.push((shnum, reason));
            }
        }
        Ok(())
    }

    async fn read_test_write(
        &self,
        req: ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult> {
        let mut st = self.lock();
        let si = req.storage_index;
        if st
            .immutable
            .get(&si)
            .is_some_and(|i| !i.complete.is_empty() || !i.uploads.is_empty())
        {
            return Err(StorageError::WrongContainer(format!(
                "{si} holds immutable shares"
            )));
        }
        let m = st.mutable.entry(si).or_default();
        if !m.shares.is_empty() && !bool::from(m.write_enabler.ct_eq(&req.secrets.write_enabler.0))
        {
            return Err(StorageError::BadWriteEnabler(
                "the write enabler does not match the one recorded for this slot".into(),
            ));
        }
        let success = req.test_write_vectors.iter().all(|(sh, tw)| {
            let data: &[u8] = m.shares.get(sh).map_or(&[], |d| d.as_slice());
            tw.test
                .iter()
                .all(|t| read_slice(data, t.offset, t.size) == t.specimen)
        });
        let data = m
            .shares
            .iter()
            .map(|(sh, d)| {
                (
                    *sh,
                    req.read_vector
                        .iter()
                        .map(|r| read_slice(d, r.offset, r.size))
                        .collect(),
                )
            })
            .collect();
        if success {
            if m.shares.is_empty() {
                m.write_enabler = req.secrets.write_enabler.0.clone();
            }
            for (sh, tw) in &req.test_write_vectors {
                if tw.new_length == Some(0) {
                    m.shares.remove(sh);
                    continue;
                }
                let share = m.shares.entry(*sh).or_default();
                for w in &tw.write {
                    let end = w.offset as usize + w.data.len();
                    if share.len() < end {
                        share.resize(end, 0);
                    }
                    share[w.offset as usize..end].copy_from_slice(&w.data);
                }
                if let Some(n) = tw.new_length {
                    if (n as usize) < share.len() {
                        share.truncate(n as usize);
                    }
                }
            }
            if !m.shares.is_empty() {
                add_or_renew(&mut m.leases, req.secrets.lease.clone());
            }
        }
        if m.shares.is_empty() && m.leases.is_empty() {
            st.mutable.remove(&si);
        }
        Ok(ReadTestWriteResult { success, data })
    }

    async fn list_mutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        let st = self.lock();
        Ok(st
            .mutable
            .get(&si)
            .map(|m| m.shares.keys().copied().collect())
            .unwrap_or_default())
    }

    async fn read_mutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let st = self.lock();
        if st
            .immutable
            .get(&si)
            .is_some_and(|i| !i.complete.is_empty())
        {
            return Err(StorageError::WrongContainer(format!(
                "{si} holds immutable shares"
            )));
        }
        let data = st
            .mutable
            .get(&si)
            .and_then(|m| m.shares.get(&shnum))
            .ok_or_else(|| not_found(si, Some(shnum)))?;
        Ok(read_slice(data, offset, length))
    }

    async fn mutable_share_length(&self, si: StorageIndex, shnum: ShareNum) -> StorageResult<u64> {
        let st = self.lock();
        if st
            .immutable
            .get(&si)
            .is_some_and(|i| !i.complete.is_empty())
        {
            return Err(StorageError::WrongContainer(format!(
                "{si} holds immutable shares"
            )));
        }
        st.mutable
            .get(&si)
            .and_then(|m| m.shares.get(&shnum))
            .map(|d| d.len() as u64)
            .ok_or_else(|| not_found(si, Some(shnum)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si(n: u8) -> StorageIndex {
        StorageIndex([n; 16])
    }

    fn lease() -> LeaseSecrets {
        LeaseSecrets {
            renew: Secret(vec![1; 32]),
            cancel: Secret(vec![2; 32]),
        }
    }

    #[tokio::test]
    async fn immutable_lifecycle() {
        let m = MemoryStorage::default();
        let up = Secret(b"up".to_vec());
        let r = m
            .allocate_buckets(AllocateRequest {
                storage_index: si(1),
                lease: lease(),
                upload_secret: up.clone(),
                share_numbers: [1, 2].into_iter().collect(),
                allocated_size: 10,
            })
            .await
            .unwrap();
        assert_eq!(r.allocated.len(), 2);
        let p = m
            .write_immutable(si(1), 1, &up, 0, Bytes::from_static(b"01234"))
            .await
            .unwrap();
        assert_eq!(p.required, vec![ByteRange { begin: 5, end: 10 }]);
        assert_eq!(
            m.write_immutable(
                si(1),
                1,
                &Secret(b"no".to_vec()),
                0,
                Bytes::from_static(b"0")
            )
            .await,
            Err(StorageError::WrongUploadSecret)
        );
        assert!(matches!(
            m.write_immutable(si(1), 1, &up, 0, Bytes::from_static(b"x"))
                .await,
            Err(StorageError::ConflictingWrite(_))
        ));
        assert!(matches!(
            m.write_immutable(si(1), 1, &up, 8, Bytes::from_static(b"xxx"))
                .await,
            Err(StorageError::DataTooLarge(_))
        ));
        let p = m
            .write_immutable(si(1), 1, &up, 5, Bytes::from_static(b"56789"))
            .await
            .unwrap();
        assert!(p.complete());
        assert_eq!(
            m.read_immutable(si(1), 1, 8, 100).await.unwrap(),
            Bytes::from_static(b"89")
        );
        assert!(matches!(
            m.abort_immutable(si(1), 1, &up).await,
            Err(StorageError::NotAllowed(_))
        ));
        m.abort_immutable(si(1), 2, &up).await.unwrap();
        assert!(matches!(
            m.abort_immutable(si(1), 2, &up).await,
            Err(StorageError::NotFound(_))
        ));
        assert_eq!(
            m.list_immutable_shares(si(1)).await.unwrap(),
            [1].into_iter().collect()
        );
    }

    #[tokio::test]
    async fn mutable_new_share_test() {
        let m = MemoryStorage::default();
        let secrets = MutableSecrets {
            write_enabler: Secret(vec![9; 32]),
            lease: lease(),
        };
        let write = |data: &'static [u8]| ReadTestWriteRequest {
            storage_index: si(3),
            secrets: secrets.clone(),
            test_write_vectors: [(
                0,
                TestWriteVectors {
                    test: vec![TestVector {
                        offset: 0,
                        size: 1,
                        specimen: Bytes::new(),
                    }],
                    write: vec![WriteVector {
                        offset: 0,
                        data: Bytes::from_static(data),
                    }],
                    new_length: None,
                },
            )]
            .into_iter()
            .collect(),
            read_vector: vec![ReadVector { offset: 0, size: 5 }],
        };
        let r = m.read_test_write(write(b"hello")).await.unwrap();
        assert!(r.success);
        // The "share must be empty" test fails now that it holds data.
        let r = m.read_test_write(write(b"world")).await.unwrap();
        assert!(!r.success);
        assert_eq!(r.data[&0], vec![Bytes::from_static(b"hello")]);
    }
}
