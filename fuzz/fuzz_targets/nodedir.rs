//! What `node:NODEDIR` reads from a Tahoe node directory, from memory
//! (`nodedir::NodeDir::from_files`): `tahoe.cfg` (as Python's configparser reads
//! it), `client.port`, `private/storage.furl`, `node.pubkey`, `permutation-seed`.
//!
//! Byte 0: bit 0 reads the dir as Tahoe before 1.19; bits 1-5 leave out a file
//! (in the order above). The rest: the files' texts, separated by NUL bytes (a
//! text's invalid UTF-8 is replaced). `TUBID` in `storage.furl` stands for the
//! tubid of the node's key (generated once), so FURLs can match it.
//!
//! No panic. A node dir that loads has a `v0-` server id, a non-empty seed, the
//! key's tubid and hints; its FURL and NURLs are built; each NURL carries the
//! key's SPKI hash and the FURL's swissnum; `tub.port` values parse. Also `tahoe.cfg`
//! alone: any value and boolean read, and `parse_tub_port` on each value.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use swampgate::identity::Identity;
use swampgate::nodedir::{parse_tub_port, NodeDir, Release, TahoeCfg};

const FILES: [&str; 5] = [
    "tahoe.cfg",
    "client.port",
    "private/storage.furl",
    "node.pubkey",
    "permutation-seed",
];

fn key_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| Identity::generate().expect("a key").to_pem())
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let pem = key_pem();
    let identity = Identity::from_pem(pem, "node.pem").expect("our key");
    let tubid = identity.tubid().to_string();
    let spki_hash = identity.spki_hash();
    let mut texts: Vec<String> = rest
        .split(|&b| b == 0)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    texts.resize(FILES.len(), String::new());
    if let Some(furl) = texts.get_mut(2) {
        *furl = furl.replace("TUBID", &tubid);
    }
    let release = if ctl & 1 == 0 {
        Release::V1_19OrLater
    } else {
        Release::Before1_19
    };
    let read = |name: &str| -> std::io::Result<String> {
        let i = FILES
            .iter()
            .position(|f| *f == name)
            .unwrap_or_else(|| panic!("an unexpected file {name}"));
        if (ctl >> (1 + i)) & 1 == 1 {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        Ok(texts[i].clone())
    };

    tahoe_cfg(&texts[0]);

    let dir = Path::new("/node");
    let key = || Ok(Identity::from_pem(pem, "node.pem").expect("our key"));
    let n = match NodeDir::from_files(dir, release, read, key) {
        Ok(n) => n,
        Err(e) => {
            assert!(e.path.starts_with("/node/"), "{e}");
            return;
        }
    };
    assert!(n.server_id.starts_with("v0-"));
    assert!(!n.permutation_seed.is_empty());
    assert_eq!(n.permutation_seed.trim(), n.permutation_seed);
    assert_eq!(n.tubid(), tubid);
    assert!(!n.location.is_empty());
    assert!(!n.tub_port.is_empty());
    let furl = n.furl();
    assert!(furl.starts_with(&format!("pb://{tubid}@")));
    assert!(furl.ends_with(&format!("/{}", n.swissnum)));
    let g = n.gbs();
    let nurls = n.nurls();
    assert_eq!(g.served, !nurls.is_empty(), "{}", g.why);
    for u in &nurls {
        assert_eq!(u.spki_hash, spki_hash);
        assert_eq!(u.swissnum, n.swissnum);
        let _ = u.to_string();
    }
    if release == Release::Before1_19 {
        assert!(nurls.is_empty());
    }
    let _ = n.dialable_nurl();
});

fn tahoe_cfg(text: &str) {
    let Ok(cfg) = TahoeCfg::parse(text, Path::new("/node/tahoe.cfg")) else {
        return;
    };
    for (section, key) in [
        ("node", "nickname"),
        ("node", "tub.port"),
        ("node", "tub.location"),
        ("storage", "enabled"),
        ("storage", "anonymous"),
        ("storage", "force_foolscap"),
        ("DEFAULT", "x"),
    ] {
        if let Some(v) = cfg.get(section, key) {
            assert_eq!(v.trim(), v);
            if let Ok(ports) = parse_tub_port(&v) {
                for p in ports {
                    let _ = p.to_string();
                }
            }
        }
        let _ = cfg.get_bool(section, key, true);
    }
}
