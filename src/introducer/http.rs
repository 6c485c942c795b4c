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

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::announcement::SignedAnnouncement;
use super::relay::{Origin, Relay};
use crate::gbs::auth::SwissnumCheck;
use crate::gbs::server::ResponseBody;

/// Paths under this prefix belong to the announcement API.
pub const PREFIX: &str = "/introducer/v1/";

/// The most bytes a published envelope may have.
pub const MAX_BODY: usize = 128 * 1024;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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
        let accept = {
            let mut h = Sha1::new();
            h.update(key.trim().as_bytes());
            h.update(WS_GUID.as_bytes());
            data_encoding::BASE64.encode(&h.finalize())
        };
        // Subscribe before answering, so nothing published meanwhile is missed.
        let mut changes = self.relay.changes();
        let current = self.relay.announcements(&service);
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => return debug!("WebSocket upgrade failed: {e}"),
            };
            let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
            info!(%service, current = current.len(), "WebSocket subscriber added");
            let send = |a: &super::Announcement| {
                let text = a.signed.to_envelope().to_string();
                frame(0x1, text.as_bytes())
            };
            for a in &current {
                if wr.write_all(&send(a)).await.is_err() {
                    return;
                }
            }
            let mut inbound = BytesMut::new();
            loop {
                tokio::select! {
                    r = changes.recv() => match r {
                        Ok(a) if a.service() == service => {
                            if wr.write_all(&send(&a)).await.is_err() { return; }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            warn!(missed = n, "WebSocket subscriber too slow: closing");
                            let _ = wr.write_all(&frame(0x8, &1008u16.to_be_bytes())).await;
                            return;
                        }
                        Err(_) => return,
                    },
                    r = rd.read_buf(&mut inbound) => {
                        match r {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        while let Some((op, payload)) = parse_client_frame(&mut inbound) {
                            if op == 0x8 {
                                let _ = wr.write_all(&frame(0x8, &payload)).await;
                                return;
                            }
                            if op == 0x9 && wr.write_all(&frame(0xA, &payload)).await.is_err() {
                                return;
                            }
                        }
                        if inbound.len() > 64 * 1024 {
                            return;
                        }
                    }
                }
            }
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

fn valid_service(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One unmasked server frame (FIN set).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Take one complete (masked) client frame off `buf`: its opcode and payload.
fn parse_client_frame(buf: &mut BytesMut) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut off) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let mask = if masked {
        if buf.len() < off + 4 {
            return None;
        }
        let m = [buf[off], buf[off + 1], buf[off + 2], buf[off + 3]];
        off += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < off + len {
        return None;
    }
    buf.advance(off);
    let mut payload = buf.split_to(len).to_vec();
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Some((op, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = frame(0x1, &[b'x'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        // A masked client frame.
        let mask = [1u8, 2, 3, 4];
        let payload = b"bye";
        let mut raw = vec![0x88, 0x80 | 3];
        raw.extend_from_slice(&mask);
        raw.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let mut buf = BytesMut::from(&raw[..]);
        assert_eq!(parse_client_frame(&mut buf), Some((0x8, b"bye".to_vec())));
        assert!(buf.is_empty());
        let mut partial = BytesMut::from(&raw[..4]);
        assert_eq!(parse_client_frame(&mut partial), None);
        assert!(valid_service("storage") && !valid_service("../x") && !valid_service(""));
    }
}
