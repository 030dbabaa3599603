//! Arbitrary bytes, split at fuzzer-chosen points, into the response decoder:
//! no panic, payload delivered never exceeds the declared size, and end of
//! input always has an answer.
#![no_main]

use backup_core::codec::{Decoded, ResponseDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else { return };
    let step = usize::from(step % 64) + 1;
    let mut dec = ResponseDecoder::new();
    let mut payload = 0u64;
    let mut pos = 0;
    while pos < stream.len() {
        let end = (pos + step).min(stream.len());
        let Ok((used, event)) = dec.feed(&stream[pos..end]) else { return };
        if let Decoded::Payload(chunk) = event {
            payload += chunk.len() as u64;
            let size = dec.header().expect("payload only after a header").size;
            assert!(payload <= u64::from(size));
        }
        if dec.is_complete() {
            dec.reset();
            payload = 0;
        }
        pos += used;
    }
    let _ = dec.finish();
    let _ = dec.header();
});
