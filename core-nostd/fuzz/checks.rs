//! The properties the fuzz targets check, shared with the regression test
//! that replays the stored corpus (`core-nostd/tests/fuzz_corpus.rs`).
#![allow(dead_code)]

use std::convert::Infallible;

use backup_core::codec::{Decoded, RequestDecoder, ResponseDecoder};
use backup_core::dispatch::SendFile;
use backup_core::ram_store::RamReader;
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

impl SendFile<RamReader> for Conn<'_> {}

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

/// Yields the same bytes over and over: fixed ephemeral keys, so every run
/// of a fuzz input is the same session.
struct FixedRng(u8);

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        u32::from(self.0)
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.0)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(self.0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        dest.fill(self.0);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedRng {}

const SECURE_USER: u32 = 7;
const SECURE_KEY: [u8; 32] = [0x5a; 32];
const SECURE_RX: usize = 4098;

fn secure_lookup(user: u32) -> Option<[u8; 32]> {
    (user == SECURE_USER).then_some(SECURE_KEY)
}

/// A genuine client's first flight and the sealer of its session with a
/// server whose RNG is `FixedRng(2)`: the server's answer is the same each
/// time, so records sealed here open on a fresh server fed the same flight.
fn genuine_client() -> (Vec<u8>, backup_core::secure::Sealer) {
    use backup_core::secure::{CLIENT_FIRST_FLIGHT_LEN, ClientHandshake, server_handshake};
    let mut flight = [0u8; CLIENT_FIRST_FLIGHT_LEN];
    let (mut client, n) =
        ClientHandshake::start(SECURE_USER, &SECURE_KEY, 4096, &mut FixedRng(1), &mut flight)
            .expect("a valid start");
    let mut conn = Conn { input: &flight[..n], step: usize::MAX, output: Vec::new() };
    server_handshake(&mut conn, secure_lookup, &mut FixedRng(2), vec![0u8; SECURE_RX], vec![0u8; 4096])
        .expect("the genuine client is accepted");
    client.feed(&conn.output);
    let (sealer, _) = client.finish().expect("the server's answer opens").split();
    (flight[..n].to_vec(), sealer)
}

/// Reads a secure stream to its end: the plaintext delivered, and whether
/// it ended in a fault (and, after one, every read fails).
fn read_to_end<S: embedded_io::Read>(stream: &mut S) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 97];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, false),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {
                assert!(stream.read(&mut buf).is_err(), "a failed stream stays failed");
                return (got, true);
            }
        }
    }
}

/// Arbitrary bytes against the server side of a version-3 session. The
/// first byte picks the read size and one of three shapes:
/// - the bytes as HELLO, message 1 and records (user 7 known or not): no
///   panic, and the server writes exactly message 2, exactly the 30-byte
///   `authentication failed`, or nothing;
/// - a genuine handshake, then the bytes as records: no panic, nothing
///   written after message 2;
/// - a genuine handshake, then records sealed from the bytes with perhaps
///   one bit flipped: what is delivered is exactly the plaintext of the
///   records before the damaged one, and the damage is a fault, not an end.
pub fn secure_server(data: &[u8]) {
    use backup_core::secure::{
        AUTH_FAILED_LEN, HandshakeError, MSG2_FRAMED_LEN, SecureError, server_handshake,
    };
    let Some((&ctl, rest)) = data.split_first() else { return };
    let step = usize::from(ctl >> 2) % 32 + 1;
    let rx = || vec![0u8; SECURE_RX];
    match ctl & 3 {
        mode @ (0 | 1) => {
            let known = mode == 1;
            let mut conn = Conn { input: rest, step, output: Vec::new() };
            let lookup = |user| if known { secure_lookup(user) } else { None };
            match server_handshake(&mut conn, lookup, &mut FixedRng(2), rx(), vec![0u8; 4096]) {
                Ok(mut stream) => {
                    let _ = read_to_end(&mut stream);
                    drop(stream);
                    assert_eq!(conn.output.len(), MSG2_FRAMED_LEN);
                }
                Err(SecureError::Handshake(HandshakeError::AuthenticationFailed)) => {
                    assert_eq!(conn.output.len(), AUTH_FAILED_LEN);
                    assert!(conn.output.ends_with(b"authentication failed"));
                }
                Err(_) => assert!(conn.output.is_empty(), "no answer but message 2 or the refusal"),
            }
        }
        2 => {
            let (mut input, _) = genuine_client();
            input.extend_from_slice(rest);
            let mut conn = Conn { input: &input, step, output: Vec::new() };
            let mut stream =
                server_handshake(&mut conn, secure_lookup, &mut FixedRng(2), rx(), vec![0u8; 4096])
                    .expect("the genuine client is accepted");
            let _ = read_to_end(&mut stream);
            drop(stream);
            assert_eq!(conn.output.len(), MSG2_FRAMED_LEN, "nothing sent after message 2");
        }
        _ => {
            let Some((&flip, mut chunks)) = rest.split_first() else { return };
            let (mut input, mut sealer) = genuine_client();
            let records_start = input.len();
            // Each record: its plaintext, and where it ends in the input.
            let mut records: Vec<(Vec<u8>, usize)> = Vec::new();
            while let Some((&len, tail)) = chunks.split_first() {
                let take = usize::from(len).min(tail.len());
                let (plain, next) = tail.split_at(take);
                chunks = next;
                if plain.is_empty() {
                    continue;
                }
                let mut out = vec![0u8; plain.len() + backup_core::secure::RECORD_OVERHEAD];
                let n = sealer.seal(plain, &mut out).expect("a record fits");
                input.extend_from_slice(&out[..n]);
                records.push((plain.to_vec(), input.len()));
            }
            let sealed = input.len() - records_start;
            let damaged = (flip != 0 && sealed > 0).then(|| records_start + usize::from(flip) * 7 % sealed);
            if let Some(at) = damaged {
                input[at] ^= 1 << (flip % 8);
            }
            let mut conn = Conn { input: &input, step, output: Vec::new() };
            let mut stream =
                server_handshake(&mut conn, secure_lookup, &mut FixedRng(2), rx(), vec![0u8; 4096])
                    .expect("the genuine client is accepted");
            let (got, faulted) = read_to_end(&mut stream);
            let intact: Vec<u8> = records
                .iter()
                .take_while(|(_, end)| damaged.is_none_or(|at| at >= *end))
                .flat_map(|(plain, _)| plain.iter().copied())
                .collect();
            assert_eq!(got, intact, "exactly the records before the damage are delivered");
            assert_eq!(faulted, damaged.is_some(), "damage is a fault, not an end");
        }
    }
}
