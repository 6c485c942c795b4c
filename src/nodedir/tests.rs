use super::*;

pub(crate) const SWISS: &str = "yci4erqgi6kgb3ybym4y3qlox2zawafr";
pub(crate) const SERVER_ID: &str = "v0-4tr4e5ozcgqmqvxszbcbvfmn4seutiwtfrx4k5rzpzf36sxdbwoq";

/// A node dir as Tahoe 1.20 leaves it after its first start, with `cfg` as tahoe.cfg
/// and `hints` in storage.furl.
pub(crate) fn node_dir(cfg: &str, hints: &str) -> (tempfile::TempDir, Identity) {
    let d = tempfile::tempdir().unwrap();
    let id = Identity::generate().unwrap();
    id.save(&d.path().join("private/node.pem")).unwrap();
    std::fs::write(d.path().join("tahoe.cfg"), cfg).unwrap();
    std::fs::write(
        d.path().join("private/storage.furl"),
        format!("pb://{}@{hints}/{SWISS}\n", id.tubid()),
    )
    .unwrap();
    std::fs::write(d.path().join("node.pubkey"), format!("pub-{SERVER_ID}\n")).unwrap();
    std::fs::write(d.path().join("permutation-seed"), "seedseed\n").unwrap();
    (d, id)
}

pub(crate) const CFG: &str = "# -*- mode: conf; coding: utf-8 -*-\n\
    [node]\nnickname = storage1\nweb.port =\ntub.port = tcp:3457:interface=127.0.0.1\n\
    tub.location = tcp:127.0.0.1:3457\n\n[storage]\nenabled = true\nreserved_space = 0\n";

#[test]
fn a_default_node_serves_gbs_with_its_nurl() {
    let (d, id) = node_dir(CFG, "tcp:127.0.0.1:3457");
    let n = NodeDir::load(d.path()).unwrap();
    assert_eq!(n.nickname, "storage1");
    assert_eq!(n.server_id, SERVER_ID);
    assert_eq!(n.permutation_seed, "seedseed");
    assert_eq!(n.tubid(), id.tubid());
    assert_eq!(
        n.furl(),
        format!("pb://{}@tcp:127.0.0.1:3457/{SWISS}", id.tubid())
    );
    let nurls: Vec<String> = n.nurls().iter().map(|u| u.to_string()).collect();
    assert_eq!(
        nurls,
        [format!(
            "pb://{}@127.0.0.1:3457/{SWISS}#v=1",
            id.spki_hash()
        )]
    );
    assert!(n.gbs().served, "{:?}", n.gbs());
    assert_eq!(
        n.tub_port,
        [TubPort::Tcp {
            port: 3457,
            interface: Some("127.0.0.1".into())
        }]
    );
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
}

#[test]
fn force_foolscap_and_old_releases_serve_no_nurl() {
    let cfg = format!("{CFG}force_foolscap = True\n");
    let (d, _) = node_dir(&cfg, "tcp:127.0.0.1:3457");
    let n = NodeDir::load(d.path()).unwrap();
    assert!(n.nurls().is_empty());
    let g = n.gbs();
    assert!(!g.served);
    assert!(g.why.contains("force_foolscap"), "{}", g.why);

    let (d, _) = node_dir(CFG, "tcp:127.0.0.1:3457");
    let n = NodeDir::load_as(d.path(), Release::Before1_19).unwrap();
    assert!(n.nurls().is_empty());
    assert!(!n.gbs().served);
    assert!(n.gbs().why.contains("1.19"));
}

#[test]
fn several_hints_give_a_nurl_per_tcp_and_tor_hint() {
    let cfg = CFG.replace(
        "tub.location = tcp:127.0.0.1:3457",
        "tub.location = tcp:example.org:80,example.net:81,tor:abc.onion:82,i2p:x.i2p",
    );
    let (d, id) = node_dir(
        &cfg,
        "tcp:example.org:80,example.net:81,tor:abc.onion:82,i2p:x.i2p",
    );
    let n = NodeDir::load(d.path()).unwrap();
    let nurls: Vec<String> = n.nurls().iter().map(|u| u.to_string()).collect();
    let h = id.spki_hash();
    assert_eq!(
        nurls,
        [
            format!("pb://{h}@example.org:80/{SWISS}#v=1"),
            format!("pb+tor://{h}@abc.onion:82/{SWISS}#v=1"),
        ]
    );
    assert_eq!(n.dialable_nurl().unwrap().host, "example.org");
    // The FURL keeps the hints verbatim, as Foolscap writes them.
    assert!(n
        .furl()
        .contains("@tcp:example.org:80,example.net:81,tor:abc.onion:82,i2p:x.i2p/"));

    // Only legacy and i2p hints: no NURL, so Foolscap.
    let cfg = CFG.replace(
        "tub.location = tcp:127.0.0.1:3457",
        "tub.location = example.net:81",
    );
    let (d, _) = node_dir(&cfg, "example.net:81");
    let g = NodeDir::load(d.path()).unwrap().gbs();
    assert!(!g.served);
    assert!(g.why.contains("no tcp: or tor: hint"), "{}", g.why);
}

#[test]
fn auto_takes_the_detected_addresses_from_storage_furl() {
    let cfg = CFG.replace(
        "tub.location = tcp:127.0.0.1:3457\n",
        "tub.location = tcp:gw.example:7000,AUTO\n",
    );
    let (d, id) = node_dir(
        &cfg,
        "tcp:gw.example:7000,tcp:10.0.0.5:3457,tcp:127.0.0.1:3457",
    );
    let n = NodeDir::load(d.path()).unwrap();
    assert_eq!(
        n.location,
        [
            "tcp:gw.example:7000",
            "tcp:10.0.0.5:3457",
            "tcp:127.0.0.1:3457"
        ]
    );
    assert_eq!(n.nurls().len(), 3);
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
    assert_eq!(
        n.furl(),
        format!(
            "pb://{}@tcp:gw.example:7000,tcp:10.0.0.5:3457,tcp:127.0.0.1:3457/{SWISS}",
            id.tubid()
        )
    );

    // No tub.location at all is AUTO, and no tub.port is client.port's.
    let cfg = "[node]\nnickname = n\n";
    let (d, _) = node_dir(cfg, "tcp:192.168.1.2:4000,tcp:127.0.0.1:4000");
    std::fs::write(d.path().join("client.port"), "tcp:4000\n").unwrap();
    let n = NodeDir::load(d.path()).unwrap();
    assert_eq!(n.location, ["tcp:192.168.1.2:4000", "tcp:127.0.0.1:4000"]);
    assert_eq!(
        n.tub_port,
        [TubPort::Tcp {
            port: 4000,
            interface: None
        }]
    );
}

#[test]
fn a_location_changed_since_the_last_start_is_warned_about() {
    let (d, _) = node_dir(CFG, "tcp:127.0.0.1:9999");
    let n = NodeDir::load(d.path()).unwrap();
    assert_eq!(n.location, ["tcp:127.0.0.1:3457"]);
    assert_eq!(n.warnings.len(), 1);
    assert!(
        n.warnings[0].contains("has not started since"),
        "{:?}",
        n.warnings
    );
}

#[test]
fn tub_port_forms() {
    assert_eq!(
        parse_tub_port("3456").unwrap(),
        [TubPort::Tcp {
            port: 3456,
            interface: None
        }]
    );
    assert_eq!(
        parse_tub_port(r"tcp:port=3456:interface=\:\:1,listen:tor").unwrap(),
        [
            TubPort::Tcp {
                port: 3456,
                interface: Some("::1".into())
            },
            TubPort::Other("listen:tor".into())
        ]
    );
    assert_eq!(
        parse_tub_port("tcp:3456:backlog=5").unwrap()[0].to_string(),
        "tcp:3456"
    );
    assert!(parse_tub_port("tcp:http").is_err());
    assert!(parse_tub_port("tcp:interface=x").is_err());
    assert!(parse_tub_port("99999").is_err());
}

#[test]
fn tahoe_cfg_is_read_as_python_configparser_reads_it() {
    let p = Path::new("tahoe.cfg");
    let c = TahoeCfg::parse(
        "\u{feff}[node]\nNickName = a # not a comment\n; comment\n# comment\n\
         tub.location = tcp:a:1,\n    tcp:b:2\n[storage]\nforce_foolscap = Yes\nanonymous = off\n",
        p,
    )
    .unwrap();
    assert_eq!(c.get("node", "nickname").unwrap(), "a # not a comment");
    assert_eq!(c.get("node", "tub.location").unwrap(), "tcp:a:1,\ntcp:b:2");
    assert!(c.get_bool("storage", "force_foolscap", false).unwrap());
    assert!(!c.get_bool("storage", "anonymous", true).unwrap());
    assert!(c.get_bool("storage", "enabled", true).unwrap());
    assert!(c.get("client", "x").is_none());
    let c = TahoeCfg::parse("[storage]\nforce_foolscap = maybe\n", p).unwrap();
    let e = c.get_bool("storage", "force_foolscap", false).unwrap_err();
    assert!(e.why.contains("force_foolscap"), "{e}");
    assert!(TahoeCfg::parse("[node\nx = 1\n", p).is_err());
}

/// Each unusable node dir is refused naming the file and what is wrong.
#[test]
fn errors_name_the_file_and_the_problem() {
    let missing = Path::new("/nonexistent/node");
    let e = NodeDir::load(missing).unwrap_err();
    assert_eq!(e.to_string(), "/nonexistent/node: no such directory");

    let d = tempfile::tempdir().unwrap();
    let e = NodeDir::load(d.path()).unwrap_err();
    assert!(
        e.path.ends_with("tahoe.cfg") && e.why.contains("not a Tahoe node"),
        "{e}"
    );

    /// What is wrong, how to make it so, the file named, what the message says.
    type Case<'a> = (&'a str, &'a dyn Fn(&Path), &'a str, &'a str);
    let cases: [Case; 9] = [
        (
            "storage disabled",
            &|d| std::fs::write(d.join("tahoe.cfg"), "[storage]\nenabled = false\n").unwrap(),
            "tahoe.cfg",
            "[storage] enabled is false",
        ),
        (
            "anonymous storage disabled",
            &|d| std::fs::write(d.join("tahoe.cfg"), "[storage]\nanonymous = false\n").unwrap(),
            "tahoe.cfg",
            "[storage] anonymous is false",
        ),
        (
            "a bad boolean",
            &|d| {
                std::fs::write(d.join("tahoe.cfg"), format!("{CFG}force_foolscap = sure\n"))
                    .unwrap()
            },
            "tahoe.cfg",
            "not a boolean",
        ),
        (
            "no listener",
            &|d| std::fs::write(d.join("tahoe.cfg"), "[node]\ntub.port = disabled\n").unwrap(),
            "tahoe.cfg",
            "tub.port is disabled",
        ),
        (
            "no port yet",
            &|d| std::fs::write(d.join("tahoe.cfg"), "[node]\n").unwrap(),
            "tahoe.cfg",
            "client.port is missing",
        ),
        (
            "no storage.furl",
            &|d| std::fs::remove_file(d.join("private/storage.furl")).unwrap(),
            "private/storage.furl",
            "has not started with storage enabled",
        ),
        (
            "an unreadable key",
            &|d| std::fs::write(d.join("private/node.pem"), "garbage").unwrap(),
            "private/node.pem",
            "not a usable node key: no CERTIFICATE block",
        ),
        (
            "another node's storage.furl",
            &|d| {
                std::fs::write(
                    d.join("private/storage.furl"),
                    format!("pb://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@tcp:h:1/{SWISS}\n"),
                )
                .unwrap()
            },
            "private/storage.furl",
            "names tubid",
        ),
        (
            "no node.pubkey",
            &|d| std::fs::remove_file(d.join("node.pubkey")).unwrap(),
            "node.pubkey",
            "",
        ),
    ];
    for (what, spoil, file, says) in cases {
        let (d, _) = node_dir(CFG, "tcp:127.0.0.1:3457");
        spoil(d.path());
        let e = NodeDir::load(d.path()).unwrap_err();
        assert!(e.path.ends_with(file), "{what}: {e}");
        assert!(e.why.contains(says), "{what}: {e}");
    }
}

#[test]
fn from_files_reads_nothing_from_disk() {
    let id = Identity::generate().unwrap();
    let tubid = id.tubid().to_string();
    let pem = id.to_pem();
    let key = || Ok(Identity::from_pem(&pem, "node.pem").unwrap());
    let files = |name: &str| -> std::io::Result<String> {
        match name {
            "tahoe.cfg" => Ok(CFG.into()),
            "private/storage.furl" => Ok(format!("pb://{tubid}@tcp:127.0.0.1:3457/{SWISS}\n")),
            "node.pubkey" => Ok(format!("pub-{SERVER_ID}\n")),
            "permutation-seed" => Ok("seedseed\n".into()),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    };
    let dir = Path::new("/nonexistent/node");
    let n = NodeDir::from_files(dir, Release::V1_19OrLater, files, key).unwrap();
    assert_eq!(n.nickname, "storage1");
    assert_eq!(n.server_id, SERVER_ID);
    assert_eq!(n.tubid(), tubid);
    assert_eq!(n.nurls().len(), 1);
    // A missing file is named under `dir`; the key is not asked for before the
    // configuration is found usable.
    let no_seed = |name: &str| match name {
        "permutation-seed" => Err(std::io::ErrorKind::NotFound.into()),
        n => files(n),
    };
    let e = NodeDir::from_files(dir, Release::V1_19OrLater, no_seed, key).unwrap_err();
    assert_eq!(e.path, "/nonexistent/node/permutation-seed");
    let bad_cfg = |name: &str| match name {
        "tahoe.cfg" => Ok("[storage]\nenabled = false\n".to_string()),
        n => files(n),
    };
    let e = NodeDir::from_files(dir, Release::V1_19OrLater, bad_cfg, || {
        panic!("the key is not read for an unusable configuration")
    })
    .unwrap_err();
    assert!(e.why.contains("enabled is false"), "{e}");
}
