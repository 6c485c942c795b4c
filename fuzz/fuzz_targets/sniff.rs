//! The one-port sniffer: the first bytes of a connection, arriving in pieces, pick
//! Foolscap, TLS or neither, and every byte read is handed on unchanged.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use swampgate::daemon::sniff::{classify, sniff, Prefixed, Protocol, SNIFF_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(ctl).max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut w, mut r) = tokio::io::duplex(64 * 1024);
        let input = stream.to_vec();
        let writer = tokio::spawn(async move {
            for piece in input.chunks(chunk) {
                if w.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        match sniff(&mut r, Duration::from_secs(30)).await {
            Ok((proto, prefix)) => {
                assert!(prefix.len() >= SNIFF_BYTES);
                assert_eq!(proto, classify(&prefix));
                assert_eq!(&prefix[..], &stream[..prefix.len()]);
                if stream.starts_with(b"GET /id/") {
                    assert_eq!(proto, Protocol::Foolscap);
                }
                // Everything written comes out of the prefixed stream, in order.
                let mut s = Prefixed::new(prefix, r);
                let mut all = Vec::new();
                let _ = writer.await;
                s.read_to_end(&mut all).await.expect("read");
                assert_eq!(all, stream);
            }
            Err(_) => assert!(stream.len() < SNIFF_BYTES),
        }
    });
});
