//! Crash safety: swampgate SIGKILLed at random points of a write-heavy workload, 200
//! times, restarts every time with the same URLs and has lost nothing it had
//! acknowledged: every immutable share whose last write was answered reads back
//! whole, every mutable slot holds its last acknowledged version (or the one in
//! flight when it was killed), the persisted announcements hold the last
//! acknowledged publication (or the one in flight), and what was never completed
//! stays invisible. The workload runs as an account: after every restart the
//! account's charges equal the shares the store holds, each once at its size (a
//! completed upload's charge is never lost, an aborted one never charged).
//!
//! `SWAMPGATE_CRASH_KILLS` sets the number of kills (default 200).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use rand::Rng;
use swampgate::foolscap::broker::Canary;
use swampgate::foolscap::{RemoteRef, Tub, TubConfig, Value};
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::gbs::nurl::Nurl;
use swampgate::identity::Identity;
use swampgate::introducer::SignedAnnouncement;
use swampgate::storage::*;

use crate::kit::storage::{data, lease};
use crate::kit::*;

fn start(dir: &Path) -> (Process, String, String, String) {
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "sg.toml", "--state-dir", "st"])
        .current_dir(dir);
    let mut p = Process::spawn("swampgate", cmd, &dir.join("logs"));
    let furl = last_word(&p.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let nurl = last_word(&p.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    let intro = last_word(&p.wait_for_line("introducer furl ", STARTUP_TIMEOUT));
    (p, furl, nurl, intro)
}

/// The key the workload publishes its announcements with.
fn publisher() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

fn announcement(seqnum: i64) -> SignedAnnouncement {
    let mut m = serde_json::Map::new();
    m.insert("version".into(), 0.into());
    m.insert("nickname".into(), "crash-test".into());
    m.insert("service-name".into(), "storage".into());
    m.insert("seqnum".into(), seqnum.into());
    SignedAnnouncement::sign(&m, &publisher())
}

/// The seqnum of the workload's announcement in the persisted file, if any.
fn saved_seqnum(dir: &Path) -> Option<i64> {
    let entries =
        swampgate::introducer::persist::load(&dir.join("st/introducer/announcements.json"))
            .unwrap();
    let ours = announcement(0).key;
    entries
        .into_iter()
        .find(|(_, s)| s.key == ours)
        .map(|(_, s)| {
            s.verify()
                .expect("a saved announcement verifies")
                .seqnum()
                .unwrap()
        })
}

/// What the workload was told, so far, across all runs.
#[derive(Clone, Default)]
struct Acked {
    /// Immutable shares completed (their last write answered).
    immutable: Vec<(StorageIndex, Bytes)>,
    /// Uploads started but not acknowledged as complete; with the share if its
    /// final write was in flight (then it may have completed).
    unfinished: Vec<(StorageIndex, Option<Bytes>)>,
    /// Per mutable slot: the last acknowledged version, and the one in flight.
    mutable: BTreeMap<u8, (Option<u32>, Option<u32>)>,
    /// The announcement's last acknowledged seqnum, and the one in flight.
    announced: (Option<i64>, Option<i64>),
}

fn slot(n: u8) -> StorageIndex {
    StorageIndex([0xc0 | n; 16])
}

fn version_bytes(v: u32) -> Bytes {
    let mut b = v.to_be_bytes().to_vec();
    b.extend(data(2000, v as u8).iter());
    b.into()
}

fn rtw(n: u8, v: u32) -> ReadTestWriteRequest {
    ReadTestWriteRequest {
        storage_index: slot(n),
        secrets: MutableSecrets {
            write_enabler: Secret(vec![b'W'; 32]),
            lease: lease(b'M'),
        },
        test_write_vectors: [(
            0,
            TestWriteVectors {
                test: vec![],
                write: vec![WriteVector {
                    offset: 0,
                    data: version_bytes(v),
                }],
                new_length: None,
            },
        )]
        .into_iter()
        .collect(),
        read_vector: vec![],
    }
}

/// Upload shares and rewrite slots until killed (the future is dropped, or its
/// calls fail); records each acknowledgement as it arrives.
async fn workload(api: &GbsClient, intro: &RemoteRef, acked: &std::sync::Mutex<Acked>, seed: u64) {
    let mut rng = rand::thread_rng();
    let mut k = 0u64;
    loop {
        k += 1;
        let si = StorageIndex(rng.gen());
        let len = rng.gen_range(1_000..200_000);
        let share = data(len, (seed + k) as u8);
        let up = Secret(vec![7; 32]);
        let alloc = AllocateRequest {
            storage_index: si,
            lease: lease(1),
            upload_secret: up.clone(),
            share_numbers: [0].into_iter().collect(),
            allocated_size: len as u64,
        };
        if api.allocate_buckets(alloc).await.is_err() {
            return;
        }
        acked.lock().unwrap().unfinished.push((si, None));
        let half = len / 2;
        if api
            .write_immutable(si, 0, &up, 0, share.slice(..half))
            .await
            .is_err()
        {
            return;
        }
        if let Some(u) = acked.lock().unwrap().unfinished.last_mut() {
            u.1 = Some(share.clone());
        }
        match api
            .write_immutable(si, 0, &up, half as u64, share.slice(half..))
            .await
        {
            Ok(p) if p.complete() => {
                let mut a = acked.lock().unwrap();
                a.unfinished.retain(|(s, _)| *s != si);
                a.immutable.push((si, share));
            }
            _ => return,
        }
        let n = rng.gen_range(0..4u8);
        let v = {
            let mut a = acked.lock().unwrap();
            let e = a.mutable.entry(n).or_default();
            let v = e.0.map_or(1, |v| v + 1);
            e.1 = Some(v);
            v
        };
        match api.read_test_write(rtw(n, v)).await {
            Ok(r) if r.success => {
                let mut a = acked.lock().unwrap();
                a.mutable.insert(n, (Some(v), None));
            }
            _ => return,
        }
        let seqnum = {
            let mut a = acked.lock().unwrap();
            let s = a.announced.0.map_or(1, |s| s + 1);
            a.announced.1 = Some(s);
            s
        };
        let canary = Value::Local(std::sync::Arc::new(Canary));
        match intro
            .call("publish_v2", &[announcement(seqnum).to_value(), canary])
            .await
        {
            Ok(_) => acked.lock().unwrap().announced = (Some(seqnum), None),
            Err(_) => return,
        }
    }
}

/// The account's charges equal the store's shares (count and sizes), once the
/// startup reconciliation has settled what the killed run left pending.
fn charges_match_the_store(dir: &Path, round: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let files = share_files(&dir.join("st/shares/shares"));
        let mut cmd = swampgate_command();
        cmd.args([
            "account",
            "list",
            "--json",
            "--config",
            "sg.toml",
            "--state-dir",
            "st",
        ])
        .current_dir(dir);
        let list: serde_json::Value =
            serde_json::from_str(&run_ok("swampgate account", cmd, dir, CLI_TIMEOUT)).unwrap();
        let (shares, stored) = (&list[0]["shares"], &list[0]["bytes_stored"]);
        let want = (files.len() as u64, files.values().sum::<u64>());
        if (shares.as_u64(), stored.as_u64()) == (Some(want.0), Some(want.1)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "round {round}: the account is charged {shares} shares, {stored} bytes; \
             the store holds {} shares, {} bytes",
            want.0,
            want.1
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn verify(api: &GbsClient, acked: &Acked, from: usize, dir: &Path) {
    let (done, in_flight) = acked.announced;
    let saved = saved_seqnum(dir);
    assert!(
        saved == done || (saved.is_some() && saved == in_flight),
        "announcement: saved seqnum {saved:?}, acknowledged {done:?}, in flight {in_flight:?}"
    );
    for (si, share) in &acked.immutable[from..] {
        let got = api
            .read_immutable(*si, 0, 0, share.len() as u64)
            .await
            .unwrap_or_else(|e| panic!("acknowledged share {si:?} lost: {e}"));
        assert_eq!(&got, share, "acknowledged share {si:?} changed");
    }
    for (si, maybe) in &acked.unfinished {
        let listed = api.list_immutable_shares(*si).await.unwrap();
        match maybe {
            // Never completed: never visible.
            None => assert!(listed.is_empty(), "an unfinished upload is visible"),
            // Completed unacknowledged, or not at all: whole or absent.
            Some(share) if !listed.is_empty() => {
                let got = api
                    .read_immutable(*si, 0, 0, share.len() as u64)
                    .await
                    .unwrap();
                assert_eq!(&got, share, "a share completed by a killed run is whole");
            }
            Some(_) => {}
        }
    }
    for (n, (done, in_flight)) in &acked.mutable {
        let got = api.read_mutable(slot(*n), 0, 0, 4).await;
        let got = match got {
            Ok(b) if b.len() == 4 => Some(u32::from_be_bytes(b[..4].try_into().unwrap())),
            _ => None,
        };
        let ok = got == *done || (got.is_some() && got == *in_flight);
        assert!(
            ok,
            "slot {n}: holds version {got:?}, acknowledged {done:?}, in flight {in_flight:?}"
        );
        if let Some(v) = got {
            let whole = api.read_mutable(slot(*n), 0, 0, 10_000).await.unwrap();
            assert_eq!(whole, version_bytes(v), "slot {n} version {v} is whole");
        }
    }
}

#[test]
fn killed_at_random_points_loses_nothing_acknowledged() {
    let kills: usize = std::env::var("SWAMPGATE_CRASH_KILLS")
        .ok()
        .map(|v| v.parse().expect("SWAMPGATE_CRASH_KILLS is a number"))
        .unwrap_or(200);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let port = free_port();
    std::fs::write(
        dir.join("sg.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\n[[link]]\nname = \"default\"\n\
             upstream = \"local:shares\"\n[introducer]\n"
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked = std::sync::Mutex::new(Acked::default());
    let (mut first, furl, nurl, _) = start(dir);
    let url_files = |dir: &Path| {
        (
            std::fs::read_to_string(dir.join("st/links/default.furl")).unwrap(),
            std::fs::read_to_string(dir.join("st/links/default.nurl")).unwrap(),
        )
    };
    let files = url_files(dir);
    // The workload runs as an account of the link.
    let mut cmd = swampgate_command();
    cmd.args([
        "account",
        "add",
        "crash",
        "--link",
        "default",
        "--config",
        "sg.toml",
        "--state-dir",
        "st",
    ])
    .current_dir(dir);
    let out = run_ok("swampgate account", cmd, dir, CLI_TIMEOUT);
    let account_nurl = last_word(
        out.lines()
            .find(|l| l.starts_with("account crash nurl "))
            .expect("the account's NURL"),
    );
    first.stop();
    let mut verified = 0;
    let mut rng = rand::thread_rng();
    for round in 0..=kills {
        let (mut p, f, n, intro) = start(dir);
        assert_eq!((&f, &n), (&furl, &nurl), "round {round}: URLs changed");
        assert_eq!(url_files(dir), files, "round {round}: URL files changed");
        assert_eq!(
            std::fs::read_to_string(dir.join("st/accounts/crash.nurl"))
                .unwrap()
                .trim(),
            account_nurl,
            "round {round}: the account's URL changed"
        );
        let parsed: Nurl = account_nurl.parse().unwrap();
        let api = GbsClient::new(&parsed, ClientConfig::default()).unwrap();
        let snapshot = acked.lock().unwrap().clone();
        rt.block_on(verify(&api, &snapshot, verified, dir));
        charges_match_the_store(dir, round);
        verified = acked.lock().unwrap().immutable.len();
        if round == kills {
            // The last start: verify everything once more, then stop cleanly.
            rt.block_on(verify(&api, &snapshot, 0, dir));
            assert!(p.stop().success(), "{}", p.log_tail());
            break;
        }
        let run_for = Duration::from_millis(rng.gen_range(20..400));
        rt.block_on(async {
            let tub = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
            let intro = tub
                .get_reference(&swampgate::foolscap::Furl::parse(&intro).unwrap())
                .await
                .expect("the introducer");
            let work = workload(&api, &intro, &acked, round as u64);
            let _ = tokio::time::timeout(run_for, work).await;
        });
        p.signal(libc::SIGKILL);
        p.wait_timeout(Duration::from_secs(10)).expect("killed");
    }
    let a = acked.lock().unwrap();
    eprintln!(
        "crash: {kills} kills; {} shares and {} slots acknowledged, {} uploads cut off",
        a.immutable.len(),
        a.mutable.len(),
        a.unfinished.len()
    );
    assert!(a.immutable.len() >= kills / 2, "the workload did write");
}
