//! The Foolscap front: an `RIStorageServer` (with its bucket writers and readers)
//! served over Foolscap, on any [`StorageApi`] backend.
//!
//! Protocol gaps closed here:
//! - Foolscap has no upload secret; each `allocate_buckets` call gets a fresh random
//!   one, remembered by its bucket writers for their lifetime.
//! - A canary's connection lost before `close()` aborts every unfinished upload of
//!   that call, as Tahoe's server does.
//! - `close()` completes a share even with holes (Tahoe allows it); a share whose
//!   every byte was written is already complete, and `close()` then only confirms.
//!
//! Arguments are taken as Tahoe 1.20 takes them (its `RemoteInterface` schemas and
//! what its server then does with them), checked against a real node by
//! `tests/interop/foolscap_storage_client.py`. Where swampgate still refuses what
//! Tahoe's schema admits, the call fails with a `Violation`:
//! - a storage index shorter than 16 bytes (`StringConstraint(16)` admits 0 to 16;
//!   Tahoe files shares under whatever it gets, but GBS and every backend here have
//!   16-byte storage indexes);
//! - a share number beyond `ShareNum` (0 to 65535) or negative (Tahoe would create
//!   share file `-1`);
//! - a negative offset or size in a read, test or write vector, a negative
//!   `allocated_size` or `new_length` (what Tahoe does with each varies: mostly an
//!   `AssertionError` from a precondition, for some only when the share exists).
//!
//! A corruption advisory whose type names neither kind is recorded by the backend
//! as a mutable one (Tahoe writes the given type into its report).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::errors::storage_to_failure;
use crate::foolscap::schema::{self, RemoteInterface};
use crate::foolscap::{Connection, Failure, RemoteObject, RemoteRef, Value};
use crate::storage::{
    AllocateRequest, LeaseSecrets, MutableSecrets, ReadTestWriteRequest, ReadVector, Secret,
    ShareNum, ShareType, StorageApi, StorageError, StorageIndex, TestVector, TestWriteVectors,
    WriteVector,
};

/// The `RIStorageServer` object a storage FURL names.
pub struct StorageServerObject {
    api: Arc<dyn StorageApi>,
    revoked: Option<tokio_util::sync::CancellationToken>,
}

impl StorageServerObject {
    pub fn new(api: Arc<dyn StorageApi>) -> Arc<StorageServerObject> {
        Arc::new(StorageServerObject { api, revoked: None })
    }

    /// An object whose connections close when `revoked` is cancelled (an account's).
    pub fn revocable(
        api: Arc<dyn StorageApi>,
        revoked: tokio_util::sync::CancellationToken,
    ) -> Arc<StorageServerObject> {
        Arc::new(StorageServerObject {
            api,
            revoked: Some(revoked),
        })
    }
}

fn bytes_arg(v: &Value) -> Bytes {
    v.as_bytes().cloned().unwrap_or_default()
}

fn si_arg(v: &Value) -> Result<StorageIndex, Failure> {
    StorageIndex::from_slice(&bytes_arg(v))
        .ok_or_else(|| Failure::violation("storage index must be exactly 16 bytes"))
}

/// A share number. RIStorageServer's are any `int` (Tahoe stores share 300 as
/// readily as share 3); swampgate's, like its GBS front's, are those of [`ShareNum`].
fn sharenum(v: &Value) -> Result<ShareNum, Failure> {
    v.as_u64()
        .and_then(|n| ShareNum::try_from(n).ok())
        .ok_or_else(|| {
            Failure::violation(format!(
                "share number {v:?} out of range 0..={}",
                ShareNum::MAX
            ))
        })
}

fn u64_arg(v: &Value, what: &str) -> Result<u64, Failure> {
    v.as_u64().ok_or_else(|| {
        Failure::violation(format!("{what} must be a non-negative integer below 2**64"))
    })
}

/// An `Offset` (`IntegerConstraint(8)`): the schema admits a negative one, which
/// Tahoe's share files refuse with a failed precondition (an `AssertionError`).
fn offset_arg(v: &Value) -> Result<u64, Failure> {
    v.as_u64()
        .ok_or_else(|| Failure::new("builtins.AssertionError", "precondition: offset >= 0", &[]))
}

/// A `ReadSize` (any `int`): Tahoe truncates reads at the end of the data, so a
/// size beyond `u64` reads as much as `u64::MAX` does.
fn read_size_arg(v: &Value, what: &str) -> Result<u64, Failure> {
    match v {
        Value::Int(n) if n.sign() != num_bigint::Sign::Minus => Ok(v.as_u64().unwrap_or(u64::MAX)),
        _ => Err(Failure::violation(format!(
            "{what} must be a non-negative integer"
        ))),
    }
}

fn readv_arg(v: &Value) -> Result<Vec<ReadVector>, Failure> {
    v.as_seq()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let t = t.as_seq().unwrap_or_default();
            Ok(ReadVector {
                offset: u64_arg(&t[0], "read offset")?,
                size: read_size_arg(&t[1], "read length")?,
            })
        })
        .collect()
}

fn read_data(data: BTreeMap<ShareNum, Vec<Bytes>>) -> Value {
    Value::Dict(
        data.into_iter()
            .map(|(sh, v)| {
                (
                    Value::int(sh),
                    Value::List(v.into_iter().map(Value::Bytes).collect()),
                )
            })
            .collect(),
    )
}

fn err(e: StorageError) -> Failure {
    storage_to_failure(&e)
}

/// How a trace names this front's calls: the remote method that makes each seam call.
pub const TRACE_FRONT: crate::storage::layer::trace::Front = crate::storage::layer::trace::Front {
    protocol: "foolscap",
    endpoint: remote_method,
};

/// The remote method (`RIStorageServer`'s, or a bucket's) that calls `method`.
pub fn remote_method(method: crate::storage::Method, _: Option<ShareType>) -> &'static str {
    use crate::storage::Method as M;
    match method {
        M::Version => "get_version",
        M::WriteImmutable => "RIBucketWriter.write",
        M::CloseImmutable => "RIBucketWriter.close",
        M::AbortImmutable => "RIBucketWriter.abort",
        M::ListImmutableShares => "get_buckets",
        M::ReadImmutable | M::ImmutableShareLength => "RIBucketReader.read",
        M::ReadTestWrite => "slot_testv_and_readv_and_writev",
        M::ListMutableShares | M::ReadMutable | M::MutableShareLength | M::SlotReadv => {
            "slot_readv"
        }
        M::AllocateBuckets => "allocate_buckets",
        M::AddLease => "add_lease",
        M::AdviseCorruptShare => "advise_corrupt_share",
    }
}

/// Tahoe's Foolscap server ignores these for unknown shares; the seam reports them.
fn silent_not_found(r: Result<(), StorageError>) -> Result<Value, Failure> {
    match r {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(Value::None),
        Err(e) => Err(err(e)),
    }
}

impl StorageServerObject {
    /// RIStorageServer's `advise_corrupt_share`: `share_type` is any bytes. Tahoe's
    /// server finds the share by storage index and number alone and writes the type
    /// only into its report. Every backend looks a *mutable* advisory up that way
    /// (the embedded store and a Foolscap upstream look any advisory up so; a GBS
    /// upstream's mutable endpoint does), so a type naming neither kind is sent as
    /// mutable. A GBS upstream fails an immutable advisory with a 500 when the
    /// storage index holds a mutable share; then it is sent as mutable too, and the
    /// first error is returned only if that fails as well.
    async fn advise_corrupt(
        &self,
        share_type: &str,
        si: StorageIndex,
        sh: ShareNum,
        reason: String,
    ) -> Result<(), StorageError> {
        if share_type == "immutable" {
            match self
                .api
                .advise_corrupt_share(ShareType::Immutable, si, sh, reason.clone())
                .await
            {
                Err(e @ StorageError::NotFound(_)) => return Err(e),
                Err(e) => {
                    return self
                        .api
                        .advise_corrupt_share(ShareType::Mutable, si, sh, reason)
                        .await
                        .map_err(|_| e)
                }
                Ok(()) => return Ok(()),
            }
        }
        self.api
            .advise_corrupt_share(ShareType::Mutable, si, sh, reason)
            .await
    }

    /// Whether the server holds share `sh` of `si`, of either kind. (Immutable
    /// shares are not asked about where mutable ones are: a GBS upstream answers
    /// that with a 500.)
    async fn holds_share(&self, si: StorageIndex, sh: ShareNum) -> Result<bool, StorageError> {
        let mutable = self.api.list_mutable_shares(si).await?;
        if !mutable.is_empty() {
            return Ok(mutable.contains(&sh));
        }
        Ok(self.api.list_immutable_shares(si).await?.contains(&sh))
    }
}

#[async_trait::async_trait]
impl RemoteObject for StorageServerObject {
    fn schema(&self) -> Option<&'static RemoteInterface> {
        Some(&schema::RI_STORAGE_SERVER)
    }

    fn revoked_by(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.revoked.clone()
    }

    async fn call(
        &self,
        _conn: &Connection,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, Failure> {
        match method {
            "get_version" => {
                let v = self.api.version().await.map_err(err)?;
                Ok(Value::bytes_dict([
                    (
                        "application-version",
                        Value::Bytes(v.application_version.into()),
                    ),
                    (
                        "http://allmydata.org/tahoe/protocols/storage/v1",
                        Value::bytes_dict([
                            ("available-space", Value::int(v.available_space)),
                            (
                                "delete-mutable-shares-with-zero-length-writev",
                                Value::Bool(true),
                            ),
                            ("fills-holes-with-zero-bytes", Value::Bool(true)),
                            (
                                "maximum-immutable-share-size",
                                Value::int(v.maximum_immutable_share_size),
                            ),
                            (
                                "maximum-mutable-share-size",
                                Value::int(v.maximum_mutable_share_size),
                            ),
                            ("prevents-read-past-end-of-share-data", Value::Bool(true)),
                            ("tolerates-immutable-read-overrun", Value::Bool(true)),
                        ]),
                    ),
                ]))
            }
            "allocate_buckets" => {
                let si = si_arg(&args[0])?;
                let lease = LeaseSecrets {
                    renew: Secret(bytes_arg(&args[1]).to_vec()),
                    cancel: Secret(bytes_arg(&args[2]).to_vec()),
                };
                let share_numbers: BTreeSet<ShareNum> = args[3]
                    .as_seq()
                    .unwrap_or_default()
                    .iter()
                    .map(sharenum)
                    .collect::<Result<_, _>>()?;
                let allocated_size = u64_arg(&args[4], "allocated_size")?;
                let Value::Remote(canary) = &args[5] else {
                    return Err(Failure::violation("canary must be a reference"));
                };
                let upload_secret = Secret(rand::random::<[u8; 32]>().to_vec());
                let res = self
                    .api
                    .allocate_buckets(AllocateRequest {
                        storage_index: si,
                        lease,
                        upload_secret: upload_secret.clone(),
                        share_numbers,
                        allocated_size,
                    })
                    .await
                    .map_err(err)?;
                let group = Arc::new(UploadGroup {
                    canary: Mutex::new(Some(canary.clone())),
                    writers: Mutex::new(Vec::new()),
                    done: CancellationToken::new(),
                });
                let mut writers = Vec::new();
                for sh in &res.allocated {
                    let w = Arc::new(BucketWriterObject {
                        api: self.api.clone(),
                        si,
                        shnum: *sh,
                        allocated_size,
                        secret: upload_secret.clone(),
                        state: tokio::sync::Mutex::new(WriterState::Open),
                        group: Arc::downgrade(&group),
                    });
                    group.writers.lock().expect("group").push(w.clone());
                    writers.push((Value::int(*sh), Value::Local(w as Arc<dyn RemoteObject>)));
                }
                if !res.allocated.is_empty() {
                    // Abort whatever is unfinished if the client's connection drops
                    // first; stop watching once every writer is closed or aborted.
                    let canary = canary.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = canary.disconnected() => group.abort_unfinished().await,
                            _ = group.done.cancelled() => {}
                        }
                    });
                }
                Ok(Value::Tuple(vec![
                    Value::Set(res.already_have.iter().map(|s| Value::int(*s)).collect()),
                    Value::Dict(writers),
                ]))
            }
            "get_buckets" => {
                let si = si_arg(&args[0])?;
                let shares = self.api.list_immutable_shares(si).await.map_err(err)?;
                Ok(Value::Dict(
                    shares
                        .into_iter()
                        .map(|sh| {
                            let r: Arc<dyn RemoteObject> = Arc::new(BucketReaderObject {
                                api: self.api.clone(),
                                si,
                                shnum: sh,
                            });
                            (Value::int(sh), Value::Local(r))
                        })
                        .collect(),
                ))
            }
            "add_lease" => {
                let si = si_arg(&args[0])?;
                let lease = LeaseSecrets {
                    renew: Secret(bytes_arg(&args[1]).to_vec()),
                    cancel: Secret(bytes_arg(&args[2]).to_vec()),
                };
                silent_not_found(self.api.add_lease(si, lease).await)
            }
            "slot_readv" => {
                let si = si_arg(&args[0])?;
                let shares = args[1]
                    .as_seq()
                    .unwrap_or_default()
                    .iter()
                    .map(sharenum)
                    .collect::<Result<_, _>>()?;
                let readv = readv_arg(&args[2])?;
                let data = self.api.slot_readv(si, shares, readv).await.map_err(err)?;
                Ok(read_data(data))
            }
            "slot_testv_and_readv_and_writev" => {
                let si = si_arg(&args[0])?;
                let secrets = args[1].as_seq().unwrap_or_default();
                let secrets = MutableSecrets {
                    write_enabler: Secret(bytes_arg(&secrets[0]).to_vec()),
                    lease: LeaseSecrets {
                        renew: Secret(bytes_arg(&secrets[1]).to_vec()),
                        cancel: Secret(bytes_arg(&secrets[2]).to_vec()),
                    },
                };
                let Value::Dict(tw) = &args[2] else {
                    return Err(Failure::violation("tw_vectors must be a dict"));
                };
                let mut test_write_vectors = BTreeMap::new();
                for (sh, t) in tw {
                    let sh = sharenum(sh)?;
                    let t = t.as_seq().unwrap_or_default();
                    let mut test = Vec::new();
                    for tv in t[0].as_seq().unwrap_or_default() {
                        let tv = tv.as_seq().unwrap_or_default();
                        if bytes_arg(&tv[2].clone()).as_ref() != b"eq" {
                            // Tahoe's server asserts the operator is b"eq".
                            return Err(Failure::new(
                                "builtins.AssertionError",
                                format!("unsupported test operator {:?}", tv[2]),
                                &[],
                            ));
                        }
                        test.push(TestVector {
                            offset: u64_arg(&tv[0], "test offset")?,
                            size: read_size_arg(&tv[1], "test length")?,
                            specimen: bytes_arg(&tv[3]),
                        });
                    }
                    let mut write = Vec::new();
                    for dv in t[1].as_seq().unwrap_or_default() {
                        let dv = dv.as_seq().unwrap_or_default();
                        write.push(WriteVector {
                            offset: u64_arg(&dv[0], "write offset")?,
                            data: bytes_arg(&dv[1]),
                        });
                    }
                    let new_length = match &t[2] {
                        Value::None => None,
                        v => Some(u64_arg(v, "new_length")?),
                    };
                    test_write_vectors.insert(
                        sh,
                        TestWriteVectors {
                            test,
                            write,
                            new_length,
                        },
                    );
                }
                let read_vector = readv_arg(&args[3])?;
                let r = self
                    .api
                    .read_test_write(ReadTestWriteRequest {
                        storage_index: si,
                        secrets,
                        test_write_vectors,
                        read_vector,
                    })
                    .await
                    .map_err(err)?;
                Ok(Value::Tuple(vec![
                    Value::Bool(r.success),
                    read_data(r.data),
                ]))
            }
            "advise_corrupt_share" => {
                let share_type = bytes_arg(&args[0]);
                let si = si_arg(&args[1])?;
                // Any int is a share number to RIStorageServer, and Tahoe ignores an
                // advisory for a share it does not hold: one beyond ShareNum cannot be.
                let Ok(sh) = sharenum(&args[2]) else {
                    debug!(%si, shnum = ?args[2], "corruption advisory for a share no server holds: ignored");
                    return Ok(Value::None);
                };
                let reason = bytes_arg(&args[3]);
                let (Ok(share_type), Ok(reason)) = (
                    std::str::from_utf8(&share_type),
                    std::str::from_utf8(&reason),
                ) else {
                    // Tahoe decodes both as UTF-8 to write its report, so for a share
                    // it holds a type or reason that is not UTF-8 fails.
                    return if self.holds_share(si, sh).await.map_err(err)? {
                        Err(Failure::new(
                            "builtins.UnicodeDecodeError",
                            "'utf-8' codec can't decode the share type or reason",
                            &["builtins.UnicodeError", "builtins.ValueError"],
                        ))
                    } else {
                        Ok(Value::None)
                    };
                };
                silent_not_found(
                    self.advise_corrupt(share_type, si, sh, reason.to_owned())
                        .await,
                )
            }
            _ => unreachable!("the schema admits only RIStorageServer methods"),
        }
    }
}

/// The writers of one `allocate_buckets` call and the canary that guards them. The
/// group holds its writers until all are finished, so an upload is aborted even
/// when the connection's own references to the writers are already gone.
struct UploadGroup {
    canary: Mutex<Option<RemoteRef>>,
    writers: Mutex<Vec<Arc<BucketWriterObject>>>,
    done: CancellationToken,
}

impl UploadGroup {
    async fn abort_unfinished(&self) {
        let writers: Vec<_> = self.writers.lock().expect("group").clone();
        for w in writers {
            let mut st = w.state.lock().await;
            if *st == WriterState::Open {
                debug!(si = %w.si, shnum = w.shnum, "client connection lost: aborting unfinished upload");
                let _ = w.api.abort_immutable(w.si, w.shnum, &w.secret).await;
                *st = WriterState::Aborted;
            }
        }
        self.release();
    }

    /// Once no writer is open, let go of the canary (which decrefs it) and the writers.
    fn release(&self) {
        *self.canary.lock().expect("canary") = None;
        self.writers.lock().expect("group").clear();
        self.done.cancel();
    }

    async fn maybe_release(&self) {
        let writers: Vec<_> = self.writers.lock().expect("group").clone();
        for w in writers {
            if *w.state.lock().await == WriterState::Open {
                return;
            }
        }
        self.release();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriterState {
    Open,
    /// Every byte written: the backend already completed the share.
    Complete,
    Closed,
    Aborted,
}

/// `RIBucketWriter`: calls run one at a time, in order (writes, then close).
struct BucketWriterObject {
    api: Arc<dyn StorageApi>,
    si: StorageIndex,
    shnum: ShareNum,
    allocated_size: u64,
    secret: Secret,
    state: tokio::sync::Mutex<WriterState>,
    group: Weak<UploadGroup>,
}

#[async_trait::async_trait]
impl RemoteObject for BucketWriterObject {
    fn schema(&self) -> Option<&'static RemoteInterface> {
        Some(&schema::RI_BUCKET_WRITER)
    }

    fn sequential(&self) -> bool {
        true
    }

    async fn call(
        &self,
        _conn: &Connection,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, Failure> {
        let mut st = self.state.lock().await;
        let r = match (method, *st) {
            ("write", WriterState::Open | WriterState::Complete) => {
                let offset = offset_arg(&args[0])?;
                let data = bytes_arg(&args[1]);
                if *st == WriterState::Complete {
                    // Rewriting identical bytes of a complete share is harmless in
                    // Tahoe; the backend no longer takes writes, so accept quietly.
                    return Ok(Value::None);
                }
                let len = data.len() as u64;
                let p = match self
                    .api
                    .write_immutable(self.si, self.shnum, &self.secret, offset, data)
                    .await
                {
                    Ok(p) => p,
                    // Tahoe's HTTP server answers a write past the allocation with a
                    // bare 500; its Foolscap server raises DataTooLargeError (after
                    // checking for conflicts, which the upstream did too).
                    Err(StorageError::Internal(_) | StorageError::Remote { .. })
                        if offset.saturating_add(len) > self.allocated_size =>
                    {
                        return Err(err(StorageError::DataTooLarge(format!(
                            "({}, {offset}, {len})",
                            self.allocated_size
                        ))))
                    }
                    Err(e) => return Err(err(e)),
                };
                if p.complete() {
                    *st = WriterState::Complete;
                }
                Ok(Value::None)
            }
            ("write", _) => Err(Failure::new(
                "foolscap.ipb.DeadReferenceError",
                "write after close or abort",
                &[],
            )),
            ("close", WriterState::Open) => {
                self.api
                    .close_immutable(self.si, self.shnum, &self.secret)
                    .await
                    .map_err(err)?;
                *st = WriterState::Closed;
                Ok(Value::None)
            }
            ("close", WriterState::Complete) => {
                *st = WriterState::Closed;
                Ok(Value::None)
            }
            ("close", _) => Err(Failure::new(
                "builtins.AssertionError",
                "close() on a closed or aborted bucket",
                &[],
            )),
            ("abort", WriterState::Open) => {
                let _ = self
                    .api
                    .abort_immutable(self.si, self.shnum, &self.secret)
                    .await;
                *st = WriterState::Aborted;
                Ok(Value::None)
            }
            ("abort", _) => Ok(Value::None),
            _ => unreachable!("the schema admits only RIBucketWriter methods"),
        };
        drop(st);
        if matches!(method, "close" | "abort") {
            if let Some(g) = self.group.upgrade() {
                g.maybe_release().await;
            }
        }
        r
    }
}

/// `RIBucketReader` for one complete immutable share.
struct BucketReaderObject {
    api: Arc<dyn StorageApi>,
    si: StorageIndex,
    shnum: ShareNum,
}

#[async_trait::async_trait]
impl RemoteObject for BucketReaderObject {
    fn schema(&self) -> Option<&'static RemoteInterface> {
        Some(&schema::RI_BUCKET_READER)
    }

    async fn call(
        &self,
        _conn: &Connection,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, Failure> {
        match method {
            "read" => {
                // The schema admits a negative offset and any int as the length, as
                // Tahoe's: its share file asserts the offset is not negative, reads
                // nothing for a negative length and up to the end for any other.
                let offset = offset_arg(&args[0])?;
                let Ok(length) = read_size_arg(&args[1], "length") else {
                    return Ok(Value::Bytes(Bytes::new()));
                };
                let b = self
                    .api
                    .read_immutable(self.si, self.shnum, offset, length)
                    .await
                    .map_err(err)?;
                Ok(Value::Bytes(b))
            }
            "advise_corrupt_share" => {
                let Ok(reason) = String::from_utf8(bytes_arg(&args[0]).to_vec()) else {
                    // Tahoe decodes the reason as UTF-8 for its report of the share.
                    return Err(Failure::new(
                        "builtins.UnicodeDecodeError",
                        "'utf-8' codec can't decode the reason",
                        &["builtins.UnicodeError", "builtins.ValueError"],
                    ));
                };
                silent_not_found(
                    self.api
                        .advise_corrupt_share(ShareType::Immutable, self.si, self.shnum, reason)
                        .await,
                )
            }
            _ => unreachable!("the schema admits only RIBucketReader methods"),
        }
    }
}
