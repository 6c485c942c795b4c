//! Foolscap connection negotiation: the plaintext upgrade exchange and the HELLO and
//! DECISION blocks, as the acceptor and the initiator read them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swampgate::foolscap::negotiate::{
    block_end, check_upgrade_response, choose, encode_block, parse_block, parse_upgrade_request,
    Decision, Hello,
};

fuzz_target!(|data: &[u8]| {
    // The reader's view: find the block, then parse it every way a side might.
    let block = match block_end(data) {
        Ok(Some(end)) => &data[..end],
        Ok(None) => data,
        Err(_) => return,
    };
    let _ = parse_upgrade_request(block);
    let _ = check_upgrade_response(block);
    let Ok(map) = parse_block(block) else {
        return;
    };
    // A parsed block re-encodes to something that parses to the same map, unless a
    // value carries the line separator itself.
    if map
        .iter()
        .all(|(k, v)| !k.contains('\r') && !v.contains('\r') && !k.contains(':'))
    {
        let again = parse_block(&encode_block(&map)).expect("re-encoded block parses");
        let trimmed: std::collections::BTreeMap<_, _> = map
            .iter()
            .map(|(k, v)| (k.clone(), v.trim_start().to_string()))
            .collect();
        assert_eq!(again, trimmed);
    }
    if let Ok(hello) = Hello::parse(&map) {
        let _ = choose(&hello, &hello);
        let _ = hello.encode();
    }
    if let Ok(d) = Decision::parse(&map) {
        let back = parse_block(&d.encode()).expect("a DECISION we write parses");
        assert_eq!(Decision::parse(&back).ok(), Some(d));
    }
});
