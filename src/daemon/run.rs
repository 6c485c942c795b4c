//! The running daemon: ports serving links over Foolscap and GBS, each link a pair
//! of fronts on one backend.
//!
//! Identities per link: each link serves with its own identity (adopted, or
//! swampgate's own), the introducer relay with swampgate's own. A port serves one
//! Tub per identity on it over Foolscap (a connection names its TubID before TLS,
//! [`Tub::accept_among`]), but one certificate over GBS, so links with different
//! identities get different ports (`ports::plan_ports`). The top-level port is always
//! bound: it serves the links without a `listen` of their own, and the relay.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::accounts::{AccountLink, AccountRoutes, Accounts, Revocation};
use super::admin::{self, Admin, IntroducerView};
use super::config::{Config, ConfigError, Limits, LinkConfig, Origin, Upstream};
use super::limits::ConnLimiter;
use super::link::{Link, LinkHandles, Shared};
use super::metrics::{self, Metrics, ProtocolLabel};
use super::ports::{bind, plan_ports, Tubs};
use super::sniff::{self, Prefixed, Protocol};
use super::state::{self, StateDir, StateError};
use crate::foolscap::storage::front::StorageServerObject;
use crate::foolscap::{Tub, TubConfig};
use crate::gbs::server::{GbsServer, ServerConfig};
use crate::gbs::tls::TlsIdentity;
use crate::health::Health;
use crate::identity::Identity;
use crate::introducer::announcement::load_tahoe_signing_key;
use crate::introducer::augment::{Adopted, Endpoint};
use crate::stall::WriteStall;

/// The Tub settings the `[limits]` table asks for (both the served Tub and the one
/// that dials Foolscap upstreams: an upstream is no more trusted than a client).
pub(super) fn tub_config(l: &Limits) -> TubConfig {
    let mut t = TubConfig {
        negotiation_timeout: Duration::from_secs(l.negotiation_timeout_secs),
        ..TubConfig::default()
    };
    t.broker.decode.max_string = l.max_string_bytes;
    t.broker.message.max_message_bytes = l.max_message_bytes;
    t.broker.keepalive = Some(Duration::from_secs(l.keepalive_secs));
    t.broker.disconnect_after =
        (l.idle_timeout_secs > 0).then(|| Duration::from_secs(l.idle_timeout_secs));
    t.broker.max_inflight_calls = l.max_inflight_calls;
    t.broker.call_timeout = Some(Duration::from_secs(l.foolscap_call_timeout_secs));
    t.write_stall_timeout = Some(l.write_stall());
    t
}

/// The GBS server settings the `[limits]` table asks for.
fn server_config(swissnum: &str, l: &Limits) -> ServerConfig {
    let mut c = ServerConfig::new(swissnum);
    c.header_read_timeout = Duration::from_secs(l.header_timeout_secs);
    c.max_header_bytes = l.max_header_bytes;
    c.max_connections = l.max_connections;
    c.limits.read_test_write = l.max_read_test_write_bytes;
    c
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    State(#[from] StateError),
    /// A value of the configuration at fault, named by its [`Origin`] (a port that
    /// cannot be bound is its `listen`'s fault).
    #[error("{field}: {why}")]
    Config { field: String, why: String },
}

impl From<ConfigError> for DaemonError {
    fn from(e: ConfigError) -> Self {
        DaemonError::Config {
            field: e.field,
            why: e.why,
        }
    }
}

pub(super) fn cfg(field: impl Into<String>, why: impl Into<String>) -> DaemonError {
    DaemonError::Config {
        field: field.into(),
        why: why.into(),
    }
}

/// A link's public URLs.
#[derive(Clone, Debug)]
pub struct LinkUrls {
    pub name: String,
    pub furl: String,
    pub nurl: String,
}

/// The daemon, started.
pub struct Running {
    pub links: Vec<LinkUrls>,
    /// The introducer FURL, when the introducer relay is configured.
    pub introducer_furl: Option<String>,
    pub relay: Option<crate::introducer::Relay>,
    pub local_addr: SocketAddr,
    /// Where the admin endpoint listens, if configured.
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    /// Each link's calls in flight and unfinished uploads.
    links_served: Vec<LinkHandles>,
    /// The accounts' poller (it writes their last counters when it stops).
    accounts_task: tokio::task::JoinHandle<()>,
    limiter: ConnLimiter,
    shutdown: CancellationToken,
    /// One accept loop per port.
    tasks: tokio::task::JoinSet<()>,
}

/// What a shutdown did.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Calls still running when the grace period ended.
    pub calls_cut_off: usize,
    /// Unfinished uploads aborted upstream.
    pub uploads_aborted: usize,
}

impl Running {
    /// Connections open on the port now (admitted by the connection limits).
    pub fn open_connections(&self) -> usize {
        self.limiter.open()
    }

    /// Connections closed unread because of `max_connections` or
    /// `max_connections_per_ip`.
    pub fn refused_connections(&self) -> u64 {
        self.limiter.refused()
    }

    /// Unidentified connections shed to admit new ones at `max_connections`.
    pub fn shed_connections(&self) -> u64 {
        self.limiter.shed()
    }

    /// Stop accepting connections, let calls in flight finish within `grace`, then
    /// abort every unfinished upload upstream.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        self.shutdown.cancel();
        let mut tasks = self.tasks;
        while tasks.join_next().await.is_some() {}
        let _ = self.accounts_task.await;
        let deadline = tokio::time::Instant::now() + grace;
        let inflight =
            |b: &[LinkHandles]| b.iter().map(|l| l.metered.inflight_calls()).sum::<usize>();
        while inflight(&self.links_served) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut report = ShutdownReport {
            calls_cut_off: inflight(&self.links_served),
            ..Default::default()
        };
        for l in &self.links_served {
            report.uploads_aborted += l.sessions.abort_unfinished().await;
        }
        report
    }
}

/// The GBS servers of one port, chosen per request by the `Authorization` swissnum.
struct GbsRoutes {
    tls: TlsAcceptor,
    servers: Vec<(String, GbsServer)>,
    /// The accounts of the port's links.
    accounts: Arc<AccountRoutes>,
    /// The introducer's announcement API (`/introducer/v1/…`), when configured.
    announcements: Option<crate::introducer::http::AnnouncementApi>,
    header_timeout: Duration,
    max_header_bytes: usize,
}

impl GbsRoutes {
    /// The server whose swissnum the request carries (a link's, or an account's
    /// with the token that revokes it), else any (it answers 401); `None` if the
    /// port serves no link.
    fn pick<B>(&self, req: &Request<B>) -> Option<(GbsServer, Option<Revocation>)> {
        let got = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        let link = self.servers.iter().find(|(swissnum, _)| {
            crate::gbs::auth::SwissnumCheck::new(swissnum.as_bytes())
                .check(Some(got))
                .is_ok()
        });
        if let Some((_, s)) = link {
            return Some((s.clone(), None));
        }
        if let Some((s, revocation)) = self.accounts.pick(got) {
            return Some((s, Some(revocation)));
        }
        // No match: any server answers 401 (its own check fails the same way).
        self.servers.first().map(|(_, s)| (s.clone(), None))
    }
}

/// Start serving `config` with state in `state`.
pub async fn start(config: &Config, state: &StateDir) -> Result<Running, DaemonError> {
    check_locations(config)?;
    let config = &resolve_node_upstreams(config).await?;
    let own = state.identity()?;
    let client_tub = Tub::new(state.client_identity()?, tub_config(&config.limits))
        .map_err(|e| cfg("identity", e.to_string()))?;
    let identities = link_identities(config, &own)?;
    let plans = plan_ports(config, &identities, &own)?;
    // Every port is bound before any state is written.
    let mut ports = Vec::new();
    for plan in plans {
        ports.push(bind(plan).await?);
    }
    let local_addr = ports[0].local_addr;

    let metrics = Arc::new(Metrics::new(match &config.introducer {
        None => metrics::Introducer::None,
        Some(i) if i.upstream.is_some() => metrics::Introducer::RelayWithUpstream,
        Some(_) => metrics::Introducer::Relay,
    }));
    let mut tubs = Tubs::new(&config.limits);
    let mut links = Vec::new();
    let mut links_served = Vec::new();
    let mut adopted_nodes = Vec::new();
    let mut account_links = Vec::new();
    let shared = Shared {
        state,
        client_tub: &client_tub,
        limits: &config.limits,
        metrics: &metrics,
    };
    for port in &mut ports {
        for &i in &port.plan.links {
            let l = &config.links[i];
            let identity = &identities[i];
            let Link {
                swissnum,
                nurl,
                api,
                trace,
                foolscap_api,
                gbs_api,
                mut handles,
            } = Link::assemble(l, identity, (&port.nurl_host, port.nurl_port), &shared).await?;
            let tub = tubs.get(identity)?;
            let furl = tub.furl(&swissnum, port.hints.clone());
            handles.furl_redacted = furl.redacted();
            handles.listen = Some(port.local_addr);
            account_links.push(AccountLink {
                name: l.name.clone(),
                tub: tub.clone(),
                hints: port.hints.clone(),
                nurl: nurl.clone(),
                api,
                trace,
                backend: handles.backend.clone(),
                routes: port.accounts.clone(),
                server_config: server_config(&swissnum, &config.limits),
            });
            links_served.push(handles);
            port.tubs.add(&tub);
            // Without anonymous access only the link's accounts' swissnums work.
            if l.anonymous {
                tub.publish(&swissnum, StorageServerObject::new(foolscap_api));
                port.servers.push((
                    swissnum.clone(),
                    GbsServer::new(gbs_api, server_config(&swissnum, &config.limits)),
                ));
            }
            let furl = furl.to_string();
            let nurl = nurl.to_string();
            if config.introducer.is_some() {
                adopted_nodes.extend(adopted_announcer(l, &furl, &nurl)?);
            }
            links.push(LinkUrls {
                name: l.name.clone(),
                furl,
                nurl,
            });
        }
    }
    let shutdown = CancellationToken::new();
    probe_links(&links_served, &config.limits, &shutdown).await;
    let mut introducer_view = None;
    // The introducer relay serves with swampgate's own identity on the top-level
    // port, never an adopted one: an adopted node can then use it too.
    let (introducer_furl, relay, announcements) = match &config.introducer {
        None => (None, None, None),
        Some(ic) => {
            let swissnum = state.introducer_swissnum()?;
            let tub = tubs.get(&own)?;
            ports[0].tubs.add(&tub);
            let upstream = match (&ic.upstream, &metrics.introducer_upstream) {
                (Some(furl), Some((up, last))) => Some((
                    furl.clone(),
                    Arc::new(Health::new("introducer", up.clone(), last.clone())),
                    crate::introducer::Probe {
                        interval: config.limits.probe_interval(),
                        timeout: config.limits.probe_timeout(),
                    },
                )),
                _ => None,
            };
            let upstream_view = upstream
                .as_ref()
                .map(|(furl, health, _)| (furl.redacted(), health.clone()));
            let (furl, relay, api) = crate::introducer::start_relay(
                &ic.nickname,
                upstream,
                &swissnum,
                &tub,
                &client_tub,
                &ports[0].hints,
                std::mem::take(&mut adopted_nodes),
                Some(state.announcements()),
                &shutdown,
            )
            .map_err(|e| cfg("introducer", e.to_string()))?;
            let _ = metrics.relay.set(relay.clone());
            let api = api.with_max_client_message(config.limits.max_websocket_message_bytes);
            introducer_view = Some(IntroducerView {
                relay: relay.clone(),
                furl_redacted: crate::foolscap::Furl::parse(&furl)
                    .map(|f| f.redacted())
                    .unwrap_or_default(),
                upstream: upstream_view,
            });
            (Some(furl), Some(relay), Some(api))
        }
    };
    let limiter = ConnLimiter::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    let sniff_timeout = Duration::from_secs(config.limits.sniff_timeout_secs);
    let admin_addr = match config.admin {
        None => None,
        Some(addr) => {
            let view = Arc::new(Admin {
                metrics: metrics.clone(),
                links: links_served.clone(),
                introducer: introducer_view,
                limiter: limiter.clone(),
                local_addr,
                tubid: own.tubid().to_string(),
                spki_hash: own.spki_hash(),
            });
            Some(admin::start(addr, &config.origins.admin, view, shutdown.clone()).await?)
        }
    };
    let mut served = Vec::new();
    let mut announcements = announcements;
    for port in ports {
        let tls = TlsAcceptor::from(
            TlsIdentity::from_identity(&port.plan.identity)
                .server_config()
                .map_err(|e| cfg("identity", e))?,
        );
        let routes = Arc::new(GbsRoutes {
            tls,
            servers: port.servers,
            accounts: port.accounts.clone(),
            // The announcement API is on the top-level port, the first.
            announcements: announcements.take(),
            header_timeout: Duration::from_secs(config.limits.header_timeout_secs),
            max_header_bytes: config.limits.max_header_bytes,
        });
        served.push((port.listener, port.tubs.0, routes));
    }
    let db = config.accounting.database_url(state.root());
    let ledger = crate::accounting::Ledger::open(&db)
        .await
        .map_err(|e| config.origins.accounting_database.error(e))?;
    let accounts = Arc::new(Accounts::new(
        ledger,
        state.clone(),
        account_links,
        Duration::from_secs(config.limits.upload_idle_timeout_secs),
        metrics.accounts.clone(),
    ));
    // The accounts are served before the first connection is accepted.
    accounts
        .refresh()
        .await
        .map_err(|e| config.origins.accounting_database.error(e))?;
    let accounts_task = tokio::spawn(accounts.run(
        Duration::from_secs(config.accounting.reconcile_secs),
        shutdown.clone(),
    ));
    // Everything that can fail has succeeded: only now the URL files, so a failed
    // start leaves none behind (or the previous run's, still valid).
    for l in &links {
        state.write_link_urls(&l.name, &l.furl, &l.nurl)?;
    }
    if let Some(furl) = &introducer_furl {
        state::write_atomic(&state.introducer_furl(), &format!("{furl}\n"), true)?;
    }
    let idle = Duration::from_secs(config.limits.upload_idle_timeout_secs);
    for l in &links_served {
        tokio::spawn(l.sessions.clone().reap_idle_uploads(idle, shutdown.clone()));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, tubs, routes) in served {
        tasks.spawn(accept_loop(
            listener,
            tubs,
            routes,
            metrics.clone(),
            Admission {
                limiter: limiter.clone(),
                sniff_timeout,
                write_stall: config.limits.write_stall(),
            },
            shutdown.clone(),
        ));
    }
    Ok(Running {
        links,
        introducer_furl,
        relay,
        local_addr,
        admin_addr,
        metrics,
        links_served,
        accounts_task,
        limiter,
        shutdown,
        tasks,
    })
}

/// Refuse to serve URLs no client can dial: a port bound to an unspecified address
/// (`0.0.0.0`, `::`) needs a location naming the host clients reach.
fn check_locations(config: &Config) -> Result<(), DaemonError> {
    let why = |addr: SocketAddr, listen: &Origin| {
        format!(
            "needed when listening on {addr} ({}): URLs would point clients at {}, which \
             they cannot dial; name the host they reach, e.g. tcp:HOST:{}",
            listen.place(),
            addr.ip(),
            addr.port()
        )
    };
    let o = &config.origins;
    if config.location.is_none() && config.listen.ip().is_unspecified() {
        return Err(o.location.error(why(config.listen, &o.listen)).into());
    }
    for l in &config.links {
        if let Some(addr) = l.listen {
            if l.location.is_none() && addr.ip().is_unspecified() {
                let o = &l.origins;
                return Err(o.location.error(why(addr, &o.listen)).into());
            }
        }
    }
    Ok(())
}

/// `config` with every `node:` upstream replaced by the node's NURL or FURL.
async fn resolve_node_upstreams(config: &Config) -> Result<Config, DaemonError> {
    let mut config = config.clone();
    for l in config.links.iter_mut() {
        if let Upstream::Node(dir) = &l.upstream {
            l.upstream = super::node_upstream::resolve(&l.origins.upstream, &l.name, dir).await?;
        }
    }
    Ok(config)
}

/// Each link's identity: the adopted node's, or swampgate's own (`own`).
fn link_identities(config: &Config, own: &Identity) -> Result<Vec<Identity>, DaemonError> {
    config
        .links
        .iter()
        .map(|l| match &l.adopt {
            Some(dir) => Ok(state::adopt(dir).map_err(|e| l.origins.adopt.error(e))?.0),
            None => Ok(own.clone()),
        })
        .collect()
}

/// For a link that adopts a node, what the introducer relay adds to that node's
/// announcements: the URL of the protocol the node does not serve itself.
fn adopted_announcer(
    l: &LinkConfig,
    furl: &str,
    nurl: &str,
) -> Result<Option<Adopted>, DaemonError> {
    let Some(dir) = &l.adopt else {
        return Ok(None);
    };
    let endpoint = match &l.upstream {
        Upstream::Foolscap(_) => Endpoint::Nurl(nurl.to_string()),
        Upstream::Gbs(_) => Endpoint::Furl(furl.to_string()),
        Upstream::Local(_) | Upstream::Node(_) => return Ok(None),
    };
    let key = load_tahoe_signing_key(&dir.join("private/node.privkey"))
        .map_err(|e| l.origins.adopt.error(e))?;
    Ok(Some(Adopted { key, endpoint }))
}

/// How long startup waits for the first probes before it reports the links.
const STARTUP_PROBE_WAIT: Duration = Duration::from_secs(5);

/// Start probing every link's upstream (until `stop`), wait a little for the first
/// answers, and log each link: ready, or ready with its upstream unreachable (and
/// why), or not answering yet.
async fn probe_links(links: &[LinkHandles], limits: &Limits, stop: &CancellationToken) {
    for l in links {
        let backend = l.backend.clone();
        tokio::spawn(l.health.clone().run_prober(
            move || {
                let backend = backend.clone();
                async move { backend.probe().await.map_err(|e| e.to_string()) }
            },
            limits.probe_interval(),
            limits.probe_timeout(),
            stop.clone(),
        ));
    }
    let wait = STARTUP_PROBE_WAIT.min(limits.probe_timeout());
    let first = futures_util::future::join_all(links.iter().map(|l| l.health.first_probe()));
    let _ = tokio::time::timeout(wait, first).await;
    for l in links {
        let st = l.health.state();
        if st.last_probe_unix.is_none() {
            l.health.log_first_probe();
            warn!(
                link = %l.name,
                upstream = %l.upstream,
                "link ready, but its upstream has not answered within {} s",
                wait.as_secs()
            );
        } else if st.is_up() {
            info!(link = %l.name, upstream = %l.upstream, tubid = %l.tubid, addr = ?l.listen, "link ready");
        } else {
            warn!(
                link = %l.name,
                upstream = %l.upstream,
                error = st.last_error.as_deref().unwrap_or(crate::health::NOT_PROBED),
                "link ready, but its upstream is unreachable"
            );
        }
    }
}

/// Counts a connection in the `open_connections` gauge while it lives.
struct ConnGauge(prometheus_client::metrics::gauge::Gauge);

impl ConnGauge {
    fn open(metrics: &Metrics, protocol: &str) -> ConnGauge {
        let label = ProtocolLabel {
            protocol: protocol.into(),
        };
        metrics.connections_accepted.get_or_create(&label).inc();
        let g = metrics.connections.get_or_create(&label).clone();
        g.inc();
        ConnGauge(g)
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a new connection must pass before its protocol is served.
struct Admission {
    limiter: ConnLimiter,
    sniff_timeout: Duration,
    /// How long a write to the peer may make no progress ([`WriteStall`]).
    write_stall: Duration,
}

async fn accept_loop(
    listener: TcpListener,
    tubs: Vec<Tub>,
    routes: Arc<GbsRoutes>,
    metrics: Arc<Metrics>,
    admission: Admission,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match admission.limiter.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                // Closed unread: the cheapest answer, and the same for both protocols.
                debug!(%peer, ?why, "connection limit reached: closing");
                let reason = match why {
                    super::limits::Refusal::Total => "max_connections",
                    super::limits::Refusal::PerIp => "max_connections_per_ip",
                };
                metrics
                    .connections_refused
                    .get_or_create(&super::metrics::ReasonLabel { reason })
                    .inc();
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Below TLS, so it sees the socket: a peer that stops reading is cut off.
        let tcp = WriteStall::new(tcp, Some(admission.write_stall));
        let tubs = tubs.clone();
        let routes = routes.clone();
        let metrics = metrics.clone();
        let sniff_timeout = admission.sniff_timeout;
        tokio::spawn(
            async move {
                let shed = permit.shed_token();
                tokio::select! {
                    biased;
                    _ = shed.cancelled() => {
                        metrics.connections_shed.inc();
                        debug!("shed: not identified yet, and the connection limit is reached");
                    }
                    _ = serve_connection(tcp, &permit, sniff_timeout, &tubs, routes, &metrics, peer) => {}
                }
            }
            .instrument(info_span!("conn", %peer)),
        );
    }
}

/// Serve one admitted connection: sniff its protocol, then negotiate Foolscap or
/// hand it to the GBS server. It counts as identified (never shed) once its
/// Foolscap negotiation or TLS handshake is done.
async fn serve_connection(
    mut tcp: WriteStall<tokio::net::TcpStream>,
    permit: &super::limits::ConnPermit,
    sniff_timeout: Duration,
    tubs: &[Tub],
    routes: Arc<GbsRoutes>,
    metrics: &Metrics,
    peer: SocketAddr,
) {
    let (proto, prefix) = match sniff::sniff(&mut tcp, sniff_timeout).await {
        Ok(x) => x,
        Err(e) => {
            debug!("closing: {e}");
            return;
        }
    };
    // Boxed: a Foolscap connection's task lives as long as the connection, and
    // would otherwise be as large as the biggest state here (the negotiation's, a
    // GBS connection's: several KiB).
    match proto {
        Protocol::Foolscap if tubs.is_empty() => debug!("no Tub on this port"),
        Protocol::Foolscap => match Box::pin(Tub::accept_among(tubs, tcp, prefix)).await {
            Ok(c) => {
                permit.identified();
                let _g = ConnGauge::open(metrics, "foolscap");
                debug!(peer_tubid = %c.peer_tubid(), "foolscap connection");
                c.closed().await;
            }
            Err(e) => debug!("foolscap negotiation failed: {e}"),
        },
        Protocol::Tls => {
            let _g = ConnGauge::open(metrics, "gbs");
            let identified = || permit.identified();
            Box::pin(serve_gbs(
                Prefixed::new(prefix, tcp),
                routes,
                peer,
                identified,
            ))
            .await
        }
        Protocol::Unknown => debug!("neither Foolscap nor TLS: closing"),
    }
}

async fn serve_gbs<IO>(io: IO, routes: Arc<GbsRoutes>, peer: SocketAddr, identified: impl FnOnce())
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = routes.header_timeout;
    let stream = match tokio::time::timeout(header_timeout, routes.tls.accept(io)).await {
        Ok(Ok(s)) => {
            identified();
            s
        }
        Ok(Err(e)) => return debug!("TLS handshake failed: {e}"),
        Err(_) => return debug!("TLS handshake timed out"),
    };
    let r = routes.clone();
    // Closed when an account this connection used is revoked.
    let close = CancellationToken::new();
    let watched = Arc::new(std::sync::Mutex::new(Vec::new()));
    let closer = close.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let r = r.clone();
        let close = closer.clone();
        let watched = watched.clone();
        async move {
            if let Some(api) = &r.announcements {
                if req
                    .uri()
                    .path()
                    .starts_with(crate::introducer::http::PREFIX)
                {
                    return Ok::<_, Infallible>(api.handle(req).await);
                }
            }
            Ok::<_, Infallible>(match r.pick(&req) {
                Some((server, revoked)) => {
                    if let Some(revoked) = revoked {
                        watch_revocation(&watched, revoked, &close);
                    }
                    server.handle(req).await
                }
                None => unauthorized(),
            })
        }
    });
    let max_header = routes.max_header_bytes;
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_header.max(8192))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        r = conn => if let Err(e) = r {
            debug!(%peer, "GBS connection ended: {e}");
        },
        _ = close.cancelled() => debug!(%peer, "GBS connection closed: its account was revoked"),
    }
    // Ends the revocation watchers of this connection.
    close.cancel();
}

/// Close the connection (`close`) when the account is revoked: one watcher per
/// account and connection.
fn watch_revocation(
    watched: &std::sync::Mutex<Vec<[u8; 32]>>,
    revocation: Revocation,
    close: &CancellationToken,
) {
    let Revocation { account, revoked } = revocation;
    let mut w = watched.lock().expect("watched");
    if w.contains(&account) {
        return;
    }
    w.push(account);
    let close = close.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = revoked.cancelled() => close.cancel(),
            _ = close.cancelled() => {}
        }
    });
}

/// 401 for a request to a port that serves no link (only the introducer's API).
fn unauthorized() -> hyper::Response<crate::gbs::server::ResponseBody> {
    use http_body_util::BodyExt;
    hyper::Response::builder()
        .status(hyper::StatusCode::UNAUTHORIZED)
        .body(
            http_body_util::Empty::<bytes::Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::Config;

    fn config(links: &[(&str, Option<&str>, Option<&str>)]) -> Config {
        let mut c = Config::embedded_default();
        c.listen = "127.0.0.1:7750".parse().unwrap();
        let template = c.links[0].clone();
        c.links = links
            .iter()
            .map(|(name, adopt, listen)| LinkConfig {
                name: name.to_string(),
                origins: crate::daemon::config::LinkOrigins::named(name),
                adopt: adopt.map(Into::into),
                listen: listen.map(|l| l.parse().unwrap()),
                ..template.clone()
            })
            .collect();
        c
    }

    #[test]
    fn links_with_different_identities_need_different_addresses() {
        let own = Identity::generate().unwrap();
        let adopted = Identity::generate().unwrap();
        // Same address, different identities: refused, naming both links.
        let c = config(&[
            ("legacy", Some("/nodes/a"), Some("127.0.0.1:7760")),
            ("new", None, Some("127.0.0.1:7760")),
        ]);
        let err = plan_ports(&c, &[adopted.clone(), own.clone()], &own)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.starts_with("link \"new\".listen: "), "{err}");
        assert!(err.contains("\"legacy\" adopts /nodes/a"), "{err}");
        assert!(err.contains("\"new\" swampgate's own"), "{err}");
        // On the top-level address too.
        let c = config(&[("legacy", Some("/nodes/a"), None), ("new", None, None)]);
        assert!(plan_ports(&c, &[adopted.clone(), own.clone()], &own).is_err());

        // Own addresses: three ports, the top-level one serving no link, each
        // with its links' identity for TLS.
        let c = config(&[
            ("legacy", Some("/nodes/a"), Some("127.0.0.1:7760")),
            ("new", None, Some("127.0.0.1:7761")),
        ]);
        let plans = plan_ports(&c, &[adopted.clone(), own.clone()], &own).unwrap();
        assert_eq!(plans.len(), 3);
        assert!(plans[0].links.is_empty());
        assert_eq!(plans[1].links, [0]);
        assert_eq!(plans[1].identity.tubid(), adopted.tubid());
        assert_eq!(plans[2].identity.tubid(), own.tubid());

        // One identity on one address: one port. Port 0 is never shared.
        let c = config(&[
            ("a", Some("/nodes/a"), Some("127.0.0.1:7760")),
            ("b", Some("/nodes/a"), Some("127.0.0.1:7760")),
            ("c", None, Some("127.0.0.1:0")),
            ("d", None, Some("127.0.0.1:0")),
        ]);
        let ids = [adopted.clone(), adopted.clone(), own.clone(), own.clone()];
        let plans = plan_ports(&c, &ids, &own).unwrap();
        let links: Vec<&[usize]> = plans.iter().map(|p| p.links.as_slice()).collect();
        assert_eq!(links, [&[][..], &[0, 1], &[2], &[3]]);
    }

    /// The error `start` gives for the config `text`, with state in a fresh dir.
    async fn start_error(text: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(&d.path().join("st")).unwrap();
        let config = Config::parse(text).unwrap();
        match start(&config, &state).await {
            Ok(_) => panic!("started: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn errors_found_at_start_name_the_value_and_say_where() {
        let link = "[[link]]\nname = \"a\"\nupstream = \"local:x\"\n";
        // An unspecified address without a location: the location, and the address.
        let e = start_error(&format!(
            "listen = \"127.0.0.1:0\"\n{link}listen = \"[::]:0\"\n"
        ))
        .await;
        assert!(
            e.starts_with(
                "link \"a\".location: needed when listening on [::]:0 \
                 (link \"a\".listen at line 5, column 10)"
            ),
            "{e}"
        );
        assert!(e.ends_with("(not set in the link at line 3)"), "{e}");
        let e = start_error(&format!("listen = \"0.0.0.0:0\"\n{link}")).await;
        assert!(
            e.starts_with(
                "location: needed when listening on 0.0.0.0:0 (listen at line 1, column 10)"
            ),
            "{e}"
        );

        // Ports taken: the top-level listen, a link's listen, the admin address.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = taken.local_addr().unwrap();
        let e = start_error(&format!("listen = \"{taken}\"\n{link}")).await;
        assert!(
            e.starts_with(&format!("listen: cannot listen on {taken}: ")),
            "{e}"
        );
        assert!(e.ends_with("(line 1, column 10)"), "{e}");
        let e = start_error(&format!(
            "listen = \"127.0.0.1:0\"\n{link}listen = \"{taken}\"\n"
        ))
        .await;
        assert!(e.starts_with("link \"a\".listen: cannot listen on "), "{e}");
        assert!(e.ends_with("(line 5, column 10)"), "{e}");
        let e = start_error(&format!(
            "listen = \"127.0.0.1:0\"\nadmin = \"{taken}\"\n{link}"
        ))
        .await;
        assert!(e.starts_with("admin: cannot listen on "), "{e}");
        assert!(e.ends_with("(line 2, column 9)"), "{e}");

        // Two links, two identities, one address.
        let d = tempfile::tempdir().unwrap();
        let (node, _) =
            crate::nodedir::tests::node_dir(crate::nodedir::tests::CFG, "tcp:127.0.0.1:3457");
        let furl = "pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:1/yci4erqgi6kgb3ybym4y3qlox2zawafr";
        let two = format!(
            "listen = \"127.0.0.1:0\"\n\
             [[link]]\nname = \"old\"\nupstream = \"{furl}\"\nadopt = \"{}\"\n\
             [[link]]\nname = \"new\"\nupstream = \"local:x\"\n",
            node.path().display()
        );
        // A node whose secrets every user may read: its adopt.
        let e = start_error(&two).await;
        assert!(e.starts_with("link \"old\".adopt: "), "{e}");
        assert!(e.contains("is readable by every user"), "{e}");
        assert!(e.ends_with("(line 5, column 9)"), "{e}");
        use std::os::unix::fs::PermissionsExt;
        let private = node.path().join("private");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = start_error(&two).await;
        assert!(
            e.starts_with("link \"new\".listen: link \"old\" and link \"new\""),
            "{e}"
        );
        assert!(e.ends_with("(not set in the link at line 7)"), "{e}");
        drop(d);

        // Two links on one address with different locations.
        let e = start_error(
            "listen = \"127.0.0.1:0\"\n\
             [[link]]\nname = \"a\"\nupstream = \"local:x\"\n\
             listen = \"127.0.0.1:7799\"\nlocation = \"tcp:a.example:7799\"\n\
             [[link]]\nname = \"b\"\nupstream = \"local:y\"\n\
             listen = \"127.0.0.1:7799\"\nlocation = \"tcp:b.example:7799\"\n",
        )
        .await;
        assert_eq!(
            e,
            "link \"b\".location: another link on 127.0.0.1:7799 gives a different location \
             (link \"a\".location at line 6, column 12) (line 11, column 12)"
        );

        // A trace file that cannot be opened (a directory), an embedded store that
        // cannot be (a file).
        let dir = tempfile::tempdir().unwrap();
        let e = start_error(&format!(
            "listen = \"127.0.0.1:0\"\n{link}trace = \"{}\"\n",
            dir.path().display()
        ))
        .await;
        assert!(e.starts_with("link \"a\".trace: cannot open "), "{e}");
        assert!(e.ends_with("(line 5, column 9)"), "{e}");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = start_error(&format!(
            "listen = \"127.0.0.1:0\"\n[[link]]\nname = \"a\"\nupstream = \"local:{}\"\n",
            file.display()
        ))
        .await;
        assert!(
            e.starts_with("link \"a\".upstream: cannot open the embedded store"),
            "{e}"
        );
        assert!(e.ends_with("(line 4, column 12)"), "{e}");
    }

    /// The quick mode has no file: its errors name the flags.
    #[tokio::test]
    async fn quick_mode_errors_name_the_flags() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(&d.path().join("st")).unwrap();
        let mut c = Config::embedded_default();
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.origins = crate::daemon::config::Origins::flags();
        c.links[0].origins = crate::daemon::config::LinkOrigins::flags();
        c.links[0].trace = Some(d.path().to_path_buf());
        let e = start(&c, &state).await.err().unwrap().to_string();
        assert!(e.starts_with("--trace: cannot open "), "{e}");
        c.links[0].trace = None;
        c.listen = "0.0.0.0:0".parse().unwrap();
        let e = start(&c, &state).await.err().unwrap().to_string();
        assert!(
            e.starts_with("--location: needed when listening on 0.0.0.0:0 (--listen)"),
            "{e}"
        );
    }
}
