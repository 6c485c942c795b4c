//! Announcements over HTTP and WebSocket, on the GBS port and TLS identity
//! (specified in `docs/introducer-http.md`).
//!
//! - `GET /introducer/v1/announcements/SERVICE`: `{"announcements": [ENVELOPE, …]}`.
//! - `POST /introducer/v1/announcements`: one ENVELOPE; verified, stored, relayed to
//!   subscribers and the upstream. 200 `{"accepted": true}`, or 400 with the reason.
//! - `GET /introducer/v1/subscribe/SERVICE` as a WebSocket: one text message per
//!   announcement, ENVELOPE JSON: the current set, then every new or replaced one.
//!
//! ENVELOPE is `{"msg": base64(UTF-8 JSON), "sig": "v0-…", "pubkey": "v0-…"}`.
//! Every request carries `Authorization: Tahoe-LAFS <base64 of the introducer
//! swissnum>` (the swissnum of swampgate's introducer FURL), else 401.
//!
//! The WebSocket handshake is answered here (`Sec-WebSocket-Accept` from
//! tungstenite's `derive_accept_key`); after hyper hands over the upgraded
//! connection, tokio-tungstenite does the RFC 6455 framing as the server: client
//! frames must be masked, fragments are reassembled, pings get pongs, a close frame
//! is answered and the connection closed. A protocol violation fails the connection
//! with close status 1002, a text message that is not UTF-8 with 1007, a frame or
//! message from the subscriber larger than [`MAX_CLIENT_MESSAGE`] with 1009, a
//! subscriber too slow to keep up with 1008.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn};

use super::announcement::SignedAnnouncement;
use super::relay::{Origin, Relay};
use crate::gbs::auth::SwissnumCheck;
use crate::gbs::server::ResponseBody;

/// Paths under this prefix belong to the announcement API.
pub const PREFIX: &str = "/introducer/v1/";

/// The most bytes a published envelope may have.
pub const MAX_BODY: usize = 128 * 1024;

/// The largest frame, and the largest message, a WebSocket subscriber may send;
/// a bigger one is refused (close status 1009) once its header is read, before
/// its payload is buffered. Subscribers have nothing to say: data messages from
/// them are ignored, and the control frames they need (ping, close) carry at most
/// 125 bytes. 64 KiB is the bound the earlier hand-written reader put on its input
/// buffer, which no single frame could exceed either, so no frame it read is refused
/// now.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// The announcement API of one relay.
#[derive(Clone)]
pub struct AnnouncementApi {
    relay: Relay,
    auth: SwissnumCheck,
}

fn respond(status: StatusCode, body: serde_json::Value) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(body.to_string()))
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync();
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("valid response")
}

fn error(status: StatusCode, why: impl Into<String>) -> Response<ResponseBody> {
    respond(status, serde_json::json!({ "error": why.into() }))
}

impl AnnouncementApi {
    pub fn new(relay: Relay, swissnum: &str) -> AnnouncementApi {
        AnnouncementApi {
            relay,
            auth: SwissnumCheck::new(swissnum.as_bytes()),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let got = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if self.auth.check(got).is_err() {
            return error(StatusCode::UNAUTHORIZED, "Wrong Authorization header");
        }
        let path = req.uri().path().to_string();
        let rest = path.strip_prefix(PREFIX).unwrap_or_default();
        let method = req.method().clone();
        match (method.as_str(), rest.split_once('/')) {
            ("GET", Some(("announcements", service))) if valid_service(service) => {
                let list: Vec<serde_json::Value> = self
                    .relay
                    .announcements(service)
                    .iter()
                    .map(|a| a.signed.to_envelope())
                    .collect();
                respond(StatusCode::OK, serde_json::json!({ "announcements": list }))
            }
            ("POST", None) if rest == "announcements" => self.publish(req).await,
            ("GET", Some(("subscribe", service))) if valid_service(service) => {
                self.subscribe(req, service.to_string())
            }
            _ if ["announcements", "subscribe"]
                .iter()
                .any(|p| rest.split('/').next() == Some(*p)) =>
            {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("{method} {path}: unsupported method or bad service name"),
                )
            }
            _ => error(StatusCode::NOT_FOUND, format!("no such resource: {path}")),
        }
    }

    async fn publish(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body unreadable or larger than {MAX_BODY} bytes: {e}"),
                )
            }
        };
        let json: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(j) => j,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
        };
        let signed = match SignedAnnouncement::from_envelope(&json) {
            Ok(s) => s,
            Err(e) => {
                warn!(from = "http", "publication refused: {e}");
                return error(StatusCode::BAD_REQUEST, e.to_string());
            }
        };
        match self.relay.accept(&signed, Origin::Local, "http") {
            Ok(()) => respond(StatusCode::OK, serde_json::json!({ "accepted": true })),
            Err(why) => error(StatusCode::BAD_REQUEST, why.to_string()),
        }
    }

    fn subscribe(&self, req: Request<Incoming>, service: String) -> Response<ResponseBody> {
        let headers = req.headers();
        let is_ws = headers
            .get(hyper::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let Some(key) = headers
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "subscribe needs a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Key)",
            );
        };
        if !is_ws {
            return error(StatusCode::BAD_REQUEST, "Upgrade: websocket is required");
        }
        let accept = derive_accept_key(key.trim().as_bytes());
        // Subscribe before answering, so nothing published meanwhile is missed.
        let changes = self.relay.changes();
        let current = self.relay.announcements(&service);
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => return debug!("WebSocket upgrade failed: {e}"),
            };
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(ws_config()),
            )
            .await;
            info!(%service, current = current.len(), "WebSocket subscriber added");
            serve_subscriber(ws, service, current, changes).await;
        });
        let body = Full::new(Bytes::new())
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync();
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(hyper::header::UPGRADE, "websocket")
            .header(hyper::header::CONNECTION, "Upgrade")
            .header("sec-websocket-accept", accept)
            .body(body)
            .expect("valid response")
    }
}

/// The limits of a subscription's WebSocket: frames and messages from the
/// subscriber at most [`MAX_CLIENT_MESSAGE`], unmasked client frames refused.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .accept_unmasked_frames(false)
}

/// Send `current`, then every change of `service`, as text messages until the
/// subscriber closes, fails the protocol, or falls behind.
///
/// tungstenite answers pings and close frames as part of reading, so the socket
/// is read all along: a read returns after queueing the pong or the close reply,
/// and the next read sends it. A close handshake ends with the stream's `None`.
async fn serve_subscriber<S>(
    mut ws: WebSocketStream<S>,
    service: String,
    current: Vec<super::Announcement>,
    mut changes: broadcast::Receiver<super::Announcement>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = |a: &super::Announcement| Message::text(a.signed.to_envelope().to_string());
    for a in &current {
        if ws.send(text(a)).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            r = changes.recv() => match r {
                Ok(a) if a.service() == service => {
                    if ws.send(text(&a)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "WebSocket subscriber too slow: closing");
                    return close(&mut ws, CloseCode::Policy, "").await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            m = ws.next() => match m {
                // Data messages mean nothing here; control frames are handled.
                Some(Ok(_)) => {}
                // Closed: after the close handshake, or by the peer without one.
                None => return,
                Some(Err(e)) => {
                    debug!("WebSocket subscriber failed: {e}");
                    // Fail the connection (RFC 6455 7.1.7): a close frame saying why,
                    // then the TCP connection closed when `ws` is dropped.
                    match e {
                        WsError::Protocol(_) => {
                            return close(&mut ws, CloseCode::Protocol, "protocol error").await
                        }
                        WsError::Capacity(_) => {
                            return close(&mut ws, CloseCode::Size, "message too big").await
                        }
                        WsError::Utf8(_) => {
                            return close(&mut ws, CloseCode::Invalid, "invalid UTF-8").await
                        }
                        _ => return,
                    }
                }
            },
        }
    }
}

/// Send a close frame with `code` (best effort: the connection is dropped next).
async fn close<S>(ws: &mut WebSocketStream<S>, code: CloseCode, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = ws.close(Some(frame)).await;
}

fn valid_service(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(valid_service("storage") && !valid_service("../x") && !valid_service(""));
    }
}
