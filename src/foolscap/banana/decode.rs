//! The streaming token decoder.

use bytes::{Buf, BytesMut};
use nom::bytes::streaming::take_while_m_n;
use nom::number::streaming::u8 as byte;
use nom::IResult;
use num_bigint::{BigInt, BigUint, Sign};

use super::typebyte::*;
use super::{BananaError, Token, MAX_ERROR_LEN, MAX_HEADER_BYTES};

/// Limits checked against a token's header before anything is allocated for its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The longest STRING body buffered. Foolscap itself has no built-in limit (only
    /// per-argument schemas); Tahoe's largest strings are share data in `write` and
    /// mutable `tw_vectors` (about 1 MiB each in practice). A longer STRING is not a
    /// protocol error: its body is skipped unbuffered and the message carrying it
    /// fails with a violation, as foolscap does for strings its schema refuses.
    pub max_string: u64,
    /// The longest LONGINT/LONGNEG body. Tahoe's schemas accept integers of up to
    /// 1024 bytes (`IntegerConstraint(maxBytes=1024)`).
    pub max_long_int: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_string: 64 * 1024 * 1024,
            max_long_int: 1024,
        }
    }
}

/// Turns a byte stream into tokens. Feed it by appending to a `BytesMut` and calling
/// [`TokenDecoder::next_token`] until it returns `Ok(None)` ("need more bytes").
#[derive(Debug)]
pub struct TokenDecoder {
    limits: DecodeLimits,
    /// Bytes of an oversized STRING body still to be discarded.
    skip: u64,
    /// When the last call needed more bytes for a token with a body: how many the
    /// buffer must hold for it to complete (0 if unknown).
    need: usize,
}

fn header_and_type(input: &[u8]) -> IResult<&[u8], (&[u8], u8)> {
    let (rest, header) = take_while_m_n(0, MAX_HEADER_BYTES, |b: u8| b < 0x80)(input)?;
    let (rest, t) = byte(rest)?;
    Ok((rest, (header, t)))
}

/// A header's value: small ones as u64, others as a big number.
enum Header {
    Small(u64),
    Big(BigUint),
}

impl Header {
    fn parse(digits: &[u8]) -> Header {
        if digits.len() <= 9 {
            // 9 * 7 = 63 bits: always fits.
            Header::Small(
                digits
                    .iter()
                    .rev()
                    .fold(0u64, |acc, &d| (acc << 7) | u64::from(d)),
            )
        } else {
            let big = BigUint::from_radix_le(digits, 128).unwrap_or_default();
            match u64::try_from(&big) {
                Ok(v) => Header::Small(v),
                Err(_) => Header::Big(big),
            }
        }
    }

    fn small(&self, kind: &'static str) -> Result<u64, BananaError> {
        match self {
            Header::Small(v) => Ok(*v),
            Header::Big(b) => Err(BananaError::HeaderValueTooLarge {
                kind,
                value: b.to_string(),
            }),
        }
    }

    fn into_biguint(self) -> BigUint {
        match self {
            Header::Small(v) => BigUint::from(v),
            Header::Big(b) => b,
        }
    }
}

impl TokenDecoder {
    pub fn new(limits: DecodeLimits) -> TokenDecoder {
        TokenDecoder {
            limits,
            skip: 0,
            need: 0,
        }
    }

    /// How many bytes the buffer must hold for the pending token (a STRING waiting
    /// for its body) to complete; 0 if no such token is pending. Readers use it to
    /// make room once, rather than growing (and copying) the buffer in steps.
    pub fn bytes_needed(&self) -> usize {
        self.need
    }

    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Decode the next complete token from the front of `buf`, consuming its bytes.
    /// `Ok(None)` means more bytes are needed; nothing is consumed in that case except
    /// the body of a skipped oversized string.
    pub fn next_token(&mut self, buf: &mut BytesMut) -> Result<Option<Token>, BananaError> {
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            buf.advance(n);
            self.skip -= n as u64;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let (header, t, consumed) = match header_and_type(buf) {
            Ok((rest, (header, t))) => (Header::parse(header), t, buf.len() - rest.len()),
            Err(nom::Err::Incomplete(_)) => return Ok(None),
            Err(_) => unreachable!("the header parser has no failing branch"),
        };
        if t < 0x80 {
            return Err(BananaError::HeaderTooLong);
        }
        let avail = buf.len() - consumed;
        // Tokens with a body: check the header against limits, then wait for the body.
        let body_len: u64 = match t {
            STRING => {
                let len = header.small("STRING")?;
                if len > self.limits.max_string {
                    buf.advance(consumed);
                    self.skip = len;
                    // Discard whatever part of the body is already here.
                    let n = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
                    buf.advance(n);
                    self.skip -= n as u64;
                    return Ok(Some(Token::SkippedString(len)));
                }
                len
            }
            LONGINT | LONGNEG => {
                let len = header.small("LONGINT")?;
                if len > self.limits.max_long_int {
                    return Err(BananaError::LongIntTooLarge(len, self.limits.max_long_int));
                }
                len
            }
            ERROR => {
                let len = header.small("ERROR")?;
                if len > MAX_ERROR_LEN {
                    return Err(BananaError::OversizedError(len));
                }
                len
            }
            FLOAT => 8,
            _ => 0,
        };
        if (avail as u64) < body_len {
            // body_len is within the limits checked above.
            self.need = consumed + body_len as usize;
            return Ok(None);
        }
        self.need = 0;
        let body_len = body_len as usize;
        let token = match t {
            OPEN => Token::Open(header.small("OPEN")?),
            CLOSE => Token::Close(header.small("CLOSE")?),
            ABORT => Token::Abort(header.small("ABORT")?),
            VOCAB => Token::Vocab(header.small("VOCAB")?),
            PING => Token::Ping(header.small("PING")?),
            PONG => Token::Pong(header.small("PONG")?),
            INT => Token::Int(BigInt::from_biguint(Sign::Plus, header.into_biguint())),
            NEG => Token::Int(-BigInt::from_biguint(Sign::Plus, header.into_biguint())),
            STRING | ERROR | LONGINT | LONGNEG | FLOAT => {
                buf.advance(consumed);
                let body = buf.split_to(body_len).freeze();
                return Ok(Some(match t {
                    STRING => Token::String(body),
                    ERROR => Token::Error(body),
                    LONGINT => Token::Int(BigInt::from_bytes_be(Sign::Plus, &body)),
                    LONGNEG => Token::Int(-BigInt::from_bytes_be(Sign::Plus, &body)),
                    _ => {
                        let arr: [u8; 8] = body[..].try_into().expect("8-byte body");
                        Token::Float(f64::from_be_bytes(arr))
                    }
                }));
            }
            LIST => return Err(BananaError::OldBanana),
            other => return Err(BananaError::InvalidTypeByte(other)),
        };
        buf.advance(consumed);
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Token>, BananaError> {
        let mut d = TokenDecoder::new(DecodeLimits::default());
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(t) = d.next_token(&mut buf)? {
            out.push(t);
        }
        assert!(buf.is_empty(), "undecoded bytes left: {buf:?}");
        Ok(out)
    }

    #[test]
    fn integers_as_captured() {
        let cases: &[(&[u8], i128)] = &[
            (&[0x00, 0x81], 0),
            (&[0x7f, 0x81], 127),
            (&[0x00, 0x01, 0x81], 128),
            (&[0x2c, 0x02, 0x81], 300),
            (&[0x7f, 0x7f, 0x7f, 0x7f, 0x07, 0x81], 2147483647),
            (&[0x04, 0x85, 0x80, 0, 0, 0], 2147483648),
            (&[0x01, 0x83], -1),
            (&[0x00, 0x00, 0x00, 0x00, 0x08, 0x83], -2147483648),
            (&[0x04, 0x86, 0x80, 0, 0, 1], -2147483649),
            (&[0x81], 0),
        ];
        for (bytes, v) in cases {
            assert_eq!(
                decode_all(bytes).unwrap(),
                vec![Token::Int(BigInt::from(*v))],
                "{bytes:02x?}"
            );
        }
        let two64 = decode_all(&[0x09, 0x85, 1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(two64, vec![Token::Int(BigInt::from(1u128 << 64))]);
    }

    #[test]
    fn float_and_strings() {
        assert_eq!(
            decode_all(&[0x84, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]).unwrap(),
            vec![Token::Float(1.5)]
        );
        let mut s = vec![0x26, 0x09, 0x82];
        s.extend(std::iter::repeat_n(b'x', 1190));
        assert_eq!(
            decode_all(&s).unwrap(),
            vec![Token::String(Bytes::from(vec![b'x'; 1190]))]
        );
    }

    #[test]
    fn split_anywhere() {
        let bytes = [
            0x03, 0x82, b'a', b'b', b'c', 0x05, 0x88, 0x00, 0x87, 0x05, 0x89, 0x8e,
        ];
        let mut d = TokenDecoder::new(DecodeLimits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[b]);
            while let Some(t) = d.next_token(&mut buf).unwrap() {
                out.push(t);
            }
        }
        assert_eq!(
            out,
            vec![
                Token::String(Bytes::from_static(b"abc")),
                Token::Open(5),
                Token::Vocab(0),
                Token::Close(5),
                Token::Ping(0)
            ]
        );
    }

    #[test]
    fn header_limit_is_64_bytes() {
        let mut ok = vec![0x00; 64];
        ok.push(0x81);
        assert_eq!(decode_all(&ok).unwrap(), vec![Token::Int(BigInt::from(0))]);
        let mut bad = vec![0x00; 65];
        bad.push(0x81);
        assert_eq!(decode_all(&bad), Err(BananaError::HeaderTooLong));
    }

    #[test]
    fn protocol_errors() {
        assert_eq!(decode_all(&[0x80]), Err(BananaError::OldBanana));
        assert_eq!(decode_all(&[0x90]), Err(BananaError::InvalidTypeByte(0x90)));
        assert_eq!(decode_all(&[0x8b]), Err(BananaError::InvalidTypeByte(0x8b)));
        // ERROR header 1001 (0x69 0x07).
        assert_eq!(
            decode_all(&[0x69, 0x07, 0x8d]),
            Err(BananaError::OversizedError(1001))
        );
        assert!(matches!(
            decode_all(&[0x01, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x88]),
            Err(BananaError::HeaderValueTooLarge { .. })
        ));
    }

    #[test]
    fn a_pending_string_says_how_many_bytes_it_needs() {
        let mut d = TokenDecoder::new(DecodeLimits::default());
        assert_eq!(d.bytes_needed(), 0);
        // A 300-byte STRING: header 0x2c 0x02 (44 + 2*128), type 0x82, 3 body bytes.
        let mut buf = BytesMut::from(&[0x2c, 0x02, 0x82, 1, 2, 3][..]);
        assert_eq!(d.next_token(&mut buf).unwrap(), None);
        assert_eq!(d.bytes_needed(), 3 + 300);
        buf.extend_from_slice(&[0u8; 297]);
        assert!(
            matches!(d.next_token(&mut buf).unwrap(), Some(Token::String(s)) if s.len() == 300)
        );
        assert_eq!(d.bytes_needed(), 0);
    }

    #[test]
    fn oversized_string_is_skipped_without_buffering() {
        let mut d = TokenDecoder::new(DecodeLimits {
            max_string: 4,
            max_long_int: 1024,
        });
        let mut buf = BytesMut::from(&[0x0a, 0x82, 1, 2, 3][..]);
        assert_eq!(
            d.next_token(&mut buf).unwrap(),
            Some(Token::SkippedString(10))
        );
        assert!(buf.is_empty());
        buf.extend_from_slice(&[4, 5, 6, 7, 8, 9, 10, 0x01, 0x81]);
        assert_eq!(
            d.next_token(&mut buf).unwrap(),
            Some(Token::Int(BigInt::from(1)))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn long_int_limit_checked_before_body() {
        let mut d = TokenDecoder::new(DecodeLimits {
            max_string: 4,
            max_long_int: 8,
        });
        let mut buf = BytesMut::from(&[0x09, 0x85][..]);
        assert_eq!(
            d.next_token(&mut buf),
            Err(BananaError::LongIntTooLarge(9, 8))
        );
    }
}
