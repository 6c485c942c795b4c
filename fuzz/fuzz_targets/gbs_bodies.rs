//! GBS request and response bodies, CBOR and JSON: every decoder the server and the
//! client run on bytes from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swampgate::gbs::codec;
use swampgate::gbs::media::Format;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let fmt = if ctl & 0x80 == 0 {
        Format::Cbor
    } else {
        Format::Json
    };
    match ctl & 0x07 {
        0 => {
            let _ = codec::decode_allocate(body, fmt);
        }
        1 => {
            let _ = codec::decode_corrupt(body, fmt);
        }
        2 => {
            let _ = codec::decode_read_test_write(body, fmt);
        }
        3 => {
            let _ = codec::decode_version(body);
        }
        4 => {
            let _ = codec::decode_allocate_result(body);
        }
        5 => {
            let _ = codec::decode_share_set(body);
        }
        6 => {
            let _ = codec::decode_write_progress(body);
        }
        _ => {
            let _ = codec::decode_read_test_write_result(body);
        }
    }
});
