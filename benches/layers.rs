//! What a storage layer adds to each call, in process (no sockets, no upstream):
//! the accounting layer (`swampgate::accounting::Accounted`, an account with no
//! quota and no read rate, its ledger on SQLite) around a backend that answers at
//! once, against the bare backend. The difference is accounting's own cost per call
//! (the calls measured touch no database: allocations and completions do, once per
//! share).
//!
//! `cargo bench --bench layers`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use swampgate::accounting::{AccountHandle, Accounted, Ledger};
use swampgate::storage::layer::wrap;
use swampgate::storage::*;

fn secret(b: u8) -> Secret {
    Secret(vec![b; 32])
}

fn lease() -> LeaseSecrets {
    LeaseSecrets {
        renew: secret(1),
        cancel: secret(2),
    }
}

const IMM: StorageIndex = StorageIndex([1; 16]);
const MUT: StorageIndex = StorageIndex([2; 16]);

/// A backend that answers at once from memory, so a layer's own cost is what the
/// "null" cases measure (only the calls measured here are answered).
struct Null {
    data: Bytes,
}

#[async_trait::async_trait]
impl StorageApi for Null {
    async fn version(&self) -> StorageResult<VersionInfo> {
        Ok(VersionInfo {
            maximum_immutable_share_size: 1 << 40,
            maximum_mutable_share_size: 1 << 40,
            available_space: 1 << 40,
            application_version: b"null".to_vec(),
        })
    }
    async fn allocate_buckets(&self, _: AllocateRequest) -> StorageResult<AllocateResult> {
        unimplemented!()
    }
    async fn write_immutable(
        &self,
        _: StorageIndex,
        _: ShareNum,
        _: &Secret,
        _: u64,
        _: Bytes,
    ) -> StorageResult<WriteProgress> {
        unimplemented!()
    }
    async fn close_immutable(&self, _: StorageIndex, _: ShareNum, _: &Secret) -> StorageResult<()> {
        unimplemented!()
    }
    async fn abort_immutable(&self, _: StorageIndex, _: ShareNum, _: &Secret) -> StorageResult<()> {
        unimplemented!()
    }
    async fn list_immutable_shares(
        &self,
        _: StorageIndex,
    ) -> StorageResult<std::collections::BTreeSet<ShareNum>> {
        unimplemented!()
    }
    async fn read_immutable(
        &self,
        _: StorageIndex,
        _: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        Ok(self.data.slice(offset as usize..(offset + length) as usize))
    }
    async fn immutable_share_length(&self, _: StorageIndex, _: ShareNum) -> StorageResult<u64> {
        unimplemented!()
    }
    async fn add_lease(&self, _: StorageIndex, _: LeaseSecrets) -> StorageResult<()> {
        Ok(())
    }
    async fn advise_corrupt_share(
        &self,
        _: ShareType,
        _: StorageIndex,
        _: ShareNum,
        _: String,
    ) -> StorageResult<()> {
        unimplemented!()
    }
    async fn read_test_write(&self, _: ReadTestWriteRequest) -> StorageResult<ReadTestWriteResult> {
        unimplemented!()
    }
    async fn list_mutable_shares(
        &self,
        _: StorageIndex,
    ) -> StorageResult<std::collections::BTreeSet<ShareNum>> {
        unimplemented!()
    }
    async fn read_mutable(
        &self,
        _: StorageIndex,
        _: ShareNum,
        _: u64,
        _: u64,
    ) -> StorageResult<Bytes> {
        unimplemented!()
    }
    async fn mutable_share_length(&self, _: StorageIndex, _: ShareNum) -> StorageResult<u64> {
        unimplemented!()
    }
    async fn slot_readv(
        &self,
        _: StorageIndex,
        _: Vec<ShareNum>,
        _: Vec<ReadVector>,
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        Ok(BTreeMap::from([(0, vec![self.data.slice(..100)])]))
    }
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let null = || -> Arc<dyn StorageApi> {
        Arc::new(Null {
            data: Bytes::from(vec![7; 4096]),
        })
    };
    let null_bare = null();
    let null_accounted = rt.block_on(async {
        let url = swampgate::accounting::sqlite_url(&dir.path().join("n.sqlite"));
        let ledger = Ledger::open(&url).await.unwrap();
        let handle = AccountHandle::new(
            "bench",
            "default",
            ledger,
            None,
            None,
            Duration::from_secs(1800),
        );
        wrap(
            Arc::new(Accounted {
                handle: Arc::new(handle),
            }),
            null(),
        )
    });
    let mut g = c.benchmark_group("per call");
    for (name, api) in [("bare", &null_bare), ("accounted", &null_accounted)] {
        g.bench_function(format!("get_version, {name}"), |b| {
            b.iter(|| rt.block_on(api.version()).unwrap())
        });
        g.bench_function(format!("add_lease, {name}"), |b| {
            b.iter(|| rt.block_on(api.add_lease(IMM, lease())).unwrap())
        });
        g.bench_function(format!("read 1 KiB, {name}"), |b| {
            b.iter(|| rt.block_on(api.read_immutable(IMM, 0, 1024, 1024)).unwrap())
        });
        g.bench_function(format!("slot_readv 100 B, {name}"), |b| {
            b.iter(|| {
                rt.block_on(api.slot_readv(
                    MUT,
                    vec![0],
                    vec![ReadVector {
                        offset: 0,
                        size: 100,
                    }],
                ))
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
