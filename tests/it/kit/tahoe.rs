//! Real Tahoe-LAFS nodes (storage, client, introducer) on 127.0.0.1.
//!
//! Each node gets its own temp dir holding the node dir (`<tmp>/<nickname>`), the
//! node's spec (`<tmp>/<nickname>.json`) and a `logs/` dir with the stdout/stderr of
//! every process run for it. One Python process per node,
//! `tests/interop/tahoe_node.py SPEC`, runs Tahoe's own
//! `create-node|create-client|create-introducer` with explicit loopback ports,
//! applies the spec's `tahoe.cfg` settings and private files (`servers.yaml`), then
//! `tahoe run --allow-stdin-close` with the log Tub kept on loopback. Dropping the
//! node stops the process, then deletes the temp dir (kept if `SWAMPGATE_KEEP_NODES`
//! is set).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::process::{self, Finished, Process};
use super::{free_port, http_get, interop_dir, venv, venv_of, Release};

/// How long a node may take from `tahoe run` to ready (2 cores, parallel tests).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Upper bound for one `tahoe` CLI command (put, get, ...) or helper script run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(180);

/// Set (to anything) to keep node temp dirs after the test; their paths are printed.
pub const KEEP_ENV: &str = "SWAMPGATE_KEEP_NODES";

const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------
// Storage node

/// Options for [`storage_node`]. `StorageOptions::default()` is Tahoe's default: one
/// port serving Foolscap and HTTPS (GBS), announcing a FURL and a NURL.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// `[node] nickname`; also names the node dir and logs.
    pub nickname: String,
    /// `[storage] force_foolscap = true`: Foolscap only, no NURL announced.
    pub force_foolscap: bool,
    /// Introducer FURL to announce to (`--introducer`); none by default.
    pub introducer: Option<String>,
    /// Run the web UI on a loopback port (default: `--webport=none`).
    pub web: bool,
    /// Extra `(section, key, value)` settings for `tahoe.cfg`.
    pub config: Vec<(String, String, String)>,
    /// The Tahoe-LAFS release to run (1.20 by default). A 1.18 node speaks
    /// Foolscap only, whatever `force_foolscap` says.
    pub release: Release,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            nickname: "storage".into(),
            force_foolscap: false,
            introducer: None,
            web: false,
            config: Vec::new(),
            release: Release::V1_20,
        }
    }
}

impl StorageOptions {
    /// A storage node with `[storage] force_foolscap = true`.
    pub fn foolscap_only() -> Self {
        StorageOptions {
            nickname: "storage-foolscap".into(),
            force_foolscap: true,
            ..Self::default()
        }
    }
}

/// A running Tahoe storage node (see [`storage_node`]).
#[derive(Debug)]
pub struct StorageNode {
    base: NodeBase,
    port: u16,
    web_port: Option<u16>,
    force_foolscap: bool,
    furl: String,
    server_id: String,
    permutation_seed: String,
    nurls: OnceLock<Vec<String>>,
}

/// Creates and starts a storage node and waits until it serves: `private/storage.furl`
/// is written and its port accepts connections. `reserved_space = 0`, so it works on
/// any disk. Panics (with log tails) if it does not come up within [`STARTUP_TIMEOUT`].
pub fn storage_node(opts: StorageOptions) -> StorageNode {
    let port = free_port();
    let web_port = opts.web.then(free_port);
    let mut args = vec![
        format!("--nickname={}", opts.nickname),
        "--listen=tcp".into(),
        format!("--port=tcp:{port}:interface=127.0.0.1"),
        format!("--location=tcp:127.0.0.1:{port}"),
        match web_port {
            Some(w) => format!("--webport=tcp:{w}:interface=127.0.0.1"),
            None => "--webport=none".into(),
        },
    ];
    if let Some(furl) = &opts.introducer {
        args.push(format!("--introducer={furl}"));
    }
    let mut config = vec![setting("storage", "reserved_space", "0")];
    if opts.release.speaks_http() {
        config.push(setting(
            "storage",
            "force_foolscap",
            bool_str(opts.force_foolscap),
        ));
    }
    config.extend(opts.config.iter().cloned());
    let mut base = NodeBase::launch(
        opts.release,
        &opts.nickname,
        "create-node",
        args,
        config,
        Vec::new(),
    );
    let furl = wait_storage_ready(&mut base, port, web_port);
    // Both written by Tahoe before storage.furl (client init, then init_storage).
    let pubkey = base.read("node.pubkey");
    let server_id = match pubkey.trim().strip_prefix("pub-") {
        Some(id) => id.to_owned(),
        None => base.fail(&format!("node.pubkey is not `pub-v0-...`: {pubkey:?}")),
    };
    let permutation_seed = base.read("permutation-seed").trim().to_owned();
    StorageNode {
        base,
        port,
        web_port,
        force_foolscap: opts.force_foolscap || !opts.release.speaks_http(),
        furl,
        server_id,
        permutation_seed,
        nurls: OnceLock::new(),
    }
}

/// Waits until the storage node serves; returns its FURL.
fn wait_storage_ready(base: &mut NodeBase, port: u16, web_port: Option<u16>) -> String {
    let furl_path = base.dir.join("private/storage.furl");
    base.wait_until(
        "private/storage.furl written and the storage port accepting",
        || {
            complete_furl(&furl_path).is_some()
                && port_accepts(port)
                && web_port.is_none_or(port_accepts)
        },
    );
    complete_furl(&furl_path).expect("checked above")
}

impl StorageNode {
    /// Stops the node and starts it again from the same node dir (same identity,
    /// port, FURL and NURL); waits until it serves again.
    pub fn restart(&mut self) {
        // storage.furl stays: Foolscap reuses its swissnum, then rewrites it.
        self.base.relaunch();
        let furl = wait_storage_ready(&mut self.base, self.port, self.web_port);
        assert_eq!(
            furl,
            self.furl,
            "{} changed its FURL on restart",
            self.nickname()
        );
    }

    /// The node directory.
    pub fn dir(&self) -> &Path {
        &self.base.dir
    }

    /// `[node] nickname`.
    pub fn nickname(&self) -> &str {
        &self.base.name
    }

    /// The Tub port: Foolscap, and HTTPS too unless `force_foolscap`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The storage FURL, from `private/storage.furl`
    /// (`pb://TUBID@tcp:127.0.0.1:PORT/SWISSNUM`).
    pub fn furl(&self) -> &str {
        &self.furl
    }

    /// The FURL's tubid (base32 of sha1 of the DER certificate in `node.pem`).
    pub fn tubid(&self) -> &str {
        let rest = self
            .furl
            .strip_prefix("pb://")
            .expect("FURL starts with pb://");
        rest.split('@').next().expect("split yields one item")
    }

    /// The FURL's swissnum (shared with the NURL).
    pub fn swissnum(&self) -> &str {
        self.furl
            .rsplit('/')
            .next()
            .expect("rsplit yields one item")
    }

    /// The NURLs Tahoe announces for this node, derived by Tahoe's own
    /// `build_nurl` (see `tests/interop/node_nurl.py`); empty if `force_foolscap`.
    /// Computed on first use (one Python run).
    pub fn nurls(&self) -> &[String] {
        self.nurls.get_or_init(|| {
            if self.force_foolscap {
                return Vec::new();
            }
            let stdout = run_python_script("node_nurl.py", [self.dir()], &self.base.logs);
            stdout.lines().map(str::to_owned).collect()
        })
    }

    /// The node's NURL (`pb://SPKI-HASH@127.0.0.1:PORT/SWISSNUM#v=1`). Panics for a
    /// `force_foolscap` node, which announces none.
    pub fn nurl(&self) -> &str {
        match self.nurls() {
            [nurl] => nurl,
            [] => panic!(
                "{} runs with [storage] force_foolscap = true: Tahoe announces no NURL",
                self.nickname()
            ),
            many => panic!("{} has several NURLs: {many:?}", self.nickname()),
        }
    }

    /// Points the node at the introducer `furl` from its next start: writes
    /// `private/introducers.yaml` as `tahoe create-node --introducer` does. Call
    /// [`StorageNode::restart`] to apply it.
    pub fn set_introducer(&self, furl: &str) {
        let yaml = json!({ "introducers": { "default": { "furl": furl } } });
        let path = self.dir().join("private/introducers.yaml");
        fs::write(&path, yaml.to_string())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Path of `private/node.pem` (the Tub's private key and certificate).
    pub fn node_pem(&self) -> PathBuf {
        self.dir().join("private/node.pem")
    }

    /// The share directory, `storage/shares` (created by Tahoe on first write).
    pub fn shares_dir(&self) -> PathBuf {
        self.dir().join("storage/shares")
    }

    /// Where Tahoe keeps shares being uploaded, `storage/shares/incoming`
    /// (`incoming/PREFIX/SI/SHNUM`); a share moves to `shares/PREFIX/SI/SHNUM` when
    /// its writer is closed, and is deleted when the upload is aborted. Tahoe empties
    /// it when the node starts.
    pub fn incoming_dir(&self) -> PathBuf {
        self.shares_dir().join("incoming")
    }

    /// The server id clients know this node by: `v0-` + base32 of its Ed25519
    /// public key (`node.pubkey` without `pub-`), the key of its announcements.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The announced `permutation-seed-base32` (file `permutation-seed`).
    pub fn permutation_seed(&self) -> &str {
        &self.permutation_seed
    }

    /// This node as a `servers.yaml` entry, with exactly what it would announce.
    pub fn static_server(&self) -> StaticServer {
        StaticServer {
            server_id: self.server_id.clone(),
            nickname: Some(self.nickname().to_owned()),
            furl: self.furl.clone(),
            nurls: self.nurls().to_vec(),
            permutation_seed: Some(self.permutation_seed.clone()),
        }
    }

    /// The `tahoe run` process.
    pub fn process(&self) -> &Process {
        self.base.process()
    }

    /// Tails of the node's stdout/stderr.
    pub fn log_tail(&self) -> String {
        self.base.process().log_tail()
    }

    /// Stops the node now (also done on drop); the node dir stays until drop.
    pub fn stop(&mut self) {
        self.base.stop();
    }
}

// ---------------------------------------------------------------------------------
// Client node

/// One `servers.yaml` entry: a storage server a client uses without an introducer.
///
/// Tahoe 1.20 reads `private/servers.yaml` as
/// `{storage: {SERVER_ID: {ann: ANNOUNCEMENT}}}` and makes the announcement an
/// HTTP server if it has `anonymous-storage-NURLs` and `[client] force_foolscap`
/// is false, a Foolscap one otherwise. Either way it needs `anonymous-storage-FURL`:
/// the FURL's tubid seeds lease secrets and write enablers, even over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticServer {
    /// The key; for a real node `v0-<base32 Ed25519 key>` ([`StorageNode::server_id`]).
    /// Any string works, but without `permutation_seed` a non-`v0-` id is hashed.
    pub server_id: String,
    pub nickname: Option<String>,
    /// `anonymous-storage-FURL` (required).
    pub furl: String,
    /// `anonymous-storage-NURLs`; empty means Foolscap.
    pub nurls: Vec<String>,
    /// `permutation-seed-base32`; if absent Tahoe derives one from `server_id`.
    pub permutation_seed: Option<String>,
}

impl StaticServer {
    /// The `ann` dict of this entry.
    pub fn announcement(&self) -> Value {
        let mut ann = json!({ "anonymous-storage-FURL": self.furl });
        if let Some(nickname) = &self.nickname {
            ann["nickname"] = json!(nickname);
        }
        if !self.nurls.is_empty() {
            ann["anonymous-storage-NURLs"] = json!(self.nurls);
        }
        if let Some(seed) = &self.permutation_seed {
            ann["permutation-seed-base32"] = json!(seed);
        }
        ann
    }
}

/// The text of a `servers.yaml` for these servers (JSON, which YAML reads).
pub fn servers_yaml(servers: &[StaticServer]) -> String {
    let mut storage = serde_json::Map::new();
    for server in servers {
        let entry = json!({ "ann": server.announcement() });
        if storage.insert(server.server_id.clone(), entry).is_some() {
            panic!("two static servers with id {}", server.server_id);
        }
    }
    serde_json::to_string_pretty(&json!({ "storage": storage })).expect("JSON") + "\n"
}

/// Options for [`client_node`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `[node] nickname`; also names the node dir and logs.
    pub nickname: String,
    /// `[client] force_foolscap`: use Foolscap even for servers announcing NURLs.
    pub force_foolscap: bool,
    /// Written to `private/servers.yaml`.
    pub servers: Vec<StaticServer>,
    /// Introducer FURL (`--introducer`); none by default.
    pub introducer: Option<String>,
    /// `[client] shares.needed`, `shares.happy`, `shares.total` (default 1/1/1).
    pub shares_needed: u32,
    pub shares_happy: u32,
    pub shares_total: u32,
    /// Wait (in `client_node`) until every static server is connected (default true).
    pub wait_for_servers: bool,
    /// Extra `(section, key, value)` settings for `tahoe.cfg`.
    pub config: Vec<(String, String, String)>,
    /// The Tahoe-LAFS release to run (1.20 by default). A 1.18 client speaks
    /// Foolscap only, whatever `force_foolscap` says.
    pub release: Release,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            nickname: "client".into(),
            force_foolscap: false,
            servers: Vec::new(),
            introducer: None,
            shares_needed: 1,
            shares_happy: 1,
            shares_total: 1,
            wait_for_servers: true,
            config: Vec::new(),
            release: Release::V1_20,
        }
    }
}

/// A running Tahoe client node (see [`client_node`]).
#[derive(Debug)]
pub struct ClientNode {
    base: NodeBase,
    web_port: u16,
    /// The static servers to wait for after a (re)start; empty if not waiting.
    wait_for: Vec<String>,
}

/// One row of the client's welcome page JSON (`GET /?t=json`, `servers`).
#[derive(Clone, Debug)]
pub struct ServerStatus {
    pub server_id: String,
    /// Read only through `Debug`, in the messages of failed waits.
    #[allow(dead_code)]
    pub nickname: String,
    /// Tahoe's summary: Foolscap says `Connected to tcp:HOST:PORT via tcp`, HTTP says
    /// `connected`; otherwise e.g. `Trying to connect`, `failure: ...`.
    pub summary: String,
}

impl ServerStatus {
    /// True if Tahoe considers the server connected.
    pub fn connected(&self) -> bool {
        self.summary.to_ascii_lowercase().starts_with("connected")
    }
}

/// Creates and starts a client node (`tahoe create-client`, no storage, no Tub
/// listener, web API on a loopback port), with `opts.servers` in
/// `private/servers.yaml`. Waits until the web API answers and, if
/// `opts.wait_for_servers`, until every static server is connected.
pub fn client_node(opts: ClientOptions) -> ClientNode {
    let web_port = free_port();
    let mut args = vec![
        format!("--nickname={}", opts.nickname),
        format!("--webport=tcp:{web_port}:interface=127.0.0.1"),
        format!("--shares-needed={}", opts.shares_needed),
        format!("--shares-happy={}", opts.shares_happy),
        format!("--shares-total={}", opts.shares_total),
    ];
    if let Some(furl) = &opts.introducer {
        args.push(format!("--introducer={furl}"));
    }
    let mut config = Vec::new();
    if opts.release.speaks_http() {
        config.push(setting(
            "client",
            "force_foolscap",
            bool_str(opts.force_foolscap),
        ));
    }
    config.extend(opts.config.iter().cloned());
    let mut private_files = Vec::new();
    if !opts.servers.is_empty() {
        private_files.push(("servers.yaml".to_owned(), servers_yaml(&opts.servers)));
    }
    let base = NodeBase::launch(
        opts.release,
        &opts.nickname,
        "create-client",
        args,
        config,
        private_files,
    );
    let wait_for = if opts.wait_for_servers {
        opts.servers.iter().map(|s| s.server_id.clone()).collect()
    } else {
        Vec::new()
    };
    let mut client = ClientNode {
        base,
        web_port,
        wait_for,
    };
    client.wait_ready();
    client
}

impl ClientNode {
    /// Waits until the web API answers and, if asked at creation, every static
    /// server is connected.
    fn wait_ready(&mut self) {
        let node_url = self.base.dir.join("node.url");
        let web_port = self.web_port;
        self.base
            .wait_until("the web API listening (node.url written)", || {
                node_url.exists() && port_accepts(web_port)
            });
        let ids: Vec<&str> = self.wait_for.iter().map(String::as_str).collect();
        if !ids.is_empty() {
            self.wait_for_servers(&ids);
        }
    }

    /// Stops the client (if it still runs: it may have been killed) and starts it
    /// again from the same node dir: same web port, same `servers.yaml`. Waits as
    /// [`client_node`] does.
    pub fn restart(&mut self) {
        self.base.relaunch();
        self.wait_ready();
    }

    /// Starts `tahoe -d NODEDIR ARGS...` in the background (e.g. a `put` to
    /// interrupt) and returns its guard; see [`ClientNode::tahoe_output`] for the
    /// blocking form.
    pub fn spawn_tahoe<I, S>(&self, args: I) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (name, cmd) = self.tahoe_command(args);
        Process::spawn(&name, cmd, &self.base.logs)
    }

    /// The node directory.
    pub fn dir(&self) -> &Path {
        &self.base.dir
    }

    /// The web API port on 127.0.0.1.
    pub fn web_port(&self) -> u16 {
        self.web_port
    }

    /// Runs `tahoe -d NODEDIR ARGS...` and returns its stdout. Panics with its
    /// stderr/stdout and the node's log tails if it fails.
    pub fn tahoe<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let done = self.tahoe_output(args);
        if !done.status.success() {
            panic!(
                "{} ({}) failed\n{}{}",
                done.process.name(),
                done.status,
                done.process.log_tail(),
                self.log_tail()
            );
        }
        done.stdout
    }

    /// Runs `tahoe -d NODEDIR ARGS...` and returns how it ended, success or not.
    pub fn tahoe_output<I, S>(&self, args: I) -> Finished
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (name, cmd) = self.tahoe_command(args);
        process::run(&name, cmd, &self.base.logs, CLI_TIMEOUT)
    }

    fn tahoe_command<I, S>(&self, args: I) -> (String, Command)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let name = format!(
            "tahoe {}",
            args.first().map_or("", |a| a.to_str().unwrap_or("?"))
        );
        let mut cmd = venv_of(self.base.release).command("tahoe");
        cmd.arg("-d").arg(self.dir()).args(&args);
        (name, cmd)
    }

    /// The storage servers the client knows, from `GET /?t=json`.
    pub fn server_statuses(&self) -> Vec<ServerStatus> {
        let body = http_get(self.web_port, "/?t=json")
            .unwrap_or_else(|e| self.base.fail(&format!("GET /?t=json: {e}")));
        let doc: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| self.base.fail(&format!("welcome JSON: {e}: {body}")));
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        doc["servers"]
            .as_array()
            .map(|servers| {
                servers
                    .iter()
                    .map(|s| ServerStatus {
                        server_id: text(s, "nodeid"),
                        nickname: text(s, "nickname"),
                        summary: text(s, "connection_status"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until every server in `server_ids` is connected. Panics, with the
    /// statuses and log tails, after [`STARTUP_TIMEOUT`].
    pub fn wait_for_servers(&self, server_ids: &[&str]) {
        let wanted: BTreeSet<&str> = server_ids.iter().copied().collect();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let statuses = self.server_statuses();
            let connected: BTreeSet<&str> = statuses
                .iter()
                .filter(|s| s.connected())
                .map(|s| s.server_id.as_str())
                .collect();
            if wanted.is_subset(&connected) {
                return;
            }
            if Instant::now() >= deadline {
                self.base.fail(&format!(
                    "servers {wanted:?} not all connected within {STARTUP_TIMEOUT:?}: {statuses:#?}"
                ));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The announcements this client received from its introducer, as Tahoe cached
    /// them (`private/introducer_default_cache.yaml`): a list of
    /// `{"key_s": "v0-...", "ann": {...}}`. Empty before the first one arrives.
    pub fn introducer_announcements(&self) -> Vec<Value> {
        let cache = self.dir().join("private/introducer_default_cache.yaml");
        if !cache.exists() {
            return Vec::new();
        }
        let stdout = run_python_script("yaml_to_json.py", [&cache], &self.base.logs);
        match serde_json::from_str(&stdout) {
            Ok(Value::Array(items)) => items,
            Ok(Value::Null) => Vec::new(),
            other => self
                .base
                .fail(&format!("introducer cache as JSON: {other:?}")),
        }
    }

    /// Waits until the introducer cache holds an announcement from `server_id`, and
    /// returns its `ann`.
    pub fn wait_for_announcement(&self, server_id: &str) -> Value {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let found = self
                .introducer_announcements()
                .into_iter()
                .find(|a| a["key_s"].as_str() == Some(server_id));
            if let Some(a) = found {
                return a["ann"].clone();
            }
            if Instant::now() >= deadline {
                self.base
                    .fail(&format!("no announcement from {server_id} cached"));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `tahoe run` process.
    pub fn process(&self) -> &Process {
        self.base.process()
    }

    /// Tails of the node's stdout/stderr.
    pub fn log_tail(&self) -> String {
        self.base.process().log_tail()
    }
}

// ---------------------------------------------------------------------------------
// Introducer

/// A running Tahoe introducer (see [`introducer_node`]).
#[derive(Debug)]
pub struct IntroducerNode {
    base: NodeBase,
    port: u16,
    furl: String,
}

/// Creates and starts a Tahoe 1.20 introducer (no web port) and waits until
/// `private/introducer.furl` is written and its port accepts connections.
pub fn introducer_node() -> IntroducerNode {
    introducer_node_of(Release::V1_20)
}

/// [`introducer_node`] of a given release.
pub fn introducer_node_of(release: Release) -> IntroducerNode {
    let port = free_port();
    let args = vec![
        "--listen=tcp".to_owned(),
        format!("--port=tcp:{port}:interface=127.0.0.1"),
        format!("--location=tcp:127.0.0.1:{port}"),
    ];
    let mut base = NodeBase::launch(
        release,
        "introducer",
        "create-introducer",
        args,
        Vec::new(),
        Vec::new(),
    );
    let furl_path = base.dir.join("private/introducer.furl");
    base.wait_until(
        "private/introducer.furl written and the port accepting",
        || complete_furl(&furl_path).is_some() && port_accepts(port),
    );
    let furl = complete_furl(&furl_path).expect("checked above");
    IntroducerNode { base, port, furl }
}

impl IntroducerNode {
    /// Stops the introducer and starts it again from the same node dir (same
    /// identity, port and FURL); waits until it serves again. Announcements are
    /// not persisted by Tahoe: a restarted introducer knows none until nodes
    /// publish again.
    pub fn restart(&mut self) {
        self.base.relaunch();
        let furl_path = self.base.dir.join("private/introducer.furl");
        let port = self.port;
        self.base
            .wait_until("the introducer port accepting again", || {
                complete_furl(&furl_path).is_some() && port_accepts(port)
            });
        let furl = complete_furl(&furl_path).expect("checked above");
        assert_eq!(
            furl, self.furl,
            "the introducer changed its FURL on restart"
        );
    }

    /// The Tub port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The introducer FURL (`private/introducer.furl`).
    pub fn furl(&self) -> &str {
        &self.furl
    }

    /// The `tahoe run` process.
    pub fn process(&self) -> &Process {
        self.base.process()
    }

    /// Stops the node now (also done on drop); the node dir stays until drop.
    pub fn stop(&mut self) {
        self.base.stop();
    }
}

// ---------------------------------------------------------------------------------
// Python scripts

/// Spawns `tests/interop/SCRIPT ARGS...` with the venv's Python as a guarded
/// process logging to `log_dir`.
pub fn python_script<I, S>(script: &str, args: I, log_dir: &Path) -> Process
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Process::spawn(script, python_command(script, args), log_dir)
}

/// Runs `tests/interop/SCRIPT ARGS...` with the venv's Python to completion
/// (within [`CLI_TIMEOUT`]) and returns its stdout; panics with its logs on failure.
pub fn run_python_script<I, S>(script: &str, args: I, log_dir: &Path) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    process::run_ok(script, python_command(script, args), log_dir, CLI_TIMEOUT)
}

fn python_command<I, S>(script: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let path = interop_dir().join(script);
    assert!(path.is_file(), "no script {}", path.display());
    let mut cmd = venv().command("python");
    cmd.arg(path).args(args);
    cmd
}

// ---------------------------------------------------------------------------------
// Shared node plumbing

/// What every node has: its temp dir, node dir, spec, log dir and process.
#[derive(Debug)]
struct NodeBase {
    release: Release,
    name: String,
    dir: PathBuf,
    logs: PathBuf,
    spec: PathBuf,
    process: Option<Process>,
    /// Dropped after `Drop::drop` has stopped the process.
    _tmp: TempDir,
}

impl NodeBase {
    /// Makes a temp dir, writes the spec for `tests/interop/tahoe_node.py` (create
    /// with `tahoe CREATE ARGS... <tmp>/NAME`, then `config` settings and
    /// `private_files`), and runs it.
    fn launch(
        release: Release,
        name: &str,
        create: &str,
        args: Vec<String>,
        config: Vec<(String, String, String)>,
        private_files: Vec<(String, String)>,
    ) -> NodeBase {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("swampgate-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temp dir for {name}: {e}"));
        if std::env::var_os(KEEP_ENV).is_some() {
            tmp.disable_cleanup(true);
            eprintln!(
                "harness: {name} lives in {} (kept: {KEEP_ENV} is set)",
                tmp.path().display()
            );
        }
        let dir = tmp.path().join(name);
        let spec = tmp.path().join(format!("{name}.json"));
        let create: Vec<String> = std::iter::once(create.to_owned()).chain(args).collect();
        let config: Vec<[String; 3]> = config.into_iter().map(|(s, k, v)| [s, k, v]).collect();
        let private_files: serde_json::Map<String, Value> = private_files
            .into_iter()
            .map(|(name, text)| (name, Value::String(text)))
            .collect();
        let doc = json!({
            "nodedir": dir,
            "create": create,
            "config": config,
            "private_files": private_files,
            // 1.18 has no `tahoe run --allow-stdin-close`.
            "allow_stdin_close": release.speaks_http(),
        });
        fs::write(&spec, serde_json::to_string_pretty(&doc).expect("JSON"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", spec.display()));
        let mut base = NodeBase {
            release,
            name: name.to_owned(),
            dir,
            logs: tmp.path().join("logs"),
            spec,
            process: None,
            _tmp: tmp,
        };
        base.spawn();
        base
    }

    /// Starts the node again from the same spec (`tahoe_node.py` creates a node
    /// only if its dir has no `tahoe.cfg`).
    fn relaunch(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut cmd = venv_of(self.release).command("python");
        cmd.arg(interop_dir().join("tahoe_node.py")).arg(&self.spec);
        self.process = Some(Process::spawn(&self.name, cmd, &self.logs));
    }

    fn process(&self) -> &Process {
        self.process.as_ref().expect("node was started")
    }

    fn stop(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.stop();
        }
    }

    fn read(&self, rel: &str) -> String {
        let path = self.dir.join(rel);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| self.fail(&format!("reading {}: {e}", path.display())))
    }

    /// Polls `ready` until true; panics if the node exits or [`STARTUP_TIMEOUT`] passes.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        loop {
            if ready() {
                return;
            }
            let process = self.process.as_mut().expect("node was started");
            if let Some(status) = process.try_status() {
                self.fail(&format!("exited ({status}) while waiting for: {what}"));
            }
            if started.elapsed() >= STARTUP_TIMEOUT {
                self.fail(&format!("not ready within {STARTUP_TIMEOUT:?}: {what}"));
            }
            thread::sleep(POLL);
        }
    }

    /// Panics with `msg`, the node dir, and the node's log tails.
    fn fail(&self, msg: &str) -> ! {
        let tails = self
            .process
            .as_ref()
            .map(Process::log_tail)
            .unwrap_or_default();
        panic!(
            "tahoe node {} ({}): {msg}\n{tails}",
            self.name,
            self.dir.display()
        )
    }
}

impl Drop for NodeBase {
    fn drop(&mut self) {
        // Stop before the temp dir (a later field) is deleted.
        self.stop();
    }
}

fn setting(section: &str, key: &str, value: &str) -> (String, String, String) {
    (section.to_owned(), key.to_owned(), value.to_owned())
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// The FURL in `path` once Foolscap has written all of it (it writes, not renames).
fn complete_furl(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    (text.starts_with("pb://") && text.ends_with('\n')).then(|| text.trim().to_owned())
}

fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}
