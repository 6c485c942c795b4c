//! The GBS client: a [`StorageApi`] backend that speaks GBS to an upstream server.
//!
//! - TLS: the server is pinned by the SPKI hash of its NURL ([`super::tls`]); a wrong
//!   pin fails the handshake and the call returns [`StorageError::Unavailable`] naming
//!   both hashes. No web PKI, no client certificate, TLS 1.3.
//! - Connections are pooled (HTTP/1.1 keep-alive, [`ClientConfig::pool_max_idle`] idle
//!   connections kept, as Tahoe keeps 10).
//! - Timeouts: connecting (TCP and TLS), waiting for response headers, and silence
//!   while a body arrives, each configurable.
//! - Requests are what Tahoe's own client sends (`Accept: application/cbor`, CBOR
//!   bodies, one `X-Tahoe-Authorization` header per secret); responses are checked as
//!   Tahoe's client checks them (CBOR content type, 206 + `Content-Range` matching the
//!   request for reads, body length equal to the announced range) and every status is
//!   turned into a [`StorageError`] by [`super::errors::error_for`].
//!
//! GBS has no call for two things the seam offers:
//! - a share's length: found with range reads (one read of the first 64 KiB, which
//!   settles it for small shares, then a 1-byte probe search);
//! - closing an incomplete immutable share (Foolscap's `close()`): the client
//!   remembers the ranges each upload still needs and writes zeros into them, which is
//!   what a Foolscap close leaves behind (holes read as zeros).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::auth::{authorization_value, secret_header_value, SecretKind, SECRETS_HEADER};
use super::codec::{self, AllocateBody, Body as _, CorruptBody, ReadTestWriteBody, ShareSet};
use super::errors::{error_for, Operation};
use super::media::{essence, Format, CBOR_MIME, OCTET_STREAM_MIME};
use super::nurl::{Nurl, NurlError};
use super::range;
use super::tls::client_config;
use super::API_PREFIX;
use crate::storage::{
    AllocateRequest, AllocateResult, ByteRange, LeaseSecrets, ReadTestWriteRequest,
    ReadTestWriteResult, Secret, ShareNum, ShareType, StorageApi, StorageError, StorageIndex,
    StorageResult, VersionInfo, WriteProgress,
};

/// Client knobs. The defaults follow Tahoe's client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// From sending a request to receiving the response headers (Tahoe: 60 s).
    pub request_timeout: Duration,
    /// Longest silence while a response body arrives (Tahoe: 60 s).
    pub body_idle_timeout: Duration,
    /// Idle connections kept per server (Tahoe: 10).
    pub pool_max_idle: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Largest CBOR response accepted (Tahoe: 30 MiB).
    pub max_message_size: usize,
    /// Largest error body read for the message (Tahoe: 10 kB).
    pub max_error_body: usize,
    /// The most zero bytes written in one PATCH when closing an incomplete share.
    pub fill_chunk_size: usize,
    /// Connections open to the server at once (in use or idle). A request that needs
    /// a new connection past it waits for one to close or to come back to the pool.
    pub max_connections: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(60),
            pool_max_idle: 10,
            pool_idle_timeout: Duration::from_secs(90),
            max_message_size: 30 << 20,
            max_error_body: 10_000,
            fill_chunk_size: 1 << 20,
            max_connections: 64,
        }
    }
}

/// The first read when looking for a share's length; most shares are smaller.
const LENGTH_PROBE: u64 = 64 * 1024;

type HttpClient = hyper_util::client::legacy::Client<PinnedConnector, Full<Bytes>>;

/// A GBS upstream, as a [`StorageApi`].
pub struct GbsClient {
    nurl: Nurl,
    base: String,
    authorization: HeaderValue,
    http: HttpClient,
    config: ClientConfig,
    /// Ranges still required by the uploads this client started, for `close_immutable`.
    uploads: Mutex<HashMap<(StorageIndex, ShareNum), Vec<ByteRange>>>,
}

impl std::fmt::Debug for GbsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbsClient")
            .field("nurl", &self.nurl.redacted())
            .finish()
    }
}

impl GbsClient {
    /// A client for the server at `nurl`. Refuses `pb+tor` NURLs. Connects lazily: the
    /// first call opens the first connection.
    pub fn new(nurl: &Nurl, config: ClientConfig) -> Result<GbsClient, NurlError> {
        let (host, port) = nurl.dial_address()?;
        let server_name = ServerName::try_from(host.clone())
            .map(|n| n.to_owned())
            .map_err(|_| NurlError::Syntax(format!("{host} is not a usable host name")))?;
        let connector = PinnedConnector {
            tls: TlsConnector::from(client_config(nurl.spki_hash_bytes())),
            host,
            port,
            server_name,
            timeout: config.connect_timeout,
            redacted: Arc::from(nurl.redacted()),
            slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
        };
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_idle_timeout(config.pool_idle_timeout)
            .build(connector);
        let authorization = HeaderValue::from_str(&authorization_value(nurl.swissnum.as_bytes()))
            .map_err(|_| {
            NurlError::Syntax("the swissnum is not a valid header value".into())
        })?;
        let mut authorization = authorization;
        authorization.set_sensitive(true);
        Ok(GbsClient {
            base: nurl.https_base(),
            nurl: nurl.clone(),
            authorization,
            http,
            config,
            uploads: Mutex::new(HashMap::new()),
        })
    }

    pub fn nurl(&self) -> &Nurl {
        &self.nurl
    }

    fn uploads(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(StorageIndex, ShareNum), Vec<ByteRange>>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        secrets: &[(SecretKind, &Secret)],
        headers: &[(http::HeaderName, String)],
        body: Option<Bytes>,
    ) -> StorageResult<Response<Incoming>> {
        let uri: Uri = format!("{}{}{}", self.base, API_PREFIX, path)
            .parse()
            .map_err(|e| StorageError::Internal(format!("bad request URI: {e}")))?;
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, CBOR_MIME);
        for (kind, s) in secrets {
            let mut v =
                HeaderValue::from_str(&secret_header_value(*kind, &s.0)).expect("base64 is ASCII");
            v.set_sensitive(true);
            b = b.header(SECRETS_HEADER, v);
        }
        for (name, value) in headers {
            b = b.header(name, value);
        }
        let body = match body {
            Some(bytes) => {
                if !headers.iter().any(|(n, _)| n == CONTENT_RANGE) {
                    b = b.header(CONTENT_TYPE, CBOR_MIME);
                }
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let req = b
            .body(body)
            .map_err(|e| StorageError::Internal(format!("building the request: {e}")))?;
        match tokio::time::timeout(self.config.request_timeout, self.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(StorageError::Unavailable(format!(
                "{} to {}: {}",
                op.name(),
                self.nurl.redacted(),
                error_chain(&e)
            ))),
            Err(_) => Err(StorageError::Unavailable(format!(
                "{} to {}: no response within {:?}",
                op.name(),
                self.nurl.redacted(),
                self.config.request_timeout
            ))),
        }
    }

    /// Read a body of at most `limit` bytes, with the idle timeout between frames.
    async fn collect(
        &self,
        op: Operation,
        resp: Response<Incoming>,
        limit: usize,
    ) -> StorageResult<Bytes> {
        // One allocation for the announced length (a 350 KiB share read arrives in
        // many frames); the limit still applies to what actually arrives.
        let announced = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = resp.into_body();
        let mut buf = BytesMut::with_capacity(announced.min(limit));
        loop {
            let frame =
                match tokio::time::timeout(self.config.body_idle_timeout, body.frame()).await {
                    Err(_) => {
                        return Err(StorageError::Unavailable(format!(
                            "{}: response body stalled for {:?}",
                            op.name(),
                            self.config.body_idle_timeout
                        )))
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        return Err(StorageError::Unavailable(format!(
                            "{}: reading the response body: {}",
                            op.name(),
                            error_chain(&e)
                        )))
                    }
                    Ok(Some(Ok(f))) => f,
                };
            if let Ok(d) = frame.into_data() {
                if buf.len() + d.len() > limit {
                    return Err(StorageError::Remote {
                        kind: "response too large".into(),
                        message: format!("{}: response body over {limit} bytes", op.name()),
                    });
                }
                buf.extend_from_slice(&d);
            }
        }
        Ok(buf.freeze())
    }

    /// Turn a non-success response into its error (reading a bounded error body).
    async fn failure(&self, op: Operation, resp: Response<Incoming>) -> StorageError {
        let status = resp.status();
        let limit = self.config.max_error_body;
        let body = match self.collect(op, resp, limit).await {
            Ok(b) => b,
            Err(_) => Bytes::new(),
        };
        error_for(op, status, &body)
    }

    /// Expect `ok` statuses with a CBOR body; decode it.
    async fn cbor<T: codec::Body>(
        &self,
        op: Operation,
        resp: Response<Incoming>,
        ok: &[StatusCode],
    ) -> StorageResult<(StatusCode, T)> {
        let status = resp.status();
        if !ok.contains(&status) {
            return Err(self.failure(op, resp).await);
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(essence)
            .unwrap_or("");
        if !ct.eq_ignore_ascii_case(CBOR_MIME) {
            return Err(StorageError::Remote {
                kind: "protocol".into(),
                message: format!(
                    "{}: server didn't send CBOR, content type is {ct:?}",
                    op.name()
                ),
            });
        }
        let body = self.collect(op, resp, self.config.max_message_size).await?;
        let v = T::decode(&body, Format::Cbor).map_err(|e| StorageError::Remote {
            kind: "protocol".into(),
            message: format!("{}: undecodable response: {e}", op.name()),
        })?;
        Ok((status, v))
    }

    /// Expect exactly `ok` with no interesting body.
    async fn expect_status(
        &self,
        op: Operation,
        resp: Response<Incoming>,
        ok: StatusCode,
    ) -> StorageResult<()> {
        if resp.status() == ok {
            // Drain so the connection can be reused.
            let _ = self.collect(op, resp, self.config.max_error_body).await;
            Ok(())
        } else {
            Err(self.failure(op, resp).await)
        }
    }

    async fn read_share(
        &self,
        kind: ShareType,
        si: StorageIndex,
        sh: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let op = match kind {
            ShareType::Immutable => Operation::ReadImmutable,
            ShareType::Mutable => Operation::ReadMutable,
        };
        // HTTP cannot ask for nothing; ask for one byte so a missing share is still
        // reported as missing.
        let range_value = range::range_value(offset, length.max(1)).expect("length is at least 1");
        let path = format!("/{}/{}/{}", kind.as_str(), si, sh);
        let resp = self
            .send(op, Method::GET, &path, &[], &[(RANGE, range_value)], None)
            .await?;
        let protocol = |msg: String| StorageError::Remote {
            kind: "protocol".into(),
            message: format!("{}: {msg}", op.name()),
        };
        match resp.status() {
            StatusCode::NO_CONTENT => return Ok(Bytes::new()),
            StatusCode::PARTIAL_CONTENT => {}
            _ => return Err(self.failure(op, resp).await),
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(essence);
        if ct != Some(OCTET_STREAM_MIME) {
            return Err(protocol(format!(
                "content type was {ct:?}, should be {OCTET_STREAM_MIME}"
            )));
        }
        let cr = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(range::parse_content_range)
            .ok_or_else(|| protocol("Content-Range was missing or invalid".into()))?;
        let want_end = offset.saturating_add(length.max(1));
        if cr.begin != offset || cr.end > want_end {
            return Err(protocol(format!(
                "server sent bytes {}..{} for a request of {offset}..{want_end}",
                cr.begin, cr.end
            )));
        }
        let expect = (cr.end - cr.begin) as usize;
        let body = self.collect(op, resp, expect).await?;
        if body.len() != expect {
            return Err(protocol(format!(
                "length of the body ({}) didn't match Content-Range ({expect})",
                body.len()
            )));
        }
        if length == 0 {
            return Ok(Bytes::new());
        }
        Ok(body)
    }

    /// A share's length, with range reads (GBS has no call for it).
    async fn share_length(
        &self,
        kind: ShareType,
        si: StorageIndex,
        sh: ShareNum,
    ) -> StorageResult<u64> {
        let first = self.read_share(kind, si, sh, 0, LENGTH_PROBE).await?;
        if (first.len() as u64) < LENGTH_PROBE {
            return Ok(first.len() as u64);
        }
        let exists = |p: u64| async move {
            Ok::<bool, StorageError>(!self.read_share(kind, si, sh, p, 1).await?.is_empty())
        };
        // Byte `lo` exists; find a `hi` that does not, doubling.
        let mut lo = LENGTH_PROBE - 1;
        let mut hi = LENGTH_PROBE.saturating_mul(2);
        while exists(hi).await? {
            lo = hi;
            if hi == u64::MAX {
                return Ok(u64::MAX);
            }
            hi = hi.saturating_mul(2);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if exists(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(hi)
    }

    async fn patch(
        &self,
        si: StorageIndex,
        sh: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        let op = Operation::Write;
        let cr = range::patch_content_range_value(offset, data.len() as u64)
            .ok_or_else(|| StorageError::DataTooLarge(format!("write at {offset} overflows")))?;
        let resp = self
            .send(
                op,
                Method::PATCH,
                &format!("/immutable/{si}/{sh}"),
                &[(SecretKind::Upload, upload_secret)],
                &[(CONTENT_RANGE, cr)],
                // Share data goes out as it came in, without a copy.
                Some(data),
            )
            .await?;
        let (status, WriteProgress { required }) = self
            .cbor(op, resp, &[StatusCode::OK, StatusCode::CREATED])
            .await?;
        let mut uploads = self.uploads();
        if status == StatusCode::CREATED {
            uploads.remove(&(si, sh));
            // Tahoe's server says 201 exactly when the share completed.
            return Ok(WriteProgress { required: vec![] });
        }
        uploads.insert((si, sh), required.clone());
        Ok(WriteProgress { required })
    }
}

/// Every error in a chain, joined, so the root cause (e.g. the pin mismatch inside the
/// TLS error inside the connect error) is visible.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[async_trait::async_trait]
impl StorageApi for GbsClient {
    async fn version(&self) -> StorageResult<VersionInfo> {
        let op = Operation::Version;
        let resp = self
            .send(op, Method::GET, "/version", &[], &[], None)
            .await?;
        Ok(self.cbor(op, resp, &[StatusCode::OK]).await?.1)
    }

    async fn allocate_buckets(&self, req: AllocateRequest) -> StorageResult<AllocateResult> {
        let op = Operation::Allocate;
        let body = AllocateBody {
            share_numbers: req.share_numbers,
            allocated_size: req.allocated_size,
        }
        .encode(Format::Cbor);
        let resp = self
            .send(
                op,
                Method::POST,
                &format!("/immutable/{}", req.storage_index),
                &[
                    (SecretKind::LeaseRenew, &req.lease.renew),
                    (SecretKind::LeaseCancel, &req.lease.cancel),
                    (SecretKind::Upload, &req.upload_secret),
                ],
                &[],
                Some(body.into()),
            )
            .await?;
        let (_, result): (_, AllocateResult) = self.cbor(op, resp, &[StatusCode::OK]).await?;
        let mut uploads = self.uploads();
        for &sh in &result.allocated {
            let required = if req.allocated_size == 0 {
                vec![]
            } else {
                vec![ByteRange {
                    begin: 0,
                    end: req.allocated_size,
                }]
            };
            uploads.insert((req.storage_index, sh), required);
        }
        Ok(result)
    }

    async fn write_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        if data.is_empty() {
            // HTTP cannot carry an empty Content-Range; an empty write changes nothing.
            return match self.uploads().get(&(si, shnum)) {
                Some(required) => Ok(WriteProgress {
                    required: required.clone(),
                }),
                None => Err(StorageError::NotFound(format!(
                    "no upload of share {shnum} of {si} known to this client"
                ))),
            };
        }
        self.patch(si, shnum, upload_secret, offset, data).await
    }

    async fn close_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let required = self.uploads().get(&(si, shnum)).cloned();
        let Some(required) = required else {
            // Not an upload of ours in progress: fine if the share is complete.
            return if self.list_immutable_shares(si).await?.contains(&shnum) {
                Ok(())
            } else {
                Err(StorageError::NotFound(format!(
                    "no upload of share {shnum} of {si} known to this client"
                )))
            };
        };
        // Fill the holes with zeros, as a Foolscap close leaves them.
        let chunk = self.config.fill_chunk_size.max(1) as u64;
        for r in required {
            let mut pos = r.begin;
            while pos < r.end {
                let n = (r.end - pos).min(chunk);
                self.patch(
                    si,
                    shnum,
                    upload_secret,
                    pos,
                    Bytes::from(vec![0u8; n as usize]),
                )
                .await?;
                pos += n;
            }
        }
        self.uploads().remove(&(si, shnum));
        Ok(())
    }

    async fn abort_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let op = Operation::Abort;
        let resp = self
            .send(
                op,
                Method::PUT,
                &format!("/immutable/{si}/{shnum}/abort"),
                &[(SecretKind::Upload, upload_secret)],
                &[],
                None,
            )
            .await?;
        self.expect_status(op, resp, StatusCode::OK).await?;
        self.uploads().remove(&(si, shnum));
        Ok(())
    }

    async fn list_immutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        let op = Operation::ListImmutable;
        let resp = self
            .send(
                op,
                Method::GET,
                &format!("/immutable/{si}/shares"),
                &[],
                &[],
                None,
            )
            .await?;
        let (_, ShareSet(shares)) = self.cbor(op, resp, &[StatusCode::OK]).await?;
        Ok(shares)
    }

    async fn read_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        self.read_share(ShareType::Immutable, si, shnum, offset, length)
            .await
    }

    async fn immutable_share_length(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> StorageResult<u64> {
        self.share_length(ShareType::Immutable, si, shnum).await
    }

    async fn add_lease(&self, si: StorageIndex, lease: LeaseSecrets) -> StorageResult<()> {
        let op = Operation::AddLease;
        let resp = self
            .send(
                op,
                Method::PUT,
                &format!("/lease/{si}"),
                &[
                    (SecretKind::LeaseRenew, &lease.renew),
                    (SecretKind::LeaseCancel, &lease.cancel),
                ],
                &[],
                None,
            )
            .await?;
        self.expect_status(op, resp, StatusCode::NO_CONTENT).await
    }

    async fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> StorageResult<()> {
        let op = match share_type {
            ShareType::Immutable => Operation::CorruptImmutable,
            ShareType::Mutable => Operation::CorruptMutable,
        };
        // Tahoe's schema wants 1..=32765 UTF-8 bytes; shorten long reasons at a
        // character boundary and stand in for an empty one.
        let mut reason = if reason.is_empty() {
            "unspecified".to_owned()
        } else {
            reason
        };
        if reason.len() > codec::MAX_REASON_LEN {
            let mut cut = codec::MAX_REASON_LEN;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        let resp = self
            .send(
                op,
                Method::POST,
                &format!("/{}/{si}/{shnum}/corrupt", share_type.as_str()),
                &[],
                &[],
                Some(CorruptBody { reason }.encode(Format::Cbor).into()),
            )
            .await?;
        self.expect_status(op, resp, StatusCode::OK).await
    }

    async fn read_test_write(
        &self,
        req: ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult> {
        let op = Operation::ReadTestWrite;
        let body = ReadTestWriteBody {
            test_write_vectors: req.test_write_vectors,
            read_vector: req.read_vector,
        }
        .encode(Format::Cbor);
        let resp = self
            .send(
                op,
                Method::POST,
                &format!("/mutable/{}/read-test-write", req.storage_index),
                &[
                    (SecretKind::LeaseRenew, &req.secrets.lease.renew),
                    (SecretKind::LeaseCancel, &req.secrets.lease.cancel),
                    (SecretKind::WriteEnabler, &req.secrets.write_enabler),
                ],
                &[],
                Some(body.into()),
            )
            .await?;
        Ok(self.cbor(op, resp, &[StatusCode::OK]).await?.1)
    }

    async fn list_mutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        let op = Operation::ListMutable;
        let resp = self
            .send(
                op,
                Method::GET,
                &format!("/mutable/{si}/shares"),
                &[],
                &[],
                None,
            )
            .await?;
        let (_, ShareSet(shares)) = self.cbor(op, resp, &[StatusCode::OK]).await?;
        Ok(shares)
    }

    async fn read_mutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        self.read_share(ShareType::Mutable, si, shnum, offset, length)
            .await
    }

    async fn mutable_share_length(&self, si: StorageIndex, shnum: ShareNum) -> StorageResult<u64> {
        self.share_length(ShareType::Mutable, si, shnum).await
    }

    async fn slot_readv(
        &self,
        si: StorageIndex,
        shares: Vec<ShareNum>,
        readv: Vec<crate::storage::ReadVector>,
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        // As Tahoe's HTTP client does it: list (when no shares are named), then one
        // range read per share and vector, concurrently. Not atomic.
        let existing = self.list_mutable_shares(si).await?;
        let wanted: Vec<ShareNum> = if shares.is_empty() {
            existing.iter().copied().collect()
        } else {
            shares
                .into_iter()
                .filter(|s| existing.contains(s))
                .collect()
        };
        let reads = wanted.iter().map(|&sh| {
            let readv = &readv;
            async move {
                let mut out = Vec::with_capacity(readv.len());
                for rv in readv {
                    if rv.size == 0 {
                        out.push(Bytes::new());
                        continue;
                    }
                    match self.read_mutable(si, sh, rv.offset, rv.size).await {
                        Ok(b) => out.push(b),
                        Err(StorageError::NotFound(_)) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                Ok(Some((sh, out)))
            }
        });
        let results = futures_util::future::join_all(reads).await;
        let mut out = BTreeMap::new();
        for r in results {
            if let Some((sh, data)) = r? {
                out.insert(sh, data);
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------
// The connector: TCP to the NURL's address, then TLS pinned to its SPKI hash.

#[derive(Clone)]
struct PinnedConnector {
    tls: TlsConnector,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    timeout: Duration,
    redacted: Arc<str>,
    /// One permit per open connection ([`ClientConfig::max_connections`]).
    slots: Arc<Semaphore>,
}

impl tower_service::Service<Uri> for PinnedConnector {
    type Response = PinnedStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PinnedStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        // Every request of this client goes to the NURL's server, whatever the URI.
        let this = self.clone();
        Box::pin(async move {
            // Waiting for a slot is not bounded here: the caller's request timeout
            // bounds it, and hyper hands the request an idle pooled connection as soon
            // as one comes back.
            let slot = this
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("connector closed"))?;
            let connect = async {
                let tcp = TcpStream::connect((this.host.as_str(), this.port))
                    .await
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("connecting to {}: {e}", this.redacted))
                    })?;
                let _ = tcp.set_nodelay(true);
                let tls = this
                    .tls
                    .connect(this.server_name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("TLS with {} refused: {e}", this.redacted))
                    })?;
                Ok(PinnedStream(TokioIo::new(tls), slot))
            };
            match tokio::time::timeout(this.timeout, connect).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {} timed out", this.redacted),
                )),
            }
        })
    }
}

/// A connection, holding its slot until it is dropped.
struct PinnedStream(
    TokioIo<TlsStream<TcpStream>>,
    #[allow(dead_code)] OwnedSemaphorePermit,
);

impl Connection for PinnedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for PinnedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PinnedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}
