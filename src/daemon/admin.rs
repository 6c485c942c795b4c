//! The opt-in admin endpoint: `/metrics` (OpenMetrics), `/healthz`, `/status` (JSON).
//! Plain HTTP; bind it to loopback or a management network. It never shows a
//! swissnum or a secret.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::storage::layer::metrics::UpstreamState;

/// What `/status` reports of one link.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LinkStatus {
    pub name: String,
    /// The upstream, without its swissnum.
    pub upstream: String,
    pub upstream_state: UpstreamState,
    pub inflight_calls: usize,
    pub inflight_uploads: usize,
}

/// Produces the current status on demand.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Bind the admin endpoint at `addr` and serve it until `stop` is cancelled; returns
/// the bound address.
pub async fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    status: StatusFn,
    stop: CancellationToken,
) -> Result<SocketAddr, super::run::DaemonError> {
    let listen_err = |e: std::io::Error| super::run::DaemonError::Listen {
        addr,
        why: format!("admin: {e}"),
    };
    let l = TcpListener::bind(addr).await.map_err(listen_err)?;
    let bound = l.local_addr().map_err(listen_err)?;
    tokio::spawn(serve(l, metrics, status, stop));
    Ok(bound)
}

/// Serve the admin endpoint on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    status: StatusFn,
    stop: CancellationToken,
) {
    loop {
        let (tcp, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let metrics = metrics.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                let status = status.clone();
                async move {
                    let r = match (req.method(), req.uri().path()) {
                        (&hyper::Method::GET, "/metrics") => respond(
                            StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            metrics.encode(),
                        ),
                        (&hyper::Method::GET, "/healthz") => {
                            respond(StatusCode::OK, "text/plain", "ok\n".into())
                        }
                        (&hyper::Method::GET, "/status") => respond(
                            StatusCode::OK,
                            "application/json",
                            serde_json::to_string_pretty(&status()).expect("JSON") + "\n",
                        ),
                        _ => respond(
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "not found: try /metrics, /healthz or /status\n".into(),
                        ),
                    };
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
