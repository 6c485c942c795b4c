//! Codec tests over byte transcripts of real foolscap 24.9 sessions.
//!
//! `fixtures/` holds, for each recorded scenario, both directions of one TCP
//! connection as plaintext (`NAME.c2s.bin`, `NAME.s2c.bin`: the upgrade exchange,
//! then the decrypted TLS stream) and a sidecar `NAME.json` written by
//! `fixtures/capture_foolscap.py` with the phase boundaries, the TubIDs, who was the
//! negotiation master, and the Python-level list of calls and their outcomes.
//!
//! For every transcript these tests check that:
//! - the plaintext upgrade exchange parses with `negotiate` and is byte-identical to
//!   what we would write;
//! - the HELLO and DECISION blocks parse and re-encode byte-identically, and the side
//!   with the larger TubID is the one that sent the DECISION;
//! - each direction's Banana stream decodes into tokens with every byte consumed, and
//!   the tokens re-encode byte-identically through one `Encoder` (so the OPEN counter
//!   runs from 0 without gaps);
//! - the token stream decodes into PB messages with no error and nothing left over,
//!   identically when fed in random-sized chunks (down to single bytes);
//! - the decoded messages match the sidecar: every call (direction, reqID, clid,
//!   method, arguments) and its outcome (answer value, Failure, or no answer), every
//!   PING and its PONG;
//! - each message re-encodes byte-identically through one `MessageEncoder` per
//!   direction, whose OPEN counter stays continuous over the whole stream, except where
//!   the decoded form cannot reproduce foolscap's bytes. Those places are listed at
//!   [`Reencode`] and compared structurally instead;
//! - the client's Python-level values, in their own unsorted order, encode to the
//!   recorded bytes (dict keys and keyword arguments sorted as foolscap sorts them).
//!
//! Pure tests: no network and no Python at test time.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use num_bigint::BigInt;
use serde_json::Value as Json;

use swampgate::foolscap::banana::{DecodeLimits, Encoder, Token, TokenDecoder, VocabTable};
use swampgate::foolscap::message::{
    Encoded, Inbound, MessageDecoder, MessageEncoder, MessageLimits, NoExports,
};
use swampgate::foolscap::negotiate::{
    block_end, check_upgrade_response, parse_block, parse_upgrade_request, upgrade_request,
    Decision, Hello, UPGRADE_RESPONSE,
};
use swampgate::foolscap::value::{Failure, Value};

// ---------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------

/// The scenarios the capture script records; every one must be present.
const EXPECTED: &[&str] = &["storage", "storage-client-master", "types"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Dir {
    C2s,
    S2c,
}

impl Dir {
    fn key(self) -> &'static str {
        match self {
            Dir::C2s => "c2s",
            Dir::S2c => "s2c",
        }
    }
    fn other(self) -> Dir {
        match self {
            Dir::C2s => Dir::S2c,
            Dir::S2c => Dir::C2s,
        }
    }
    fn parse(s: &str) -> Dir {
        match s {
            "c2s" => Dir::C2s,
            "s2c" => Dir::S2c,
            other => panic!("bad direction {other:?}"),
        }
    }
}

const DIRS: [Dir; 2] = [Dir::C2s, Dir::S2c];

struct Fixture {
    name: String,
    meta: Json,
    c2s: Vec<u8>,
    s2c: Vec<u8>,
}

impl Fixture {
    fn bytes(&self, d: Dir) -> &[u8] {
        match d {
            Dir::C2s => &self.c2s,
            Dir::S2c => &self.s2c,
        }
    }

    fn offset(&self, d: Dir, key: &str) -> Option<usize> {
        self.meta[d.key()][key].as_u64().map(|v| v as usize)
    }

    fn banana(&self, d: Dir) -> &[u8] {
        &self.bytes(d)[self.offset(d, "banana_start").expect("banana_start")..]
    }

    fn str(&self, key: &str) -> &str {
        self.meta[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: sidecar lacks {key}", self.name))
    }

    fn vocab(&self) -> VocabTable {
        let index = self.meta["negotiated"]["initial-vocab-table-index"]
            .as_u64()
            .expect("negotiated vocab index");
        VocabTable::by_index(index as u32).expect("a known vocab table")
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every session transcript: a `NAME.json` sidecar with its `NAME.c2s.bin` (other
/// JSON files in fixtures/, such as captured announcements, are not transcripts).
fn load_all() -> Vec<Fixture> {
    let dir = fixture_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("fixtures directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .filter(|name| dir.join(format!("{name}.c2s.bin")).exists())
        .collect();
    names.sort();
    for want in EXPECTED {
        assert!(names.iter().any(|n| n == want), "fixture {want} missing");
    }
    names
        .into_iter()
        .map(|name| {
            let read = |suffix: &str| {
                fs::read(dir.join(format!("{name}.{suffix}")))
                    .unwrap_or_else(|e| panic!("{name}.{suffix}: {e}"))
            };
            let meta: Json = serde_json::from_slice(&read("json")).expect("sidecar JSON");
            let f = Fixture {
                c2s: read("c2s.bin"),
                s2c: read("s2c.bin"),
                name,
                meta,
            };
            for d in DIRS {
                assert_eq!(
                    f.offset(d, "length"),
                    Some(f.bytes(d).len()),
                    "{} {}: length",
                    f.name,
                    d.key()
                );
            }
            f
        })
        .collect()
}

/// A small deterministic generator for chunk sizes (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Chunkings of a stream: one piece, single bytes, and several random ones.
fn chunkings(len: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![len], vec![1; len]];
    for seed in [1u64, 7, 42, 1234, 0xdead_beef] {
        let mut rng = Rng(seed);
        let mut sizes = Vec::new();
        let mut left = len;
        let max = [3u64, 17, 64, 300, 2000][(seed % 5) as usize];
        while left > 0 {
            let n = (1 + rng.below(max) as usize).min(left);
            sizes.push(n);
            left -= n;
        }
        out.push(sizes);
    }
    out
}

// ---------------------------------------------------------------------------------
// Negotiation
// ---------------------------------------------------------------------------------

#[test]
fn both_negotiation_roles_are_covered() {
    let all = load_all();
    for role in ["client", "server"] {
        assert!(
            all.iter().any(|f| f.str("master") == role),
            "no fixture where the {role} is the master"
        );
    }
}

#[test]
fn plaintext_upgrade_parses_and_matches_our_bytes() {
    for f in load_all() {
        let server_tubid = f.str("server_tubid");
        // Client request: the whole plaintext phase is one block.
        let pe = f.offset(Dir::C2s, "plaintext_end").unwrap();
        assert_eq!(block_end(&f.c2s).unwrap(), Some(pe), "{}", f.name);
        let req = &f.c2s[..pe];
        assert_eq!(
            parse_upgrade_request(req).unwrap(),
            server_tubid,
            "{}",
            f.name
        );
        assert_eq!(
            req,
            upgrade_request(server_tubid, "127.0.0.1"),
            "{}",
            f.name
        );
        // Server response.
        let pe = f.offset(Dir::S2c, "plaintext_end").unwrap();
        assert_eq!(block_end(&f.s2c).unwrap(), Some(pe), "{}", f.name);
        check_upgrade_response(&f.s2c[..pe]).unwrap();
        assert_eq!(&f.s2c[..pe], UPGRADE_RESPONSE, "{}", f.name);
    }
}

#[test]
fn hello_and_decision_blocks_parse_and_reencode_identically() {
    for f in load_all() {
        let client_tubid = f.str("client_tubid");
        let server_tubid = f.str("server_tubid");
        let master = f.str("master");
        // Master selection: the larger TubID, compared as byte strings.
        let expected_master = if client_tubid > server_tubid {
            "client"
        } else {
            "server"
        };
        assert_eq!(master, expected_master, "{}", f.name);

        let mut hellos = HashMap::new();
        for d in DIRS {
            let data = f.bytes(d);
            let pe = f.offset(d, "plaintext_end").unwrap();
            let hello_len = block_end(&data[pe..]).unwrap().expect("a HELLO block");
            let hello_end = pe + hello_len;
            assert_eq!(Some(hello_end), f.offset(d, "hello_end"), "{}", f.name);
            let block = &data[pe..hello_end];
            let hello = Hello::parse(&parse_block(block).unwrap()).unwrap();
            assert_eq!(hello.encode(), block, "{} {}: HELLO", f.name, d.key());
            assert_eq!(hello.banana_range, (3, 3));
            assert_eq!(hello.vocab_range, (0, 1));
            assert_eq!(hello.incarnation.len(), 16);
            match d {
                Dir::C2s => {
                    assert_eq!(hello.tubid, client_tubid);
                    // The client's first connection to this TubID.
                    assert_eq!(hello.last_connection, Some(None));
                }
                Dir::S2c => {
                    assert_eq!(hello.tubid, server_tubid);
                    assert_eq!(hello.last_connection, None);
                }
            }
            hellos.insert(d, (hello, hello_end));
        }

        for d in DIRS {
            let (hello, hello_end) = &hellos[&d];
            let sender_is_master = (d == Dir::C2s) == (master == "client");
            let data = f.bytes(d);
            let banana_start = f.offset(d, "banana_start").unwrap();
            if !sender_is_master {
                // The slave speaks Banana right after its HELLO.
                assert_eq!(f.offset(d, "decision_end"), None, "{}", f.name);
                assert_eq!(banana_start, *hello_end, "{}", f.name);
                continue;
            }
            let len = block_end(&data[*hello_end..])
                .unwrap()
                .expect("a DECISION block");
            let decision_end = hello_end + len;
            assert_eq!(Some(decision_end), f.offset(d, "decision_end"));
            assert_eq!(banana_start, decision_end, "{}", f.name);
            let block = &data[*hello_end..decision_end];
            let decision = Decision::parse(&parse_block(block).unwrap()).unwrap();
            assert_eq!(decision.encode(), block, "{}: DECISION", f.name);
            assert_eq!(
                u64::from(decision.params.banana_version),
                f.meta["negotiated"]["banana-decision-version"]
                    .as_u64()
                    .unwrap()
            );
            assert_eq!(
                u64::from(decision.params.vocab_index),
                f.meta["negotiated"]["initial-vocab-table-index"]
                    .as_u64()
                    .unwrap()
            );
            // current-connection names the master's own incarnation; each scenario
            // is the first connection between its two TubIDs, so seqnum 1.
            assert_eq!(decision.current_connection.0, hello.incarnation);
            assert_eq!(decision.current_connection.1, 1);
        }
    }
}

// ---------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------

struct Tok {
    token: Token,
    span: Range<usize>,
}

fn tokenize(stream: &[u8]) -> Vec<Tok> {
    let mut dec = TokenDecoder::new(DecodeLimits::default());
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    loop {
        let start = stream.len() - buf.len();
        match dec.next_token(&mut buf) {
            Ok(Some(token)) => {
                let end = stream.len() - buf.len();
                out.push(Tok {
                    token,
                    span: start..end,
                })
            }
            Ok(None) => break,
            Err(e) => panic!("token error at offset {start}: {e}"),
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    out
}

fn tokenize_chunked(stream: &[u8], sizes: &[usize]) -> Vec<Token> {
    let mut dec = TokenDecoder::new(DecodeLimits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    for &n in sizes {
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        while let Some(t) = dec.next_token(&mut buf).expect("no token error") {
            out.push(t);
        }
    }
    assert_eq!(pos, stream.len());
    assert!(buf.is_empty(), "a partial token is left over");
    out
}

/// Token equality with floats compared by their bits (NaN is in the fixtures).
fn same_token(a: &Token, b: &Token) -> bool {
    match (a, b) {
        (Token::Float(x), Token::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn encode_token(enc: &mut Encoder, vocab: &VocabTable, t: &Token, out: &mut BytesMut) {
    match t {
        Token::Open(n) => {
            assert_eq!(*n, enc.open_count(), "OPEN numbers run from 0 without gaps");
            enc.open(out);
        }
        Token::Close(n) => enc.close(*n, out),
        Token::Abort(n) => enc.abort(*n, out),
        Token::Int(i) => enc.int(i, out),
        // `Encoder::string` writes a VOCAB token for any table word, so a STRING
        // token only survives if foolscap, too, declined to abbreviate it.
        Token::String(s) => enc.string(s, out),
        Token::Vocab(i) => enc.string(&vocab.word(*i).expect("known vocab index"), out),
        Token::Float(f) => enc.float(*f, out),
        Token::Error(m) => enc.error(m, out),
        Token::Ping(n) => enc.ping(*n, out),
        Token::Pong(n) => enc.pong(*n, out),
        Token::SkippedString(n) => panic!("a {n}-byte STRING exceeded the decode limit"),
    }
}

#[test]
fn token_stream_round_trips_byte_identically() {
    for f in load_all() {
        let vocab = f.vocab();
        for d in DIRS {
            let stream = f.banana(d);
            let toks = tokenize(stream);
            assert!(!toks.is_empty());
            let mut enc = Encoder::new(vocab);
            let mut out = BytesMut::new();
            for t in &toks {
                let before = out.len();
                encode_token(&mut enc, &vocab, &t.token, &mut out);
                assert_eq!(
                    &out[before..],
                    &stream[t.span.clone()],
                    "{} {}: token {:?} at {:?}",
                    f.name,
                    d.key(),
                    t.token,
                    t.span
                );
            }
            assert_eq!(&out[..], stream, "{} {}", f.name, d.key());
        }
    }
}

#[test]
fn token_stream_decodes_the_same_in_any_chunking() {
    for f in load_all() {
        for d in DIRS {
            let stream = f.banana(d);
            let whole: Vec<Token> = tokenize(stream).into_iter().map(|t| t.token).collect();
            for sizes in chunkings(stream.len()) {
                let chunked = tokenize_chunked(stream, &sizes);
                assert_eq!(chunked.len(), whole.len(), "{} {}", f.name, d.key());
                for (a, b) in chunked.iter().zip(&whole) {
                    assert!(same_token(a, b), "{} {}: {a:?} vs {b:?}", f.name, d.key());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------

/// One decoded top-level item and the tokens it was made of.
struct Msg {
    inbound: Inbound,
    /// Indexes into the token list. A PING or PONG that arrives in the middle of a
    /// message is its own item and is not among the message's tokens.
    toks: Vec<usize>,
}

fn decoder(vocab: &VocabTable) -> MessageDecoder {
    MessageDecoder::new(*vocab, MessageLimits::default())
}

fn segment(vocab: &VocabTable, toks: &[Tok]) -> Vec<Msg> {
    let mut md = decoder(vocab);
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let out_of_band = matches!(t.token, Token::Ping(_) | Token::Pong(_) | Token::Error(_));
        if !out_of_band {
            pending.push(i);
        }
        match md.feed(t.token.clone()) {
            Ok(Some(inbound)) => {
                let toks = if out_of_band {
                    vec![i]
                } else {
                    std::mem::take(&mut pending)
                };
                out.push(Msg { inbound, toks });
            }
            Ok(None) => assert!(!out_of_band),
            Err(e) => panic!("protocol error at token {i} ({:?}): {e}", t.token),
        }
    }
    assert!(pending.is_empty(), "the stream ends inside a message");
    out
}

fn decode_chunked(vocab: &VocabTable, stream: &[u8], sizes: &[usize]) -> Vec<Inbound> {
    let mut td = TokenDecoder::new(DecodeLimits::default());
    let mut md = decoder(vocab);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    for &n in sizes {
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        while let Some(t) = td.next_token(&mut buf).expect("no token error") {
            if let Some(m) = md.feed(t).expect("no protocol error") {
                out.push(m);
            }
        }
    }
    assert!(buf.is_empty());
    out
}

fn same_inbound(a: &Inbound, b: &Inbound) -> bool {
    use Inbound::*;
    match (a, b) {
        (
            Call {
                reqid: r1,
                clid: c1,
                method: m1,
                args: a1,
                kwargs: k1,
            },
            Call {
                reqid: r2,
                clid: c2,
                method: m2,
                args: a2,
                kwargs: k2,
            },
        ) => r1 == r2 && c1 == c2 && m1 == m2 && a1 == a2 && k1 == k2,
        (
            Answer {
                reqid: r1,
                value: v1,
            },
            Answer {
                reqid: r2,
                value: v2,
            },
        ) => r1 == r2 && v1 == v2,
        (
            Error {
                reqid: r1,
                failure: f1,
            },
            Error {
                reqid: r2,
                failure: f2,
            },
        ) => r1 == r2 && f1 == f2,
        (
            CallViolation {
                reqid: r1,
                violation: v1,
            },
            CallViolation {
                reqid: r2,
                violation: v2,
            },
        )
        | (
            AnswerViolation {
                reqid: r1,
                violation: v1,
            },
            AnswerViolation {
                reqid: r2,
                violation: v2,
            },
        ) => r1 == r2 && v1 == v2,
        (Dropped(x), Dropped(y)) | (PeerError(x), PeerError(y)) => x == y,
        (Ping(x), Ping(y)) | (Pong(x), Pong(y)) => x == y,
        _ => false,
    }
}

struct Decoded {
    toks: Vec<Tok>,
    msgs: Vec<Msg>,
}

fn decode_direction(f: &Fixture, d: Dir) -> Decoded {
    let toks = tokenize(f.banana(d));
    let msgs = segment(&f.vocab(), &toks);
    Decoded { toks, msgs }
}

#[test]
fn messages_decode_exactly_in_any_chunking() {
    for f in load_all() {
        let vocab = f.vocab();
        for d in DIRS {
            let stream = f.banana(d);
            let dec = decode_direction(&f, d);
            // Every token belongs to exactly one item, in order: nothing is skipped.
            let mut covered: Vec<usize> = dec.msgs.iter().flat_map(|m| m.toks.clone()).collect();
            covered.sort_unstable();
            assert_eq!(covered, (0..dec.toks.len()).collect::<Vec<_>>());
            for m in &dec.msgs {
                assert!(
                    !matches!(m.inbound, Inbound::PeerError(_)),
                    "{} {}: ERROR token",
                    f.name,
                    d.key()
                );
            }
            for sizes in chunkings(stream.len()) {
                let chunked = decode_chunked(&vocab, stream, &sizes);
                assert_eq!(chunked.len(), dec.msgs.len(), "{} {}", f.name, d.key());
                for (a, b) in chunked.iter().zip(&dec.msgs) {
                    assert!(
                        same_inbound(a, &b.inbound),
                        "{} {}: {a:?} vs {:?}",
                        f.name,
                        d.key(),
                        b.inbound
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The sidecar: Python-level calls and outcomes
// ---------------------------------------------------------------------------------

/// The `my-reference`s of one direction, with the interface name and URL each carried
/// when it was first sent (later sends carry the clid only).
#[derive(Default)]
struct RefBook {
    first: BTreeMap<i64, Vec<IfaceAndUrl>>,
}

/// What a first-time `my-reference` carries after its clid.
type IfaceAndUrl = (Option<String>, Option<String>);

impl RefBook {
    fn collect(&mut self, v: &Value) {
        match v {
            Value::MyRef { clid, iface, url } if iface.is_some() => self
                .first
                .entry(*clid)
                .or_default()
                .push((iface.clone(), url.clone())),
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => items.iter().for_each(|x| self.collect(x)),
            Value::Dict(pairs) => pairs.iter().for_each(|(k, x)| {
                self.collect(k);
                self.collect(x)
            }),
            Value::Copyable { state, .. } => state.iter().for_each(|(_, x)| self.collect(x)),
            _ => {}
        }
    }
}

struct Ctx<'a> {
    /// Direction of the message holding the value.
    dir: Dir,
    refs: &'a HashMap<Dir, RefBook>,
}

fn tag(j: &Json) -> (&str, &Json) {
    let obj = j.as_object().expect("tagged value");
    assert_eq!(obj.len(), 1, "one tag: {j}");
    let (k, v) = obj.iter().next().unwrap();
    (k.as_str(), v)
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a byte"))
        .collect()
}

/// Does the Python-level value `j` (as recorded by the client) describe the decoded
/// value `v`? Sets and dicts compare without order (Python's iteration order is not
/// the wire order: foolscap sorts dict keys, and sets go out in hash order).
fn matches(j: &Json, v: &Value, cx: &Ctx) -> Result<(), String> {
    let fail = || Err(format!("{j} does not describe {v:?}"));
    let (t, x) = tag(j);
    let ok = match (t, v) {
        ("none", Value::None) => true,
        ("bool", Value::Bool(b)) => x.as_bool() == Some(*b),
        ("int", Value::Int(i)) => x.as_str().unwrap().parse::<BigInt>().unwrap() == *i,
        ("float", Value::Float(f)) => {
            u64::from_str_radix(x.as_str().unwrap(), 16).unwrap() == f.to_bits()
        }
        ("bytes", Value::Bytes(b)) => latin1(x.as_str().unwrap()) == b.as_ref(),
        ("text", Value::Text(s)) => x.as_str() == Some(s.as_str()),
        ("decimal", Value::Decimal(s)) => x.as_str() == Some(s.as_str()),
        ("list", Value::List(items)) | ("tuple", Value::Tuple(items)) => {
            let js = x.as_array().unwrap();
            if js.len() != items.len() {
                return fail();
            }
            for (jj, vv) in js.iter().zip(items) {
                matches(jj, vv, cx)?;
            }
            true
        }
        ("set", Value::Set(items)) | ("frozenset", Value::FrozenSet(items)) => {
            let js = x.as_array().unwrap();
            js.len() == items.len() && unordered(js, items, cx, matches)
        }
        ("dict", Value::Dict(pairs)) => {
            let js = x.as_array().unwrap();
            js.len() == pairs.len()
                && unordered(js, pairs, cx, |jj, (k, vv), cx| {
                    let kv = jj.as_array().unwrap();
                    matches(&kv[0], k, cx)?;
                    matches(&kv[1], vv, cx)
                })
        }
        // The client's own object: it travels c2s as my-reference, s2c as
        // your-reference. The peer's object: the other way round.
        ("local", _) | ("remote", _) => {
            let mine = (t == "local") == (cx.dir == Dir::C2s);
            let clid = x["clid"].as_i64().unwrap();
            match v {
                Value::MyRef {
                    clid: c,
                    iface,
                    url,
                } if mine && *c == clid => {
                    let want = (
                        Some(x["iface"].as_str().unwrap_or("").to_string()),
                        x["url"].as_str().map(str::to_string),
                    );
                    match iface {
                        // First send: the interface name and URL travel along.
                        Some(_) => (iface.clone(), url.clone()) == want,
                        // Later sends: the clid only; an earlier send carried them.
                        None => {
                            url.is_none()
                                && cx.refs[&cx.dir]
                                    .first
                                    .get(&clid)
                                    .is_some_and(|seen| seen.contains(&want))
                        }
                    }
                }
                Value::YourRef(c) if !mine => *c == clid,
                _ => false,
            }
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        fail()
    }
}

/// Match every item of `js` with a distinct item of `vs`.
fn unordered<V>(
    js: &[Json],
    vs: &[V],
    cx: &Ctx,
    m: impl Fn(&Json, &V, &Ctx) -> Result<(), String>,
) -> bool {
    let mut used = vec![false; vs.len()];
    for jj in js {
        let Some(i) = (0..vs.len()).find(|&i| !used[i] && m(jj, &vs[i], cx).is_ok()) else {
            return false;
        };
        used[i] = true;
    }
    true
}

/// Does the recorded value contain a tag (at any depth)?
fn contains_tag(j: &Json, wanted: &str) -> bool {
    match j {
        Json::Object(o) => o
            .iter()
            .any(|(k, v)| k == wanted || contains_tag(v, wanted)),
        Json::Array(a) => a.iter().any(|x| contains_tag(x, wanted)),
        _ => false,
    }
}

fn reqid_of_answer(i: &Inbound) -> Option<u64> {
    match i {
        Inbound::Answer { reqid, .. }
        | Inbound::Error { reqid, .. }
        | Inbound::AnswerViolation { reqid, .. } => Some(*reqid),
        _ => None,
    }
}

fn check_failure(rec: &Json, failure: &Failure, what: &str) {
    assert_eq!(rec["type"].as_str().unwrap(), failure.kind, "{what}: type");
    assert_eq!(
        rec["value"].as_str().unwrap(),
        failure.value,
        "{what}: value"
    );
    let parents: Vec<&str> = rec["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(parents, failure.parents, "{what}: parents");
    if let Some(tb) = rec.get("traceback") {
        assert_eq!(tb.as_str().unwrap(), failure.traceback, "{what}: traceback");
    }
}

#[test]
fn decoded_messages_match_the_recorded_calls() {
    for f in load_all() {
        let decoded: HashMap<Dir, Decoded> =
            DIRS.iter().map(|&d| (d, decode_direction(&f, d))).collect();
        let mut refs: HashMap<Dir, RefBook> = HashMap::new();
        for d in DIRS {
            let book = refs.entry(d).or_default();
            for m in &decoded[&d].msgs {
                match &m.inbound {
                    Inbound::Call { args, kwargs, .. } => {
                        args.iter().for_each(|a| book.collect(a));
                        kwargs.iter().for_each(|(_, a)| book.collect(a));
                    }
                    Inbound::Answer { value, .. } => book.collect(value),
                    _ => {}
                }
            }
        }
        let calls = f.meta["calls"].as_array().expect("calls");
        assert!(!calls.is_empty());
        let mut answered: HashMap<Dir, Vec<u64>> = HashMap::new();

        for d in DIRS {
            // Calls appear on the wire in the order Python made them.
            let recs: Vec<&Json> = calls
                .iter()
                .filter(|c| Dir::parse(c["dir"].as_str().unwrap()) == d)
                .collect();
            let wire: Vec<&Inbound> = decoded[&d]
                .msgs
                .iter()
                .map(|m| &m.inbound)
                .filter(|i| {
                    matches!(
                        i,
                        Inbound::Call { .. } | Inbound::CallViolation { .. } | Inbound::Dropped(_)
                    )
                })
                .collect();
            assert_eq!(
                recs.len(),
                wire.len(),
                "{} {}: number of calls",
                f.name,
                d.key()
            );
            let cx = Ctx {
                dir: d,
                refs: &refs,
            };
            for (rec, inb) in recs.iter().zip(&wire) {
                let what = format!("{} {} {}", f.name, d.key(), rec);
                let reqid = rec["reqid"].as_u64().unwrap();
                let args = rec["args"].as_array().unwrap();
                let kwargs = rec["kwargs"].as_array().unwrap();
                match inb {
                    Inbound::Call {
                        reqid: r,
                        clid,
                        method,
                        args: a,
                        kwargs: k,
                    } => {
                        assert_eq!(*r, reqid, "{what}");
                        assert_eq!(*clid, rec["clid"].as_i64().unwrap(), "{what}");
                        assert_eq!(method, rec["method"].as_str().unwrap(), "{what}");
                        assert_eq!(a.len(), args.len(), "{what}");
                        for (j, v) in args.iter().zip(a) {
                            matches(j, v, &cx).unwrap_or_else(|e| panic!("{what}: {e}"));
                        }
                        assert_eq!(k.len(), kwargs.len(), "{what}");
                        for kv in kwargs {
                            let name = kv[0].as_str().unwrap();
                            let (_, v) = k
                                .iter()
                                .find(|(n, _)| n == name)
                                .unwrap_or_else(|| panic!("{what}: no kwarg {name}"));
                            matches(&kv[1], v, &cx).unwrap_or_else(|e| panic!("{what}: {e}"));
                        }
                    }
                    // A cyclic argument: our values are trees, so the call is refused
                    // as a violation (it would get an error answer from us).
                    Inbound::CallViolation {
                        reqid: r,
                        violation,
                    } => {
                        assert_eq!(*r, reqid, "{what}");
                        assert!(rec["args"].to_string().contains("\"cycle\""), "{what}");
                        assert!(violation.contains("cycles"), "{what}: {violation}");
                    }
                    // foolscap could not serialize an argument and sent ABORT: the
                    // receiver drops the call and sends no answer.
                    Inbound::Dropped(why) => {
                        assert!(contains_tag(&rec["args"], "unserializable"), "{what}");
                        assert!(why.contains("ABORT"), "{what}: {why}");
                        assert!(rec["outcome"].get("local-error").is_some(), "{what}");
                    }
                    other => unreachable!("{other:?}"),
                }

                // The outcome travels the other way.
                let back = d.other();
                let answer = decoded[&back]
                    .msgs
                    .iter()
                    .map(|m| &m.inbound)
                    .find(|i| reqid != 0 && reqid_of_answer(i) == Some(reqid));
                let outcome = &rec["outcome"];
                let acx = Ctx {
                    dir: back,
                    refs: &refs,
                };
                let (otag, oval) = tag(outcome);
                match (otag, answer) {
                    ("answer", Some(Inbound::Answer { value, .. })) => {
                        matches(oval, value, &acx).unwrap_or_else(|e| panic!("{what}: {e}"))
                    }
                    ("answer", Some(Inbound::AnswerViolation { violation, .. })) => {
                        assert!(contains_tag(oval, "cycle"), "{what}");
                        assert!(violation.contains("cycles"), "{what}: {violation}");
                    }
                    ("error", Some(Inbound::Error { failure, .. })) => {
                        check_failure(oval, failure, &what)
                    }
                    ("no-answer", None) => assert_eq!(reqid, 0, "{what}"),
                    ("local-error", None) => {}
                    (t, a) => panic!("{what}: outcome {t} but on the wire {a:?}"),
                }
                if answer.is_some() {
                    answered.entry(back).or_default().push(reqid);
                }
            }
        }
        // Nothing answered that the sidecar does not know of.
        for d in DIRS {
            let mut got: Vec<u64> = decoded[&d]
                .msgs
                .iter()
                .filter_map(|m| reqid_of_answer(&m.inbound))
                .collect();
            let mut want = answered.remove(&d).unwrap_or_default();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{} {}: answers", f.name, d.key());
        }

        // Every PING we sent is answered by a PONG with its number.
        let pings: Vec<u64> = f.meta["pings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["dir"], "c2s");
                p["number"].as_u64().unwrap()
            })
            .collect();
        let numbers = |d: Dir, ping: bool| -> Vec<u64> {
            decoded[&d]
                .msgs
                .iter()
                .filter_map(|m| match m.inbound {
                    Inbound::Ping(n) if ping => Some(n),
                    Inbound::Pong(n) if !ping => Some(n),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(numbers(Dir::C2s, true), pings, "{}", f.name);
        assert_eq!(numbers(Dir::S2c, false), pings, "{}", f.name);
        assert!(numbers(Dir::S2c, true).is_empty() && numbers(Dir::C2s, false).is_empty());
    }
}

// ---------------------------------------------------------------------------------
// Re-encoding messages
// ---------------------------------------------------------------------------------

/// How a decoded item is checked against foolscap's bytes.
///
/// Foolscap's encoding is deterministic for everything in these transcripts except
/// the places below, where the decoded form cannot reproduce the original bytes;
/// those items are compared structurally.
///
/// * `Shared`: the message contains a `reference` sequence (foolscap writes a
///   container that appears twice in one message once, then `OPEN reference
///   INT(open-count) CLOSE`). The decoder resolves references into copies, since
///   [`Value`] is a tree, and the encoder writes each copy in full. So the bytes
///   differ (and so can the number of OPENs). Check instead: encoding the decoded
///   value and decoding that again gives the same message, and the original does
///   hold a `reference` sequence.
/// * `Undecodable`: a message that did not decode to a value. Either a list that
///   contains itself (a cycle, which a tree cannot hold: the decoder reports a
///   violation), or a call that foolscap abandoned half-way with ABORT (the decoder
///   drops it, as foolscap does). There is nothing to re-encode. Its tokens still
///   round-trip byte for byte in `token_stream_round_trips_byte_identically`.
///
/// Other things that might look nondeterministic are reproduced exactly:
/// * the order of set items (hash order in Python, varying with the process for
///   text and bytes), because the decoder keeps the wire order;
/// * dict keys, which foolscap sorts and our encoder sorts the same way;
/// * the URLs and interface names in `my-reference` (random swissnums), because the
///   decoded `MyRef` keeps them and is written back as received;
/// * PING/PONG, whose position in the stream depends on timing, because each is a
///   separate item in stream order. A PING that arrived *inside* a message would be
///   reported before it. So each message is compared with its own tokens' bytes,
///   excluding any PING/PONG between them, and each PING/PONG with its own bytes.
#[derive(Debug, PartialEq)]
enum Reencode {
    Identical,
    Shared,
    Undecodable,
}

fn opentype_at(toks: &[Tok], i: usize, vocab: &VocabTable) -> Option<Vec<u8>> {
    match &toks.get(i + 1)?.token {
        Token::Vocab(n) => vocab.word(*n).map(|w| w.to_vec()),
        Token::String(s) => Some(s.to_vec()),
        _ => None,
    }
}

fn classify(m: &Msg, toks: &[Tok], vocab: &VocabTable) -> Reencode {
    match m.inbound {
        Inbound::Call { .. } | Inbound::Answer { .. } | Inbound::Error { .. } => {
            let shared = m.toks.iter().any(|&i| {
                matches!(toks[i].token, Token::Open(_))
                    && opentype_at(toks, i, vocab).as_deref() == Some(b"reference")
            });
            if shared {
                Reencode::Shared
            } else {
                Reencode::Identical
            }
        }
        Inbound::Ping(_) | Inbound::Pong(_) => Reencode::Identical,
        _ => Reencode::Undecodable,
    }
}

fn encode_item(enc: &mut MessageEncoder, inbound: &Inbound, out: &mut BytesMut) {
    let mut message = Encoded::new();
    match inbound {
        Inbound::Call {
            reqid,
            clid,
            method,
            args,
            kwargs,
        } => {
            let kw: Vec<(&str, Value)> = kwargs
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            enc.call(
                *reqid,
                *clid,
                method,
                args,
                &kw,
                &mut NoExports,
                &mut message,
            );
        }
        Inbound::Answer { reqid, value } => enc.answer(*reqid, value, &mut NoExports, &mut message),
        Inbound::Error { reqid, failure } => enc.error(*reqid, failure, &mut message),
        Inbound::Ping(n) => enc.banana().ping(*n, out),
        Inbound::Pong(n) => enc.banana().pong(*n, out),
        other => panic!("not encodable: {other:?}"),
    }
    out.extend_from_slice(&message.into_bytes());
}

/// Advance an encoder's OPEN counter to `n` (the counter has no setter; the
/// receiver numbers OPENs itself, so a real sender never skips).
fn advance_to(enc: &mut MessageEncoder, n: u64) {
    let mut scratch = BytesMut::new();
    assert!(
        enc.banana().open_count() <= n,
        "encoder ahead of the stream"
    );
    while enc.banana().open_count() < n {
        enc.banana().open(&mut scratch);
    }
}

#[test]
fn messages_reencode_byte_identically_with_a_continuous_open_counter() {
    let mut seen = HashMap::new();
    for f in load_all() {
        let vocab = f.vocab();
        for d in DIRS {
            let stream = f.banana(d);
            let dec = decode_direction(&f, d);
            let items = item_bytes(stream, &dec);
            let what = |m: &Msg| format!("{} {}: {:?}", f.name, d.key(), m.inbound);
            // One encoder for the whole direction, as a sender has.
            let mut enc = MessageEncoder::new(vocab);
            // The stream rebuilt item by item: our encoder's bytes where they are
            // identical, foolscap's for the documented exceptions.
            let mut rebuilt = Vec::new();
            let mut exceptions = 0;
            for (m, item) in dec.msgs.iter().zip(&items) {
                let kind = classify(m, &dec.toks, &vocab);
                *seen.entry(format!("{kind:?}")).or_insert(0) += 1;
                assert_eq!(enc.banana().open_count(), item.opens_before, "{}", what(m));
                match kind {
                    Reencode::Identical => {
                        let mut out = BytesMut::new();
                        encode_item(&mut enc, &m.inbound, &mut out);
                        assert_eq!(&out[..], &item.bytes[..], "{}", what(m));
                        rebuilt.extend_from_slice(&out);
                    }
                    Reencode::Shared => {
                        // A side encoder at the same count; the main encoder then
                        // skips this message's OPENs, as the stream did.
                        let mut side = MessageEncoder::new(vocab);
                        advance_to(&mut side, item.opens_before);
                        let mut out = BytesMut::new();
                        encode_item(&mut side, &m.inbound, &mut out);
                        assert_ne!(&out[..], &item.bytes[..], "{}", what(m));
                        let again = decode_chunked(&vocab, &out, &[out.len()]);
                        assert_eq!(again.len(), 1, "{}", what(m));
                        assert!(same_inbound(&again[0], &m.inbound), "{}", what(m));
                        advance_to(&mut enc, item.opens_before + item.opens);
                        rebuilt.extend_from_slice(&item.bytes);
                        exceptions += 1;
                    }
                    Reencode::Undecodable => {
                        advance_to(&mut enc, item.opens_before + item.opens);
                        rebuilt.extend_from_slice(&item.bytes);
                        exceptions += 1;
                    }
                }
            }
            // The items tile the stream (no PING/PONG fell inside a message here), so
            // where there is no exception our encoder reproduced the whole stream.
            assert_eq!(rebuilt, stream, "{} {}", f.name, d.key());
            if f.name.starts_with("storage") {
                assert_eq!(exceptions, 0, "{} {}", f.name, d.key());
            }
        }
    }
    // The fixtures do exercise every path.
    for kind in ["Identical", "Shared", "Undecodable"] {
        assert!(seen.get(kind).copied().unwrap_or(0) > 0, "no {kind} item");
    }
}

// ---------------------------------------------------------------------------------
// Encoding the Python-level values
// ---------------------------------------------------------------------------------

/// A value as the client's Python code held it before sending, in its own order
/// (dict insertion order, keyword-argument order, set iteration order). `None` for
/// values that hold references, cycles or unserializable objects.
fn json_to_value(j: &Json) -> Option<Value> {
    let (t, x) = tag(j);
    let seq = |x: &Json| -> Option<Vec<Value>> {
        x.as_array().unwrap().iter().map(json_to_value).collect()
    };
    Some(match t {
        "none" => Value::None,
        "bool" => Value::Bool(x.as_bool().unwrap()),
        "int" => Value::Int(x.as_str().unwrap().parse().unwrap()),
        "float" => Value::Float(f64::from_bits(
            u64::from_str_radix(x.as_str().unwrap(), 16).unwrap(),
        )),
        "bytes" => Value::bytes(latin1(x.as_str().unwrap())),
        "text" => Value::text(x.as_str().unwrap()),
        "decimal" => Value::Decimal(x.as_str().unwrap().to_string()),
        "list" => Value::List(seq(x)?),
        "tuple" => Value::Tuple(seq(x)?),
        "set" => Value::Set(seq(x)?),
        "frozenset" => Value::FrozenSet(seq(x)?),
        "dict" => Value::Dict(
            x.as_array()
                .unwrap()
                .iter()
                .map(|kv| Some((json_to_value(&kv[0])?, json_to_value(&kv[1])?)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

/// One decoded item's place in the stream.
struct Item {
    /// OPENs sent on the stream before this item.
    opens_before: u64,
    /// OPENs within it.
    opens: u64,
    /// Its tokens' bytes, without any PING/PONG that arrived in the middle of it.
    bytes: Vec<u8>,
}

fn item_bytes(stream: &[u8], dec: &Decoded) -> Vec<Item> {
    let mut total = 0u64;
    dec.msgs
        .iter()
        .map(|m| {
            let opens_before = total;
            let mut bytes = Vec::new();
            for &i in &m.toks {
                bytes.extend_from_slice(&stream[dec.toks[i].span.clone()]);
                total += u64::from(matches!(dec.toks[i].token, Token::Open(_)));
            }
            Item {
                opens_before,
                opens: total - opens_before,
                bytes,
            }
        })
        .collect()
}

/// Foolscap's own sender turns the client's Python values into bytes; so must our
/// encoder, given the same values in the same (unsorted) order. Re-encoding decoded
/// values cannot show this for dicts, whose keys arrive already sorted: here the
/// encoder has to sort them itself, and keyword arguments too. Set items go out in
/// the order Python iterated them (recorded from the very object foolscap sent).
///
/// Covered: the client's calls whose arguments hold no references, and the client's
/// answers to the server's calls. Not covered: the server's answers (the sidecar holds
/// the client's reconstruction, whose set order is its own, not the server's), and
/// messages with `reference` sequences (see [`Reencode::Shared`]).
#[test]
fn python_values_encode_to_the_recorded_bytes() {
    let mut checked = 0;
    for f in load_all() {
        let vocab = f.vocab();
        let decoded: HashMap<Dir, Decoded> =
            DIRS.iter().map(|&d| (d, decode_direction(&f, d))).collect();
        let c2s_items = item_bytes(f.banana(Dir::C2s), &decoded[&Dir::C2s]);
        let c2s = &decoded[&Dir::C2s];
        let encode_at = |opens_before: u64, inbound: &Inbound| -> Vec<u8> {
            let mut enc = MessageEncoder::new(vocab);
            advance_to(&mut enc, opens_before);
            let mut out = BytesMut::new();
            encode_item(&mut enc, inbound, &mut out);
            out.to_vec()
        };
        let calls = f.meta["calls"].as_array().unwrap();
        // The client's calls, in order (as in decoded_messages_match_the_recorded_calls).
        let call_items: Vec<usize> = (0..c2s.msgs.len())
            .filter(|&k| {
                matches!(
                    c2s.msgs[k].inbound,
                    Inbound::Call { .. } | Inbound::CallViolation { .. } | Inbound::Dropped(_)
                )
            })
            .collect();
        let c2s_recs = calls.iter().filter(|c| c["dir"] == "c2s");
        for (rec, &k) in c2s_recs.zip(&call_items) {
            let m = &c2s.msgs[k];
            if classify(m, &c2s.toks, &vocab) != Reencode::Identical {
                continue;
            }
            let args: Option<Vec<Value>> = rec["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(json_to_value)
                .collect();
            let kwargs: Option<Vec<(String, Value)>> = rec["kwargs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| Some((kv[0].as_str().unwrap().to_string(), json_to_value(&kv[1])?)))
                .collect();
            let (Some(args), Some(kwargs)) = (args, kwargs) else {
                continue;
            };
            let python = Inbound::Call {
                reqid: rec["reqid"].as_u64().unwrap(),
                clid: rec["clid"].as_i64().unwrap(),
                method: rec["method"].as_str().unwrap().to_string(),
                args,
                kwargs,
            };
            let item = &c2s_items[k];
            assert_eq!(
                encode_at(item.opens_before, &python),
                item.bytes,
                "{}: {python:?}",
                f.name
            );
            checked += 1;
        }
        // The client's answers to the server's calls.
        for rec in calls.iter().filter(|c| c["dir"] == "s2c") {
            let Some(answer) = rec["outcome"].get("answer") else {
                continue;
            };
            let Some(value) = json_to_value(answer) else {
                continue;
            };
            let reqid = rec["reqid"].as_u64().unwrap();
            let k = (0..c2s.msgs.len())
                .find(|&k| {
                    matches!(c2s.msgs[k].inbound, Inbound::Answer { reqid: r, .. } if r == reqid)
                })
                .expect("the client's answer");
            let python = Inbound::Answer { reqid, value };
            let item = &c2s_items[k];
            assert_eq!(
                encode_at(item.opens_before, &python),
                item.bytes,
                "{}: {python:?}",
                f.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} messages checked");
}
