//! Older legacy peers, which speak Foolscap only, beside 1.20 nodes and swampgate:
//! Tahoe-LAFS 1.18.0 with foolscap 21.7.0 (Python 3.10, the foolscap Debian 12
//! ships) and 1.17.1 with foolscap 0.13.1 (Python 2.7). Each test runs an old node
//! in one legacy role: storage node, client, introducer.

use crate::bridge_e2e::{bridge, exercise, get, write};
use crate::introducer_relay::relay_with_port;
use crate::kit::*;

fn legacy_storage(release: Release, introducer: Option<&str>) -> StorageNode {
    storage_node(StorageOptions {
        nickname: format!("storage-{}", release.version()),
        introducer: introducer.map(str::to_owned),
        release,
        ..StorageOptions::default()
    })
}

/// An HTTP-only client (1.20) uses an old storage node through swampgate (H→F,
/// adopting the node's identity); an old client talking to the node directly and
/// the bridged client overwrite each other's mutable file, which holds only if
/// swampgate presents the old node's tubid.
fn http_client_uses_an_old_node_through_the_bridge(release: Release) {
    let node = legacy_storage(release, None);
    assert!(node.nurls().is_empty(), "an old node announces no NURL");
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
                nickname: format!("direct-{}", release.version()),
                servers: vec![node.static_server()],
                release,
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
        "the old client reads 1.20's write"
    );
    direct.tahoe(["put".as_ref(), c.as_os_str(), cap.as_ref()]);
    assert_eq!(
        get(&bridged, &cap, w, "c.bridged"),
        dc,
        "1.20 reads the old client's write through swampgate"
    );
}

#[test]
fn http_client_uses_a_1_18_node_through_the_bridge() {
    http_client_uses_an_old_node_through_the_bridge(Release::V1_18);
}

#[test]
fn http_client_uses_a_1_17_node_through_the_bridge() {
    http_client_uses_an_old_node_through_the_bridge(Release::V1_17);
}

/// An old client (Foolscap only) uses a storage node reached over GBS through
/// swampgate (F→H, adopting the node's identity).
fn old_client_uses_a_gbs_node_through_the_bridge(release: Release) {
    let node = storage_node(StorageOptions::default());
    let work = tempfile::tempdir().unwrap();
    let (_sg, furl, _nurl) = bridge(node.nurl(), node.dir(), work.path());
    let client = client_node(ClientOptions {
        nickname: format!("client-{}", release.version()),
        servers: vec![StaticServer {
            furl,
            nurls: vec![],
            ..node.static_server()
        }],
        release,
        ..ClientOptions::default()
    });
    exercise(&client, &node, work.path());
}

#[test]
fn client_1_18_uses_a_gbs_node_through_the_bridge() {
    old_client_uses_a_gbs_node_through_the_bridge(Release::V1_18);
}

#[test]
fn client_1_17_uses_a_gbs_node_through_the_bridge() {
    old_client_uses_a_gbs_node_through_the_bridge(Release::V1_17);
}

/// The introducer relay in front of an old introducer: an old storage node
/// publishing upstream and a 1.20 one publishing through swampgate; an old client
/// on swampgate and a 1.20 client on the upstream each find both servers, and a
/// file crosses between them.
fn relay_in_front_of_an_old_introducer(release: Release) {
    let upstream = introducer_node_of(release);
    let dir = tempfile::tempdir().unwrap();
    let (_gate, gate_furl, _) = relay_with_port(upstream.furl(), dir.path());
    let ((legacy, modern), (client_gate, client_direct)) = join(
        || {
            join(
                || legacy_storage(release, Some(upstream.furl())),
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
                        nickname: format!("client-{}", release.version()),
                        introducer: Some(gate_furl.clone()),
                        wait_for_servers: false,
                        release,
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

#[test]
fn relay_in_front_of_a_1_18_introducer() {
    relay_in_front_of_an_old_introducer(Release::V1_18);
}

#[test]
fn relay_in_front_of_a_1_17_introducer() {
    relay_in_front_of_an_old_introducer(Release::V1_17);
}
