//! Concerns around storage calls, each written once: a [`Layer`] sees every call as a
//! value ([`Call`]), passes it on to what it wraps (or answers it itself) and sees the
//! [`Reply`]. [`Layered`] is the one [`StorageApi`] implementation that wraps another:
//! it packs each method's arguments into a [`Call`], runs the layer, and unpacks the
//! reply — so no concern re-implements the seam's fifteen methods.
//!
//! In the spirit of tower's `Layer`/`Service`: a link's stack is composed in one place
//! (`daemon::link`), each layer testable alone.
//! - [`metrics`]: calls, errors, latency and bytes per link and method; the
//!   upstream's state as its answers show it.
//! - [`trace`]: one JSON line per call a front makes.
//! - [`sessions`]: unfinished immutable uploads — limits, the journal, idle reaping.

pub mod journal;
pub mod metrics;
pub mod sessions;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::*;

/// A concern around every storage call.
pub trait Layer: Send + Sync + 'static {
    /// Handle `call`: usually `call.send(next)` with something done before and after.
    fn call<'a>(
        &'a self,
        call: Call<'a>,
        next: &'a dyn StorageApi,
    ) -> impl Future<Output = StorageResult<Reply>> + Send + 'a;
}

/// `inner` with `layer` around every call. Layers are shared (`Arc`) so the daemon can
/// keep a handle on one (to read its state, or run its background task).
pub struct Layered<L> {
    layer: Arc<L>,
    inner: Arc<dyn StorageApi>,
}

impl<L: Layer> Layered<L> {
    pub fn new(layer: Arc<L>, inner: Arc<dyn StorageApi>) -> Layered<L> {
        Layered { layer, inner }
    }

    pub fn layer(&self) -> &Arc<L> {
        &self.layer
    }

    async fn run(&self, call: Call<'_>) -> StorageResult<Reply> {
        self.layer.call(call, &*self.inner).await
    }
}

/// `layer` around `inner`, as the trait object fronts take.
pub fn wrap<L: Layer>(layer: Arc<L>, inner: Arc<dyn StorageApi>) -> Arc<dyn StorageApi> {
    Arc::new(Layered::new(layer, inner))
}

/// A layer answered with the wrong kind of reply: a bug in that layer.
fn mismatch(method: Method, got: &Reply) -> StorageError {
    StorageError::Internal(format!(
        "a storage layer answered {method} with {}",
        match got {
            Reply::Version(_) => "a version",
            Reply::Allocated(_) => "an allocation",
            Reply::Written(_) => "a write's progress",
            Reply::Done => "nothing",
            Reply::Shares(_) => "a share list",
            Reply::Data(_) => "data",
            Reply::Length(_) => "a length",
            Reply::ReadTestWrite(_) => "a test-and-write result",
            Reply::Readv(_) => "a readv result",
        }
    ))
}

/// Unpack a [`Reply`] of the variant `$v` for `$m`.
macro_rules! expect {
    ($r:expr, $m:ident, $v:ident) => {
        match $r? {
            Reply::$v(x) => Ok(x),
            other => Err(mismatch(Method::$m, &other)),
        }
    };
    ($r:expr, $m:ident) => {
        match $r? {
            Reply::Done => Ok(()),
            other => Err(mismatch(Method::$m, &other)),
        }
    };
}

#[async_trait::async_trait]
impl<L: Layer> StorageApi for Layered<L> {
    async fn version(&self) -> StorageResult<VersionInfo> {
        expect!(self.run(Call::Version).await, Version, Version)
    }

    async fn allocate_buckets(&self, req: AllocateRequest) -> StorageResult<AllocateResult> {
        expect!(
            self.run(Call::AllocateBuckets(req)).await,
            AllocateBuckets,
            Allocated
        )
    }

    async fn write_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        let call = Call::WriteImmutable {
            si,
            shnum,
            upload_secret,
            offset,
            data,
        };
        expect!(self.run(call).await, WriteImmutable, Written)
    }

    async fn close_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let call = Call::CloseImmutable {
            si,
            shnum,
            upload_secret,
        };
        expect!(self.run(call).await, CloseImmutable)
    }

    async fn abort_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let call = Call::AbortImmutable {
            si,
            shnum,
            upload_secret,
        };
        expect!(self.run(call).await, AbortImmutable)
    }

    async fn list_immutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        expect!(
            self.run(Call::ListImmutableShares { si }).await,
            ListImmutableShares,
            Shares
        )
    }

    async fn read_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let call = Call::ReadImmutable {
            si,
            shnum,
            offset,
            length,
        };
        expect!(self.run(call).await, ReadImmutable, Data)
    }

    async fn immutable_share_length(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> StorageResult<u64> {
        let call = Call::ImmutableShareLength { si, shnum };
        expect!(self.run(call).await, ImmutableShareLength, Length)
    }

    async fn add_lease(&self, si: StorageIndex, lease: LeaseSecrets) -> StorageResult<()> {
        expect!(self.run(Call::AddLease { si, lease }).await, AddLease)
    }

    async fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> StorageResult<()> {
        let call = Call::AdviseCorruptShare {
            share_type,
            si,
            shnum,
            reason,
        };
        expect!(self.run(call).await, AdviseCorruptShare)
    }

    async fn read_test_write(
        &self,
        req: ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult> {
        expect!(
            self.run(Call::ReadTestWrite(req)).await,
            ReadTestWrite,
            ReadTestWrite
        )
    }

    async fn list_mutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        expect!(
            self.run(Call::ListMutableShares { si }).await,
            ListMutableShares,
            Shares
        )
    }

    async fn read_mutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let call = Call::ReadMutable {
            si,
            shnum,
            offset,
            length,
        };
        expect!(self.run(call).await, ReadMutable, Data)
    }

    async fn mutable_share_length(&self, si: StorageIndex, shnum: ShareNum) -> StorageResult<u64> {
        let call = Call::MutableShareLength { si, shnum };
        expect!(self.run(call).await, MutableShareLength, Length)
    }

    async fn slot_readv(
        &self,
        si: StorageIndex,
        shares: Vec<ShareNum>,
        readv: Vec<ReadVector>,
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        let call = Call::SlotReadv { si, shares, readv };
        expect!(self.run(call).await, SlotReadv, Readv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use std::sync::Mutex;

    /// Records each call's method and outcome, and refuses reads of share 9.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Method, Option<ErrorKind>)>>);

    impl Layer for Recorder {
        async fn call<'a>(
            &'a self,
            call: Call<'a>,
            next: &'a dyn StorageApi,
        ) -> StorageResult<Reply> {
            let method = call.method();
            let r = match call {
                Call::ReadImmutable { shnum: 9, .. } => {
                    Err(StorageError::NotAllowed("share 9".into()))
                }
                call => call.send(next).await,
            };
            let kind = r.as_ref().err().map(StorageError::kind);
            self.0.lock().unwrap().push((method, kind));
            r
        }
    }

    /// Answers every call with nothing, whatever it was.
    struct Wrong;

    impl Layer for Wrong {
        async fn call<'a>(&'a self, _: Call<'a>, _: &'a dyn StorageApi) -> StorageResult<Reply> {
            Ok(Reply::Done)
        }
    }

    #[tokio::test]
    async fn every_method_passes_through_the_layer_and_back() {
        let rec = Arc::new(Recorder::default());
        let store = Arc::new(MemoryStorage::new(1 << 20));
        let api = wrap(rec.clone(), store);
        let si = StorageIndex([7; 16]);
        let up = Secret(vec![1; 32]);
        let lease = LeaseSecrets {
            renew: Secret(vec![2; 32]),
            cancel: Secret(vec![3; 32]),
        };
        assert!(api.version().await.unwrap().maximum_immutable_share_size > 0);
        let a = api
            .allocate_buckets(AllocateRequest {
                storage_index: si,
                lease: lease.clone(),
                upload_secret: up.clone(),
                share_numbers: [0, 1, 9].into_iter().collect(),
                allocated_size: 4,
            })
            .await
            .unwrap();
        assert_eq!(a.allocated.len(), 3);
        let p = api
            .write_immutable(si, 0, &up, 0, Bytes::from_static(b"abcd"))
            .await
            .unwrap();
        assert!(p.complete());
        api.close_immutable(si, 9, &up).await.unwrap();
        api.abort_immutable(si, 1, &up).await.unwrap();
        assert_eq!(
            api.list_immutable_shares(si).await.unwrap(),
            [0, 9].into_iter().collect()
        );
        assert_eq!(api.read_immutable(si, 0, 1, 2).await.unwrap(), "bc");
        assert_eq!(
            api.read_immutable(si, 9, 0, 4).await.unwrap_err().kind(),
            ErrorKind::NotAllowed
        );
        assert_eq!(api.immutable_share_length(si, 0).await.unwrap(), 4);
        api.add_lease(si, lease.clone()).await.unwrap();
        api.advise_corrupt_share(ShareType::Immutable, si, 0, "x".into())
            .await
            .unwrap();
        let m = StorageIndex([8; 16]);
        let w = api
            .read_test_write(ReadTestWriteRequest {
                storage_index: m,
                secrets: MutableSecrets {
                    write_enabler: Secret(vec![4; 32]),
                    lease,
                },
                test_write_vectors: [(
                    2,
                    TestWriteVectors {
                        write: vec![WriteVector {
                            offset: 0,
                            data: Bytes::from_static(b"mut"),
                        }],
                        ..Default::default()
                    },
                )]
                .into_iter()
                .collect(),
                read_vector: vec![],
            })
            .await
            .unwrap();
        assert!(w.success);
        assert_eq!(
            api.list_mutable_shares(m).await.unwrap(),
            [2].into_iter().collect()
        );
        assert_eq!(api.read_mutable(m, 2, 0, 3).await.unwrap(), "mut");
        assert_eq!(api.mutable_share_length(m, 2).await.unwrap(), 3);
        let rv = api
            .slot_readv(m, vec![], vec![ReadVector { offset: 1, size: 2 }])
            .await
            .unwrap();
        assert_eq!(rv[&2], vec![Bytes::from_static(b"ut")]);
        let seen: Vec<Method> = rec.0.lock().unwrap().iter().map(|(m, _)| *m).collect();
        let mut expected = Method::ALL.to_vec();
        expected.insert(7, Method::ReadImmutable);
        assert_eq!(seen, expected);
        assert_eq!(
            rec.0.lock().unwrap()[7],
            (Method::ReadImmutable, Some(ErrorKind::NotAllowed))
        );
    }

    #[tokio::test]
    async fn a_reply_of_the_wrong_kind_is_an_internal_error_naming_the_method() {
        let api = wrap(Arc::new(Wrong), Arc::new(MemoryStorage::new(1 << 20)));
        let e = api.version().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.to_string().contains("version"), "{e}");
        api.add_lease(
            StorageIndex([1; 16]),
            LeaseSecrets {
                renew: Secret(vec![]),
                cancel: Secret(vec![]),
            },
        )
        .await
        .unwrap();
    }
}
