//! The accounting inputs: sizes and limits (`accounting::parse_size`,
//! `parse_limit`), the database URLs the ledger shows in messages
//! (`accounting::ledger::redact`), and the config file with `[accounting]` and
//! `[[link]]` (`daemon::config::Config::parse`).
//!
//! Byte 0 picks (`% 3`):
//! - 0: the rest is a size: no panic; `parse_limit` agrees with `parse_size` except
//!   for `none`; an error quotes the input;
//! - 1: the rest is `SCHEME\0USER\0PASSWORD\0HOST`, made into
//!   `SCHEME://USER:PASSWORD@HOST` (the scheme without `:` or `/`, the user
//!   without `:`, the host without `@`):
//!   `redact` shows nothing of the password (the same output for any other), and
//!   keeps the scheme and host;
//! - 2: the rest is a config file: no panic, and an error never contains the
//!   password of a `SCHEME://USER:PASSWORD@HOST` URL in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swampgate::accounting::ledger::redact;
use swampgate::accounting::{parse_limit, parse_size};
use swampgate::daemon::config::Config;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match ctl % 3 {
        0 => size(s),
        1 => url(s),
        _ => config(s),
    }
});

fn size(s: &str) {
    let size = parse_size(s);
    let limit = parse_limit(s);
    if s.trim().eq_ignore_ascii_case("none") {
        assert_eq!(limit, Ok(None));
    } else {
        assert_eq!(limit, size.clone().map(Some));
    }
    if let Err(e) = size {
        assert!(e.contains(&format!("{s:?}")), "{e}");
    }
}

fn url(s: &str) {
    let mut parts = s.splitn(4, '\0');
    let (Some(scheme), Some(user), Some(password), Some(host)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    // A scheme is a scheme (no `:` or `/`), so the URL's is this one.
    if scheme.contains([':', '/']) || user.contains(':') || host.contains('@') {
        return;
    }
    let shown = redact(&format!("{scheme}://{user}:{password}@{host}"));
    let other = redact(&format!("{scheme}://{user}:x@{host}"));
    assert_eq!(shown, other, "the password shows through");
    assert!(shown.starts_with(scheme), "{shown}");
    assert!(shown.ends_with(&format!("@{host}")), "{shown}");
}

/// The passwords of `SCHEME://USER:PASSWORD@` in `text`, found as simply as
/// possible: a user without `:`, `@`, `/`; a password without `@`, `/`, white
/// space, quotes, backslashes or control characters; neither empty nor all `*`
/// (what a password is replaced with).
fn passwords(text: &str) -> Vec<&str> {
    let stop = |c: char| c.is_whitespace() || c.is_control() || "\"'`\\".contains(c);
    let mut out = Vec::new();
    for (i, _) in text.match_indices("://") {
        let after = &text[i + 3..];
        let Some(colon) = after.find(|c: char| c == ':' || c == '@' || c == '/' || stop(c)) else {
            continue;
        };
        if !after[colon..].starts_with(':') {
            continue;
        }
        let pw_start = &after[colon + 1..];
        let Some(at) = pw_start.find(|c: char| c == '@' || c == '/' || stop(c)) else {
            continue;
        };
        if !pw_start[at..].starts_with('@') {
            continue;
        }
        let pw = &pw_start[..at];
        if !pw.is_empty() && !pw.chars().all(|c| c == '*') {
            out.push(pw);
        }
    }
    out
}

fn config(text: &str) {
    let Err(e) = Config::parse(text) else {
        return;
    };
    let shown = e.to_string();
    for pw in passwords(text) {
        // The error's own words (`config`, `line`, `:`) are no leak: a password
        // that the error of the same file with that password masked also
        // contains is not checked.
        let mask = if pw.contains('Q') { "Z" } else { "Q" };
        if let Err(masked) = Config::parse(&text.replace(pw, &mask.repeat(pw.chars().count()))) {
            if masked.to_string().contains(pw) {
                continue;
            }
        }
        assert!(
            !shown.contains(pw),
            "the error shows the password {pw:?}: {shown}"
        );
    }
}
