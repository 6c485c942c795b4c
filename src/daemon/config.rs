//! The daemon's configuration: a TOML file (or the embedded default), validated so
//! that every problem is reported with the field it concerns.
//!
//! ```toml
//! listen = "127.0.0.1:7750"        # one port: Foolscap and GBS, told apart by first bytes
//! location = "tcp:127.0.0.1:7750"  # hints put in FURLs (comma-separated); NURLs use the first
//! admin = "127.0.0.1:7751"         # optional: the status page, /metrics, /healthz, /status
//!
//! [[link]]
//! name = "default"
//! upstream = "local:shares"        # local:PATH, a FURL, a NURL ending #v=1, or node:NODEDIR
//! adopt = "/var/lib/tahoe/storage" # optional: serve with that Tahoe node's identity
//!                                  # (implied by node:NODEDIR; refused with local:)
//! trace = "default.trace.jsonl"    # optional: one JSON line per call (relative to the state dir)
//! listen = "0.0.0.0:7760"          # optional: a port of its own (needed to serve another identity)
//! location = "tcp:gate.example:7760" # optional, with listen: the hints of that port
//!
//! [introducer]                     # optional: serve an introducer FURL on the port
//! upstream = "pb://…"              # optional: relay both ways to this Foolscap introducer
//! nickname = "swampgate"           # optional: our nickname towards the upstream
//!
//! [limits]                         # optional: every key has a safe default, see [`Limits`]
//! max_connections = 1024
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::foolscap::furl::{Furl, Hint};
use crate::gbs::nurl::Nurl;

/// The embedded default: one port on loopback, the embedded share store.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7750";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {why}")]
pub struct ConfigError {
    /// The field (or file) at fault, e.g. `link "legacy".upstream` (`link[0].name`
    /// while the link has no valid name).
    pub field: String,
    pub why: String,
}

/// A TOML error of `text`, with its line and column, naming the key when it is
/// inside `[limits]`.
fn toml_error(text: &str, e: toml::de::Error) -> ConfigError {
    let span = e
        .span()
        .map(|s| {
            let (line, column) = line_column(text, s.start);
            format!(" (line {line}, column {column})")
        })
        .unwrap_or_default();
    let field = match e.span() {
        Some(sp) if limits_table_span(text).is_some_and(|t| t.contains(&sp.start)) => {
            key_at(text, sp.start)
                .map(|k| format!("limits.{k}"))
                .unwrap_or_else(|| "limits".into())
        }
        _ => "config".into(),
    };
    cfg_err(field, format!("{}{span}", e.message()))
}

/// The 1-based line and column (in characters) of byte `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    // A span starts on a character boundary; anything else counts to the end.
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Where a value of the configuration came from, so that an error found in it —
/// when the file is read, or at start (a port taken, a trace file that cannot be
/// opened, an upstream that cannot be built) — names it as the operator wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The field (`listen`, `link "legacy".upstream`, `limits.max_connections`), or
    /// the flag that gave the value (`--upstream`); from a file, prefixed with its
    /// path.
    pub field: String,
    pub at: At,
}

/// Where in the config file a value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Not from a file: a flag, the embedded default.
    Nowhere,
    /// The value's line and column (1-based; columns in characters).
    Value { line: usize, column: usize },
    /// Not set, in the `[[link]]` whose name is on this line.
    UnsetInLink { line: usize },
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Nowhere => Ok(()),
            At::Value { line, column } => write!(f, " (line {line}, column {column})"),
            At::UnsetInLink { line } => write!(f, " (not set in the link at line {line})"),
        }
    }
}

impl Origin {
    /// A field not read from a file (the embedded default, a value set by code).
    pub fn field(field: impl Into<String>) -> Origin {
        Origin {
            field: field.into(),
            at: At::Nowhere,
        }
    }

    /// A value given by a command-line flag, e.g. `--upstream`.
    pub fn flag(flag: &str) -> Origin {
        Origin::field(flag)
    }

    /// The value at byte `span` of the config file `text`.
    fn spanned(field: impl Into<String>, text: &str, span: std::ops::Range<usize>) -> Origin {
        let (line, column) = line_column(text, span.start);
        Origin {
            field: field.into(),
            at: At::Value { line, column },
        }
    }

    /// The error `why` of this value: the field, and where it is.
    pub fn error(&self, why: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            field: self.field.clone(),
            why: format!("{why}{}", self.at),
        }
    }

    /// The value named in another's error: `link "a".listen at line 5, column 10`.
    pub fn place(&self) -> String {
        match self.at {
            At::Value { line, column } => format!("{} at line {line}, column {column}", self.field),
            At::Nowhere | At::UnsetInLink { .. } => self.field.clone(),
        }
    }

    /// The same value, read from the file at `path`.
    fn in_file(&mut self, path: &Path) {
        self.field = format!("{}: {}", path.display(), self.field);
    }
}

/// Where each top-level value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origins {
    pub listen: Origin,
    pub location: Origin,
    pub admin: Origin,
    pub introducer_upstream: Origin,
    pub accounting_database: Origin,
}

impl Default for Origins {
    /// The keys' names, from no file.
    fn default() -> Self {
        Origins {
            listen: Origin::field("listen"),
            location: Origin::field("location"),
            admin: Origin::field("admin"),
            introducer_upstream: Origin::field("introducer.upstream"),
            accounting_database: Origin::field("accounting.database"),
        }
    }
}

impl Origins {
    /// `bridge`'s flags.
    pub fn flags() -> Origins {
        Origins {
            listen: Origin::flag("--listen"),
            location: Origin::flag("--location"),
            admin: Origin::flag("--admin"),
            introducer_upstream: Origin::flag("--introducer-upstream"),
            accounting_database: Origin::field("accounting.database"),
        }
    }
}

/// Where each value of a link came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkOrigins {
    pub upstream: Origin,
    /// `adopt`, or the upstream when a `node:` upstream implies the adoption.
    pub adopt: Origin,
    pub trace: Origin,
    pub listen: Origin,
    pub location: Origin,
}

impl LinkOrigins {
    /// The fields of link `name` (`link "NAME".upstream`…), from no file.
    pub fn named(name: &str) -> LinkOrigins {
        let f = |field: &str| Origin::field(format!("link {name:?}.{field}"));
        LinkOrigins {
            upstream: f("upstream"),
            adopt: f("adopt"),
            trace: f("trace"),
            listen: f("listen"),
            location: f("location"),
        }
    }

    /// `bridge`'s link: its values are flags (the link listens on `--listen`).
    pub fn flags() -> LinkOrigins {
        LinkOrigins {
            upstream: Origin::flag("--upstream"),
            adopt: Origin::flag("--adopt"),
            trace: Origin::flag("--trace"),
            listen: Origin::flag("--listen"),
            location: Origin::flag("--location"),
        }
    }

    fn all_mut(&mut self) -> [&mut Origin; 5] {
        [
            &mut self.upstream,
            &mut self.adopt,
            &mut self.trace,
            &mut self.listen,
            &mut self.location,
        ]
    }
}

fn cfg_err(field: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        why: why.into(),
    }
}

/// Where a link's storage operations go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The embedded share store in this directory (relative to the state dir).
    Local(PathBuf),
    /// A Foolscap storage server.
    Foolscap(Furl),
    /// A GBS storage server, by its NURL.
    Gbs(Nurl),
    /// A Tahoe storage node, by its node directory: the daemon reads the node's
    /// FURL and NURL from it at start and picks the protocol (see
    /// `daemon::node_upstream`). Implies adopting the node's identity.
    Node(PathBuf),
}

impl Upstream {
    pub fn parse(s: &str) -> Result<Upstream, String> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix("local:") {
            if p.is_empty() {
                return Err("local: needs a directory, e.g. local:shares".into());
            }
            return Ok(Upstream::Local(PathBuf::from(p)));
        }
        if let Some(p) = s.strip_prefix("node:") {
            if p.is_empty() {
                return Err(
                    "node: needs a Tahoe node directory, e.g. node:/var/lib/tahoe/storage".into(),
                );
            }
            return Ok(Upstream::Node(PathBuf::from(p)));
        }
        if (s.starts_with("pb://") || s.starts_with("pb+tor://")) && s.contains('#') {
            return s
                .parse::<Nurl>()
                .map(Upstream::Gbs)
                .map_err(|e| format!("bad NURL: {e}"));
        }
        if s.starts_with("pb://") {
            return Furl::parse(s)
                .map(Upstream::Foolscap)
                .map_err(|e| format!("bad FURL: {e}"));
        }
        Err("expected local:PATH, node:NODEDIR, a FURL (pb://TUBID@HINTS/NAME) or a NURL (pb://HASH@HOST:PORT/NAME#v=1)".into())
    }

    /// The node directory whose identity a link with this upstream serves with,
    /// given its `adopt` setting. A `node:` upstream adopts its node (an `adopt` naming
    /// another dir is an error); a `local:` one adopts nothing (the embedded store
    /// holds none of a node's shares, so serving it under the node's identity would
    /// send the node's clients to a store that has none of their shares, and write new
    /// ones where the node never sees them). Checks the dir.
    pub fn adoption(
        &self,
        adopt: Option<&Path>,
    ) -> Result<Option<PathBuf>, (&'static str, String)> {
        match (self, adopt) {
            (Upstream::Node(dir), a) => {
                if let Some(a) = a {
                    if !same_dir(a, dir) {
                        return Err((
                            "adopt",
                            format!(
                                "adopts {} but the upstream is node:{}: a node: upstream adopts \
                                 that node's identity, so adopt may only name the same directory \
                                 (or be left out)",
                                a.display(),
                                dir.display()
                            ),
                        ));
                    }
                }
                crate::nodedir::NodeDir::load(dir).map_err(|e| ("upstream", e.to_string()))?;
                Ok(Some(dir.clone()))
            }
            (Upstream::Local(_), Some(a)) => Err((
                "adopt",
                format!(
                    "cannot adopt {} for a local: upstream: the embedded store holds none of the \
                     node's shares, and clients that trust the node's identity would write to a \
                     store the node never sees (bridge the node itself: --upstream node:{})",
                    a.display(),
                    a.display()
                ),
            )),
            (_, Some(a)) => {
                check_node_dir(a).map_err(|w| ("adopt", w))?;
                Ok(Some(a.to_path_buf()))
            }
            (_, None) => Ok(None),
        }
    }
}

/// Do `a` and `b` name the same directory (after resolving links and `..`)?
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    location: Option<Spanned<String>>,
    admin: Option<Spanned<String>>,
    #[serde(default, rename = "link")]
    links: Vec<RawLink>,
    #[serde(default)]
    limits: Limits,
    introducer: Option<RawIntroducer>,
    accounting: Option<RawAccounting>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccounting {
    database: Option<Spanned<String>>,
    reconcile_secs: Option<Spanned<u64>>,
}

/// `[accounting]`: where accounts and usage live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountingConfig {
    /// `sqlite://PATH` or `postgres://…`; `None`: SQLite in the state dir
    /// (`STATE/private/accounting.sqlite`, mode 0600: it holds the accounts' swissnums).
    pub database: Option<String>,
    /// Seconds between two reconciliations of the charged shares against the
    /// backend's own share lists (shares gone by lease expiry or deletion stop
    /// counting), and of uploads left pending by a killed process.
    pub reconcile_secs: u64,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        AccountingConfig {
            database: None,
            reconcile_secs: 3600,
        }
    }
}

impl AccountingConfig {
    /// The database URL, with SQLite in `state_root` by default.
    pub fn database_url(&self, state_root: &Path) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => crate::accounting::sqlite_url(&state_root.join("private/accounting.sqlite")),
        }
    }

    /// Check a `database` value.
    pub fn parse_database(s: &str) -> Result<String, String> {
        if s.starts_with("sqlite:")
            || s.starts_with("postgres://")
            || s.starts_with("postgresql://")
        {
            Ok(s.to_string())
        } else {
            Err(format!(
                "{:?} is neither sqlite://PATH nor postgres://USER@HOST:PORT/DB",
                crate::accounting::ledger::redact(s)
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntroducer {
    upstream: Option<Spanned<String>>,
    nickname: Option<String>,
}

/// The introducer relay: swampgate serves an introducer FURL; with an upstream it
/// relays announcements both ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntroducerConfig {
    pub upstream: Option<Furl>,
    pub nickname: String,
}

impl IntroducerConfig {
    /// Parse an upstream introducer FURL (`--introducer-upstream`, `introducer.upstream`).
    pub fn parse_upstream(s: &str) -> Result<Furl, String> {
        let s = s.trim();
        if s.contains('#') {
            return Err(
                "expected an introducer FURL (pb://TUBID@HINTS/SWISSNUM), not a NURL".into(),
            );
        }
        Furl::parse(s).map_err(|e| format!("bad introducer FURL: {e}"))
    }
}

/// Resource limits, the `[limits]` table. Each has a default that is safe on an
/// untrusted network and generous for real Tahoe traffic; see SECURITY.md for what
/// a peer gets past each one.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections open at once on all ports, all peers together. Past it the
    /// oldest connection that has not identified itself yet (no finished Foolscap
    /// negotiation or TLS handshake) is closed to admit the new one; if every open
    /// connection has, the new one is closed at once, before a byte is read.
    pub max_connections: usize,
    /// Connections open at once from one peer IP address. Past it that peer's new
    /// connection is closed at once; other peers are unaffected.
    pub max_connections_per_ip: usize,
    /// Seconds a new connection has to send the first bytes that tell its protocol.
    /// Tahoe's `protocol_switch` waits 30 s; a real client sends them at once, and
    /// a short wait frees the slots of stalled connections sooner (they are also
    /// shed, oldest first, at `max_connections`).
    pub sniff_timeout_secs: u64,
    /// Seconds from the first byte to the end of Foolscap negotiation (foolscap: 120).
    pub negotiation_timeout_secs: u64,
    /// Seconds a GBS client has for its TLS handshake and for each request's headers;
    /// also how long an idle keep-alive GBS connection is kept (slowloris).
    pub header_timeout_secs: u64,
    /// Seconds of silence after which a Foolscap connection is dropped. swampgate
    /// pings a silent peer every `keepalive_secs`, and a live peer answers, so only a
    /// dead or stalled peer reaches this. 0 disables it.
    pub idle_timeout_secs: u64,
    /// Seconds of silence before swampgate pings a Foolscap peer (foolscap: 240).
    pub keepalive_secs: u64,
    /// Calls one Foolscap connection may have running at once; past it swampgate stops
    /// reading from that connection until one finishes (back-pressure).
    pub max_inflight_calls: usize,
    /// The largest Foolscap STRING token buffered; a longer one is skipped and its
    /// call answered with a Violation.
    pub max_string_bytes: u64,
    /// The largest Foolscap message (all its strings plus a per-token charge); past it
    /// the call is answered with a Violation.
    pub max_message_bytes: u64,
    /// The largest GBS request head (request line and headers); past it 431.
    pub max_header_bytes: usize,
    /// The largest GBS read-test-write body (decoded in memory); past it 413.
    pub max_read_test_write_bytes: u64,
    /// Immutable share uploads allocated and not yet finished, per link. Past it an
    /// allocation fails with the protocol's out-of-space error.
    pub max_inflight_uploads: usize,
    /// The allocated bytes of those unfinished uploads, per link; same answer past it.
    pub max_inflight_upload_bytes: u64,
    /// Seconds an unfinished immutable upload may go without a write before swampgate
    /// aborts it upstream (Tahoe's servers: 30 minutes). This ends the uploads of a
    /// GBS client that died mid-upload, which no connection loss would tell.
    pub upload_idle_timeout_secs: u64,
    /// Connections one link opens to a GBS upstream at once (a Foolscap upstream always
    /// gets exactly one). Calls past it wait for a connection.
    pub max_upstream_connections: usize,
    /// Seconds a call to a GBS upstream may wait for its response headers, and for
    /// each piece of a response body (Tahoe's HTTP client: 60); connecting gets at
    /// most 30 of them. Past it the call fails as the upstream unavailable. It bounds
    /// a stalled GBS upstream, which Tahoe's Foolscap clients would wait for forever;
    /// a call to a stalled Foolscap upstream is bounded by `foolscap_call_timeout_secs`
    /// (and the connection by `idle_timeout_secs`).
    pub upstream_timeout_secs: u64,
    /// Seconds between two probes (`get_version`) of each upstream: a link's
    /// storage server, and the introducer relay's upstream while connected. A call
    /// that finds the upstream unreachable brings the next probe forward. A probe
    /// fails after `max(this, 5)` seconds without an answer (at most
    /// `upstream_timeout_secs`); the introducer relay reconnects at least this often.
    pub upstream_probe_interval_secs: u64,
    /// Seconds a Foolscap call swampgate places (on an upstream storage server, an
    /// upstream introducer, a subscriber) may take from sending to its answer
    /// (foolscap: forever). Past it the call fails as the upstream unavailable (a
    /// fault) and the connection stays open; a late answer is dropped. Real Tahoe
    /// calls answer in milliseconds to seconds; the default is far past any.
    pub foolscap_call_timeout_secs: u64,
    /// Seconds a write to a peer may make no progress (the peer's TCP window stays
    /// shut: it stopped reading) before the connection is closed: every Foolscap
    /// connection, accepted or dialled, and every GBS connection swampgate serves.
    /// A peer that keeps reading, however slowly, is never cut off by it.
    pub write_stall_timeout_secs: u64,
    /// The largest WebSocket frame, and message, an announcement subscriber may
    /// send; past it the subscription is closed with status 1009. Subscribers send
    /// nothing but control frames (at most 125 bytes).
    pub max_websocket_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_ip: 128,
            sniff_timeout_secs: 5,
            negotiation_timeout_secs: 120,
            header_timeout_secs: 60,
            idle_timeout_secs: 900,
            keepalive_secs: 240,
            max_inflight_calls: 256,
            max_string_bytes: 64 << 20,
            max_message_bytes: 128 << 20,
            max_header_bytes: 64 << 10,
            max_read_test_write_bytes: 128 << 20,
            max_inflight_uploads: 4096,
            max_inflight_upload_bytes: 64 << 30,
            upload_idle_timeout_secs: 30 * 60,
            max_upstream_connections: 64,
            upstream_timeout_secs: 60,
            upstream_probe_interval_secs: 10,
            foolscap_call_timeout_secs: 300,
            write_stall_timeout_secs: 60,
            max_websocket_message_bytes: 64 << 10,
        }
    }
}

impl Limits {
    /// Refuse values that would make the daemon unusable (a zero where zero would stop
    /// all traffic); the error names the key, placed by `origin`.
    fn validate(&self, origin: impl Fn(&str) -> Origin) -> Result<(), ConfigError> {
        let nonzero: [(&str, u64); 18] = [
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("sniff_timeout_secs", self.sniff_timeout_secs),
            ("negotiation_timeout_secs", self.negotiation_timeout_secs),
            ("header_timeout_secs", self.header_timeout_secs),
            ("keepalive_secs", self.keepalive_secs),
            ("max_inflight_calls", self.max_inflight_calls as u64),
            ("max_string_bytes", self.max_string_bytes),
            ("max_message_bytes", self.max_message_bytes),
            ("max_header_bytes", self.max_header_bytes as u64),
            ("max_inflight_uploads", self.max_inflight_uploads as u64),
            ("upload_idle_timeout_secs", self.upload_idle_timeout_secs),
            ("upstream_timeout_secs", self.upstream_timeout_secs),
            (
                "upstream_probe_interval_secs",
                self.upstream_probe_interval_secs,
            ),
            (
                "max_upstream_connections",
                self.max_upstream_connections as u64,
            ),
            (
                "foolscap_call_timeout_secs",
                self.foolscap_call_timeout_secs,
            ),
            ("write_stall_timeout_secs", self.write_stall_timeout_secs),
            (
                "max_websocket_message_bytes",
                self.max_websocket_message_bytes as u64,
            ),
        ];
        for (key, v) in nonzero {
            if v == 0 {
                return Err(origin(key).error("must be at least 1"));
            }
        }
        if self.max_header_bytes < 8192 {
            return Err(origin("max_header_bytes")
                .error("must be at least 8192 (Tahoe's requests carry several long headers)"));
        }
        if self.max_websocket_message_bytes < 125 {
            return Err(origin("max_websocket_message_bytes").error(
                "must be at least 125 (a control frame's largest payload: pings and closes would be refused)",
            ));
        }
        if self.idle_timeout_secs != 0 && self.idle_timeout_secs <= self.keepalive_secs {
            return Err(origin("idle_timeout_secs").error(
                "must be 0 (never) or longer than keepalive_secs, or live idle peers are dropped",
            ));
        }
        Ok(())
    }

    /// How long a write may make no progress ([`Limits::write_stall_timeout_secs`]).
    pub fn write_stall(&self) -> Duration {
        Duration::from_secs(self.write_stall_timeout_secs)
    }

    /// Between two probes of an upstream.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_secs(self.upstream_probe_interval_secs)
    }

    /// How long a probe waits for its answer: the interval, but at least 5 s (a
    /// Foolscap connection's TLS and negotiation on a busy host) and at most
    /// `upstream_timeout_secs`.
    pub fn probe_timeout(&self) -> Duration {
        self.probe_interval()
            .max(Duration::from_secs(5))
            .min(Duration::from_secs(self.upstream_timeout_secs))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    name: Spanned<String>,
    upstream: Spanned<String>,
    adopt: Option<Spanned<PathBuf>>,
    trace: Option<Spanned<PathBuf>>,
    listen: Option<Spanned<String>>,
    location: Option<Spanned<String>>,
    anonymous: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    pub name: String,
    pub upstream: Upstream,
    /// A Tahoe node directory whose identity (`private/node.pem`, the swissnum of
    /// `private/storage.furl`) this link serves with.
    pub adopt: Option<PathBuf>,
    /// Record every call crossing the link, as JSON lines, in this file (relative
    /// paths are under the state dir). No secrets or share data are recorded.
    pub trace: Option<PathBuf>,
    /// A port of the link's own; `None` serves the link on the top-level `listen`.
    /// Each link serves with its own identity (adopted, or swampgate's own), and
    /// Foolscap tells the identities of one port apart, but GBS cannot (the TLS
    /// certificate is chosen before any request), so links with different
    /// identities need different ports.
    pub listen: Option<SocketAddr>,
    /// The hints of the link's own port (only with `listen`); `None` derives one
    /// from the bound address.
    pub location: Option<Vec<Hint>>,
    /// Whether the link's own swissnum (its own FURL and NURL) still works, or only
    /// its accounts' do.
    pub anonymous: bool,
    /// Where each value came from, for errors found at start.
    pub origins: LinkOrigins,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Connection hints for FURLs; `None` derives one from the bound address.
    pub location: Option<Vec<Hint>>,
    pub admin: Option<SocketAddr>,
    pub links: Vec<LinkConfig>,
    pub limits: Limits,
    pub introducer: Option<IntroducerConfig>,
    pub accounting: AccountingConfig,
    /// Where each top-level value came from, for errors found at start.
    pub origins: Origins,
}

impl Config {
    /// The embedded default: `127.0.0.1:7750`, one link `default` on the embedded
    /// store in `STATE/shares`.
    pub fn embedded_default() -> Config {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            location: None,
            admin: None,
            links: vec![LinkConfig {
                name: "default".into(),
                upstream: Upstream::Local(PathBuf::from("shares")),
                adopt: None,
                trace: None,
                listen: None,
                location: None,
                anonymous: true,
                origins: LinkOrigins::named("default"),
            }],
            limits: Limits::default(),
            introducer: None,
            accounting: AccountingConfig::default(),
            origins: Origins::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| cfg_err(path.display().to_string(), format!("cannot read: {e}")))?;
        let mut config = Config::parse(&text)
            .map_err(|e| cfg_err(format!("{}: {}", path.display(), e.field), e.why))?;
        // Errors found at start name the file too, as those found in reading it do.
        let o = &mut config.origins;
        for origin in [
            &mut o.listen,
            &mut o.location,
            &mut o.admin,
            &mut o.introducer_upstream,
            &mut o.accounting_database,
        ] {
            origin.in_file(path);
        }
        for l in &mut config.links {
            for origin in l.origins.all_mut() {
                origin.in_file(path);
            }
        }
        Ok(config)
    }

    /// A file holding only a `[limits]` table (`bridge --config`), validated.
    pub fn load_limits(path: &Path) -> Result<Limits, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct LimitsOnly {
            #[serde(default)]
            limits: Limits,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| cfg_err(path.display().to_string(), format!("cannot read: {e}")))?;
        let parsed: Result<LimitsOnly, ConfigError> =
            toml::from_str(&text).map_err(|e| toml_error(&text, e));
        parsed
            .and_then(|l| l.limits.validate(limit_origins(&text)).map(|()| l.limits))
            .map_err(|e| cfg_err(format!("{}: {}", path.display(), e.field), e.why))
    }

    /// Parse a config file's text. An error never shows the password of a
    /// `SCHEME://USER:PASSWORD@HOST` URL in `text` (e.g. the accounting database's),
    /// whichever value it is about.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_unscrubbed(text).map_err(|e| {
            let passwords = crate::accounting::ledger::url_passwords(text);
            ConfigError {
                field: crate::accounting::ledger::scrub(&e.field, &passwords),
                why: crate::accounting::ledger::scrub(&e.why, &passwords),
            }
        })
    }

    fn parse_unscrubbed(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, e))?;
        raw.limits.validate(limit_origins(text))?;
        // Each value's origin: its field, and where it is in `text`.
        let origin = |field: &str, v: &Option<Spanned<String>>| match v {
            Some(v) => Origin::spanned(field, text, v.span()),
            None => Origin::field(field),
        };
        let origins = Origins {
            listen: origin("listen", &raw.listen),
            location: origin("location", &raw.location),
            admin: origin("admin", &raw.admin),
            introducer_upstream: origin(
                "introducer.upstream",
                &raw.introducer.as_ref().and_then(|i| i.upstream.clone()),
            ),
            accounting_database: origin(
                "accounting.database",
                &raw.accounting.as_ref().and_then(|a| a.database.clone()),
            ),
        };
        let listen = match &raw.listen {
            Some(l) => parse_addr(l.get_ref()).map_err(|w| origins.listen.error(w))?,
            None => DEFAULT_LISTEN.parse().expect("a valid address"),
        };
        let location = raw
            .location
            .as_ref()
            .map(|l| parse_location(l.get_ref()).map_err(|w| origins.location.error(w)))
            .transpose()?;
        let admin = raw
            .admin
            .as_ref()
            .map(|a| parse_addr(a.get_ref()).map_err(|w| origins.admin.error(w)))
            .transpose()?;
        if raw.links.is_empty() {
            return Err(cfg_err("link", "at least one [[link]] is required"));
        }
        let mut links: Vec<LinkConfig> = Vec::new();
        for (i, l) in raw.links.into_iter().enumerate() {
            let name_span = l.name.span();
            let name = l.name.into_inner();
            let name_origin = Origin::spanned(format!("link[{i}].name"), text, name_span.clone());
            validate_name(&name).map_err(|w| name_origin.error(w))?;
            if links.iter().any(|x| x.name == name) {
                return Err(name_origin.error(format!("duplicate link name {name:?}")));
            }
            // A link's errors name the link and say where in the file the value is.
            let (name_line, _) = line_column(text, name_span.start);
            let field = |f: &str, v: Option<std::ops::Range<usize>>| match v {
                Some(span) => Origin::spanned(format!("link {name:?}.{f}"), text, span),
                None => Origin {
                    field: format!("link {name:?}.{f}"),
                    at: At::UnsetInLink { line: name_line },
                },
            };
            let mut origins = LinkOrigins {
                upstream: field("upstream", Some(l.upstream.span())),
                adopt: field("adopt", l.adopt.as_ref().map(Spanned::span)),
                trace: field("trace", l.trace.as_ref().map(Spanned::span)),
                listen: field("listen", l.listen.as_ref().map(Spanned::span)),
                location: field("location", l.location.as_ref().map(Spanned::span)),
            };
            let upstream =
                Upstream::parse(l.upstream.get_ref()).map_err(|w| origins.upstream.error(w))?;
            let adopt = upstream
                .adoption(l.adopt.as_ref().map(|a| a.get_ref().as_path()))
                .map_err(|(f, w)| match (f, &l.adopt) {
                    ("adopt", Some(_)) => origins.adopt.error(w),
                    (f, _) => Origin {
                        field: format!("link {name:?}.{f}"),
                        at: origins.upstream.at,
                    }
                    .error(w),
                })?;
            if l.adopt.is_none() && adopt.is_some() {
                // Adopted because of the upstream (node:): its errors are the upstream's.
                origins.adopt = origins.upstream.clone();
            }
            if let Some(t) = &l.trace {
                if t.get_ref().as_os_str().is_empty() {
                    return Err(origins.trace.error("needs a file name"));
                }
            }
            let link_listen = l
                .listen
                .as_ref()
                .map(|a| parse_addr(a.get_ref()).map_err(|w| origins.listen.error(w)))
                .transpose()?;
            let link_location = l
                .location
                .as_ref()
                .map(|h| parse_location(h.get_ref()).map_err(|w| origins.location.error(w)))
                .transpose()?;
            if l.location.is_some() && link_listen.is_none() {
                return Err(origins.location.error(
                    "only with link.listen: a link on the top-level port uses the \
                     top-level location",
                ));
            }
            links.push(LinkConfig {
                name,
                upstream,
                adopt,
                trace: l.trace.map(Spanned::into_inner),
                listen: link_listen,
                location: link_location,
                anonymous: l.anonymous.unwrap_or(true),
                origins,
            });
        }
        let introducer = match raw.introducer {
            None => None,
            Some(i) => Some(IntroducerConfig {
                upstream: i
                    .upstream
                    .as_ref()
                    .map(|u| IntroducerConfig::parse_upstream(u.get_ref()))
                    .transpose()
                    .map_err(|w| origins.introducer_upstream.error(w))?,
                nickname: i.nickname.unwrap_or_else(|| "swampgate".into()),
            }),
        };
        let accounting = match raw.accounting {
            None => AccountingConfig::default(),
            Some(a) => AccountingConfig {
                database: a
                    .database
                    .as_ref()
                    .map(|d| AccountingConfig::parse_database(d.get_ref()))
                    .transpose()
                    .map_err(|w| origins.accounting_database.error(w))?,
                reconcile_secs: match &a.reconcile_secs {
                    Some(n) if *n.get_ref() == 0 => {
                        return Err(Origin::spanned("accounting.reconcile_secs", text, n.span())
                            .error("must be at least 1"))
                    }
                    Some(n) => *n.get_ref(),
                    None => AccountingConfig::default().reconcile_secs,
                },
            },
        };
        Ok(Config {
            listen,
            location,
            admin,
            links,
            limits: raw.limits,
            introducer,
            accounting,
            origins,
        })
    }
}

/// Where each key of the `[limits]` table of `text` is: `limits.KEY` at its value's
/// line and column (a key left out: no place).
fn limit_origins(text: &str) -> impl Fn(&str) -> Origin + '_ {
    #[derive(Deserialize)]
    struct Spans {
        #[serde(default)]
        limits: std::collections::BTreeMap<String, Spanned<toml::Value>>,
    }
    let spans = toml::from_str::<Spans>(text)
        .map(|s| s.limits)
        .unwrap_or_default();
    move |key: &str| match spans.get(key) {
        Some(v) => Origin::spanned(format!("limits.{key}"), text, v.span()),
        None => Origin::field(format!("limits.{key}")),
    }
}

/// The byte range of the `[limits]` table in `text`, if it has one.
fn limits_table_span(text: &str) -> Option<std::ops::Range<usize>> {
    let start = text.find("[limits]")?;
    let after = start + "[limits]".len();
    let end = text[after..]
        .find("\n[")
        .map(|i| after + i)
        .unwrap_or(text.len());
    Some(start..end)
}

/// The key of the `key = value` line holding byte `at`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not an address of the form HOST:PORT (an IP address and a port)")
    })
}

/// Comma-separated connection hints (`tcp:HOST:PORT` or `HOST:PORT`).
pub fn parse_location(s: &str) -> Result<Vec<Hint>, String> {
    let hints: Vec<Hint> = s
        .split(',')
        .map(|h| Hint::parse(h.trim()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if hints.is_empty() {
        return Err("no hints".into());
    }
    Ok(hints)
}

/// Link names become file names under `STATE/links/`: keep them plain.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1-64 characters of letters, digits, '-' and '_' (not starting with '-')"
        ))
    }
}

/// A Tahoe node directory usable for adoption: it has `private/node.pem` and
/// `private/storage.furl`.
pub fn check_node_dir(dir: &Path) -> Result<(), String> {
    for f in ["private/node.pem", "private/storage.furl"] {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(format!(
                "{} is not a Tahoe storage node directory: {} is missing",
                dir.display(),
                p.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_show_a_url_password() {
        for text in [
            "listen = \"postgres://u:s3cr3t@h:5\"\n",
            "[[link]]\nname = \"a\"\nupstream = \"local:x\"\n\
             [accounting]\ndatabase = \"mysql://u:s3cr3t@h/db\"\n",
            "[[link]]\nname = \"a\"\nupstream = \"local:x\"\n\
             [accounting]\ndatabase = \"mysql://u:s3c@r3t@h/db\"\n",
            "[accounting]\ndatabase = 5 # postgres://u:s3cr3t@h\n",
            "[[link]]\nname = \"a\"\nupstream = \"pb://u:s3cr3t@h/x\"\n",
            "[accounting]\nreconcile_secs = \"postgres://u:s3cr3t@h\"\n",
        ] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(!e.contains("s3c") && !e.contains("r3t"), "{text}: {e}");
        }
    }

    #[test]
    fn accounting_settings_are_read_and_checked() {
        let base = "[[link]]\nname = \"a\"\nupstream = \"local:x\"\n";
        let c = Config::parse(base).unwrap();
        assert!(c.links[0].anonymous, "anonymous by default");
        assert_eq!(c.accounting, AccountingConfig::default());
        assert_eq!(
            c.accounting.database_url(Path::new("/st")),
            "sqlite:///st/private/accounting.sqlite?mode=rwc"
        );
        let c = Config::parse(&format!(
            "{base}anonymous = false\n[accounting]\ndatabase = \"postgres://sg@127.0.0.1:5/sg\"\nreconcile_secs = 60\n"
        ))
        .unwrap();
        assert!(!c.links[0].anonymous);
        assert_eq!(c.accounting.reconcile_secs, 60);
        let e = Config::parse(&format!(
            "{base}[accounting]\ndatabase = \"mysql://u:secret@h/db\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "accounting.database");
        assert!(e.why.ends_with("(line 5, column 12)"), "{e}");
        assert!(!e.why.contains("secret"), "no password in errors: {e}");
        let e = Config::parse(&format!("{base}[accounting]\nreconcile_secs = 0\n")).unwrap_err();
        assert_eq!(e.field, "accounting.reconcile_secs");
        assert!(e.why.ends_with("(line 5, column 18)"), "{e}");
    }

    #[test]
    fn link_errors_name_the_link_and_say_where() {
        let e = Config::parse(
            "listen = \"127.0.0.1:0\"\n\n[[link]]\nname = \"legacy\"\nupstream = \"http://x\"\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "link \"legacy\".upstream");
        assert!(e.why.ends_with("(line 5, column 12)"), "{e}");
        let e = Config::parse("[[link]]\nname = \"a b\"\nupstream = \"local:x\"\n").unwrap_err();
        assert_eq!(e.field, "link[0].name");
        assert!(e.why.ends_with("(line 2, column 8)"), "{e}");
    }

    #[test]
    fn top_level_errors_give_line_and_column() {
        let link = "[[link]]\nname = \"a\"\nupstream = \"local:x\"\n";
        let cases = [
            (format!("listen = \"nope\"\n{link}"), "listen", (1, 10)),
            (
                format!("\nlocation = \"tcp:h:x\"\n{link}"),
                "location",
                (2, 12),
            ),
            (format!("admin =  \"1.2.3.4\"\n{link}"), "admin", (1, 10)),
            (
                format!("{link}[introducer]\nupstream = \"http://x\"\n"),
                "introducer.upstream",
                (5, 12),
            ),
            (
                format!("{link}[limits]\nmax_connections = 0\n"),
                "limits.max_connections",
                (5, 19),
            ),
            (
                format!("[limits]\nsniff_timeout_secs = 2\nmax_header_bytes = 100\n{link}"),
                "limits.max_header_bytes",
                (3, 20),
            ),
        ];
        for (text, field, (line, column)) in cases {
            let e = Config::parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text:?}: {e}");
            let at = format!("(line {line}, column {column})");
            assert!(e.why.ends_with(&at), "{text:?}: {e} (want {at})");
        }
        // A limit that is wrong only with another's default: no place to give.
        let e = Config::parse(&format!("{link}[limits]\nkeepalive_secs = 1000\n")).unwrap_err();
        assert_eq!(e.field, "limits.idle_timeout_secs");
        assert!(e.why.ends_with("dropped"), "{e}");
        // bridge --config's limits file too.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("limits.toml");
        std::fs::write(&path, "[limits]\n\nmax_connections = 0\n").unwrap();
        let e = Config::load_limits(&path).unwrap_err();
        assert_eq!(
            e.field,
            format!("{}: limits.max_connections", path.display())
        );
        assert!(e.why.ends_with("(line 3, column 19)"), "{e}");
    }

    #[test]
    fn a_config_remembers_where_each_value_is() {
        let c = Config::parse(
            "listen = \"127.0.0.1:0\"\n\
             [[link]]\nname = \"a\"\nupstream = \"local:x\"\ntrace = \"t\"\n\
             listen = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let o = &c.links[0].origins;
        assert_eq!(o.upstream.field, "link \"a\".upstream");
        assert_eq!(
            o.upstream.at,
            At::Value {
                line: 4,
                column: 12
            }
        );
        assert_eq!(o.trace.at, At::Value { line: 5, column: 9 });
        assert_eq!(
            o.listen.at,
            At::Value {
                line: 6,
                column: 10
            }
        );
        assert_eq!(o.location.at, At::UnsetInLink { line: 3 });
        assert_eq!(
            o.location.error("why").why,
            "why (not set in the link at line 3)"
        );
        assert_eq!(o.listen.place(), "link \"a\".listen at line 6, column 10");
        assert_eq!(
            c.origins.listen.at,
            At::Value {
                line: 1,
                column: 10
            }
        );
        assert_eq!(c.origins.admin, Origin::field("admin"));
        // From a file, the fields name it too.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sg.toml");
        std::fs::write(&path, "[[link]]\nname = \"a\"\nupstream = \"local:x\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        let e = c.links[0].origins.upstream.error("no");
        assert_eq!(e.field, format!("{}: link \"a\".upstream", path.display()));
        assert_eq!(e.why, "no (line 3, column 12)");
        assert_eq!(
            c.origins.listen.field,
            format!("{}: listen", path.display())
        );
        // Without a file: the embedded default names its fields, bridge its flags.
        let d = Config::embedded_default();
        assert_eq!(
            d.links[0].origins.trace.error("no").to_string(),
            "link \"default\".trace: no"
        );
        assert_eq!(
            LinkOrigins::flags().trace.error("no").to_string(),
            "--trace: no"
        );
        assert_eq!(
            Origins::flags().listen.error("no").to_string(),
            "--listen: no"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = Config::parse("listen = \"127.0.0.1:0\"\n[[link]]\nname = 5\n").unwrap_err();
        assert!(e.why.contains("(line 3, column 8)"), "{e}");
        let e = Config::parse("a = \"é\"\nb = = 1\n").unwrap_err();
        assert!(e.why.contains("(line 2, column 5)"), "{e}");
        assert_eq!(line_column("ab\ncé\nd", 7), (3, 1));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(
            r#"
            listen = "127.0.0.1:9000"
            location = "tcp:example.org:9000,tcp:127.0.0.1:9000"
            admin = "127.0.0.1:9001"
            [[link]]
            name = "legacy"
            upstream = "pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:42102/yci4erqgi6kgb3ybym4y3qlox2zawafr"
            [[link]]
            name = "local"
            upstream = "local:shares"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.location.as_ref().unwrap().len(), 2);
        assert_eq!(c.links.len(), 2);
        assert!(matches!(c.links[0].upstream, Upstream::Foolscap(_)));
        assert_eq!(c.links[1].upstream, Upstream::Local("shares".into()));
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            ("listen = \"nope\"\n[[link]]\nname=\"a\"\nupstream=\"local:x\"", "listen"),
            ("admin = \"1.2.3.4\"\n[[link]]\nname=\"a\"\nupstream=\"local:x\"", "admin"),
            ("[[link]]\nname=\"a/b\"\nupstream=\"local:x\"", "link[0].name"),
            ("[[link]]\nname=\"a\"\nupstream=\"http://x\"", "link \"a\".upstream"),
            ("[[link]]\nname=\"a\"\nupstream=\"pb://short@tcp:h:1/x\"", "link \"a\".upstream"),
            ("[[link]]\nname=\"a\"\nupstream=\"local:x\"\n[[link]]\nname=\"a\"\nupstream=\"local:y\"", "link[1].name"),
            ("[[link]]\nname=\"a\"\nupstream=\"local:x\"\nadopt=\"/nonexistent\"", "link \"a\".adopt"),
            ("bogus = 1\n[[link]]\nname=\"a\"\nupstream=\"local:x\"", "config"),
            ("", "link"),
            ("[introducer]\nupstream=\"http://x\"\n[[link]]\nname=\"a\"\nupstream=\"local:x\"", "introducer.upstream"),
            ("[introducer]\nupstrem=\"pb://x\"\n[[link]]\nname=\"a\"\nupstream=\"local:x\"", "config"),
        ];
        for (text, field) in cases {
            let e = Config::parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text:?}: {e}");
            assert!(!e.why.is_empty());
        }
    }

    #[test]
    fn limits_default_when_absent_and_parse_when_given() {
        let base = "[[link]]\nname=\"a\"\nupstream=\"local:x\"\n";
        assert_eq!(Config::parse(base).unwrap().limits, Limits::default());
        let c = Config::parse(&format!(
            "{base}[limits]\nmax_connections = 7\nmax_connections_per_ip = 3\n\
             sniff_timeout_secs = 2\nidle_timeout_secs = 0\nmax_inflight_uploads = 1\n\
             max_inflight_upload_bytes = 0\nmax_upstream_connections = 1\n\
             upload_idle_timeout_secs = 5\nupstream_timeout_secs = 7\n\
             upstream_probe_interval_secs = 2\nfoolscap_call_timeout_secs = 9\n\
             write_stall_timeout_secs = 4\nmax_websocket_message_bytes = 125\n"
        ))
        .unwrap();
        assert_eq!(c.limits.foolscap_call_timeout_secs, 9);
        assert_eq!(c.limits.write_stall(), Duration::from_secs(4));
        assert_eq!(c.limits.max_websocket_message_bytes, 125);
        let d = Limits::default();
        assert_eq!(
            (
                d.foolscap_call_timeout_secs,
                d.write_stall_timeout_secs,
                d.max_websocket_message_bytes
            ),
            (300, 60, 64 << 10)
        );
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!(c.limits.max_connections_per_ip, 3);
        assert_eq!(c.limits.sniff_timeout_secs, 2);
        assert_eq!(c.limits.idle_timeout_secs, 0);
        assert_eq!(c.limits.max_inflight_uploads, 1);
        assert_eq!(c.limits.max_inflight_upload_bytes, 0);
        assert_eq!(c.limits.max_upstream_connections, 1);
        assert_eq!(c.limits.upload_idle_timeout_secs, 5);
        assert_eq!(c.limits.upstream_timeout_secs, 7);
        assert_eq!(c.limits.probe_interval(), Duration::from_secs(2));
        assert_eq!(
            c.limits.probe_timeout(),
            Duration::from_secs(5),
            "at least 5 s, at most upstream_timeout_secs"
        );
        assert_eq!(Limits::default().probe_interval(), Duration::from_secs(10));
        assert_eq!(Limits::default().probe_timeout(), Duration::from_secs(10));
        // Untouched keys keep their defaults.
        assert_eq!(
            c.limits.max_message_bytes,
            Limits::default().max_message_bytes
        );
        // The table may come before the links, too.
        let c = Config::parse(&format!("[limits]\nmax_connections = 1\n{base}")).unwrap();
        assert_eq!(c.limits.max_connections, 1);
    }

    #[test]
    fn limit_errors_name_the_key() {
        let base = "[[link]]\nname=\"a\"\nupstream=\"local:x\"\n[limits]\n";
        let cases = [
            ("max_connections = 0", "limits.max_connections"),
            (
                "max_connections_per_ip = 0",
                "limits.max_connections_per_ip",
            ),
            ("sniff_timeout_secs = 0", "limits.sniff_timeout_secs"),
            ("header_timeout_secs = 0", "limits.header_timeout_secs"),
            ("max_inflight_calls = 0", "limits.max_inflight_calls"),
            (
                "upload_idle_timeout_secs = 0",
                "limits.upload_idle_timeout_secs",
            ),
            ("upstream_timeout_secs = 0", "limits.upstream_timeout_secs"),
            (
                "upstream_probe_interval_secs = 0",
                "limits.upstream_probe_interval_secs",
            ),
            ("max_header_bytes = 100", "limits.max_header_bytes"),
            (
                "foolscap_call_timeout_secs = 0",
                "limits.foolscap_call_timeout_secs",
            ),
            (
                "write_stall_timeout_secs = 0",
                "limits.write_stall_timeout_secs",
            ),
            (
                "max_websocket_message_bytes = 124",
                "limits.max_websocket_message_bytes",
            ),
            ("idle_timeout_secs = 10", "limits.idle_timeout_secs"),
            ("max_connections = \"many\"", "limits.max_connections"),
            ("max_connections = -1", "limits.max_connections"),
            ("max_conections = 5", "limits.max_conections"),
        ];
        for (line, field) in cases {
            let e = Config::parse(&format!("{base}{line}\n")).unwrap_err();
            assert_eq!(e.field, field, "{line:?}: {e}");
            assert!(!e.why.is_empty());
        }
        // At the boundary: the smallest accepted values.
        let c = Config::parse(&format!(
            "{base}max_connections = 1\nmax_header_bytes = 8192\nidle_timeout_secs = 241\n"
        ))
        .unwrap();
        assert_eq!(c.limits.max_header_bytes, 8192);
    }

    #[test]
    fn parses_the_introducer_relay() {
        let c = Config::parse(
            "[introducer]\nupstream = \"pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:42102/yci4erqgi6kgb3ybym4y3qlox2zawafr\"\n[[link]]\nname=\"a\"\nupstream=\"local:x\"",
        )
        .unwrap();
        let i = c.introducer.unwrap();
        assert_eq!(i.nickname, "swampgate");
        assert_eq!(
            i.upstream.unwrap().tubid,
            "l3uv64hrncybwr7t7esgrafiqoh2njjc"
        );
        let c = Config::parse("[introducer]\n[[link]]\nname=\"a\"\nupstream=\"local:x\"").unwrap();
        assert_eq!(c.introducer.unwrap().upstream, None);
        assert!(Config::embedded_default().introducer.is_none());
    }

    #[test]
    fn a_link_may_name_a_trace_file() {
        let c = Config::parse(
            "[[link]]\nname=\"a\"\nupstream=\"local:x\"\ntrace=\"a.jsonl\"\n[[link]]\nname=\"b\"\nupstream=\"local:y\"",
        )
        .unwrap();
        assert_eq!(c.links[0].trace, Some(PathBuf::from("a.jsonl")));
        assert_eq!(c.links[1].trace, None);
        let e =
            Config::parse("[[link]]\nname=\"a\"\nupstream=\"local:x\"\ntrace=\"\"").unwrap_err();
        assert_eq!(e.field, "link \"a\".trace");
    }

    #[test]
    fn a_node_upstream_adopts_its_node_and_nothing_else() {
        use crate::nodedir::tests::{node_dir, CFG};
        let (node, _) = node_dir(CFG, "tcp:127.0.0.1:3457");
        let (other, _) = node_dir(CFG, "tcp:127.0.0.1:3457");
        let dir = node.path().display().to_string();
        let link = |extra: &str| {
            Config::parse(&format!(
                "[[link]]\nname=\"a\"\nupstream=\"node:{dir}\"\n{extra}"
            ))
        };
        let c = link("").unwrap();
        assert_eq!(c.links[0].upstream, Upstream::Node(node.path().into()));
        assert_eq!(c.links[0].adopt.as_deref(), Some(node.path()));
        // The adoption is the upstream's doing: its errors (at start) name the upstream.
        assert_eq!(c.links[0].origins.adopt, c.links[0].origins.upstream);
        // The same dir, spelled differently, is fine.
        let c = link(&format!("adopt = \"{dir}/.\"")).unwrap();
        assert!(c.links[0].adopt.is_some());
        let e = link(&format!("adopt = \"{}\"", other.path().display())).unwrap_err();
        assert_eq!(e.field, "link \"a\".adopt");
        assert!(e.why.contains("a node: upstream adopts"), "{e}");
        // A node dir that cannot be bridged is refused when the config is read.
        std::fs::remove_file(node.path().join("private/storage.furl")).unwrap();
        let e = link("").unwrap_err();
        assert_eq!(e.field, "link \"a\".upstream");
        assert!(e.why.contains("storage.furl"), "{e}");
        assert!(Upstream::parse("node:").is_err());
    }

    #[test]
    fn a_local_upstream_adopts_no_node() {
        use crate::nodedir::tests::{node_dir, CFG};
        let (node, _) = node_dir(CFG, "tcp:127.0.0.1:3457");
        let e = Config::parse(&format!(
            "[[link]]\nname=\"a\"\nupstream=\"local:x\"\nadopt=\"{}\"",
            node.path().display()
        ))
        .unwrap_err();
        assert_eq!(e.field, "link \"a\".adopt");
        assert!(e.why.contains("embedded store"), "{e}");
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.links[0].name, "default");
    }
}
