//! A storage call as a value: which [`Method`], with its arguments ([`Call`]) and its
//! answer ([`Reply`]). Layers ([`super::layer`]) see calls this way, so a concern that
//! wraps every call is written once instead of once per method.
//!
//! [`Call::send`] and [`super::layer::Layered`] are the only places that turn calls
//! into [`StorageApi`] method calls and back.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::*;

/// The seam's methods: one name each, used by metrics, traces and `check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Version,
    AllocateBuckets,
    WriteImmutable,
    CloseImmutable,
    AbortImmutable,
    ListImmutableShares,
    ReadImmutable,
    ImmutableShareLength,
    AddLease,
    AdviseCorruptShare,
    ReadTestWrite,
    ListMutableShares,
    ReadMutable,
    MutableShareLength,
    SlotReadv,
}

impl Method {
    pub const ALL: [Method; 15] = [
        Method::Version,
        Method::AllocateBuckets,
        Method::WriteImmutable,
        Method::CloseImmutable,
        Method::AbortImmutable,
        Method::ListImmutableShares,
        Method::ReadImmutable,
        Method::ImmutableShareLength,
        Method::AddLease,
        Method::AdviseCorruptShare,
        Method::ReadTestWrite,
        Method::ListMutableShares,
        Method::ReadMutable,
        Method::MutableShareLength,
        Method::SlotReadv,
    ];

    /// The method's name, as [`StorageApi`] spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Version => "version",
            Method::AllocateBuckets => "allocate_buckets",
            Method::WriteImmutable => "write_immutable",
            Method::CloseImmutable => "close_immutable",
            Method::AbortImmutable => "abort_immutable",
            Method::ListImmutableShares => "list_immutable_shares",
            Method::ReadImmutable => "read_immutable",
            Method::ImmutableShareLength => "immutable_share_length",
            Method::AddLease => "add_lease",
            Method::AdviseCorruptShare => "advise_corrupt_share",
            Method::ReadTestWrite => "read_test_write",
            Method::ListMutableShares => "list_mutable_shares",
            Method::ReadMutable => "read_mutable",
            Method::MutableShareLength => "mutable_share_length",
            Method::SlotReadv => "slot_readv",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call on the seam, with its arguments. Secrets are borrowed from the caller.
#[derive(Debug)]
pub enum Call<'a> {
    Version,
    AllocateBuckets(AllocateRequest),
    WriteImmutable {
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &'a Secret,
        offset: u64,
        data: Bytes,
    },
    CloseImmutable {
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &'a Secret,
    },
    AbortImmutable {
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &'a Secret,
    },
    ListImmutableShares {
        si: StorageIndex,
    },
    ReadImmutable {
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    },
    ImmutableShareLength {
        si: StorageIndex,
        shnum: ShareNum,
    },
    AddLease {
        si: StorageIndex,
        lease: LeaseSecrets,
    },
    AdviseCorruptShare {
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    },
    ReadTestWrite(ReadTestWriteRequest),
    ListMutableShares {
        si: StorageIndex,
    },
    ReadMutable {
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    },
    MutableShareLength {
        si: StorageIndex,
        shnum: ShareNum,
    },
    SlotReadv {
        si: StorageIndex,
        shares: Vec<ShareNum>,
        readv: Vec<ReadVector>,
    },
}

/// What a call answers, one variant per answer type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Version(VersionInfo),
    Allocated(AllocateResult),
    Written(WriteProgress),
    /// The answer of a call that answers nothing (close, abort, lease, advisory).
    Done,
    Shares(BTreeSet<ShareNum>),
    Data(Bytes),
    Length(u64),
    ReadTestWrite(ReadTestWriteResult),
    Readv(BTreeMap<ShareNum, Vec<Bytes>>),
}

/// What a call is about, without secrets or data: for traces and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallInfo {
    pub storage_index: Option<StorageIndex>,
    /// The shares named in the call (allocated, written, read, tested…).
    pub shares: Vec<ShareNum>,
    pub offset: Option<u64>,
    /// The length asked for (reads) or allocated (allocations).
    pub length: Option<u64>,
    /// Share data bytes the call carries to the server.
    pub bytes_in: u64,
    /// For advisories: which kind of share.
    pub share_type: Option<ShareType>,
}

impl Call<'_> {
    pub fn method(&self) -> Method {
        match self {
            Call::Version => Method::Version,
            Call::AllocateBuckets(_) => Method::AllocateBuckets,
            Call::WriteImmutable { .. } => Method::WriteImmutable,
            Call::CloseImmutable { .. } => Method::CloseImmutable,
            Call::AbortImmutable { .. } => Method::AbortImmutable,
            Call::ListImmutableShares { .. } => Method::ListImmutableShares,
            Call::ReadImmutable { .. } => Method::ReadImmutable,
            Call::ImmutableShareLength { .. } => Method::ImmutableShareLength,
            Call::AddLease { .. } => Method::AddLease,
            Call::AdviseCorruptShare { .. } => Method::AdviseCorruptShare,
            Call::ReadTestWrite(_) => Method::ReadTestWrite,
            Call::ListMutableShares { .. } => Method::ListMutableShares,
            Call::ReadMutable { .. } => Method::ReadMutable,
            Call::MutableShareLength { .. } => Method::MutableShareLength,
            Call::SlotReadv { .. } => Method::SlotReadv,
        }
    }

    pub fn storage_index(&self) -> Option<StorageIndex> {
        match self {
            Call::Version => None,
            Call::AllocateBuckets(r) => Some(r.storage_index),
            Call::ReadTestWrite(r) => Some(r.storage_index),
            Call::WriteImmutable { si, .. }
            | Call::CloseImmutable { si, .. }
            | Call::AbortImmutable { si, .. }
            | Call::ListImmutableShares { si }
            | Call::ReadImmutable { si, .. }
            | Call::ImmutableShareLength { si, .. }
            | Call::AddLease { si, .. }
            | Call::AdviseCorruptShare { si, .. }
            | Call::ListMutableShares { si }
            | Call::ReadMutable { si, .. }
            | Call::MutableShareLength { si, .. }
            | Call::SlotReadv { si, .. } => Some(*si),
        }
    }

    /// Share data the call carries to the server: an immutable write's data, or a
    /// mutable test-and-write's write vectors (written only if the tests pass).
    pub fn bytes_in(&self) -> u64 {
        match self {
            Call::WriteImmutable { data, .. } => data.len() as u64,
            Call::ReadTestWrite(r) => r
                .test_write_vectors
                .values()
                .flat_map(|t| t.write.iter().map(|w| w.data.len() as u64))
                .sum(),
            _ => 0,
        }
    }

    /// The call described without secrets or data.
    pub fn info(&self) -> CallInfo {
        let mut i = CallInfo {
            storage_index: self.storage_index(),
            bytes_in: self.bytes_in(),
            ..CallInfo::default()
        };
        match self {
            Call::Version | Call::ListImmutableShares { .. } | Call::ListMutableShares { .. } => {}
            Call::AddLease { .. } => {}
            Call::AllocateBuckets(r) => {
                i.shares = r.share_numbers.iter().copied().collect();
                i.length = Some(r.allocated_size);
            }
            Call::ReadTestWrite(r) => i.shares = r.test_write_vectors.keys().copied().collect(),
            Call::WriteImmutable { shnum, offset, .. } => {
                i.shares = vec![*shnum];
                i.offset = Some(*offset);
            }
            Call::CloseImmutable { shnum, .. }
            | Call::AbortImmutable { shnum, .. }
            | Call::ImmutableShareLength { shnum, .. }
            | Call::MutableShareLength { shnum, .. } => i.shares = vec![*shnum],
            Call::AdviseCorruptShare {
                share_type, shnum, ..
            } => {
                i.shares = vec![*shnum];
                i.share_type = Some(*share_type);
            }
            Call::ReadImmutable {
                shnum,
                offset,
                length,
                ..
            }
            | Call::ReadMutable {
                shnum,
                offset,
                length,
                ..
            } => {
                i.shares = vec![*shnum];
                i.offset = Some(*offset);
                i.length = Some(*length);
            }
            Call::SlotReadv { shares, .. } => i.shares = shares.clone(),
        }
        i
    }

    /// Make this call on `api`.
    pub async fn send(self, api: &dyn StorageApi) -> StorageResult<Reply> {
        Ok(match self {
            Call::Version => Reply::Version(api.version().await?),
            Call::AllocateBuckets(req) => Reply::Allocated(api.allocate_buckets(req).await?),
            Call::WriteImmutable {
                si,
                shnum,
                upload_secret,
                offset,
                data,
            } => Reply::Written(
                api.write_immutable(si, shnum, upload_secret, offset, data)
                    .await?,
            ),
            Call::CloseImmutable {
                si,
                shnum,
                upload_secret,
            } => {
                api.close_immutable(si, shnum, upload_secret).await?;
                Reply::Done
            }
            Call::AbortImmutable {
                si,
                shnum,
                upload_secret,
            } => {
                api.abort_immutable(si, shnum, upload_secret).await?;
                Reply::Done
            }
            Call::ListImmutableShares { si } => Reply::Shares(api.list_immutable_shares(si).await?),
            Call::ReadImmutable {
                si,
                shnum,
                offset,
                length,
            } => Reply::Data(api.read_immutable(si, shnum, offset, length).await?),
            Call::ImmutableShareLength { si, shnum } => {
                Reply::Length(api.immutable_share_length(si, shnum).await?)
            }
            Call::AddLease { si, lease } => {
                api.add_lease(si, lease).await?;
                Reply::Done
            }
            Call::AdviseCorruptShare {
                share_type,
                si,
                shnum,
                reason,
            } => {
                api.advise_corrupt_share(share_type, si, shnum, reason)
                    .await?;
                Reply::Done
            }
            Call::ReadTestWrite(req) => Reply::ReadTestWrite(api.read_test_write(req).await?),
            Call::ListMutableShares { si } => Reply::Shares(api.list_mutable_shares(si).await?),
            Call::ReadMutable {
                si,
                shnum,
                offset,
                length,
            } => Reply::Data(api.read_mutable(si, shnum, offset, length).await?),
            Call::MutableShareLength { si, shnum } => {
                Reply::Length(api.mutable_share_length(si, shnum).await?)
            }
            Call::SlotReadv { si, shares, readv } => {
                Reply::Readv(api.slot_readv(si, shares, readv).await?)
            }
        })
    }
}

impl Reply {
    /// Share data bytes the answer carries to the client.
    pub fn bytes_out(&self) -> u64 {
        match self {
            Reply::Data(b) => b.len() as u64,
            Reply::ReadTestWrite(r) => r.data.values().flatten().map(|b| b.len() as u64).sum(),
            Reply::Readv(m) => m.values().flatten().map(|b| b.len() as u64).sum(),
            _ => 0,
        }
    }
}
