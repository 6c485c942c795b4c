//! Choosing the body encoding of a request and a response. Pure.
//!
//! Tahoe 1.20 speaks CBOR only: a request body must be `application/cbor` (or have no
//! `Content-Type`), else 415; a response is CBOR when the *best* `Accept` item (highest
//! quality, first listed among equals, werkzeug's rule) is `application/cbor` or when
//! there is no `Accept`, else 406 — even for `Accept: */*`.
//!
//! The specification asks for JSON as well, so swampgate adds it without changing
//! anything a CBOR client sees (Tahoe's client always sends `Accept: application/cbor`
//! and `Content-Type: application/cbor`):
//! - `Content-Type: application/json` request bodies are accepted;
//! - a best `Accept` item of `application/json` gets JSON;
//! - a best item of `*/*` or `application/*` (curl's and most libraries' default) gets
//!   CBOR, the protocol's default encoding, where Tahoe says 406. The spec reads a
//!   request without `Accept` as CBOR, and a wildcard says the client takes anything;
//!   refusing it only hurts ad hoc use.
//!
//! Everything else stays a 406 / 415 as in Tahoe. Media types compare
//! case-insensitively (RFC 9110), where werkzeug compares exactly.

/// A body encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Cbor,
    Json,
}

pub const CBOR_MIME: &str = "application/cbor";
pub const JSON_MIME: &str = "application/json";
pub const OCTET_STREAM_MIME: &str = "application/octet-stream";

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Cbor => CBOR_MIME,
            Format::Json => JSON_MIME,
        }
    }
}

/// The media type of a `Content-Type` value without its parameters.
pub fn essence(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// The encoding of a request body from its `Content-Type`; `None` means 415.
pub fn request_format(content_type: Option<&str>) -> Option<Format> {
    let ct = match content_type.map(essence) {
        None | Some("") => return Some(Format::Cbor),
        Some(ct) => ct,
    };
    if ct.eq_ignore_ascii_case(CBOR_MIME) {
        Some(Format::Cbor)
    } else if ct.eq_ignore_ascii_case(JSON_MIME) {
        Some(Format::Json)
    } else {
        None
    }
}

/// The encoding of a response from the request's `Accept` values; `None` means 406.
///
/// Tahoe reads only the first `Accept` header; all of them are read here, which is the
/// same for every client that sends one.
pub fn response_format<'a>(accept: impl IntoIterator<Item = &'a str>) -> Option<Format> {
    let mut items: Vec<(String, f64, usize)> = Vec::new();
    for value in accept {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if mime.is_empty() {
                continue;
            }
            let mut q = 1.0;
            let mut other_params = false;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("q") {
                    match parse_q(v.trim()) {
                        Some(v) => q = v,
                        None => {
                            q = -1.0;
                        }
                    }
                } else {
                    other_params = true;
                }
            }
            // werkzeug skips items with an invalid q.
            if !(0.0..=1.0).contains(&q) {
                continue;
            }
            // An item with other parameters never equals a bare media type in
            // werkzeug's `best`; keep the rule.
            let mime = if other_params {
                format!("{mime};params")
            } else {
                mime
            };
            let n = items.len();
            items.push((mime, q, n));
        }
    }
    if items.is_empty() {
        return Some(Format::Cbor);
    }
    // werkzeug's Accept sorts by (specificity, quality) descending, stably; for the
    // plain Accept class only a bare "*" is unspecific.
    items.sort_by(|a, b| {
        let sa = a.0 != "*";
        let sb = b.0 != "*";
        sb.cmp(&sa)
            .then(b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal))
            .then(a.2.cmp(&b.2))
    });
    let best = &items[0];
    if best.1 <= 0.0 {
        return None;
    }
    match best.0.as_str() {
        CBOR_MIME => Some(Format::Cbor),
        JSON_MIME => Some(Format::Json),
        "*/*" | "application/*" => Some(Format::Cbor),
        _ => None,
    }
}

fn parse_q(v: &str) -> Option<f64> {
    // werkzeug: `-?\d+(\.\d+)?`.
    let body = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rf(v: &[&str]) -> Option<Format> {
        response_format(v.iter().copied())
    }

    #[test]
    fn accept_as_tahoe_for_cbor_clients() {
        assert_eq!(rf(&[]), Some(Format::Cbor));
        assert_eq!(rf(&[""]), Some(Format::Cbor));
        assert_eq!(rf(&["application/cbor"]), Some(Format::Cbor));
        assert_eq!(
            rf(&["application/json;q=0.5, application/cbor"]),
            Some(Format::Cbor)
        );
        assert_eq!(rf(&["text/html"]), None);
        assert_eq!(rf(&["application/cbor;q=0"]), None);
        assert_eq!(rf(&["application/cbor; charset=x"]), None);
    }

    #[test]
    fn accept_extensions() {
        assert_eq!(rf(&["application/json"]), Some(Format::Json));
        assert_eq!(
            rf(&["application/cbor, application/json"]),
            Some(Format::Cbor)
        );
        assert_eq!(
            rf(&["application/json, application/cbor"]),
            Some(Format::Json)
        );
        assert_eq!(rf(&["*/*"]), Some(Format::Cbor));
        assert_eq!(rf(&["application/*"]), Some(Format::Cbor));
        assert_eq!(rf(&["*/*;q=0.1, application/json"]), Some(Format::Json));
        assert_eq!(rf(&["APPLICATION/JSON"]), Some(Format::Json));
        // An invalid q drops the item.
        assert_eq!(rf(&["application/json;q=x, text/html"]), None);
    }

    #[test]
    fn content_type() {
        assert_eq!(request_format(None), Some(Format::Cbor));
        assert_eq!(request_format(Some("")), Some(Format::Cbor));
        assert_eq!(request_format(Some("application/cbor")), Some(Format::Cbor));
        assert_eq!(
            request_format(Some("application/json; charset=utf-8")),
            Some(Format::Json)
        );
        assert_eq!(request_format(Some("text/plain")), None);
    }
}
