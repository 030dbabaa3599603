//! Arbitrary bytes, split at fuzzer-chosen points, into the request decoder:
//! no panic, never consuming past a message, and every header it accepts
//! re-emits to the same bytes.
#![no_main]

use backup_core::codec::{Decoded, RequestDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else { return };
    let step = usize::from(step % 64) + 1;
    let mut dec = RequestDecoder::new();
    let mut header_bytes = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let end = (pos + step).min(stream.len());
        let piece = &stream[pos..end];
        let Ok((used, event)) = dec.feed(piece) else { return };
        assert!(used <= piece.len());
        if dec.header().is_none() || event == Decoded::Header {
            header_bytes.extend_from_slice(&piece[..used]);
        }
        if event == Decoded::Header {
            let header = dec.header().expect("a header after Decoded::Header");
            let mut buf = [0u8; backup_core::wire::REQUEST_MAX_HEADER_LEN];
            let n = header.emit(&mut buf).expect("an accepted header fits");
            assert_eq!(&buf[..n], &header_bytes[..], "re-emitted header differs");
        }
        if event == Decoded::EndOfSession {
            return;
        }
        if dec.is_complete() {
            dec.reset();
            header_bytes.clear();
        }
        pos += used;
        if used == 0 && !dec.is_complete() {
            assert!(dec.needed() > 0, "decoder stalled");
        }
    }
    let _ = dec.finish();
});
