//! One link assembled: its backend, the layers around it and the view each front
//! gets, its swissnum and its URLs.
//!
//! The stack, from the fronts down:
//! ```text
//! Foolscap front ─ trace ─┐
//!                         ├─ upload sessions ─ metrics ─ backend
//! GBS front ────── trace ─┘
//! ```
//! Upload sessions sit above metrics so an allocation they refuse (a limit) is not
//! counted as an answer of the upstream; traces sit on top, one per front, so each
//! line names the protocol the client spoke.

use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use tracing::{info, warn};

use super::config::{Limits, LinkConfig, Upstream};
use super::metrics::Metrics;
use super::run::DaemonError;
use super::state::{self, StateDir, StateError};
use crate::foolscap::storage::backend::FoolscapBackend;
use crate::foolscap::Tub;
use crate::gbs::client::{ClientConfig, GbsClient};
use crate::gbs::nurl::{Nurl, NurlScheme};
use crate::health::Health;
use crate::identity::Identity;
use crate::storage::layer::journal::UploadJournal;
use crate::storage::layer::metrics::{LinkLabel, Metered};
use crate::storage::layer::sessions::UploadSessions;
use crate::storage::layer::trace::{TraceSink, Traced};
use crate::storage::layer::wrap;
use crate::storage::store::{Clock, Store, StoreConfig};
use crate::storage::StorageApi;

/// What every link shares.
pub struct Shared<'a> {
    pub state: &'a StateDir,
    /// The Tub that dials Foolscap upstreams.
    pub client_tub: &'a Tub,
    pub limits: &'a Limits,
    pub metrics: &'a Metrics,
}

/// What the daemon keeps of a link once it is served: for `/status` and the status
/// page, for probing its upstream, for a graceful shutdown and for reaping idle
/// uploads.
#[derive(Clone)]
pub struct LinkHandles {
    pub name: String,
    /// The upstream, for logs and `/status`: never a swissnum.
    pub upstream: String,
    /// The link's URLs without their swissnums (set once the port's hints are known).
    pub furl_redacted: String,
    pub nurl_redacted: String,
    /// The identity the link serves with (adopted, or swampgate's own).
    pub tubid: String,
    pub spki_hash: String,
    /// The address of the port serving it (set once bound).
    pub listen: Option<std::net::SocketAddr>,
    pub metered: Arc<Metered>,
    pub sessions: Arc<UploadSessions>,
    /// What probes find of the upstream.
    pub health: Arc<Health>,
    /// The backend itself, which the probes call (past the layers: a probe is no
    /// client's call).
    pub backend: Arc<dyn StorageApi>,
}

/// A link, ready to be served.
pub struct Link {
    pub swissnum: String,
    pub nurl: Nurl,
    /// The link's stack below the fronts' trace layers (accounts build their own
    /// fronts' views on it).
    pub api: Arc<dyn StorageApi>,
    /// Where the link's trace goes, and the protocol its backend speaks.
    pub trace: Option<(Arc<TraceSink>, &'static str)>,
    /// What the Foolscap front calls.
    pub foolscap_api: Arc<dyn StorageApi>,
    /// What the GBS front calls.
    pub gbs_api: Arc<dyn StorageApi>,
    pub handles: LinkHandles,
}

impl Link {
    /// Assemble link `l`, served with `identity`, its NURL pointing at `nurl_at`
    /// (host, port). Its errors name the value at fault as `l.origins` says.
    pub async fn assemble(
        l: &LinkConfig,
        identity: &Identity,
        nurl_at: (&str, u16),
        on: &Shared<'_>,
    ) -> Result<Link, DaemonError> {
        let swissnum = match &l.adopt {
            Some(dir) => state::adopt(dir).map_err(|e| l.origins.adopt.error(e))?.1,
            None => on.state.swissnum(&l.name)?,
        };
        let backend = backend(&l.upstream, on.state, identity, on.client_tub, on.limits)
            .await
            .map_err(|why| l.origins.upstream.error(why))?;
        let label = LinkLabel {
            link: l.name.clone(),
        };
        let health = Arc::new(Health::new(
            &l.name,
            on.metrics.upstream_up.get_or_create(&label).clone(),
            on.metrics
                .upstream_last_success
                .get_or_create(&label)
                .clone(),
        ));
        let told = health.clone();
        let metered = Arc::new(
            Metered::new(&l.name, on.metrics.calls.clone())
                .on_unavailable(Box::new(move || told.call_failed())),
        );
        let below_sessions = wrap(metered.clone(), backend.clone());
        let gauge = on
            .metrics
            .calls
            .inflight_uploads
            .get_or_create(&LinkLabel {
                link: l.name.clone(),
            })
            .clone();
        // Sessions abort idle and left-over uploads on the backend itself: those
        // aborts are no client's calls, so they are not counted as such.
        let mut sessions = UploadSessions::new(&l.name, backend.clone(), gauge).with_upload_limits(
            on.limits.max_inflight_uploads,
            on.limits.max_inflight_upload_bytes,
        );
        if let Upstream::Gbs(_) = &l.upstream {
            // Only a GBS upstream needs it: a Foolscap one aborts the uploads of a
            // connection that drops, and the embedded store keeps its own.
            let path = on.state.upload_journal(&l.name);
            let (journal, leftovers) = UploadJournal::open(&path).map_err(|e| StateError {
                path: path.display().to_string(),
                why: e.to_string(),
            })?;
            if !leftovers.is_empty() {
                info!(
                    link = %l.name,
                    "{} share uploads left unfinished by the previous run: aborting them upstream",
                    leftovers.len()
                );
            }
            sessions = sessions.with_journal(journal, leftovers);
        }
        let sessions = Arc::new(sessions);
        let api = wrap(sessions.clone(), below_sessions);
        let mut trace = None;
        let (foolscap_api, gbs_api) = match &l.trace {
            None => (api.clone(), api.clone()),
            Some(path) => {
                let path = on.state.resolve(path);
                let sink = TraceSink::open(&path).map_err(|e| {
                    l.origins
                        .trace
                        .error(format!("cannot open {}: {e}", path.display()))
                })?;
                let upstream = upstream_protocol(&l.upstream);
                trace = Some((sink.clone(), upstream));
                let traced = |front| {
                    let layer = Traced::new(&l.name, front, upstream, sink.clone());
                    wrap(Arc::new(layer), api.clone())
                };
                (
                    traced(crate::foolscap::storage::front::TRACE_FRONT),
                    traced(crate::gbs::server::TRACE_FRONT),
                )
            }
        };
        let nurl = Nurl {
            scheme: NurlScheme::Tcp,
            spki_hash: identity.spki_hash(),
            host: nurl_at.0.to_string(),
            port: nurl_at.1,
            swissnum: swissnum.clone(),
        };
        let nurl_redacted = nurl.redacted();
        Ok(Link {
            swissnum,
            nurl,
            api,
            trace,
            foolscap_api,
            gbs_api,
            handles: LinkHandles {
                name: l.name.clone(),
                upstream: describe(&l.upstream),
                furl_redacted: String::new(),
                nurl_redacted,
                tubid: identity.tubid().to_string(),
                spki_hash: identity.spki_hash(),
                listen: None,
                metered,
                sessions,
                health,
                backend,
            },
        })
    }
}

/// Environment variable for conformance tests that drive time (Tahoe's
/// `test_istorageserver` suite): if set, the embedded store's clock (lease expiry,
/// upload idle timeouts) is read from the file it names, which holds whole seconds
/// since the epoch, instead of the system clock. Not for production use.
pub const TEST_CLOCK_ENV: &str = "SWAMPGATE_TEST_CLOCK_FILE";

/// A clock reading whole seconds since the epoch from `path` on every reading
/// (the writer replaces the file atomically). The file must be readable now; if a
/// later reading fails, the last good one is used.
fn file_clock(path: PathBuf) -> Result<Clock, String> {
    fn read(path: &std::path::Path) -> Result<u64, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        text.trim()
            .parse()
            .map_err(|_| format!("not whole seconds: {:?}", text.trim()))
    }
    let first = read(&path).map_err(|e| format!("{TEST_CLOCK_ENV}={}: {e}", path.display()))?;
    warn!(file = %path.display(), "the embedded store's clock is read from a file ({TEST_CLOCK_ENV})");
    let last = std::sync::atomic::AtomicU64::new(first);
    Ok(Clock::from_fn(move || {
        use std::sync::atomic::Ordering;
        match read(&path) {
            Ok(now) => {
                last.store(now, Ordering::Relaxed);
                now
            }
            Err(_) => last.load(Ordering::Relaxed),
        }
    }))
}

/// Build the backend of a link.
async fn backend(
    upstream: &Upstream,
    state: &StateDir,
    served: &Identity,
    client_tub: &Tub,
    limits: &Limits,
) -> Result<Arc<dyn StorageApi>, String> {
    Ok(match upstream {
        Upstream::Local(path) => {
            let root = state.resolve(path);
            let nodeid = served.tubid().to_string();
            let mut config = StoreConfig::new(root, nodeid);
            if let Some(file) = std::env::var_os(TEST_CLOCK_ENV) {
                config.clock = file_clock(PathBuf::from(file))?;
            }
            let store = tokio::task::spawn_blocking(move || Store::open(config));
            Arc::new(
                store
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot open the embedded store: {e}"))?,
            )
        }
        Upstream::Foolscap(furl) => {
            Arc::new(FoolscapBackend::new(client_tub.clone(), furl.clone()))
        }
        Upstream::Gbs(nurl) => {
            let timeout = Duration::from_secs(limits.upstream_timeout_secs);
            let defaults = ClientConfig::default();
            let config = ClientConfig {
                max_connections: limits.max_upstream_connections,
                connect_timeout: defaults.connect_timeout.min(timeout),
                request_timeout: timeout,
                body_idle_timeout: timeout,
                ..defaults
            };
            Arc::new(GbsClient::new(nurl, config).map_err(|e| e.to_string())?)
        }
        Upstream::Node(dir) => {
            return Err(format!(
                "node:{} must be resolved to the node's URL first (run::start does)",
                dir.display()
            ))
        }
    })
}

/// The protocol a link's backend speaks, for traces.
fn upstream_protocol(u: &Upstream) -> &'static str {
    match u {
        Upstream::Local(_) => "local",
        Upstream::Foolscap(_) => "foolscap",
        Upstream::Gbs(_) => "gbs",
        Upstream::Node(_) => "node",
    }
}

/// The upstream, for logs: never a swissnum.
fn describe(u: &Upstream) -> String {
    match u {
        Upstream::Local(p) => format!("local:{}", p.display()),
        Upstream::Foolscap(f) => f.redacted(),
        Upstream::Gbs(n) => n.redacted(),
        Upstream::Node(d) => format!("node:{}", d.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_clock_reads_the_file_each_time_and_keeps_the_last_good_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        assert!(file_clock(path.clone())
            .unwrap_err()
            .contains(TEST_CLOCK_ENV));
        std::fs::write(&path, "123456\n").unwrap();
        let clock = file_clock(path.clone()).unwrap();
        assert_eq!(clock.now(), 123456);
        std::fs::write(&path, "123634").unwrap();
        assert_eq!(clock.now(), 123634);
        std::fs::write(&path, "soon").unwrap();
        assert_eq!(clock.now(), 123634);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(clock.now(), 123634);
        std::fs::write(&path, "x").unwrap();
        assert!(file_clock(path).unwrap_err().contains("not whole seconds"));
    }
}
