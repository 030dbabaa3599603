//! Arbitrary bytes as a whole session against the dispatcher and a RAM
//! store: no panic, and every response it writes decodes.
#![no_main]

use std::convert::Infallible;

use backup_core::codec::ResponseDecoder;
use backup_core::dispatch::SendFile;
use backup_core::ram_store::RamReader;
use backup_core::{Config, Dispatcher, Outcome, RamStore};
use libfuzzer_sys::fuzz_target;

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

impl SendFile<RamReader> for Conn<'_> {}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let mut store = Box::new(RamStore::<8, 4096>::new());
    let mut buf = [0u8; 600];
    let config = Config { max_file_size: 2048, ..Config::default() };
    let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, config).expect("buffer is large enough");
    let mut conn = Conn { input, step: usize::from(step % 32) + 1, output: Vec::new() };
    let _ = dispatcher.serve(&mut conn, &mut |_: &Outcome<'_>| {});
    // Everything written is a sequence of whole, decodable responses.
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
});
