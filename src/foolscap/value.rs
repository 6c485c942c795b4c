//! The values Foolscap carries, as a tree. Sans-IO.
//!
//! Bytes and text are distinct (`bytes` is a bare STRING, `str` an `unicode`
//! sequence); Python treats `b"x"` and `"x"` as different dict keys, and Tahoe's
//! messages use each in specific places.
//!
//! References come in two forms. On the wire they are `my-reference` and
//! `your-reference` sequences ([`Value::MyRef`], [`Value::YourRef`]): all that a
//! [`Value<Wire>`] (the default) holds, and what the codec in [`super::message`]
//! reads and writes. Above the codec, the broker resolves them into objects of a
//! live connection ([`Value::Remote`], [`Value::Local`]), of the types its own
//! [`Refs`] instantiation names; values of that instantiation are the ones the
//! application sees.

use std::convert::Infallible;
use std::fmt;

use bytes::Bytes;
use num_bigint::BigInt;

/// What a value's [`Value::Remote`] and [`Value::Local`] references hold.
pub trait Refs: 'static {
    /// A reference to one of the peer's objects; sent back as a `your-reference`.
    type Remote: Clone;
    /// One of our objects; sent as a `my-reference`.
    type Local: Clone;
    /// The `Debug` form of each kind of reference.
    fn fmt_remote(r: &Self::Remote, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn fmt_local(o: &Self::Local, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Whether two references are to the same object (values compare references by
    /// identity).
    fn same_remote(a: &Self::Remote, b: &Self::Remote) -> bool;
    fn same_local(a: &Self::Local, b: &Self::Local) -> bool;
}

/// Values as on the wire: references only as `my-reference`/`your-reference`,
/// no live objects.
#[derive(Clone, Copy, Debug)]
pub enum Wire {}

impl Refs for Wire {
    type Remote = Infallible;
    type Local = Infallible;

    fn fmt_remote(r: &Infallible, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *r {}
    }

    fn fmt_local(o: &Infallible, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *o {}
    }

    fn same_remote(a: &Infallible, _: &Infallible) -> bool {
        match *a {}
    }

    fn same_local(a: &Infallible, _: &Infallible) -> bool {
        match *a {}
    }
}

/// A Foolscap value; `R` says what its live references hold ([`Wire`]: none).
#[derive(Clone)]
pub enum Value<R: Refs = Wire> {
    None,
    Bool(bool),
    Int(BigInt),
    Float(f64),
    Bytes(Bytes),
    Text(String),
    List(Vec<Value<R>>),
    Tuple(Vec<Value<R>>),
    Set(Vec<Value<R>>),
    FrozenSet(Vec<Value<R>>),
    /// Keys in the order received; the encoder sorts them as foolscap does.
    Dict(Vec<(Value<R>, Value<R>)>),
    Decimal(String),
    /// `copyable`: a class name and its state (attribute name, value), e.g. a Failure.
    Copyable {
        name: String,
        state: Vec<(Bytes, Value<R>)>,
    },
    /// As received: a `my-reference` (an object living on the sender's side).
    MyRef {
        clid: i64,
        iface: Option<String>,
        url: Option<String>,
    },
    /// As received: a `your-reference` (an object living on our side).
    YourRef(i64),
    /// Resolved by the broker: a reference to the peer's object; sent back to the
    /// peer as `your-reference`.
    Remote(R::Remote),
    /// A local object to be sent as a `my-reference`; resolved from `YourRef` on
    /// receipt.
    Local(R::Local),
}

impl<R: Refs> Value<R> {
    pub fn int(v: impl Into<BigInt>) -> Value<R> {
        Value::Int(v.into())
    }

    pub fn bytes(b: impl Into<Bytes>) -> Value<R> {
        Value::Bytes(b.into())
    }

    pub fn text(s: impl Into<String>) -> Value<R> {
        Value::Text(s.into())
    }

    /// A dict with byte-string keys, the shape of Tahoe's version dicts.
    pub fn bytes_dict<'a>(items: impl IntoIterator<Item = (&'a str, Value<R>)>) -> Value<R> {
        Value::Dict(
            items
                .into_iter()
                .map(|(k, v)| (Value::Bytes(Bytes::copy_from_slice(k.as_bytes())), v))
                .collect(),
        )
    }

    /// A short name of the value's type, for violation messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Text(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Dict(_) => "dict",
            Value::Decimal(_) => "Decimal",
            Value::Copyable { .. } => "copyable",
            Value::MyRef { .. } | Value::Remote(_) => "RemoteReference",
            Value::YourRef(_) | Value::Local(_) => "Referenceable",
        }
    }

    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_i128(&self) -> Option<i128> {
        match self {
            Value::Int(i) => i128::try_from(i).ok(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }

    /// Items of any sequence-like value (list, tuple, set, frozenset).
    pub fn as_seq(&self) -> Option<&[Value<R>]> {
        match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) | Value::FrozenSet(v) => Some(v),
            _ => None,
        }
    }

    /// Look a byte-string key up in a dict.
    pub fn get(&self, key: &[u8]) -> Option<&Value<R>> {
        match self {
            Value::Dict(items) => items.iter().find_map(|(k, v)| match k {
                Value::Bytes(b) if b.as_ref() == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }
}

impl Value<Wire> {
    /// This value as one of any instantiation (it holds no live references), its
    /// wire references kept as they are.
    pub fn into_refs<R: Refs>(self) -> Value<R> {
        fn all<R: Refs>(v: Vec<Value>) -> Vec<Value<R>> {
            v.into_iter().map(Value::into_refs).collect()
        }
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Bytes(b) => Value::Bytes(b),
            Value::Text(s) => Value::Text(s),
            Value::List(v) => Value::List(all(v)),
            Value::Tuple(v) => Value::Tuple(all(v)),
            Value::Set(v) => Value::Set(all(v)),
            Value::FrozenSet(v) => Value::FrozenSet(all(v)),
            Value::Dict(items) => Value::Dict(
                items
                    .into_iter()
                    .map(|(k, v)| (k.into_refs(), v.into_refs()))
                    .collect(),
            ),
            Value::Decimal(s) => Value::Decimal(s),
            Value::Copyable { name, state } => Value::Copyable {
                name,
                state: state.into_iter().map(|(k, v)| (k, v.into_refs())).collect(),
            },
            Value::MyRef { clid, iface, url } => Value::MyRef { clid, iface, url },
            Value::YourRef(clid) => Value::YourRef(clid),
            Value::Remote(r) => match r {},
            Value::Local(o) => match o {},
        }
    }
}

impl<R: Refs> fmt::Debug for Value<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bytes(b) if b.len() > 64 => write!(f, "b<{} bytes>", b.len()),
            Value::Bytes(b) => write!(f, "b{:?}", String::from_utf8_lossy(b)),
            Value::Text(s) => write!(f, "{s:?}"),
            Value::List(v) => f.debug_list().entries(v).finish(),
            Value::Tuple(v) => {
                f.write_str("(")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x:?}")?;
                }
                f.write_str(")")
            }
            Value::Set(v) => f.debug_set().entries(v).finish(),
            Value::FrozenSet(v) => write!(f, "frozenset({v:?})"),
            Value::Dict(items) => f
                .debug_map()
                .entries(items.iter().map(|(k, v)| (k, v)))
                .finish(),
            Value::Decimal(s) => write!(f, "Decimal({s:?})"),
            Value::Copyable { name, state } => write!(f, "<copyable {name} {} attrs>", state.len()),
            Value::MyRef { clid, iface, .. } => write!(f, "<my-reference {clid} {iface:?}>"),
            Value::YourRef(clid) => write!(f, "<your-reference {clid}>"),
            Value::Remote(r) => R::fmt_remote(r, f),
            Value::Local(o) => R::fmt_local(o, f),
        }
    }
}

/// Structural equality (references compare by identity).
impl<R: Refs> PartialEq for Value<R> {
    fn eq(&self, other: &Value<R>) -> bool {
        use Value::*;
        match (self, other) {
            (None, None) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Bytes(a), Bytes(b)) => a == b,
            (Text(a), Text(b)) => a == b,
            (List(a), List(b))
            | (Tuple(a), Tuple(b))
            | (Set(a), Set(b))
            | (FrozenSet(a), FrozenSet(b)) => a == b,
            (Dict(a), Dict(b)) => a == b,
            (Decimal(a), Decimal(b)) => a == b,
            (Copyable { name: a, state: sa }, Copyable { name: b, state: sb }) => {
                a == b && sa == sb
            }
            (
                MyRef {
                    clid: a,
                    iface: ia,
                    url: ua,
                },
                MyRef {
                    clid: b,
                    iface: ib,
                    url: ub,
                },
            ) => a == b && ia == ib && ua == ub,
            (YourRef(a), YourRef(b)) => a == b,
            (Remote(a), Remote(b)) => R::same_remote(a, b),
            (Local(a), Local(b)) => R::same_local(a, b),
            _ => false,
        }
    }
}

/// A failure as foolscap copies it (`twisted.python.failure.Failure` copyable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Fully qualified exception class, e.g. `allmydata.interfaces.DataTooLargeError`.
    pub kind: String,
    /// `str(exception)`.
    pub value: String,
    pub traceback: String,
    /// The class's MRO as qualified names; Python peers match error types on these.
    pub parents: Vec<String>,
}

/// Foolscap's receive-side caps on Failure attributes; exceeding them makes the
/// *caller's* request fail with a local Violation, so we truncate before sending.
pub const FAILURE_VALUE_MAX: usize = 1000;
pub const FAILURE_TYPE_MAX: usize = 200;
pub const FAILURE_TRACEBACK_MAX: usize = 2000;

impl Failure {
    /// A failure of a Python exception class with the given MRO (most derived first,
    /// without `builtins.BaseException`/`builtins.object`, which are appended).
    pub fn new(kind: &str, value: impl Into<String>, mro: &[&str]) -> Failure {
        let mut parents: Vec<String> = std::iter::once(kind)
            .chain(mro.iter().copied())
            .map(String::from)
            .collect();
        for p in [
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ] {
            if !parents.iter().any(|x| x == p) {
                parents.push(p.to_string());
            }
        }
        Failure {
            kind: kind.to_string(),
            value: value.into(),
            traceback: "Traceback unavailable\n".to_string(),
            parents,
        }
    }

    /// `foolscap.tokens.Violation`: a schema or decoding violation.
    pub fn violation(msg: impl Into<String>) -> Failure {
        Failure::new(
            "foolscap.tokens.Violation",
            msg,
            &["foolscap.tokens.Violation"],
        )
    }

    pub fn to_value<R: Refs>(&self) -> Value<R> {
        fn trunc(s: &str, max: usize) -> Bytes {
            let b = s.as_bytes();
            Bytes::copy_from_slice(&b[..b.len().min(max)])
        }
        Value::Copyable {
            name: "twisted.python.failure.Failure".to_string(),
            state: vec![
                (
                    Bytes::from_static(b"value"),
                    Value::Bytes(trunc(&self.value, FAILURE_VALUE_MAX)),
                ),
                (
                    Bytes::from_static(b"type"),
                    Value::Bytes(trunc(&self.kind, FAILURE_TYPE_MAX)),
                ),
                (
                    Bytes::from_static(b"traceback"),
                    Value::Bytes(trunc(&self.traceback, FAILURE_TRACEBACK_MAX)),
                ),
                (
                    Bytes::from_static(b"parents"),
                    Value::List(
                        self.parents
                            .iter()
                            .map(|p| Value::Bytes(trunc(p, FAILURE_TYPE_MAX)))
                            .collect(),
                    ),
                ),
            ],
        }
    }

    /// Read a Failure copyable; `None` if the value is not one.
    pub fn from_value<R: Refs>(v: &Value<R>) -> Option<Failure> {
        let Value::Copyable { name, state } = v else {
            return None;
        };
        if name != "twisted.python.failure.Failure" {
            return None;
        }
        let text = |key: &[u8]| -> String {
            state
                .iter()
                .find(|(k, _)| k.as_ref() == key)
                .and_then(|(_, v)| match v {
                    Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    Value::Text(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let parents = state
            .iter()
            .find(|(k, _)| k.as_ref() == b"parents")
            .and_then(|(_, v)| v.as_seq())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| {
                        p.as_bytes()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Failure {
            kind: text(b"type"),
            value: text(b"value"),
            traceback: text(b"traceback"),
            parents,
        })
    }

    /// Does this failure's class derive from `qualname` (as Python's `Failure.check`)?
    pub fn check(&self, qualname: &str) -> bool {
        self.kind == qualname || self.parents.iter().any(|p| p == qualname)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.value)
    }
}
