//! The GBS server: a front that turns HTTP requests into [`StorageApi`] calls.
//!
//! It answers as Tahoe-LAFS 1.20's `HTTPServer` does: same routes, same checks in the
//! same order (route, `Authorization`, `X-Tahoe-Authorization`, then the operation's
//! own checks), same statuses, same CBOR bytes. Differences, all invisible to Tahoe's
//! client:
//! - JSON bodies and `Accept: */*` are served (see [`media`](super::media));
//! - `Accept` is checked before the operation runs, so a 406 has no side effect (Tahoe
//!   allocates or writes first, then refuses to encode the answer);
//! - error bodies are short `text/plain` messages (Tahoe: no content type, or an HTML
//!   page for 404/405/500), and secrets never appear in them;
//! - responses with a known length carry `Content-Length` (Tahoe streams chunked).
//!
//! Share data streams both ways: a PATCH body is written to the backend in chunks of
//! at most [`ServerConfig::write_chunk_size`] as it arrives, and a read is fetched from
//! the backend in chunks of at most [`ServerConfig::read_chunk_size`] as the client
//! takes it. A large share is never held whole in memory.
//!
//! The server can own its listener ([`GbsServer::listen`]) or serve connections
//! accepted elsewhere, TLS ([`GbsServer::serve_tls_connection`]) or already decrypted
//! ([`GbsServer::serve_connection`]).

// Handlers return early with a ready response (`Err(response)`); it is built once per
// request and moved out at once, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body, Frame};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info_span, warn, Instrument};

use super::auth::{
    parse_secrets, AuthorizationError, SecretKind, Secrets, SwissnumCheck, SECRETS_HEADER,
};
use super::codec::{self, AllocateBody, Body as _, CorruptBody, ReadTestWriteBody, ShareSet};
use super::errors::{status_for, Operation, WRONG_AUTHORIZATION};
use super::media::{request_format, response_format, Format, OCTET_STREAM_MIME};
use super::nurl::{Nurl, NurlScheme};
use super::range::{self, ReadPlan};
use super::tls::TlsIdentity;
use super::API_PREFIX;
use crate::storage::{
    AllocateRequest, ByteRange, MutableSecrets, ReadTestWriteRequest, ShareNum, ShareType,
    StorageApi, StorageError, StorageIndex,
};

/// The body of every response.
pub type ResponseBody = UnsyncBoxBody<Bytes, io::Error>;

/// Request body limits (413 past them). The defaults are Tahoe 1.20's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// `POST /immutable/:si`: Tahoe allows 8 KiB (256 share numbers fit easily).
    pub allocate: u64,
    /// `POST …/corrupt`: Tahoe allows 32 KiB (a reason of up to 32765 bytes).
    pub corrupt: u64,
    /// `POST /mutable/:si/read-test-write`: Tahoe allows 2^48 bytes, i.e. no practical
    /// limit. The body is decoded in memory, so operators may want less.
    pub read_test_write: u64,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            allocate: 8192,
            corrupt: 32768,
            read_test_write: 1 << 48,
        }
    }
}

/// Everything the server needs besides its backend.
#[derive(Clone)]
pub struct ServerConfig {
    /// The storage swissnum: clients send `Authorization: Tahoe-LAFS base64(swissnum)`.
    pub swissnum: String,
    pub limits: BodyLimits,
    /// The most share data a PATCH hands the backend in one write. Tahoe's client sends
    /// batches of a little over 1 MB, so the default passes a typical PATCH through in
    /// one call (one upstream request when the backend is a GBS client).
    pub write_chunk_size: usize,
    /// The most share data fetched from the backend in one read while streaming a
    /// response. Reads of at most this size need no separate share-length lookup.
    pub read_chunk_size: usize,
    /// Time allowed for a TLS handshake and for each request's headers. It also closes
    /// a keep-alive connection idle this long.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen queue (own listener) or are
    /// closed at once (connections handed in).
    pub max_connections: usize,
    /// The largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// After an early answer (e.g. a 401 to a PATCH), how much of the unread request
    /// body is read and discarded so the client sees the answer; past this the
    /// connection is closed instead.
    pub drain_limit: u64,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("swissnum", &"<secret>")
            .field("limits", &self.limits)
            .field("write_chunk_size", &self.write_chunk_size)
            .field("read_chunk_size", &self.read_chunk_size)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("drain_limit", &self.drain_limit)
            .finish()
    }
}

impl ServerConfig {
    /// Defaults for everything but the swissnum.
    pub fn new(swissnum: impl Into<String>) -> ServerConfig {
        ServerConfig {
            swissnum: swissnum.into(),
            limits: BodyLimits::default(),
            write_chunk_size: 2 << 20,
            read_chunk_size: 1 << 20,
            header_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            drain_limit: 16 << 20,
        }
    }
}

/// A GBS server over one backend. Cheap to clone; clones share the connection limit.
#[derive(Clone)]
pub struct GbsServer {
    inner: Arc<Inner>,
}

struct Inner {
    api: Arc<dyn StorageApi>,
    config: ServerConfig,
    auth: SwissnumCheck,
    connections: Arc<Semaphore>,
}

/// A running listener started by [`GbsServer::listen`].
pub struct ServerHandle {
    local_addr: SocketAddr,
    spki_hash: String,
    swissnum: String,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The NURL clients use to reach this listener at `host` (the address clients
    /// dial, which may differ from the bound one).
    pub fn nurl(&self, host: &str) -> Nurl {
        Nurl {
            scheme: NurlScheme::Tcp,
            spki_hash: self.spki_hash.clone(),
            host: host.to_owned(),
            port: self.local_addr.port(),
            swissnum: self.swissnum.clone(),
        }
    }

    /// Stop accepting, close every connection, and wait for the listener task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

impl GbsServer {
    pub fn new(api: Arc<dyn StorageApi>, config: ServerConfig) -> GbsServer {
        let auth = SwissnumCheck::new(config.swissnum.as_bytes());
        let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
        GbsServer {
            inner: Arc::new(Inner {
                api,
                config,
                auth,
                connections,
            }),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Bind `addr` and serve HTTPS with `identity` until the handle is shut down.
    pub async fn listen(
        &self,
        addr: SocketAddr,
        identity: &TlsIdentity,
    ) -> io::Result<ServerHandle> {
        let tls = TlsAcceptor::from(identity.server_config().map_err(io::Error::other)?);
        let spki_hash = identity.spki_hash().map_err(io::Error::other)?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (tx, mut rx) = watch::channel(false);
        let server = self.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let permit = tokio::select! {
                    _ = rx.changed() => break,
                    p = server.inner.connections.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let (sock, peer) = tokio::select! {
                    _ = rx.changed() => break,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = sock.set_nodelay(true);
                let server = server.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    let _ = server.serve_tls_inner(sock, &tls, Some(peer)).await;
                });
                // Reap finished connections so the set does not grow without bound.
                while conns.try_join_next().is_some() {}
            }
            conns.shutdown().await;
        });
        Ok(ServerHandle {
            local_addr,
            spki_hash,
            swissnum: self.inner.config.swissnum.clone(),
            shutdown: tx,
            task,
        })
    }

    /// Serve one TLS connection accepted elsewhere (e.g. by a listener that sniffed the
    /// first bytes): handshake with `tls`, then HTTP/1.1 until the client closes. If
    /// the server is at its connection limit the connection is closed at once.
    pub async fn serve_tls_connection<IO>(
        &self,
        io: IO,
        tls: &TlsAcceptor,
        peer: Option<SocketAddr>,
    ) -> io::Result<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(_permit) = self.inner.connections.clone().try_acquire_owned() else {
            debug!(?peer, "connection limit reached; closing");
            return Ok(());
        };
        self.serve_tls_inner(io, tls, peer).await
    }

    async fn serve_tls_inner<IO>(
        &self,
        io: IO,
        tls: &TlsAcceptor,
        peer: Option<SocketAddr>,
    ) -> io::Result<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let stream =
            match tokio::time::timeout(self.inner.config.header_read_timeout, tls.accept(io)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(?peer, error = %e, "TLS handshake failed");
                    return Err(e);
                }
                Err(_) => {
                    debug!(?peer, "TLS handshake timed out");
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    ));
                }
            };
        self.serve_http(stream, peer).await
    }

    /// Serve HTTP/1.1 on a stream that is already plaintext (decrypted by the caller, or
    /// a plain-HTTP test). If the server is at its connection limit the connection is
    /// closed at once.
    pub async fn serve_connection<IO>(&self, io: IO, peer: Option<SocketAddr>) -> io::Result<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(_permit) = self.inner.connections.clone().try_acquire_owned() else {
            debug!(?peer, "connection limit reached; closing");
            return Ok(());
        };
        self.serve_http(io, peer).await
    }

    async fn serve_http<IO>(&self, io: IO, peer: Option<SocketAddr>) -> io::Result<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let inner = self.inner.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let inner = inner.clone();
            async move { Ok::<_, Infallible>(inner.handle(req).await) }
        });
        let span = info_span!("gbs_connection", peer = ?peer);
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.config.header_read_timeout)
            .max_buf_size(self.inner.config.max_header_bytes.max(8192))
            .serve_connection(TokioIo::new(io), service)
            .instrument(span)
            .await
            .map_err(|e| {
                debug!(?peer, error = %e, "connection ended with an error");
                io::Error::other(e)
            })
    }

    /// Answer one request. Exposed so that other fronts (and tests) can route requests
    /// here without a socket.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        self.inner.handle(req).await
    }
}

// ---------------------------------------------------------------------------------
// Routing.

/// A share number from a path: `None` when it is a valid number that no share can have
/// (Tahoe routes any non-negative integer and then finds nothing: 404).
type ShareArg = Option<ShareNum>;

#[derive(Clone, Copy, Debug)]
enum Route {
    Version,
    Allocate(StorageIndex),
    ListImmutable(StorageIndex),
    Write(StorageIndex, ShareArg),
    ReadImmutable(StorageIndex, ShareArg),
    Abort(StorageIndex, ShareArg),
    CorruptImmutable(StorageIndex, ShareArg),
    Lease(StorageIndex),
    ReadTestWrite(StorageIndex),
    ListMutable(StorageIndex),
    ReadMutable(StorageIndex, ShareArg),
    CorruptMutable(StorageIndex, ShareArg),
}

impl Route {
    fn operation(self) -> Operation {
        match self {
            Route::Version => Operation::Version,
            Route::Allocate(_) => Operation::Allocate,
            Route::ListImmutable(_) => Operation::ListImmutable,
            Route::Write(..) => Operation::Write,
            Route::ReadImmutable(..) => Operation::ReadImmutable,
            Route::Abort(..) => Operation::Abort,
            Route::CorruptImmutable(..) => Operation::CorruptImmutable,
            Route::Lease(_) => Operation::AddLease,
            Route::ReadTestWrite(_) => Operation::ReadTestWrite,
            Route::ListMutable(_) => Operation::ListMutable,
            Route::ReadMutable(..) => Operation::ReadMutable,
            Route::CorruptMutable(..) => Operation::CorruptMutable,
        }
    }

    fn required_secrets(self) -> &'static [SecretKind] {
        use SecretKind::*;
        match self {
            Route::Allocate(_) => &[LeaseRenew, LeaseCancel, Upload],
            Route::Write(..) | Route::Abort(..) => &[Upload],
            Route::Lease(_) => &[LeaseRenew, LeaseCancel],
            Route::ReadTestWrite(_) => &[LeaseRenew, LeaseCancel, WriteEnabler],
            _ => &[],
        }
    }
}

/// How a trace names this front's calls: the GBS endpoint each seam method serves.
pub const TRACE_FRONT: crate::storage::layer::trace::Front = crate::storage::layer::trace::Front {
    protocol: "gbs",
    endpoint,
};

/// The endpoint (method and path pattern) that calls `method` on the seam.
pub fn endpoint(method: crate::storage::Method, share_type: Option<ShareType>) -> &'static str {
    use crate::storage::Method as M;
    match method {
        M::Version => "GET /storage/v1/version",
        M::AllocateBuckets => "POST /storage/v1/immutable/:si",
        M::WriteImmutable | M::CloseImmutable => "PATCH /storage/v1/immutable/:si/:shnum",
        M::AbortImmutable => "PUT /storage/v1/immutable/:si/:shnum/abort",
        M::ListImmutableShares => "GET /storage/v1/immutable/:si/shares",
        M::ReadImmutable | M::ImmutableShareLength => "GET /storage/v1/immutable/:si/:shnum",
        M::AddLease => "PUT /storage/v1/lease/:si",
        M::AdviseCorruptShare => match share_type {
            Some(ShareType::Mutable) => "POST /storage/v1/mutable/:si/:shnum/corrupt",
            _ => "POST /storage/v1/immutable/:si/:shnum/corrupt",
        },
        M::ReadTestWrite => "POST /storage/v1/mutable/:si/read-test-write",
        M::ListMutableShares => "GET /storage/v1/mutable/:si/shares",
        M::ReadMutable | M::MutableShareLength | M::SlotReadv => {
            "GET /storage/v1/mutable/:si/:shnum"
        }
    }
}

enum RouteError {
    NotFound,
    MethodNotAllowed,
}

fn share_arg(s: &str) -> Option<ShareArg> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        s.parse::<u64>()
            .ok()
            .and_then(|n| ShareNum::try_from(n).ok()),
    )
}

fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    use RouteError::*;
    let rest = path
        .strip_prefix(API_PREFIX)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(NotFound)?;
    let segs: Vec<&str> = rest.split('/').collect();
    let si = |s: &str| StorageIndex::from_base32(s).ok_or(NotFound);
    // Candidate routes for the path, each with its method.
    let candidates: Vec<(Method, Route)> = match segs.as_slice() {
        ["version"] => vec![(Method::GET, Route::Version)],
        ["immutable", s] => vec![(Method::POST, Route::Allocate(si(s)?))],
        ["immutable", s, "shares"] => vec![(Method::GET, Route::ListImmutable(si(s)?))],
        ["immutable", s, n] => {
            let (s, n) = (si(s)?, share_arg(n).ok_or(NotFound)?);
            vec![
                (Method::PATCH, Route::Write(s, n)),
                (Method::GET, Route::ReadImmutable(s, n)),
            ]
        }
        ["immutable", s, n, "abort"] => {
            vec![(
                Method::PUT,
                Route::Abort(si(s)?, share_arg(n).ok_or(NotFound)?),
            )]
        }
        ["immutable", s, n, "corrupt"] => vec![(
            Method::POST,
            Route::CorruptImmutable(si(s)?, share_arg(n).ok_or(NotFound)?),
        )],
        ["lease", s] => vec![(Method::PUT, Route::Lease(si(s)?))],
        ["mutable", s, "read-test-write"] => vec![(Method::POST, Route::ReadTestWrite(si(s)?))],
        ["mutable", s, "shares"] => vec![(Method::GET, Route::ListMutable(si(s)?))],
        ["mutable", s, n] => vec![(
            Method::GET,
            Route::ReadMutable(si(s)?, share_arg(n).ok_or(NotFound)?),
        )],
        ["mutable", s, n, "corrupt"] => vec![(
            Method::POST,
            Route::CorruptMutable(si(s)?, share_arg(n).ok_or(NotFound)?),
        )],
        _ => return Err(NotFound),
    };
    candidates
        .into_iter()
        // werkzeug answers HEAD with the GET rule.
        .find(|(m, _)| m == method || (*m == Method::GET && method == Method::HEAD))
        .map(|(_, r)| r)
        .ok_or(MethodNotAllowed)
}

// ---------------------------------------------------------------------------------
// Responses.

fn full(body: impl Into<Bytes>) -> ResponseBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// An error response: status and a short plain-text message (no body if empty).
fn error_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let mut r = Response::new(if message.is_empty() {
        empty()
    } else {
        full(message.to_owned())
    });
    *r.status_mut() = status;
    if !message.is_empty() {
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}

fn encoded_response(status: StatusCode, fmt: Format, body: Vec<u8>) -> Response<ResponseBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(fmt.mime()));
    r
}

fn storage_error_response(op: Operation, e: &StorageError) -> Response<ResponseBody> {
    let status = status_for(op, e);
    // Backend messages may name paths or upstreams; they never carry secrets (the seam
    // keeps secrets out of error texts), so they are safe to return.
    debug!(operation = op.name(), %status, error = %e, "operation failed");
    error_response(status, &e.to_string())
}

/// Make a response an octet-stream one (Tahoe sets this on every read response,
/// whatever its status).
fn octet_stream(mut r: Response<ResponseBody>) -> Response<ResponseBody> {
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM_MIME));
    r
}

/// Early exits inside a handler.
type Handled = Result<Response<ResponseBody>, Response<ResponseBody>>;

impl Inner {
    async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let span = info_span!("gbs_request", %method, path = %path);
        async move {
            let (parts, mut body) = req.into_parts();
            let head = Request::from_parts(parts, ());
            let response = match self.dispatch(&head, &mut body).await {
                Ok(r) | Err(r) => r,
            };
            // Read what is left of the request body before answering, as Tahoe (whose
            // web server reads whole bodies before dispatching) effectively does.
            // Without it a client still sending its body when an early error (401,
            // 404, 409…) comes back sees the connection close under it instead of the
            // status. Past `drain_limit`, or when the client stalls, give up: hyper then
            // closes the connection.
            self.drain(&mut body).await;
            debug!(status = %response.status(), "answered");
            response
        }
        .instrument(span)
        .await
    }

    async fn drain<B>(&self, body: &mut B)
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
    {
        let limit = self.config.drain_limit;
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(d) = frame.into_data() {
                    seen += d.len() as u64;
                    if seen > limit {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(self.config.header_read_timeout, drain).await;
    }

    async fn dispatch<B>(&self, req: &Request<()>, body: &mut B) -> Handled
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let route = match route(req.method(), req.uri().path()) {
            Ok(r) => r,
            Err(RouteError::NotFound) => {
                return Err(error_response(StatusCode::NOT_FOUND, "Not Found"))
            }
            Err(RouteError::MethodNotAllowed) => {
                return Err(error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method Not Allowed",
                ))
            }
        };
        match self
            .auth
            .check(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))
        {
            Ok(()) => {}
            Err(AuthorizationError::Malformed) => {
                return Err(error_response(
                    StatusCode::BAD_REQUEST,
                    "Bad Authorization header",
                ))
            }
            Err(AuthorizationError::Wrong) => {
                return Err(error_response(
                    StatusCode::UNAUTHORIZED,
                    WRONG_AUTHORIZATION,
                ))
            }
        }
        let values: Vec<&[u8]> = req
            .headers()
            .get_all(SECRETS_HEADER)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let secrets = parse_secrets(&values, route.required_secrets())
            .map_err(|e| error_response(StatusCode::BAD_REQUEST, &e.0))?;
        let op = route.operation();
        let api = &self.api;
        match route {
            Route::Version => {
                let fmt = self.response_format(req)?;
                let v = api
                    .version()
                    .await
                    .map_err(|e| storage_error_response(op, &e))?;
                Ok(encoded_response(StatusCode::OK, fmt, v.encode(fmt)))
            }
            Route::Allocate(si) => {
                let fmt = self.response_format(req)?;
                let body: AllocateBody = self
                    .read_body(req, body, self.config.limits.allocate)
                    .await?;
                let lease = secrets.lease().expect("required");
                let result = api
                    .allocate_buckets(AllocateRequest {
                        storage_index: si,
                        lease,
                        upload_secret: secret(&secrets, SecretKind::Upload),
                        share_numbers: body.share_numbers,
                        allocated_size: body.allocated_size,
                    })
                    .await
                    .map_err(|e| storage_error_response(op, &e))?;
                Ok(encoded_response(StatusCode::OK, fmt, result.encode(fmt)))
            }
            Route::Write(si, sh) => self.write(req, body, si, sh, &secrets).await,
            Route::Abort(si, sh) => {
                let sh = sh.ok_or_else(not_found_response)?;
                api.abort_immutable(si, sh, &secret(&secrets, SecretKind::Upload))
                    .await
                    .map_err(|e| storage_error_response(op, &e))?;
                Ok(error_response(StatusCode::OK, ""))
            }
            Route::ListImmutable(si) | Route::ListMutable(si) => {
                let fmt = self.response_format(req)?;
                let shares: BTreeSet<ShareNum> = if matches!(route, Route::ListImmutable(_)) {
                    api.list_immutable_shares(si).await
                } else {
                    api.list_mutable_shares(si).await
                }
                .map_err(|e| storage_error_response(op, &e))?;
                Ok(encoded_response(
                    StatusCode::OK,
                    fmt,
                    ShareSet(shares).encode(fmt),
                ))
            }
            Route::ReadImmutable(si, sh) => self
                .read(req, ShareType::Immutable, si, sh)
                .await
                .map(octet_stream)
                .map_err(octet_stream),
            Route::ReadMutable(si, sh) => self
                .read(req, ShareType::Mutable, si, sh)
                .await
                .map(octet_stream)
                .map_err(octet_stream),
            Route::Lease(si) => {
                api.add_lease(si, secrets.lease().expect("required"))
                    .await
                    .map_err(|e| storage_error_response(op, &e))?;
                Ok(error_response(StatusCode::NO_CONTENT, ""))
            }
            Route::CorruptImmutable(si, sh) | Route::CorruptMutable(si, sh) => {
                let share_type = if matches!(route, Route::CorruptImmutable(..)) {
                    ShareType::Immutable
                } else {
                    ShareType::Mutable
                };
                let sh = sh.ok_or_else(not_found_response)?;
                // Tahoe looks the share up before it reads the body.
                let exists = match share_type {
                    ShareType::Immutable => api.immutable_share_length(si, sh).await.map(|_| true),
                    ShareType::Mutable => {
                        api.list_mutable_shares(si).await.map(|s| s.contains(&sh))
                    }
                };
                match exists {
                    Ok(true) => {}
                    Ok(false) | Err(StorageError::NotFound(_)) => return Err(not_found_response()),
                    Err(e) => return Err(storage_error_response(op, &e)),
                }
                let CorruptBody { reason } = self
                    .read_body(req, body, self.config.limits.corrupt)
                    .await?;
                api.advise_corrupt_share(share_type, si, sh, reason)
                    .await
                    .map_err(|e| storage_error_response(op, &e))?;
                Ok(error_response(StatusCode::OK, ""))
            }
            Route::ReadTestWrite(si) => {
                let fmt = self.response_format(req)?;
                let body: ReadTestWriteBody = self
                    .read_body(req, body, self.config.limits.read_test_write)
                    .await?;
                let result = api
                    .read_test_write(ReadTestWriteRequest {
                        storage_index: si,
                        secrets: MutableSecrets {
                            write_enabler: secret(&secrets, SecretKind::WriteEnabler),
                            lease: secrets.lease().expect("required"),
                        },
                        test_write_vectors: body.test_write_vectors,
                        read_vector: body.read_vector,
                    })
                    .await
                    .map_err(|e| storage_error_response(op, &e))?;
                Ok(encoded_response(StatusCode::OK, fmt, result.encode(fmt)))
            }
        }
    }

    fn response_format<B>(&self, req: &Request<B>) -> Result<Format, Response<ResponseBody>> {
        let values: Vec<&str> = req
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        response_format(values).ok_or_else(|| error_response(StatusCode::NOT_ACCEPTABLE, ""))
    }

    /// Read and decode a small request body: 415 for an unknown encoding, 413 past
    /// `limit` (before reading when `Content-Length` says so), 400 when it does not
    /// decode.
    async fn read_body<B, T>(
        &self,
        req: &Request<()>,
        body: &mut B,
        limit: u64,
    ) -> Result<T, Response<ResponseBody>>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
        T: codec::Body,
    {
        let ct = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        let fmt = request_format(ct)
            .ok_or_else(|| error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, ""))?;
        let too_large = || error_response(StatusCode::PAYLOAD_TOO_LARGE, "");
        if let Some(len) = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > limit {
                return Err(too_large());
            }
        }
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                error_response(StatusCode::BAD_REQUEST, &format!("reading the body: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() as u64 + data.len() as u64 > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&data);
            }
        }
        T::decode(&buf, fmt).map_err(|e| error_response(StatusCode::BAD_REQUEST, &e.to_string()))
    }

    /// `PATCH /immutable/:si/:sh`: stream the body into the backend.
    async fn write<B>(
        &self,
        req: &Request<()>,
        body: &mut B,
        si: StorageIndex,
        sh: ShareArg,
        secrets: &Secrets,
    ) -> Handled
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let op = Operation::Write;
        // Tahoe checks the Content-Range before anything else, answering 416.
        let range = req
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(range::parse_content_range)
            .ok_or_else(|| error_response(StatusCode::RANGE_NOT_SATISFIABLE, ""))?;
        let sh = sh.ok_or_else(not_found_response)?;
        let fmt = self.response_format(req)?;
        let upload_secret = secret(secrets, SecretKind::Upload);
        let chunk = self.config.write_chunk_size.max(1) as u64;
        let mut pending = Bytes::new();
        let mut offset = range.begin;
        let mut remaining = range.end - range.begin;
        let mut progress = None;
        let mut ended = false;
        while remaining > 0 {
            let want = remaining.min(chunk) as usize;
            // Gather `want` bytes (or what is left before the body ends).
            let mut buf = BytesMut::with_capacity(want);
            while buf.len() < want {
                if pending.is_empty() {
                    if ended {
                        break;
                    }
                    match body.frame().await {
                        None => {
                            ended = true;
                            continue;
                        }
                        Some(Err(e)) => {
                            return Err(error_response(
                                StatusCode::BAD_REQUEST,
                                &format!("reading the body: {e}"),
                            ))
                        }
                        Some(Ok(f)) => {
                            if let Ok(d) = f.into_data() {
                                pending = d;
                            }
                            continue;
                        }
                    }
                }
                let take = (want - buf.len()).min(pending.len());
                buf.extend_from_slice(&pending.split_to(take));
            }
            if buf.is_empty() {
                // Tahoe: `assert data, "uploaded data length doesn't match range"`, a 500.
                return Err(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "uploaded data length doesn't match range",
                ));
            }
            let n = buf.len() as u64;
            let p = self
                .api
                .write_immutable(si, sh, &upload_secret, offset, buf.freeze())
                .await
                .map_err(|e| storage_error_response(op, &e))?;
            offset += n;
            remaining -= n;
            progress = Some(p);
        }
        let progress = progress.expect("a Content-Range is never empty");
        let status = if progress.complete() {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(encoded_response(status, fmt, progress.encode(fmt)))
    }

    /// `GET /{immutable,mutable}/:si/:sh`.
    async fn read(
        &self,
        req: &Request<()>,
        kind: ShareType,
        si: StorageIndex,
        sh: ShareArg,
    ) -> Handled {
        let op = match kind {
            ShareType::Immutable => Operation::ReadImmutable,
            ShareType::Mutable => Operation::ReadMutable,
        };
        let sh = sh.ok_or_else(|| error_response(StatusCode::NOT_FOUND, ""))?;
        let header = req.headers().get(RANGE).map(|v| v.to_str().ok());
        let api = self.api.clone();
        let chunk = self.config.read_chunk_size.max(1) as u64;
        // A small range is one backend read: no length lookup needed, the read itself
        // says whether the share exists and where it ends.
        if let Some(Some((begin, end))) = header.map(|h| h.and_then(range::parse_range)) {
            if end - begin <= chunk {
                let data = read_share(&*api, kind, si, sh, begin, end - begin)
                    .await
                    .map_err(|e| storage_error_response(op, &e))?;
                if data.is_empty() {
                    return Ok(error_response(StatusCode::NO_CONTENT, ""));
                }
                let r = ByteRange {
                    begin,
                    end: begin + data.len() as u64,
                };
                let mut resp = Response::new(full(data));
                *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                resp.headers_mut().insert(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&range::content_range_value(r)).expect("ASCII"),
                );
                return Ok(resp);
            }
        }
        let length = match kind {
            ShareType::Immutable => api.immutable_share_length(si, sh).await,
            ShareType::Mutable => api.mutable_share_length(si, sh).await,
        }
        .map_err(|e| storage_error_response(op, &e))?;
        let plan = match header {
            None => ReadPlan::Whole,
            Some(h) => range::plan_read(Some(h.unwrap_or("")), length),
        };
        let (status, r) = match plan {
            ReadPlan::Unsatisfiable => {
                return Err(error_response(StatusCode::RANGE_NOT_SATISFIABLE, ""))
            }
            ReadPlan::Empty => return Ok(error_response(StatusCode::NO_CONTENT, "")),
            ReadPlan::Whole => (
                StatusCode::OK,
                ByteRange {
                    begin: 0,
                    end: length,
                },
            ),
            ReadPlan::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
        };
        let body = stream::unfold(Some(r.begin), move |pos| {
            let api = api.clone();
            async move {
                let pos = pos?;
                if pos >= r.end {
                    return None;
                }
                let want = (r.end - pos).min(chunk);
                match read_share(&*api, kind, si, sh, pos, want).await {
                    Ok(data) if !data.is_empty() => {
                        let next = pos + data.len() as u64;
                        Some((Ok(Frame::data(data)), Some(next)))
                    }
                    Ok(_) => Some((
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("share ended at {pos}, before the {} bytes announced", r.end),
                        )),
                        None,
                    )),
                    Err(e) => Some((Err(io::Error::other(e.to_string())), None)),
                }
            }
        });
        let mut resp = Response::new(StreamBody::new(body).boxed_unsync());
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(r.end - r.begin));
        if status == StatusCode::PARTIAL_CONTENT {
            resp.headers_mut().insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&range::content_range_value(r)).expect("ASCII"),
            );
        }
        Ok(resp)
    }
}

/// Tahoe's bare 404 for a share or upload that is not there.
fn not_found_response() -> Response<ResponseBody> {
    error_response(StatusCode::NOT_FOUND, "")
}

fn secret(secrets: &Secrets, kind: SecretKind) -> crate::storage::Secret {
    secrets
        .get(kind)
        .cloned()
        .expect("required secrets are present after parsing")
}

async fn read_share(
    api: &dyn StorageApi,
    kind: ShareType,
    si: StorageIndex,
    sh: ShareNum,
    offset: u64,
    length: u64,
) -> Result<Bytes, StorageError> {
    match kind {
        ShareType::Immutable => api.read_immutable(si, sh, offset, length).await,
        ShareType::Mutable => api.read_mutable(si, sh, offset, length).await,
    }
}
