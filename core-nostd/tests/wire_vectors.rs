//! Byte-exact vectors for every request and response form of PROTOCOL.md,
//! in both directions: emit produces exactly these bytes, and the streaming
//! decoders read them back.

use backup_core::codec::{Decoded, RequestDecoder, ResponseDecoder, ResponseEnd};
use backup_core::{Op, Request, Response, Status};

/// Feeds a whole message and returns the payload the decoder handed back.
fn decode_request(bytes: &[u8]) -> (RequestDecoder, Vec<u8>) {
    let mut dec = RequestDecoder::new();
    let mut payload = Vec::new();
    let mut pos = 0;
    while !dec.is_complete() {
        let (used, ev) = dec.feed(&bytes[pos..]).unwrap();
        if let Decoded::Payload(p) = ev {
            payload.extend_from_slice(p);
        }
        assert!(used > 0 || dec.is_complete(), "decoder stalled at {pos}");
        pos += used;
    }
    assert_eq!(pos, bytes.len(), "decoder must consume exactly one message");
    (dec, payload)
}

fn decode_response(bytes: &[u8]) -> (ResponseDecoder, Vec<u8>) {
    let mut dec = ResponseDecoder::new();
    let mut payload = Vec::new();
    let mut pos = 0;
    while !dec.is_complete() {
        let (used, ev) = dec.feed(&bytes[pos..]).unwrap();
        if let Decoded::Payload(p) = ev {
            payload.extend_from_slice(p);
        }
        pos += used;
    }
    assert_eq!(pos, bytes.len());
    (dec, payload)
}

fn emit_request(req: &Request<'_>) -> Vec<u8> {
    let mut buf = [0u8; 300];
    let n = req.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn emit_response(resp: &Response<'_>) -> Vec<u8> {
    let mut buf = [0u8; 300];
    let n = resp.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[rustfmt::skip]
const BACKUP: &[u8] = &[
    0x2a, 0x00, 0x00, 0x00,       // user_id 42
    0x01,                         // version 1
    0x64,                         // op 100 backup
    0x05, 0x00,                   // name_len 5
    b'a', b'.', b't', b'x', b't', // name
    0x03, 0x00, 0x00, 0x00,       // size 3
    b'a', b'b', b'c',             // payload
];
#[rustfmt::skip]
const RESTORE: &[u8] = &[0x2a, 0x00, 0x00, 0x00, 0x01, 0xc8, 0x05, 0x00, b'a', b'.', b't', b'x', b't'];
#[rustfmt::skip]
const DELETE: &[u8] = &[0x2a, 0x00, 0x00, 0x00, 0x01, 0xc9, 0x05, 0x00, b'a', b'.', b't', b'x', b't'];
#[rustfmt::skip]
const LIST: &[u8] = &[0x2a, 0x00, 0x00, 0x00, 0x01, 0xca];

#[test]
fn backup_request_is_header_then_payload() {
    let req = Request { user_id: 42, version: 1, op: Op::Backup, name: "a.txt", size: 3 };
    assert_eq!(emit_request(&req), &BACKUP[..BACKUP.len() - 3]);
    let (dec, payload) = decode_request(BACKUP);
    assert_eq!(dec.header(), Some(req));
    assert_eq!(payload, b"abc");
}

#[test]
fn restore_delete_and_list_requests_carry_only_their_fields() {
    let cases = [
        (RESTORE, Request { user_id: 42, version: 1, op: Op::Restore, name: "a.txt", size: 0 }),
        (DELETE, Request { user_id: 42, version: 1, op: Op::Delete, name: "a.txt", size: 0 }),
        (LIST, Request { user_id: 42, version: 1, op: Op::List, name: "", size: 0 }),
    ];
    for (bytes, req) in cases {
        assert_eq!(emit_request(&req), bytes);
        let (dec, payload) = decode_request(bytes);
        assert_eq!(dec.header(), Some(req));
        assert!(payload.is_empty());
    }
}

#[test]
fn empty_backup_has_size_zero_and_no_payload() {
    let bytes = [0x07, 0, 0, 0, 0x02, 0x64, 0x01, 0x00, b'e', 0, 0, 0, 0];
    let req = Request { user_id: 7, version: 2, op: Op::Backup, name: "e", size: 0 };
    assert_eq!(emit_request(&req), bytes);
    assert_eq!(decode_request(&bytes).0.header(), Some(req));
}

#[rustfmt::skip]
const RESTORED: &[u8] = &[
    0x01,                         // version 1
    0xd2, 0x00,                   // status 210
    0x05, 0x00, b'a', b'.', b't', b'x', b't',
    0x03, 0x00, 0x00, 0x00,       // size 3
    b'a', b'b', b'c',
];
#[rustfmt::skip]
const LISTED: &[u8] = &[
    0x01, 0xd3, 0x00,             // 211
    0x00, 0x00,                   // no name
    0x08, 0x00, 0x00, 0x00,       // size 8
    b'a', b'.', b't', b'x', b't', b'\n', b'b', b'\n',
];
#[rustfmt::skip]
const DONE: &[u8] = &[0x01, 0xd4, 0x00, 0x05, 0x00, b'a', b'.', b't', b'x', b't', 0, 0, 0, 0];
#[rustfmt::skip]
const NOT_FOUND: &[u8] = &[0x01, 0xe9, 0x03, 0x05, 0x00, b'a', b'.', b't', b'x', b't', 0, 0, 0, 0];
#[rustfmt::skip]
const NO_FILES: &[u8] = &[0x01, 0xea, 0x03, 0x00, 0x00, 0, 0, 0, 0];
#[rustfmt::skip]
const ERROR: &[u8] = &[
    0x01, 0xeb, 0x03, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00,
    b'n', b'a', b'm', b'e', b' ', b'c', b'o', b'n', b't', b'a', b'i', b'n', b's', b' ', b'\'', b'/', b'\'',
];

#[test]
fn every_response_form_emits_and_decodes_byte_exactly() {
    let cases: [(&[u8], Response<'_>, &[u8]); 6] = [
        (RESTORED, Response { version: 1, status: Status::Restored, name: b"a.txt", size: 3 }, b"abc"),
        (LISTED, Response { version: 1, status: Status::Listed, name: b"", size: 8 }, b"a.txt\nb\n"),
        (DONE, Response { version: 1, status: Status::Done, name: b"a.txt", size: 0 }, b""),
        (NOT_FOUND, Response { version: 1, status: Status::NotFound, name: b"a.txt", size: 0 }, b""),
        (NO_FILES, Response { version: 1, status: Status::NoFiles, name: b"", size: 0 }, b""),
        (ERROR, Response { version: 1, status: Status::Error, name: b"", size: 17 }, b"name contains '/'"),
    ];
    for (bytes, resp, payload) in cases {
        let mut expected = emit_response(&resp);
        expected.extend_from_slice(payload);
        assert_eq!(expected, bytes, "{:?}", resp.status);
        let (dec, got) = decode_response(bytes);
        assert_eq!(dec.header(), Some(resp));
        assert_eq!(got, payload);
    }
}

#[test]
fn short_responses_of_older_servers_are_complete_at_end_of_input() {
    // 1002 and 1003 with only version and status; 212 and 1001 up to the name.
    let short: [(&[u8], Status, &[u8]); 4] = [
        (&NO_FILES[..3], Status::NoFiles, b""),
        (&ERROR[..3], Status::Error, b""),
        (&DONE[..10], Status::Done, b"a.txt"),
        (&NOT_FOUND[..10], Status::NotFound, b"a.txt"),
    ];
    for (bytes, status, name) in short {
        let mut dec = ResponseDecoder::new();
        let (used, _) = dec.feed(bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(dec.finish(), Ok(ResponseEnd::Complete), "{status:?}");
        let header = dec.header().unwrap();
        assert_eq!((header.status, header.name, header.size), (status, name, 0));
    }
}

#[test]
fn responses_cut_inside_a_field_or_a_file_are_truncated() {
    for bytes in [&DONE[..4], &DONE[..7], &DONE[..12], &RESTORED[..3], &RESTORED[..15], &LISTED[..10]] {
        let mut dec = ResponseDecoder::new();
        dec.feed(bytes).unwrap();
        assert_eq!(dec.finish(), Err(backup_core::ProtocolError::Truncated), "{bytes:?}");
    }
    assert_eq!(ResponseDecoder::new().finish(), Ok(ResponseEnd::Nothing));
}

#[test]
fn decoders_stop_at_the_message_boundary() {
    let mut stream = RESTORE.to_vec();
    stream.extend_from_slice(LIST);
    let mut dec = RequestDecoder::new();
    let (used, ev) = dec.feed(&stream).unwrap();
    assert_eq!((used, ev), (RESTORE.len(), Decoded::Header));
    assert!(dec.is_complete());
    dec.reset();
    assert_eq!(dec.feed(&stream[used..]).unwrap(), (LIST.len(), Decoded::Header));
    assert_eq!(dec.header().unwrap().op, Op::List);
}
