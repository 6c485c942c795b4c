//! The introducer relay's persisted announcements file (`introducer::persist`), as
//! read back at start: arbitrary bytes for the file.
//!
//! No panic. What `decode` accepts encodes and decodes back to the same entries
//! (an entry's signed bytes are UTF-8 text, so nothing is left out). Restored into a
//! relay, exactly the entries that verify are candidates, and every announcement the
//! relay then holds verifies, is one of them, and is saved again (snapshot) as it
//! was read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swampgate::introducer::persist::{decode, encode};
use swampgate::introducer::Relay;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = decode(data) else {
        return;
    };
    let again = decode(&encode(&entries)).expect("what we write reads back");
    assert_eq!(again.len(), entries.len());
    for (a, b) in entries.iter().zip(&again) {
        assert_eq!(a, b);
    }
    let verifying = entries.iter().filter(|(_, s)| s.verify().is_ok()).count();
    let relay = Relay::new("fuzz", None);
    let taken = relay.restore(entries.clone());
    assert!(taken <= verifying, "{taken} taken, {verifying} verify");
    let (_, held) = relay.snapshot();
    assert!(held.len() <= taken);
    for (origin, signed) in &held {
        let ann = signed.verify().expect("a restored announcement verifies");
        let _ = (ann.service(), ann.key(), ann.seqnum());
        assert!(
            entries.iter().any(|(o, s)| o == origin && s == signed),
            "the relay holds only what it read"
        );
    }
    // Saved again, it reads back the same.
    let saved = decode(&encode(&held)).expect("a snapshot reads back");
    assert_eq!(saved.len(), held.len());
});
