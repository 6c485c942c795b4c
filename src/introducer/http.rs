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
//! message from the subscriber larger than its limit (`[limits]`
//! `max_websocket_message_bytes`, by default [`MAX_CLIENT_MESSAGE`]) with 1009, a
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

/// The default of the largest frame, and the largest message, a WebSocket
/// subscriber may send (`[limits]` `max_websocket_message_bytes`);
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
    /// The largest frame and message a subscriber may send.
    max_client_message: usize,
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
            max_client_message: MAX_CLIENT_MESSAGE,
        }
    }

    /// Refuse subscriber frames and messages larger than `bytes` (close 1009).
    pub fn with_max_client_message(mut self, bytes: usize) -> AnnouncementApi {
        self.max_client_message = bytes;
        self
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
        // Refused before the relay sees it: counted here (the relay counts the rest).
        let refused = |status, why: String| {
            self.relay.publish_received(false);
            error(status, why)
        };
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    format!("body unreadable or larger than {MAX_BODY} bytes: {e}"),
                )
            }
        };
        let json: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(j) => j,
            Err(e) => return refused(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
        };
        let signed = match SignedAnnouncement::from_envelope(&json) {
            Ok(s) => s,
            Err(e) => {
                warn!(from = "http", "publication refused: {e}");
                return refused(StatusCode::BAD_REQUEST, e.to_string());
            }
        };
        match self
            .relay
            .accept_saved(&signed, Origin::Local, "http")
            .await
        {
            Ok(()) => respond(StatusCode::OK, serde_json::json!({ "accepted": true })),
            Err(why @ super::relay::AcceptError::NotSaved) => {
                error(StatusCode::SERVICE_UNAVAILABLE, why.to_string())
            }
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
        let max_message = self.max_client_message;
        let current = self.relay.announcements(&service);
        let relay = self.relay.clone();
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => return debug!("WebSocket upgrade failed: {e}"),
            };
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(ws_config(max_message)),
            )
            .await;
            info!(%service, current = current.len(), "WebSocket subscriber added");
            let _counted = relay.websocket_subscription();
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
/// subscriber at most `max_message` bytes, unmasked client frames refused.
fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(max_message))
        .max_message_size(Some(max_message))
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

/// How long a failed subscription's connection is drained after its close frame.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Fail the connection: send a close frame with `code`, then close our side and
/// read (and discard) what the subscriber still sends, for at most [`LINGER`],
/// before the connection is dropped. Dropped at once, the socket would answer the
/// subscriber's unread bytes (the rest of an oversized message, its close reply)
/// with a reset, and a reset can destroy the close frame before the subscriber
/// reads it: it would see an abnormal closure (1006) instead of the status.
async fn close<S>(ws: &mut WebSocketStream<S>, code: CloseCode, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let io = ws.get_mut();
    let _ = tokio::time::timeout(LINGER, async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 4096];
        while let Ok(n) = io.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
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
    use crate::gbs::auth::authorization_value;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SWISSNUM: &str = "wsswissnumwsswissnumwsswissnum22";
    /// Upper bound for any one step of a test (an answer that never comes fails).
    const WAIT: Duration = Duration::from_secs(10);
    /// RFC 6455 section 1.3's example key and the accept value it must get.
    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn service_names() {
        assert!(valid_service("storage") && !valid_service("../x") && !valid_service(""));
    }

    fn signed(nickname: &str, seed: u8) -> SignedAnnouncement {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let ann = serde_json::json!({
            "service-name": "storage",
            "nickname": nickname,
            "seqnum": 1,
            "anonymous-storage-FURL": "pb://x@tcp:127.0.0.1:1/y",
        });
        SignedAnnouncement::sign(ann.as_object().unwrap(), &key)
    }

    /// The API of `relay` on a plain HTTP/1.1 socket, with upgrades, as the daemon
    /// serves it on TLS (`daemon::run::serve_gbs`).
    async fn serve(relay: Relay) -> SocketAddr {
        let api = AnnouncementApi::new(relay, SWISSNUM);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let api = api.clone();
                let service = hyper::service::service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades(),
                );
            }
        });
        addr
    }

    /// A real WebSocket handshake over TCP for `/subscribe/storage`; returns the
    /// socket, after the `101` response.
    async fn handshake(addr: SocketAddr) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /introducer/v1/subscribe/storage HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: {RFC_KEY}\r\nAuthorization: {}\r\n\r\n",
            authorization_value(SWISSNUM.as_bytes())
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8];
            tokio::time::timeout(WAIT, tcp.read_exact(&mut b))
                .await
                .expect("handshake answered")
                .unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101 "), "{head}");
        assert!(
            head.contains(&format!(
                "sec-websocket-accept: {}",
                RFC_ACCEPT.to_ascii_lowercase()
            )),
            "{head}"
        );
        tcp
    }

    /// One client frame: masked with `mask` (RFC 6455 5.3), or unmasked with `None`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
        let bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(bit | n as u8),
            n if n <= 0xffff => {
                out.push(bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(m) => {
                out.extend_from_slice(&m);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    /// Read one server frame: (FIN, opcode, payload). Server frames are never masked.
    async fn read_frame(tcp: &mut TcpStream) -> (bool, u8, Vec<u8>) {
        tokio::time::timeout(WAIT, async {
            let mut h = [0u8; 2];
            tcp.read_exact(&mut h).await.unwrap();
            assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
            let len = match h[1] & 0x7f {
                126 => tcp.read_u16().await.unwrap() as usize,
                127 => usize::try_from(tcp.read_u64().await.unwrap()).unwrap(),
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.unwrap();
            (h[0] & 0x80 != 0, h[0] & 0x0f, payload)
        })
        .await
        .expect("a frame from the server")
    }

    /// The next frame is a close frame with `code`, and then the server closes TCP.
    async fn assert_closed_with(tcp: &mut TcpStream, code: u16) {
        let (fin, op, payload) = read_frame(tcp).await;
        assert!(fin);
        assert_eq!(
            op, 0x8,
            "close frame expected, got opcode {op}: {payload:?}"
        );
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            code,
            "{payload:?}"
        );
        assert_eof(tcp).await;
    }

    async fn assert_eof(tcp: &mut TcpStream) {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest))
            .await
            .expect("server closes the connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "nothing after the close frame: {rest:?}");
    }

    /// A ping gets its pong: the connection is alive and in sync.
    async fn assert_pong(tcp: &mut TcpStream, data: &[u8]) {
        tcp.write_all(&client_frame(true, 0x9, data, MASK))
            .await
            .unwrap();
        assert_eq!(read_frame(tcp).await, (true, 0xA, data.to_vec()));
    }

    /// A well-behaved client: the current set, then each new announcement, as text
    /// messages of ENVELOPE JSON (FIN set, 16-bit length for these sizes), and the
    /// close handshake answered, even when the close frame arrives in pieces.
    #[tokio::test]
    async fn subscriber_gets_current_then_new_announcements() {
        let relay = Relay::new("test", None);
        let first = signed("first", 1);
        relay.accept(&first, Origin::Local, "test").unwrap();
        let mut tcp = handshake(serve(relay.clone()).await).await;

        let (fin, op, payload) = read_frame(&mut tcp).await;
        assert!(fin && op == 0x1 && payload.len() > 125, "{op} {payload:?}");
        let env: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(SignedAnnouncement::from_envelope(&env).unwrap(), first);

        let second = signed("second", 2);
        relay.accept(&second, Origin::Local, "test").unwrap();
        let (_, op, payload) = read_frame(&mut tcp).await;
        assert_eq!(op, 0x1);
        let env: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(SignedAnnouncement::from_envelope(&env).unwrap(), second);

        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        let raw = client_frame(true, 0x8, &close, MASK);
        tcp.write_all(&raw[..4]).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tcp.write_all(&raw[4..]).await.unwrap();
        let (fin, op, payload) = read_frame(&mut tcp).await;
        assert!(fin && op == 0x8);
        assert_eq!(payload, close, "the close frame is echoed");
        assert_eof(&mut tcp).await;
    }

    /// RFC 6455 5.1: a server must close the connection on an unmasked client frame.
    /// swampgate sends close status 1002 (protocol error), then closes TCP.
    #[tokio::test]
    async fn unmasked_client_frame_fails_the_connection() {
        let mut tcp = handshake(serve(Relay::new("test", None)).await).await;
        assert_pong(&mut tcp, b"before").await;
        tcp.write_all(&client_frame(true, 0x1, b"hello", None))
            .await
            .unwrap();
        assert_closed_with(&mut tcp, 1002).await;

        // The same for an unmasked ping: it is not answered.
        let mut tcp = handshake(serve(Relay::new("test", None)).await).await;
        tcp.write_all(&client_frame(true, 0x9, b"hi", None))
            .await
            .unwrap();
        assert_closed_with(&mut tcp, 1002).await;
    }

    #[tokio::test]
    async fn ping_is_answered_with_pong() {
        let mut tcp = handshake(serve(Relay::new("test", None)).await).await;
        assert_pong(&mut tcp, b"").await;
        assert_pong(&mut tcp, b"one").await;
        assert_pong(&mut tcp, &[0x5a; 125]).await;
        // Two pings in one write: both are read (the second pong may replace the
        // first, as RFC 6455 5.5.3 allows, but one answers the latest).
        let mut two = client_frame(true, 0x9, b"a", MASK);
        two.extend(client_frame(true, 0x9, b"b", MASK));
        tcp.write_all(&two).await.unwrap();
        let mut last = read_frame(&mut tcp).await;
        if last.2 == b"a" {
            last = read_frame(&mut tcp).await;
        }
        assert_eq!(last, (true, 0xA, b"b".to_vec()));
        assert_pong(&mut tcp, b"after").await;
    }

    /// Fragments make one message: a ping between them is answered, the message
    /// ends with its last continuation frame, and the fragments count together
    /// against the message limit.
    #[tokio::test]
    async fn fragmented_messages_are_reassembled() {
        let addr = serve(Relay::new("test", None)).await;
        let mut tcp = handshake(addr).await;
        tcp.write_all(&client_frame(false, 0x1, b"hel", MASK))
            .await
            .unwrap();
        assert_pong(&mut tcp, b"between").await;
        tcp.write_all(&client_frame(false, 0x0, b"lo ", MASK))
            .await
            .unwrap();
        tcp.write_all(&client_frame(true, 0x0, b"world", MASK))
            .await
            .unwrap();
        assert_pong(&mut tcp, b"after").await;
        // A new message may start now; a continuation frame with no message to
        // continue is a protocol error.
        tcp.write_all(&client_frame(true, 0x2, b"whole", MASK))
            .await
            .unwrap();
        assert_pong(&mut tcp, b"again").await;
        tcp.write_all(&client_frame(true, 0x0, b"stray", MASK))
            .await
            .unwrap();
        assert_closed_with(&mut tcp, 1002).await;

        // Two fragments each within the frame limit, together past the message limit.
        let mut tcp = handshake(addr).await;
        let half = vec![b'x'; MAX_CLIENT_MESSAGE / 2 + 1];
        tcp.write_all(&client_frame(false, 0x2, &half, MASK))
            .await
            .unwrap();
        assert_pong(&mut tcp, b"first half read").await;
        tcp.write_all(&client_frame(true, 0x0, &half, MASK))
            .await
            .unwrap();
        assert_closed_with(&mut tcp, 1009).await;
    }

    /// RFC 6455 8.1: a text message that is not UTF-8 fails the connection (1007),
    /// also when the bad sequence is split across fragments.
    #[tokio::test]
    async fn invalid_utf8_text_fails_with_1007() {
        let addr = serve(Relay::new("test", None)).await;
        let mut tcp = handshake(addr).await;
        tcp.write_all(&client_frame(true, 0x1, b"caf\xc3\xa9", MASK))
            .await
            .unwrap();
        assert_pong(&mut tcp, b"valid").await;
        tcp.write_all(&client_frame(true, 0x1, b"\xff", MASK))
            .await
            .unwrap();
        assert_closed_with(&mut tcp, 1007).await;

        let mut tcp = handshake(addr).await;
        tcp.write_all(&client_frame(false, 0x1, b"caf\xc3", MASK))
            .await
            .unwrap();
        tcp.write_all(&client_frame(true, 0x0, b"(", MASK))
            .await
            .unwrap();
        assert_closed_with(&mut tcp, 1007).await;
    }

    /// A frame larger than [`MAX_CLIENT_MESSAGE`] is refused from its header (1009),
    /// before its payload is sent, including a 64-bit length past any buffer; a
    /// frame of exactly the limit is read.
    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let addr = serve(Relay::new("test", None)).await;

        let mut tcp = handshake(addr).await;
        let full = vec![b'x'; MAX_CLIENT_MESSAGE];
        tcp.write_all(&client_frame(true, 0x2, &full, MASK))
            .await
            .unwrap();
        assert_pong(&mut tcp, b"at the limit").await;

        let mut tcp = handshake(addr).await;
        let header = &client_frame(true, 0x2, &vec![0; MAX_CLIENT_MESSAGE + 1], MASK)[..14];
        tcp.write_all(header).await.unwrap();
        assert_closed_with(&mut tcp, 1009).await;

        let mut tcp = handshake(addr).await;
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        huge.extend_from_slice(&MASK.unwrap());
        tcp.write_all(&huge).await.unwrap();
        assert_closed_with(&mut tcp, 1009).await;

        // Control frames carry at most 125 bytes (RFC 6455 5.5).
        let mut tcp = handshake(addr).await;
        tcp.write_all(&client_frame(true, 0x9, &[0; 126], MASK))
            .await
            .unwrap();
        assert_closed_with(&mut tcp, 1002).await;
    }
}
