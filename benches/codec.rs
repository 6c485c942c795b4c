//! Codec micro-benchmarks: Banana tokens, PB messages and GBS CBOR bodies.
//!
//! ```text
//! cargo bench --bench codec              # full run
//! cargo bench --bench codec -- --quick   # shorter, less precise
//! cargo bench --bench codec -- message/  # only benchmarks whose id contains "message/"
//! ```
//!
//! Before criterion runs, the binary prints a table of allocations and bytes
//! allocated per message for every benchmarked operation, counted by the global
//! allocator below (outside criterion's timing). Each operation is the same closure
//! in the table and in the timing.
//!
//! Groups:
//! - `banana`: one STRING token of 1 MiB (a Tahoe immutable `write`) or 350 KiB (a
//!   `read` answer). Decoding is zero-copy (the token's `Bytes` shares the receive
//!   buffer), so "decode" times the bytes landing in the receive buffer (one copy, as
//!   the socket read does) plus the decode; `copy into receive buffer` is that copy
//!   alone, for comparison. The `16 KiB reads` case feeds a fresh buffer the way the
//!   broker's read loop does (reserve what the pending token needs, at least 64 KiB;
//!   read at most a TLS record), as when the
//!   previous message's data is still held by the application.
//! - `message`: whole PB messages through `TokenDecoder` + `MessageDecoder` and
//!   `MessageEncoder`: a `write(offset, 1 MiB)` call and a 350 KiB `read` answer
//!   (synthetic), and `get_version` / `slot_readv` calls and answers as recorded from
//!   a real Tahoe storage node (`fixtures/storage.*`). Decoders are kept across
//!   iterations, as on a connection.
//! - `transcript`: each direction of the recorded storage session, decoded to
//!   messages by fresh decoders.
//! - `gbs-cbor`: request and response bodies of `src/gbs/codec/`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use serde_json::Value as Json;

use swampgate::foolscap::banana::{DecodeLimits, Encoder, Token, TokenDecoder, VocabTable};
use swampgate::foolscap::message::{
    Encoded, Inbound, MessageDecoder, MessageEncoder, MessageLimits, NoExports,
};
use swampgate::foolscap::value::Value;
use swampgate::gbs::codec::{AllocateBody, Body, ReadTestWriteBody};
use swampgate::gbs::media::Format;
use swampgate::storage::{
    AllocateResult, ReadTestWriteResult, ReadVector, ShareNum, TestVector, TestWriteVectors,
    WriteVector,
};

// ---------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------

/// The system allocator, counting calls and bytes. Always on (a relaxed atomic add
/// per call, also during timing).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    /// A realloc counts as one call and its growth as bytes allocated.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct AllocCount {
    allocs: f64,
    reallocs: f64,
    bytes: f64,
}

fn counters() -> [u64; 3] {
    [
        ALLOCS.load(Relaxed),
        REALLOCS.load(Relaxed),
        BYTES.load(Relaxed),
    ]
}

/// Allocations per message of `run` (which handles `msgs` messages a call): one
/// warm-up call, then the mean of a few.
fn count_allocs(run: &mut dyn FnMut(), msgs: u64) -> AllocCount {
    const RUNS: u64 = 8;
    run();
    let before = counters();
    for _ in 0..RUNS {
        run();
    }
    let after = counters();
    let per = |i: usize| (after[i] - before[i]) as f64 / (RUNS * msgs) as f64;
    AllocCount {
        allocs: per(0),
        reallocs: per(1),
        bytes: per(2),
    }
}

// ---------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------

const MIB: usize = 1024 * 1024;
const WRITE_SIZE: usize = MIB;
const READ_SIZE: usize = 350 * 1024;
/// What one read from a TLS stream returns at most (one record's plaintext).
const TLS_RECORD: usize = 16 * 1024;
/// The broker's read loop reserves this much before each read.
const READ_RESERVE: usize = 64 * 1024;

fn vocab() -> VocabTable {
    VocabTable::by_index(1).expect("table 1")
}

fn token_decoder() -> TokenDecoder {
    TokenDecoder::new(DecodeLimits::default())
}

fn message_decoder() -> MessageDecoder {
    MessageDecoder::new(vocab(), MessageLimits::default())
}

/// Share-data-like bytes that are no vocabulary word.
fn payload(len: usize) -> Bytes {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn string_token(data: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    Encoder::new(vocab()).string(data, &mut out);
    out.to_vec()
}

/// One direction of a recorded session: its Banana bytes, and each top-level
/// message's byte range and decoded form.
struct Transcript {
    banana: Vec<u8>,
    messages: Vec<(std::ops::Range<usize>, Inbound)>,
}

fn load_transcript(name: &str, dir: &str) -> Transcript {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let read = |file: String| {
        std::fs::read(root.join(&file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
    };
    let meta: Json = serde_json::from_slice(&read(format!("{name}.json"))).expect("sidecar");
    let start = meta[dir]["banana_start"].as_u64().expect("banana_start") as usize;
    assert_eq!(
        meta["negotiated"]["initial-vocab-table-index"].as_u64(),
        Some(1),
        "the benchmarks assume vocabulary table 1"
    );
    let banana = read(format!("{name}.{dir}.bin"))[start..].to_vec();
    let mut tokens = token_decoder();
    let mut decoder = message_decoder();
    let mut buf = BytesMut::from(&banana[..]);
    let mut messages = Vec::new();
    let mut begin = 0;
    while let Some(tok) = tokens.next_token(&mut buf).expect("valid Banana") {
        if let Some(msg) = decoder.feed(tok).expect("valid PB") {
            let end = banana.len() - buf.len();
            messages.push((begin..end, msg));
            begin = end;
        }
    }
    assert!(buf.is_empty(), "{name}.{dir}: undecoded bytes");
    Transcript { banana, messages }
}

impl Transcript {
    fn find(&self, pred: impl Fn(&Inbound) -> bool) -> (Vec<u8>, &Inbound) {
        let (range, msg) = self
            .messages
            .iter()
            .find(|(_, m)| pred(m))
            .expect("message in transcript");
        (self.banana[range.clone()].to_vec(), msg)
    }

    fn call(&self, name: &str) -> (Vec<u8>, &Inbound) {
        self.find(|m| matches!(m, Inbound::Call { method, .. } if method == name))
    }

    fn answer(&self, to: u64) -> (Vec<u8>, &Inbound) {
        self.find(|m| matches!(m, Inbound::Answer { reqid, .. } if *reqid == to))
    }
}

fn call_reqid(m: &Inbound) -> u64 {
    match m {
        Inbound::Call { reqid, .. } => *reqid,
        other => panic!("not a call: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Cases: one closure per operation, shared by the allocation table and criterion
// ---------------------------------------------------------------------------------

struct Case {
    group: &'static str,
    name: String,
    /// Bytes one call handles (criterion reports MB/s from it).
    bytes: u64,
    /// Messages one call handles (for "per message" in the table).
    msgs: u64,
    run: Box<dyn FnMut()>,
}

fn case(group: &'static str, name: &str, bytes: usize, run: impl FnMut() + 'static) -> Case {
    Case {
        group,
        name: name.to_string(),
        bytes: bytes as u64,
        msgs: 1,
        run: Box::new(run),
    }
}

/// Receive `wire` into a receive buffer that is reused (its allocation reclaimed
/// once the previous message is dropped) and decode it to exactly one message.
fn receive_message(
    wire: Vec<u8>,
    mut check: impl FnMut(&Inbound) + 'static,
) -> impl FnMut() + 'static {
    let mut tokens = token_decoder();
    let mut decoder = message_decoder();
    let mut buf = BytesMut::with_capacity(wire.len());
    move || {
        buf.extend_from_slice(&wire);
        let mut got = None;
        while let Some(tok) = tokens.next_token(&mut buf).expect("valid Banana") {
            if let Some(msg) = decoder.feed(tok).expect("valid PB") {
                assert!(got.is_none(), "one message");
                got = Some(msg);
            }
        }
        let msg = got.expect("a complete message");
        check(&msg);
        black_box(msg);
    }
}

fn banana_cases(out: &mut Vec<Case>) {
    let mut copy_buf = BytesMut::with_capacity(WRITE_SIZE + 16);
    let wire_1m = string_token(&payload(WRITE_SIZE));
    {
        let wire = wire_1m.clone();
        out.push(case(
            "banana",
            "copy into receive buffer 1 MiB (baseline)",
            wire.len(),
            move || {
                copy_buf.extend_from_slice(&wire);
                black_box(&copy_buf);
                copy_buf.clear();
            },
        ));
    }
    for (label, size) in [("1 MiB", WRITE_SIZE), ("350 KiB", READ_SIZE)] {
        let wire = string_token(&payload(size));
        let bytes = wire.len();
        let mut tokens = token_decoder();
        let mut buf = BytesMut::with_capacity(bytes);
        out.push(case(
            "banana",
            &format!("decode STRING {label}"),
            bytes,
            move || {
                buf.extend_from_slice(&wire);
                let tok = tokens.next_token(&mut buf).expect("valid").expect("token");
                assert!(matches!(&tok, Token::String(s) if s.len() == size));
                black_box(tok);
            },
        ));
    }
    {
        let wire = wire_1m;
        let bytes = wire.len();
        let mut tokens = token_decoder();
        out.push(case(
            "banana",
            "decode STRING 1 MiB, 16 KiB reads into a fresh buffer",
            bytes,
            move || {
                let mut buf = BytesMut::new();
                let mut got = None;
                for chunk in wire.chunks(TLS_RECORD) {
                    // As the broker's read loop: room for the pending token at once.
                    let want = tokens.bytes_needed().saturating_sub(buf.len());
                    buf.reserve(if want > 0 { want } else { READ_RESERVE });
                    buf.extend_from_slice(chunk);
                    while let Some(tok) = tokens.next_token(&mut buf).expect("valid") {
                        got = Some(tok);
                    }
                }
                assert!(matches!(&got, Some(Token::String(s)) if s.len() == WRITE_SIZE));
                black_box(got);
            },
        ));
    }
    for (label, size) in [("1 MiB", WRITE_SIZE), ("350 KiB", READ_SIZE)] {
        let data = payload(size);
        let bytes = string_token(&data).len();
        let mut enc = Encoder::new(vocab());
        out.push(case(
            "banana",
            &format!("encode STRING {label}"),
            bytes,
            move || {
                let mut out = BytesMut::new();
                enc.string(&data, &mut out);
                black_box(out);
            },
        ));
    }
}

fn message_cases(out: &mut Vec<Case>) {
    // Synthetic bulk messages: an immutable write call and a read answer.
    let write_args = vec![Value::int(0), Value::Bytes(payload(WRITE_SIZE))];
    let read_answer = Value::Bytes(payload(READ_SIZE));
    let mut wire_write = Encoded::new();
    MessageEncoder::new(vocab()).call(
        5,
        3,
        "write",
        &write_args,
        &[],
        &mut NoExports,
        &mut wire_write,
    );
    let wire_write = wire_write.into_bytes();
    let mut wire_read = Encoded::new();
    MessageEncoder::new(vocab()).answer(11, &read_answer, &mut NoExports, &mut wire_read);
    let wire_read = wire_read.into_bytes();

    out.push(case(
        "message",
        "decode write(0, 1 MiB) call",
        wire_write.len(),
        receive_message(wire_write.to_vec(), |m| {
            assert!(
                matches!(m, Inbound::Call { method, args, .. } if method == "write" && args.len() == 2)
            )
        }),
    ));
    {
        let mut enc = MessageEncoder::new(vocab());
        out.push(case(
            "message",
            "encode write(0, 1 MiB) call",
            wire_write.len(),
            move || {
                let mut out = Encoded::new();
                enc.call(5, 3, "write", &write_args, &[], &mut NoExports, &mut out);
                black_box(out.into_buf());
            },
        ));
    }
    out.push(case(
        "message",
        "decode read answer (350 KiB)",
        wire_read.len(),
        receive_message(wire_read.to_vec(), |m| {
            assert!(
                matches!(m, Inbound::Answer { value: Value::Bytes(b), .. } if b.len() == READ_SIZE)
            )
        }),
    ));
    {
        let mut enc = MessageEncoder::new(vocab());
        out.push(case(
            "message",
            "encode read answer (350 KiB)",
            wire_read.len(),
            move || {
                let mut out = Encoded::new();
                enc.answer(11, &read_answer, &mut NoExports, &mut out);
                black_box(out.into_buf());
            },
        ));
    }

    // Small messages, as a real Tahoe storage node and its client sent them.
    let c2s = load_transcript("storage", "c2s");
    let s2c = load_transcript("storage", "s2c");
    for method in ["get_version", "slot_readv"] {
        let (wire, msg) = c2s.call(method);
        let reqid = call_reqid(msg);
        let Inbound::Call {
            clid, args, kwargs, ..
        } = msg
        else {
            unreachable!()
        };
        let (clid, args) = (*clid, args.clone());
        let kwargs: Vec<(String, Value)> = kwargs.clone();
        let len = wire.len();
        out.push(case(
            "message",
            &format!("decode {method} call"),
            len,
            receive_message(wire, |m| assert!(matches!(m, Inbound::Call { .. }))),
        ));
        let mut enc = MessageEncoder::new(vocab());
        out.push(case(
            "message",
            &format!("encode {method} call"),
            len,
            move || {
                let kw: Vec<(&str, Value)> = kwargs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                let mut out = Encoded::new();
                enc.call(reqid, clid, method, &args, &kw, &mut NoExports, &mut out);
                black_box(out.into_buf());
            },
        ));

        let (wire, answer) = s2c.answer(reqid);
        let Inbound::Answer { value, .. } = answer else {
            unreachable!()
        };
        let value = value.clone();
        let len = wire.len();
        out.push(case(
            "message",
            &format!("decode {method} answer"),
            len,
            receive_message(wire, |m| assert!(matches!(m, Inbound::Answer { .. }))),
        ));
        let mut enc = MessageEncoder::new(vocab());
        out.push(case(
            "message",
            &format!("encode {method} answer"),
            len,
            move || {
                let mut out = Encoded::new();
                enc.answer(reqid, &value, &mut NoExports, &mut out);
                black_box(out.into_buf());
            },
        ));
    }

    // Whole recorded sessions, one direction at a time.
    for (dir, t) in [("c2s", c2s), ("s2c", s2c)] {
        let msgs = t.messages.len();
        let wire = t.banana;
        let bytes = wire.len();
        let mut buf = BytesMut::with_capacity(bytes);
        let mut c = case(
            "transcript",
            &format!("decode storage.{dir} ({bytes} B, {msgs} messages)"),
            bytes,
            move || {
                let mut tokens = token_decoder();
                let mut decoder = message_decoder();
                buf.extend_from_slice(&wire);
                let mut n = 0;
                while let Some(tok) = tokens.next_token(&mut buf).expect("valid Banana") {
                    if let Some(msg) = decoder.feed(tok).expect("valid PB") {
                        black_box(msg);
                        n += 1;
                    }
                }
                assert_eq!(n, msgs);
            },
        );
        c.msgs = msgs as u64;
        out.push(c);
    }
}

fn cbor_cases(out: &mut Vec<Case>) {
    let shares: BTreeSet<ShareNum> = (0..10).collect();
    let allocated_size = 1_048_576;
    {
        let request = AllocateBody {
            share_numbers: shares.clone(),
            allocated_size,
        };
        let body = request.encode(Format::Cbor);
        let len = body.len();
        out.push(case(
            "gbs-cbor",
            "encode allocate_buckets request",
            len,
            move || {
                black_box(request.encode(Format::Cbor));
            },
        ));
        out.push(case(
            "gbs-cbor",
            "decode allocate_buckets request",
            len,
            move || {
                let v = AllocateBody::decode(&body, Format::Cbor).expect("valid");
                assert_eq!(v.share_numbers.len(), 10);
                black_box(v);
            },
        ));
    }
    {
        let result = AllocateResult {
            already_have: BTreeSet::new(),
            allocated: shares.clone(),
        };
        let body = result.encode(Format::Cbor);
        let len = body.len();
        out.push(case(
            "gbs-cbor",
            "encode allocate_buckets response",
            len,
            move || {
                black_box(result.encode(Format::Cbor));
            },
        ));
        out.push(case(
            "gbs-cbor",
            "decode allocate_buckets response",
            len,
            move || {
                let v = AllocateResult::decode(&body, Format::Cbor).expect("valid");
                assert_eq!(v.allocated.len(), 10);
                black_box(v);
            },
        ));
    }
    // One share, one 100 B test vector, one write vector, one 100 B read vector. The
    // 1 MiB write shows how often bulk mutable data is copied.
    for (label, write_len) in [("100 B", 100), ("1 MiB", WRITE_SIZE)] {
        let mut tw = BTreeMap::new();
        tw.insert(
            0,
            TestWriteVectors {
                test: vec![TestVector {
                    offset: 0,
                    size: 100,
                    specimen: payload(100),
                }],
                write: vec![WriteVector {
                    offset: 0,
                    data: payload(write_len),
                }],
                new_length: None,
            },
        );
        let rv = vec![ReadVector {
            offset: 0,
            size: 100,
        }];
        let request = ReadTestWriteBody {
            test_write_vectors: tw,
            read_vector: rv,
        };
        let body = request.encode(Format::Cbor);
        let len = body.len();
        out.push(case(
            "gbs-cbor",
            &format!("encode read-test-write request ({label} write)"),
            len,
            move || {
                black_box(request.encode(Format::Cbor));
            },
        ));
        out.push(case(
            "gbs-cbor",
            &format!("decode read-test-write request ({label} write)"),
            len,
            move || {
                let v = ReadTestWriteBody::decode(&body, Format::Cbor).expect("valid");
                assert_eq!(v.test_write_vectors[&0].write[0].data.len(), write_len);
                black_box(v);
            },
        ));
    }
    {
        // GBS reads mutable shares as raw byte ranges; the CBOR body shaped like
        // slot_readv's answer (share number -> list of read data) is the
        // read-test-write response.
        let result = ReadTestWriteResult {
            success: true,
            data: BTreeMap::from([(0, vec![payload(100)])]),
        };
        let body = result.encode(Format::Cbor);
        let len = body.len();
        out.push(case(
            "gbs-cbor",
            "encode read-test-write response (slot_readv data, 100 B)",
            len,
            move || {
                black_box(result.encode(Format::Cbor));
            },
        ));
        out.push(case(
            "gbs-cbor",
            "decode read-test-write response (slot_readv data, 100 B)",
            len,
            move || {
                let v = ReadTestWriteResult::decode(&body, Format::Cbor).expect("valid");
                assert!(v.success);
                black_box(v);
            },
        ));
    }
}

fn print_alloc_table(cases: &mut [Case]) {
    println!("Allocations and bytes allocated per message (realloc growth counted as bytes):");
    println!();
    println!(
        "| {:<70} | {:>10} | {:>8} | {:>8} | {:>12} |",
        "operation", "wire bytes", "allocs", "reallocs", "bytes alloc"
    );
    println!(
        "|{:-<72}|{:->12}|{:->10}|{:->10}|{:->14}|",
        "", "", "", "", ""
    );
    for c in cases.iter_mut() {
        let n = count_allocs(&mut *c.run, c.msgs);
        let fmt = |v: f64| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        };
        println!(
            "| {:<70} | {:>10} | {:>8} | {:>8} | {:>12} |",
            format!("{}/{}", c.group, c.name),
            c.bytes / c.msgs,
            fmt(n.allocs),
            fmt(n.reallocs),
            fmt(n.bytes)
        );
    }
    println!();
}

fn main() {
    let mut cases = Vec::new();
    banana_cases(&mut cases);
    message_cases(&mut cases);
    cbor_cases(&mut cases);

    if !std::env::args().any(|a| a == "--list") {
        print_alloc_table(&mut cases);
    }

    let mut criterion = Criterion::default().configure_from_args();
    let mut i = 0;
    while i < cases.len() {
        let group = cases[i].group;
        let mut g = criterion.benchmark_group(group);
        while i < cases.len() && cases[i].group == group {
            let c = &mut cases[i];
            g.throughput(Throughput::Bytes(c.bytes));
            let mut run = &mut c.run;
            g.bench_function(c.name.as_str(), |b| b.iter(&mut run));
            i += 1;
        }
        g.finish();
    }
    criterion.final_summary();
}
