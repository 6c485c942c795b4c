//! Banana token decoder and PB message decoder, fed hostile bytes.
//!
//! Input: byte 0 picks the vocabulary table (bit 0) and the chunk size the stream is
//! cut into (bits 1..); the rest is the Banana stream. Properties: no panic, no
//! unbounded allocation (the limits are small), and decoding in chunks yields the
//! same tokens as decoding the whole stream at once.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use swampgate::foolscap::banana::{DecodeLimits, Token, TokenDecoder, VocabTable};
use swampgate::foolscap::message::{MessageDecoder, MessageLimits};

const LIMITS: DecodeLimits = DecodeLimits {
    max_string: 64 * 1024,
    max_long_int: 1024,
};

/// Decode as much as possible; the tokens and whether it ended in an error.
fn tokens(data: &[u8], chunk: usize) -> (Vec<Token>, bool) {
    let mut dec = TokenDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.next_token(&mut buf) {
                Ok(Some(t)) => out.push(t),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fn same(a: &Token, b: &Token) -> bool {
    match (a, b) {
        // NaN != NaN: compare floats by bits.
        (Token::Float(x), Token::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let vocab = VocabTable::by_index(u32::from(ctl & 1)).expect("tables 0 and 1 exist");
    let chunk = usize::from(ctl >> 1) + 1;

    let (whole, whole_err) = tokens(stream, stream.len().max(1));
    let (pieces, pieces_err) = tokens(stream, chunk);
    assert_eq!(whole_err, pieces_err, "error depends on chunking");
    assert_eq!(whole.len(), pieces.len(), "token count depends on chunking");
    for (a, b) in whole.iter().zip(&pieces) {
        assert!(same(a, b), "{a:?} != {b:?}");
    }

    let mut msgs = MessageDecoder::new(
        vocab,
        MessageLimits {
            max_depth: 16,
            max_message_bytes: 256 * 1024,
        },
    );
    for t in whole {
        if msgs.feed(t).is_err() {
            break;
        }
    }
});
