//! Hostile and odd input against the dispatcher: each gets its exact
//! response and session end, never a panic, and stored files stay intact.

mod support;

use backup_core::store::Store;
use backup_core::{Config, Dispatcher, Outcome, RamStore, SessionEnd};
use support::{Script, TestStore, serve_script};

/// A 1003 response carrying `reason`, at protocol version `version`.
fn error_response(version: u8, reason: &str) -> Vec<u8> {
    let mut bytes = vec![version, 0xeb, 0x03, 0x00, 0x00];
    bytes.extend_from_slice(&(reason.len() as u32).to_le_bytes());
    bytes.extend_from_slice(reason.as_bytes());
    bytes
}

/// A request header for user 42 with an arbitrary op and raw name bytes.
fn request(version: u8, op: u8, name: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x2a, 0, 0, 0, version, op];
    bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
    bytes.extend_from_slice(name);
    bytes
}

fn backup(name: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut bytes = request(2, 100, name);
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn store_with_file() -> Box<TestStore> {
    let mut store = Box::new(TestStore::new());
    let (out, end, _, _) = serve_script(&mut store, &backup(b"keep", b"previous"), 1024);
    assert_eq!(out, [2, 0xd4, 0, 4, 0, b'k', b'e', b'e', b'p', 0, 0, 0, 0]);
    assert_eq!(end, SessionEnd::Closed);
    store
}

#[test]
fn a_request_cut_at_every_byte_is_abandoned_and_the_previous_version_stays() {
    let full = backup(b"keep", b"new version");
    for cut in 0..full.len() {
        let mut store = store_with_file();
        let (out, end, _, _) = serve_script(&mut store, &full[..cut], 3);
        let expected = if cut == 0 { SessionEnd::Closed } else { SessionEnd::Truncated };
        assert_eq!((out.as_slice(), end), (&[][..], expected), "cut at {cut}");
        assert_eq!(store.get(42, "keep"), Some(&b"previous"[..]), "cut at {cut}");
    }
}

#[test]
fn bad_names_get_their_exact_reason_and_end_the_session() {
    let cases: [(&[u8], &str); 8] = [
        (b"a/b", "name contains '/'"),
        (b"../x", "name contains '/'"),
        (b"/etc/passwd", "name contains '/'"),
        (b"\\..\\x", "name contains '\\'"),
        (b"a\0b", "name contains a NUL byte"),
        (b"..", "name is '.' or '..'"),
        (b"\xc3\x28", "name is not valid UTF-8"),
        (b"tab\there", "name contains a control character"),
    ];
    for op in [100u8, 200, 201] {
        for (name, reason) in cases {
            let mut input = request(2, op, name);
            input.extend_from_slice(b"\x05\0\0\0hello");
            let mut store = store_with_file();
            let (out, end, outcomes, _) = serve_script(&mut store, &input, 1024);
            assert_eq!(out, error_response(2, reason), "op {op} name {name:?}");
            assert_eq!(end, SessionEnd::Refused);
            assert_eq!(outcomes.len(), 1);
            assert_eq!(store.file_count(), 1);
        }
    }
}

#[test]
fn name_lengths_outside_1_to_255_are_refused_before_the_name_is_read() {
    for len in [0u16, 256, 65535] {
        let mut input = vec![0x2a, 0, 0, 0, 1, 200];
        input.extend_from_slice(&len.to_le_bytes());
        input.extend_from_slice(&[b'x'; 300]);
        let mut store = store_with_file();
        let (out, end, _, unread) = serve_script(&mut store, &input, 1024);
        assert_eq!(out, error_response(1, "name length must be 1 to 255 bytes"), "name_len {len}");
        assert_eq!(end, SessionEnd::Refused);
        assert_eq!(unread.len(), 300, "nothing after name_len was read");
    }
    let mut store = store_with_file();
    let (out, _, _, _) = serve_script(&mut store, &request(1, 200, &[b'x'; 255]), 1024);
    assert_eq!(out[1..3], [0xe9, 0x03], "255 bytes is a valid length: 1001");
}

#[test]
fn unknown_ops_and_version_zero_get_1003_and_end_the_session() {
    for (input, reason, version) in [
        (vec![0x2a, 0, 0, 0, 2, 7], "unknown op", 2),
        (vec![0x2a, 0, 0, 0, 1, 0xff, 1, 0, b'a'], "unknown op", 1),
        (vec![0x2a, 0, 0, 0, 0, 202], "unsupported protocol version", 1),
    ] {
        let mut store = store_with_file();
        let (out, end, _, _) = serve_script(&mut store, &input, 1024);
        assert_eq!(out, error_response(version, reason));
        assert_eq!(end, SessionEnd::Refused);
    }
}

#[test]
fn versions_above_2_are_answered_with_2() {
    let mut store = store_with_file();
    let (out, _, _, _) = serve_script(&mut store, &[0x2a, 0, 0, 0, 9, 202], 1024);
    assert_eq!(out, [2, 0xd3, 0, 0, 0, 5, 0, 0, 0, b'k', b'e', b'e', b'p', b'\n']);
}

#[test]
fn zero_padding_after_any_request_ends_the_session_after_its_response() {
    let restore_with_size = [request(1, 200, b"keep"), vec![0; 4]].concat();
    let delete_with_size = [request(1, 201, b"nope"), vec![0; 4]].concat();
    let list_with_fields = vec![0x2a, 0, 0, 0, 1, 202, 0, 0, 0, 0, 0, 0];
    for (req, status) in [
        (backup(b"new", b"data"), [0xd4, 0x00]),
        (restore_with_size, [0xd2, 0x00]),
        (delete_with_size, [0xe9, 0x03]),
        (list_with_fields, [0xd3, 0x00]),
    ] {
        let mut padded = req.clone();
        padded.resize(1024, 0);
        let mut store = store_with_file();
        let (out, end, outcomes, _) = serve_script(&mut store, &padded, 1024);
        assert_eq!(out[1..3], status, "{req:?}");
        assert_eq!(end, SessionEnd::Padding, "{req:?}");
        assert_eq!(outcomes.len(), 1);
        // The same request without padding but with the extra zero fields,
        // then end of input: a clean end inside a run of zeros (six zeros
        // make a whole op-0 prefix, which reads as padding).
        let mut store = store_with_file();
        let (out, end, _, _) = serve_script(&mut store, &req, 1);
        assert_eq!(out[1..3], status);
        assert!(matches!(end, SessionEnd::Closed | SessionEnd::Padding), "{req:?}: {end:?}");
    }
}

#[test]
fn oversized_backups_are_refused_before_their_payload() {
    let mut store = store_with_file();
    let mut buf = [0u8; 1024];
    let config = Config { max_file_size: 4, ..Config::default() };
    let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, config).unwrap();
    let mut conn = Script::new(&backup(b"keep", b"too long"), 1024);
    let end = dispatcher.serve(&mut conn, &mut |_: &Outcome<'_>| {});
    assert_eq!(end, SessionEnd::Refused);
    assert_eq!(conn.output, error_response(2, "file exceeds the server's size limit"));
    assert_eq!(conn.unread(), b"too long", "the payload was not read");
    assert_eq!(store.get(42, "keep"), Some(&b"previous"[..]));
}

#[test]
fn a_full_store_refuses_with_a_reason_and_keeps_what_it_had() {
    let mut store = Box::new(RamStore::<16, 16>::new());
    let mut up = store.begin_upload(42, "keep", 8).unwrap();
    store.write_upload(&mut up, b"previous").unwrap();
    store.commit_upload(up).unwrap();
    let mut buf = [0u8; 1024];
    let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, Config::default()).unwrap();
    let mut conn = Script::new(&backup(b"other", b"0123456789"), 1024);
    assert_eq!(dispatcher.serve(&mut conn, &mut |_: &Outcome<'_>| {}), SessionEnd::Refused);
    assert_eq!(conn.output, error_response(2, "server storage full"));
    assert_eq!(store.get(42, "keep"), Some(&b"previous"[..]));
}

#[test]
fn each_response_goes_out_in_one_write_with_the_start_of_its_payload() {
    let mut store = store_with_file();
    let mut buf = [0u8; 1024];
    let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, Config::default()).unwrap();
    struct Writes(Script, Vec<usize>);
    impl embedded_io::ErrorType for Writes {
        type Error = core::convert::Infallible;
    }
    impl embedded_io::Read for Writes {
        fn read(&mut self, b: &mut [u8]) -> Result<usize, Self::Error> {
            self.0.read(b)
        }
    }
    impl embedded_io::Write for Writes {
        fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> {
            self.1.push(b.len());
            self.0.write(b)
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    impl embedded_io::ReadReady for Writes {
        fn read_ready(&mut self) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }
    impl backup_core::SendFile for Writes {}
    let mut conn =
        Writes(Script::new(&[request(2, 200, b"keep"), vec![0x2a, 0, 0, 0, 2, 202]].concat(), 1024), vec![]);
    dispatcher.serve(&mut conn, &mut |_: &Outcome<'_>| {});
    assert_eq!(conn.1, [9 + 4 + 8, 9 + 5], "restore and list each in a single write");
}
