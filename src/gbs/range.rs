//! `Range` and `Content-Range` headers, with the rules Tahoe 1.20 applies (werkzeug's
//! parsers plus `http_server.read_range` and `write_share_data`). Pure.
//!
//! Reads (`GET` of a share):
//! - no `Range` header: 200 and the whole share;
//! - exactly one closed range `bytes=a-b`: 206 with `Content-Range: bytes a-c/*` where
//!   `c = min(b, length - 1)`; the total is always `*`;
//! - a range starting at or past the end of the share: 204, empty body (an empty range
//!   cannot be written as a `Content-Range`);
//! - anything else (open `a-`, suffix `-n`, several ranges, other units, garbage): 416.
//!
//! Writes (`PATCH`): `Content-Range: bytes a-b/*` (or `/total`) says where the body
//! goes; missing or unparsable is a 416.

use crate::storage::ByteRange;

/// The outcome of reading a `Range` header against a share of known length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// No `Range`: 200 and all of the share.
    Whole,
    /// 206 with this (clipped, non-empty) range.
    Partial(ByteRange),
    /// 204: the range starts at or past the end.
    Empty,
    /// 416: a range Tahoe does not serve.
    Unsatisfiable,
}

/// A parsed single closed range `[begin, end)` from a `Range` request header, before
/// clipping to the share. `None` where Tahoe answers 416.
///
/// Numbers larger than `u64` are clamped: Tahoe (Python integers) clips the end to
/// the share length and answers 204 for a start past it, which clamping preserves.
pub fn parse_range(value: &str) -> Option<(u64, u64)> {
    // werkzeug: `units=ranges`; units are compared lower-cased.
    let (units, spec) = value.split_once('=')?;
    if !units
        .trim_matches([' ', '\t'])
        .eq_ignore_ascii_case("bytes")
    {
        return None;
    }
    let mut items = spec.split(',');
    let item = items.next()?.trim_matches([' ', '\t']);
    if items.next().is_some() {
        // More than one range (werkzeug may parse them; Tahoe refuses them).
        return None;
    }
    if item.starts_with('-') {
        return None; // suffix range
    }
    let (b, e) = item.split_once('-')?;
    let begin = plain_int(b)?;
    let e = e.trim_matches([' ', '\t']);
    if e.is_empty() {
        return None; // open-ended
    }
    let end = plain_int(e)?.saturating_add(1);
    if begin >= end {
        return None;
    }
    Some((clamp(begin), clamp(end)))
}

fn clamp(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// werkzeug's `_plain_int`: optional surrounding blanks, ASCII digits only. (It also
/// allows a leading `-`, which can never form a valid byte position.)
fn plain_int(s: &str) -> Option<u128> {
    let s = s.trim_matches([' ', '\t']);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Saturate: more digits than u128 holds still means "very large".
    Some(s.parse::<u128>().unwrap_or(u128::MAX))
}

/// Decide a read from the optional `Range` header and the share's length.
pub fn plan_read(range_header: Option<&str>, share_length: u64) -> ReadPlan {
    let Some(value) = range_header else {
        return ReadPlan::Whole;
    };
    match parse_range(value) {
        None => ReadPlan::Unsatisfiable,
        Some((begin, end)) => clip(begin, end, share_length),
    }
}

/// Clip a requested range to a share of `share_length` bytes.
pub fn clip(begin: u64, end: u64, share_length: u64) -> ReadPlan {
    let end = end.min(share_length);
    if begin >= end {
        ReadPlan::Empty
    } else {
        ReadPlan::Partial(ByteRange { begin, end })
    }
}

/// The `Content-Range` value of a 206 response: `bytes a-b/*` (inclusive end).
pub fn content_range_value(r: ByteRange) -> String {
    format!("bytes {}-{}/*", r.begin, r.end - 1)
}

/// The `Range` value a client sends to read `[offset, offset + length)`; `None` for an
/// empty read, which HTTP cannot express.
pub fn range_value(offset: u64, length: u64) -> Option<String> {
    if length == 0 {
        return None;
    }
    let last = offset.saturating_add(length - 1);
    Some(format!("bytes={offset}-{last}"))
}

/// Parse a `Content-Range` header (werkzeug's `parse_content_range_header` plus
/// Tahoe's `units == "bytes"` check) into `[begin, end)`.
///
/// `bytes */N` parses in werkzeug but then fails an assertion in Tahoe (500); it is
/// `None` here (416), like every other unusable value.
pub fn parse_content_range(value: &str) -> Option<ByteRange> {
    let value = value.trim_matches([' ', '\t']);
    let (units, rangedef) = value.split_once(' ')?;
    if units != "bytes" {
        return None;
    }
    let (rng, length) = rangedef.split_once('/')?;
    let length = if length == "*" {
        None
    } else {
        Some(plain_int(length)?)
    };
    let (b, e) = rng.split_once('-')?;
    let begin = plain_int(b)?;
    let end = plain_int(e)?.checked_add(1)?;
    // werkzeug's is_byte_range_valid: 0 <= start < stop, and start < length if given.
    if begin >= end || length.is_some_and(|l| begin >= l) {
        return None;
    }
    Some(ByteRange {
        begin: u64::try_from(begin).ok()?,
        end: u64::try_from(end).ok()?,
    })
}

/// The `Content-Range` value a client sends with a PATCH of `[offset, offset+len)`.
pub fn patch_content_range_value(offset: u64, len: u64) -> Option<String> {
    if len == 0 {
        return None;
    }
    Some(format!(
        "bytes {}-{}/*",
        offset,
        offset.checked_add(len - 1)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br(begin: u64, end: u64) -> ByteRange {
        ByteRange { begin, end }
    }

    #[test]
    fn reads_as_tahoe_serves_them() {
        // The cases of the Tahoe 1.20 probe, on a 48-byte share.
        let p = |h: Option<&str>| plan_read(h, 48);
        assert_eq!(p(None), ReadPlan::Whole);
        assert_eq!(p(Some("bytes=0-9")), ReadPlan::Partial(br(0, 10)));
        assert_eq!(p(Some("bytes=40-99")), ReadPlan::Partial(br(40, 48)));
        assert_eq!(p(Some("bytes=48-60")), ReadPlan::Empty);
        assert_eq!(p(Some("bytes=100-200")), ReadPlan::Empty);
        assert_eq!(p(Some("bytes=0-")), ReadPlan::Unsatisfiable);
        assert_eq!(p(Some("bytes=-5")), ReadPlan::Unsatisfiable);
        assert_eq!(p(Some("bytes=0-1,3-4")), ReadPlan::Unsatisfiable);
        assert_eq!(p(Some("foo")), ReadPlan::Unsatisfiable);
        assert_eq!(p(Some("items=0-4")), ReadPlan::Unsatisfiable);
        assert_eq!(p(Some("")), ReadPlan::Unsatisfiable);
        // werkzeug: case-insensitive units, blanks allowed, end before start refused.
        assert_eq!(p(Some("BYTES= 1 - 2 ")), ReadPlan::Partial(br(1, 3)));
        assert_eq!(p(Some("bytes=5-4")), ReadPlan::Unsatisfiable);
        assert_eq!(p(Some("bytes=+1-2")), ReadPlan::Unsatisfiable);
        // Huge numbers are clipped, not refused.
        assert_eq!(
            p(Some("bytes=0-99999999999999999999999999")),
            ReadPlan::Partial(br(0, 48))
        );
        assert_eq!(
            p(Some("bytes=99999999999999999999-99999999999999999999")),
            ReadPlan::Empty
        );
        // Empty share: any range is 204.
        assert_eq!(plan_read(Some("bytes=0-0"), 0), ReadPlan::Empty);
    }

    #[test]
    fn content_range_formatting() {
        assert_eq!(content_range_value(br(0, 10)), "bytes 0-9/*");
        assert_eq!(range_value(0, 10).unwrap(), "bytes=0-9");
        assert_eq!(range_value(5, 0), None);
        assert_eq!(
            range_value(u64::MAX - 1, 10).unwrap(),
            format!("bytes={}-{}", u64::MAX - 1, u64::MAX)
        );
        assert_eq!(patch_content_range_value(16, 32).unwrap(), "bytes 16-47/*");
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(416);
        let alphabet = b"bytes=-,/* 0123456789\t";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..24);
            let s: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
                .collect();
            let _ = plan_read(Some(&s), rng.gen_range(0..100));
            if let Some(r) = parse_content_range(&s) {
                assert!(r.begin < r.end, "{s:?}");
            }
            if let Some((b, e)) = parse_range(&s) {
                assert!(b < e, "{s:?}");
            }
        }
    }

    #[test]
    fn patch_content_range() {
        let p = parse_content_range;
        assert_eq!(p("bytes 0-15/*"), Some(br(0, 16)));
        assert_eq!(p("bytes 0-15/48"), Some(br(0, 16)));
        // werkzeug checks only start < length, not end.
        assert_eq!(p("bytes 40-55/48"), Some(br(40, 56)));
        assert_eq!(p("bytes 48-55/48"), None);
        assert_eq!(p("bytes */48"), None);
        assert_eq!(p("bytes 0-15"), None);
        assert_eq!(p("Bytes 0-15/*"), None);
        assert_eq!(p("items 0-15/*"), None);
        assert_eq!(p("bytes 15-0/*"), None);
        assert_eq!(p("bytes 0-x/*"), None);
        assert_eq!(p(""), None);
        assert_eq!(p(" bytes 1-1/* "), Some(br(1, 2)));
    }
}
