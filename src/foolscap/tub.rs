//! A Tub: our Foolscap identity, the objects it publishes, and the connections it
//! dials and accepts. This is the IO edge of negotiation: the rules live in
//! [`super::negotiate`], the bytes move here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info_span, warn, Instrument};

use super::banana::VocabTable;
use super::broker::{self, BrokerConfig, CallError, Connection, RemoteObject, RemoteRef};
use super::furl::{Furl, Hint};
use super::negotiate::{self as neg, Decision, ExistingConnection, Hello, NegotiationError};
use super::tls;
use crate::identity::{tubid_of, Identity};

#[derive(Clone, Copy, Debug)]
pub struct TubConfig {
    pub broker: BrokerConfig,
    /// From TCP accept (or connect) to the end of negotiation: foolscap's 120 s.
    pub negotiation_timeout: Duration,
    /// How long a write on a connection we dial may make no progress before the
    /// connection fails ([`crate::stall::WriteStall`]); accepted connections get
    /// theirs from whoever hands them over (the daemon wraps its sockets).
    pub write_stall_timeout: Option<Duration>,
}

impl Default for TubConfig {
    fn default() -> Self {
        TubConfig {
            broker: BrokerConfig::default(),
            negotiation_timeout: Duration::from_secs(120),
            write_stall_timeout: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TubError {
    #[error("{0}")]
    Negotiation(#[from] NegotiationError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("I/O: {0}")]
    Io(String),
    #[error("timed out after {0:?} during {1}")]
    Timeout(Duration, &'static str),
    #[error("the FURL has no TCP hint to dial")]
    NoHints,
    #[error("all hints failed: {0}")]
    AllHintsFailed(String),
    #[error("{0}")]
    Call(#[from] CallError),
}

type Published = Arc<Mutex<HashMap<String, Arc<dyn RemoteObject>>>>;

struct TubInner {
    identity: Identity,
    incarnation: String,
    config: TubConfig,
    server_tls: Arc<rustls::ServerConfig>,
    published: Published,
    /// Live connections by peer TubID (one per peer, as foolscap keeps).
    connections: Mutex<HashMap<String, Connection>>,
    /// As master: the parameters of our live connection to each peer.
    master_table: Mutex<HashMap<String, ExistingConnection>>,
    /// As slave: the last `current-connection` each master gave us.
    slave_table: Mutex<HashMap<String, (String, u64)>>,
    /// Serialises dialling per peer, so concurrent callers share one connection.
    dialing: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
pub struct Tub {
    inner: Arc<TubInner>,
}

impl Tub {
    pub fn new(identity: Identity, config: TubConfig) -> Result<Tub, TubError> {
        let server_tls = tls::server_config(&identity).map_err(|e| TubError::Tls(e.to_string()))?;
        let incarnation = crate::foolscap::banana::hex_lower(&rand::random::<[u8; 8]>());
        Ok(Tub {
            inner: Arc::new(TubInner {
                identity,
                incarnation,
                config,
                server_tls,
                published: Default::default(),
                connections: Default::default(),
                master_table: Default::default(),
                slave_table: Default::default(),
                dialing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn tubid(&self) -> &str {
        self.inner.identity.tubid()
    }

    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Publish `obj` under `swissnum` (what `getReferenceByName` looks up).
    pub fn publish(&self, swissnum: &str, obj: Arc<dyn RemoteObject>) {
        self.inner
            .published
            .lock()
            .expect("registry")
            .insert(swissnum.to_string(), obj);
    }

    /// Stop publishing the object under `swissnum` (connections already holding it
    /// keep it, unless it is revoked: [`RemoteObject::revoked_by`]).
    pub fn unpublish(&self, swissnum: &str) {
        self.inner
            .published
            .lock()
            .expect("registry")
            .remove(swissnum);
    }

    /// The FURL of an object published under `swissnum`, reachable at `hints`.
    pub fn furl(&self, swissnum: &str, hints: Vec<Hint>) -> Furl {
        Furl {
            tubid: self.tubid().to_string(),
            hints,
            swissnum: swissnum.to_string(),
        }
    }

    /// The number of live connections.
    pub fn connection_count(&self) -> usize {
        self.inner
            .connections
            .lock()
            .expect("connections")
            .values()
            .filter(|c| !c.is_closed())
            .count()
    }

    /// Objects exported on all live connections (for tests and status).
    pub fn connection_exports(&self) -> usize {
        let conns = self.inner.connections.lock().expect("connections");
        conns
            .values()
            .filter(|c| !c.is_closed())
            .map(|c| c.exported_count())
            .sum()
    }

    /// Connect (or reuse the connection) to the FURL's Tub and fetch its object.
    pub async fn get_reference(&self, furl: &Furl) -> Result<RemoteRef, TubError> {
        let conn = self.connect(furl).await?;
        Ok(conn.get_reference(&furl.swissnum).await?)
    }

    /// A connection to the FURL's Tub: an existing live one, or a new one dialled
    /// on every TCP hint in parallel, keeping the first to finish negotiating.
    pub async fn connect(&self, furl: &Furl) -> Result<Connection, TubError> {
        if let Some(c) = self.live(&furl.tubid) {
            return Ok(c);
        }
        let _guard = self.inner.dialing.lock().await;
        if let Some(c) = self.live(&furl.tubid) {
            return Ok(c);
        }
        let hints: Vec<(String, u16)> = furl
            .hints
            .iter()
            .filter_map(|h| match h {
                Hint::Tcp { host, port } => Some((host.clone(), *port)),
                Hint::Other(_) => None,
            })
            .collect();
        if hints.is_empty() {
            return Err(TubError::NoHints);
        }
        let timeout = self.inner.config.negotiation_timeout;
        let attempts = hints.into_iter().map(|(host, port)| {
            let tub = self.clone();
            let tubid = furl.tubid.clone();
            Box::pin(async move {
                match tokio::time::timeout(timeout, tub.dial(&tubid, &host, port)).await {
                    Ok(r) => r.map_err(|e| format!("{host}:{port}: {e}")),
                    Err(_) => Err(format!(
                        "{host}:{port}: {}",
                        TubError::Timeout(timeout, "negotiation")
                    )),
                }
            })
        });
        match futures_util::future::select_ok(attempts).await {
            Ok((conn, _rest)) => Ok(conn),
            Err(e) => Err(TubError::AllHintsFailed(e)),
        }
    }

    fn live(&self, tubid: &str) -> Option<Connection> {
        let conns = self.inner.connections.lock().expect("connections");
        conns.get(tubid).filter(|c| !c.is_closed()).cloned()
    }

    async fn dial(&self, tubid: &str, host: &str, port: u16) -> Result<Connection, TubError> {
        let io = |e: std::io::Error| TubError::Io(e.to_string());
        let tcp = TcpStream::connect((host, port)).await.map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let mut tcp = crate::stall::WriteStall::new(tcp, self.inner.config.write_stall_timeout);
        tcp.write_all(&neg::upgrade_request(tubid, host))
            .await
            .map_err(io)?;
        let mut buf = BytesMut::new();
        let end = read_block(&mut tcp, &mut buf).await?;
        neg::check_upgrade_response(&buf[..end])?;
        if buf.len() > end {
            return Err(NegotiationError::Malformed("bytes after the 101 response".into()).into());
        }
        let cfg = tls::client_config(&self.inner.identity, tubid)
            .map_err(|e| TubError::Tls(e.to_string()))?;
        // An IP server name sends no SNI; foolscap needs none.
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let stream = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| TubError::Tls(e.to_string()))?;
        let peer_cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        self.negotiate(stream, peer_cert, Some(tubid)).await
    }

    /// Accept one connection whose first bytes (`prefix`, possibly empty) were
    /// already read by a protocol sniffer.
    pub async fn accept<S>(&self, stream: S, prefix: BytesMut) -> Result<Connection, TubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Tub::accept_among(std::slice::from_ref(self), stream, prefix).await
    }

    /// Accept one connection for whichever of `tubs` (several Tubs on one port) its
    /// upgrade request names, as foolscap's own listeners do: the request
    /// (`GET /id/TUBID`) comes before TLS, so the Tub, and with it the certificate,
    /// is chosen before the handshake. An unknown TubID is refused in plaintext.
    /// The negotiation timeout is the first Tub's. Panics if `tubs` is empty.
    pub async fn accept_among<S>(
        tubs: &[Tub],
        mut stream: S,
        prefix: BytesMut,
    ) -> Result<Connection, TubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let timeout = tubs[0].inner.config.negotiation_timeout;
        let fut = async {
            let mut buf = prefix;
            let end = match read_block(&mut stream, &mut buf).await {
                Ok(end) => end,
                Err(e) => {
                    let _ = stream
                        .write_all(&neg::refusal("internal server error, see logs"))
                        .await;
                    return Err(e);
                }
            };
            let tubid = match neg::parse_upgrade_request(&buf[..end]) {
                Ok(t) => t,
                Err(msg) => {
                    let _ = stream.write_all(&neg::refusal(&msg)).await;
                    return Err(NegotiationError::Malformed(msg).into());
                }
            };
            let Some(tub) = tubs.iter().find(|t| t.tubid() == tubid) else {
                let _ = stream
                    .write_all(&neg::refusal(&format!("unknown TubID {tubid}")))
                    .await;
                let _ = stream.shutdown().await;
                return Err(NegotiationError::UnknownTubId(tubid).into());
            };
            if buf.len() > end {
                return Err(
                    NegotiationError::Malformed("bytes after the upgrade request".into()).into(),
                );
            }
            stream
                .write_all(neg::UPGRADE_RESPONSE)
                .await
                .map_err(|e| TubError::Io(e.to_string()))?;
            let tls = tokio_rustls::TlsAcceptor::from(tub.inner.server_tls.clone())
                .accept(stream)
                .await
                .map_err(|e| TubError::Tls(e.to_string()))?;
            let peer_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            tub.negotiate(tls, peer_cert, None).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(TubError::Timeout(timeout, "negotiation")),
        }
    }

    /// Accept connections on `listener` until it fails; each connection negotiates
    /// in its own task.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let tcp = crate::stall::WriteStall::new(tcp, self.inner.config.write_stall_timeout);
            let tub = self.clone();
            tokio::spawn(
                async move {
                    match tub.accept(tcp, BytesMut::new()).await {
                        Ok(c) => debug!(peer_tubid = %c.peer_tubid(), "connection negotiated"),
                        Err(e) => debug!("negotiation failed: {e}"),
                    }
                }
                .instrument(info_span!("foolscap", %peer)),
            );
        }
    }

    /// HELLO/DECISION over an established TLS stream, then start the broker.
    async fn negotiate<S>(
        &self,
        mut s: S,
        peer_cert: Option<Vec<u8>>,
        dialled: Option<&str>,
    ) -> Result<Connection, TubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let my_tubid = self.tubid().to_string();
        let last = dialled.map(|t| {
            self.inner
                .slave_table
                .lock()
                .expect("slave table")
                .get(t)
                .cloned()
        });
        let mine = Hello::new(&my_tubid, &self.inner.incarnation, last);
        let io = |e: std::io::Error| TubError::Io(e.to_string());
        s.write_all(&mine.encode()).await.map_err(io)?;
        s.flush().await.map_err(io)?;
        let mut buf = BytesMut::new();
        let r: Result<(Hello, bool, neg::Params), NegotiationError> = async {
            let end = read_block(&mut s, &mut buf).await.map_err(|e| match e {
                TubError::Negotiation(n) => n,
                other => NegotiationError::Malformed(other.to_string()),
            })?;
            let theirs = Hello::parse(&neg::parse_block(&buf[..end])?)?;
            let _ = buf.split_to(end);
            let actual = peer_cert
                .as_deref()
                .map(tubid_of)
                .ok_or(NegotiationError::NoCertificate)?;
            if actual != theirs.tubid {
                return Err(NegotiationError::TubIdMismatch {
                    claimed: theirs.tubid.clone(),
                    actual,
                });
            }
            if let Some(want) = dialled {
                if want != theirs.tubid {
                    return Err(NegotiationError::WrongTub {
                        expected: want.to_string(),
                        got: theirs.tubid.clone(),
                    });
                }
            }
            if theirs.tubid == my_tubid {
                return Err(NegotiationError::Malformed(
                    "connection to ourselves".into(),
                ));
            }
            let params = neg::choose(&mine, &theirs)?;
            let master = my_tubid > theirs.tubid;
            Ok((theirs, master, params))
        }
        .await;
        let (theirs, master, params) = match r {
            Ok(x) => x,
            Err(e) => {
                if !matches!(e, NegotiationError::RemoteError(_)) {
                    let _ = s.write_all(&neg::error_block(&e.wire_message())).await;
                }
                let _ = s.shutdown().await;
                return Err(e.into());
            }
        };
        let peer = theirs.tubid.clone();
        let vocab_index;
        if master {
            let admitted: Result<u64, NegotiationError> = {
                let existing = self.live(&peer);
                let mut table = self.inner.master_table.lock().expect("master table");
                let verdict = match (&existing, table.get(&peer)) {
                    (Some(old), Some(record)) => {
                        neg::admit_duplicate(record, &self.inner.incarnation, &theirs).map(|_| {
                            old.close("replaced by a newer connection");
                        })
                    }
                    _ => Ok(()),
                };
                verdict.map(|()| {
                    let seqnum = table.get(&peer).map(|r| r.seqnum + 1).unwrap_or(1);
                    table.insert(
                        peer.clone(),
                        ExistingConnection {
                            slave_incarnation: theirs.incarnation.clone(),
                            seqnum,
                        },
                    );
                    seqnum
                })
            };
            let seqnum = match admitted {
                Ok(n) => n,
                Err(e) => {
                    let _ = s.write_all(&neg::error_block(&e.wire_message())).await;
                    let _ = s.shutdown().await;
                    return Err(e.into());
                }
            };
            let decision = Decision {
                params: params.clone(),
                current_connection: (self.inner.incarnation.clone(), seqnum),
            };
            s.write_all(&decision.encode()).await.map_err(io)?;
            s.flush().await.map_err(io)?;
            vocab_index = params.vocab_index;
        } else {
            let end = loop {
                if let Some(end) = neg::block_end(&buf)? {
                    break end;
                }
                if s.read_buf(&mut buf).await.map_err(io)? == 0 {
                    return Err(NegotiationError::Malformed(
                        "connection closed before the DECISION".into(),
                    )
                    .into());
                }
            };
            let decision = Decision::parse(&neg::parse_block(&buf[..end])?)?;
            let _ = buf.split_to(end);
            self.inner
                .slave_table
                .lock()
                .expect("slave table")
                .insert(peer.clone(), decision.current_connection.clone());
            if let Some(old) = self.live(&peer) {
                old.close("replaced by a newer connection");
            }
            vocab_index = decision.params.vocab_index;
        }
        let vocab = VocabTable::by_index(vocab_index).expect("negotiated a known table");
        let published = self.inner.published.clone();
        let lookup =
            Arc::new(move |name: &str| published.lock().expect("registry").get(name).cloned());
        let conn = broker::start(
            s,
            buf,
            vocab,
            peer.clone(),
            self.inner.config.broker,
            lookup,
        );
        self.inner
            .connections
            .lock()
            .expect("connections")
            .insert(peer.clone(), conn.clone());
        // Forget the connection once it closes (unless replaced meanwhile).
        let weak = Arc::downgrade(&self.inner);
        let watch = conn.clone();
        tokio::spawn(async move {
            watch.closed().await;
            if let Some(inner) = weak.upgrade() {
                let mut conns = inner.connections.lock().expect("connections");
                if conns.get(&peer).map(|c| c.is_closed()).unwrap_or(false) {
                    conns.remove(&peer);
                }
            }
        });
        Ok(conn)
    }
}

/// Read until `buf` holds a complete negotiation block; returns where it ends.
async fn read_block<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<usize, TubError> {
    loop {
        if let Some(end) = neg::block_end(buf)? {
            return Ok(end);
        }
        let n = s
            .read_buf(buf)
            .await
            .map_err(|e| TubError::Io(e.to_string()))?;
        if n == 0 {
            return Err(
                NegotiationError::Malformed("connection closed during negotiation".into()).into(),
            );
        }
    }
}
