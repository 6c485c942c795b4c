//! Integration tests of the embedded share store: every semantic rule of Tahoe 1.20's
//! storage server that the seam exposes, durability across restarts and crashes,
//! path safety, concurrency, and a differential test against Tahoe's own storage
//! server (run in the interop venv that `common` builds).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::kit::storage::si;
use bytes::Bytes;
use swampgate::base32::base32_lower;
use swampgate::storage::store::{Clock, OpenError, Store, StoreConfig};
use swampgate::storage::{
    AllocateRequest, ByteRange, LeaseSecrets, MutableSecrets, ReadTestWriteRequest, ReadVector,
    Secret, ShareNum, ShareType, StorageApi, StorageError, StorageIndex, TestVector,
    TestWriteVectors, WriteVector,
};

const LEASE_SECS: u64 = 31 * 24 * 60 * 60;
const T0: u64 = 1_700_000_000;

fn nodeid() -> String {
    base32_lower(&[0x11; 20])
}

struct Env {
    dir: tempfile::TempDir,
    now: Arc<AtomicU64>,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            now: Arc::new(AtomicU64::new(T0)),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn config(&self) -> StoreConfig {
        let now = self.now.clone();
        let mut c = StoreConfig::new(self.root(), nodeid());
        c.clock = Clock::from_fn(move || now.load(Ordering::SeqCst));
        c
    }

    fn open(&self) -> Store {
        Store::open(self.config()).unwrap()
    }

    fn set_time(&self, t: u64) {
        self.now.store(t, Ordering::SeqCst);
    }

    fn share_file(&self, si: &StorageIndex, sh: ShareNum) -> PathBuf {
        let s = si.to_base32();
        self.root()
            .join("shares")
            .join(&s[..2])
            .join(&s)
            .join(sh.to_string())
    }

    fn incoming_file(&self, si: &StorageIndex, sh: ShareNum) -> PathBuf {
        let s = si.to_base32();
        self.root()
            .join("shares/incoming")
            .join(&s[..2])
            .join(&s)
            .join(sh.to_string())
    }
}

fn secret(tag: &str) -> Secret {
    let mut v = tag.as_bytes().to_vec();
    v.resize(32, b'.');
    Secret(v)
}

fn lease(tag: &str) -> LeaseSecrets {
    LeaseSecrets {
        renew: secret(&format!("renew-{tag}")),
        cancel: secret(&format!("cancel-{tag}")),
    }
}

fn alloc_req(
    si: StorageIndex,
    shares: &[ShareNum],
    size: u64,
    upload: &str,
    lease_tag: &str,
) -> AllocateRequest {
    AllocateRequest {
        storage_index: si,
        lease: lease(lease_tag),
        upload_secret: secret(upload),
        share_numbers: shares.iter().copied().collect(),
        allocated_size: size,
    }
}

fn set(v: &[ShareNum]) -> BTreeSet<ShareNum> {
    v.iter().copied().collect()
}

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn range(begin: u64, end: u64) -> ByteRange {
    ByteRange { begin, end }
}

/// Upload a whole share in one write.
async fn upload(store: &Store, si: StorageIndex, sh: ShareNum, data: &[u8]) {
    let r = store
        .allocate_buckets(alloc_req(si, &[sh], data.len() as u64, "up", "l"))
        .await
        .unwrap();
    assert!(r.allocated.contains(&sh));
    let p = store
        .write_immutable(si, sh, &secret("up"), 0, b(data))
        .await
        .unwrap();
    assert!(p.complete());
}

fn we(tag: &str) -> MutableSecrets {
    MutableSecrets {
        write_enabler: secret(&format!("we-{tag}")),
        lease: lease(tag),
    }
}

fn tw(test: &[(u64, &[u8])], write: &[(u64, &[u8])], new_length: Option<u64>) -> TestWriteVectors {
    TestWriteVectors {
        test: test
            .iter()
            .map(|(o, s)| TestVector {
                offset: *o,
                size: s.len() as u64,
                specimen: b(s),
            })
            .collect(),
        write: write
            .iter()
            .map(|(o, d)| WriteVector {
                offset: *o,
                data: b(d),
            })
            .collect(),
        new_length,
    }
}

fn rtw(
    si: StorageIndex,
    secrets: MutableSecrets,
    vectors: Vec<(ShareNum, TestWriteVectors)>,
    readv: &[(u64, u64)],
) -> ReadTestWriteRequest {
    ReadTestWriteRequest {
        storage_index: si,
        secrets,
        test_write_vectors: vectors.into_iter().collect(),
        read_vector: readv
            .iter()
            .map(|(offset, size)| ReadVector {
                offset: *offset,
                size: *size,
            })
            .collect(),
    }
}

fn datav(items: &[(ShareNum, &[&[u8]])]) -> BTreeMap<ShareNum, Vec<Bytes>> {
    items
        .iter()
        .map(|(sh, v)| (*sh, v.iter().map(|d| b(d)).collect()))
        .collect()
}

// --- An independent reading of Tahoe's container format, to check leases ---------

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().unwrap())
}

fn blake2b256(x: &[u8]) -> Vec<u8> {
    use blake2::digest::consts::U32;
    use blake2::{Blake2b, Digest};
    Blake2b::<U32>::digest(x).to_vec()
}

/// `(owner, renew hash, expiration)` of every lease in a share file.
fn leases_on_disk(path: &Path) -> Vec<(u32, Vec<u8>, u32)> {
    let f = std::fs::read(path).unwrap();
    if f.starts_with(b"Tahoe mutable container v2\n") {
        let extra_at = u64::from_be_bytes(f[92..100].try_into().unwrap()) as usize;
        let n_extra = be32(&f[extra_at..extra_at + 4]) as usize;
        let slots = (0..4)
            .map(|i| 100 + 92 * i)
            .chain((0..n_extra).map(|i| extra_at + 4 + 92 * i));
        slots
            .map(|at| &f[at..at + 92])
            .filter(|l| be32(&l[0..4]) != 0)
            .map(|l| (be32(&l[0..4]), l[8..40].to_vec(), be32(&l[4..8])))
            .collect()
    } else {
        assert_eq!(be32(&f[0..4]), 2, "immutable v2 container");
        let n = be32(&f[8..12]) as usize;
        let start = f.len() - 72 * n;
        (0..n)
            .map(|i| &f[start + 72 * i..start + 72 * (i + 1)])
            .map(|l| (be32(&l[0..4]), l[4..36].to_vec(), be32(&l[68..72])))
            .collect()
    }
}

fn renew_hash(tag: &str) -> Vec<u8> {
    blake2b256(&lease(tag).renew.0)
}

// --- Version -----------------------------------------------------------------------

#[tokio::test]
async fn version_reports_real_space_and_tahoe_mutable_limit() {
    let env = Env::new();
    let store = env.open();
    let v = store.version().await.unwrap();
    let fs_avail = fs4::available_space(env.root()).unwrap();
    assert!(v.available_space > 0);
    // Free space moves a little under a running system; it is the filesystem's.
    assert!(v.available_space.abs_diff(fs_avail) < 1 << 30);
    assert_eq!(v.maximum_immutable_share_size, v.available_space);
    // Tahoe's MAX_MUTABLE_SHARE_SIZE: 69105 TB (10^12 bytes each).
    assert_eq!(v.maximum_mutable_share_size, 69105 * 1000u64.pow(4));
    assert_eq!(
        v.application_version,
        format!("swampgate/{}", env!("CARGO_PKG_VERSION")).into_bytes()
    );
    drop(store);

    // The reserve comes off the free space (which other tests move by megabytes).
    let mut c = env.config();
    c.reserved_space = fs_avail.saturating_sub(1 << 30);
    c.max_share_size = Some(1000);
    let store = Store::open(c).unwrap();
    let v = store.version().await.unwrap();
    assert!(
        v.available_space > 0 && v.available_space < 2 << 30,
        "{}",
        v.available_space
    );
    assert_eq!(v.maximum_immutable_share_size, 1000);
    assert_eq!(v.maximum_mutable_share_size, 1000);
}

#[test]
fn open_refuses_bad_nodeid_and_second_opener() {
    let env = Env::new();
    let mut c = env.config();
    c.nodeid = "not-a-tubid".into();
    assert!(matches!(Store::open(c), Err(OpenError::BadNodeId(_))));
    let store = env.open();
    assert!(matches!(
        Store::open(env.config()),
        Err(OpenError::InUse(_))
    ));
    drop(store);
    env.open();
}

// --- Allocation ----------------------------------------------------------------------

#[tokio::test]
async fn allocate_reports_complete_shares_and_skips_uploads_in_progress() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    let r = store
        .allocate_buckets(alloc_req(s, &[0, 1, 2], 4, "a", "a"))
        .await
        .unwrap();
    assert_eq!(r.already_have, set(&[]));
    assert_eq!(r.allocated, set(&[0, 1, 2]));
    store
        .write_immutable(s, 0, &secret("a"), 0, b(b"abcd"))
        .await
        .unwrap();
    // Same upload again: in-progress shares are in neither set.
    let r = store
        .allocate_buckets(alloc_req(s, &[0, 1, 2], 4, "a", "a"))
        .await
        .unwrap();
    assert_eq!(r.already_have, set(&[0]));
    assert_eq!(r.allocated, set(&[]));
    // Another upload gets only what nobody holds; already_have lists every complete
    // share, asked for or not.
    let r = store
        .allocate_buckets(alloc_req(s, &[1, 3], 4, "b", "b"))
        .await
        .unwrap();
    assert_eq!(r.already_have, set(&[0]));
    assert_eq!(r.allocated, set(&[3]));
    assert_eq!(store.list_immutable_shares(s).await.unwrap(), set(&[0]));
}

#[tokio::test]
async fn allocation_too_large_for_space_or_limit_is_empty() {
    let env = Env::new();
    let store = env.open();
    let r = store
        .allocate_buckets(alloc_req(si(1, 0), &[0, 1], u64::MAX / 2, "a", "a"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[]));
    assert_eq!(r.already_have, set(&[]));
    // Space promised to uploads in progress counts against the next allocation
    // (sizes chosen so that the free space may move a lot meanwhile).
    let avail = store.version().await.unwrap().available_space;
    let r = store
        .allocate_buckets(alloc_req(si(2, 0), &[0, 1, 2], avail / 8 * 3, "a", "a"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[0, 1]));
    drop(store);

    let mut c = env.config();
    c.max_share_size = Some(100);
    let store = Store::open(c).unwrap();
    let r = store
        .allocate_buckets(alloc_req(si(3, 0), &[0], 101, "a", "a"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[]));
    let r = store
        .allocate_buckets(alloc_req(si(3, 0), &[0], 100, "a", "a"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[0]));
}

#[tokio::test]
async fn allocate_adds_and_renews_leases_on_existing_shares() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    upload(&store, s, 0, b"data").await;
    let path = env.share_file(&s, 0);
    let exp0 = (T0 + LEASE_SECS) as u32;
    // The uploader's lease (owner 0), secrets hashed.
    assert_eq!(leases_on_disk(&path), vec![(0, renew_hash("l"), exp0)]);

    env.set_time(T0 + 100);
    let r = store
        .allocate_buckets(alloc_req(s, &[0], 4, "x", "l"))
        .await
        .unwrap();
    assert_eq!(r.already_have, set(&[0]));
    assert_eq!(
        leases_on_disk(&path),
        vec![(0, renew_hash("l"), exp0 + 100)]
    );

    store
        .allocate_buckets(alloc_req(s, &[5], 1 << 40, "x", "other"))
        .await
        .unwrap();
    assert_eq!(
        leases_on_disk(&path),
        vec![
            (0, renew_hash("l"), exp0 + 100),
            (0, renew_hash("other"), exp0 + 100)
        ]
    );
    // Data is untouched by lease changes.
    assert_eq!(
        store.read_immutable(s, 0, 0, 100).await.unwrap(),
        b(b"data")
    );
    assert_eq!(store.immutable_share_length(s, 0).await.unwrap(), 4);
}

// --- Immutable writes --------------------------------------------------------------

#[tokio::test]
async fn immutable_write_rules() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    store
        .allocate_buckets(alloc_req(s, &[0], 30, "a", "a"))
        .await
        .unwrap();
    let w = |off: u64, d: &'static [u8], sec: &'static str| {
        let store = store.clone();
        async move { store.write_immutable(s, 0, &secret(sec), off, b(d)).await }
    };
    assert_eq!(
        w(0, b"0123456789", "a").await.unwrap().required,
        vec![range(10, 30)]
    );
    assert_eq!(
        w(20, b"abcdefghij", "a").await.unwrap().required,
        vec![range(10, 20)]
    );
    // An identical rewrite, even partly overlapping, is fine.
    assert_eq!(
        w(5, b"56789", "a").await.unwrap().required,
        vec![range(10, 20)]
    );
    // Differing bytes anywhere in the overlap conflict, and nothing is written.
    assert!(matches!(
        w(8, b"8Xzzzzzzzz", "a").await,
        Err(StorageError::ConflictingWrite(_))
    ));
    // Conflict is checked before size.
    assert!(matches!(
        w(25, b"fXXXXXXXXX", "a").await,
        Err(StorageError::ConflictingWrite(_))
    ));
    // Matching bytes running past the end are too large.
    assert!(matches!(
        w(29, b"jX", "a").await,
        Err(StorageError::DataTooLarge(_))
    ));
    match w(30, b"X", "a").await {
        Err(StorageError::DataTooLarge(m)) => assert!(m.contains(&s.to_base32()), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        w(u64::MAX, b"X", "a").await,
        Err(StorageError::DataTooLarge(_))
    ));
    assert_eq!(w(10, b"", "a").await.unwrap().required, vec![range(10, 20)]);
    assert_eq!(
        w(10, b"x", "wrong").await,
        Err(StorageError::WrongUploadSecret)
    );
    // Nothing is visible until complete.
    assert_eq!(store.list_immutable_shares(s).await.unwrap(), set(&[]));
    assert!(matches!(
        store.read_immutable(s, 0, 0, 1).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(env.incoming_file(&s, 0).exists());
    // The last byte completes the share.
    assert!(w(10, b"ABCDEFGHIJ", "a").await.unwrap().complete());
    assert!(!env.incoming_file(&s, 0).exists());
    assert_eq!(store.list_immutable_shares(s).await.unwrap(), set(&[0]));
    assert_eq!(
        store.read_immutable(s, 0, 0, 100).await.unwrap(),
        b(b"0123456789ABCDEFGHIJabcdefghij")
    );
    // Finished: writes find no upload.
    assert!(matches!(
        w(0, b"0", "a").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        store
            .write_immutable(si(9, 0), 0, &secret("a"), 0, b(b"x"))
            .await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn zero_size_share_completes_on_first_write() {
    let env = Env::new();
    let store = env.open();
    let r = store
        .allocate_buckets(alloc_req(si(1, 0), &[0], 0, "a", "a"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[0]));
    let p = store
        .write_immutable(si(1, 0), 0, &secret("a"), 0, Bytes::new())
        .await
        .unwrap();
    assert!(p.complete());
    assert_eq!(store.immutable_share_length(si(1, 0), 0).await.unwrap(), 0);
    assert_eq!(
        store.read_immutable(si(1, 0), 0, 0, 10).await.unwrap(),
        b(b"")
    );
}

#[tokio::test]
async fn close_completes_with_holes_as_zeros() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    store
        .allocate_buckets(alloc_req(s, &[0, 1], 10, "a", "a"))
        .await
        .unwrap();
    store
        .write_immutable(s, 0, &secret("a"), 2, b(b"xy"))
        .await
        .unwrap();
    assert_eq!(
        store.close_immutable(s, 0, &secret("b")).await,
        Err(StorageError::WrongUploadSecret)
    );
    store.close_immutable(s, 0, &secret("a")).await.unwrap();
    assert_eq!(
        store.read_immutable(s, 0, 0, 100).await.unwrap(),
        b(b"\0\0xy\0\0\0\0\0\0")
    );
    assert_eq!(store.immutable_share_length(s, 0).await.unwrap(), 10);
    // Closing again (e.g. Foolscap's close() after the completing write) is harmless.
    store.close_immutable(s, 0, &secret("a")).await.unwrap();
    assert!(matches!(
        store.write_immutable(s, 0, &secret("a"), 0, b(b"x")).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        store.close_immutable(s, 7, &secret("a")).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(store.list_immutable_shares(s).await.unwrap(), set(&[0]));
}

#[tokio::test]
async fn abort_rules() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    store
        .allocate_buckets(alloc_req(s, &[0, 1], 4, "a", "a"))
        .await
        .unwrap();
    store
        .write_immutable(s, 0, &secret("a"), 0, b(b"ab"))
        .await
        .unwrap();
    assert_eq!(
        store.abort_immutable(s, 0, &secret("b")).await,
        Err(StorageError::WrongUploadSecret)
    );
    store.abort_immutable(s, 0, &secret("a")).await.unwrap();
    assert!(!env.incoming_file(&s, 0).exists());
    assert!(matches!(
        store.abort_immutable(s, 0, &secret("a")).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        store.write_immutable(s, 0, &secret("a"), 2, b(b"cd")).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        store.abort_immutable(si(7, 0), 0, &secret("a")).await,
        Err(StorageError::NotFound(_))
    ));
    store
        .write_immutable(s, 1, &secret("a"), 0, b(b"abcd"))
        .await
        .unwrap();
    assert!(matches!(
        store.abort_immutable(s, 1, &secret("a")).await,
        Err(StorageError::NotAllowed(_))
    ));
    assert_eq!(store.list_immutable_shares(s).await.unwrap(), set(&[1]));
    // The aborted share can be allocated afresh.
    let r = store
        .allocate_buckets(alloc_req(s, &[0], 4, "c", "a"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[0]));
}

#[tokio::test]
async fn idle_uploads_time_out_after_thirty_minutes() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    store
        .allocate_buckets(alloc_req(s, &[0, 1], 4, "a", "a"))
        .await
        .unwrap();
    env.set_time(T0 + 29 * 60);
    store
        .write_immutable(s, 0, &secret("a"), 0, b(b"ab"))
        .await
        .unwrap();
    // Share 0 wrote 29 minutes in; share 1 never did.
    env.set_time(T0 + 30 * 60);
    assert!(matches!(
        store.write_immutable(s, 1, &secret("a"), 0, b(b"ab")).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(!env.incoming_file(&s, 1).exists());
    store
        .write_immutable(s, 0, &secret("a"), 2, b(b"c"))
        .await
        .unwrap();
    // An allocation reaps idle uploads it finds.
    env.set_time(T0 + 60 * 60);
    let r = store
        .allocate_buckets(alloc_req(s, &[0], 4, "b", "a"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[0]));
}

// --- Immutable reads ---------------------------------------------------------------

#[tokio::test]
async fn immutable_reads_truncate_and_unknown_is_not_found() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    upload(&store, s, 3, b"hello world").await;
    assert_eq!(
        store.read_immutable(s, 3, 6, 100).await.unwrap(),
        b(b"world")
    );
    assert_eq!(store.read_immutable(s, 3, 0, 5).await.unwrap(), b(b"hello"));
    assert_eq!(store.read_immutable(s, 3, 11, 5).await.unwrap(), b(b""));
    assert_eq!(
        store
            .read_immutable(s, 3, u64::MAX, u64::MAX)
            .await
            .unwrap(),
        b(b"")
    );
    assert_eq!(store.read_immutable(s, 3, 2, 0).await.unwrap(), b(b""));
    assert_eq!(store.immutable_share_length(s, 3).await.unwrap(), 11);
    for (si_, sh) in [(s, 4), (si(2, 0), 3)] {
        assert!(matches!(
            store.read_immutable(si_, sh, 0, 1).await,
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(
            store.immutable_share_length(si_, sh).await,
            Err(StorageError::NotFound(_))
        ));
    }
    assert_eq!(
        store.list_immutable_shares(si(2, 0)).await.unwrap(),
        set(&[])
    );
}

// --- Leases and corruption advisories ------------------------------------------------

#[tokio::test]
async fn add_lease_adds_or_renews_on_every_share() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    assert!(matches!(
        store.add_lease(s, lease("x")).await,
        Err(StorageError::NotFound(_))
    ));
    upload(&store, s, 0, b"a").await;
    upload(&store, s, 1, b"b").await;
    env.set_time(T0 + 50);
    store.add_lease(s, lease("x")).await.unwrap();
    let exp = (T0 + LEASE_SECS) as u32;
    for sh in [0, 1] {
        assert_eq!(
            leases_on_disk(&env.share_file(&s, sh)),
            vec![(0, renew_hash("l"), exp), (1, renew_hash("x"), exp + 50)]
        );
    }
    // Renewal moves expiry only forward.
    env.set_time(T0 + 10);
    store.add_lease(s, lease("x")).await.unwrap();
    env.set_time(T0 + 80);
    store.add_lease(s, lease("l")).await.unwrap();
    assert_eq!(
        leases_on_disk(&env.share_file(&s, 1)),
        vec![
            (0, renew_hash("l"), exp + 80),
            (1, renew_hash("x"), exp + 50)
        ]
    );

    // Mutable shares too.
    let m = si(2, 0);
    store
        .read_test_write(rtw(m, we("m"), vec![(0, tw(&[], &[(0, b"x")], None))], &[]))
        .await
        .unwrap();
    env.set_time(T0 + 90);
    store.add_lease(m, lease("x")).await.unwrap();
    assert_eq!(
        leases_on_disk(&env.share_file(&m, 0)),
        vec![
            (1, renew_hash("m"), exp + 80),
            (1, renew_hash("x"), exp + 90)
        ]
    );
}

#[tokio::test]
async fn no_space_for_new_leases_or_allocations() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    upload(&store, s, 0, b"a").await;
    drop(store);
    let mut c = env.config();
    c.reserved_space = u64::MAX;
    let store = Store::open(c).unwrap();
    assert_eq!(store.version().await.unwrap().available_space, 0);
    // Renewing an existing lease needs no room; adding one does.
    store.add_lease(s, lease("l")).await.unwrap();
    assert!(matches!(
        store.add_lease(s, lease("new")).await,
        Err(StorageError::NoSpace(_))
    ));
    assert!(matches!(
        store
            .allocate_buckets(alloc_req(s, &[1], 1, "a", "new"))
            .await,
        Err(StorageError::NoSpace(_))
    ));
    let r = store
        .allocate_buckets(alloc_req(si(2, 0), &[0, 1], 1, "a", "l"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[]));
    let r = store
        .allocate_buckets(alloc_req(si(2, 0), &[0], 0, "a", "l"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[0]));
    // Mutable growth needs room.
    assert!(matches!(
        store
            .read_test_write(rtw(
                si(3, 0),
                we("m"),
                vec![(0, tw(&[], &[(0, b"x")], None))],
                &[]
            ))
            .await,
        Err(StorageError::NoSpace(_))
    ));
    assert_eq!(store.list_mutable_shares(si(3, 0)).await.unwrap(), set(&[]));
}

#[tokio::test]
async fn corruption_advisories_are_recorded() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    upload(&store, s, 2, b"abc").await;
    assert!(matches!(
        store
            .advise_corrupt_share(ShareType::Immutable, s, 3, "bad".into())
            .await,
        Err(StorageError::NotFound(_))
    ));
    store
        .advise_corrupt_share(ShareType::Immutable, s, 2, "hash mismatch".into())
        .await
        .unwrap();
    let dir = env.root().join("corruption-advisories");
    let reports: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 1);
    let name = reports[0].file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with(&format!("--{}-2", s.to_base32())), "{name}");
    assert!(!name.contains(':'));
    assert_eq!(
        std::fs::read_to_string(&reports[0]).unwrap(),
        format!(
            "report: Share Corruption\ntype: immutable\nstorage_index: {}\nshare_number: 2\n\nhash mismatch\n\n",
            s.to_base32()
        )
    );
}

// --- Mutable ------------------------------------------------------------------------

#[tokio::test]
async fn write_enabler_is_recorded_and_checked() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    let r = store
        .read_test_write(rtw(
            s,
            we("a"),
            vec![(0, tw(&[], &[(0, b"v1")], None))],
            &[],
        ))
        .await
        .unwrap();
    assert!(r.success);
    assert_eq!(r.data, BTreeMap::new());
    let expected = format!("The write enabler was recorded by nodeid '{}'.", nodeid());
    // Writes and even read-only requests with another write enabler are refused.
    for req in [
        rtw(s, we("b"), vec![(0, tw(&[], &[(0, b"v2")], None))], &[]),
        rtw(s, we("b"), vec![], &[(0, 10)]),
        rtw(s, we("b"), vec![(5, tw(&[], &[(0, b"x")], None))], &[]),
    ] {
        assert_eq!(
            store.read_test_write(req).await,
            Err(StorageError::BadWriteEnabler(expected.clone()))
        );
    }
    assert_eq!(store.read_mutable(s, 0, 0, 10).await.unwrap(), b(b"v1"));
    assert_eq!(store.list_mutable_shares(s).await.unwrap(), set(&[0]));
    // A write enabler shorter than 32 bytes is recorded padded, and never matches
    // again (as in Tahoe).
    let short = MutableSecrets {
        write_enabler: Secret(b"short".to_vec()),
        lease: lease("a"),
    };
    let m = si(2, 0);
    assert!(
        store
            .read_test_write(rtw(
                m,
                short.clone(),
                vec![(0, tw(&[], &[(0, b"x")], None))],
                &[]
            ))
            .await
            .unwrap()
            .success
    );
    assert!(matches!(
        store.read_test_write(rtw(m, short, vec![], &[])).await,
        Err(StorageError::BadWriteEnabler(_))
    ));
}

#[tokio::test]
async fn test_vectors_compare_bytes_read_at_offset() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    let run = |vectors: Vec<(ShareNum, TestWriteVectors)>| {
        let store = store.clone();
        async move {
            store
                .read_test_write(rtw(s, we("a"), vectors, &[(0, 100)]))
                .await
                .unwrap()
        }
    };
    // Against a missing share every read is empty: only empty specimens pass.
    assert!(
        !run(vec![(0, tw(&[(0, b"x")], &[(0, b"nope")], None))])
            .await
            .success
    );
    assert_eq!(store.list_mutable_shares(s).await.unwrap(), set(&[]));
    assert!(
        run(vec![(0, tw(&[(0, b""), (5, b"")], &[(0, b"hello")], None))])
            .await
            .success
    );
    // Exact bytes pass; a short read (past the end) fails against a longer specimen.
    assert!(run(vec![(0, tw(&[(1, b"ell")], &[], None))]).await.success);
    assert!(!run(vec![(0, tw(&[(3, b"lo!")], &[], None))]).await.success);
    assert!(run(vec![(0, tw(&[(3, b"lo")], &[], None))]).await.success);
    assert!(run(vec![(0, tw(&[(5, b"")], &[], None))]).await.success);
    // One failing test anywhere fails the whole request; nothing is written.
    let r = run(vec![
        (0, tw(&[(0, b"hello")], &[(0, b"HELLO")], None)),
        (1, tw(&[(0, b"x")], &[(0, b"new")], None)),
    ])
    .await;
    assert!(!r.success);
    assert_eq!(r.data, datav(&[(0, &[b"hello"])]));
    assert_eq!(store.read_mutable(s, 0, 0, 10).await.unwrap(), b(b"hello"));
    assert_eq!(store.list_mutable_shares(s).await.unwrap(), set(&[0]));
}

#[tokio::test]
async fn read_vectors_see_every_share_before_the_writes() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    store
        .read_test_write(rtw(
            s,
            we("a"),
            vec![
                (0, tw(&[], &[(0, b"zero")], None)),
                (1, tw(&[], &[(0, b"one")], None)),
            ],
            &[],
        ))
        .await
        .unwrap();
    let r = store
        .read_test_write(rtw(
            s,
            we("a"),
            vec![
                (0, tw(&[], &[(0, b"ZERO")], None)),
                (2, tw(&[], &[(0, b"two")], None)),
            ],
            &[(0, 2), (1, 100), (50, 1)],
        ))
        .await
        .unwrap();
    assert!(r.success);
    assert_eq!(
        r.data,
        datav(&[(0, &[b"ze", b"ero", b""]), (1, &[b"on", b"ne", b""])])
    );
    assert_eq!(
        store
            .slot_readv(
                s,
                vec![],
                vec![ReadVector {
                    offset: 0,
                    size: 10
                }]
            )
            .await
            .unwrap(),
        datav(&[(0, &[b"ZERO"]), (1, &[b"one"]), (2, &[b"two"])])
    );
}

#[tokio::test]
async fn new_length_deletes_truncates_or_is_ignored_and_holes_are_zeros() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    let write = |vectors: Vec<(ShareNum, TestWriteVectors)>| {
        let store = store.clone();
        async move {
            assert!(
                store
                    .read_test_write(rtw(s, we("a"), vectors, &[]))
                    .await
                    .unwrap()
                    .success
            )
        }
    };
    write(vec![(0, tw(&[], &[(0, b"0123456789")], None))]).await;
    write(vec![(0, tw(&[], &[], Some(100)))]).await;
    assert_eq!(store.mutable_share_length(s, 0).await.unwrap(), 10);
    write(vec![(0, tw(&[], &[], Some(4)))]).await;
    assert_eq!(store.mutable_share_length(s, 0).await.unwrap(), 4);
    assert_eq!(store.read_mutable(s, 0, 0, 100).await.unwrap(), b(b"0123"));
    // Writing past the end zero-fills the gap; truncated bytes do not come back.
    write(vec![(0, tw(&[], &[(8, b"xy")], None))]).await;
    assert_eq!(
        store.read_mutable(s, 0, 0, 100).await.unwrap(),
        b(b"0123\0\0\0\0xy")
    );
    // Writes then truncation, in one request.
    write(vec![(0, tw(&[], &[(0, b"AB"), (20, b"Z")], Some(3)))]).await;
    assert_eq!(store.read_mutable(s, 0, 0, 100).await.unwrap(), b(b"AB2"));
    // An empty write past the end still extends the data with zeros.
    write(vec![(0, tw(&[], &[(5, b"")], None))]).await;
    assert_eq!(
        store.read_mutable(s, 0, 0, 100).await.unwrap(),
        b(b"AB2\0\0")
    );
    // A share created by a request with no writes is empty.
    write(vec![(1, tw(&[], &[], None))]).await;
    assert_eq!(store.mutable_share_length(s, 1).await.unwrap(), 0);
    // Length 0 deletes, whatever the writes; deleting a missing share is fine.
    write(vec![
        (0, tw(&[], &[(0, b"ignored")], Some(0))),
        (7, tw(&[], &[], Some(0))),
    ])
    .await;
    assert_eq!(store.list_mutable_shares(s).await.unwrap(), set(&[1]));
    assert!(matches!(
        store.read_mutable(s, 0, 0, 1).await,
        Err(StorageError::NotFound(_))
    ));
    // Deleting the last share removes the bucket directory.
    write(vec![(1, tw(&[], &[], Some(0)))]).await;
    assert!(!env.share_file(&s, 1).parent().unwrap().exists());
    assert_eq!(store.list_mutable_shares(s).await.unwrap(), set(&[]));
}

#[tokio::test]
async fn mutable_container_limit() {
    let env = Env::new();
    let mut c = env.config();
    c.max_share_size = Some(100);
    let store = Store::open(c).unwrap();
    let s = si(1, 0);
    let req = |off: u64| rtw(s, we("a"), vec![(0, tw(&[], &[(off, b"x")], None))], &[]);
    assert!(store.read_test_write(req(99)).await.unwrap().success);
    assert!(matches!(
        store.read_test_write(req(100)).await,
        Err(StorageError::DataTooLarge(_))
    ));
    // Nothing of a failed request lands, not even in other shares.
    let two = rtw(
        s,
        we("a"),
        vec![
            (0, tw(&[], &[(0, b"y")], None)),
            (1, tw(&[], &[(200, b"x")], None)),
        ],
        &[],
    );
    assert!(matches!(
        store.read_test_write(two).await,
        Err(StorageError::DataTooLarge(_))
    ));
    assert_eq!(store.read_mutable(s, 0, 0, 1).await.unwrap(), b(b"\0"));
    assert_eq!(store.list_mutable_shares(s).await.unwrap(), set(&[0]));
}

#[tokio::test]
async fn mutable_reads_and_slot_readv() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    store
        .read_test_write(rtw(
            s,
            we("a"),
            vec![
                (0, tw(&[], &[(0, b"abcdef")], None)),
                (3, tw(&[], &[(0, b"xyz")], None)),
            ],
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(store.read_mutable(s, 0, 4, 100).await.unwrap(), b(b"ef"));
    assert_eq!(store.read_mutable(s, 0, 6, 1).await.unwrap(), b(b""));
    assert_eq!(store.mutable_share_length(s, 3).await.unwrap(), 3);
    assert!(matches!(
        store.mutable_share_length(s, 1).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(store.list_mutable_shares(s).await.unwrap(), set(&[0, 3]));
    assert_eq!(store.list_mutable_shares(si(9, 0)).await.unwrap(), set(&[]));
    let rv = |o, n| ReadVector { offset: o, size: n };
    assert_eq!(
        store
            .slot_readv(s, vec![3, 1], vec![rv(1, 1), rv(0, 0)])
            .await
            .unwrap(),
        datav(&[(3, &[b"y", b""])])
    );
    assert_eq!(
        store.slot_readv(s, vec![], vec![]).await.unwrap(),
        datav(&[(0, &[]), (3, &[])])
    );
    assert_eq!(
        store
            .slot_readv(si(9, 0), vec![], vec![rv(0, 1)])
            .await
            .unwrap(),
        BTreeMap::new()
    );
}

#[tokio::test]
async fn containers_of_the_other_kind_are_refused() {
    let env = Env::new();
    let store = env.open();
    let imm = si(1, 0);
    upload(&store, imm, 0, b"immutable").await;
    let mutable = si(2, 0);
    store
        .read_test_write(rtw(
            mutable,
            we("a"),
            vec![(0, tw(&[], &[(0, b"m")], None))],
            &[],
        ))
        .await
        .unwrap();

    fn wrong<T>(r: Result<T, StorageError>) -> bool {
        matches!(r, Err(StorageError::WrongContainer(_)))
    }
    assert!(wrong(
        store
            .read_test_write(rtw(
                imm,
                we("a"),
                vec![(1, tw(&[], &[(0, b"x")], None))],
                &[]
            ))
            .await
    ));
    assert!(wrong(
        store
            .read_test_write(rtw(imm, we("a"), vec![], &[(0, 1)]))
            .await
    ));
    assert!(wrong(store.read_mutable(imm, 0, 0, 1).await));
    assert!(wrong(store.mutable_share_length(imm, 0).await));
    assert!(wrong(store.slot_readv(imm, vec![], vec![]).await));
    assert!(wrong(
        store
            .allocate_buckets(alloc_req(mutable, &[1], 4, "a", "a"))
            .await
    ));
    assert!(wrong(store.read_immutable(mutable, 0, 0, 1).await));
    assert!(wrong(store.immutable_share_length(mutable, 0).await));
    assert!(wrong(store.list_immutable_shares(mutable).await));
    // Like Tahoe's enumerate_mutable_shares, listing does not look inside.
    assert_eq!(store.list_mutable_shares(imm).await.unwrap(), set(&[0]));

    // No mutable share appears where an immutable upload is in progress.
    let up = si(3, 0);
    store
        .allocate_buckets(alloc_req(up, &[0], 4, "a", "a"))
        .await
        .unwrap();
    assert!(wrong(
        store
            .read_test_write(rtw(
                up,
                we("a"),
                vec![(1, tw(&[], &[(0, b"x")], None))],
                &[]
            ))
            .await
    ));
    // Both kinds take leases and corruption reports.
    store.add_lease(imm, lease("z")).await.unwrap();
    store.add_lease(mutable, lease("z")).await.unwrap();
    store
        .advise_corrupt_share(ShareType::Mutable, mutable, 0, "r".into())
        .await
        .unwrap();
}

// --- Persistence ----------------------------------------------------------------------

#[tokio::test]
async fn restart_keeps_shares_leases_and_write_enablers_and_drops_uploads() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    upload(&store, s, 0, b"kept").await;
    store
        .allocate_buckets(alloc_req(s, &[1], 4, "a", "a"))
        .await
        .unwrap();
    store
        .write_immutable(s, 1, &secret("a"), 0, b(b"par"))
        .await
        .unwrap();
    let m = si(2, 0);
    store
        .read_test_write(rtw(
            m,
            we("a"),
            vec![(0, tw(&[], &[(0, b"mut")], None))],
            &[],
        ))
        .await
        .unwrap();
    let leases_before = leases_on_disk(&env.share_file(&m, 0));
    drop(store);

    let store = env.open();
    assert_eq!(store.list_immutable_shares(s).await.unwrap(), set(&[0]));
    assert_eq!(store.read_immutable(s, 0, 0, 10).await.unwrap(), b(b"kept"));
    assert!(!env.incoming_file(&s, 1).exists());
    assert!(matches!(
        store.write_immutable(s, 1, &secret("a"), 3, b(b"t")).await,
        Err(StorageError::NotFound(_))
    ));
    let r = store
        .allocate_buckets(alloc_req(s, &[1], 4, "b", "a"))
        .await
        .unwrap();
    assert_eq!(r.allocated, set(&[1]));
    assert_eq!(leases_on_disk(&env.share_file(&m, 0)), leases_before);
    assert!(matches!(
        store.read_test_write(rtw(m, we("b"), vec![], &[])).await,
        Err(StorageError::BadWriteEnabler(_))
    ));
    assert_eq!(
        store
            .read_test_write(rtw(m, we("a"), vec![], &[(0, 10)]))
            .await
            .unwrap()
            .data,
        datav(&[(0, &[b"mut"])])
    );
}

// --- Paths ----------------------------------------------------------------------------

/// Every path under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn hostile_storage_indexes_and_share_numbers_stay_inside_the_store() {
    let env = Env::new();
    let store = env.open();
    let hostile: Vec<StorageIndex> = [
        *b"../../../../etc/",
        *b"/etc/passwd\0\0\0\0\0",
        *b"..\\..\\..\\..\\x\0\0\0",
        [0xff; 16],
        [0; 16],
    ]
    .into_iter()
    .map(StorageIndex)
    .collect();
    for (i, s) in hostile.iter().enumerate() {
        for sh in [0, ShareNum::MAX] {
            let r = store
                .allocate_buckets(alloc_req(*s, &[sh], 3, "a", "a"))
                .await
                .unwrap();
            assert_eq!(r.allocated, set(&[sh]));
            store
                .write_immutable(*s, sh, &secret("a"), 0, b(b"abc"))
                .await
                .unwrap();
            store
                .advise_corrupt_share(ShareType::Immutable, *s, sh, "../../x".into())
                .await
                .unwrap();
        }
        let m = StorageIndex({
            let mut b = s.0;
            b[15] ^= 1 + i as u8;
            b
        });
        store
            .read_test_write(rtw(
                m,
                we("a"),
                vec![(ShareNum::MAX, tw(&[], &[(0, b"m")], None))],
                &[],
            ))
            .await
            .unwrap();
    }
    // Nothing exists beside the store directory.
    assert_eq!(walk(env.dir.path()).first(), Some(&PathBuf::from("store")));
    let siblings: Vec<_> = std::fs::read_dir(env.dir.path()).unwrap().collect();
    assert_eq!(siblings.len(), 1);
    // Inside it, every name is drawn from the store's own alphabet.
    for p in walk(&env.root()) {
        for c in p.components() {
            let name = c.as_os_str().to_str().unwrap();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._T".contains(&b)),
                "{p:?}"
            );
            assert!(name != ".." && !name.is_empty());
        }
    }
    for s in &hostile {
        let listed = store.list_immutable_shares(*s).await.unwrap();
        assert_eq!(listed, set(&[0, ShareNum::MAX]));
        assert!(env.share_file(s, ShareNum::MAX).is_file());
    }
}

// --- Concurrency -----------------------------------------------------------------------

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_uploads_in_chunks_all_land_intact() {
    let env = Env::new();
    let store = env.open();
    let mut tasks = Vec::new();
    for n in 0..8u8 {
        for sh in 0..6u16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let s = si(n, 0);
                let data = pattern(n as u64 * 1000 + sh as u64, 100_000 + sh as usize);
                let r = store
                    .allocate_buckets(alloc_req(s, &[sh], data.len() as u64, "u", "l"))
                    .await
                    .unwrap();
                assert_eq!(r.allocated, set(&[sh]));
                // Chunks out of order, some written twice.
                let chunks: Vec<_> = data.chunks(7_000).enumerate().collect();
                for (i, c) in chunks.iter().rev() {
                    let off = (*i * 7_000) as u64;
                    store
                        .write_immutable(s, sh, &secret("u"), off, b(c))
                        .await
                        .unwrap();
                }
                assert!(matches!(
                    store
                        .write_immutable(s, sh, &secret("u"), 0, b(chunks[0].1))
                        .await,
                    Err(StorageError::NotFound(_))
                ));
                data
            }));
        }
    }
    let mut expected = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        expected.push((i, t.await.unwrap()));
    }
    for (i, data) in expected {
        let (s, sh) = (si((i / 6) as u8, 0), (i % 6) as u16);
        assert_eq!(
            store.read_immutable(s, sh, 0, u64::MAX).await.unwrap(),
            b(&data)
        );
    }
}

/// Test-and-set through read-test-write is atomic: of many clients racing to bump
/// a counter from the value they read, exactly one wins each round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_test_write_is_atomic() {
    let env = Env::new();
    let store = env.open();
    let s = si(1, 0);
    store
        .read_test_write(rtw(
            s,
            we("a"),
            vec![(0, tw(&[], &[(0, &0u64.to_be_bytes())], None))],
            &[],
        ))
        .await
        .unwrap();
    let wins = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, wins) = (store.clone(), wins.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let cur = store.read_mutable(s, 0, 0, 8).await.unwrap();
                let n = u64::from_be_bytes(cur.as_ref().try_into().unwrap());
                let r = store
                    .read_test_write(rtw(
                        s,
                        we("a"),
                        vec![(0, tw(&[(0, &cur)], &[(0, &(n + 1).to_be_bytes())], None))],
                        &[],
                    ))
                    .await
                    .unwrap();
                if r.success {
                    wins.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = store.read_mutable(s, 0, 0, 8).await.unwrap();
    let n = u64::from_be_bytes(end.as_ref().try_into().unwrap());
    assert_eq!(n, wins.load(Ordering::SeqCst));
    assert!(n > 0);
}

// --- Crash durability ----------------------------------------------------------------

/// Set in the child process of [`a_crash_leaves_only_whole_shares`] to the store
/// directory it must write to until it is killed.
const CRASH_CHILD_ENV: &str = "SWAMPGATE_STORE_CRASH_CHILD";
/// The test's full name in the `it` binary, as the child re-runs it.
const CRASH_TEST: &str = "store::a_crash_leaves_only_whole_shares";
const IMM_TAG: u8 = 0xa1;
const MUT_TAG: u8 = 0xb2;
const MUT_SLOTS: u32 = 4;
const MUT_SHARES: ShareNum = 3;

fn crash_si(tag: u8, k: u32) -> StorageIndex {
    let mut b = [0x33u8; 16];
    b[0] = tag;
    b[1..5].copy_from_slice(&k.to_be_bytes());
    StorageIndex(b)
}

fn crash_imm_data(k: u32, sh: ShareNum) -> Vec<u8> {
    let len = 20_000 + (k as usize * 7919 + sh as usize * 131) % 100_000;
    pattern(((k as u64) << 16) | sh as u64, len)
}

fn crash_mut_data(slot: u32, v: u64, sh: ShareNum) -> Vec<u8> {
    let len = 500 + ((v * 37 + sh as u64 * 11) % 3000) as usize;
    let mut d = v.to_be_bytes().to_vec();
    d.extend(pattern((slot as u64) << 40 | v << 8 | sh as u64, len));
    d
}

/// The child: uploads immutable shares in parallel (each left unfinished for a
/// moment before its last chunk) and rewrites mutable slots, printing a line for
/// every acknowledged completion, until the parent kills it.
fn crash_child(root: &Path) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = StoreConfig::new(root, nodeid());
        c.clock = Clock::from_fn(|| T0);
        let store = Store::open(c).unwrap();
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (store, next) = (store.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst) as u32;
                    let s = crash_si(IMM_TAG, k);
                    let shares: Vec<ShareNum> = (0..3).collect();
                    let size = crash_imm_data(k, 0).len() as u64;
                    // All shares of one file have one size here; the data differs.
                    let r = store
                        .allocate_buckets(alloc_req(s, &shares, size, "u", "l"))
                        .await
                        .unwrap();
                    assert_eq!(r.allocated.len(), 3);
                    for &sh in &shares {
                        let mut data = crash_imm_data(k, sh);
                        data.resize(size as usize, sh as u8);
                        let chunks: Vec<_> = data.chunks(16 * 1024).collect();
                        for (i, c) in chunks.iter().enumerate() {
                            if i + 1 == chunks.len() {
                                tokio::task::yield_now().await;
                            }
                            let p = store
                                .write_immutable(s, sh, &secret("u"), (i * 16 * 1024) as u64, b(c))
                                .await
                                .unwrap();
                            if p.complete() {
                                println!("IMM {k} {sh}");
                            }
                        }
                    }
                    store.add_lease(s, lease("crash")).await.unwrap();
                    println!("LEASE {k}");
                }
            }));
        }
        for slot in 0..MUT_SLOTS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let s = crash_si(MUT_TAG, slot);
                for v in 1u64.. {
                    let prev: Vec<u8> = if v == 1 {
                        Vec::new()
                    } else {
                        (v - 1).to_be_bytes().to_vec()
                    };
                    let vectors = (0..MUT_SHARES)
                        .map(|sh| {
                            let d = crash_mut_data(slot, v, sh);
                            (sh, tw(&[(0, &prev)], &[(0, &d)], Some(d.len() as u64)))
                        })
                        .collect();
                    let r = store
                        .read_test_write(rtw(s, we("crash"), vectors, &[]))
                        .await
                        .unwrap();
                    assert!(r.success);
                    println!("MUT {slot} {v}");
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        panic!("crash child was never killed");
    });
    unreachable!()
}

#[test]
fn a_crash_leaves_only_whole_shares() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    if let Some(root) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&root));
    }
    let env = Env::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, env.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut imm_acked: Vec<(u32, ShareNum)> = Vec::new();
    let mut leased: Vec<u32> = Vec::new();
    let mut mut_acked: BTreeMap<u32, u64> = BTreeMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while imm_acked.len() < 60 || mut_acked.values().sum::<u64>() < 40 {
        assert!(std::time::Instant::now() < deadline, "child too slow");
        let line = lines.next().expect("child exited early").unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["IMM", k, sh] => imm_acked.push((k.parse().unwrap(), sh.parse().unwrap())),
            ["LEASE", k] => leased.push(k.parse().unwrap()),
            ["MUT", slot, v] => {
                mut_acked.insert(slot.parse().unwrap(), v.parse().unwrap());
            }
            _ => {}
        }
    }
    // SIGKILL, mid-flight.
    child.kill().unwrap();
    child.wait().unwrap();

    let store = env.open();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Nothing unfinished survives, and no journal is left over.
        assert_eq!(
            walk(&env.root().join("shares/incoming")),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            walk(&env.root().join("mutation-journal")),
            Vec::<PathBuf>::new()
        );

        // Every visible immutable share is whole; every acknowledged one is visible.
        let mut visible = BTreeSet::new();
        for prefix in std::fs::read_dir(env.root().join("shares")).unwrap() {
            let prefix = prefix.unwrap().path();
            if prefix.ends_with("incoming") {
                continue;
            }
            for bucket in std::fs::read_dir(&prefix).unwrap() {
                let name = bucket.unwrap().file_name();
                let s = StorageIndex::from_base32(name.to_str().unwrap()).unwrap();
                let k = u32::from_be_bytes(s.0[1..5].try_into().unwrap());
                if s.0[0] != IMM_TAG {
                    continue;
                }
                for sh in store.list_immutable_shares(s).await.unwrap() {
                    let mut want = crash_imm_data(k, sh);
                    want.resize(crash_imm_data(k, 0).len(), sh as u8);
                    let got = store.read_immutable(s, sh, 0, u64::MAX).await.unwrap();
                    assert!(got == want, "share {k}/{sh} is not whole");
                    let leases = leases_on_disk(&env.share_file(&s, sh));
                    assert_eq!(leases[0], (0, renew_hash("l"), (T0 + LEASE_SECS) as u32));
                    visible.insert((k, sh));
                }
            }
        }
        for ack in &imm_acked {
            assert!(visible.contains(ack), "acknowledged share {ack:?} lost");
        }
        for k in &leased {
            for sh in 0..3 {
                let leases = leases_on_disk(&env.share_file(&crash_si(IMM_TAG, *k), sh));
                assert!(leases.iter().any(|l| l.1 == renew_hash("crash")));
            }
        }

        // Each mutable slot holds one version in all its shares: the last one
        // acknowledged, or the one in flight when the child died.
        for slot in 0..MUT_SLOTS {
            let s = crash_si(MUT_TAG, slot);
            let acked = mut_acked.get(&slot).copied().unwrap_or(0);
            let all = store
                .slot_readv(
                    s,
                    vec![],
                    vec![ReadVector {
                        offset: 0,
                        size: u64::MAX,
                    }],
                )
                .await
                .unwrap();
            if acked == 0 && all.is_empty() {
                continue;
            }
            assert_eq!(all.len(), MUT_SHARES as usize, "slot {slot}");
            let v = u64::from_be_bytes(all[&0][0][..8].try_into().unwrap());
            assert!(v == acked || v == acked + 1, "slot {slot}: {v} vs {acked}");
            for (sh, datas) in &all {
                assert!(
                    datas[0] == crash_mut_data(slot, v, *sh),
                    "slot {slot} share {sh}"
                );
            }
            // The write enabler and leases survived.
            assert_eq!(
                store
                    .read_test_write(rtw(s, we("other"), vec![], &[]))
                    .await,
                Err(StorageError::BadWriteEnabler(format!(
                    "The write enabler was recorded by nodeid '{}'.",
                    nodeid()
                )))
            );
            let leases = leases_on_disk(&env.share_file(&s, 0));
            assert_eq!(
                leases,
                vec![(1, renew_hash("crash"), (T0 + LEASE_SECS) as u32)]
            );
            let next = crash_mut_data(slot, v + 1, 0);
            let r = store
                .read_test_write(rtw(
                    s,
                    we("crash"),
                    vec![(0, tw(&[(0, &v.to_be_bytes())], &[(0, &next)], None))],
                    &[],
                ))
                .await
                .unwrap();
            assert!(r.success);
        }
    });
}

// --- Differential test against Tahoe's own StorageServer ---------------------------

/// A scripted sequence of seam operations, as JSON both sides understand (see
/// `tests/interop/store_diff.py`). Secrets are named by tags; data is hex.
#[derive(Default)]
struct Script {
    ops: Vec<serde_json::Value>,
    t: u64,
}

impl Script {
    fn at(&mut self, t: u64) -> &mut Self {
        assert!(t >= self.t, "time runs forward");
        self.t = t;
        self
    }

    fn op(&mut self, op: &str, s: StorageIndex, mut fields: serde_json::Value) -> &mut Self {
        fields["op"] = op.into();
        fields["si"] = hex::encode(s.0).into();
        fields["t"] = self.t.into();
        self.ops.push(fields);
        self
    }
}

/// Test/write vectors as JSON: `{sh: {test: [[off, hex]], write: [[off, hex]], new_length}}`.
fn jtw(
    test: &[(u64, &[u8])],
    write: &[(u64, &[u8])],
    new_length: Option<u64>,
) -> serde_json::Value {
    let pairs = |v: &[(u64, &[u8])]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|(o, d)| serde_json::json!([o, hex::encode(d)]))
            .collect()
    };
    serde_json::json!({"test": pairs(test), "write": pairs(write), "new_length": new_length})
}

/// The scripted operations: every rule the seam exposes, one operation a line.
#[rustfmt::skip]
fn diff_script() -> Script {
    use serde_json::json;
    let (a, b_, c, m, n, d) = (si(0xa0, 0), si(0xb0, 0), si(0xc0, 0), si(0xd0, 0), si(0xe0, 0), si(0xf0, 0));
    let we1 = hex::encode(secret("we-1").0);
    let we2 = hex::encode(secret("we-2").0);
    let h = |d: &[u8]| hex::encode(d);
    let mut s = Script::default();
    // Immutable uploads: progress, identical rewrites, conflicts, size, secrets.
    s.at(1_000)
        .op("allocate", a, json!({"shares": [0, 1, 2], "size": 20, "upload": "u1", "lease": "l1"}))
        .op("write", a, json!({"sh": 0, "upload": "u1", "offset": 0, "data": h(b"0123456789")}))
        .op("write", a, json!({"sh": 0, "upload": "u1", "offset": 5, "data": h(b"56789abcde")}))
        .op("write", a, json!({"sh": 0, "upload": "u1", "offset": 8, "data": h(b"XX")}))
        .op("write", a, json!({"sh": 0, "upload": "u1", "offset": 15, "data": h(b"0123456789")}))
        .op("write", a, json!({"sh": 0, "upload": "u2", "offset": 15, "data": h(b"fghij")}))
        .op("write", a, json!({"sh": 0, "upload": "u1", "offset": 15, "data": h(b"fghij")}))
        .op("write", a, json!({"sh": 0, "upload": "u1", "offset": 0, "data": h(b"0")}))
        .op("write", c, json!({"sh": 0, "upload": "u1", "offset": 0, "data": h(b"0")}));
    // Re-allocation, leases on existing shares, close with holes, abort.
    s.at(2_000)
        .op("allocate", a, json!({"shares": [0, 1, 3], "size": 20, "upload": "u2", "lease": "l2"}))
        .op("allocate", a, json!({"shares": [1], "size": 20, "upload": "u1", "lease": "l1"}))
        .op("write", a, json!({"sh": 1, "upload": "u1", "offset": 3, "data": h(b"abc")}))
        .op("close", a, json!({"sh": 1, "upload": "u2"}))
        .op("close", a, json!({"sh": 1, "upload": "u1"}))
        .op("close", a, json!({"sh": 1, "upload": "u1"}))
        .op("close", a, json!({"sh": 9, "upload": "u1"}))
        .op("abort", a, json!({"sh": 2, "upload": "u2"}))
        .op("abort", a, json!({"sh": 2, "upload": "u1"}))
        .op("abort", a, json!({"sh": 2, "upload": "u1"}))
        .op("abort", a, json!({"sh": 0, "upload": "u1"}))
        .op("write", a, json!({"sh": 3, "upload": "u2", "offset": 0, "data": h(&[b'x'; 20])}))
        .op("list_immutable", a, json!({}))
        .op("list_immutable", c, json!({}))
        .op("read_immutable", a, json!({"sh": 0, "offset": 0, "length": 100}))
        .op("read_immutable", a, json!({"sh": 0, "offset": 15, "length": 3}))
        .op("read_immutable", a, json!({"sh": 0, "offset": 20, "length": 3}))
        .op("read_immutable", a, json!({"sh": 1, "offset": 0, "length": 20}))
        .op("read_immutable", a, json!({"sh": 2, "offset": 0, "length": 20}))
        .op("immutable_length", a, json!({"sh": 1}))
        .op("immutable_length", a, json!({"sh": 2}))
        .op("allocate", b_, json!({"shares": [0], "size": 1u64 << 62, "upload": "u1", "lease": "l1"}));
    // add_lease adds, then renews; corruption reports.
    s.at(3_000)
        .op("add_lease", a, json!({"lease": "l3"}))
        .op("add_lease", c, json!({"lease": "l3"}));
    s.at(4_000)
        .op("add_lease", a, json!({"lease": "l1"}))
        .op("allocate", a, json!({"shares": [4], "size": 5, "upload": "u3", "lease": "l2"}))
        .op("advise_corrupt", a, json!({"sh": 0, "type": "immutable", "reason": "bad hash"}))
        .op("advise_corrupt", a, json!({"sh": 9, "type": "immutable", "reason": "bad hash"}));
    // Mutable slots: creation, write enablers, tests, reads before writes.
    let readv = json!([[0, 5], [3, 100]]);
    s.at(5_000)
        .op("rtw", m, json!({"we": we1, "lease": "m1", "readv": readv, "vectors": {
            "0": jtw(&[(0, b"")], &[(0, b"hello world")], None),
            "1": jtw(&[], &[(0, b"second share"), (20, b"hole")], None)}}))
        .op("rtw", m, json!({"we": we2, "lease": "m1", "readv": readv, "vectors": {
            "0": jtw(&[], &[(0, b"x")], None)}}))
        .op("rtw", m, json!({"we": we2, "lease": "m1", "readv": readv, "vectors": {}}))
        .op("rtw", m, json!({"we": we1, "lease": "m1", "readv": readv, "vectors": {
            "0": jtw(&[(0, b"hello")], &[(0, b"HELLO")], None),
            "1": jtw(&[(0, b"nope")], &[(0, b"NOPE")], None)}}))
        .op("rtw", m, json!({"we": we1, "lease": "m1", "readv": readv, "vectors": {
            "0": jtw(&[(6, b"world!")], &[(0, b"HELLO")], None)}}))
        // Holes, truncation, larger new_length ignored, creation without writes.
        .op("rtw", m, json!({"we": we1, "lease": "m1", "readv": [], "vectors": {
            "0": jtw(&[(6, b"world"), (11, b"")], &[(30, b"far"), (0, b"H")], Some(1000)),
            "1": jtw(&[], &[], Some(6)),
            "2": jtw(&[], &[], None),
            "5": jtw(&[], &[], Some(0))}}));
    // Six leases fill the four slots and two extra; growing moves the extras.
    s.at(6_000);
    for i in 0..6 {
        s.op("rtw", m, json!({"we": we1, "lease": format!("ml{i}"), "readv": [], "vectors": {
            "0": jtw(&[], &[], None)}}));
    }
    s.op("rtw", m, json!({"we": we1, "lease": "m1", "readv": readv, "vectors": {
            "0": jtw(&[], &[(40, b"grown past the extra leases")], None),
            "1": jtw(&[], &[(2, b"")], Some(0))}}))
        .op("list_mutable", m, json!({}))
        .op("read_mutable", m, json!({"sh": 0, "offset": 0, "length": 1000}))
        .op("read_mutable", m, json!({"sh": 0, "offset": 60, "length": 10}))
        .op("read_mutable", m, json!({"sh": 1, "offset": 0, "length": 10}))
        .op("mutable_length", m, json!({"sh": 0}))
        .op("mutable_length", m, json!({"sh": 2}))
        .op("mutable_length", m, json!({"sh": 1}))
        .op("slot_readv", m, json!({"shares": [], "readv": [[0, 3], [2, 100]]}))
        .op("slot_readv", m, json!({"shares": [2, 7], "readv": [[0, 3]]}))
        .op("slot_readv", m, json!({"shares": [], "readv": []}))
        .op("slot_readv", c, json!({"shares": [], "readv": [[0, 3]]}))
        .op("add_lease", m, json!({"lease": "x"}))
        .op("advise_corrupt", m, json!({"sh": 2, "type": "mutable", "reason": "also bad"}));
    // The other kind of container.
    s.at(7_000)
        .op("rtw", a, json!({"we": we1, "lease": "m1", "readv": readv, "vectors": {}}))
        .op("read_mutable", a, json!({"sh": 0, "offset": 0, "length": 1}))
        .op("mutable_length", a, json!({"sh": 0}))
        .op("list_mutable", a, json!({}))
        .op("slot_readv", a, json!({"shares": [], "readv": [[0, 3]]}))
        .op("allocate", m, json!({"shares": [3], "size": 5, "upload": "u1", "lease": "l1"}))
        .op("read_immutable", m, json!({"sh": 0, "offset": 0, "length": 1}))
        .op("immutable_length", m, json!({"sh": 0}))
        .op("list_immutable", m, json!({}));
    // A short write enabler is recorded padded and never matches again.
    s.op("rtw", n, json!({"we": h(b"short"), "lease": "n", "readv": [[0, 9]], "vectors": {
            "0": jtw(&[], &[(0, b"first")], None)}}))
        .op("rtw", n, json!({"we": h(b"short"), "lease": "n", "readv": [[0, 9]], "vectors": {}}))
        // Deleting every share removes the slot.
        .op("rtw", m, json!({"we": we1, "lease": "m1", "readv": readv, "vectors": {
            "0": jtw(&[], &[], Some(0)),
            "2": jtw(&[], &[], Some(0))}}))
        .op("list_mutable", m, json!({}))
        .op("slot_readv", m, json!({"shares": [], "readv": [[0, 3]]}));
    // An upload idle for 30 minutes is aborted; one written to in time is not.
    s.at(8_000)
        .op("allocate", d, json!({"shares": [0, 1], "size": 4, "upload": "u1", "lease": "l1"}))
        .op("write", d, json!({"sh": 0, "upload": "u1", "offset": 0, "data": h(b"ab")}));
    s.at(8_000 + 1_000)
        .op("write", d, json!({"sh": 1, "upload": "u1", "offset": 0, "data": h(b"ab")}));
    s.at(8_000 + 1_800)
        .op("write", d, json!({"sh": 0, "upload": "u1", "offset": 2, "data": h(b"cd")}))
        .op("write", d, json!({"sh": 1, "upload": "u1", "offset": 2, "data": h(b"cd")}))
        .op("list_immutable", d, json!({}));
    s
}

fn jreadv(data: &BTreeMap<ShareNum, Vec<Bytes>>) -> serde_json::Value {
    data.iter()
        .map(|(sh, v)| {
            let v: Vec<String> = v.iter().map(hex::encode).collect();
            (sh.to_string(), serde_json::json!(v))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// One scripted operation against the store, as `{"ok": …}` or `{"err": …}`.
async fn run_op(store: &Store, op: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    let s = StorageIndex(
        hex::decode(op["si"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let u = |k: &str| op[k].as_u64().unwrap();
    let sh = || u("sh") as ShareNum;
    let text = |k: &str| op[k].as_str().unwrap().to_owned();
    let bytes = |v: &Value| Bytes::from(hex::decode(v.as_str().unwrap()).unwrap());
    let readv = |v: &Value| -> Vec<ReadVector> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| ReadVector {
                offset: r[0].as_u64().unwrap(),
                size: r[1].as_u64().unwrap(),
            })
            .collect()
    };
    let r: Result<Value, StorageError> = match op["op"].as_str().unwrap() {
        "allocate" => store
            .allocate_buckets(AllocateRequest {
                storage_index: s,
                lease: lease(&text("lease")),
                upload_secret: secret(&text("upload")),
                share_numbers: op["shares"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_u64().unwrap() as ShareNum)
                    .collect(),
                allocated_size: u("size"),
            })
            .await
            .map(|r| json!({"already_have": r.already_have, "allocated": r.allocated})),
        "write" => store
            .write_immutable(
                s,
                sh(),
                &secret(&text("upload")),
                u("offset"),
                bytes(&op["data"]),
            )
            .await
            .map(|p| {
                let req: Vec<_> = p.required.iter().map(|r| json!([r.begin, r.end])).collect();
                json!({ "required": req })
            }),
        "close" => store
            .close_immutable(s, sh(), &secret(&text("upload")))
            .await
            .map(|()| Value::Null),
        "abort" => store
            .abort_immutable(s, sh(), &secret(&text("upload")))
            .await
            .map(|()| Value::Null),
        "list_immutable" => store.list_immutable_shares(s).await.map(|v| json!(v)),
        "read_immutable" => store
            .read_immutable(s, sh(), u("offset"), u("length"))
            .await
            .map(|d| json!(hex::encode(d))),
        "immutable_length" => store
            .immutable_share_length(s, sh())
            .await
            .map(|n| json!(n)),
        "add_lease" => store
            .add_lease(s, lease(&text("lease")))
            .await
            .map(|()| Value::Null),
        "advise_corrupt" => {
            let ty = match op["type"].as_str().unwrap() {
                "immutable" => ShareType::Immutable,
                _ => ShareType::Mutable,
            };
            store
                .advise_corrupt_share(ty, s, sh(), text("reason"))
                .await
                .map(|()| Value::Null)
        }
        "rtw" => {
            let pairs = |v: &Value| -> Vec<(u64, Bytes)> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_u64().unwrap(), bytes(&p[1])))
                    .collect()
            };
            let vectors = op["vectors"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let tw = TestWriteVectors {
                        test: pairs(&v["test"])
                            .into_iter()
                            .map(|(offset, specimen)| TestVector {
                                offset,
                                size: specimen.len() as u64,
                                specimen,
                            })
                            .collect(),
                        write: pairs(&v["write"])
                            .into_iter()
                            .map(|(offset, data)| WriteVector { offset, data })
                            .collect(),
                        new_length: v["new_length"].as_u64(),
                    };
                    (k.parse().unwrap(), tw)
                })
                .collect();
            let secrets = MutableSecrets {
                write_enabler: Secret(bytes(&op["we"]).to_vec()),
                lease: lease(&text("lease")),
            };
            store
                .read_test_write(ReadTestWriteRequest {
                    storage_index: s,
                    secrets,
                    test_write_vectors: vectors,
                    read_vector: readv(&op["readv"]),
                })
                .await
                .map(|r| json!({"success": r.success, "data": jreadv(&r.data)}))
        }
        "list_mutable" => store.list_mutable_shares(s).await.map(|v| json!(v)),
        "read_mutable" => store
            .read_mutable(s, sh(), u("offset"), u("length"))
            .await
            .map(|d| json!(hex::encode(d))),
        "mutable_length" => store.mutable_share_length(s, sh()).await.map(|n| json!(n)),
        "slot_readv" => {
            let shares = op["shares"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap() as ShareNum)
                .collect();
            store
                .slot_readv(s, shares, readv(&op["readv"]))
                .await
                .map(|d| jreadv(&d))
        }
        other => panic!("unknown operation {other}"),
    };
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(StorageError::BadWriteEnabler(msg)) => json!({"err": "BadWriteEnabler", "msg": msg}),
        // The variant names are the Python side's names for the same outcomes.
        Err(e) => json!({ "err": format!("{:?}", e.kind()) }),
    }
}

/// Every finished share file (hex, by path) and every corruption report, as
/// store_diff.py dumps Tahoe's storage directory.
fn dump_store(root: &Path) -> serde_json::Value {
    let mut shares = serde_json::Map::new();
    let mut reports = Vec::new();
    for rel in walk(root) {
        let path = root.join(&rel);
        if !path.is_file() {
            continue;
        }
        if rel.starts_with("shares") && !rel.starts_with("shares/incoming") {
            let content = std::fs::read(&path).unwrap();
            shares.insert(
                rel.to_str().unwrap().to_owned(),
                hex::encode(content).into(),
            );
        } else if rel.starts_with("corruption-advisories") {
            reports.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    reports.sort();
    serde_json::json!({"shares": shares, "reports": reports})
}

#[test]
fn same_results_and_same_bytes_as_tahoe_storage_server() {
    let script = diff_script();
    let work = tempfile::tempdir().unwrap();
    let ops_path = work.path().join("ops.json");
    std::fs::write(&ops_path, serde_json::to_vec(&script.ops).unwrap()).unwrap();
    let tahoe_dir = work.path().join("tahoe-storage");
    let out = crate::kit::run_python_script(
        "store_diff.py",
        [ops_path.as_os_str(), tahoe_dir.as_os_str()],
        work.path(),
    );
    let tahoe: serde_json::Value = serde_json::from_str(&out).unwrap();

    let env = Env::new();
    let store = env.open();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ours: Vec<serde_json::Value> = rt.block_on(async {
        let mut out = Vec::new();
        for op in &script.ops {
            env.set_time(op["t"].as_u64().unwrap());
            out.push(run_op(&store, op).await);
        }
        out
    });
    let theirs = tahoe["results"].as_array().unwrap();
    assert_eq!(theirs.len(), script.ops.len());
    for (i, op) in script.ops.iter().enumerate() {
        assert_eq!(ours[i], theirs[i], "operation {i}: {op}");
    }
    // Byte for byte the same share files: containers, leases, write enablers.
    let mine = dump_store(&env.root());
    assert_eq!(
        mine["shares"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        tahoe["files"]["shares"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    for (path, content) in tahoe["files"]["shares"].as_object().unwrap() {
        assert_eq!(&mine["shares"][path], content, "{path}");
    }
    assert_eq!(mine["reports"], tahoe["files"]["reports"]);
    assert_eq!(mine["reports"].as_array().unwrap().len(), 2);
}

/// Tahoe creates a mutable share under the test (offset 0, size 1, specimen b""):
/// it passes only while the share is absent or empty. The size is not implied by
/// the specimen.
#[tokio::test]
async fn create_only_test_vector_fails_once_the_share_has_data() {
    let env = Env::new();
    let store = env.open();
    let create_only = |data: &'static [u8]| TestWriteVectors {
        test: vec![TestVector {
            offset: 0,
            size: 1,
            specimen: Bytes::new(),
        }],
        write: vec![WriteVector {
            offset: 0,
            data: b(data),
        }],
        new_length: None,
    };
    let r = store
        .read_test_write(rtw(
            si(90, 0),
            we("w"),
            vec![(0, create_only(b"first"))],
            &[(0, 5)],
        ))
        .await
        .unwrap();
    assert!(r.success, "absent share: the test passes");
    let r = store
        .read_test_write(rtw(
            si(90, 0),
            we("w"),
            vec![(0, create_only(b"second"))],
            &[(0, 6)],
        ))
        .await
        .unwrap();
    assert!(!r.success, "the share holds data now: the test fails");
    assert_eq!(r.data, datav(&[(0, &[b"first"])]));
}
