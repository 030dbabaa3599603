//! Every message decodes the same however its bytes are split: at every
//! single boundary, one byte at a time, and at random points (proptest).

use backup_core::codec::{Decoded, RequestDecoder, ResponseDecoder};
use backup_core::{Op, Request, Response, Status};
use proptest::prelude::*;

/// A decoded message: its header fields rendered for comparison, and its payload.
type Decoded2 = (String, Vec<u8>);

/// What the two decoders have in common, for one feeding loop.
trait Decoder: Default {
    fn feed<'i>(&mut self, input: &'i [u8]) -> (usize, Decoded<'i>);
    fn is_complete(&self) -> bool;
    fn header_text(&self) -> String;
}

impl Decoder for RequestDecoder {
    fn feed<'i>(&mut self, input: &'i [u8]) -> (usize, Decoded<'i>) {
        RequestDecoder::feed(self, input).unwrap()
    }
    fn is_complete(&self) -> bool {
        RequestDecoder::is_complete(self)
    }
    fn header_text(&self) -> String {
        format!("{:?}", self.header().unwrap())
    }
}

impl Decoder for ResponseDecoder {
    fn feed<'i>(&mut self, input: &'i [u8]) -> (usize, Decoded<'i>) {
        ResponseDecoder::feed(self, input).unwrap()
    }
    fn is_complete(&self) -> bool {
        ResponseDecoder::is_complete(self)
    }
    fn header_text(&self) -> String {
        format!("{:?}", self.header().unwrap())
    }
}

/// Feeds one message in the given pieces; it must end exactly with them.
fn feed_all<D: Decoder>(pieces: &[&[u8]]) -> Decoded2 {
    let mut dec = D::default();
    let mut payload = Vec::new();
    for piece in pieces {
        let mut pos = 0;
        while pos < piece.len() {
            assert!(!dec.is_complete(), "input left after a complete message");
            let (used, ev) = dec.feed(&piece[pos..]);
            if let Decoded::Payload(p) = ev {
                payload.extend_from_slice(p);
            }
            pos += used;
        }
    }
    assert!(dec.is_complete());
    (dec.header_text(), payload)
}

fn feed_request(pieces: &[&[u8]]) -> Decoded2 {
    feed_all::<RequestDecoder>(pieces)
}

fn feed_response(pieces: &[&[u8]]) -> Decoded2 {
    feed_all::<ResponseDecoder>(pieces)
}

fn request_bytes(req: &Request<'_>, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 300];
    let n = req.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf.extend_from_slice(payload);
    buf
}

fn response_bytes(resp: &Response<'_>, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 300];
    let n = resp.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf.extend_from_slice(payload);
    buf
}

fn sample_requests() -> Vec<Vec<u8>> {
    let long = "n".repeat(255);
    vec![
        request_bytes(&Request { user_id: 1, version: 2, op: Op::Backup, name: "f", size: 5 }, b"hello"),
        request_bytes(&Request { user_id: u32::MAX, version: 1, op: Op::Backup, name: &long, size: 0 }, b""),
        request_bytes(&Request { user_id: 9, version: 2, op: Op::Restore, name: "ä.txt", size: 0 }, b""),
        request_bytes(&Request { user_id: 9, version: 2, op: Op::Delete, name: ".bashrc", size: 0 }, b""),
        request_bytes(&Request { user_id: 9, version: 2, op: Op::List, name: "", size: 0 }, b""),
    ]
}

fn sample_responses() -> Vec<Vec<u8>> {
    vec![
        response_bytes(&Response { version: 2, status: Status::Restored, name: b"f", size: 5 }, b"hello"),
        response_bytes(&Response { version: 2, status: Status::Listed, name: b"", size: 4 }, b"a\nb\n"),
        response_bytes(&Response { version: 1, status: Status::Done, name: b"f", size: 0 }, b""),
        response_bytes(&Response { version: 1, status: Status::NotFound, name: b"f", size: 0 }, b""),
        response_bytes(&Response { version: 1, status: Status::NoFiles, name: b"", size: 0 }, b""),
        response_bytes(&Response { version: 1, status: Status::Error, name: b"", size: 3 }, b"bad"),
    ]
}

/// Decoding `bytes` split at any one point, or fed a byte at a time, gives
/// what decoding it whole gives.
fn assert_every_split_decodes_identically(bytes: &[u8], feed: fn(&[&[u8]]) -> Decoded2) {
    let whole = feed(&[bytes]);
    for cut in 1..bytes.len() {
        assert_eq!(feed(&[&bytes[..cut], &bytes[cut..]]), whole, "cut at {cut}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(feed(&singles), whole, "one byte at a time");
}

#[test]
fn requests_split_at_every_boundary_decode_identically() {
    for bytes in sample_requests() {
        assert_every_split_decodes_identically(&bytes, feed_request);
    }
}

#[test]
fn responses_split_at_every_boundary_decode_identically() {
    for bytes in sample_responses() {
        assert_every_split_decodes_identically(&bytes, feed_response);
    }
}

#[test]
fn a_reader_asking_for_exactly_needed_bytes_never_reads_into_the_next_request() {
    let stream: Vec<u8> = sample_requests().concat();
    let mut dec = RequestDecoder::new();
    let mut pos = 0;
    let mut messages = 0;
    while pos < stream.len() {
        dec.reset();
        while !dec.is_complete() {
            let want = dec.needed();
            let (used, _) = dec.feed(&stream[pos..pos + want]).unwrap();
            assert_eq!(used, want);
            pos += used;
        }
        messages += 1;
    }
    assert_eq!(messages, 5);
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._ äß日-]{1,60}".prop_filter("dot names are invalid", |n| n != "." && n != "..")
}

fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        pieces.push(bytes[last..p].to_vec());
        last = p;
    }
    pieces
}

proptest! {
    #[test]
    fn random_requests_survive_random_fragmentation(
        user_id: u32,
        version in 1u8..=255,
        op in prop::sample::select(vec![Op::Backup, Op::Restore, Op::Delete, Op::List]),
        name in name_strategy(),
        payload in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let name = if op == Op::List { "" } else { name.as_str() };
        let payload = if op == Op::Backup { payload } else { Vec::new() };
        let req = Request { user_id, version, op, name, size: payload.len() as u32 };
        let bytes = request_bytes(&req, &payload);
        let pieces = split(&bytes, &cuts);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let (header, got) = feed_request(&refs);
        prop_assert_eq!(header, format!("{req:?}"));
        prop_assert_eq!(got, payload);
    }

    #[test]
    fn random_responses_survive_random_fragmentation(
        version: u8,
        status in any::<u16>(),
        name in prop::collection::vec(any::<u8>(), 0..=255),
        payload in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let resp = Response { version, status: Status::from(status), name: &name, size: payload.len() as u32 };
        let bytes = response_bytes(&resp, &payload);
        let pieces = split(&bytes, &cuts);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let (header, got) = feed_response(&refs);
        prop_assert_eq!(header, format!("{resp:?}"));
        prop_assert_eq!(got, payload);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut req = RequestDecoder::new();
        let mut resp = ResponseDecoder::new();
        for piece in bytes.chunks(7) {
            let _ = req.feed(piece);
            let _ = resp.feed(piece);
            let _ = (req.needed(), resp.needed(), req.header(), resp.header());
        }
        let _ = (req.finish(), resp.finish());
    }
}
