//! Scale-out, with real processes only: a Tahoe-LAFS 1.20 storage node; two
//! swampgate processes that both adopt its identity and share one PostgreSQL
//! ledger, each with a state dir of its own; HAProxy in front of them (`mode tcp`,
//! `balance source`), the address both put in their URLs. One account, added once
//! through one of them, is served by both within a second. Two Tahoe clients on
//! the account's URLs (one HTTP, one Foolscap) upload through HAProxy; the
//! swampgate they reached is killed (SIGKILL); their next uploads and downloads go
//! through the other, and the account's usage equals what the node stores (the
//! upload it was killed in the middle of is not charged).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bridge_e2e::{get, write};
use crate::kit::*;

/// One swampgate of the pair: its work dir (gate.toml, state dir `st`), ports and
/// process.
struct Gate {
    dir: PathBuf,
    admin: u16,
    process: Process,
}

impl Gate {
    /// Starts `swampgate run` in `dir` on `port`, URLs pointing at the proxy.
    fn start(dir: &Path, node: &StorageNode, port: u16, proxy: u16, database: &str) -> Gate {
        std::fs::create_dir_all(dir).unwrap();
        let admin = free_port();
        std::fs::write(
            dir.join("gate.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\nlocation = \"tcp:127.0.0.1:{proxy}\"\n\
                 admin = \"127.0.0.1:{admin}\"\n\n[limits]\nupload_idle_timeout_secs = 5\n\n\
                 [accounting]\ndatabase = \"{database}\"\nreconcile_secs = 1\n\n\
                 [[link]]\nname = \"grid\"\nupstream = \"{}\"\nadopt = \"{}\"\nanonymous = false\n",
                node.furl(),
                node.dir().display()
            ),
        )
        .unwrap();
        let mut cmd = swampgate_command();
        cmd.args(["run", "--config", "gate.toml", "--state-dir", "st"])
            .current_dir(dir);
        let name = format!("swampgate-{}", dir.file_name().unwrap().to_string_lossy());
        Gate {
            dir: dir.to_path_buf(),
            admin,
            process: Process::spawn(&name, cmd, dir),
        }
    }

    /// `swampgate account ARGS…` with this gate's config and state dir; stdout.
    fn account(&self, args: &[&str]) -> String {
        let mut cmd = swampgate_command();
        cmd.arg("account")
            .args(args)
            .args(["--config", "gate.toml", "--state-dir", "st"])
            .current_dir(&self.dir);
        run_ok("swampgate account", cmd, &self.dir, CLI_TIMEOUT)
    }

    /// Storage calls clients made through this process (its `/metrics`).
    fn calls(&self) -> u64 {
        self.metric("swampgate_calls_total{")
    }

    /// The sum of this process's metric series whose lines start with `prefix`.
    fn metric(&self, prefix: &str) -> u64 {
        let metrics = http_get(self.admin, "/metrics").unwrap();
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| last_word(l).parse::<f64>().unwrap() as u64)
            .sum()
    }

    /// Whether its log says it serves account `name`.
    fn serves(&self, name: &str) -> bool {
        self.process
            .stderr()
            .lines()
            .any(|l| l.contains("account served") && l.contains(&format!("account={name}")))
    }
}

fn line_word(out: &str, prefix: &str) -> String {
    last_word(
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in {out}")),
    )
}

/// Polls until every server of the client is connected.
fn wait_connected(c: &ClientNode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = c.server_statuses();
        if s.iter().all(|s| s.connected()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not connected again within {within:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_swampgates_behind_haproxy_on_one_postgresql_survive_losing_one() {
    let (node, pg) = join(
        || storage_node(StorageOptions::default()),
        || postgres("swampgate"),
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let proxy = free_port();
    let ports = [free_port(), free_port()];
    let mut gates = [
        Gate::start(&w.join("g0"), &node, ports[0], proxy, &pg.url()),
        Gate::start(&w.join("g1"), &node, ports[1], proxy, &pg.url()),
    ];
    let mut urls = Vec::new();
    for g in &mut gates {
        let furl = last_word(&g.process.wait_for_line("link grid furl ", STARTUP_TIMEOUT));
        let nurl = last_word(&g.process.wait_for_line("link grid nurl ", STARTUP_TIMEOUT));
        urls.push((furl, nurl));
    }
    // One identity (the node's), one address (HAProxy's): identical URLs.
    assert_eq!(urls[0], urls[1]);
    let at_proxy = format!("127.0.0.1:{proxy}");
    assert!(urls[0].0.contains(&at_proxy) && urls[0].1.contains(&at_proxy));
    assert_eq!(
        swampgate::foolscap::Furl::parse(&urls[0].0).unwrap().tubid,
        node.tubid()
    );
    let proxy = haproxy(proxy, &ports);

    // One account, added once, through the first; both serve it within a second
    // (they poll the ledger every 500 ms).
    let out = gates[0].account(&["add", "alice", "--link", "grid"]);
    let t0 = Instant::now();
    let furl = line_word(&out, "account alice furl ");
    let nurl = line_word(&out, "account alice nurl ");
    while !gates.iter().all(|g| g.serves("alice")) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "both serve the account\n{}\n{}",
            gates[0].process.log_tail(),
            gates[1].process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = t0.elapsed();
    // A second and a half: one poll interval, twice over, on a busy machine.
    assert!(seen < Duration::from_millis(1500), "served after {seen:?}");
    assert!(
        furl.contains(&at_proxy) && nurl.contains(&at_proxy),
        "{out}"
    );

    // Two clients on the account's URLs, both through HAProxy.
    let server_id = node.server_id().to_string();
    let client = |nickname: &str, nurl: Option<&str>| {
        client_node(ClientOptions {
            nickname: nickname.into(),
            force_foolscap: nurl.is_none(),
            servers: vec![StaticServer {
                server_id: server_id.clone(),
                nickname: Some("gate".into()),
                furl: furl.clone(),
                nurls: nurl.map(|n| vec![n.to_string()]).unwrap_or_default(),
                permutation_seed: None,
            }],
            ..ClientOptions::default()
        })
    };
    let (web, legacy) = join(|| client("web", Some(&nurl)), || client("legacy", None));
    for s in web.server_statuses() {
        assert!(!s.summary.contains("via tcp"), "HTTP, not Foolscap: {s:?}");
    }

    let (h1, d1) = write(w, "h1", 120_000, 1);
    let (f1, df1) = write(w, "f1", 80_000, 2);
    let (m1, _) = write(w, "m1", 3_000, 3);
    let cap_h1 = web
        .tahoe(["put".as_ref(), h1.as_os_str()])
        .trim()
        .to_string();
    let cap_m = web
        .tahoe(["put".as_ref(), "--mutable".as_ref(), m1.as_os_str()])
        .trim()
        .to_string();
    let cap_f1 = legacy
        .tahoe(["put".as_ref(), f1.as_os_str()])
        .trim()
        .to_string();

    // Every connection came from 127.0.0.1: source affinity sent all to one.
    let calls = [gates[0].calls(), gates[1].calls()];
    let (dead, alive) = match calls {
        [c, 0] if c > 0 => (0, 1),
        [0, c] if c > 0 => (1, 0),
        _ => panic!("one swampgate should have served every call: {calls:?}"),
    };
    // It is killed in the middle of an upload: the upload fails as with any lost
    // server, and its pending charge is settled by the other (below).
    let (big, _) = write(w, "big", 20_000_000, 7);
    let mut cut = web.spawn_tahoe(["put".as_ref(), big.as_os_str()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gates[dead].metric("swampgate_inflight_uploads{") == 0 {
        assert!(
            Instant::now() < deadline && cut.try_status().is_none(),
            "no upload in flight to cut\n{}",
            cut.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gates[dead].process.signal(libc::SIGKILL);
    assert!(
        gates[dead]
            .process
            .wait_timeout(Duration::from_secs(5))
            .is_some(),
        "SIGKILL"
    );
    let killed = Instant::now();
    assert_ne!(
        pg.psql("SELECT count(*) FROM swampgate_shares WHERE state = 'pending'")
            .trim(),
        "0",
        "the cut upload's charge is pending"
    );
    let cut = cut
        .wait_timeout(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("the cut upload did not end\n{}", cut.log_tail()));
    assert!(!cut.success(), "the upload was cut");

    // The HTTP client's next requests reach the other at once.
    let (h2, d2) = write(w, "h2", 90_000, 4);
    let cap_h2 = web
        .tahoe(["put".as_ref(), h2.as_os_str()])
        .trim()
        .to_string();
    assert_eq!(get(&web, &cap_h1, w, "h1.out"), d1);
    assert_eq!(get(&web, &cap_f1, w, "f1.web"), df1);
    let (m2, dm2) = write(w, "m2", 5_000, 5);
    web.tahoe(["put".as_ref(), m2.as_os_str(), cap_m.as_ref()]);
    let http_after = killed.elapsed();
    // The Foolscap client redials on its own (with backoff) and lands there too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while gates[alive].metric("swampgate_connections_total{protocol=\"foolscap\"}") == 0 {
        assert!(
            Instant::now() < deadline,
            "the Foolscap client never redialled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_connected(&legacy, Duration::from_secs(60));
    let (f2, df2) = write(w, "f2", 70_000, 6);
    let cap_f2 = legacy
        .tahoe(["put".as_ref(), f2.as_os_str()])
        .trim()
        .to_string();
    assert_eq!(get(&legacy, &cap_f2, w, "f2.out"), df2);
    assert_eq!(get(&legacy, &cap_h2, w, "h2.legacy"), d2);
    assert_eq!(get(&legacy, &cap_m, w, "m.legacy"), dm2);
    assert!(gates[alive].calls() > 0, "the other one served them");

    // Usage: every share the node holds, once, at its allocated size; none pending:
    // the cut upload's charge, left pending by the killed process, is settled by
    // the other's reconciliation (every second here, for uploads idle 5 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg
        .psql("SELECT count(*) FROM swampgate_shares WHERE state <> 'stored'")
        .trim()
        != "0"
    {
        assert!(
            Instant::now() < deadline,
            "the cut upload's charge is still pending\n{}",
            gates[alive].process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        std::fs::read_dir(node.incoming_dir())
            .map(|d| d.flatten().all(|e| e.path().is_dir()))
            .unwrap_or(true),
        "the cut upload is not left open on the node"
    );
    let shares = share_files(&node.shares_dir());
    assert_eq!(shares.len(), 5, "4 immutable files and 1 mutable, 1-of-1");
    let list: Value = serde_json::from_str(&gates[alive].account(&["list", "--json"])).unwrap();
    let alice = &list[0];
    assert_eq!(alice["name"], "alice", "{list}");
    assert_eq!(
        alice["bytes_stored"],
        shares.values().sum::<u64>(),
        "{alice}"
    );
    assert_eq!(alice["shares"], shares.len(), "{alice}");
    assert!(alice["bytes_read"].as_u64().unwrap() >= 300_000, "{alice}");
    eprintln!(
        "both served the new account after {seen:?}; the HTTP client's operations after \
         the kill took {http_after:?}; haproxy.cfg:\n{}",
        proxy.config()
    );
}
