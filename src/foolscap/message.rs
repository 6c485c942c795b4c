//! PB messages over Banana tokens: the "unslicer" that builds values and top-level
//! messages out of tokens, and the "slicer" that writes them. Sans-IO.
//!
//! Top level a PB connection carries only `call`, `answer` and `error` sequences:
//! ```text
//! OPEN call INT(reqID) INT(clid) STRING(method) OPEN arguments INT(npos) pos... (STRING kw, value)... CLOSE CLOSE
//! OPEN answer INT(reqID) value CLOSE
//! OPEN error INT(reqID) OPEN copyable "twisted.python.failure.Failure" ... CLOSE CLOSE
//! ```
//! Decoding failures come in two strengths, as in foolscap: a *violation* spoils
//! one message (the call gets an `error` answer, the connection survives), a
//! *protocol error* ([`BananaError`]) ends the connection with an ERROR token.
//!
//! Decoded values hold references as the wire has them ([`Value<Wire>`]); the
//! encoder writes values of any [`Refs`] instantiation, through an [`Exporter`]
//! that gives their live references a wire form (the broker's tables).

use std::collections::HashSet;
use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};
use bytes_utils::SegmentedBuf;
use num_bigint::BigInt;

use super::banana::{BananaError, Encoder, Token, VocabTable};
use super::value::{Failure, Refs, Value, Wire};

/// Limits on one top-level message, checked as tokens arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Deepest nesting accepted. Foolscap has no receive-side limit; Tahoe's deepest
    /// message (`slot_testv_and_readv_and_writev`) nests 6 levels, so 64 leaves room
    /// while stopping a peer from building an unbounded stack. Exceeding it is a
    /// protocol error.
    pub max_depth: usize,
    /// The most bytes (string bodies plus a small charge per token) one message may
    /// hold; past it the message is discarded as a violation.
    pub max_message_bytes: u64,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            max_depth: 64,
            max_message_bytes: 128 * 1024 * 1024,
        }
    }
}

/// What a top-level message decoded to.
#[derive(Debug)]
pub enum Inbound {
    Call {
        reqid: u64,
        clid: i64,
        method: String,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    },
    Answer {
        reqid: u64,
        value: Value,
    },
    Error {
        reqid: u64,
        failure: Failure,
    },
    /// A call that could not be decoded; it gets an `error` answer unless reqid is 0.
    CallViolation {
        reqid: u64,
        violation: String,
    },
    /// An answer or error that could not be decoded; its caller fails locally.
    AnswerViolation {
        reqid: u64,
        violation: String,
    },
    /// A message foolscap drops silently (unknown top-level opentype, an aborted
    /// call, a violation before the reqID was known).
    Dropped(String),
    Ping(u64),
    Pong(u64),
    /// The peer sent an ERROR token: it is hanging up.
    PeerError(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopKind {
    Call,
    Answer,
    Error,
    Other,
}

#[derive(Debug)]
struct Frame {
    open_id: u64,
    object_no: u64,
    opentype: Vec<Bytes>,
    /// Index tokens still expected (0 once the opentype is complete).
    index_needed: usize,
    items: Vec<Value>,
}

impl Frame {
    fn kind(&self) -> &[u8] {
        self.opentype.first().map(|b| b.as_ref()).unwrap_or(b"")
    }
}

/// Reassembles top-level messages from tokens.
pub struct MessageDecoder {
    vocab: VocabTable,
    limits: MessageLimits,
    stack: Vec<Frame>,
    /// Counts every OPEN received on the connection: `reference` sequences name
    /// earlier objects by this number.
    object_counter: u64,
    // State of the top-level message being received.
    refs: std::collections::HashMap<u64, Value>,
    top_kind: TopKind,
    top_reqid: Option<u64>,
    violation: Option<String>,
    aborted: bool,
    message_bytes: u64,
}

/// Per-token charge against `max_message_bytes`, so a flood of tiny tokens is bounded
/// as well as a flood of long strings.
const TOKEN_CHARGE: u64 = 16;

fn protocol(msg: impl Into<String>) -> BananaError {
    BananaError::Protocol(msg.into())
}

impl MessageDecoder {
    pub fn new(vocab: VocabTable, limits: MessageLimits) -> MessageDecoder {
        MessageDecoder {
            vocab,
            limits,
            stack: Vec::new(),
            object_counter: 0,
            refs: Default::default(),
            top_kind: TopKind::Other,
            top_reqid: None,
            violation: None,
            aborted: false,
            message_bytes: 0,
        }
    }

    fn violate(&mut self, msg: impl Into<String>) {
        if self.violation.is_none() {
            self.violation = Some(msg.into());
        }
    }

    /// Feed one token; a complete top-level message (or a PING, PONG or ERROR) comes
    /// out as `Some`.
    pub fn feed(&mut self, token: Token) -> Result<Option<Inbound>, BananaError> {
        match token {
            Token::Ping(n) => return Ok(Some(Inbound::Ping(n))),
            Token::Pong(n) => return Ok(Some(Inbound::Pong(n))),
            Token::Error(msg) => {
                return Ok(Some(Inbound::PeerError(
                    String::from_utf8_lossy(&msg).into_owned(),
                )))
            }
            _ => {}
        }
        self.message_bytes += TOKEN_CHARGE;
        if let Token::String(s) = &token {
            self.message_bytes += s.len() as u64;
        }
        if self.message_bytes > self.limits.max_message_bytes {
            let limit = self.limits.max_message_bytes;
            self.violate(format!("message larger than {limit} bytes"));
        }
        match token {
            Token::Open(id) => {
                let object_no = self.object_counter;
                self.object_counter += 1;
                if self.stack.len() >= self.limits.max_depth {
                    return Err(protocol(format!(
                        "sequences nested deeper than {}",
                        self.limits.max_depth
                    )));
                }
                if let Some(top) = self.stack.last() {
                    if top.index_needed > 0 {
                        return Err(protocol("OPEN token followed by OPEN"));
                    }
                }
                self.stack.push(Frame {
                    open_id: id,
                    object_no,
                    opentype: Vec::new(),
                    index_needed: 1,
                    items: Vec::new(),
                });
                Ok(None)
            }
            Token::Close(id) => self.close(id),
            Token::Abort(_) => {
                if self.stack.is_empty() {
                    return Err(protocol("ABORT at top level"));
                }
                self.aborted = true;
                self.violate("ABORT received");
                Ok(None)
            }
            Token::Vocab(i) => {
                let word = self
                    .vocab
                    .word(i)
                    .ok_or_else(|| protocol(format!("unknown VOCAB index {i}")))?;
                self.string(word)
            }
            Token::String(s) => self.string(s),
            Token::SkippedString(len) => {
                if self.stack.is_empty() {
                    return Err(protocol("top-level must be OPEN"));
                }
                self.violate(format!("STRING token too large: {len} bytes"));
                Ok(None)
            }
            Token::Int(i) => self.child(Value::Int(i), "INT"),
            Token::Float(f) => self.child(Value::Float(f), "FLOAT"),
            Token::Ping(_) | Token::Pong(_) | Token::Error(_) => unreachable!("handled above"),
        }
    }

    fn string(&mut self, s: Bytes) -> Result<Option<Inbound>, BananaError> {
        let Some(top) = self.stack.last_mut() else {
            return Err(protocol("top-level must be OPEN"));
        };
        if top.index_needed == 0 {
            return self.child(Value::Bytes(s), "STRING");
        }
        // Index phase: the opentype.
        let mut too_long = None;
        if top.opentype.is_empty() {
            // PB's longest registered opentype is `their-reference` (15 bytes).
            if s.len() > 15 {
                too_long = Some(s.len());
            }
            if s.as_ref() == b"copyable" {
                top.index_needed = 2;
            }
        }
        top.opentype.push(s);
        top.index_needed -= 1;
        let done = top.index_needed == 0;
        if let Some(n) = too_long {
            self.violate(format!("opentype too long ({n} bytes)"));
        }
        if done {
            self.opentype_complete();
        }
        Ok(None)
    }

    fn opentype_complete(&mut self) {
        let depth = self.stack.len();
        let top = self.stack.last().expect("a frame");
        let kind = top.kind().to_vec();
        if depth == 1 {
            self.top_kind = match kind.as_slice() {
                b"call" => TopKind::Call,
                b"answer" => TopKind::Answer,
                b"error" => TopKind::Error,
                _ => TopKind::Other,
            };
            if self.top_kind == TopKind::Other {
                let k = String::from_utf8_lossy(&kind).into_owned();
                self.violate(format!("unknown top-level OPEN type ('{k}',)"));
            }
            return;
        }
        let parent_kind = self.stack[depth - 2].kind().to_vec();
        let ok = match kind.as_slice() {
            b"none" | b"boolean" | b"reference" | b"dict" | b"list" | b"tuple" | b"set"
            | b"immutable-set" | b"unicode" | b"my-reference" | b"your-reference" | b"copyable"
            | b"decimal" => true,
            b"arguments" => parent_kind == b"call",
            b"their-reference" => {
                self.violate("gifts are prohibited in this Tub");
                return;
            }
            _ => false,
        };
        if !ok {
            let k = String::from_utf8_lossy(&kind).into_owned();
            self.violate(format!("unknown OPEN type ('{k}',)"));
        }
    }

    /// A token that is a value (or index phase misuse).
    fn child(&mut self, v: Value, what: &str) -> Result<Option<Inbound>, BananaError> {
        let discarding = self.violation.is_some();
        let depth = self.stack.len();
        let Some(top) = self.stack.last_mut() else {
            return Err(protocol("top-level must be OPEN"));
        };
        if top.index_needed > 0 {
            return Err(protocol(format!("index token {what} not STRING or VOCAB")));
        }
        if !discarding {
            // The strict unslicers reject wrong tokens as protocol errors.
            match top.kind() {
                b"none" => return Err(protocol("NoneUnslicer does not accept any tokens")),
                b"boolean" if !matches!(v, Value::Int(_)) || !top.items.is_empty() => {
                    return Err(protocol("BooleanUnslicer only accepts one INT token"))
                }
                b"unicode" if !matches!(v, Value::Bytes(_)) || !top.items.is_empty() => {
                    return Err(protocol("UnicodeUnslicer only accepts one string"))
                }
                _ => {}
            }
        }
        if depth == 1 && top.items.is_empty() {
            if let (TopKind::Call | TopKind::Answer | TopKind::Error, Value::Int(i)) =
                (self.top_kind, &v)
            {
                self.top_reqid = u64::try_from(i).ok();
            }
        }
        if !discarding {
            top.items.push(v);
        }
        Ok(None)
    }

    fn close(&mut self, id: u64) -> Result<Option<Inbound>, BananaError> {
        let Some(frame) = self.stack.pop() else {
            return Err(protocol("top-level should never receive CLOSE tokens"));
        };
        if frame.open_id != id {
            return Err(protocol(format!(
                "lost sync: CLOSE({id}) does not match OPEN({})",
                frame.open_id
            )));
        }
        if frame.index_needed > 0 {
            return Err(protocol("CLOSE before the opentype"));
        }
        if self.stack.is_empty() {
            return Ok(Some(self.finish_top(frame)));
        }
        if self.violation.is_some() {
            return Ok(None);
        }
        match self.build(frame) {
            Ok(v) => {
                let depth = self.stack.len();
                let parent = self.stack.last_mut().expect("parent frame");
                // Strict parents: a sequence inside none/boolean/unicode.
                if matches!(parent.kind(), b"none" | b"boolean" | b"unicode") {
                    return Err(protocol("strict sequence received a nested sequence"));
                }
                if depth == 1 && parent.items.is_empty() {
                    // A sequence where the reqID belongs.
                    self.violate("reqID must be an INT");
                    return Ok(None);
                }
                parent.items.push(v);
                Ok(None)
            }
            Err(Build::Violation(msg)) => {
                self.violate(msg);
                Ok(None)
            }
            Err(Build::Protocol(e)) => Err(e),
        }
    }

    fn finish_top(&mut self, frame: Frame) -> Inbound {
        let kind = self.top_kind;
        let reqid = self.top_reqid.take();
        let violation = self.violation.take();
        let aborted = std::mem::take(&mut self.aborted);
        self.refs.clear();
        self.top_kind = TopKind::Other;
        self.message_bytes = 0;
        if let Some(violation) = violation {
            return match (kind, reqid) {
                (TopKind::Call, Some(reqid)) if !aborted => {
                    Inbound::CallViolation { reqid, violation }
                }
                (TopKind::Answer | TopKind::Error, Some(reqid)) => {
                    Inbound::AnswerViolation { reqid, violation }
                }
                _ => Inbound::Dropped(violation),
            };
        }
        let mut items = frame.items.into_iter();
        let bad = |msg: &str| -> Inbound {
            match (kind, reqid) {
                (TopKind::Call, Some(reqid)) => Inbound::CallViolation {
                    reqid,
                    violation: msg.to_string(),
                },
                (_, Some(reqid)) => Inbound::AnswerViolation {
                    reqid,
                    violation: msg.to_string(),
                },
                _ => Inbound::Dropped(msg.to_string()),
            }
        };
        let Some(reqid) = reqid else {
            return Inbound::Dropped("message without an INT reqID".into());
        };
        items.next();
        match kind {
            TopKind::Call => {
                let clid = match items.next() {
                    Some(Value::Int(c)) => match i64::try_from(&c) {
                        Ok(c) => c,
                        Err(_) => return bad("clid out of range"),
                    },
                    _ => return bad("call without an INT clid"),
                };
                let method = match items.next() {
                    Some(Value::Bytes(m)) => match String::from_utf8(m.to_vec()) {
                        Ok(m) => m,
                        Err(_) => return bad("method name is not UTF-8"),
                    },
                    _ => return bad("call without a method name"),
                };
                let (args, kwargs) = match (items.next(), items.next()) {
                    (Some(Value::Tuple(mut ak)), None) if ak.len() == 2 => {
                        let kw = ak.pop().expect("two");
                        let pos = ak.pop().expect("two");
                        match (pos, kw) {
                            (Value::List(pos), Value::Dict(kw)) => (
                                pos,
                                kw.into_iter()
                                    .map(|(k, v)| match k {
                                        Value::Text(k) => (k, v),
                                        _ => unreachable!("arguments keys are built as text"),
                                    })
                                    .collect(),
                            ),
                            _ => return bad("malformed arguments"),
                        }
                    }
                    _ => return bad("call without arguments"),
                };
                Inbound::Call {
                    reqid,
                    clid,
                    method,
                    args,
                    kwargs,
                }
            }
            TopKind::Answer => match (items.next(), items.next()) {
                (Some(value), None) => Inbound::Answer { reqid, value },
                _ => bad("answer must carry exactly one value"),
            },
            TopKind::Error => match (items.next(), items.next()) {
                (Some(v), None) => match Failure::from_value(&v) {
                    Some(failure) => Inbound::Error { reqid, failure },
                    None => bad("error must carry a Failure"),
                },
                _ => bad("error must carry exactly one value"),
            },
            TopKind::Other => Inbound::Dropped("unknown top-level opentype".into()),
        }
    }

    fn build(&mut self, frame: Frame) -> Result<Value, Build> {
        let kind = frame.kind().to_vec();
        let object_no = frame.object_no;
        let items = frame.items;
        let v = match kind.as_slice() {
            b"none" => Value::None,
            b"boolean" => match items.as_slice() {
                [Value::Int(i)] if *i == BigInt::from(0) => Value::Bool(false),
                [Value::Int(i)] if *i == BigInt::from(1) => Value::Bool(true),
                _ => return Err(Build::Protocol(protocol("boolean must be INT 0 or 1"))),
            },
            b"unicode" => match items.as_slice() {
                [Value::Bytes(b)] => match std::str::from_utf8(b) {
                    Ok(s) => Value::Text(s.to_string()),
                    Err(_) => return Err(Build::Violation("unicode is not valid UTF-8".into())),
                },
                _ => {
                    return Err(Build::Protocol(protocol(
                        "unicode needs exactly one string",
                    )))
                }
            },
            b"list" => Value::List(items),
            b"tuple" => Value::Tuple(items),
            b"set" => Value::Set(items),
            b"immutable-set" => Value::FrozenSet(items),
            b"dict" => {
                if !items.len().is_multiple_of(2) {
                    return Err(Build::Violation("dict with a key but no value".into()));
                }
                let mut seen = HashSet::new();
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let mut key = Vec::new();
                    if !hash_key(&k, &mut key) {
                        return Err(Build::Protocol(protocol(format!("unhashable key {k:?}"))));
                    }
                    if !seen.insert(key) {
                        return Err(Build::Protocol(protocol(format!("duplicate key {k:?}"))));
                    }
                    pairs.push((k, v));
                }
                Value::Dict(pairs)
            }
            b"reference" => {
                let n = match items.as_slice() {
                    [Value::Int(n)] => {
                        u64::try_from(n).map_err(|_| Build::Violation("bad reference".into()))?
                    }
                    _ => return Err(Build::Violation("reference needs one INT".into())),
                };
                if self.stack.iter().any(|f| f.object_no == n) {
                    return Err(Build::Violation(
                        "reference to an unfinished container (cycles are not supported)".into(),
                    ));
                }
                return self
                    .refs
                    .get(&n)
                    .cloned()
                    .ok_or_else(|| Build::Violation(format!("reference to unknown object {n}")));
            }
            b"my-reference" => {
                let mut it = items.into_iter();
                let clid = match it.next() {
                    Some(Value::Int(c)) => {
                        i64::try_from(&c).map_err(|_| Build::Violation("bad clid".into()))?
                    }
                    _ => return Err(Build::Violation("my-reference needs an INT clid".into())),
                };
                let text = |v: Option<Value>| -> Result<Option<String>, Build> {
                    match v {
                        None => Ok(None),
                        Some(Value::Bytes(b)) => {
                            String::from_utf8(b.to_vec()).map(Some).map_err(|_| {
                                Build::Violation("my-reference string is not UTF-8".into())
                            })
                        }
                        Some(_) => Err(Build::Violation(
                            "my-reference strings must be STRING".into(),
                        )),
                    }
                };
                let iface = text(it.next())?;
                let url = text(it.next())?;
                if it.next().is_some() {
                    return Err(Build::Violation("my-reference has too many items".into()));
                }
                Value::MyRef { clid, iface, url }
            }
            b"your-reference" => match items.as_slice() {
                [Value::Int(c)] => Value::YourRef(
                    i64::try_from(c).map_err(|_| Build::Violation("bad clid".into()))?,
                ),
                _ => return Err(Build::Violation("your-reference needs one INT".into())),
            },
            b"copyable" => {
                let name = String::from_utf8_lossy(&frame.opentype[1]).into_owned();
                if !items.len().is_multiple_of(2) {
                    return Err(Build::Violation(
                        "copyable state with a key but no value".into(),
                    ));
                }
                let mut state = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    match k {
                        Value::Bytes(k) => state.push((k, v)),
                        _ => {
                            return Err(Build::Violation(
                                "copyable attribute names must be STRING".into(),
                            ))
                        }
                    }
                }
                Value::Copyable { name, state }
            }
            b"decimal" => match items.as_slice() {
                [Value::Bytes(b)] => Value::Decimal(String::from_utf8_lossy(b).into_owned()),
                _ => return Err(Build::Violation("decimal needs one STRING".into())),
            },
            b"arguments" => {
                let mut it = items.into_iter();
                let npos = match it.next() {
                    Some(Value::Int(n)) => {
                        usize::try_from(&n).map_err(|_| Build::Violation("bad npos".into()))?
                    }
                    _ => {
                        return Err(Build::Violation(
                            "arguments must start with INT npos".into(),
                        ))
                    }
                };
                let rest: Vec<Value> = it.collect();
                if rest.len() < npos || !(rest.len() - npos).is_multiple_of(2) {
                    return Err(Build::Violation("malformed arguments".into()));
                }
                let mut rest = rest.into_iter();
                let pos: Vec<Value> = rest.by_ref().take(npos).collect();
                let mut kw = Vec::new();
                while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
                    match k {
                        Value::Bytes(k) => {
                            let k = String::from_utf8(k.to_vec()).map_err(|_| {
                                Build::Violation("argument name is not UTF-8".into())
                            })?;
                            if kw.iter().any(
                                |(n, _): &(Value, Value)| matches!(n, Value::Text(x) if *x == k),
                            ) {
                                return Err(Build::Violation(format!("duplicate argument '{k}'")));
                            }
                            kw.push((Value::Text(k), v));
                        }
                        _ => return Err(Build::Violation("argument names must be STRING".into())),
                    }
                }
                return Ok(Value::Tuple(vec![Value::List(pos), Value::Dict(kw)]));
            }
            other => {
                return Err(Build::Violation(format!(
                    "unknown OPEN type ('{}',)",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        if matches!(
            v,
            Value::List(_) | Value::Tuple(_) | Value::Set(_) | Value::FrozenSet(_) | Value::Dict(_)
        ) {
            self.refs.insert(object_no, v.clone());
        }
        Ok(v)
    }
}

enum Build {
    Violation(String),
    Protocol(BananaError),
}

/// A canonical byte form of a hashable value (as Python hashes dict keys); false if
/// the value is unhashable (list, dict, set).
fn hash_key(v: &Value, out: &mut Vec<u8>) -> bool {
    match v {
        Value::None => out.push(0),
        Value::Bool(b) => {
            // Python: True == 1 and False == 0 as dict keys.
            out.push(2);
            out.extend_from_slice(&BigInt::from(u8::from(*b)).to_signed_bytes_le());
        }
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_signed_bytes_le());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Bytes(b) => {
            out.push(4);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        Value::Text(s) => {
            out.push(5);
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Decimal(s) => {
            out.push(6);
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Tuple(items) | Value::FrozenSet(items) => {
            out.push(7);
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            return items.iter().all(|i| hash_key(i, out));
        }
        _ => return false,
    }
    true
}

/// Gives the live references of values being sent their clids (the broker's import
/// and export tables).
pub trait Exporter {
    /// The references of the values sent with this exporter.
    type Refs: Refs;

    /// The clid the peer exported its object `r` under (sent as `your-reference`).
    fn remote_clid(&mut self, r: &<Self::Refs as Refs>::Remote) -> i64;

    /// The clid of `obj`, allocating one if needed, and its interface name when this
    /// is the first send since its refcount was last zero.
    fn export(&mut self, obj: &<Self::Refs as Refs>::Local) -> (i64, Option<String>);
}

/// The exporter of values without live references ([`Value<Wire>`]).
pub struct NoExports;

impl Exporter for NoExports {
    type Refs = Wire;

    fn remote_clid(&mut self, r: &Infallible) -> i64 {
        match *r {}
    }

    fn export(&mut self, obj: &Infallible) -> (i64, Option<String>) {
        match *obj {}
    }
}

/// Byte strings at least this long are spliced into an [`Encoded`] message
/// rather than copied into it.
pub const SPLICE_MIN: usize = 16 * 1024;

/// An encoded PB message: its tokens, with the bodies of long byte strings (share
/// data) kept as the caller's `Bytes` rather than copied, to be written in place
/// by a vectored write ([`Encoded::into_buf`]).
#[derive(Debug, Default)]
pub struct Encoded {
    head: BytesMut,
    /// (offset into `head` where the body goes, body), in order.
    spliced: Vec<(usize, Bytes)>,
}

impl Encoded {
    pub fn new() -> Encoded {
        Encoded::default()
    }

    /// Length of the whole message on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.spliced.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message as a sequence of buffers to write, bodies in place.
    pub fn into_buf(self) -> SegmentedBuf<Bytes> {
        let Encoded { mut head, spliced } = self;
        let mut buf = SegmentedBuf::new();
        let mut at = 0;
        for (offset, body) in spliced {
            buf.push(head.split_to(offset - at).freeze());
            buf.push(body);
            at = offset;
        }
        buf.push(head.freeze());
        buf
    }

    /// The message in one contiguous buffer (copies the spliced bodies).
    pub fn into_bytes(self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        out.put(self.into_buf());
        out.freeze()
    }
}

/// Writes PB messages; owns one direction's Banana encoder.
pub struct MessageEncoder {
    enc: Encoder,
}

impl MessageEncoder {
    pub fn new(vocab: VocabTable) -> MessageEncoder {
        MessageEncoder {
            enc: Encoder::new(vocab),
        }
    }

    pub fn banana(&mut self) -> &mut Encoder {
        &mut self.enc
    }

    /// A call; keyword arguments are sent sorted by name, as foolscap does.
    #[allow(clippy::too_many_arguments)]
    pub fn call<E: Exporter + ?Sized>(
        &mut self,
        reqid: u64,
        clid: i64,
        method: &str,
        args: &[Value<E::Refs>],
        kwargs: &[(&str, Value<E::Refs>)],
        ex: &mut E,
        out: &mut Encoded,
    ) {
        let c = self.enc.open(&mut out.head);
        self.enc.string(b"call", &mut out.head);
        self.enc.int_i64(reqid as i64, &mut out.head);
        self.enc.int_i64(clid, &mut out.head);
        self.enc.string(method.as_bytes(), &mut out.head);
        let a = self.enc.open(&mut out.head);
        self.enc.string(b"arguments", &mut out.head);
        self.enc.int_i64(args.len() as i64, &mut out.head);
        for v in args {
            self.value(v, ex, out);
        }
        let mut kw: Vec<&(&str, Value<E::Refs>)> = kwargs.iter().collect();
        kw.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in kw {
            self.enc.string(k.as_bytes(), &mut out.head);
            self.value(v, ex, out);
        }
        self.enc.close(a, &mut out.head);
        self.enc.close(c, &mut out.head);
    }

    pub fn answer<E: Exporter + ?Sized>(
        &mut self,
        reqid: u64,
        value: &Value<E::Refs>,
        ex: &mut E,
        out: &mut Encoded,
    ) {
        let o = self.enc.open(&mut out.head);
        self.enc.string(b"answer", &mut out.head);
        self.enc.int_i64(reqid as i64, &mut out.head);
        self.value(value, ex, out);
        self.enc.close(o, &mut out.head);
    }

    pub fn error(&mut self, reqid: u64, failure: &Failure, out: &mut Encoded) {
        let o = self.enc.open(&mut out.head);
        self.enc.string(b"error", &mut out.head);
        self.enc.int_i64(reqid as i64, &mut out.head);
        self.value(&failure.to_value(), &mut NoExports, out);
        self.enc.close(o, &mut out.head);
    }

    fn seq<E: Exporter + ?Sized>(
        &mut self,
        opentype: &[u8],
        items: &[Value<E::Refs>],
        ex: &mut E,
        out: &mut Encoded,
    ) {
        let o = self.enc.open(&mut out.head);
        self.enc.string(opentype, &mut out.head);
        for v in items {
            self.value(v, ex, out);
        }
        self.enc.close(o, &mut out.head);
    }

    /// Any value, as foolscap's slicers write it.
    pub fn value<E: Exporter + ?Sized>(
        &mut self,
        v: &Value<E::Refs>,
        ex: &mut E,
        out: &mut Encoded,
    ) {
        match v {
            Value::None => self.seq(b"none", &[], ex, out),
            Value::Bool(b) => {
                let o = self.enc.open(&mut out.head);
                self.enc.string(b"boolean", &mut out.head);
                self.enc.int_i64(i64::from(*b), &mut out.head);
                self.enc.close(o, &mut out.head);
            }
            Value::Int(i) => self.enc.int(i, &mut out.head),
            Value::Float(f) => self.enc.float(*f, &mut out.head),
            // Share data is not copied: its header goes in, its body is spliced in
            // when written. (No vocabulary word is this long.)
            Value::Bytes(b) if b.len() >= SPLICE_MIN => {
                self.enc.string_header(b.len(), &mut out.head);
                out.spliced.push((out.head.len(), b.clone()));
            }
            Value::Bytes(b) => self.enc.string(b, &mut out.head),
            Value::Text(s) => {
                let o = self.enc.open(&mut out.head);
                self.enc.string(b"unicode", &mut out.head);
                self.enc.string(s.as_bytes(), &mut out.head);
                self.enc.close(o, &mut out.head);
            }
            Value::List(items) => self.seq(b"list", items, ex, out),
            Value::Tuple(items) => self.seq(b"tuple", items, ex, out),
            Value::Set(items) => self.seq(b"set", items, ex, out),
            Value::FrozenSet(items) => self.seq(b"immutable-set", items, ex, out),
            Value::Dict(items) => {
                let mut sorted: Vec<&(Value<_>, Value<_>)> = items.iter().collect();
                sorted.sort_by(|a, b| py_cmp(&a.0, &b.0));
                let o = self.enc.open(&mut out.head);
                self.enc.string(b"dict", &mut out.head);
                for (k, v) in sorted {
                    self.value(k, ex, out);
                    self.value(v, ex, out);
                }
                self.enc.close(o, &mut out.head);
            }
            Value::Decimal(s) => {
                let o = self.enc.open(&mut out.head);
                self.enc.string(b"decimal", &mut out.head);
                self.enc.string(s.as_bytes(), &mut out.head);
                self.enc.close(o, &mut out.head);
            }
            Value::Copyable { name, state } => {
                let o = self.enc.open(&mut out.head);
                self.enc.string(b"copyable", &mut out.head);
                self.enc.string(name.as_bytes(), &mut out.head);
                for (k, v) in state {
                    self.enc.string(k, &mut out.head);
                    self.value(v, ex, out);
                }
                self.enc.close(o, &mut out.head);
            }
            Value::MyRef { clid, iface, url } => {
                let o = self.enc.open(&mut out.head);
                self.enc.string(b"my-reference", &mut out.head);
                self.enc.int_i64(*clid, &mut out.head);
                if let Some(iface) = iface {
                    self.enc.string(iface.as_bytes(), &mut out.head);
                    if let Some(url) = url {
                        self.enc.string(url.as_bytes(), &mut out.head);
                    }
                }
                self.enc.close(o, &mut out.head);
            }
            Value::Local(obj) => {
                let (clid, iface) = ex.export(obj);
                self.value(
                    &Value::MyRef {
                        clid,
                        iface,
                        url: None,
                    },
                    ex,
                    out,
                );
            }
            Value::YourRef(clid) => {
                let o = self.enc.open(&mut out.head);
                self.enc.string(b"your-reference", &mut out.head);
                self.enc.int_i64(*clid, &mut out.head);
                self.enc.close(o, &mut out.head);
            }
            Value::Remote(r) => {
                let clid = ex.remote_clid(r);
                self.value(&Value::YourRef(clid), ex, out);
            }
        }
    }
}

/// Python's ordering of dict keys as foolscap sorts them (`keys.sort()`): numbers
/// (bool, int and float alike) by value, exactly, as Python compares them; byte
/// strings and text lexicographically; tuples item by item. Mixes Python cannot
/// order (bytes against int, say) make foolscap fail to send; here they fall back to
/// a fixed order of kinds, so that the order stays total (a sort given an
/// inconsistent order may panic).
fn py_cmp<R: Refs>(a: &Value<R>, b: &Value<R>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn kind<R: Refs>(v: &Value<R>) -> (u8, &'static str) {
        match v {
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => (0, ""),
            Value::Bytes(_) => (1, ""),
            Value::Text(_) => (2, ""),
            Value::Tuple(_) => (3, ""),
            other => (4, other.type_name()),
        }
    }
    match (a, b) {
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Tuple(x), Value::Tuple(y)) => {
            for (p, q) in x.iter().zip(y) {
                match py_cmp(p, q) {
                    Ordering::Equal => continue,
                    o => return o,
                }
            }
            x.len().cmp(&y.len())
        }
        _ => match (PyNum::of(a), PyNum::of(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => kind(a).cmp(&kind(b)),
        },
    }
}

/// A Python number, for ordering: `bool` is an `int` (False == 0, True == 1).
enum PyNum<'a> {
    Int(std::borrow::Cow<'a, BigInt>),
    Float(f64),
}

impl<'a> PyNum<'a> {
    fn of<R: Refs>(v: &'a Value<R>) -> Option<PyNum<'a>> {
        use std::borrow::Cow;
        match v {
            Value::Bool(b) => Some(PyNum::Int(Cow::Owned(BigInt::from(u8::from(*b))))),
            Value::Int(i) => Some(PyNum::Int(Cow::Borrowed(i))),
            Value::Float(f) => Some(PyNum::Float(*f)),
            _ => None,
        }
    }

    /// Exact comparison, as Python's `<` and `==` on mixed int and float (so
    /// `-0.0 == 0`). NaN is unordered in Python, which leaves foolscap's order of a
    /// NaN key to the sort algorithm; here NaN sorts after every other number.
    fn cmp(&self, other: &PyNum) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        fn int_float(i: &BigInt, f: f64) -> Ordering {
            if f.is_nan() || f == f64::INFINITY {
                return Ordering::Less;
            }
            if f == f64::NEG_INFINITY {
                return Ordering::Greater;
            }
            let floor = f.floor();
            let whole: BigInt = num_traits::FromPrimitive::from_f64(floor).expect("a finite float");
            match i.cmp(&whole) {
                // i == floor(f): i < f exactly when f has a fractional part.
                Ordering::Equal if f > floor => Ordering::Less,
                o => o,
            }
        }
        match (self, other) {
            (PyNum::Int(x), PyNum::Int(y)) => x.as_ref().cmp(y.as_ref()),
            (PyNum::Float(x), PyNum::Float(y)) => match (x.is_nan(), y.is_nan()) {
                (false, false) => x.partial_cmp(y).expect("not NaN"),
                (a, b) => a.cmp(&b),
            },
            (PyNum::Int(x), PyNum::Float(y)) => int_float(x, *y),
            (PyNum::Float(x), PyNum::Int(y)) => int_float(y, *x).reverse(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foolscap::banana::{DecodeLimits, TokenDecoder};

    fn vocab() -> VocabTable {
        VocabTable::by_index(1).unwrap()
    }

    fn decode(bytes: &[u8]) -> Result<Vec<Inbound>, BananaError> {
        let mut td = TokenDecoder::new(DecodeLimits::default());
        let mut md = MessageDecoder::new(vocab(), MessageLimits::default());
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(t) = td.next_token(&mut buf)? {
            if let Some(m) = md.feed(t)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn hex(s: &str) -> Vec<u8> {
        let clean: String = s.split_whitespace().collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn get_version_call_from_capture() {
        let bytes = hex(
            "02 88 0b 87 02 81 01 81 0b 82 6765745f76657273696f6e 03 88 0c 87 00 81 03 89 02 89",
        );
        let msgs = decode(&bytes).unwrap();
        match &msgs[..] {
            [Inbound::Call {
                reqid: 2,
                clid: 1,
                method,
                args,
                kwargs,
            }] => {
                assert_eq!(method, "get_version");
                assert!(args.is_empty() && kwargs.is_empty());
            }
            other => panic!("{other:?}"),
        }
        // And we write it identically (open counter at 2).
        let mut enc = MessageEncoder::new(vocab());
        let mut scratch = BytesMut::new();
        enc.banana().open(&mut scratch);
        enc.banana().open(&mut scratch);
        let mut out = Encoded::new();
        enc.call(2, 1, "get_version", &[], &[], &mut NoExports, &mut out);
        assert_eq!(&out.into_bytes()[..], &bytes[..]);
    }

    #[test]
    fn none_answer_and_values() {
        let msgs = decode(&hex("0f 88 0d 87 04 81 10 88 00 87 10 89 0f 89")).unwrap();
        assert!(matches!(
            &msgs[..],
            [Inbound::Answer {
                reqid: 4,
                value: Value::None
            }]
        ));
    }

    #[test]
    fn shared_reference_resolves() {
        // answer 1 [[b'shared'], <reference 2>]
        let bytes = hex("00 88 0d 87 01 81 01 88 04 87 02 88 04 87 06 82 736861726564 02 89 03 88 02 87 02 81 03 89 01 89 00 89");
        let msgs = decode(&bytes).unwrap();
        let inner = Value::List(vec![Value::bytes(&b"shared"[..])]);
        match &msgs[..] {
            [Inbound::Answer { value, .. }] => {
                assert_eq!(value, &Value::List(vec![inner.clone(), inner]))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn violations_and_protocol_errors() {
        // Unknown opentype inside a call's arguments: a violation for reqid 7.
        let bytes = hex("00 88 0b 87 07 81 00 81 01 82 78 01 88 0c 87 01 81 02 88 08 82 66726f626e69747a 02 89 01 89 00 89");
        match &decode(&bytes).unwrap()[..] {
            [Inbound::CallViolation {
                reqid: 7,
                violation,
            }] => assert!(violation.contains("frobnitz")),
            other => panic!("{other:?}"),
        }
        // A gift.
        let bytes = hex("00 88 0b 87 07 81 00 81 01 82 78 01 88 0c 87 01 81 02 88 11 87 01 81 02 89 01 89 00 89");
        match &decode(&bytes).unwrap()[..] {
            [Inbound::CallViolation { violation, .. }] => assert!(violation.contains("gifts")),
            other => panic!("{other:?}"),
        }
        // Top level must be OPEN.
        assert!(decode(&hex("01 81")).is_err());
        // Unknown top-level opentype: silently dropped.
        assert!(matches!(
            &decode(&hex("00 88 04 87 00 89")).unwrap()[..],
            [Inbound::Dropped(_)]
        ));
        // CLOSE mismatch.
        assert!(decode(&hex("00 88 0d 87 01 81 05 89")).is_err());
        // Unknown vocab.
        assert!(decode(&hex("00 88 40 87")).is_err());
        // None with a body, boolean with a string: strict, protocol errors.
        assert!(decode(&hex("00 88 0d 87 01 81 01 88 00 87 05 81 01 89 00 89")).is_err());
        assert!(decode(&hex("00 88 0d 87 01 81 01 88 01 87 01 82 78 01 89 00 89")).is_err());
        // Duplicate dict key.
        assert!(decode(&hex(
            "00 88 0d 87 01 81 01 88 03 87 01 82 61 01 81 01 82 61 02 81 01 89 00 89"
        ))
        .is_err());
    }

    #[test]
    fn nesting_and_message_size_limits() {
        let limits = MessageLimits {
            max_depth: 3,
            max_message_bytes: 300,
        };
        let run = |bytes: &[u8]| -> Result<Vec<Inbound>, BananaError> {
            let mut td = TokenDecoder::new(DecodeLimits::default());
            let mut md = MessageDecoder::new(vocab(), limits);
            let mut buf = BytesMut::from(bytes);
            let mut out = Vec::new();
            while let Some(t) = td.next_token(&mut buf)? {
                if let Some(m) = md.feed(t)? {
                    out.push(m);
                }
            }
            Ok(out)
        };
        // answer 1 [[None]]: depth 3 is fine.
        let ok = hex("00 88 0d 87 01 81 01 88 04 87 02 88 00 87 02 89 01 89 00 89");
        assert!(matches!(&run(&ok).unwrap()[..], [Inbound::Answer { .. }]));
        // answer 1 [[[None]]]: depth 4 is a protocol error.
        let deep =
            hex("00 88 0d 87 01 81 01 88 04 87 02 88 04 87 03 88 00 87 03 89 02 89 01 89 00 89");
        assert!(
            matches!(run(&deep), Err(BananaError::Protocol(m)) if m.contains("nested deeper than 3"))
        );
        // A 400-byte string in a call: the message is spoiled, the call gets a violation.
        let mut big = hex("00 88 0b 87 07 81 00 81 01 82 78 01 88 0c 87 01 81 10 03 82");
        big.extend([b'x'; 400]);
        big.extend(hex("01 89 00 89"));
        match &run(&big).unwrap()[..] {
            [Inbound::CallViolation {
                reqid: 7,
                violation,
            }] => assert!(violation.contains("larger than 300"), "{violation}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aborted_call_gets_no_answer() {
        let bytes = hex("00 88 0b 87 07 81 00 81 01 82 78 01 88 0c 87 00 81 01 8a 01 89 00 89");
        assert!(matches!(
            &decode(&bytes).unwrap()[..],
            [Inbound::Dropped(_)]
        ));
    }

    /// Found with the recorded foolscap sessions: foolscap sorts dict keys with
    /// Python's `<`, which orders bool, int and float keys by value (also inside tuple
    /// keys); we used to order floats not at all and mixed numbers by type name.
    #[test]
    fn dict_keys_sort_as_python_sorts_numbers() {
        fn keys_on_wire(keys: Vec<Value>) -> Vec<Value> {
            let dict = Value::Dict(keys.into_iter().map(|k| (k, Value::None)).collect());
            let mut out = Encoded::new();
            MessageEncoder::new(vocab()).answer(1, &dict, &mut NoExports, &mut out);
            match decode(&out.into_bytes()).unwrap().pop() {
                Some(Inbound::Answer {
                    value: Value::Dict(pairs),
                    ..
                }) => pairs.into_iter().map(|(k, _)| k).collect(),
                other => panic!("{other:?}"),
            }
        }
        let f = Value::Float;
        let i = |v: i128| Value::int(v);
        let tuple = |v: Vec<Value>| Value::Tuple(v);
        // Each case: keys in insertion order, then as Python's sorted() returns them.
        let cases: Vec<(Vec<Value>, Vec<Value>)> = vec![
            (vec![f(2.5), f(-1.0), f(1.5)], vec![f(-1.0), f(1.5), f(2.5)]),
            (
                vec![Value::Bool(true), Value::Bool(false)],
                vec![Value::Bool(false), Value::Bool(true)],
            ),
            (
                vec![i(3), f(2.5), Value::Bool(true)],
                vec![Value::Bool(true), f(2.5), i(3)],
            ),
            (
                vec![tuple(vec![i(1), f(2.5)]), tuple(vec![i(1), i(2)])],
                vec![tuple(vec![i(1), i(2)]), tuple(vec![i(1), f(2.5)])],
            ),
            (vec![i(1 << 70), f(1e20)], vec![f(1e20), i(1 << 70)]),
            (
                vec![
                    i(4),
                    f(3.5),
                    i(3),
                    f(-0.5),
                    i(-1),
                    f(f64::NEG_INFINITY),
                    f(f64::INFINITY),
                ],
                vec![
                    f(f64::NEG_INFINITY),
                    i(-1),
                    f(-0.5),
                    i(3),
                    f(3.5),
                    i(4),
                    f(f64::INFINITY),
                ],
            ),
            (
                vec![i((1 << 53) + 1), f(9007199254740992.0)],
                vec![f(9007199254740992.0), i((1 << 53) + 1)],
            ),
        ];
        for (given, sorted) in cases {
            assert_eq!(keys_on_wire(given.clone()), sorted, "{given:?}");
        }
        // The order stays total where Python's is not: NaN goes last, and keys of
        // kinds Python cannot compare keep a fixed order instead of upsetting the sort.
        assert_eq!(
            keys_on_wire(vec![f(f64::NAN), f(2.0), i(1), f(-0.5)]),
            vec![f(-0.5), i(1), f(2.0), f(f64::NAN)]
        );
        let mixed = vec![
            Value::bytes(&b"x"[..]),
            i(0),
            Value::Bool(true),
            Value::text("t"),
            f(0.5),
            Value::None,
        ];
        assert_eq!(
            keys_on_wire(mixed),
            vec![
                i(0),
                f(0.5),
                Value::Bool(true),
                Value::bytes(&b"x"[..]),
                Value::text("t"),
                Value::None,
            ]
        );
    }

    /// Long byte strings go out as the caller's buffers (no copy), and the message
    /// on the wire is byte for byte what the copying Banana encoder writes.
    #[test]
    fn long_strings_are_spliced_in_place() {
        use bytes::Buf;
        let big = Bytes::from(vec![7u8; SPLICE_MIN]);
        let short = Bytes::from(vec![8u8; SPLICE_MIN - 1]);
        let big2 = Bytes::from(vec![9u8; 3 * SPLICE_MIN + 5]);
        let args = [
            Value::Bytes(big.clone()),
            Value::Bytes(short.clone()),
            Value::Bytes(big2.clone()),
        ];
        let mut out = Encoded::new();
        MessageEncoder::new(vocab()).call(7, 3, "write", &args, &[], &mut NoExports, &mut out);

        let mut expected = BytesMut::new();
        let mut e = Encoder::new(vocab());
        let c = e.open(&mut expected);
        e.string(b"call", &mut expected);
        e.int_i64(7, &mut expected);
        e.int_i64(3, &mut expected);
        e.string(b"write", &mut expected);
        let a = e.open(&mut expected);
        e.string(b"arguments", &mut expected);
        e.int_i64(3, &mut expected);
        for b in [&big, &short, &big2] {
            e.string(b, &mut expected);
        }
        e.close(a, &mut expected);
        e.close(c, &mut expected);

        assert_eq!(out.len(), expected.len());
        let buf = out.into_buf();
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let n = buf.chunks_vectored(&mut slices);
        let starts: Vec<*const u8> = slices[..n].iter().map(|s| s.as_ptr()).collect();
        assert!(starts.contains(&big.as_ptr()) && starts.contains(&big2.as_ptr()));
        assert!(
            !starts.contains(&short.as_ptr()),
            "short strings are copied"
        );
        assert_eq!(n, 5, "head, body, middle, body, tail");
        let mut wire = BytesMut::new();
        wire.put(buf);
        assert_eq!(wire, expected);
    }

    #[test]
    fn failure_roundtrip() {
        let f = Failure::new(
            "allmydata.interfaces.DataTooLargeError",
            "(100, 100, 10)",
            &["allmydata.interfaces.DataTooLargeError"],
        );
        let mut enc = MessageEncoder::new(vocab());
        let mut out = Encoded::new();
        enc.error(6, &f, &mut out);
        match &decode(&out.into_bytes()).unwrap()[..] {
            [Inbound::Error { reqid: 6, failure }] => {
                assert_eq!(failure, &f);
                assert!(failure.check("builtins.Exception"));
            }
            other => panic!("{other:?}"),
        }
    }
}
