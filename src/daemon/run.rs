//! The running daemon: one port serving every link over Foolscap and GBS, each link
//! a pair of fronts on one backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, Instrument};

use super::admin::{self, LinkStatus, StatusFn};
use super::config::{Config, Limits, LinkConfig, Upstream};
use super::limits::ConnLimiter;
use super::link::{Link, LinkHandles, Shared};
use super::metrics::{Metrics, ProtocolLabel};
use super::sniff::{self, Prefixed, Protocol};
use super::state::{self, StateDir, StateError};
use crate::foolscap::furl::Hint;
use crate::foolscap::storage::front::StorageServerObject;
use crate::foolscap::{Tub, TubConfig};
use crate::gbs::server::{GbsServer, ServerConfig};
use crate::gbs::tls::TlsIdentity;
use crate::identity::Identity;
use crate::introducer::announcement::load_tahoe_signing_key;
use crate::introducer::augment::{Adopted, Endpoint};

/// The Tub settings the `[limits]` table asks for (both the served Tub and the one
/// that dials Foolscap upstreams: an upstream is no more trusted than a client).
fn tub_config(l: &Limits) -> TubConfig {
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
    #[error("{field}: {why}")]
    Config { field: String, why: String },
    #[error("listen {addr}: {why}")]
    Listen { addr: SocketAddr, why: String },
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
    limiter: ConnLimiter,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
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

    /// Stop accepting connections, let calls in flight finish within `grace`, then
    /// abort every unfinished upload upstream.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        self.shutdown.cancel();
        let _ = self.task.await;
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
    /// The introducer's announcement API (`/introducer/v1/…`), when configured.
    announcements: Option<crate::introducer::http::AnnouncementApi>,
}

impl GbsRoutes {
    fn pick<B>(&self, req: &Request<B>) -> &GbsServer {
        let got = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        self.servers
            .iter()
            .find(|(swissnum, _)| {
                crate::gbs::auth::SwissnumCheck::new(swissnum.as_bytes())
                    .check(Some(got))
                    .is_ok()
            })
            .map(|(_, s)| s)
            // No match: any server answers 401 (its own check fails the same way).
            .unwrap_or(&self.servers[0].1)
    }
}

/// Start serving `config` with state in `state`.
pub async fn start(config: &Config, state: &StateDir) -> Result<Running, DaemonError> {
    let identity = served_identity(config, state)?;
    let client_identity = state.client_identity()?;
    let tub = Tub::new(identity.clone(), tub_config(&config.limits))
        .map_err(|e| cfg("identity", e.to_string()))?;
    let client_tub = Tub::new(client_identity, tub_config(&config.limits))
        .map_err(|e| cfg("identity", e.to_string()))?;
    let tls_identity = TlsIdentity::from_identity(&identity);
    let tls = TlsAcceptor::from(
        tls_identity
            .server_config()
            .map_err(|e| cfg("identity", e))?,
    );

    let (listener, local_addr, hints, (nurl_host, nurl_port)) = bind(config).await?;

    let metrics = Arc::new(Metrics::default());
    let mut links = Vec::new();
    let mut servers = Vec::new();
    let mut links_served = Vec::new();
    let mut adopted_nodes = Vec::new();
    let shared = Shared {
        state,
        identity: &identity,
        client_tub: &client_tub,
        limits: &config.limits,
        metrics: &metrics,
        nurl_host: &nurl_host,
        nurl_port,
    };
    for (i, l) in config.links.iter().enumerate() {
        let Link {
            swissnum,
            nurl,
            foolscap_api,
            gbs_api,
            handles,
        } = Link::assemble(i, l, &shared).await?;
        let upstream = handles.upstream.clone();
        links_served.push(handles);
        tub.publish(&swissnum, StorageServerObject::new(foolscap_api));
        servers.push((
            swissnum.clone(),
            GbsServer::new(gbs_api, server_config(&swissnum, &config.limits)),
        ));
        let furl = tub.furl(&swissnum, hints.clone()).to_string();
        let nurl = nurl.to_string();
        state.write_link_urls(&l.name, &furl, &nurl)?;
        if config.introducer.is_some() {
            adopted_nodes.extend(adopted_announcer(i, l, &furl, &nurl)?);
        }
        info!(link = %l.name, %upstream, "link ready");
        links.push(LinkUrls {
            name: l.name.clone(),
            furl,
            nurl,
        });
    }
    let shutdown = CancellationToken::new();
    let (introducer_furl, relay, announcements) = match &config.introducer {
        None => (None, None, None),
        Some(ic) => {
            let swissnum = state.introducer_swissnum()?;
            let (furl, relay, api) = crate::introducer::start_relay(
                &ic.nickname,
                ic.upstream.clone(),
                &swissnum,
                &tub,
                &client_tub,
                &hints,
                std::mem::take(&mut adopted_nodes),
                &shutdown,
            );
            state::write_atomic(&state.introducer_furl(), &format!("{furl}\n"), true)?;
            (Some(furl), Some(relay), Some(api))
        }
    };
    let routes = Arc::new(GbsRoutes {
        tls,
        servers,
        announcements,
    });
    let limiter = ConnLimiter::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    let sniff_timeout = Duration::from_secs(config.limits.sniff_timeout_secs);
    let admin_addr = match config.admin {
        None => None,
        Some(addr) => {
            let status = status_fn(
                links_served.clone(),
                metrics.clone(),
                limiter.clone(),
                relay.clone(),
                local_addr,
            );
            Some(admin::start(addr, metrics.clone(), status, shutdown.clone()).await?)
        }
    };
    let idle = Duration::from_secs(config.limits.upload_idle_timeout_secs);
    for l in &links_served {
        tokio::spawn(l.sessions.clone().reap_idle_uploads(idle, shutdown.clone()));
    }
    let task = tokio::spawn(accept_loop(
        listener,
        tub,
        routes,
        metrics.clone(),
        Admission {
            limiter: limiter.clone(),
            sniff_timeout,
        },
        shutdown.clone(),
    ));
    Ok(Running {
        links,
        introducer_furl,
        relay,
        local_addr,
        admin_addr,
        metrics,
        links_served,
        limiter,
        shutdown,
        task,
    })
}

/// The identity the port serves with: the adopted node's (every link must adopt the
/// same node), or swampgate's own from the state dir.
fn served_identity(config: &Config, state: &StateDir) -> Result<Identity, DaemonError> {
    let mut adopted: Option<Identity> = None;
    for (i, l) in config.links.iter().enumerate() {
        if let Some(dir) = &l.adopt {
            let (id, _) = state::adopt(dir)?;
            match &adopted {
                Some(a) if a.tubid() != id.tubid() => {
                    return Err(cfg(
                        format!("link[{i}].adopt"),
                        "links on one port share one identity; this link adopts a different node",
                    ))
                }
                _ => adopted = Some(id),
            }
        }
    }
    if adopted.is_some() {
        if let Some(i) = config.links.iter().position(|l| l.adopt.is_none()) {
            return Err(cfg(
                format!("link[{i}].adopt"),
                "when one link adopts a node's identity, every link on the port must adopt it",
            ));
        }
    }
    match adopted {
        Some(id) => Ok(id),
        None => Ok(state.identity()?),
    }
}

/// Bind the port; the hints FURLs carry (configured, or the bound address) and the
/// host and port NURLs carry (the first `tcp:` hint).
async fn bind(
    config: &Config,
) -> Result<(TcpListener, SocketAddr, Vec<Hint>, (String, u16)), DaemonError> {
    let listen_err = |e: std::io::Error| DaemonError::Listen {
        addr: config.listen,
        why: e.to_string(),
    };
    let listener = TcpListener::bind(config.listen).await.map_err(listen_err)?;
    let local_addr = listener.local_addr().map_err(listen_err)?;
    let hints = config.location.clone().unwrap_or_else(|| {
        vec![Hint::Tcp {
            host: local_addr.ip().to_string(),
            port: local_addr.port(),
        }]
    });
    let nurl_at = hints
        .iter()
        .find_map(|h| match h {
            Hint::Tcp { host, port } => Some((host.clone(), *port)),
            Hint::Other(_) => None,
        })
        .ok_or_else(|| cfg("location", "needs at least one tcp: hint"))?;
    Ok((listener, local_addr, hints, nurl_at))
}

/// For a link that adopts a node, what the introducer relay adds to that node's
/// announcements: the URL of the protocol the node does not serve itself.
fn adopted_announcer(
    i: usize,
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
        Upstream::Local(_) => return Ok(None),
    };
    let key = load_tahoe_signing_key(&dir.join("private/node.privkey"))
        .map_err(|e| cfg(format!("link[{i}].adopt"), e.to_string()))?;
    Ok(Some(Adopted { key, endpoint }))
}

/// What `/status` shows, read when asked.
fn status_fn(
    links: Vec<LinkHandles>,
    metrics: Arc<Metrics>,
    limiter: ConnLimiter,
    relay: Option<crate::introducer::Relay>,
    local_addr: SocketAddr,
) -> StatusFn {
    Arc::new(move || {
        let links: Vec<LinkStatus> = links
            .iter()
            .map(|l| LinkStatus {
                name: l.metered.link().to_string(),
                upstream: l.upstream.clone(),
                upstream_state: l.metered.upstream_state(),
                inflight_calls: l.metered.inflight_calls(),
                inflight_uploads: l.sessions.inflight_uploads(),
            })
            .collect();
        let conns = |p: &str| {
            metrics
                .connections
                .get_or_create(&ProtocolLabel { protocol: p.into() })
                .get()
        };
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "listen": local_addr.to_string(),
            "connections": {
                "foolscap": conns("foolscap"),
                "gbs": conns("gbs"),
                "open": limiter.open(),
                "refused": limiter.refused(),
            },
            "links": links,
            "introducer": relay.as_ref().map(|r| r.status()),
        })
    })
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
}

async fn accept_loop(
    listener: TcpListener,
    tub: Tub,
    routes: Arc<GbsRoutes>,
    metrics: Arc<Metrics>,
    admission: Admission,
    shutdown: CancellationToken,
) {
    loop {
        let (mut tcp, peer) = tokio::select! {
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
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tub = tub.clone();
        let routes = routes.clone();
        let metrics = metrics.clone();
        let sniff_timeout = admission.sniff_timeout;
        tokio::spawn(
            async move {
                let _permit = permit;
                let (proto, prefix) = match sniff::sniff(&mut tcp, sniff_timeout).await {
                    Ok(x) => x,
                    Err(e) => {
                        debug!("closing: {e}");
                        return;
                    }
                };
                // Boxed: a Foolscap connection's task lives as long as the
                // connection, and would otherwise be as large as the biggest state
                // here (the negotiation's, a GBS connection's: several KiB).
                match proto {
                    Protocol::Foolscap => match Box::pin(tub.accept(tcp, prefix)).await {
                        Ok(c) => {
                            let _g = ConnGauge::open(&metrics, "foolscap");
                            debug!(peer_tubid = %c.peer_tubid(), "foolscap connection");
                            c.closed().await;
                        }
                        Err(e) => debug!("foolscap negotiation failed: {e}"),
                    },
                    Protocol::Tls => {
                        let _g = ConnGauge::open(&metrics, "gbs");
                        Box::pin(serve_gbs(Prefixed::new(prefix, tcp), routes, peer)).await
                    }
                    Protocol::Unknown => debug!("neither Foolscap nor TLS: closing"),
                }
            }
            .instrument(info_span!("conn", %peer)),
        );
    }
}

async fn serve_gbs<IO>(io: IO, routes: Arc<GbsRoutes>, peer: SocketAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = routes.servers[0].1.config().header_read_timeout;
    let stream = match tokio::time::timeout(header_timeout, routes.tls.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return debug!("TLS handshake failed: {e}"),
        Err(_) => return debug!("TLS handshake timed out"),
    };
    let r = routes.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let r = r.clone();
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
            Ok::<_, Infallible>(r.pick(&req).handle(req).await)
        }
    });
    let max_header = routes.servers[0].1.config().max_header_bytes;
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_header.max(8192))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        debug!(%peer, "GBS connection ended: {e}");
    }
}
