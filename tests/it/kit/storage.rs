//! One scripted sequence of storage operations with Tahoe 1.20's outcomes asserted,
//! run through any [`StorageApi`] (in these tests: the GBS client, in front of
//! swampgate's server or of a real Tahoe node).

use std::collections::BTreeMap;

use bytes::Bytes;
use swampgate::storage::*;

pub fn si(seed: u8, n: u8) -> StorageIndex {
    let mut b = [0u8; 16];
    b[0] = seed;
    b[1] = n;
    b[15] = 0x5a;
    StorageIndex(b)
}

pub fn lease(n: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: Secret(vec![n; 32]),
        cancel: Secret(vec![n.wrapping_add(1); 32]),
    }
}

pub fn data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect::<Vec<u8>>()
        .into()
}

/// Size of the large share of [`exercise`]: bigger than one 64 KiB read, so reads
/// and length lookups take several steps.
pub const BIG: usize = 300_000;

/// Run every storage operation against `api`, asserting Tahoe 1.20's results.
/// `seed` keeps the storage indexes of different runs apart. The server must not hold
/// shares for those indexes.
pub async fn exercise(api: &dyn StorageApi, seed: u8) {
    let v = api.version().await.unwrap();
    assert!(v.maximum_immutable_share_size > BIG as u64);
    assert!(v.available_space > BIG as u64);
    assert!(!v.application_version.is_empty());

    immutable(api, seed).await;
    mutable(api, seed).await;
}

async fn immutable(api: &dyn StorageApi, seed: u8) {
    let s1 = si(seed, 1);
    let share = data(BIG, seed);
    let up = Secret(vec![9; 20]);
    let alloc = |shares: &[ShareNum], secret: &Secret| AllocateRequest {
        storage_index: s1,
        lease: lease(1),
        upload_secret: secret.clone(),
        share_numbers: shares.iter().copied().collect(),
        allocated_size: BIG as u64,
    };
    let r = api.allocate_buckets(alloc(&[0, 1, 5], &up)).await.unwrap();
    assert_eq!(r.allocated, [0, 1, 5].into_iter().collect());
    assert!(r.already_have.is_empty());
    // In progress under any secret: neither reported nor allocated again.
    let r = api
        .allocate_buckets(alloc(&[0, 6], &Secret(vec![8; 20])))
        .await
        .unwrap();
    assert_eq!(r.allocated, [6].into_iter().collect());
    assert!(r.already_have.is_empty());
    api.abort_immutable(s1, 6, &Secret(vec![8; 20]))
        .await
        .unwrap();

    // Chunked upload: a small first write, a gap, then the rest overlapping.
    let p = api
        .write_immutable(s1, 0, &up, 0, share.slice(..100))
        .await
        .unwrap();
    assert_eq!(
        p.required,
        vec![ByteRange {
            begin: 100,
            end: BIG as u64
        }]
    );
    let p = api
        .write_immutable(s1, 0, &up, 200_000, share.slice(200_000..250_000))
        .await
        .unwrap();
    assert_eq!(
        p.required,
        vec![
            ByteRange {
                begin: 100,
                end: 200_000
            },
            ByteRange {
                begin: 250_000,
                end: BIG as u64
            }
        ]
    );
    // Identical bytes again are fine.
    api.write_immutable(s1, 0, &up, 0, share.slice(..100))
        .await
        .unwrap();
    assert!(matches!(
        api.write_immutable(s1, 0, &up, 0, Bytes::from(vec![0xee; 100]))
            .await,
        Err(StorageError::ConflictingWrite(_))
    ));
    assert_eq!(
        api.write_immutable(s1, 0, &Secret(vec![1; 20]), 100, share.slice(100..200))
            .await,
        Err(StorageError::WrongUploadSecret)
    );
    let p = api
        .write_immutable(s1, 0, &up, 100, share.slice(100..))
        .await
        .unwrap();
    assert!(p.complete());
    // Completed: no more writes.
    assert!(api
        .write_immutable(s1, 0, &up, 0, share.slice(..10))
        .await
        .is_err());
    assert_eq!(
        api.list_immutable_shares(s1).await.unwrap(),
        [0].into_iter().collect()
    );
    assert!(api
        .list_immutable_shares(si(seed, 99))
        .await
        .unwrap()
        .is_empty());

    // Reads: inside, whole, across the end, at and past the end, empty.
    assert_eq!(
        api.read_immutable(s1, 0, 10, 20).await.unwrap(),
        share.slice(10..30)
    );
    assert_eq!(
        api.read_immutable(s1, 0, 0, BIG as u64).await.unwrap(),
        share
    );
    assert_eq!(
        api.read_immutable(s1, 0, BIG as u64 - 5, 100)
            .await
            .unwrap(),
        share.slice(BIG - 5..)
    );
    assert!(api
        .read_immutable(s1, 0, BIG as u64, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(api
        .read_immutable(s1, 0, 10 * BIG as u64, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(api.read_immutable(s1, 0, 5, 0).await.unwrap().is_empty());
    assert_eq!(api.immutable_share_length(s1, 0).await.unwrap(), BIG as u64);
    for (sh, s) in [(0, si(seed, 98)), (7, s1), (1, s1)] {
        // Unknown storage index, unknown share, upload in progress.
        assert!(
            matches!(
                api.read_immutable(s, sh, 0, 10).await,
                Err(StorageError::NotFound(_))
            ),
            "share {sh} of {s}"
        );
    }

    // Abort: wrong secret, in progress, again, completed, unknown.
    assert_eq!(
        api.abort_immutable(s1, 5, &Secret(vec![1; 20])).await,
        Err(StorageError::WrongUploadSecret)
    );
    api.abort_immutable(s1, 5, &up).await.unwrap();
    assert!(matches!(
        api.abort_immutable(s1, 5, &up).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        api.abort_immutable(s1, 0, &up).await,
        Err(StorageError::NotAllowed(_))
    ));
    assert!(matches!(
        api.abort_immutable(si(seed, 97), 0, &up).await,
        Err(StorageError::NotFound(_))
    ));

    // close() of an incomplete share: the holes read as zeros.
    api.write_immutable(s1, 1, &up, 0, share.slice(..10))
        .await
        .unwrap();
    api.close_immutable(s1, 1, &up).await.unwrap();
    let mut expect = share.slice(..10).to_vec();
    expect.resize(BIG, 0);
    assert_eq!(
        api.read_immutable(s1, 1, 0, BIG as u64).await.unwrap(),
        Bytes::from(expect)
    );

    // Allocating again reports what is there.
    let r = api.allocate_buckets(alloc(&[0, 1, 2], &up)).await.unwrap();
    assert_eq!(r.already_have, [0, 1].into_iter().collect());
    assert_eq!(r.allocated, [2].into_iter().collect());
    api.abort_immutable(s1, 2, &up).await.unwrap();

    // Leases and corruption advisories.
    api.add_lease(s1, lease(3)).await.unwrap();
    assert!(matches!(
        api.add_lease(si(seed, 96), lease(3)).await,
        Err(StorageError::NotFound(_))
    ));
    api.advise_corrupt_share(ShareType::Immutable, s1, 0, "bad hash".into())
        .await
        .unwrap();
    assert!(matches!(
        api.advise_corrupt_share(ShareType::Immutable, s1, 7, "bad hash".into())
            .await,
        Err(StorageError::NotFound(_))
    ));
}

async fn mutable(api: &dyn StorageApi, seed: u8) {
    let s3 = si(seed, 3);
    let secrets = MutableSecrets {
        write_enabler: Secret(vec![4; 32]),
        lease: lease(5),
    };
    let rtw =
        |tw: BTreeMap<ShareNum, TestWriteVectors>, rv: Vec<ReadVector>, s: &MutableSecrets| {
            ReadTestWriteRequest {
                storage_index: s3,
                secrets: s.clone(),
                test_write_vectors: tw,
                read_vector: rv,
            }
        };
    // Tahoe's "this share must be new" test: read 1 byte at 0, expect nothing.
    let create = |d: &'static [u8]| TestWriteVectors {
        test: vec![TestVector {
            offset: 0,
            size: 1,
            specimen: Bytes::new(),
        }],
        write: vec![WriteVector {
            offset: 0,
            data: Bytes::from_static(d),
        }],
        new_length: None,
    };
    let r = api
        .read_test_write(rtw(
            [(0, create(b"0123456789")), (1, create(b"abcdefghij"))].into(),
            vec![],
            &secrets,
        ))
        .await
        .unwrap();
    assert!(r.success);
    assert!(r.data.is_empty());
    // The same test now fails; reads happen anyway and cover every share.
    let r = api
        .read_test_write(rtw(
            [(0, create(b"zzz"))].into(),
            vec![ReadVector {
                offset: 8,
                size: 10,
            }],
            &secrets,
        ))
        .await
        .unwrap();
    assert!(!r.success);
    assert_eq!(
        r.data,
        [
            (0, vec![Bytes::from_static(b"89")]),
            (1, vec![Bytes::from_static(b"ij")])
        ]
        .into()
    );
    let bad = MutableSecrets {
        write_enabler: Secret(vec![5; 32]),
        lease: lease(5),
    };
    assert!(matches!(
        api.read_test_write(rtw(BTreeMap::new(), vec![], &bad))
            .await,
        Err(StorageError::BadWriteEnabler(_))
    ));
    assert_eq!(
        api.list_mutable_shares(s3).await.unwrap(),
        [0, 1].into_iter().collect()
    );
    assert!(api
        .list_mutable_shares(si(seed, 95))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        api.read_mutable(s3, 0, 2, 3).await.unwrap(),
        Bytes::from_static(b"234")
    );
    assert_eq!(
        api.read_mutable(s3, 0, 8, 100).await.unwrap(),
        Bytes::from_static(b"89")
    );
    assert!(api.read_mutable(s3, 0, 10, 5).await.unwrap().is_empty());
    assert!(api.read_mutable(s3, 0, 3, 0).await.unwrap().is_empty());
    assert_eq!(api.mutable_share_length(s3, 1).await.unwrap(), 10);
    // A write past the end leaves a hole of zeros; new_length truncates.
    let truncate = TestWriteVectors {
        test: vec![],
        write: vec![WriteVector {
            offset: 20,
            data: Bytes::from_static(b"Z"),
        }],
        new_length: Some(15),
    };
    assert!(
        api.read_test_write(rtw([(1, truncate)].into(), vec![], &secrets))
            .await
            .unwrap()
            .success
    );
    assert_eq!(
        api.read_mutable(s3, 1, 0, 100).await.unwrap(),
        Bytes::from_static(b"abcdefghij\0\0\0\0\0")
    );
    // new_length 0 deletes.
    let delete = TestWriteVectors {
        test: vec![],
        write: vec![],
        new_length: Some(0),
    };
    assert!(
        api.read_test_write(rtw([(0, delete)].into(), vec![], &secrets))
            .await
            .unwrap()
            .success
    );
    assert!(matches!(
        api.read_mutable(s3, 0, 0, 1).await,
        Err(StorageError::NotFound(_))
    ));
    let readv = api
        .slot_readv(s3, vec![], vec![ReadVector { offset: 0, size: 3 }])
        .await
        .unwrap();
    assert_eq!(readv, [(1, vec![Bytes::from_static(b"abc")])].into());
    api.advise_corrupt_share(ShareType::Mutable, s3, 1, "bad signature".into())
        .await
        .unwrap();
    assert!(matches!(
        api.advise_corrupt_share(ShareType::Mutable, s3, 0, "gone".into())
            .await,
        Err(StorageError::NotFound(_))
    ));
    api.add_lease(s3, lease(8)).await.unwrap();
}
