//! One Foolscap connection after negotiation: the PB broker.
//!
//! A reader task decodes tokens into messages and routes them (answers to waiting
//! callers, calls to exported objects); writes go through one async mutex that owns
//! the encoder, so OPEN numbering and reference counts follow the byte order on the
//! wire. Calls to different objects run concurrently; an object may ask for its
//! calls to run one at a time in arrival order (bucket writers do: `write`s then
//! `close`). clid 0 is the broker itself (`getReferenceByName`, `decref`, `decgift`).
//!
//! The codec reads and writes references in their wire form; the broker resolves
//! received ones into live objects ([`RemoteRef`]s to the peer's, our own
//! [`RemoteObject`]s) and exports ours as they are sent. The [`Value`]s of this
//! module, [`Live`] ones, are the values the application sees.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::banana::{BananaError, DecodeLimits, TokenDecoder, VocabTable};
use super::message::{Encoded, Exporter, Inbound, MessageDecoder, MessageEncoder, MessageLimits};
use super::schema::{self, RemoteInterface};
use super::value::{self, Failure, Refs};

/// An object that can be called over a connection.
#[async_trait::async_trait]
pub trait RemoteObject: Send + Sync + 'static {
    /// The schema incoming calls are checked against (none: anything goes).
    fn schema(&self) -> Option<&'static RemoteInterface> {
        None
    }

    /// The interface name sent in `my-reference`: the schema's, or `""` for a plain
    /// Referenceable.
    fn interface_name(&self) -> &str {
        self.schema().map(|s| s.name).unwrap_or("")
    }

    /// Whether calls to this object must run one at a time, in arrival order.
    fn sequential(&self) -> bool {
        false
    }

    /// A token whose cancellation revokes this object: every connection that was
    /// handed it by name closes (an account disabled).
    fn revoked_by(&self) -> Option<CancellationToken> {
        None
    }

    /// Handle a call. With a schema, `args` holds every declared argument in
    /// declaration order (already checked); without one, positional arguments
    /// followed by keyword values in sorted order.
    async fn call(
        &self,
        conn: &Connection,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, Failure>;
}

/// A plain Referenceable that accepts no calls (a canary).
pub struct Canary;

#[async_trait::async_trait]
impl RemoteObject for Canary {
    async fn call(
        &self,
        _conn: &Connection,
        method: &str,
        _args: Vec<Value>,
    ) -> Result<Value, Failure> {
        Err(Failure::violation(format!("method '{method}' not defined")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The peer answered with an error.
    #[error("remote failure: {0}")]
    Remote(Failure),
    /// The answer did not decode or did not match the expected schema.
    #[error("violation in answer: {0}")]
    Violation(String),
    /// The connection was lost before the answer arrived.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// No answer within the call deadline ([`BrokerConfig::call_timeout`]). The
    /// connection stays open if the call was sent whole (a late answer is dropped);
    /// one cut short mid-message is closed.
    #[error("no answer within {} s (the call deadline, foolscap_call_timeout_secs){}", .0.as_secs_f64(), if *.1 { "; the connection was closed mid-write" } else { "" })]
    Timeout(Duration, bool),
}

/// Limits and timers of one connection.
#[derive(Clone, Copy, Debug)]
pub struct BrokerConfig {
    pub decode: DecodeLimits,
    pub message: MessageLimits,
    /// Send a PING after this long without receiving anything (foolscap: 240 s).
    pub keepalive: Option<Duration>,
    /// Drop the connection after this long without receiving anything (foolscap:
    /// never).
    pub disconnect_after: Option<Duration>,
    /// The most inbound calls in flight at once; past it the connection stops reading
    /// until one finishes (back-pressure, not an error).
    pub max_inflight_calls: usize,
    /// How long a call we place may take, from queueing its message to its answer
    /// (foolscap: forever). Past it the call fails with [`CallError::Timeout`].
    pub call_timeout: Option<Duration>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            decode: DecodeLimits::default(),
            message: MessageLimits::default(),
            keepalive: Some(Duration::from_secs(240)),
            disconnect_after: None,
            max_inflight_calls: 256,
            call_timeout: None,
        }
    }
}

type Pending = oneshot::Sender<Result<Value, CallError>>;
type Job = (u64, String, Vec<Value>, tokio::sync::OwnedSemaphorePermit);

struct Export {
    obj: Arc<dyn RemoteObject>,
    refcount: u64,
    /// Serialises calls of a sequential object.
    queue: Option<mpsc::UnboundedSender<Job>>,
}

#[derive(Default)]
struct State {
    next_reqid: u64,
    pending: HashMap<u64, Pending>,
    exports: HashMap<i64, Export>,
    export_ids: HashMap<usize, i64>,
    next_clid: i64,
    imports: HashMap<i64, Weak<Import>>,
    inbound: HashSet<u64>,
    closed: Option<String>,
}

impl Exporter for State {
    type Refs = Live;

    fn remote_clid(&mut self, r: &RemoteRef) -> i64 {
        r.clid()
    }

    fn export(&mut self, obj: &Arc<dyn RemoteObject>) -> (i64, Option<String>) {
        let key = Arc::as_ptr(obj) as *const () as usize;
        let clid = match self.export_ids.get(&key) {
            Some(c) => *c,
            None => {
                self.next_clid += 1;
                let c = self.next_clid;
                self.export_ids.insert(key, c);
                self.exports.insert(
                    c,
                    Export {
                        obj: obj.clone(),
                        refcount: 0,
                        queue: None,
                    },
                );
                c
            }
        };
        let e = self.exports.get_mut(&clid).expect("just inserted");
        e.refcount += 1;
        // The interface name goes out on the first send since the count was zero.
        let iface = (e.refcount == 1).then(|| e.obj.interface_name().to_string());
        (clid, iface)
    }
}

/// Resolves a swissnum to a published object (`getReferenceByName`).
pub type Lookup = Arc<dyn Fn(&str) -> Option<Arc<dyn RemoteObject>> + Send + Sync>;

type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

struct Writer {
    enc: MessageEncoder,
    io: BoxWrite,
}

pub(crate) struct Inner {
    peer_tubid: String,
    config: BrokerConfig,
    state: Mutex<State>,
    writer: tokio::sync::Mutex<Writer>,
    closed: CancellationToken,
    last_rx: Mutex<Instant>,
    published: Lookup,
}

/// A live Foolscap connection (cheap to clone).
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

/// The peer's end of a reference: what a `my-reference` from the peer becomes.
struct Import {
    clid: i64,
    iface: Option<String>,
    received: AtomicU64,
    conn: Weak<Inner>,
}

impl Drop for Import {
    fn drop(&mut self) {
        let Some(inner) = self.conn.upgrade() else {
            return;
        };
        let count = self.received.load(Ordering::SeqCst);
        {
            let mut st = inner.state.lock().expect("broker state");
            if st.closed.is_some() {
                return;
            }
            if let Some(w) = st.imports.get(&self.clid) {
                if w.strong_count() == 0 {
                    st.imports.remove(&self.clid);
                }
            }
        }
        // Tell the owner it may forget `count` receipts of this object.
        let conn = Connection { inner };
        let clid = self.clid;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let args = [("clid", Value::int(clid)), ("count", Value::int(count))];
                if let Err(e) = conn.call_kw(0, "decref", &[], &args).await {
                    debug!(clid, "decref failed: {e}");
                }
            });
        }
    }
}

/// A reference to an object on the other side of a connection.
#[derive(Clone)]
pub struct RemoteRef {
    import: Arc<Import>,
}

impl std::fmt::Debug for RemoteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteRef({}, {:?})", self.clid(), self.interface())
    }
}

impl RemoteRef {
    /// Whether the connection this reference lives on is still open.
    pub fn is_connected(&self) -> bool {
        self.import
            .conn
            .upgrade()
            .map(|i| !i.closed.is_cancelled())
            .unwrap_or(false)
    }

    pub fn clid(&self) -> i64 {
        self.import.clid
    }

    pub fn interface(&self) -> Option<&str> {
        self.import.iface.as_deref()
    }

    fn connection(&self) -> Result<Connection, CallError> {
        self.import
            .conn
            .upgrade()
            .map(|inner| Connection { inner })
            .ok_or_else(|| CallError::ConnectionLost("connection gone".into()))
    }

    /// Call `method` with positional arguments.
    pub async fn call(&self, method: &str, args: &[Value]) -> Result<Value, CallError> {
        self.connection()?
            .call_kw(self.clid(), method, args, &[])
            .await
    }

    /// Resolves once the connection this reference lives on is closed.
    pub async fn disconnected(&self) {
        if let Ok(c) = self.connection() {
            c.closed().await
        }
    }
}

/// The references of the values the application sees: the peer's objects over a
/// live connection, and our objects to export to it.
#[derive(Clone, Copy, Debug)]
pub enum Live {}

impl Refs for Live {
    type Remote = RemoteRef;
    type Local = Arc<dyn RemoteObject>;

    fn fmt_remote(r: &RemoteRef, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<remote {} {:?}>", r.clid(), r.interface())
    }

    fn fmt_local(o: &Arc<dyn RemoteObject>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<local {:?}>", o.interface_name())
    }

    fn same_remote(a: &RemoteRef, b: &RemoteRef) -> bool {
        a.clid() == b.clid()
    }

    fn same_local(a: &Arc<dyn RemoteObject>, b: &Arc<dyn RemoteObject>) -> bool {
        Arc::ptr_eq(a, b)
    }
}

/// A value as the application sends and receives it, its references live objects.
pub type Value = value::Value<Live>;

impl Connection {
    pub fn peer_tubid(&self) -> &str {
        &self.inner.peer_tubid
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Resolves when the connection is closed, for whatever reason.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.inner
            .state
            .lock()
            .expect("broker state")
            .closed
            .clone()
    }

    pub fn close(&self, reason: &str) {
        close(&self.inner, reason);
    }

    /// Fetch the object the peer published under `swissnum`.
    pub async fn get_reference(&self, swissnum: &str) -> Result<RemoteRef, CallError> {
        let v = self
            .call_kw(
                0,
                "getReferenceByName",
                &[],
                &[("name", Value::bytes(swissnum.as_bytes().to_vec()))],
            )
            .await?;
        match v {
            Value::Remote(r) => Ok(r),
            other => Err(CallError::Violation(format!(
                "getReferenceByName answered {}, not a reference",
                other.type_name()
            ))),
        }
    }

    /// Place a call on the peer's object `clid` and wait for its answer, at most
    /// [`BrokerConfig::call_timeout`].
    pub async fn call_kw(
        &self,
        clid: i64,
        method: &str,
        args: &[Value],
        kwargs: &[(&str, Value)],
    ) -> Result<Value, CallError> {
        let Some(limit) = self.inner.config.call_timeout else {
            return self
                .call_kw_unbounded(clid, method, args, kwargs, &mut None)
                .await;
        };
        // Which reqID is waiting, and whether its message is part-way out.
        let mut progress = None;
        let r = tokio::time::timeout(
            limit,
            self.call_kw_unbounded(clid, method, args, kwargs, &mut progress),
        )
        .await;
        match r {
            Ok(r) => r,
            Err(_) => {
                let mid_write = match progress {
                    Some((reqid, writing)) => {
                        self.inner
                            .state
                            .lock()
                            .expect("broker state")
                            .pending
                            .remove(&reqid);
                        writing
                    }
                    None => false,
                };
                if mid_write {
                    // Part of a message is on the wire: nothing else can follow it.
                    close(
                        &self.inner,
                        &format!("call {method} cut off mid-write by its deadline"),
                    );
                }
                warn!(peer = %self.inner.peer_tubid, method, "no answer within {limit:?}: call failed");
                Err(CallError::Timeout(limit, mid_write))
            }
        }
    }

    async fn call_kw_unbounded(
        &self,
        clid: i64,
        method: &str,
        args: &[Value],
        kwargs: &[(&str, Value)],
        progress: &mut Option<(u64, bool)>,
    ) -> Result<Value, CallError> {
        let (tx, rx) = oneshot::channel();
        let reqid = {
            let mut st = self.inner.state.lock().expect("broker state");
            if let Some(r) = &st.closed {
                return Err(CallError::ConnectionLost(r.clone()));
            }
            st.next_reqid += 1;
            let r = st.next_reqid;
            st.pending.insert(r, tx);
            r
        };
        *progress = Some((reqid, false));
        let mut out = Encoded::new();
        let sent = {
            let mut w = self.inner.writer.lock().await;
            {
                let mut st = self.inner.state.lock().expect("broker state");
                let Writer { enc, .. } = &mut *w;
                enc.call(reqid, clid, method, args, kwargs, &mut *st, &mut out);
            }
            *progress = Some((reqid, true));
            let r = write_out(&self.inner, &mut w, out.into_buf()).await;
            *progress = Some((reqid, false));
            r
        };
        if let Err(e) = sent {
            self.inner
                .state
                .lock()
                .expect("broker state")
                .pending
                .remove(&reqid);
            return Err(CallError::ConnectionLost(e));
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(CallError::ConnectionLost(
                self.close_reason()
                    .unwrap_or_else(|| "connection closed".into()),
            )),
        }
    }

    /// Place a call with reqID 0 (no answer wanted).
    pub async fn call_only(
        &self,
        clid: i64,
        method: &str,
        args: &[Value],
    ) -> Result<(), CallError> {
        let mut out = Encoded::new();
        let mut w = self.inner.writer.lock().await;
        {
            let mut st = self.inner.state.lock().expect("broker state");
            if let Some(r) = &st.closed {
                return Err(CallError::ConnectionLost(r.clone()));
            }
            let Writer { enc, .. } = &mut *w;
            enc.call(0, clid, method, args, &[], &mut *st, &mut out);
        }
        write_out(&self.inner, &mut w, out.into_buf())
            .await
            .map_err(CallError::ConnectionLost)
    }

    /// Send PING now (keepalive).
    pub async fn ping(&self) -> Result<(), String> {
        let mut out = BytesMut::new();
        let mut w = self.inner.writer.lock().await;
        w.enc.banana().ping(0, &mut out);
        write_out(&self.inner, &mut w, out).await
    }

    /// The number of objects this side has exported and the peer still holds.
    pub fn exported_count(&self) -> usize {
        self.inner.state.lock().expect("broker state").exports.len()
    }

    /// The number of the peer's objects we hold live references to.
    pub fn imported_count(&self) -> usize {
        let st = self.inner.state.lock().expect("broker state");
        st.imports.values().filter(|w| w.strong_count() > 0).count()
    }
}

/// Writes a message (a vectored write when it has spliced bodies) and flushes;
/// a failure closes the connection.
async fn write_out(inner: &Arc<Inner>, w: &mut Writer, mut bytes: impl Buf) -> Result<(), String> {
    if let Some(r) = &inner.state.lock().expect("broker state").closed {
        // Closed while this writer waited for the lock (perhaps after a message cut
        // short): nothing more goes out.
        return Err(r.clone());
    }
    let r = async {
        w.io.write_all_buf(&mut bytes).await?;
        w.io.flush().await
    }
    .await;
    if let Err(e) = r {
        let reason = format!("write failed: {e}");
        close(inner, &reason);
        return Err(reason);
    }
    Ok(())
}

fn close(inner: &Arc<Inner>, reason: &str) {
    let pending = {
        let mut st = inner.state.lock().expect("broker state");
        if st.closed.is_some() {
            return;
        }
        st.closed = Some(reason.to_string());
        st.exports.clear();
        st.export_ids.clear();
        std::mem::take(&mut st.pending)
    };
    for (_, tx) in pending {
        let _ = tx.send(Err(CallError::ConnectionLost(reason.to_string())));
    }
    debug!(peer = %inner.peer_tubid, "connection closed: {reason}");
    inner.closed.cancel();
}

/// Start the broker on a negotiated stream. `leftover` holds Banana bytes that
/// arrived with the last negotiation block. `published` resolves swissnums for
/// `getReferenceByName`.
pub(crate) fn start<S>(
    stream: S,
    leftover: BytesMut,
    vocab: VocabTable,
    peer_tubid: String,
    config: BrokerConfig,
    published: Lookup,
) -> Connection
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let inner = Arc::new(Inner {
        peer_tubid,
        config,
        state: Mutex::new(State::default()),
        writer: tokio::sync::Mutex::new(Writer {
            enc: MessageEncoder::new(vocab),
            io: Box::new(wr),
        }),
        closed: CancellationToken::new(),
        last_rx: Mutex::new(Instant::now()),
        published,
    });
    let conn = Connection {
        inner: inner.clone(),
    };
    tokio::spawn(read_loop(conn.clone(), rd, leftover, vocab));
    if config.keepalive.is_some() || config.disconnect_after.is_some() {
        tokio::spawn(keepalive_loop(Arc::downgrade(&inner)));
    }
    conn
}

async fn keepalive_loop(weak: Weak<Inner>) {
    loop {
        let (period, closed) = match weak.upgrade() {
            Some(inner) => {
                let c = inner.config;
                let p = [c.keepalive, c.disconnect_after]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("one timer is set");
                (p + Duration::from_millis(100), inner.closed.clone())
            }
            None => return,
        };
        tokio::select! {
            _ = closed.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        let idle = inner.last_rx.lock().expect("clock").elapsed();
        if let Some(d) = inner.config.disconnect_after {
            if idle > d {
                close(
                    &inner,
                    &format!("nothing received for {idle:?}: idle disconnect"),
                );
                return;
            }
        }
        if let Some(k) = inner.config.keepalive {
            if idle > k {
                let _ = Connection { inner }.ping().await;
            }
        }
    }
}

/// Read sizes when nothing is buffered and between tokens (see `read_loop`);
/// rustls hands over at most one 16 KiB record per read anyway.
const IDLE_READ: usize = 2 * 1024;
const READ_CHUNK: usize = 16 * 1024;

async fn read_loop<R: AsyncRead + Unpin>(
    conn: Connection,
    mut rd: R,
    mut buf: BytesMut,
    vocab: VocabTable,
) {
    let inner = conn.inner.clone();
    let mut tokens = TokenDecoder::new(inner.config.decode);
    let mut messages = MessageDecoder::new(vocab, inner.config.message);
    let inflight = Arc::new(tokio::sync::Semaphore::new(inner.config.max_inflight_calls));
    let reason = loop {
        // Drain complete tokens first (the leftover may already hold some).
        let step = drain(&conn, &mut tokens, &mut messages, &mut buf, &inflight).await;
        match step {
            Ok(None) => {}
            Ok(Some(reason)) => break reason,
            Err(e) => {
                warn!(peer = %inner.peer_tubid, "protocol error: {e}");
                let mut out = BytesMut::new();
                let mut w = inner.writer.lock().await;
                w.enc.banana().error(e.to_string().as_bytes(), &mut out);
                let _ = w.io.write_all(&out).await;
                let _ = w.io.shutdown().await;
                break format!("protocol error: {e}");
            }
        }
        // Room for the pending token's body at once (a 1 MiB share write arrives in
        // many reads), exactly, so the buffer is never grown (and the body copied)
        // again near its end. Between tokens, a chunk; and when nothing is buffered
        // (an idle connection, or between small calls) a small one, dropping any
        // larger buffer, so that an idle connection holds little memory.
        let want = tokens.bytes_needed().saturating_sub(buf.len());
        if buf.is_empty() && want == 0 {
            if buf.capacity() > 2 * IDLE_READ {
                buf = BytesMut::new();
            }
            buf.reserve(IDLE_READ);
        } else {
            buf.reserve(want.max(READ_CHUNK));
        }
        tokio::select! {
            _ = inner.closed.cancelled() => break "closed locally".to_string(),
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break "connection closed by peer".to_string(),
                Ok(_) => *inner.last_rx.lock().expect("clock") = Instant::now(),
                Err(e) => break format!("read failed: {e}"),
            }
        }
    };
    close(&inner, &reason);
    let mut w = inner.writer.lock().await;
    let _ = w.io.shutdown().await;
    // Let go of the socket's write half now, not when the last handle on this
    // connection goes, so the socket is closed with the read half.
    w.io = Box::new(tokio::io::sink());
}

/// Decode and route everything complete in `buf`. `Ok(Some(reason))` ends the
/// connection quietly (the peer hung up with an ERROR).
async fn drain(
    conn: &Connection,
    tokens: &mut TokenDecoder,
    messages: &mut MessageDecoder,
    buf: &mut BytesMut,
    inflight: &Arc<tokio::sync::Semaphore>,
) -> Result<Option<String>, BananaError> {
    while let Some(tok) = tokens.next_token(buf)? {
        let Some(msg) = messages.feed(tok)? else {
            continue;
        };
        match msg {
            Inbound::Ping(n) => {
                let c = conn.clone();
                tokio::spawn(async move {
                    let mut out = BytesMut::new();
                    let mut w = c.inner.writer.lock().await;
                    w.enc.banana().pong(n, &mut out);
                    let _ = write_out(&c.inner, &mut w, out).await;
                });
            }
            Inbound::Pong(_) => {}
            Inbound::PeerError(m) => return Ok(Some(format!("peer sent ERROR: {m}"))),
            Inbound::Dropped(why) => debug!("dropped a message: {why}"),
            Inbound::Answer { reqid, value } => {
                let r = resolve(conn, value).map_err(|e| CallError::Violation(e.to_string()));
                complete(conn, reqid, r);
            }
            Inbound::Error { reqid, failure } => {
                complete(conn, reqid, Err(CallError::Remote(failure)))
            }
            Inbound::AnswerViolation { reqid, violation } => {
                complete(conn, reqid, Err(CallError::Violation(violation)))
            }
            Inbound::CallViolation { reqid, violation } => {
                if reqid != 0 {
                    spawn_error(conn, reqid, Failure::violation(violation));
                }
            }
            Inbound::Call {
                reqid,
                clid,
                method,
                args,
                kwargs,
            } => {
                {
                    let mut st = conn.inner.state.lock().expect("broker state");
                    if reqid != 0 && !st.inbound.insert(reqid) {
                        return Err(BananaError::Protocol(format!(
                            "duplicate in-flight reqID {reqid}"
                        )));
                    }
                }
                // Resolving references can be a protocol error (unknown your-reference).
                let args: Vec<Value> = args
                    .into_iter()
                    .map(|v| resolve(conn, v))
                    .collect::<Result<_, _>>()?;
                let kwargs: Vec<(String, Value)> = kwargs
                    .into_iter()
                    .map(|(k, v)| resolve(conn, v).map(|v| (k, v)))
                    .collect::<Result<_, _>>()?;
                let permit = inflight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                dispatch(conn, reqid, clid, method, args, kwargs, permit);
            }
        }
    }
    Ok(None)
}

/// Hand a call's outcome to its waiting caller; answers to unknown reqIDs are
/// dropped, as foolscap drops them.
fn complete(conn: &Connection, reqid: u64, r: Result<Value, CallError>) {
    let tx = conn
        .inner
        .state
        .lock()
        .expect("broker state")
        .pending
        .remove(&reqid);
    if let Some(tx) = tx {
        let _ = tx.send(r);
    }
}

/// Turn wire references in a received value into live ones.
fn resolve(conn: &Connection, v: value::Value) -> Result<Value, BananaError> {
    use value::Value as WireValue;
    let all = |v: Vec<WireValue>| -> Result<Vec<Value>, BananaError> {
        v.into_iter().map(|x| resolve(conn, x)).collect()
    };
    Ok(match v {
        WireValue::MyRef { clid, iface, .. } => {
            let mut st = conn.inner.state.lock().expect("broker state");
            if let Some(imp) = st.imports.get(&clid).and_then(|w| w.upgrade()) {
                imp.received.fetch_add(1, Ordering::SeqCst);
                return Ok(Value::Remote(RemoteRef { import: imp }));
            }
            let imp = Arc::new(Import {
                clid,
                iface: iface.filter(|s| !s.is_empty()),
                received: AtomicU64::new(1),
                conn: Arc::downgrade(&conn.inner),
            });
            st.imports.insert(clid, Arc::downgrade(&imp));
            Value::Remote(RemoteRef { import: imp })
        }
        WireValue::YourRef(clid) => {
            let st = conn.inner.state.lock().expect("broker state");
            match st.exports.get(&clid) {
                Some(e) => Value::Local(e.obj.clone()),
                None => {
                    return Err(BananaError::Protocol(format!(
                        "your-reference to unknown clid {clid}"
                    )))
                }
            }
        }
        WireValue::List(v) => Value::List(all(v)?),
        WireValue::Tuple(v) => Value::Tuple(all(v)?),
        WireValue::Set(v) => Value::Set(all(v)?),
        WireValue::FrozenSet(v) => Value::FrozenSet(all(v)?),
        WireValue::Dict(v) => Value::Dict(
            v.into_iter()
                .map(|(k, x)| Ok((resolve(conn, k)?, resolve(conn, x)?)))
                .collect::<Result<_, BananaError>>()?,
        ),
        // Scalars, and copyables as they are (references inside stay unresolved).
        other => other.into_refs(),
    })
}

fn spawn_error(conn: &Connection, reqid: u64, failure: Failure) {
    let c = conn.clone();
    tokio::spawn(async move { send_result(&c, reqid, Err(failure)).await });
}

async fn send_result(conn: &Connection, reqid: u64, result: Result<Value, Failure>) {
    conn.inner
        .state
        .lock()
        .expect("broker state")
        .inbound
        .remove(&reqid);
    if reqid == 0 {
        return;
    }
    let mut out = Encoded::new();
    let mut w = conn.inner.writer.lock().await;
    {
        let mut st = conn.inner.state.lock().expect("broker state");
        if st.closed.is_some() {
            return;
        }
        let Writer { enc, .. } = &mut *w;
        match &result {
            Ok(v) => enc.answer(reqid, v, &mut *st, &mut out),
            Err(f) => enc.error(reqid, f, &mut out),
        }
    }
    let _ = write_out(&conn.inner, &mut w, out.into_buf()).await;
}

fn dispatch(
    conn: &Connection,
    reqid: u64,
    clid: i64,
    method: String,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    if clid == 0 {
        let c = conn.clone();
        tokio::spawn(async move {
            let r = broker_call(&c, &method, args, kwargs);
            send_result(&c, reqid, r).await;
            drop(permit);
        });
        return;
    }
    let target = {
        let st = conn.inner.state.lock().expect("broker state");
        st.exports.get(&clid).map(|e| e.obj.clone())
    };
    let Some(obj) = target else {
        spawn_error(
            conn,
            reqid,
            Failure::violation(format!("('unknown CLID {clid}',)")),
        );
        return;
    };
    let args = match obj.schema() {
        Some(iface) => match schema::check_call(iface, &method, args, kwargs) {
            Ok((args, _)) => args,
            Err(v) => {
                spawn_error(conn, reqid, Failure::violation(v));
                return;
            }
        },
        None => {
            let mut all = args;
            let mut kw = kwargs;
            kw.sort_by(|a, b| a.0.cmp(&b.0));
            all.extend(kw.into_iter().map(|(_, v)| v));
            all
        }
    };
    if obj.sequential() {
        // One worker per object runs its calls in arrival order. Each queued call
        // holds its in-flight permit, so the queue is bounded like everything else.
        let queue = {
            let mut st = conn.inner.state.lock().expect("broker state");
            let e = st.exports.get_mut(&clid).expect("looked up above");
            e.queue
                .get_or_insert_with(|| {
                    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
                    let c = conn.clone();
                    let o = e.obj.clone();
                    tokio::spawn(async move {
                        while let Some((reqid, method, args, permit)) = rx.recv().await {
                            run_call(&c, &o, reqid, &method, args).await;
                            drop(permit);
                        }
                    });
                    tx
                })
                .clone()
        };
        let _ = queue.send((reqid, method, args, permit));
    } else {
        let c = conn.clone();
        tokio::spawn(async move {
            run_call(&c, &obj, reqid, &method, args).await;
            drop(permit);
        });
    }
}

/// Run one call on a local object, check its result against the method's schema
/// (foolscap's sender-side check), and answer.
async fn run_call(
    conn: &Connection,
    obj: &Arc<dyn RemoteObject>,
    reqid: u64,
    method: &str,
    args: Vec<Value>,
) {
    let mut r = obj.call(conn, method, args).await;
    if let Ok(v) = &r {
        if let Some(m) = obj.schema().and_then(|i| i.method(method)) {
            if let Err(why) = schema::check_result(m, v) {
                warn!(method, "result violates its schema: {why}");
                r = Err(Failure::violation(why));
            }
        }
    }
    send_result(conn, reqid, r).await;
}

/// clid 0: the RIBroker methods.
fn broker_call(
    conn: &Connection,
    method: &str,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
) -> Result<Value, Failure> {
    let (args, _) =
        schema::check_call(&schema::RI_BROKER, method, args, kwargs).map_err(Failure::violation)?;
    match method {
        "getReferenceByName" => {
            let name = args[0].as_bytes().cloned().unwrap_or_default();
            let name = String::from_utf8_lossy(&name).into_owned();
            match (conn.inner.published)(&name) {
                Some(obj) => {
                    if let Some(revoked) = obj.revoked_by() {
                        let conn = conn.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = revoked.cancelled() => conn.close("the object was revoked"),
                                _ = conn.closed() => {}
                            }
                        });
                    }
                    Ok(Value::Local(obj))
                }
                None => {
                    let prefix: String = name.chars().take(2).collect();
                    Err(Failure::new(
                        "builtins.KeyError",
                        format!("\"unable to find reference for name starting with '{prefix}'\""),
                        &["builtins.LookupError"],
                    ))
                }
            }
        }
        "decref" => {
            let clid = args[0].as_i128().unwrap_or(-1);
            let count = args[1].as_i128().unwrap_or(0);
            let mut st = conn.inner.state.lock().expect("broker state");
            if let Ok(clid) = i64::try_from(clid) {
                if let Some(e) = st.exports.get_mut(&clid) {
                    e.refcount = e.refcount.saturating_sub(u64::try_from(count).unwrap_or(0));
                    if e.refcount == 0 {
                        let e = st.exports.remove(&clid).expect("present");
                        st.export_ids
                            .remove(&(Arc::as_ptr(&e.obj) as *const () as usize));
                    }
                }
            }
            Ok(Value::None)
        }
        "decgift" => Ok(Value::None),
        _ => unreachable!("schema::check_call admits only RIBroker methods"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(io: tokio::io::DuplexStream, call_timeout: Option<Duration>) -> Connection {
        let config = BrokerConfig {
            keepalive: None,
            call_timeout,
            ..BrokerConfig::default()
        };
        let vocab = VocabTable::by_index(0).expect("table 0");
        let nothing: Lookup = Arc::new(|_| None);
        start(io, BytesMut::new(), vocab, "peer".into(), config, nothing)
    }

    /// The peer reads the call but never answers: the call fails at its deadline,
    /// and the connection, whose byte stream is intact, stays open.
    #[tokio::test]
    async fn a_call_without_an_answer_fails_at_its_deadline_and_the_connection_stays_open() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut sink = vec![0; 4096];
            while matches!(theirs.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let conn = connection(ours, Some(Duration::from_millis(200)));
        let started = Instant::now();
        let e = conn.call_kw(1, "get_version", &[], &[]).await.unwrap_err();
        assert!(matches!(e, CallError::Timeout(_, false)), "{e:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(e.to_string().contains("call deadline"), "{e}");
        assert!(!conn.is_closed());
        assert!(conn.inner.state.lock().unwrap().pending.is_empty());
    }

    /// The peer reads nothing: the deadline passes while the call's message is
    /// part-way out, and the connection is closed (nothing can follow half a
    /// message); later calls fail at once.
    #[tokio::test]
    async fn a_call_cut_off_mid_write_closes_the_connection() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let conn = connection(ours, Some(Duration::from_millis(200)));
        let big = Value::bytes(vec![0u8; 256 * 1024]);
        let e = conn.call_kw(1, "write", &[big], &[]).await.unwrap_err();
        assert!(matches!(e, CallError::Timeout(_, true)), "{e:?}");
        assert!(conn.is_closed());
        let e = conn.call_kw(1, "get_version", &[], &[]).await.unwrap_err();
        assert!(matches!(e, CallError::ConnectionLost(_)), "{e:?}");
    }
}
