//! The seam's request and response types and [`StorageApi`] itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;

use super::{StorageError, StorageResult};
use crate::base32::base32_lower_decode;

/// A storage index: 16 bytes, derived by the client from the file's key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageIndex(pub [u8; 16]);

impl StorageIndex {
    /// Tahoe's textual form: lowercase unpadded RFC 4648 base32 (26 characters).
    pub fn to_base32(&self) -> String {
        crate::base32::base32_lower(&self.0)
    }

    /// Parse the textual form used in GBS paths. Anything but exactly 26 lowercase
    /// base32 characters that decode to 16 bytes is refused.
    pub fn from_base32(s: &str) -> Option<StorageIndex> {
        base32_lower_decode(s).map(StorageIndex)
    }

    pub fn from_slice(b: &[u8]) -> Option<StorageIndex> {
        Some(StorageIndex(b.try_into().ok()?))
    }
}

impl fmt::Debug for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageIndex({})", self.to_base32())
    }
}

impl fmt::Display for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base32())
    }
}

/// A share number. Tahoe uses 0..=255 (at most 256 shares per file).
pub type ShareNum = u16;

/// The largest share number Tahoe allows plus one.
pub const MAX_SHARES: usize = 256;

/// A 32-byte secret (lease renew/cancel secrets, Foolscap write enablers).
///
/// Its `Debug` never shows the bytes: secrets must never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// The lease secrets a client presents when it allocates or adds a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSecrets {
    pub renew: Secret,
    pub cancel: Secret,
}

/// What a server says of itself (Foolscap `get_version`, GBS `/storage/v1/version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    pub maximum_immutable_share_size: u64,
    pub maximum_mutable_share_size: u64,
    pub available_space: u64,
    /// e.g. `tahoe-lafs/1.20.0` or `swampgate/0.1.0`.
    pub application_version: Vec<u8>,
}

/// `POST /storage/v1/immutable/:si` / Foolscap `allocate_buckets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocateRequest {
    pub storage_index: StorageIndex,
    pub lease: LeaseSecrets,
    pub upload_secret: Secret,
    pub share_numbers: BTreeSet<ShareNum>,
    pub allocated_size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocateResult {
    /// Shares the server already holds complete.
    pub already_have: BTreeSet<ShareNum>,
    /// Shares now allocated to this upload.
    pub allocated: BTreeSet<ShareNum>,
}

/// A half-open byte range `[begin, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteRange {
    pub begin: u64,
    pub end: u64,
}

/// The outcome of one immutable write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteProgress {
    /// Ranges not yet written. Empty means the share is complete.
    pub required: Vec<ByteRange>,
}

impl WriteProgress {
    pub fn complete(&self) -> bool {
        self.required.is_empty()
    }
}

/// One equality test of a mutable test-and-write: the `size` bytes read at `offset`
/// must equal `specimen`. Reading past the end yields fewer bytes (none for a share
/// that does not exist), so the test then fails unless the specimen is likewise short.
///
/// `size` is carried separately from the specimen because both protocols do and
/// Tahoe's clients rely on the difference: a new share is written under the test
/// `(offset 0, size 1, specimen b"")`, which passes only while the share is empty or
/// absent. With the size implied by the specimen that test would always pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestVector {
    pub offset: u64,
    pub size: u64,
    pub specimen: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteVector {
    pub offset: u64,
    pub data: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadVector {
    pub offset: u64,
    pub size: u64,
}

/// Tests, writes and an optional new length for one mutable share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestWriteVectors {
    pub test: Vec<TestVector>,
    pub write: Vec<WriteVector>,
    /// `Some(0)` deletes the share; a smaller length truncates; larger is ignored.
    pub new_length: Option<u64>,
}

/// The secrets of a mutable read-test-write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableSecrets {
    pub write_enabler: Secret,
    pub lease: LeaseSecrets,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadTestWriteRequest {
    pub storage_index: StorageIndex,
    pub secrets: MutableSecrets,
    pub test_write_vectors: BTreeMap<ShareNum, TestWriteVectors>,
    pub read_vector: Vec<ReadVector>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadTestWriteResult {
    pub success: bool,
    /// The read vector applied to every existing share, before any write.
    pub data: BTreeMap<ShareNum, Vec<Bytes>>,
}

/// Which kind of share a corruption advisory or read is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShareType {
    Immutable,
    Mutable,
}

impl ShareType {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareType::Immutable => "immutable",
            ShareType::Mutable => "mutable",
        }
    }
}

/// The protocol-neutral storage API. Fronts call it; backends implement it.
///
/// Implementations must be safe to call concurrently: one front connection may have
/// many calls in flight, and many connections share one backend.
#[async_trait::async_trait]
pub trait StorageApi: Send + Sync + 'static {
    async fn version(&self) -> StorageResult<VersionInfo>;

    /// Whether the storage server answers (the health probe): `version` by default.
    /// A backend that paces its reconnections dials at once for a probe.
    async fn probe(&self) -> StorageResult<()> {
        self.version().await.map(|_| ())
    }

    async fn allocate_buckets(&self, req: AllocateRequest) -> StorageResult<AllocateResult>;

    /// Write `data` at `offset` of an allocated, unfinished immutable share. When the
    /// write leaves no byte of the share unwritten, the share is completed.
    async fn write_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress>;

    /// Complete an immutable share whether or not every byte was written (unwritten
    /// bytes read as zeros): Foolscap's `close()`.
    async fn close_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()>;

    /// Abandon an unfinished immutable upload; nothing of it stays visible.
    async fn abort_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()>;

    /// The complete immutable shares held for `si` (empty if none).
    async fn list_immutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>>;

    /// Read up to `length` bytes at `offset` of a complete immutable share. Reads past
    /// the end are truncated (possibly to nothing).
    async fn read_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes>;

    /// The length of a complete immutable share's data.
    async fn immutable_share_length(&self, si: StorageIndex, shnum: ShareNum)
        -> StorageResult<u64>;

    /// Add or renew a lease on every share of `si`. `NotFound` if there are none.
    async fn add_lease(&self, si: StorageIndex, lease: LeaseSecrets) -> StorageResult<()>;

    /// Record a client's report that a share is corrupt. `NotFound` if the share is
    /// unknown.
    async fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> StorageResult<()>;

    async fn read_test_write(
        &self,
        req: ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult>;

    /// The mutable shares held for `si` (empty if none).
    async fn list_mutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>>;

    /// Read up to `length` bytes at `offset` of a mutable share; past the end is
    /// truncated.
    async fn read_mutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes>;

    /// The length of a mutable share's data.
    async fn mutable_share_length(&self, si: StorageIndex, shnum: ShareNum) -> StorageResult<u64>;

    /// Foolscap's `slot_readv`: apply `readv` to each of `shares` (all shares if
    /// empty), omitting shares that do not exist. Backends that can do this atomically
    /// (Foolscap upstream, the embedded store) override the default, which lists and
    /// reads share by share.
    async fn slot_readv(
        &self,
        si: StorageIndex,
        shares: Vec<ShareNum>,
        readv: Vec<ReadVector>,
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        let existing = self.list_mutable_shares(si).await?;
        let wanted: Vec<ShareNum> = if shares.is_empty() {
            existing.iter().copied().collect()
        } else {
            shares
                .into_iter()
                .filter(|s| existing.contains(s))
                .collect()
        };
        let mut out = BTreeMap::new();
        for sh in wanted {
            let mut datas = Vec::with_capacity(readv.len());
            for rv in &readv {
                if rv.size == 0 {
                    datas.push(Bytes::new());
                    continue;
                }
                match self.read_mutable(si, sh, rv.offset, rv.size).await {
                    Ok(b) => datas.push(b),
                    // Deleted between list and read: Foolscap omits missing shares.
                    Err(StorageError::NotFound(_)) => {
                        datas.clear();
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            out.insert(sh, datas);
        }
        Ok(out)
    }
}
