//! The measurements: bulk transfer and small-call latency against swampgate's
//! embedded store, scale (concurrent uploads, idle connections, share size), and
//! real Tahoe nodes through each direction and against swampgate as a server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use rand::RngCore;
use swampgate::foolscap::storage::backend::FoolscapBackend;
use swampgate::foolscap::{Tub, TubConfig};
use swampgate::gbs::client::{ClientConfig, GbsClient};
use swampgate::identity::Identity;
use swampgate::storage::*;

use crate::kit::*;
use crate::report::{quantile, Report};
use crate::sys::{fd_count, group_cpu_secs, rss_kib};
use crate::{account, gateway, relay, settle, Plan, MIB};

/// Tahoe-sized transfers: ~1 MiB per write (a PATCH body / remote_write), ~350 KiB
/// per read.
const WRITE: usize = 1 << 20;
const READ: u64 = 350 * 1024;

type Client = Arc<dyn StorageApi>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn foolscap_client(furl: &str) -> Client {
    let tub = Tub::new(
        Identity::generate().expect("new identity"),
        TubConfig::default(),
    )
    .expect("tub");
    Arc::new(FoolscapBackend::new(
        tub,
        swampgate::foolscap::Furl::parse(furl).expect("FURL"),
    ))
}

fn gbs_client(nurl: &str) -> Client {
    let config = ClientConfig {
        max_connections: 256,
        ..ClientConfig::default()
    };
    Arc::new(GbsClient::new(&nurl.parse().expect("NURL"), config).expect("client"))
}

fn random_si() -> StorageIndex {
    let mut si = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut si);
    StorageIndex(si)
}

fn secret(b: u8) -> Secret {
    Secret(vec![b; 32])
}

fn lease() -> LeaseSecrets {
    LeaseSecrets {
        renew: secret(b'r'),
        cancel: secret(b'c'),
    }
}

/// The bytes every bulk write carries (a share's byte at offset o is `data[o % WRITE]`).
fn bulk_data() -> Bytes {
    let mut v = vec![0u8; WRITE];
    rand::thread_rng().fill_bytes(&mut v);
    Bytes::from(v)
}

/// Uploads `shares` shares of `share_size` bytes each in 1 MiB writes (the shares in
/// parallel, each share's writes in order, as Tahoe's uploader does), then downloads
/// them in 350 KiB reads and checks every byte. Returns the upload and download times.
async fn bulk(
    client: &Client,
    si: StorageIndex,
    shares: u16,
    share_size: u64,
    data: &Bytes,
) -> (Duration, Duration) {
    let upload_secret = secret(b'u');
    let t = Instant::now();
    let r = client
        .allocate_buckets(AllocateRequest {
            storage_index: si,
            lease: lease(),
            upload_secret: upload_secret.clone(),
            share_numbers: (0..shares).collect(),
            allocated_size: share_size,
        })
        .await
        .expect("allocate_buckets");
    assert_eq!(r.allocated.len(), shares as usize, "{r:?}");
    futures_util::future::join_all((0..shares).map(|sh| {
        let upload_secret = &upload_secret;
        async move {
            let mut offset = 0;
            while offset < share_size {
                let n = (share_size - offset).min(WRITE as u64) as usize;
                let p = client
                    .write_immutable(si, sh, upload_secret, offset, data.slice(..n))
                    .await
                    .expect("write_immutable");
                offset += n as u64;
                assert_eq!(p.complete(), offset == share_size);
            }
        }
    }))
    .await;
    let up = t.elapsed();
    let t = Instant::now();
    futures_util::future::join_all((0..shares).map(|sh| async move {
        let mut offset = 0;
        while offset < share_size {
            let got = client
                .read_immutable(si, sh, offset, READ)
                .await
                .expect("read_immutable");
            assert_eq!(got.len() as u64, READ.min(share_size - offset));
            check_bytes(&got, offset, data);
            offset += got.len() as u64;
        }
    }))
    .await;
    (up, t.elapsed())
}

fn check_bytes(got: &[u8], mut offset: u64, data: &[u8]) {
    let mut rest = got;
    while !rest.is_empty() {
        let at = (offset % WRITE as u64) as usize;
        let n = rest.len().min(WRITE - at);
        assert!(rest[..n] == data[at..at + n], "wrong bytes at {offset}");
        rest = &rest[n..];
        offset += n as u64;
    }
}

/// Deletes `si`'s finished shares from an embedded store (bulk runs would otherwise
/// fill the disk).
fn drop_shares(store: &Path, si: StorageIndex) {
    let b = si.to_base32();
    let dir = store.join("shares").join(&b[..2]).join(&b);
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
}

/// A temporary directory on tmpfs if the machine has one (the bulk runs measure the
/// proxies, not the disk), else in the default temp dir.
fn fast_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("swampgate-bench-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir")
}

/// One way a client reaches the embedded store.
struct Case {
    name: &'static str,
    client: Client,
    /// The process in the middle, if any (its CPU is what the case costs).
    middle: Option<u32>,
}

/// Bulk and latency: the embedded store as the upstream (so the proxies, not a Python
/// server, are the bottleneck), reached directly over each protocol, through F→H,
/// through H→F and (bulk) through the TLS relay.
pub fn embedded(plan: &Plan, report: &mut Report) {
    let dir = fast_tempdir();
    let d = dir.path();
    let up = gateway("upstream", d, "local:store", None);
    let store = d.join("upstream-state/store");
    let fh = gateway("f-to-h", d, &up.nurl, None);
    let hf = gateway("h-to-f", d, &up.furl, None);
    let (relay_proc, relay_nurl) = relay(d, &up.nurl);
    // The same bridges, through an account (accounting's cost).
    let (fh_account, _) = account("f-to-h", d);
    let (_, hf_account) = account("h-to-f", d);
    let rt = runtime();
    let _g = rt.enter();
    let cases = [
        Case {
            name: "direct Foolscap",
            client: foolscap_client(&up.furl),
            middle: None,
        },
        Case {
            name: "F→H bridge",
            client: foolscap_client(&fh.furl),
            middle: Some(fh.pid()),
        },
        Case {
            name: "direct HTTP",
            client: gbs_client(&up.nurl),
            middle: None,
        },
        Case {
            name: "H→F bridge",
            client: gbs_client(&hf.nurl),
            middle: Some(hf.pid()),
        },
        Case {
            name: "TLS relay (HTTP)",
            client: gbs_client(&relay_nurl),
            middle: Some(relay_proc.pid()),
        },
        Case {
            name: ACCOUNTED_FH,
            client: foolscap_client(&fh_account),
            middle: Some(fh.pid()),
        },
        Case {
            name: ACCOUNTED_HF,
            client: gbs_client(&hf_account),
            middle: Some(hf.pid()),
        },
    ];
    // Connect every client before measuring.
    rt.block_on(async {
        for c in &cases {
            c.client.version().await.expect("version");
        }
    });
    settle();
    if plan.runs("bulk") {
        let data = bulk_data();
        let share_size = plan.bulk_bytes / u64::from(plan.bulk_shares);
        let mb = plan.bulk_bytes as f64 / 1e6;
        for rep in 0..plan.reps {
            for c in &cases {
                eprintln!("bulk {} rep {rep}", c.name);
                let si = random_si();
                let cpu = |pid: Option<u32>| pid.map_or(0.0, group_cpu_secs);
                let (m0, u0) = (cpu(c.middle), group_cpu_secs(up.pid()));
                let (t_up, t_down) =
                    rt.block_on(bulk(&c.client, si, plan.bulk_shares, share_size, &data));
                let (m1, u1) = (cpu(c.middle), group_cpu_secs(up.pid()));
                drop_shares(&store, si);
                let g = "bulk";
                report.add(g, c.name, "upload", "MB/s", mb / t_up.as_secs_f64());
                report.add(g, c.name, "download", "MB/s", mb / t_down.as_secs_f64());
                report.add(
                    g,
                    c.name,
                    "up+down",
                    "MB/s",
                    2.0 * mb / (t_up + t_down).as_secs_f64(),
                );
                if c.middle.is_some() {
                    report.add(
                        g,
                        c.name,
                        "middle CPU",
                        "ms/MB",
                        (m1 - m0) * 1e3 / (2.0 * mb),
                    );
                }
                report.add(
                    g,
                    c.name,
                    "upstream CPU",
                    "ms/MB",
                    (u1 - u0) * 1e3 / (2.0 * mb),
                );
            }
        }
    }
    if plan.runs("latency") {
        latency(plan, report, &rt, &cases);
    }
    drop(cases);
    drop((relay_proc, fh, hf, up));
}

#[derive(Clone, Copy)]
enum Op {
    Version,
    Readv,
    AddLease,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Version => "get_version",
            Op::Readv => "slot_readv 100 B",
            Op::AddLease => "add_lease",
        }
    }
}

/// Small calls one at a time: p50 and p99 per case and, for the bridges, the latency
/// they add over the same client going directly.
/// The bridges' cases through an account.
const ACCOUNTED_FH: &str = "F→H bridge, account";
const ACCOUNTED_HF: &str = "H→F bridge, account";

fn latency(plan: &Plan, report: &mut Report, rt: &tokio::runtime::Runtime, cases: &[Case]) {
    let imm = random_si();
    let mutable = random_si();
    rt.block_on(async {
        let c = &cases[2].client; // direct HTTP
        let s = secret(b'v');
        c.allocate_buckets(AllocateRequest {
            storage_index: imm,
            lease: lease(),
            upload_secret: s.clone(),
            share_numbers: [0].into_iter().collect(),
            allocated_size: 1000,
        })
        .await
        .unwrap();
        let p = c
            .write_immutable(imm, 0, &s, 0, Bytes::from(vec![7u8; 1000]))
            .await
            .unwrap();
        assert!(p.complete());
        let r = c
            .read_test_write(ReadTestWriteRequest {
                storage_index: mutable,
                secrets: MutableSecrets {
                    write_enabler: secret(b'w'),
                    lease: lease(),
                },
                test_write_vectors: BTreeMap::from([(
                    0,
                    TestWriteVectors {
                        test: vec![],
                        write: vec![WriteVector {
                            offset: 0,
                            data: Bytes::from(vec![9u8; 1000]),
                        }],
                        new_length: None,
                    },
                )]),
                read_vector: vec![],
            })
            .await
            .unwrap();
        assert!(r.success);
    });
    let call = |client: &Client, op: Op| {
        let client = client.clone();
        async move {
            match op {
                Op::Version => {
                    client.version().await.expect("version");
                }
                Op::Readv => {
                    let r = client
                        .slot_readv(
                            mutable,
                            vec![0],
                            vec![ReadVector {
                                offset: 0,
                                size: 100,
                            }],
                        )
                        .await
                        .expect("slot_readv");
                    assert_eq!(r[&0][0].len(), 100);
                }
                Op::AddLease => client.add_lease(imm, lease()).await.expect("add_lease"),
            }
        }
    };
    let bridged = [
        ("F→H bridge", "direct Foolscap"),
        ("H→F bridge", "direct HTTP"),
        (ACCOUNTED_FH, "F→H bridge"),
        (ACCOUNTED_HF, "H→F bridge"),
    ];
    for rep in 0..plan.reps {
        for op in [Op::Version, Op::Readv, Op::AddLease] {
            let mut p: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for c in cases.iter().filter(|c| !c.name.starts_with("TLS")) {
                eprintln!("latency {} {} rep {rep}", op.name(), c.name);
                let mut us = rt.block_on(async {
                    for _ in 0..plan.calls / 10 {
                        call(&c.client, op).await;
                    }
                    let mut us = Vec::with_capacity(plan.calls);
                    for _ in 0..plan.calls {
                        let t = Instant::now();
                        call(&c.client, op).await;
                        us.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    us
                });
                let p50 = quantile(&mut us, 0.5);
                let p99 = quantile(&mut us, 0.99);
                let g = "latency";
                report.add(g, c.name, &format!("{} p50", op.name()), "µs", p50);
                report.add(g, c.name, &format!("{} p99", op.name()), "µs", p99);
                p.insert(c.name, (p50, p99));
            }
            for (through, direct) in bridged {
                let (t, d) = (p[through], p[direct]);
                let g = "latency";
                let m = op.name();
                report.add(g, through, &format!("{m} added p50"), "µs", t.0 - d.0);
                report.add(g, through, &format!("{m} added p99"), "µs", t.1 - d.1);
            }
        }
    }
}

/// Memory at scale: concurrent uploads, idle Foolscap connections, and peak RSS as
/// a single share grows; each on fresh swampgate processes.
pub fn scale(plan: &Plan, report: &mut Report) {
    let dir = fast_tempdir();
    let d = dir.path();
    let up = gateway("upstream", d, "local:store", None);
    let rt = runtime();
    let _g = rt.enter();
    let mib = |kib: u64| kib as f64 / 1024.0;

    // Concurrent uploads, through each direction.
    for (name, short, upstream, foolscap_front) in [
        ("F→H bridge", "fh", &up.nurl, true),
        ("H→F bridge", "hf", &up.furl, false),
    ] {
        let gw = gateway(&format!("uploads-{short}"), d, upstream, None);
        let client = if foolscap_front {
            foolscap_client(&gw.furl)
        } else {
            gbs_client(&gw.nurl)
        };
        rt.block_on(client.version()).expect("version");
        settle();
        let (base, _) = rss_kib(gw.pid());
        let n = plan.concurrent_uploads;
        eprintln!("scale: {n} concurrent uploads through {name}");
        let sis: Vec<StorageIndex> = (0..n).map(|_| random_si()).collect();
        let half = Bytes::from(vec![5u8; 32 * 1024]);
        let us = secret(b'u');
        rt.block_on(async {
            stream::iter(&sis)
                .for_each_concurrent(n, |si| {
                    let (client, half, us) = (&client, half.clone(), &us);
                    async move {
                        client
                            .allocate_buckets(AllocateRequest {
                                storage_index: *si,
                                lease: lease(),
                                upload_secret: us.clone(),
                                share_numbers: [0].into_iter().collect(),
                                allocated_size: 64 * 1024,
                            })
                            .await
                            .expect("allocate");
                        let p = client
                            .write_immutable(*si, 0, us, 0, half)
                            .await
                            .expect("first half");
                        assert!(!p.complete());
                    }
                })
                .await;
        });
        // Every upload is open now.
        let (open, _) = rss_kib(gw.pid());
        rt.block_on(async {
            stream::iter(&sis)
                .for_each_concurrent(n, |si| {
                    let (client, half, us) = (&client, half.clone(), &us);
                    async move {
                        let p = client
                            .write_immutable(*si, 0, us, 32 * 1024, half)
                            .await
                            .expect("second half");
                        assert!(p.complete());
                    }
                })
                .await;
        });
        let (_, peak) = rss_kib(gw.pid());
        let case = format!("{n} concurrent uploads, {name}");
        report.add("scale", &case, "RSS before", "MiB", mib(base));
        report.add("scale", &case, "RSS with all open", "MiB", mib(open));
        report.add("scale", &case, "peak RSS", "MiB", mib(peak));
    }

    // Idle Foolscap connections to one gateway.
    {
        let gw = gateway("idle", d, &up.nurl, None);
        let n = plan.idle_connections;
        let furl = swampgate::foolscap::Furl::parse(&gw.furl).unwrap();
        let first = rt.block_on(connect_tub(&furl));
        settle();
        let (before, _) = rss_kib(gw.pid());
        let fds_before = fd_count(gw.pid());
        eprintln!("scale: {n} idle Foolscap connections");
        let t = Instant::now();
        let held: Vec<_> = rt.block_on(
            stream::iter(1..n)
                .map(|_| connect_tub(&furl))
                .buffer_unordered(64)
                .collect(),
        );
        let setup = t.elapsed();
        settle();
        let (after, peak) = rss_kib(gw.pid());
        let fds = fd_count(gw.pid()) - fds_before;
        assert!(
            fds + 1 >= n,
            "the gateway holds {fds} more descriptors, not {}",
            n - 1
        );
        // Every connection still answers.
        let alive = rt.block_on(async {
            stream::iter(held.iter())
                .map(|(_, r)| async move { r.call("get_version", &[]).await.is_ok() })
                .buffer_unordered(64)
                .filter(|ok| std::future::ready(*ok))
                .count()
                .await
        });
        assert_eq!(alive, n - 1, "connections that answered");
        let case = format!("{n} idle Foolscap connections");
        report.add("scale", &case, "RSS with one", "MiB", mib(before));
        report.add("scale", &case, "RSS with all", "MiB", mib(after));
        report.add("scale", &case, "peak RSS", "MiB", mib(peak));
        report.add(
            "scale",
            &case,
            "RSS per connection",
            "KiB",
            (after.saturating_sub(before)) as f64 / (n - 1) as f64,
        );
        report.add(
            "scale",
            &case,
            "connect rate",
            "conn/s",
            (n - 1) as f64 / setup.as_secs_f64(),
        );
        drop((held, first));
    }

    // Peak RSS for one share, small then large, through each direction.
    let data = bulk_data();
    for (name, short, upstream, foolscap_front) in [
        ("F→H bridge", "fh", &up.nurl, true),
        ("H→F bridge", "hf", &up.furl, false),
    ] {
        let gw = gateway(&format!("share-{short}"), d, upstream, None);
        let client = if foolscap_front {
            foolscap_client(&gw.furl)
        } else {
            gbs_client(&gw.nurl)
        };
        for size in [plan.share_sizes.0, plan.share_sizes.1] {
            eprintln!("scale: one {} MiB share through {name}", size / MIB);
            let si = random_si();
            rt.block_on(bulk(&client, si, 1, size, &data));
            drop_shares(&d.join("upstream-state/store"), si);
            let (_, peak) = rss_kib(gw.pid());
            report.add(
                "scale",
                &format!("one share, {name}"),
                &format!("peak RSS after {} MiB", size / MIB),
                "MiB",
                mib(peak),
            );
        }
    }
    drop(up);
}

async fn connect_tub(furl: &swampgate::foolscap::Furl) -> (Tub, swampgate::foolscap::RemoteRef) {
    let tub = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
    let r = tub.get_reference(furl).await.expect("connecting");
    (tub, r)
}

/// A Tahoe measurement: its name, the client node, and the processes (label, pid)
/// whose CPU per MB is reported besides the client's.
type TahoeCase<'a> = (&'a str, &'a ClientNode, Vec<(&'a str, u32)>);

/// HTTP/1.0 request to a Tahoe client's web API; the response body if 200/201.
fn web(port: u16, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let (status, resp) = http(port, method, path, &[], body, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert!(
        status == 200 || status == 201,
        "{method} {path}: status {status}: {}",
        String::from_utf8_lossy(&resp)
    );
    resp
}

/// Real Tahoe: one storage node, swampgate bridging to it in each direction
/// (adopting its identity), swampgate's embedded store as a server, and one client
/// node per path with identical settings. Each client puts then gets the same amount
/// of fresh data through the web API.
pub fn tahoe(plan: &Plan, report: &mut Report) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (node, sg) = join(
        || {
            storage_node(StorageOptions {
                nickname: "bench-storage".into(),
                ..StorageOptions::default()
            })
        },
        || gateway("server", w, "local:store", None),
    );
    let fh = gateway("tahoe-f-to-h", w, node.nurl(), Some(node.dir()));
    let hf = gateway("tahoe-h-to-f", w, node.furl(), Some(node.dir()));
    let via = |furl: &str, nurls: Vec<String>| StaticServer {
        furl: furl.to_owned(),
        nurls,
        ..node.static_server()
    };
    let server = StaticServer {
        server_id: "v0-swampgate-bench".into(),
        nickname: Some("swampgate".into()),
        furl: sg.furl.clone(),
        nurls: vec![],
        permutation_seed: None,
    };
    let client = |nick: &str, force_foolscap: bool, s: StaticServer| {
        let nickname = nick.to_owned();
        move || {
            client_node(ClientOptions {
                nickname,
                force_foolscap,
                servers: vec![s],
                ..ClientOptions::default()
            })
        }
    };
    eprintln!("tahoe: starting six client nodes");
    let ((fd, ft), (hd, (ht, (fs, hs)))) = join(
        || {
            join(
                client("f-direct", true, node.static_server()),
                client("f-through", true, via(&fh.furl, vec![])),
            )
        },
        || {
            join(client("h-direct", false, node.static_server()), || {
                join(
                    client("h-through", false, via(&hf.furl, vec![hf.nurl.clone()])),
                    || {
                        join(
                            client("f-swampgate", true, server.clone()),
                            client(
                                "h-swampgate",
                                false,
                                StaticServer {
                                    nurls: vec![sg.nurl.clone()],
                                    ..server.clone()
                                },
                            ),
                        )
                    },
                )
            })
        },
    );
    let node_pid = node.process().pid();
    // (case, client, processes whose CPU per MB is reported)
    let cases: [TahoeCase; 6] = [
        ("Foolscap client → node", &fd, vec![("node", node_pid)]),
        (
            "Foolscap client → F→H → node",
            &ft,
            vec![("swampgate", fh.pid()), ("node", node_pid)],
        ),
        ("HTTP client → node", &hd, vec![("node", node_pid)]),
        (
            "HTTP client → H→F → node",
            &ht,
            vec![("swampgate", hf.pid()), ("node", node_pid)],
        ),
        (
            "Foolscap client → swampgate store",
            &fs,
            vec![("swampgate", sg.pid())],
        ),
        (
            "HTTP client → swampgate store",
            &hs,
            vec![("swampgate", sg.pid())],
        ),
    ];
    let n = plan.tahoe_bytes;
    let mb = n as f64 / 1e6;
    settle();
    for rep in 0..plan.tahoe_reps {
        for (name, c, procs) in &cases {
            eprintln!("tahoe {name} rep {rep}");
            let mut data = vec![0u8; n];
            rand::thread_rng().fill_bytes(&mut data);
            let pids: Vec<u32> = std::iter::once(c.process().pid())
                .chain(procs.iter().map(|p| p.1))
                .collect();
            let cpu0: Vec<f64> = pids.iter().map(|&p| group_cpu_secs(p)).collect();
            let t = Instant::now();
            let cap = String::from_utf8(web(c.web_port(), "PUT", "/uri", &data)).unwrap();
            let put = t.elapsed();
            assert!(cap.starts_with("URI:CHK:"), "{cap}");
            let t = Instant::now();
            let got = web(c.web_port(), "GET", &format!("/uri/{cap}"), &[]);
            let get = t.elapsed();
            assert!(got == data, "{name}: downloaded bytes differ");
            let cpu1: Vec<f64> = pids.iter().map(|&p| group_cpu_secs(p)).collect();
            let g = "tahoe";
            report.add(g, name, "put", "MB/s", mb / put.as_secs_f64());
            report.add(g, name, "get", "MB/s", mb / get.as_secs_f64());
            report.add(g, name, "put time", "s", put.as_secs_f64());
            report.add(g, name, "get time", "s", get.as_secs_f64());
            let who = std::iter::once("client").chain(procs.iter().map(|p| p.0));
            for (i, label) in who.enumerate() {
                report.add(
                    g,
                    name,
                    &format!("{label} CPU"),
                    "ms/MB",
                    (cpu1[i] - cpu0[i]) * 1e3 / (2.0 * mb),
                );
            }
        }
    }

    // get_version calls per second, Tahoe's node vs swampgate's store, same client.
    let rt = runtime();
    let _g = rt.enter();
    for (name, client) in [
        ("Foolscap → node", foolscap_client(node.furl())),
        ("Foolscap → swampgate store", foolscap_client(&sg.furl)),
        ("HTTP → node", gbs_client(node.nurl())),
        ("HTTP → swampgate store", gbs_client(&sg.nurl)),
    ] {
        eprintln!("tahoe: get_version rate {name}");
        for _ in 0..plan.tahoe_reps {
            let rate = rt.block_on(version_rate(&client, Duration::from_secs(plan.rate_secs)));
            report.add("get_version rate", name, "calls", "calls/s", rate);
        }
    }
    drop(cases);
    drop((fd, ft, hd, ht, fs, hs, fh, hf, sg, node));
}

/// get_version calls per second with 8 in flight, for `d`.
async fn version_rate(client: &Client, d: Duration) -> f64 {
    client.version().await.expect("version");
    let t = Instant::now();
    let n = std::sync::atomic::AtomicU64::new(0);
    futures_util::future::join_all((0..8).map(|_| async {
        while t.elapsed() < d {
            client.version().await.expect("version");
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }))
    .await;
    n.into_inner() as f64 / t.elapsed().as_secs_f64()
}

/// The targets, against the medians of this run.
pub fn verdicts(plan: &Plan, r: &mut Report) {
    let g = |r: &Report, group: &str, case: &str, metric: &str| {
        r.get(group, case, metric).unwrap_or(f64::NAN)
    };
    if plan.runs("bulk") {
        let relay = g(r, "bulk", "TLS relay (HTTP)", "up+down");
        for b in ["F→H bridge", "H→F bridge"] {
            let v = g(r, "bulk", b, "up+down");
            r.verdict(
                &format!("{b} bulk ≥ 80% of the TLS relay"),
                format!("{:.0} vs {:.0} MB/s = {:.0}%", v, relay, 100.0 * v / relay),
                v >= 0.8 * relay,
            );
            let cpu = g(r, "bulk", b, "middle CPU");
            r.verdict(
                &format!("{b}: swampgate CPU ≤ 1 ms per MB bridged"),
                format!("{cpu:.2} ms/MB"),
                cpu <= 1.0,
            );
        }
    }
    if plan.runs("bulk") {
        for (a, b) in [(ACCOUNTED_FH, "F→H bridge"), (ACCOUNTED_HF, "H→F bridge")] {
            let (va, vb) = (g(r, "bulk", a, "up+down"), g(r, "bulk", b, "up+down"));
            r.verdict(
                &format!("{a}: accounting costs ≤ 5% of bridged throughput"),
                format!("{va:.0} vs {vb:.0} MB/s = {:.1}%", 100.0 * va / vb),
                va >= 0.95 * vb,
            );
        }
    }
    if plan.runs("latency") {
        for a in [ACCOUNTED_FH, ACCOUNTED_HF] {
            for op in ["get_version", "slot_readv 100 B", "add_lease"] {
                let p50 = g(r, "latency", a, &format!("{op} added p50"));
                r.verdict(
                    &format!("{a} {op}: accounting adds ≤ 20 µs p50"),
                    format!("{p50:.1} µs"),
                    p50 <= 20.0,
                );
            }
        }
        for b in ["F→H bridge", "H→F bridge"] {
            for op in ["get_version", "slot_readv 100 B", "add_lease"] {
                let p50 = g(r, "latency", b, &format!("{op} added p50"));
                let p99 = g(r, "latency", b, &format!("{op} added p99"));
                r.verdict(
                    &format!("{b} {op}: added p50 ≤ 100 µs, p99 ≤ 500 µs"),
                    format!("{p50:.0} µs, {p99:.0} µs"),
                    p50 <= 100.0 && p99 <= 500.0,
                );
            }
        }
    }
    if plan.runs("scale") {
        for b in ["F→H bridge", "H→F bridge"] {
            let case = format!("{} concurrent uploads, {b}", plan.concurrent_uploads);
            let peak = g(r, "scale", &case, "peak RSS");
            r.verdict(
                &format!(
                    "{b}: ≤ 256 MiB at {} concurrent uploads",
                    plan.concurrent_uploads
                ),
                format!("{peak:.0} MiB"),
                peak <= 256.0,
            );
            let case = format!("one share, {b}");
            let small = g(
                r,
                "scale",
                &case,
                &format!("peak RSS after {} MiB", plan.share_sizes.0 / MIB),
            );
            let large = g(
                r,
                "scale",
                &case,
                &format!("peak RSS after {} MiB", plan.share_sizes.1 / MIB),
            );
            r.verdict(
                &format!("{b}: RSS flat in share size (grows < 8 MiB)"),
                format!(
                    "{small:.0} MiB after {} MiB, {large:.0} MiB after {} MiB",
                    plan.share_sizes.0 / MIB,
                    plan.share_sizes.1 / MIB
                ),
                large - small < 8.0,
            );
        }
        let per = g(
            r,
            "scale",
            &format!("{} idle Foolscap connections", plan.idle_connections),
            "RSS per connection",
        );
        r.verdict(
            "≤ 16 KiB per idle Foolscap connection",
            format!("{per:.1} KiB"),
            per <= 16.0,
        );
    }
    if plan.runs("tahoe") {
        for (through, direct) in [
            ("Foolscap client → F→H → node", "Foolscap client → node"),
            ("HTTP client → H→F → node", "HTTP client → node"),
        ] {
            for m in ["put time", "get time"] {
                let ratio = g(r, "tahoe", through, m) / g(r, "tahoe", direct, m);
                r.verdict(
                    &format!("Tahoe {m} through the bridge within 5% of direct ({through})"),
                    format!("ratio {ratio:.3}"),
                    ratio <= 1.05,
                );
            }
        }
        for (sg, node) in [
            (
                "Foolscap client → swampgate store",
                "Foolscap client → node",
            ),
            ("HTTP client → swampgate store", "HTTP client → node"),
        ] {
            let a = g(r, "tahoe", node, "node CPU");
            let b = g(r, "tahoe", sg, "swampgate CPU");
            r.verdict(
                &format!("as a server: ≥ 3× less CPU per MB than Tahoe's node ({sg})"),
                format!("{b:.2} vs {a:.2} ms/MB = {:.1}×", a / b),
                a / b >= 3.0,
            );
        }
        for (sg, node) in [
            ("Foolscap → swampgate store", "Foolscap → node"),
            ("HTTP → swampgate store", "HTTP → node"),
        ] {
            let a = g(r, "get_version rate", node, "calls");
            let b = g(r, "get_version rate", sg, "calls");
            r.verdict(
                &format!("as a server: ≥ 5× get_version calls/s ({sg})"),
                format!("{b:.0} vs {a:.0} calls/s = {:.1}×", b / a),
                b / a >= 5.0,
            );
        }
    }
}
