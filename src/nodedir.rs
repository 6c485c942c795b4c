//! A Tahoe-LAFS storage node's directory, read: everything swampgate needs to stand in
//! for the node, derived from the files the node itself keeps, so an operator never
//! computes a NURL or a server id by hand.
//!
//! ```text
//! NODEDIR/tahoe.cfg              [node] nickname, tub.port, tub.location;
//!                                [storage] enabled, anonymous, force_foolscap
//! NODEDIR/client.port            the Tub port Tahoe allocated when tahoe.cfg has none
//! NODEDIR/node.pubkey            pub-v0-…: the server id is the text without `pub-`
//! NODEDIR/permutation-seed       the announced permutation-seed-base32
//! NODEDIR/private/node.pem       the Tub's certificate and key: tubid and SPKI hash
//! NODEDIR/private/storage.furl   the storage FURL: its swissnum (shared by the NURL)
//! ```
//!
//! `tahoe.cfg` is read as Python's `configparser` reads it (Tahoe uses
//! `ConfigParser(strict=False)`): keys are case-insensitive, there are no inline
//! comments, indented lines continue a value, booleans take Python's spellings.
//!
//! The URLs are built as Tahoe 1.20 builds them:
//! - the location is `tub.location` (default `AUTO`), each `AUTO` replaced by the
//!   node's detected addresses, which are only known from the hints Foolscap wrote into
//!   `private/storage.furl` when the node last started;
//! - the FURL is `pb://TUBID@LOCATION/SWISSNUM`;
//! - unless `[storage] force_foolscap` is true, every `tcp:HOST:PORT` hint gives a NURL
//!   `pb://SPKIHASH@HOST:PORT/SWISSNUM#v=1` and every `tor:HOST:PORT` hint a `pb+tor://`
//!   one (`protocol_switch._FoolscapOrHttps.add_storage_server`; a legacy `HOST:PORT`
//!   hint gives none).
//!
//! Whether the node serves HTTP at all depends on its Tahoe version too: Tahoe 1.18
//! serves only Foolscap and has no `force_foolscap`. A node dir does not say which
//! Tahoe runs it, so [`NodeDir::gbs`] is what the configuration says ([`Release`]
//! names the assumption), and [`NodeDir::serving`] confirms it on the node's port
//! ([`probe`]) for `node-info` and `node:` upstreams.

use std::fmt;
use std::path::{Path, PathBuf};

use configparser::ini::{Ini, IniDefault};

pub mod cli;
pub mod probe;

use crate::foolscap::furl::Furl;
use crate::gbs::nurl::{Nurl, NurlScheme};
use crate::identity::{Identity, IdentityError};

/// Why a node directory cannot be used, naming the file (or setting) at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {why}")]
pub struct NodeDirError {
    pub path: String,
    pub why: String,
}

fn err(path: &Path, why: impl fmt::Display) -> NodeDirError {
    NodeDirError {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// The Tahoe release a node dir is read as. Only 1.19 and later serve HTTP storage;
/// 1.18 node dirs read the same way but never get a NURL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Tahoe-LAFS 1.19 or later: HTTP unless `[storage] force_foolscap = true`.
    V1_19OrLater,
    /// Tahoe-LAFS 1.18 or earlier: Foolscap only.
    Before1_19,
}

/// `tahoe.cfg`, parsed as Python's `configparser` parses it.
#[derive(Debug)]
pub struct TahoeCfg {
    ini: Ini,
    path: PathBuf,
}

impl TahoeCfg {
    pub fn parse(text: &str, path: &Path) -> Result<TahoeCfg, NodeDirError> {
        // Python's defaults: no inline comments, indented continuation lines,
        // case-insensitive keys.
        let mut defaults = IniDefault::default();
        defaults.enable_inline_comments = false;
        defaults.multiline = true;
        defaults.case_sensitive = false;
        defaults.default_section = "DEFAULT".into();
        let mut ini = Ini::new_from_defaults(defaults);
        // Tahoe reads it as utf-8-sig: a byte-order mark is allowed.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        ini.read(text.to_string())
            .map_err(|e| err(path, format!("not a valid INI file: {e}")))?;
        Ok(TahoeCfg {
            ini,
            path: path.to_path_buf(),
        })
    }

    pub fn load(path: &Path) -> Result<TahoeCfg, NodeDirError> {
        let text = std::fs::read_to_string(path).map_err(|e| err(path, e))?;
        TahoeCfg::parse(&text, path)
    }

    /// `[section] key`, if set (trimmed).
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        self.ini.get(section, key).map(|v| v.trim().to_string())
    }

    /// A boolean as Python's `getboolean` reads it (`1/yes/true/on`, `0/no/false/off`,
    /// any case), or `default` when unset.
    pub fn get_bool(&self, section: &str, key: &str, default: bool) -> Result<bool, NodeDirError> {
        match self.get(section, key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "yes" | "true" | "on" => Ok(true),
                "0" | "no" | "false" | "off" => Ok(false),
                _ => Err(err(
                    &self.path,
                    format!("[{section}] {key} = {v:?} is not a boolean (true or false)"),
                )),
            },
        }
    }
}

/// One listening endpoint of `tub.port` (a Twisted endpoint string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TubPort {
    /// `tcp:PORT[:interface=ADDR]` (or a bare port number, or `tcp:port=PORT`).
    Tcp {
        port: u16,
        interface: Option<String>,
    },
    /// `listen:tor`, `listen:i2p` or another endpoint type, verbatim.
    Other(String),
}

impl fmt::Display for TubPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TubPort::Tcp {
                port,
                interface: None,
            } => write!(f, "tcp:{port}"),
            TubPort::Tcp {
                port,
                interface: Some(i),
            } => write!(f, "tcp:{port}:interface={i}"),
            TubPort::Other(s) => f.write_str(s),
        }
    }
}

/// Parse `tub.port` (or `client.port`): comma-separated endpoints.
pub fn parse_tub_port(s: &str) -> Result<Vec<TubPort>, String> {
    s.split(',')
        .map(|e| {
            let e = e.trim();
            if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) {
                return port_number(e).map(|port| TubPort::Tcp {
                    port,
                    interface: None,
                });
            }
            let parts = split_endpoint(e);
            let mut parts = parts.iter().map(String::as_str);
            match parts.next() {
                Some("tcp") | Some("tcp6") => {
                    let mut port = None;
                    let mut interface = None;
                    for p in parts {
                        match p.split_once('=') {
                            Some(("port", v)) => port = Some(port_number(v)?),
                            Some(("interface", v)) => interface = Some(v.to_string()),
                            Some(_) => {}
                            None if port.is_none() => port = Some(port_number(p)?),
                            None => {}
                        }
                    }
                    let port = port.ok_or_else(|| format!("{e:?} names no port"))?;
                    Ok(TubPort::Tcp { port, interface })
                }
                Some(t) if !t.is_empty() => Ok(TubPort::Other(e.to_string())),
                _ => Err(format!("{e:?} is not an endpoint (e.g. tcp:3456)")),
            }
        })
        .collect()
}

/// Split a Twisted endpoint string on its unescaped colons (`\\:` is a colon in a
/// value, as in `interface=\\:\\:1`).
fn split_endpoint(e: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = e.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => parts.last_mut().expect("never empty").extend(chars.next()),
            ':' => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    parts
}

fn port_number(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("{s:?} is not a port number"))
}

/// Whether the node serves HTTP storage (GBS), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GbsServing {
    pub served: bool,
    pub why: String,
}

/// How the node serves storage now: its configuration, confirmed on its port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serving {
    /// The NURL to reach it at when it serves GBS; `None`: Foolscap only.
    pub gbs: Option<Nurl>,
    pub why: String,
}

/// A Tahoe storage node directory, read.
#[derive(Debug)]
pub struct NodeDir {
    pub dir: PathBuf,
    /// `[node] nickname` (Tahoe's default: `<unspecified>`).
    pub nickname: String,
    /// `v0-…`: `node.pubkey` without `pub-`, the key clients know the server by.
    pub server_id: String,
    /// The announced `permutation-seed-base32` (file `permutation-seed`).
    pub permutation_seed: String,
    pub identity: Identity,
    /// The storage swissnum (FURL and NURL share it).
    pub swissnum: String,
    /// `tub.port` (or `client.port`).
    pub tub_port: Vec<TubPort>,
    /// The location hints, `AUTO` resolved, verbatim as Foolscap writes them.
    pub location: Vec<String>,
    pub force_foolscap: bool,
    /// Things that are odd but not fatal (e.g. `storage.furl` older than `tahoe.cfg`).
    pub warnings: Vec<String>,
    release: Release,
}

impl NodeDir {
    /// Read the node dir as a Tahoe 1.19-or-later node's.
    pub fn load(dir: &Path) -> Result<NodeDir, NodeDirError> {
        NodeDir::load_as(dir, Release::V1_19OrLater)
    }

    /// Read the node dir as a node of `release`.
    pub fn load_as(dir: &Path, release: Release) -> Result<NodeDir, NodeDirError> {
        if !dir.is_dir() {
            return Err(err(
                dir,
                if dir.exists() {
                    "is not a directory"
                } else {
                    "no such directory"
                },
            ));
        }
        let cfg_path = dir.join("tahoe.cfg");
        if !cfg_path.is_file() {
            return Err(err(
                &cfg_path,
                "missing: this is not a Tahoe node directory",
            ));
        }
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        let pem = dir.join("private/node.pem");
        let identity = || {
            if !pem.exists() {
                return Err(err(
                    &pem,
                    "missing: the node has no identity yet (start it once)",
                ));
            }
            Identity::load(&pem).map_err(|e| {
                let why = match e {
                    IdentityError::Format { why, .. } => why,
                    IdentityError::Read { source, .. } => format!("cannot read: {source}"),
                    other => other.to_string(),
                };
                err(&pem, format!("not a usable node key: {why}"))
            })
        };
        NodeDir::from_files(dir, release, read, identity)
    }

    /// The node dir `dir` from its files as `read` gives them (by path relative to
    /// `dir`) and its key as `identity` gives it, each asked for only when needed:
    /// everything [`NodeDir::load_as`] does but look at the disk. Errors name the
    /// files under `dir`.
    pub fn from_files(
        dir: &Path,
        release: Release,
        read: impl Fn(&str) -> std::io::Result<String>,
        identity: impl FnOnce() -> Result<Identity, NodeDirError>,
    ) -> Result<NodeDir, NodeDirError> {
        let cfg_path = dir.join("tahoe.cfg");
        let cfg = TahoeCfg::parse(
            &read("tahoe.cfg").map_err(|e| err(&cfg_path, e))?,
            &cfg_path,
        )?;
        let setting = |why: String| err(&cfg_path, why);

        if !cfg.get_bool("storage", "enabled", true)? {
            return Err(setting(
                "[storage] enabled is false: the node runs no storage server, so it has no \
                 storage FURL (private/storage.furl) to bridge"
                    .into(),
            ));
        }
        if !cfg.get_bool("storage", "anonymous", true)? {
            return Err(setting(
                "[storage] anonymous is false: the node serves no anonymous storage, so it has \
                 no storage FURL (private/storage.furl) to bridge"
                    .into(),
            ));
        }
        let force_foolscap = match release {
            Release::V1_19OrLater => cfg.get_bool("storage", "force_foolscap", false)?,
            Release::Before1_19 => true,
        };
        let tub_port = match cfg.get("node", "tub.port") {
            Some(p) if p == "disabled" => return Err(setting(
                "[node] tub.port is disabled: the node does not listen, so it serves no storage"
                    .into(),
            )),
            Some(p) if p.is_empty() => {
                return Err(setting(
                    "[node] tub.port is empty (Tahoe refuses that)".into(),
                ))
            }
            Some(p) => parse_tub_port(&p).map_err(|w| setting(format!("[node] tub.port: {w}")))?,
            None => {
                let f = dir.join("client.port");
                match read("client.port") {
                    Ok(t) => parse_tub_port(t.trim()).map_err(|w| err(&f, w))?,
                    Err(_) => {
                        return Err(setting(format!(
                            "[node] tub.port is not set and {} is missing: the node has not \
                             started yet (start it once so it picks its port)",
                            f.display()
                        )))
                    }
                }
            }
        };
        let cfg_location = cfg.get("node", "tub.location");
        if cfg_location.as_deref() == Some("disabled") {
            return Err(setting(
                "[node] tub.location is disabled: the node does not listen".into(),
            ));
        }
        if cfg_location.as_deref() == Some("") {
            return Err(setting(
                "[node] tub.location is empty (Tahoe refuses that)".into(),
            ));
        }
        let nickname = cfg
            .get("node", "nickname")
            .unwrap_or_else(|| "<unspecified>".into());

        let identity = identity()?;

        let furl_path = dir.join("private/storage.furl");
        let furl_text =
            match read("private/storage.furl") {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(err(
                    &furl_path,
                    "missing: the node has not started with storage enabled yet (start it once)",
                )),
                Err(e) => return Err(err(&furl_path, e)),
            };
        let furl = Furl::parse(furl_text.trim()).map_err(|e| err(&furl_path, e))?;
        if furl.tubid != identity.tubid() {
            return Err(err(
                &furl_path,
                format!(
                    "names tubid {} but private/node.pem has tubid {}",
                    furl.tubid,
                    identity.tubid()
                ),
            ));
        }
        let furl_hints = furl_hints(furl_text.trim());

        let pubkey_path = dir.join("node.pubkey");
        let pubkey = read("node.pubkey").map_err(|e| err(&pubkey_path, e))?;
        let server_id = pubkey
            .trim()
            .strip_prefix("pub-")
            .filter(|id| id.starts_with("v0-"))
            .ok_or_else(|| err(&pubkey_path, "expected pub-v0-… (an Ed25519 public key)"))?
            .to_string();
        let seed_path = dir.join("permutation-seed");
        let permutation_seed = read("permutation-seed")
            .map_err(|e| err(&seed_path, e))?
            .trim()
            .to_string();
        if permutation_seed.is_empty() {
            return Err(err(&seed_path, "is empty"));
        }

        let mut warnings = Vec::new();
        let location = resolve_location(cfg_location.as_deref(), &furl_hints)
            .map_err(|w| setting(format!("[node] tub.location: {w}")))?;
        if location != furl_hints {
            warnings.push(format!(
                "tahoe.cfg's tub.location gives the hints {} but private/storage.furl has {}: \
                 the node has not started since tahoe.cfg changed; the URLs here follow tahoe.cfg",
                location.join(","),
                furl_hints.join(",")
            ));
        }
        Ok(NodeDir {
            dir: dir.to_path_buf(),
            nickname,
            server_id,
            permutation_seed,
            identity,
            swissnum: furl.swissnum,
            tub_port,
            location,
            force_foolscap,
            warnings,
            release,
        })
    }

    pub fn tubid(&self) -> &str {
        self.identity.tubid()
    }

    /// The storage FURL the node announces.
    pub fn furl(&self) -> String {
        format!(
            "pb://{}@{}/{}",
            self.tubid(),
            self.location.join(","),
            self.swissnum
        )
    }

    /// Whether the node serves HTTP storage, as its configuration says.
    pub fn gbs(&self) -> GbsServing {
        let no = |why: String| GbsServing { served: false, why };
        if self.release == Release::Before1_19 {
            return no("Tahoe before 1.19 serves only Foolscap".into());
        }
        if self.force_foolscap {
            return no(
                "tahoe.cfg has [storage] force_foolscap = true: the node serves only Foolscap"
                    .into(),
            );
        }
        if self.nurls().is_empty() {
            return no(format!(
                "tub.location ({}) has no tcp: or tor: hint, so the node announces no NURL",
                self.location.join(",")
            ));
        }
        GbsServing {
            served: true,
            why:
                "the node serves HTTP storage on its Tub port ([storage] force_foolscap is not true)"
                    .into(),
        }
    }

    /// The NURLs the node announces (`anonymous-storage-NURLs`), one per `tcp:` or
    /// `tor:` hint; none when it serves only Foolscap.
    pub fn nurls(&self) -> Vec<Nurl> {
        if self.force_foolscap || self.release == Release::Before1_19 {
            return Vec::new();
        }
        let spki_hash = self.identity.spki_hash();
        self.location
            .iter()
            .filter_map(|hint| {
                // As Tahoe: `scheme, hostname, port = hint.split(":")`.
                let parts: Vec<&str> = hint.split(':').collect();
                let [scheme, host, port] = parts[..] else {
                    return None;
                };
                let scheme = match scheme {
                    "tcp" => NurlScheme::Tcp,
                    "tor" => NurlScheme::Tor,
                    _ => return None,
                };
                Some(Nurl {
                    scheme,
                    spki_hash: spki_hash.clone(),
                    host: host.to_string(),
                    port: port.parse().ok()?,
                    swissnum: self.swissnum.clone(),
                })
            })
            .collect()
    }

    /// Whether the node serves GBS now. When its configuration allows HTTP, the
    /// node's port is asked for a TLS handshake first: a node dir does not tell which
    /// Tahoe runs it, and a Tahoe before 1.19 serves only Foolscap with the same kind
    /// of configuration. A node that does not answer is taken at its configuration's
    /// word. A port that shows another certificate than `private/node.pem` is an
    /// error: another node listens there.
    pub async fn serving(&self) -> Result<Serving, NodeDirError> {
        use probe::Probe;
        let gbs = self.gbs();
        if !gbs.served {
            return Ok(Serving {
                gbs: None,
                why: gbs.why,
            });
        }
        let Some(nurl) = self.dialable_nurl() else {
            return Ok(Serving {
                gbs: None,
                why: "the node serves HTTP only at pb+tor:// NURLs, which swampgate cannot dial"
                    .into(),
            });
        };
        Ok(match probe::probe(&nurl).await {
            Probe::Tls => Serving {
                gbs: Some(nurl),
                why: gbs.why,
            },
            Probe::Unreachable(e) => Serving {
                why: format!(
                    "{}; the node does not answer at {}:{} now ({e}), so this follows tahoe.cfg",
                    gbs.why, nurl.host, nurl.port
                ),
                gbs: Some(nurl),
            },
            Probe::NotTls(e) => Serving {
                why: format!(
                    "tahoe.cfg allows HTTP storage, but {}:{} answers no TLS handshake ({e}): \
                     a Tahoe before 1.19, which serves only Foolscap",
                    nurl.host, nurl.port
                ),
                gbs: None,
            },
            Probe::OtherKey(e) => {
                return Err(err(
                    &self.dir.join("private/node.pem"),
                    format!(
                        "{}:{} serves a certificate other than this one ({e}): is another \
                         node listening there?",
                        nurl.host, nurl.port
                    ),
                ))
            }
        })
    }

    /// The NURL swampgate dials: the first `pb://` one (Tor NURLs cannot be dialled).
    pub fn dialable_nurl(&self) -> Option<Nurl> {
        self.nurls()
            .into_iter()
            .find(|n| n.scheme == NurlScheme::Tcp)
    }
}

/// The hints of a FURL, verbatim (not normalized: a legacy `HOST:PORT` stays so).
fn furl_hints(furl: &str) -> Vec<String> {
    let rest = furl.strip_prefix("pb://").unwrap_or(furl);
    let hints = rest
        .split_once('@')
        .map(|(_, r)| r)
        .unwrap_or("")
        .rsplit_once('/')
        .map(|(h, _)| h)
        .unwrap_or("");
    hints
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect()
}

/// `tub.location` (default `AUTO`) with each `AUTO` replaced by the detected
/// addresses: the hints of `storage.furl` that the location does not name.
fn resolve_location(cfg: Option<&str>, furl_hints: &[String]) -> Result<Vec<String>, String> {
    let entries: Vec<&str> = cfg.unwrap_or("AUTO").split(',').map(str::trim).collect();
    if entries.iter().any(|e| e.is_empty()) {
        return Err(format!("{:?} has an empty hint", cfg.unwrap_or("")));
    }
    let mut out = Vec::new();
    for e in &entries {
        if *e == "AUTO" {
            let detected: Vec<String> = furl_hints
                .iter()
                .filter(|h| !entries.contains(&h.as_str()))
                .cloned()
                .collect();
            if detected.is_empty() {
                return Err(
                    "AUTO stands for the addresses the node detected when it started, but \
                     private/storage.furl has no hints beyond the listed ones"
                        .into(),
                );
            }
            out.extend(detected);
        } else {
            if !e.contains(':') {
                return Err(format!(
                    "{e:?} is not a connection hint (tcp:HOST:PORT, HOST:PORT, tor:… or AUTO)"
                ));
            }
            out.push(e.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
