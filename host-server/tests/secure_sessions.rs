//! Version-3 sessions against the real server, with `snow` (an independent
//! Noise implementation) as the client: the handshake's refusals byte for
//! byte, hostile handshakes and records, the one-user rule, revocation, the
//! per-address failure limit, and trickled handshakes.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use backup_server::users::Registry;
use support::netns::{self, OTHER_IP, SERVER_IP};
use support::noise::{AUTH_FAILED, Session, TOO_MANY, closed, first_flight, read_all, request};
use support::{BACKUP, DELETE, LIST, RESTORE, TestServer};

fn registered(server: &TestServer, user: u32) -> [u8; 32] {
    let line = Registry::edit(&server.root).unwrap().add(Some(user), None).unwrap();
    *line.key.bytes()
}

/// What `user` has stored under `name`, read in a session of its own.
fn stored(server: &TestServer, user: u32, key: &[u8; 32], name: &[u8]) -> Vec<u8> {
    let mut session = Session::open(server.addr, user, key).unwrap();
    let reply = session.call(RESTORE, name, None);
    assert_eq!(
        reply.status,
        210,
        "restore {:?}: status {} {:?}",
        String::from_utf8_lossy(name),
        reply.status,
        reply.name
    );
    reply.payload
}

#[test]
fn a_snow_client_backs_up_lists_restores_and_deletes_in_an_authenticated_session() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |_| {});
    let key = registered(&server, 7000);
    let mut session = Session::open(server.addr, 7000, &key).unwrap();
    let big = support::pattern(200_000, 3);
    for (name, content) in [(&b"empty"[..], &b""[..]), (b"big", &big)] {
        let reply = session.call(BACKUP, name, Some(content));
        assert_eq!((reply.version, reply.status), (3, 212), "{reply:?}");
    }
    let listed = session.call(LIST, b"", None);
    assert_eq!((listed.status, listed.payload), (211, b"big\nempty\n".to_vec()));
    assert!(session.call(RESTORE, b"big", None).payload == big, "restored byte for byte");
    assert_eq!(session.call(DELETE, b"empty", None).status, 212);
    assert_eq!(session.call(RESTORE, b"empty", None).status, 1001);
}

#[test]
fn a_wrong_key_and_an_unknown_user_get_the_same_bytes_and_a_close() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |_| {});
    let key = registered(&server, 7000);
    let mut wrong = key;
    wrong[0] ^= 1;
    assert_eq!(Session::open(server.addr, 7000, &wrong).err().unwrap(), AUTH_FAILED);
    assert_eq!(Session::open(server.addr, 7001, &key).err().unwrap(), AUTH_FAILED);
    assert!(Session::open(server.addr, 7000, &key).is_ok(), "the right key still works");
}

#[test]
fn message_1_cut_at_any_byte_opens_no_session_and_stores_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (flight, _) = first_flight(7000, &[9; 32]);
    for cut in 6..flight.len() {
        // A server per cut: each failure counts against 127.0.0.1.
        let server = TestServer::start_in(&root.path().join(cut.to_string()), |_| {});
        registered(&server, 7000);
        let mut stream = server.connect();
        stream.write_all(&flight[..cut]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut stream), b"", "cut after {cut} bytes");
        support::assert_root_is_clean(&server.root);
    }
}

#[test]
fn a_replayed_session_cannot_repeat_its_requests() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |_| {});
    let key = registered(&server, 7000);
    // A session an eavesdropper records: backing up version 1 of "f".
    let (flight, noise) = first_flight(7000, &key);
    let mut stream = server.connect();
    stream.write_all(&flight).unwrap();
    let mut msg2 = [0u8; 52];
    stream.read_exact(&mut msg2).unwrap();
    let mut payload = [0u8; 16];
    let mut noise = noise;
    noise.read_message(&msg2[2..], &mut payload).unwrap();
    let mut session = Session {
        stream,
        noise: noise.into_transport_mode().unwrap(),
        user: 7000,
        server_max_record: u16::from_le_bytes([payload[0], payload[1]]) as usize,
        pending: Vec::new(),
    };
    let recorded = session.seal(&request(7000, BACKUP, b"f", Some(b"version 1")));
    session.stream.write_all(&recorded).unwrap();
    assert_eq!(session.reply().unwrap().status, 212);
    drop(session);
    let mut later = Session::open(server.addr, 7000, &key).unwrap();
    assert_eq!(later.call(BACKUP, b"f", Some(b"version 2")).status, 212);
    // The replay: the server answers message 1 with a fresh ephemeral key,
    // so the recorded records do not open and nothing changes.
    let mut replay = server.connect();
    replay.write_all(&flight).unwrap();
    replay.read_exact(&mut msg2).unwrap();
    replay.write_all(&recorded).unwrap();
    assert_eq!(read_all(&mut replay), b"", "closed at the first record, nothing sent");
    assert_eq!(stored(&server, 7000, &key, b"f"), b"version 2");
}

#[test]
fn a_bit_flipped_record_ends_the_session_and_keeps_the_previous_version() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |_| {});
    let key = registered(&server, 7000);
    let v1 = support::pattern(100_000, 1);
    let mut session = Session::open(server.addr, 7000, &key).unwrap();
    assert_eq!(session.call(BACKUP, b"f", Some(&v1)).status, 212);
    for at in [0usize, 1, 2, 30_000, 99_999] {
        let mut records = session.seal(&request(7000, BACKUP, b"f", Some(&support::pattern(100_000, 2))));
        // Past the length prefix: a flipped ciphertext or tag byte.
        let at = (at + 2).min(records.len() - 1);
        records[at] ^= 0x10;
        session.stream.write_all(&records).ok();
        assert!(session.reply().is_none(), "flip at {at}: the session ends without a reply");
        assert!(stored(&server, 7000, &key, b"f") == v1, "flip at {at}: the previous version stays");
        support::assert_root_is_clean(&server.root);
        session = Session::open(server.addr, 7000, &key).unwrap();
    }
}

#[test]
fn a_record_length_the_server_cannot_take_closes_the_session_at_once() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |_| {});
    let key = registered(&server, 7000);
    let probe = Session::open(server.addr, 7000, &key).unwrap();
    let over = probe.server_max_record as u16 + 1;
    drop(probe);
    for len in [0u16, 16, over, 65535] {
        let mut session = Session::open(server.addr, 7000, &key).unwrap();
        // Only the length: a server that waited for the body would time out.
        session.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        session.stream.write_all(&len.to_le_bytes()).unwrap();
        assert_eq!(read_all(&mut session.stream), b"", "length {len}: closed with nothing sent");
    }
    assert!(Session::open(server.addr, 7000, &key).is_ok());
}

#[test]
fn a_request_naming_another_user_is_refused_and_that_users_files_stay() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |_| {});
    let (mine, theirs) = (registered(&server, 7000), registered(&server, 7001));
    let mut them = Session::open(server.addr, 7001, &theirs).unwrap();
    assert_eq!(them.call(BACKUP, b"secret", Some(b"theirs")).status, 212);
    for (op, payload) in [(RESTORE, None), (DELETE, None), (LIST, None), (BACKUP, Some(&b"mine"[..]))] {
        // A 1003 ends a session (version-2 rules): a session per refusal.
        let mut me = Session::open(server.addr, 7000, &mine).unwrap();
        let reply = me.call_as(7001, op, b"secret", payload);
        assert_eq!(
            (reply.status, reply.reason()),
            (1003, "this session is authenticated for another user"),
            "op {op}"
        );
    }
    let mut me = Session::open(server.addr, 7000, &mine).unwrap();
    assert_eq!(me.call(LIST, b"", None).status, 1002, "its own user is still served");
    assert_eq!(stored(&server, 7001, &theirs, b"secret"), b"theirs");
}

#[test]
fn rotating_or_removing_a_key_refuses_the_open_sessions_next_request() {
    const REVOKED: &str = "the key of this session was revoked; connect again with the user's current key";
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |_| {});
    let key = registered(&server, 7000);
    let mut old = Session::open(server.addr, 7000, &key).unwrap();
    assert_eq!(old.call(BACKUP, b"f", Some(b"kept")).status, 212);
    let rotated = *Registry::edit(&server.root).unwrap().rotate(7000).unwrap().key.bytes();
    let reply = old.call(RESTORE, b"f", None);
    assert_eq!((reply.status, reply.reason()), (1003, REVOKED));
    assert_eq!(Session::open(server.addr, 7000, &key).err().unwrap(), AUTH_FAILED);
    let mut new = Session::open(server.addr, 7000, &rotated).unwrap();
    assert_eq!(new.call(RESTORE, b"f", None).payload, b"kept");

    Registry::edit(&server.root).unwrap().remove(7000).unwrap();
    let reply = new.call(LIST, b"", None);
    assert_eq!((reply.status, reply.reason()), (1003, REVOKED));
    assert_eq!(Session::open(server.addr, 7000, &rotated).err().unwrap(), AUTH_FAILED);
    let mut plain = support::PlainClient::new(&server, 7000);
    let reply = plain.call(RESTORE, b"f", None);
    assert_eq!(
        (reply.status, reply.reason()),
        (1003, "this user requires an authenticated session (protocol version 3)"),
        "a removed user's files are not served in plaintext"
    );
    let again = *Registry::edit(&server.root).unwrap().add(Some(7000), None).unwrap().key.bytes();
    assert_eq!(stored(&server, 7000, &again, b"f"), b"kept", "the files stayed");
}

/// Opens a session from `from`, or returns what the server sent instead.
fn open_from(from: IpAddr, to: SocketAddr, user: u32, key: &[u8; 32]) -> Result<Session, Vec<u8>> {
    Session::open_on(netns::connect_from(from, to), user, key)
}

fn is_too_many(bytes: &[u8]) -> bool {
    bytes.len() > 9 && bytes[..3] == [3, 0xeb, 0x03] && &bytes[9..] == TOO_MANY.as_bytes()
}

#[test]
fn a_thousand_failed_handshakes_from_one_address_do_not_stop_another() {
    if !netns::inside("a_thousand_failed_handshakes_from_one_address_do_not_stop_another") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |c| c.listen = (SERVER_IP, 0).into());
    let key = registered(&server, 7000);
    let addr = server.addr;
    let attacker = thread::spawn(move || {
        let (mut failed, mut refused) = (0, 0);
        for _ in 0..1000 {
            match open_from(OTHER_IP, addr, 7000, &[0x55; 32]).err().unwrap() {
                bytes if bytes == AUTH_FAILED => failed += 1,
                bytes if is_too_many(&bytes) => refused += 1,
                bytes => panic!("unexpected answer {bytes:?}"),
            }
        }
        (failed, refused)
    });
    let mut served = 0;
    while !attacker.is_finished() || served == 0 {
        let mut session = open_from(SERVER_IP, addr, 7000, &key).expect("the other address is served");
        assert_eq!(session.call(BACKUP, b"f", Some(&served.to_string().into_bytes())).status, 212);
        served += 1;
    }
    let (failed, refused) = attacker.join().unwrap();
    assert_eq!((failed, refused), (10, 990), "ten tries a minute, then refusals");
    assert!(is_too_many(&open_from(OTHER_IP, addr, 7000, &key).err().unwrap()), "even with the right key");
    assert!(served > 0);
}

#[test]
fn concurrent_handshakes_from_one_address_are_capped_and_good_ones_do_not_count_as_failures() {
    if !netns::inside(
        "concurrent_handshakes_from_one_address_are_capped_and_good_ones_do_not_count_as_failures",
    ) {
        return;
    }
    const BUSY: &[u8] = b"too many handshakes at once from your address; try again in a moment";
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |c| c.listen = (SERVER_IP, 0).into());
    let key = registered(&server, 7000);
    // Forty good sessions opened at once from one address (a fleet behind
    // a NAT): all served, none counted as a failure.
    let addr = server.addr;
    let fleet: Vec<_> = (0..40)
        .map(|_| thread::spawn(move || open_from(OTHER_IP, addr, 7000, &key).map(drop).map_err(|b| b.len())))
        .collect();
    let refused = fleet.into_iter().map(|t| t.join().unwrap()).filter(Result::is_err).count();
    assert!(refused < 40, "a burst of good handshakes is served");
    assert!(open_from(OTHER_IP, addr, 7000, &key).is_ok(), "and leaves the address in good standing");
    // Thirty-two stalled in the middle of message 1...
    let (flight, _) = first_flight(7000, &key);
    let stalled: Vec<TcpStream> = (0..32)
        .map(|_| {
            let mut s = netns::connect_from(OTHER_IP, addr);
            s.write_all(&flight[..20]).unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    // ...so the next is refused before any handshake work, as busy.
    let answer = open_from(OTHER_IP, addr, 7000, &key).err().unwrap();
    assert!(answer.len() > 9 && answer[9..] == *BUSY, "{:?}", String::from_utf8_lossy(&answer));
    assert!(open_from(SERVER_IP, addr, 7000, &key).is_ok(), "another address is not affected");
    drop(stalled);
}

#[test]
fn a_trickled_handshake_is_cut_by_the_minimum_rate() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |c| {
        c.idle_timeout = Duration::from_secs(2);
        c.min_rate = 64;
    });
    let key = registered(&server, 7000);
    let (flight, _) = first_flight(7000, &key);
    let mut stream = server.connect();
    let started = Instant::now();
    let mut sent = 0;
    // A byte every 300 ms resets any idle timeout; the first flight would
    // take 17 s this way.
    for byte in &flight {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(300));
        if closed(&stream) {
            break;
        }
    }
    assert!(sent < flight.len(), "cut after {sent} bytes, {:?}", started.elapsed());
    assert_eq!(read_all(&mut stream), b"", "cut without a session");
}
