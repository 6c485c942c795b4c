//! A connection flood from many addresses against a real swampgate process: while
//! stalled connections from 100 loopback addresses keep arriving (each sends one
//! byte and waits, under the per-address cap, so only the total cap is in play), a
//! client from a fresh address is served over both protocols, every time. Without
//! shedding the oldest unidentified connections, the stalled ones fill the
//! 1,024-connection cap and the fresh client is refused until they time out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swampgate::foolscap::furl::Furl;
use swampgate::foolscap::{Tub, TubConfig};
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::gbs::nurl::Nurl;
use swampgate::identity::Identity;
use swampgate::storage::StorageApi;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use crate::kit::*;

/// Stalled connections opened at least, from this many addresses.
const FLOOD: u64 = 10_000;
const ADDRESSES: u64 = 100;
/// Flood connections the flooder keeps open at once (its own descriptors).
const KEEP_OPEN: usize = 3_000;
/// Fresh-client rounds (each one GBS and one Foolscap connection).
const ROUNDS: usize = 10;

#[test]
fn a_fresh_client_is_served_during_a_flood_from_many_addresses() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("sg.toml"),
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[link]]\nname = \"default\"\nupstream = \"local:shares\"\n",
    )
    .unwrap();
    let mut cmd = swampgate_command();
    cmd.args(["run", "--config", "sg.toml", "--state-dir", "st"])
        .current_dir(dir);
    let mut sg = Process::spawn("swampgate", cmd, dir);
    let furl = last_word(&sg.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let nurl = last_word(&sg.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    let admin = last_word(&sg.wait_for_line("admin http://", STARTUP_TIMEOUT));
    let admin_port: u16 = admin
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let nurl: Nurl = nurl.parse().unwrap();
    let furl = Furl::parse(&furl).unwrap();
    let addr: SocketAddr = format!("{}:{}", nurl.host, nurl.port).parse().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opened = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let latencies = rt.block_on(async {
        let flood = tokio::spawn({
            let (opened, done) = (opened.clone(), done.clone());
            async move {
                let mut open = VecDeque::new();
                let mut n: u64 = 0;
                while (n < FLOOD || !done.load(Ordering::Relaxed)) && n < 20 * FLOOD {
                    let from = format!("127.0.1.{}:0", n % ADDRESSES + 1);
                    let s = TcpSocket::new_v4().unwrap();
                    s.bind(from.parse().unwrap()).unwrap();
                    n += 1;
                    let Ok(Ok(mut c)) =
                        tokio::time::timeout(Duration::from_secs(2), s.connect(addr)).await
                    else {
                        continue;
                    };
                    let _ = c.write_all(b"G").await;
                    opened.fetch_add(1, Ordering::Relaxed);
                    open.push_back(c);
                    if open.len() > KEEP_OPEN {
                        open.pop_front();
                    }
                }
                n
            }
        });
        // The cap is full of stalled connections before the first round.
        while opened.load(Ordering::Relaxed) < 2_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut latencies = Vec::new();
        for round in 0..ROUNDS {
            let t = Instant::now();
            let gbs = GbsClient::new(&nurl, ClientConfig::default()).unwrap();
            tokio::time::timeout(Duration::from_secs(30), gbs.version())
                .await
                .unwrap_or_else(|_| panic!("round {round}: GBS not served within 30 s"))
                .unwrap_or_else(|e| panic!("round {round}: GBS refused: {e}"));
            let gbs_time = t.elapsed();
            let t = Instant::now();
            let tub = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
            let served = async {
                let r = tub.get_reference(&furl).await.map_err(|e| e.to_string())?;
                r.call("get_version", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            };
            tokio::time::timeout(Duration::from_secs(30), served)
                .await
                .unwrap_or_else(|_| panic!("round {round}: Foolscap not served within 30 s"))
                .unwrap_or_else(|e| panic!("round {round}: Foolscap refused: {e}"));
            latencies.push((gbs_time, t.elapsed()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        done.store(true, Ordering::Relaxed);
        let attempts = flood.await.unwrap();
        eprintln!(
            "flood: {attempts} connection attempts, {} opened, from {ADDRESSES} addresses",
            opened.load(Ordering::Relaxed)
        );
        latencies
    });
    assert!(opened.load(Ordering::Relaxed) >= FLOOD);
    let worst = latencies.iter().map(|(g, f)| *g.max(f)).max().unwrap();
    eprintln!("fresh client served in (GBS, Foolscap): {latencies:?}; worst {worst:?}");
    let metrics = http_get(admin_port, "/metrics").unwrap();
    let shed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("swampgate_connections_shed_total "))
        .expect("the shed counter")
        .trim()
        .parse()
        .unwrap();
    assert!(
        shed >= FLOOD - 1_024 - 2 * ROUNDS as u64,
        "shed {shed}\n{metrics}"
    );
}
