//! The opt-in admin endpoint: `/` (the status page, HTML), `/metrics` (OpenMetrics),
//! `/healthz` (whether every upstream answers), `/status` (JSON). Plain HTTP; bind
//! it to loopback or a management network. It never shows a swissnum or a secret.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::limits::ConnLimiter;
use super::link::LinkHandles;
use super::metrics::{Metrics, ProtocolLabel};
use crate::health::{Health, HealthState};
use crate::introducer::{relay::RelayStatus, Relay};
use crate::storage::layer::metrics::MinuteCount;

/// How many minutes of call counts `/status` and the page show.
pub const MINUTES_SHOWN: usize = 5;

/// Everything the admin endpoint reads, when asked.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub links: Vec<LinkHandles>,
    pub introducer: Option<IntroducerView>,
    pub limiter: ConnLimiter,
    pub local_addr: SocketAddr,
    /// swampgate's own identity (the introducer relay's, and that of links that
    /// adopt no node).
    pub tubid: String,
    pub spki_hash: String,
}

/// The introducer relay, as the admin endpoint sees it.
pub struct IntroducerView {
    pub relay: Relay,
    /// Its FURL without the swissnum.
    pub furl_redacted: String,
    /// The upstream introducer (redacted) and its health, when there is one.
    pub upstream: Option<(String, Arc<Health>)>,
}

/// What `/status` reports of one link.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LinkStatus {
    pub name: String,
    /// The upstream, without its swissnum.
    pub upstream: String,
    pub upstream_state: HealthState,
    /// The identity the link serves with.
    pub tubid: String,
    pub spki_hash: String,
    /// The address of the port serving it.
    pub listen: String,
    pub furl: String,
    pub nurl: String,
    pub inflight_calls: usize,
    pub inflight_uploads: usize,
    /// Calls and failed calls per minute, oldest first, the current minute last.
    pub recent_minutes: Vec<MinuteCount>,
}

/// What `/status` reports of the introducer relay.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IntroducerStatus {
    pub furl: String,
    #[serde(flatten)]
    pub relay: RelayStatus,
    pub upstream: Option<String>,
    pub upstream_state: Option<HealthState>,
    /// `(nickname, service)` of every announcement held.
    pub announced: Vec<(String, String)>,
}

/// Connections on the port.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Connections {
    pub foolscap: i64,
    pub gbs: i64,
    pub open: usize,
    pub refused: u64,
}

/// The whole of `/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub version: &'static str,
    pub listen: String,
    pub tubid: String,
    pub spki_hash: String,
    pub connections: Connections,
    pub links: Vec<LinkStatus>,
    pub introducer: Option<IntroducerStatus>,
}

impl Admin {
    pub fn status(&self) -> Status {
        let links = self
            .links
            .iter()
            .map(|l| LinkStatus {
                name: l.name.clone(),
                upstream: l.upstream.clone(),
                upstream_state: l.health.state(),
                tubid: l.tubid.clone(),
                spki_hash: l.spki_hash.clone(),
                listen: l.listen.map(|a| a.to_string()).unwrap_or_default(),
                furl: l.furl_redacted.clone(),
                nurl: l.nurl_redacted.clone(),
                inflight_calls: l.metered.inflight_calls(),
                inflight_uploads: l.sessions.inflight_uploads(),
                recent_minutes: l.metered.recent_minutes(MINUTES_SHOWN),
            })
            .collect();
        let conns = |p: &str| {
            self.metrics
                .connections
                .get_or_create(&ProtocolLabel { protocol: p.into() })
                .get()
        };
        Status {
            version: env!("CARGO_PKG_VERSION"),
            listen: self.local_addr.to_string(),
            tubid: self.tubid.clone(),
            spki_hash: self.spki_hash.clone(),
            connections: Connections {
                foolscap: conns("foolscap"),
                gbs: conns("gbs"),
                open: self.limiter.open(),
                refused: self.limiter.refused(),
            },
            links,
            introducer: self.introducer.as_ref().map(|i| IntroducerStatus {
                furl: i.furl_redacted.clone(),
                relay: i.relay.status(),
                upstream: i.upstream.as_ref().map(|(u, _)| u.clone()),
                upstream_state: i.upstream.as_ref().map(|(_, h)| h.state()),
                announced: i.relay.announced(),
            }),
        }
    }

    /// `/healthz` (every upstream) or `/healthz?link=NAME` (one link's).
    pub fn healthz(&self, query: Option<&str>) -> (StatusCode, String) {
        let wanted = query.and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("link="))
                .map(str::to_string)
        });
        let down_line = |what: String, st: &HealthState| {
            format!(
                "{what} down: {}\n",
                st.last_error
                    .as_deref()
                    .unwrap_or(crate::health::NOT_PROBED)
            )
        };
        if let Some(name) = wanted {
            return match self.links.iter().find(|l| l.name == name) {
                None => (StatusCode::NOT_FOUND, format!("no link named {name:?}\n")),
                Some(l) => {
                    let st = l.health.state();
                    if st.is_up() {
                        (StatusCode::OK, "ok\n".into())
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            down_line(format!("link {}", l.name), &st),
                        )
                    }
                }
            };
        }
        let mut down = String::new();
        for l in &self.links {
            let st = l.health.state();
            if !st.is_up() {
                down.push_str(&down_line(format!("link {}", l.name), &st));
            }
        }
        if let Some((_, h)) = self.introducer.as_ref().and_then(|i| i.upstream.as_ref()) {
            let st = h.state();
            if !st.is_up() {
                down.push_str(&down_line("introducer upstream".into(), &st));
            }
        }
        if down.is_empty() {
            (StatusCode::OK, "ok\n".into())
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, down)
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Answer one admin request.
pub fn handle<B>(admin: &Admin, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::page::render(&admin.status()),
        ),
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            admin.metrics.encode(),
        ),
        "/healthz" => {
            let (status, body) = admin.healthz(req.uri().query());
            respond(status, "text/plain; charset=utf-8", body)
        }
        "/status" => respond(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&admin.status()).expect("JSON") + "\n",
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /, /metrics, /healthz or /status\n".into(),
        ),
    }
}

/// Bind the admin endpoint at `addr` and serve it until `stop` is cancelled; returns
/// the bound address.
/// `origin` is where `addr` was configured, for the error if it cannot be bound.
pub async fn start(
    addr: SocketAddr,
    origin: &super::config::Origin,
    admin: Arc<Admin>,
    stop: CancellationToken,
) -> Result<SocketAddr, super::run::DaemonError> {
    let listen_err = |e: std::io::Error| {
        super::run::DaemonError::from(origin.error(format!("cannot listen on {addr}: {e}")))
    };
    let l = TcpListener::bind(addr).await.map_err(listen_err)?;
    let bound = l.local_addr().map_err(listen_err)?;
    tokio::spawn(serve(l, admin, stop));
    Ok(bound)
}

/// Serve the admin endpoint on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    loop {
        let (tcp, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let r = handle(&admin, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
