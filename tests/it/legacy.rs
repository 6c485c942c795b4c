//! Older legacy peers: Tahoe-LAFS 1.18.0 with foolscap 21.7.0 (Python 3.10, the
//! foolscap Debian 12 ships), which speak Foolscap only, beside 1.20 nodes and
//! swampgate. Each test runs a 1.18 node in one legacy role: storage node, client,
//! introducer.

use crate::bridge_e2e::{bridge, exercise, get, write};
use crate::introducer_relay::relay_with_port;
use crate::kit::*;

fn legacy_storage(nickname: &str, introducer: Option<&str>) -> StorageNode {
    storage_node(StorageOptions {
        nickname: nickname.into(),
        introducer: introducer.map(str::to_owned),
        release: Release::V1_18,
        ..StorageOptions::default()
    })
}

/// An HTTP-only client (1.20) uses a 1.18 storage node through swampgate (H→F,
/// adopting the node's identity); a 1.18 client talking to the node directly and
/// the bridged client overwrite each other's mutable file, which holds only if
/// swampgate presents the 1.18 node's tubid.
#[test]
fn http_client_uses_a_1_18_node_through_the_bridge() {
    let node = legacy_storage("storage-1.18", None);
    assert!(node.nurls().is_empty(), "1.18 announces no NURL");
    let work = tempfile::tempdir().unwrap();
    let (_sg, furl, nurl) = bridge(node.furl(), node.dir(), work.path());
    let tubid = |f: &str| swampgate::foolscap::Furl::parse(f).unwrap().tubid;
    assert_eq!(tubid(&furl), tubid(node.furl()), "adopted identity");
    let (bridged, direct) = join(
        || {
            client_node(ClientOptions {
                nickname: "bridged-1.20".into(),
                servers: vec![StaticServer {
                    furl: furl.clone(),
                    nurls: vec![nurl.clone()],
                    ..node.static_server()
                }],
                ..ClientOptions::default()
            })
        },
        || {
            client_node(ClientOptions {
                nickname: "direct-1.18".into(),
                servers: vec![node.static_server()],
                release: Release::V1_18,
                ..ClientOptions::default()
            })
        },
    );
    exercise(&bridged, &node, work.path());

    let w = work.path();
    let (a, _) = write(w, "a", 4000, 1);
    let (b, db) = write(w, "b", 4500, 2);
    let (c, dc) = write(w, "c", 5000, 3);
    let cap = direct
        .tahoe(["put".as_ref(), "--mutable".as_ref(), a.as_os_str()])
        .trim()
        .to_string();
    bridged.tahoe(["put".as_ref(), b.as_os_str(), cap.as_ref()]);
    assert_eq!(
        get(&direct, &cap, w, "b.direct"),
        db,
        "1.18 reads 1.20's write"
    );
    direct.tahoe(["put".as_ref(), c.as_os_str(), cap.as_ref()]);
    assert_eq!(
        get(&bridged, &cap, w, "c.bridged"),
        dc,
        "1.20 reads 1.18's write through swampgate"
    );
}

/// A 1.18 client (Foolscap only) uses a storage node reached over GBS through
/// swampgate (F→H, adopting the node's identity).
#[test]
fn client_1_18_uses_a_gbs_node_through_the_bridge() {
    let node = storage_node(StorageOptions::default());
    let work = tempfile::tempdir().unwrap();
    let (_sg, furl, _nurl) = bridge(node.nurl(), node.dir(), work.path());
    let client = client_node(ClientOptions {
        nickname: "client-1.18".into(),
        servers: vec![StaticServer {
            furl,
            nurls: vec![],
            ..node.static_server()
        }],
        release: Release::V1_18,
        ..ClientOptions::default()
    });
    exercise(&client, &node, work.path());
}

/// The introducer relay in front of a 1.18 introducer: a 1.18 storage node
/// publishing upstream and a 1.20 one publishing through swampgate; a 1.18 client
/// on swampgate and a 1.20 client on the upstream each find both servers, and a
/// file crosses between them.
#[test]
fn relay_in_front_of_a_1_18_introducer() {
    let upstream = introducer_node_of(Release::V1_18);
    let dir = tempfile::tempdir().unwrap();
    let (_gate, gate_furl, _) = relay_with_port(upstream.furl(), dir.path());
    let ((legacy, modern), (client_gate, client_direct)) = join(
        || {
            join(
                || legacy_storage("storage-1.18", Some(upstream.furl())),
                || {
                    storage_node(StorageOptions {
                        nickname: "storage-1.20".into(),
                        introducer: Some(gate_furl.clone()),
                        ..StorageOptions::default()
                    })
                },
            )
        },
        || {
            join(
                || {
                    client_node(ClientOptions {
                        nickname: "client-1.18".into(),
                        introducer: Some(gate_furl.clone()),
                        wait_for_servers: false,
                        release: Release::V1_18,
                        ..ClientOptions::default()
                    })
                },
                || {
                    client_node(ClientOptions {
                        nickname: "client-1.20".into(),
                        introducer: Some(upstream.furl().to_owned()),
                        wait_for_servers: false,
                        ..ClientOptions::default()
                    })
                },
            )
        },
    );
    let ids = [legacy.server_id(), modern.server_id()];
    client_gate.wait_for_servers(&ids);
    client_direct.wait_for_servers(&ids);

    let w = dir.path();
    let (src, data) = write(w, "in", 40_000, 7);
    let cap = client_gate
        .tahoe(["put".as_ref(), src.as_os_str()])
        .trim()
        .to_string();
    assert_eq!(get(&client_direct, &cap, w, "out"), data);
}
