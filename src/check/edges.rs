//! The `edges` group: protocol edges, checks the storage seam cannot express, made
//! with raw access to the server (hand-built HTTP requests for GBS, hand-built calls
//! for Foolscap). Each expects the status or error a Tahoe-LAFS 1.20 server gives:
//! a server must refuse a wrong swissnum, a malformed request or an unacceptable
//! content type the way Tahoe does, or clients and tools that rely on those answers
//! misbehave. Every edge check is of one protocol, so it is protocol-specific.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{error_kind, CheckResult, Group, Status, Target};
use crate::foolscap::storage::errors::call_to_storage;
use crate::foolscap::{CallError, Furl, Tub, Value};
use crate::gbs::auth::{authorization_value, secret_header_value, SecretKind, SECRETS_HEADER};
use crate::gbs::client::{ClientConfig, GbsClient};
use crate::gbs::codec::{self, Body as _};
use crate::gbs::media::Format;
use crate::gbs::nurl::Nurl;
use crate::gbs::tls::client_config;
use crate::gbs::API_PREFIX;
use crate::storage::*;

/// Run the edge checks of the target's protocol.
pub async fn edges(target: &Target, tub: &Tub) -> Vec<CheckResult> {
    match target {
        Target::Gbs(nurl) => gbs_edges(nurl).await,
        Target::Foolscap(furl) => foolscap_edges(tub, furl).await,
    }
}

fn result(
    id: &str,
    description: &str,
    expected: &str,
    got: String,
    note: Option<String>,
) -> CheckResult {
    let pass = expected == got;
    CheckResult {
        id: format!("{}.{id}", Group::Edges),
        group: Group::Edges,
        description: description.into(),
        status: if pass { Status::Pass } else { Status::Fail },
        expected: expected.into(),
        got,
        protocol_specific: true,
        note: if pass { None } else { note },
    }
}

/// Foolscap's `add_lease`, called directly (the backend refuses unknown storage
/// indexes itself, as GBS does).
pub async fn foolscap_add_lease(tub: &Tub, furl: &Furl, si: StorageIndex) -> StorageResult<()> {
    let ss = tub
        .get_reference(furl)
        .await
        .map_err(|e| StorageError::Unavailable(e.to_string()))?;
    ss.call(
        "add_lease",
        &[
            Value::bytes(si.0.to_vec()),
            Value::bytes(rand::random::<[u8; 32]>().to_vec()),
            Value::bytes(rand::random::<[u8; 32]>().to_vec()),
        ],
    )
    .await
    .map(|_| ())
    .map_err(call_to_storage)
}

/// A remote failure's class, as the report shows it.
fn call_outcome(r: &Result<Value, CallError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(CallError::Remote(f)) => format!("remote failure {}", f.kind),
        Err(CallError::Violation(_)) => "violation in the answer".into(),
        Err(CallError::ConnectionLost(_)) => "connection lost".into(),
        Err(CallError::Timeout(..)) => "no answer in time".into(),
    }
}

async fn foolscap_edges(tub: &Tub, furl: &Furl) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let mut wrong = furl.clone();
    wrong.swissnum = crate::base32::base32_lower(&rand::random::<[u8; 20]>());
    let r = match tub.connect(&wrong).await {
        Ok(c) => c.get_reference(&wrong.swissnum).await.map(|_| Value::None),
        Err(e) => Err(CallError::ConnectionLost(e.to_string())),
    };
    let note = r.as_ref().err().map(|e| e.to_string());
    out.push(result(
        "foolscap.wrong-swissnum",
        "a FURL with another swissnum names no object",
        "remote failure builtins.KeyError",
        call_outcome(&r),
        note,
    ));
    let ss = match tub.get_reference(furl).await {
        Ok(s) => s,
        Err(e) => {
            out.push(result(
                "foolscap.connect",
                "the storage server object can be reached",
                "ok",
                "error unavailable".into(),
                Some(e.to_string()),
            ));
            return out;
        }
    };
    for (method, id, description, args) in schema_cases() {
        let r = ss.call(method, &args).await;
        let note = r.as_ref().err().map(|e| e.to_string());
        out.push(result(
            id,
            description,
            "remote failure foolscap.tokens.Violation",
            call_outcome(&r),
            note,
        ));
    }
    out
}

/// Calls whose arguments violate `RIStorageServer`'s schema: method, check, what it
/// checks, arguments.
fn schema_cases() -> Vec<(&'static str, &'static str, &'static str, Vec<Value>)> {
    let si = || Value::bytes(rand::random::<[u8; 16]>().to_vec());
    let s32 = || Value::bytes(rand::random::<[u8; 32]>().to_vec());
    let canary: Arc<dyn crate::foolscap::RemoteObject> = Arc::new(crate::foolscap::broker::Canary);
    vec![
        (
            "allocate_buckets",
            "foolscap.short-secret",
            "a 31-byte lease secret violates the schema",
            vec![
                si(),
                Value::bytes(vec![1u8; 31]),
                s32(),
                Value::Set(vec![Value::int(0u64)]),
                Value::int(10u64),
                Value::Local(canary.clone()),
            ],
        ),
        (
            "allocate_buckets",
            "foolscap.shares-not-a-set",
            "share numbers sent as a list, not a set, violate the schema",
            vec![
                si(),
                s32(),
                s32(),
                Value::List(vec![Value::int(0u64)]),
                Value::int(10u64),
                Value::Local(canary.clone()),
            ],
        ),
        (
            "get_buckets",
            "foolscap.long-storage-index",
            "a 17-byte storage index violates the schema",
            vec![Value::bytes(vec![7u8; 17])],
        ),
        (
            "no_such_method",
            "foolscap.unknown-method",
            "an unknown method is refused",
            vec![],
        ),
    ]
}

/// One HTTPS request on its own connection, pinned to the NURL's certificate.
async fn request(nurl: &Nurl, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
    let (host, port) = nurl.dial_address().map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(client_config(nurl.spki_hash_bytes()))
        .connect(name.to_owned(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("HTTP body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

struct Builder<'a> {
    nurl: &'a Nurl,
}

impl Builder<'_> {
    fn req(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{API_PREFIX}{path}"))
            .header(
                http::header::HOST,
                format!("{}:{}", self.nurl.host, self.nurl.port),
            )
    }

    fn authed(&self, method: Method, path: &str) -> http::request::Builder {
        self.req(method, path)
            .header(
                http::header::AUTHORIZATION,
                authorization_value(self.nurl.swissnum.as_bytes()),
            )
            .header(http::header::ACCEPT, "application/cbor")
    }
}

fn secret_header(kind: SecretKind, len: usize) -> String {
    secret_header_value(kind, &vec![9u8; len])
}

/// A hand-built request and the status Tahoe answers it with: check, what it checks,
/// status, request.
type Case = (&'static str, &'static str, u16, Request<Full<Bytes>>);

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

async fn gbs_edges(nurl: &Nurl) -> Vec<CheckResult> {
    let b = Builder { nurl };
    let mut out = Vec::new();
    run_cases(nurl, auth_cases(&b), &mut out).await;
    run_cases(nurl, allocation_cases(&b), &mut out).await;
    // Edges about an existing share and an upload in progress.
    let client = match GbsClient::new(nurl, ClientConfig::default()) {
        Ok(c) => c,
        Err(e) => {
            out.push(result(
                "gbs.setup",
                "a share for the range checks is uploaded",
                "ok",
                "error".into(),
                Some(e.to_string()),
            ));
            return out;
        }
    };
    let si = StorageIndex(rand::random());
    let up = Secret(rand::random::<[u8; 32]>().to_vec());
    let setup = upload_share(&client, si, &up).await;
    let setup_outcome = match &setup {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error {}", error_kind(e)),
    };
    let ok = setup_outcome == "ok";
    out.push(result(
        "gbs.setup",
        "a share for the range checks is uploaded",
        "ok",
        setup_outcome,
        setup.err().map(|e| e.to_string()),
    ));
    if !ok {
        return out;
    }
    run_cases(nurl, share_cases(&b, si, &up), &mut out).await;
    let _ = client.abort_immutable(si, 1, &up).await;
    out
}

/// Each case's request on its own connection, and its result.
async fn run_cases(nurl: &Nurl, cases: Vec<Case>, out: &mut Vec<CheckResult>) {
    for (id, description, want, req) in cases {
        let r = request(nurl, req).await;
        out.push(status_result(id, description, want, r));
    }
}

/// Requests without authorization, with a wrong one, or with an unacceptable `Accept`.
fn auth_cases(b: &Builder) -> Vec<Case> {
    let nurl = b.nurl;
    let mut wrong = nurl.clone();
    wrong.swissnum = crate::base32::base32_lower(&rand::random::<[u8; 20]>());
    vec![
        (
            "gbs.no-authorization",
            "a request without Authorization is refused",
            401,
            b.req(Method::GET, "/version")
                .header(http::header::ACCEPT, "application/cbor")
                .body(empty())
                .expect("request"),
        ),
        (
            "gbs.wrong-swissnum",
            "a request with another swissnum is refused",
            401,
            Builder { nurl: &wrong }
                .authed(Method::GET, "/version")
                .body(empty())
                .expect("request"),
        ),
        (
            "gbs.accept-html",
            "Accept: text/html (neither CBOR nor a wildcard) is refused as not acceptable",
            406,
            b.req(Method::GET, "/version")
                .header(
                    http::header::AUTHORIZATION,
                    authorization_value(nurl.swissnum.as_bytes()),
                )
                .header(http::header::ACCEPT, "text/html")
                .body(empty())
                .expect("request"),
        ),
        (
            "gbs.malformed-storage-index",
            "a malformed storage index in the path is not found",
            404,
            b.authed(Method::GET, "/immutable/not-a-storage-index/shares")
                .body(empty())
                .expect("request"),
        ),
    ]
}

/// Allocations with a short or missing secret, or a body of the wrong shape.
fn allocation_cases(b: &Builder) -> Vec<Case> {
    let si = StorageIndex(rand::random());
    let alloc_body = || {
        Full::new(Bytes::from(
            codec::AllocateBody {
                share_numbers: [0].into_iter().collect(),
                allocated_size: 10,
            }
            .encode(Format::Cbor),
        ))
    };
    let allocate = |renew_len: usize, upload: bool| {
        let mut r = b
            .authed(Method::POST, &format!("/immutable/{si}"))
            .header(http::header::CONTENT_TYPE, "application/cbor")
            .header(
                SECRETS_HEADER,
                secret_header(SecretKind::LeaseRenew, renew_len),
            )
            .header(SECRETS_HEADER, secret_header(SecretKind::LeaseCancel, 32));
        if upload {
            r = r.header(SECRETS_HEADER, secret_header(SecretKind::Upload, 32));
        }
        r
    };
    vec![
        (
            "gbs.short-lease-secret",
            "a 31-byte lease secret is a bad request",
            400,
            allocate(31, true).body(alloc_body()).expect("request"),
        ),
        (
            "gbs.missing-upload-secret",
            "an allocation without an upload secret is a bad request",
            400,
            allocate(32, false).body(alloc_body()).expect("request"),
        ),
        (
            "gbs.text-body",
            "a text/plain body is refused as an unsupported media type",
            415,
            b.authed(Method::POST, &format!("/immutable/{si}"))
                .header(http::header::CONTENT_TYPE, "text/plain")
                .header(SECRETS_HEADER, secret_header(SecretKind::LeaseRenew, 32))
                .header(SECRETS_HEADER, secret_header(SecretKind::LeaseCancel, 32))
                .header(SECRETS_HEADER, secret_header(SecretKind::Upload, 32))
                .body(Full::new(Bytes::from_static(
                    br#"{"share-numbers": [0], "allocated-size": 10}"#,
                )))
                .expect("request"),
        ),
        (
            "gbs.untagged-set",
            "share numbers as an untagged CBOR array are a bad request",
            400,
            allocate(32, true)
                .body(Full::new(Bytes::from(untagged_allocate())))
                .expect("request"),
        ),
    ]
}

/// Share 0 of `si` complete (ten bytes), share 1 allocated and unwritten.
async fn upload_share(
    client: &GbsClient,
    si: StorageIndex,
    up: &Secret,
) -> StorageResult<WriteProgress> {
    client
        .allocate_buckets(AllocateRequest {
            storage_index: si,
            lease: LeaseSecrets {
                renew: Secret(rand::random::<[u8; 32]>().to_vec()),
                cancel: Secret(rand::random::<[u8; 32]>().to_vec()),
            },
            upload_secret: up.clone(),
            share_numbers: [0, 1].into_iter().collect(),
            allocated_size: 10,
        })
        .await?;
    client
        .write_immutable(si, 0, up, 0, Bytes::from_static(b"0123456789"))
        .await
}

/// Reads with odd ranges of the complete share, a write without a range to the
/// unfinished one, and an advisory without a reason.
fn share_cases(b: &Builder, si: StorageIndex, up: &Secret) -> Vec<Case> {
    let read = |range: Option<&str>| {
        let mut r = b.authed(Method::GET, &format!("/immutable/{si}/0"));
        if let Some(v) = range {
            r = r.header(http::header::RANGE, v);
        }
        r.body(empty()).expect("request")
    };
    vec![
        (
            "gbs.range-open",
            "an open-ended Range is not satisfiable",
            416,
            read(Some("bytes=2-")),
        ),
        (
            "gbs.range-garbage",
            "a garbage Range is not satisfiable",
            416,
            read(Some("pages=1-2")),
        ),
        (
            "gbs.range-absent",
            "a read without Range returns the whole share with 200",
            200,
            read(None),
        ),
        (
            "gbs.patch-no-content-range",
            "a write without Content-Range is not satisfiable",
            416,
            b.authed(Method::PATCH, &format!("/immutable/{si}/1"))
                .header(
                    SECRETS_HEADER,
                    secret_header_value(SecretKind::Upload, &up.0),
                )
                .body(Full::new(Bytes::from_static(b"abc")))
                .expect("request"),
        ),
        (
            "gbs.corrupt-empty-reason",
            "a corruption advisory with an empty reason is a bad request",
            400,
            b.authed(Method::POST, &format!("/immutable/{si}/0/corrupt"))
                .header(http::header::CONTENT_TYPE, "application/cbor")
                .body(Full::new(Bytes::from(
                    codec::CorruptBody {
                        reason: String::new(),
                    }
                    .encode(Format::Cbor),
                )))
                .expect("request"),
        ),
    ]
}

fn status_result(
    id: &str,
    description: &str,
    want: u16,
    r: Result<(StatusCode, Bytes), String>,
) -> CheckResult {
    let (got, note) = match r {
        Ok((s, body)) => (
            format!("HTTP {}", s.as_u16()),
            Some(String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
        ),
        Err(e) => (format!("error: {e}"), None),
    };
    result(id, description, &format!("HTTP {want}"), got, note)
}

/// `{"share-numbers": [0], "allocated-size": 10}` with a plain array (no tag 258).
fn untagged_allocate() -> Vec<u8> {
    let mut v = vec![0xa2];
    v.push(0x6d);
    v.extend_from_slice(b"share-numbers");
    v.extend_from_slice(&[0x81, 0x00]);
    v.push(0x6e);
    v.extend_from_slice(b"allocated-size");
    v.push(0x0a);
    v
}
