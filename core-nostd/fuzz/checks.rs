//! The properties the fuzz targets check, shared with the regression test
//! that replays the stored corpus (`core-nostd/tests/fuzz_corpus.rs`).
#![allow(dead_code)]

use std::convert::Infallible;

use backup_core::codec::{Decoded, RequestDecoder, ResponseDecoder};
use backup_core::dispatch::SendFile;
use backup_core::{Config, Dispatcher, Outcome, RamStore};

/// Arbitrary bytes, split at input-chosen points, into the request decoder:
/// no panic, never consuming past a message, and every header it accepts
/// re-emits to the same bytes.
pub fn request_decoder(data: &[u8]) {
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
}

/// Arbitrary bytes into the response decoder: no panic, payload never
/// beyond the declared size, and end of input always has an answer.
pub fn response_decoder(data: &[u8]) {
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
}

struct Conn<'a> {
    input: &'a [u8],
    step: usize,
    output: Vec<u8>,
}

impl embedded_io::ErrorType for Conn<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.step).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl embedded_io::Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_io::ReadReady for Conn<'_> {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}

impl SendFile for Conn<'_> {}

/// Arbitrary bytes as a whole session against the dispatcher and a RAM
/// store: no panic, and everything it writes decodes as whole responses.
pub fn dispatcher(data: &[u8]) {
    let Some((&step, input)) = data.split_first() else { return };
    let mut store = Box::new(RamStore::<8, 4096>::new());
    let mut buf = vec![0u8; 600 + backup_core::dispatch::GROUP_COMMIT_AREA_LEN];
    // Group commit on, so its held answers are fuzzed too (a RAM store syncs at once).
    let config = Config { max_file_size: 2048, group_commit: step & 1 == 1, ..Config::default() };
    let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, config).expect("buffer is large enough");
    let mut conn = Conn { input, step: usize::from(step % 32) + 1, output: Vec::new() };
    let _ = dispatcher.serve(&mut conn, &mut |_: &Outcome<'_>| {});
    let mut dec = ResponseDecoder::new();
    let mut rest = &conn.output[..];
    while !rest.is_empty() {
        let (used, _) = dec.feed(rest).expect("the dispatcher writes valid responses");
        rest = &rest[used..];
        if dec.is_complete() {
            dec.reset();
        }
    }
    assert!(dec.finish().is_ok(), "the last response is whole");
}
