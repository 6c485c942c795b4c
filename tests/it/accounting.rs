//! Accounting with real Tahoe-LAFS 1.20 clients and a real storage node, once on
//! the default SQLite ledger and once on a throwaway PostgreSQL: two clients on two accounts of one link (no anonymous
//! access), one speaking Foolscap, one HTTP. Usage is checked against the node's
//! own share files; a quota stops an upload as a full server would and raising it
//! live lets it through; a disabled account's client loses the server at once and
//! gets it back when re-enabled; a read rate paces a download.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bridge_e2e::{get, write};
use crate::kit::*;

/// `swampgate account ARGS…` in `w` (config `gate.toml`, state `st`); its stdout.
fn account(w: &Path, args: &[&str]) -> String {
    let mut cmd = swampgate_command();
    cmd.arg("account")
        .args(args)
        .args(["--config", "gate.toml", "--state-dir", "st"])
        .current_dir(w);
    run_ok("swampgate account", cmd, w, CLI_TIMEOUT)
}

/// One account's row of `account list --json`.
fn usage(w: &Path, name: &str) -> Value {
    let list: Value = serde_json::from_str(&account(w, &["list", "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no account {name} in {list}"))
}

/// Waits past one flush of the daemon's counters and one poll of the accounts.
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

fn sum(m: &std::collections::BTreeMap<std::path::PathBuf, u64>) -> u64 {
    m.values().sum()
}

fn client(nickname: &str, furl: &str, nurl: Option<&str>, server_id: &str) -> ClientNode {
    client_node(ClientOptions {
        nickname: nickname.into(),
        force_foolscap: nurl.is_none(),
        servers: vec![StaticServer {
            server_id: server_id.into(),
            nickname: Some("gate".into()),
            furl: furl.into(),
            nurls: nurl.map(|n| vec![n.to_string()]).unwrap_or_default(),
            permutation_seed: None,
        }],
        ..ClientOptions::default()
    })
}

/// Polls until the client's one server is connected (`true`) or not.
fn wait_connected(c: &ClientNode, want: bool, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = c.server_statuses();
        if s.iter().all(|s| s.connected() == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server connected={} expected within {within:?}: {s:?}",
            !want
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn accounts_charge_what_they_store_enforce_quotas_revoke_and_pace_reads() {
    scenario(None);
}

#[test]
fn accounts_on_postgresql_charge_enforce_revoke_and_pace_alike() {
    let pg = postgres("swampgate");
    scenario(Some(&pg.url()));
    // The ledger is PostgreSQL's: the accounts are rows there, no SQLite file.
    assert_eq!(
        pg.psql("SELECT name FROM swampgate_accounts ORDER BY name")
            .trim(),
        "alice\nbob"
    );
}

/// The whole scenario, on the ledger at `database` (`[accounting] database`), or
/// on the default (SQLite in the state dir) with `None`.
fn scenario(database: Option<&str>) {
    let node = storage_node(StorageOptions::default());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let accounting = database.map_or("\n[accounting]\nreconcile_secs = 2\n".to_string(), |url| {
        format!("\n[accounting]\ndatabase = \"{url}\"\nreconcile_secs = 2\n")
    });
    std::fs::write(
        w.join("gate.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\n{accounting}\n[[link]]\nname = \"grid\"\nupstream = \"{}\"\nanonymous = false\n",
            node.furl()
        ),
    )
    .unwrap();
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "gate.toml", "--state-dir", "st"])
        .current_dir(w);
    let mut gate = Process::spawn("swampgate", cmd, w);
    let link_furl = last_word(&gate.wait_for_line("link grid furl ", STARTUP_TIMEOUT));

    // Accounts: alice with a quota of 250 kB, bob unlimited.
    let out = account(w, &["add", "alice", "--link", "grid", "--quota", "250kB"]);
    let a_furl = last_word(
        out.lines()
            .find(|l| l.starts_with("account alice furl "))
            .unwrap(),
    );
    let out = account(w, &["add", "bob", "--link", "grid"]);
    let b_furl = last_word(
        out.lines()
            .find(|l| l.starts_with("account bob furl "))
            .unwrap(),
    );
    let b_nurl = last_word(
        out.lines()
            .find(|l| l.starts_with("account bob nurl "))
            .unwrap(),
    );
    assert_eq!(
        std::fs::read_to_string(w.join("st/accounts/bob.nurl"))
            .unwrap()
            .trim(),
        b_nurl
    );
    let tubid = |f: &str| swampgate::foolscap::Furl::parse(f).unwrap().tubid;
    assert_eq!(
        tubid(&a_furl),
        tubid(&link_furl),
        "an account has the link's tubid"
    );
    assert_ne!(a_furl, link_furl);

    // alice speaks Foolscap, bob HTTP; both reach the server at once (no restart).
    let server_id = node.server_id().to_string();
    let (alice, bob) = join(
        || client("alice", &a_furl, None, &server_id),
        || client("bob", &b_furl, Some(&b_nurl), &server_id),
    );
    // Without anonymous access the link's own FURL names nothing.
    let anon = client_node(ClientOptions {
        nickname: "anon".into(),
        force_foolscap: true,
        servers: vec![StaticServer {
            server_id: server_id.clone(),
            nickname: None,
            furl: link_furl.clone(),
            nurls: vec![],
            permutation_seed: None,
        }],
        wait_for_servers: false,
        ..ClientOptions::default()
    });

    // Usage counts exactly the shares each client stored, at their allocated size.
    let shares = node.shares_dir();
    let before = share_files(&shares);
    let (f1, _) = write(w, "a1", 100_000, 1);
    let (f2, d2) = write(w, "a2", 100_000, 2);
    let cap_a1 = alice
        .tahoe(["put".as_ref(), f1.as_os_str()])
        .trim()
        .to_string();
    let cap_a2 = alice
        .tahoe(["put".as_ref(), f2.as_os_str()])
        .trim()
        .to_string();
    let after_alice = share_files(&shares);
    let alices: std::collections::BTreeMap<_, _> = after_alice
        .iter()
        .filter(|(p, _)| !before.contains_key(*p))
        .map(|(p, s)| (p.clone(), *s))
        .collect();
    assert_eq!(alices.len(), 2, "one share per file (1-of-1)");
    let (f3, d3) = write(w, "b1", 150_000, 3);
    let (m1, _) = write(w, "m1", 3_000, 4);
    let cap_b1 = bob
        .tahoe(["put".as_ref(), f3.as_os_str()])
        .trim()
        .to_string();
    let cap_m = bob
        .tahoe(["put".as_ref(), "--mutable".as_ref(), m1.as_os_str()])
        .trim()
        .to_string();
    let all = share_files(&shares);
    let bobs: std::collections::BTreeMap<_, _> = all
        .iter()
        .filter(|(p, _)| !after_alice.contains_key(*p))
        .map(|(p, s)| (p.clone(), *s))
        .collect();
    assert_eq!(bobs.len(), 2);
    settle();
    let ua = usage(w, "alice");
    let ub = usage(w, "bob");
    assert_eq!(ua["bytes_stored"], sum(&alices), "{ua}");
    assert_eq!(ua["shares"], 2, "{ua}");
    assert_eq!(ub["bytes_stored"], sum(&bobs), "{ub}");
    assert_eq!(ub["shares"], 2, "{ub}");
    assert!(ua["bytes_written"].as_u64().unwrap() >= 200_000, "{ua}");
    assert!(
        ua["calls"].as_u64().unwrap() > 0 && ua["last_seen"].is_i64(),
        "{ua}"
    );
    // Reads are counted too.
    assert_eq!(get(&bob, &cap_b1, w, "b1.out"), d3);
    assert_eq!(
        get(&bob, &cap_a2, w, "a2.out"),
        d2,
        "bob reads alice's file"
    );
    settle();
    assert!(usage(w, "bob")["bytes_read"].as_u64().unwrap() >= 250_000);

    // alice is at 201 kB of 250 kB: a third 100 kB file does not fit, and with no
    // other server the upload fails as on a full grid. bob is unaffected.
    let (f4, d4) = write(w, "a3", 100_000, 5);
    let full = alice.tahoe_output(["put".as_ref(), f4.as_os_str()]);
    assert!(!full.status.success(), "over quota: {}", full.stdout);
    let said = format!("{}{}", full.stdout, full.stderr);
    // Tahoe's uploader takes the server for a full one.
    assert!(
        said.contains("1 placed none due to the server being full"),
        "{said}"
    );
    let (f5, _) = write(w, "b2", 100_000, 6);
    bob.tahoe(["put".as_ref(), f5.as_os_str()]);
    settle();
    assert_eq!(
        usage(w, "alice")["bytes_stored"],
        sum(&alices),
        "nothing charged"
    );
    assert!(
        std::fs::read_dir(node.incoming_dir())
            .map(|d| d.flatten().all(|e| e.path().is_dir()))
            .unwrap_or(true),
        "no upload left open upstream"
    );
    // Raised live: alice uploads again.
    account(w, &["set", "alice", "--quota", "1MB"]);
    settle();
    let cap_a3 = alice
        .tahoe(["put".as_ref(), f4.as_os_str()])
        .trim()
        .to_string();
    assert_eq!(get(&alice, &cap_a3, w, "a3.out"), d4);
    let _ = cap_a1;

    // Disabled: alice's Foolscap connection closes at once and the FURL names
    // nothing any more; bob's HTTP requests are refused.
    account(w, &["disable", "alice"]);
    wait_connected(&alice, false, Duration::from_secs(3));
    account(w, &["disable", "bob"]);
    settle();
    let refused = bob.tahoe_output(["get", cap_m.as_str()]);
    assert!(
        !refused.status.success(),
        "a disabled account reads nothing"
    );
    assert_eq!(usage(w, "bob")["state"], "disabled");
    // Re-enabled: both get the server back (alice's client redials on its own).
    account(w, &["enable", "alice"]);
    account(w, &["enable", "bob"]);
    wait_connected(&alice, true, Duration::from_secs(60));
    bob.wait_for_servers(&[&server_id]);
    assert_eq!(get(&alice, &cap_a2, w, "a2.again"), d2);
    assert_eq!(get(&bob, &cap_b1, w, "b1.again"), d3);
    // The anonymous client never got the server.
    assert!(
        anon.server_statuses().iter().all(|s| !s.connected()),
        "anonymous = false: {:?}",
        anon.server_statuses()
    );

    // A read rate: bob downloads 3 MB at 100 kB/s; the rate holds within 10%.
    let (big, dbig) = write(w, "big", 3_000_000, 7);
    let cap_big = bob
        .tahoe(["put".as_ref(), big.as_os_str()])
        .trim()
        .to_string();
    account(w, &["set", "bob", "--read-rate", "100kB"]);
    settle();
    let read_before = usage(w, "bob")["bytes_read"].as_u64().unwrap();
    let t0 = Instant::now();
    assert_eq!(get(&bob, &cap_big, w, "big.out"), dbig);
    let took = t0.elapsed().as_secs_f64();
    settle();
    let read = usage(w, "bob")["bytes_read"].as_u64().unwrap() - read_before;
    let rate = read as f64 / took;
    assert!(
        (90_000.0..=110_000.0).contains(&rate),
        "read {read} bytes in {took:.1} s: {rate:.0} B/s against a limit of 100000"
    );
    // A share that disappears upstream (as when its lease expires) stops counting
    // at the next reconcile.
    let before = usage(w, "alice");
    let (gone, size) = alices.iter().next().unwrap();
    std::fs::remove_file(gone).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = usage(w, "alice");
        if now["shares"] == before["shares"].as_u64().unwrap() - 1 {
            assert_eq!(
                now["bytes_stored"],
                before["bytes_stored"].as_u64().unwrap() - size,
                "{now}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not reconciled: {now}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The daemon names accounts in its log, never a swissnum.
    let log = gate.stderr();
    let swiss = |u: &str| u.rsplit('/').next().unwrap().to_string();
    assert!(log.contains("account=alice"), "{log}");
    assert!(!log.contains(&swiss(&a_furl)), "a swissnum in the log");
    gate.stop();
    assert_eq!(
        w.join("st/private/accounting.sqlite").exists(),
        database.is_none(),
        "SQLite in the state dir only by default"
    );
}

/// The ledger's statements, run directly on a real PostgreSQL: four processes'
/// worth of ledgers opening one fresh database at once (their CREATE TABLEs race),
/// then every kind of statement, with the values read back as on SQLite (sums and
/// counts as BIGINT, not NUMERIC), and two ledgers reserving against one quota.
#[test]
fn ledger_statements_work_on_postgresql() {
    use swampgate::accounting::ledger::{now, Counts, Kind};
    use swampgate::accounting::{Account, Ledger};
    use swampgate::storage::StorageIndex;

    let pg = postgres("ledger");
    let url = pg.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opened = futures_util::future::join_all((0..4).map(|_| Ledger::open(&url))).await;
        let l = opened.into_iter().map(Result::unwrap).next_back().unwrap();
        let acct = |name: &str, quota| Account {
            name: name.into(),
            link: "grid".into(),
            swissnum: format!("swiss-{name}"),
            enabled: true,
            quota,
            read_rate: None,
            generation: 0,
        };
        l.add(&acct("alice", Some(250))).await.unwrap();
        l.add(&acct("bob", None)).await.unwrap();
        assert!(l.add(&acct("bob", None)).await.is_err());
        let si = |b| StorageIndex([b; 16]);
        let got = l
            .reserve("alice", "grid", si(1), &[0, 1, 2], 100, Some(250))
            .await
            .unwrap();
        assert_eq!(got, (vec![0, 1], 1));
        assert_eq!(l.stored("alice").await.unwrap(), 200);
        l.complete("grid", si(1), 0, None).await.unwrap();
        l.release("grid", si(1), 1).await.unwrap();
        l.complete("grid", si(2), 3, Some(("bob", 40)))
            .await
            .unwrap();
        l.set_mutable("grid", si(3), 0, "bob", 7).await.unwrap();
        l.set_mutable("grid", si(3), 0, "alice", 9).await.unwrap();
        assert_eq!(
            l.mutable("grid", si(3), 0).await.unwrap(),
            Some(("bob".to_string(), 9))
        );
        let pending = l
            .reserve("bob", "grid", si(4), &[5], 11, None)
            .await
            .unwrap();
        assert_eq!(pending, (vec![5], 0));
        assert_eq!(l.pending("grid", now() + 10).await.unwrap().len(), 1);
        let charged = l.charged("grid").await.unwrap();
        assert_eq!(charged.len(), 3);
        assert_eq!(
            charged.iter().filter(|c| c.kind == Kind::Mutable).count(),
            1
        );
        let counts = std::collections::BTreeMap::from([(
            "bob".to_string(),
            Counts {
                calls: 2,
                bytes_read: 3,
                bytes_written: 4,
                last_seen: 5,
            },
        )]);
        l.add_counts(&counts).await.unwrap();
        l.set_quota("alice", None).await.unwrap();
        l.set_read_rate("bob", Some(1000)).await.unwrap();
        l.set_enabled("bob", false).await.unwrap();
        let u = l.usage().await.unwrap();
        assert_eq!((u[0].bytes_stored, u[0].shares, u[0].quota), (100, 1, None));
        assert_eq!((u[1].bytes_stored, u[1].shares), (40 + 9 + 11, 3));
        assert_eq!(
            (u[1].calls, u[1].last_seen, u[1].state),
            (2, Some(5), "disabled")
        );
        assert_eq!(l.get("bob").await.unwrap().read_rate, Some(1000));
        l.remove("alice").await.unwrap();
        assert_eq!(l.accounts().await.unwrap().len(), 1);

        // Two processes' ledgers reserving for one account at once, each one
        // allocation at a time (as a process does): the quota is overshot by at
        // most one allocation in flight per process.
        l.add(&acct("carol", Some(1000))).await.unwrap();
        let procs = [
            Ledger::open(&url).await.unwrap(),
            Ledger::open(&url).await.unwrap(),
        ];
        let run = |p: usize| {
            let ledger = procs[p].clone();
            async move {
                for i in 0..15u8 {
                    let si = StorageIndex([100 + 20 * p as u8 + i; 16]);
                    ledger
                        .reserve("carol", "grid", si, &[0], 100, Some(1000))
                        .await
                        .unwrap();
                }
            }
        };
        tokio::join!(run(0), run(1));
        let carol = l.stored("carol").await.unwrap();
        assert!((1000..=1000 + 2 * 100).contains(&carol), "carol: {carol}");
        l.close().await;
    });
}
