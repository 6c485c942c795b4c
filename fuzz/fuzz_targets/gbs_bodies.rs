//! GBS request and response bodies, CBOR and JSON: every decoder the server and the
//! client run on bytes from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swampgate::gbs::codec::{AllocateBody, Body, CorruptBody, ReadTestWriteBody, ShareSet};
use swampgate::gbs::media::Format;
use swampgate::storage::{AllocateResult, ReadTestWriteResult, VersionInfo, WriteProgress};

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
            let _ = AllocateBody::decode(body, fmt);
        }
        1 => {
            let _ = CorruptBody::decode(body, fmt);
        }
        2 => {
            let _ = ReadTestWriteBody::decode(body, fmt);
        }
        3 => {
            let _ = VersionInfo::decode(body, fmt);
        }
        4 => {
            let _ = AllocateResult::decode(body, fmt);
        }
        5 => {
            let _ = ShareSet::decode(body, fmt);
        }
        6 => {
            let _ = WriteProgress::decode(body, fmt);
        }
        _ => {
            let _ = ReadTestWriteResult::decode(body, fmt);
        }
    }
});
