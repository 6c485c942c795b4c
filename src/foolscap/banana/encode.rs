//! The token encoder: writes tokens exactly as foolscap 24.9 does.

use bytes::{BufMut, BytesMut};
use num_bigint::{BigInt, Sign};

use super::typebyte::*;
use super::{VocabTable, MAX_ERROR_LEN};

/// One direction's encoder. It owns the OPEN counter (which the receiver uses to
/// resolve `reference` sequences, so it must count every OPEN, from 0, without gaps)
/// and the outgoing vocabulary table.
#[derive(Debug)]
pub struct Encoder {
    open_count: u64,
    vocab: VocabTable,
}

/// Write `n` as a base-128 little-endian header; zero is one `00` byte.
fn header(n: u64, out: &mut BytesMut) {
    if n == 0 {
        out.put_u8(0);
        return;
    }
    let mut n = n;
    while n != 0 {
        out.put_u8((n & 0x7f) as u8);
        n >>= 7;
    }
}

impl Encoder {
    pub fn new(vocab: VocabTable) -> Encoder {
        Encoder {
            open_count: 0,
            vocab,
        }
    }

    /// The number the next OPEN will carry.
    pub fn open_count(&self) -> u64 {
        self.open_count
    }

    pub fn open(&mut self, out: &mut BytesMut) -> u64 {
        let id = self.open_count;
        self.open_count += 1;
        header(id, out);
        out.put_u8(OPEN);
        id
    }

    pub fn close(&mut self, id: u64, out: &mut BytesMut) {
        header(id, out);
        out.put_u8(CLOSE);
    }

    pub fn abort(&mut self, id: u64, out: &mut BytesMut) {
        header(id, out);
        out.put_u8(ABORT);
    }

    /// A byte string: a VOCAB token if the negotiated table holds it (foolscap does
    /// this for every string, opentype or data), else a STRING.
    pub fn string(&mut self, s: &[u8], out: &mut BytesMut) {
        if let Some(i) = self.vocab.index_of(s) {
            header(i, out);
            out.put_u8(VOCAB);
        } else {
            // Grow once for the whole body (a share's data is ~1 MiB), with room for
            // the header and the tokens that close the message after it.
            out.reserve(s.len() + 256);
            header(s.len() as u64, out);
            out.put_u8(STRING);
            out.put_slice(s);
        }
    }

    /// Write only the header and type of a STRING of `len` bytes; the caller appends
    /// the body itself (used to avoid copying large share data).
    pub fn string_header(&mut self, len: usize, out: &mut BytesMut) {
        header(len as u64, out);
        out.put_u8(STRING);
    }

    pub fn int_i64(&mut self, v: i64, out: &mut BytesMut) {
        if (0..1i64 << 31).contains(&v) {
            header(v as u64, out);
            out.put_u8(INT);
        } else if (-(1i64 << 31)..0).contains(&v) {
            header(v.unsigned_abs(), out);
            out.put_u8(NEG);
        } else {
            self.int(&BigInt::from(v), out);
        }
    }

    /// INT for 0 ≤ v < 2³¹, NEG for −2³¹ ≤ v < 0, LONGINT/LONGNEG (big-endian
    /// magnitude, no leading zeros) beyond.
    pub fn int(&mut self, v: &BigInt, out: &mut BytesMut) {
        if let Ok(small) = i64::try_from(v) {
            if (-(1i64 << 31)..1i64 << 31).contains(&small) {
                return self.int_i64(small, out);
            }
        }
        let (sign, mag) = v.to_bytes_be();
        header(mag.len() as u64, out);
        out.put_u8(if sign == Sign::Minus {
            LONGNEG
        } else {
            LONGINT
        });
        out.put_slice(&mag);
    }

    pub fn float(&mut self, v: f64, out: &mut BytesMut) {
        out.put_u8(FLOAT);
        out.put_slice(&v.to_be_bytes());
    }

    /// PING and PONG are written without a header when the number is 0.
    pub fn ping(&mut self, n: u64, out: &mut BytesMut) {
        if n != 0 {
            header(n, out);
        }
        out.put_u8(PING);
    }

    pub fn pong(&mut self, n: u64, out: &mut BytesMut) {
        if n != 0 {
            header(n, out);
        }
        out.put_u8(PONG);
    }

    /// An ERROR token, truncated as foolscap truncates (to 990 bytes plus `...`).
    pub fn error(&mut self, msg: &[u8], out: &mut BytesMut) {
        let limit = MAX_ERROR_LEN as usize;
        let mut body = msg.to_vec();
        if body.len() > limit {
            body.truncate(limit - 10);
            body.extend_from_slice(b"...");
        }
        header(body.len() as u64, out);
        out.put_u8(ERROR);
        out.put_slice(&body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc() -> Encoder {
        Encoder::new(VocabTable::by_index(1).unwrap())
    }

    #[test]
    fn integers_as_foolscap_sends_them() {
        let cases: &[(i128, &[u8])] = &[
            (0, &[0x00, 0x81]),
            (127, &[0x7f, 0x81]),
            (128, &[0x00, 0x01, 0x81]),
            (2147483647, &[0x7f, 0x7f, 0x7f, 0x7f, 0x07, 0x81]),
            (2147483648, &[0x04, 0x85, 0x80, 0, 0, 0]),
            (1 << 64, &[0x09, 0x85, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            (-1, &[0x01, 0x83]),
            (-2147483648, &[0x00, 0x00, 0x00, 0x00, 0x08, 0x83]),
            (-2147483649, &[0x04, 0x86, 0x80, 0, 0, 1]),
        ];
        for (v, bytes) in cases {
            let mut out = BytesMut::new();
            enc().int(&BigInt::from(*v), &mut out);
            assert_eq!(&out[..], *bytes, "{v}");
        }
    }

    #[test]
    fn vocab_strings_and_pings() {
        let mut e = enc();
        let mut out = BytesMut::new();
        e.string(b"list", &mut out);
        e.string(b"decimal", &mut out);
        e.ping(0, &mut out);
        e.pong(5, &mut out);
        e.float(1.5, &mut out);
        assert_eq!(
            &out[..],
            &[
                0x04, 0x87, 0x07, 0x82, b'd', b'e', b'c', b'i', b'm', b'a', b'l', 0x8e, 0x05, 0x8f,
                0x84, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn open_counter_counts_from_zero() {
        let mut e = enc();
        let mut out = BytesMut::new();
        let a = e.open(&mut out);
        let b = e.open(&mut out);
        e.close(b, &mut out);
        e.close(a, &mut out);
        assert_eq!(&out[..], &[0x00, 0x88, 0x01, 0x88, 0x01, 0x89, 0x00, 0x89]);
    }

    #[test]
    fn error_is_truncated() {
        let mut out = BytesMut::new();
        enc().error(&[b'e'; 2000], &mut out);
        // header 993 = 0x61 0x07
        assert_eq!(&out[..3], &[0x61, 0x07, 0x8d]);
        assert_eq!(out.len(), 3 + 993);
    }
}
