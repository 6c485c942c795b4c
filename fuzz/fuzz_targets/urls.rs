//! FURL, connection-hint, NURL and upstream parsing: no panic, and what parses
//! prints back to a string that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swampgate::daemon::config::{parse_location, Upstream};
use swampgate::foolscap::furl::{Furl, Hint};
use swampgate::gbs::nurl::Nurl;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = Furl::parse(s) {
        let again = Furl::parse(&f.to_string()).expect("a printed FURL parses");
        assert_eq!(again, f);
    }
    if let Ok(h) = Hint::parse(s) {
        let _ = h.to_string();
    }
    if let Ok(n) = s.parse::<Nurl>() {
        let again: Nurl = n.to_string().parse().expect("a printed NURL parses");
        assert_eq!(again, n);
        let _ = n.dial_address();
        let _ = n.redacted();
        let _ = n.spki_hash_bytes();
    }
    let _ = Upstream::parse(s);
    let _ = parse_location(s);
});
