//! Version-3 sessions end to end: the existing client and dispatcher over
//! `SecureStream`s on an in-memory duplex whose reads and writes are short,
//! the blocking handshakes with every split of their messages, and hostile
//! records arriving at a running session.

mod support;

use std::sync::{Arc, Mutex};
use std::thread;

use backup_core::dispatch::SendFile;
use backup_core::secure::{
    AUTH_FAILED_LEN, HandshakeError, RecordError, SECURE_VERSION, SecureError, SecureStream,
    client_handshake, server_handshake,
};
use backup_core::{Client, ClientError, Config, Dispatcher, Outcome, RamStore, SessionEnd, TransportError};
use embedded_io::{ErrorType, Read, ReadReady, Write};
use rand_core::{CryptoRng, RngCore};
use support::{DuplexEnd, Hangup, Script, TestStore, duplex};

const MIB: usize = 1 << 20;
type BigStore = RamStore<64, { 8 * MIB }>;
const USER: u32 = 7;
const PSK: [u8; 32] = *b"a key of thirty-two bytes, exact";

/// Deterministic randomness for tests (xorshift); never for real keys.
struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}

fn lookup(user: u32) -> Option<[u8; 32]> {
    (user == USER).then_some(PSK)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

type Secure = SecureStream<DuplexEnd, Vec<u8>>;

/// The plaintext a stream carried, both ways, as the dispatcher saw it.
#[derive(Default)]
struct Seen {
    read: Vec<u8>,
    written: Vec<u8>,
}

/// The server's stream, recording the plaintext it moves.
struct Tap(Secure, Arc<Mutex<Seen>>);

impl ErrorType for Tap {
    type Error = <Secure as ErrorType>::Error;
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.0.read(buf)?;
        self.1.lock().unwrap().read.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let n = self.0.write(buf)?;
        self.1.lock().unwrap().written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush()
    }
}

impl ReadReady for Tap {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        self.0.read_ready()
    }
}

impl SendFile for Tap {}

/// Hands out one secure stream, then refuses.
struct SecureOnce(Option<Secure>);

impl backup_core::Connect for SecureOnce {
    type Conn = Secure;
    fn connect(&mut self) -> Result<Secure, SecureError<Hangup>> {
        self.0.take().ok_or(SecureError::Io(Hangup))
    }
}

type ServerResult = (SessionEnd<SecureError<Hangup>>, Vec<(String, u16)>, Box<BigStore>);

/// A server thread: the handshake, then the dispatcher at version 3.
fn serve(
    server_end: DuplexEnd,
    rx_len: usize,
    config: Config,
    seen: Arc<Mutex<Seen>>,
) -> thread::JoinHandle<ServerResult> {
    thread::Builder::new()
        .stack_size(32 * MIB)
        .spawn(move || {
            let mut rng = TestRng(0x5eed_0001);
            let stream =
                server_handshake(server_end, lookup, &mut rng, vec![0u8; rx_len], vec![0u8; 4096]).unwrap();
            let mut conn = Tap(stream, seen);
            let mut store = Box::new(BigStore::new());
            let mut buf = vec![0u8; 4096 + backup_core::dispatch::GROUP_COMMIT_AREA_LEN];
            let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, config).unwrap();
            let mut log = Vec::new();
            let end = dispatcher.serve(&mut conn, &mut |o: &Outcome<'_>| {
                log.push((o.op.as_str().to_string(), o.status.map(|s| s.code()).unwrap_or(0)))
            });
            (end, log, store)
        })
        .unwrap()
}

fn secure_config() -> Config {
    Config { version: SECURE_VERSION, ..Config::default() }
}

/// list (1002) → back up two files → list → restore the first → delete it →
/// restore it again (1001) → restore the second, in one version-3 session.
fn classic_sequence(size: usize, seed: u64, client_rx: usize, server_rx: usize) {
    let (client_end, server_end) = duplex(997, seed);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = serve(server_end, server_rx, secure_config(), seen.clone());

    let mut rng = TestRng(seed | 1);
    let stream =
        client_handshake(client_end, USER, &PSK, &mut rng, vec![0u8; client_rx], vec![0u8; 4096]).unwrap();
    let first = pattern(size, 1);
    let second = pattern(size + 3, 2);
    let mut buf = vec![0u8; 4096];
    let mut client =
        Client::new(SecureOnce(Some(stream)), USER, &mut buf).unwrap().with_version(SECURE_VERSION);

    assert_eq!(client.list(|_| panic!("no names expected")), Err(ClientError::NoFiles));
    client.backup("first.bin", first.len() as u32, &mut &first[..]).unwrap();
    client.backup("second.bin", second.len() as u32, &mut &second[..]).unwrap();
    let mut names = Vec::new();
    assert_eq!(client.list(|n| names.push(String::from_utf8_lossy(n).into_owned())), Ok(2));
    assert_eq!(names, ["first.bin", "second.bin"]);
    let mut restored = Vec::new();
    let got = client.restore("first.bin", &mut restored, |_| {}).unwrap();
    assert_eq!(got as usize, first.len());
    assert!(restored == first, "first file differs after restore");
    client.delete("first.bin").unwrap();
    assert_eq!(client.restore("first.bin", &mut Vec::new(), |_| {}), Err(ClientError::NotFound));
    let mut restored = Vec::new();
    client.restore("second.bin", &mut restored, |_| {}).unwrap();
    assert!(restored == second, "second file differs after restore");
    assert!(client.is_connected(), "a version-3 session's connection is kept");
    drop(client);

    let (end, log, store) = server.join().unwrap();
    assert_eq!(end, SessionEnd::Closed);
    let statuses: Vec<_> = log.iter().map(|(op, s)| (op.as_str(), *s)).collect();
    assert_eq!(
        statuses,
        [
            ("list", 1002),
            ("backup", 212),
            ("backup", 212),
            ("list", 211),
            ("restore", 210),
            ("delete", 212),
            ("restore", 1001),
            ("restore", 210)
        ]
    );
    assert_eq!(store.get(USER, "second.bin"), Some(&second[..]));
    let seen = seen.lock().unwrap();
    // Inside the records: a version-3 list request, and a version-3 1002.
    assert_eq!(seen.read[..6], [0x07, 0x00, 0x00, 0x00, 0x03, 0xca]);
    assert_eq!(seen.written[..3], [0x03, 0xea, 0x03]);
}

#[test]
fn classic_sequence_in_a_secure_session_with_empty_files() {
    classic_sequence(0, 1, 4098, 4098);
}

#[test]
fn classic_sequence_in_a_secure_session_with_one_byte_files() {
    classic_sequence(1, 2, 4098, 4098);
}

#[test]
fn classic_sequence_in_a_secure_session_with_the_smallest_records() {
    // max_record 64 both ways: every write is cut into 48-byte records.
    classic_sequence(5000, 3, 66, 66);
}

#[test]
fn classic_sequence_in_a_secure_session_with_the_largest_records() {
    classic_sequence(3 * MIB + 17, 4, 65537, 65537);
}

/// Files for a batch, and which were confirmed.
struct Files {
    names: Vec<String>,
    data: Vec<Vec<u8>>,
    done: Vec<usize>,
}

struct Contents(Vec<u8>, usize);

impl ErrorType for Contents {
    type Error = std::convert::Infallible;
}

impl Read for Contents {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

impl backup_core::Batch for Files {
    type Reader = Contents;
    fn file(&mut self, index: usize) -> Result<(&str, u32, Contents), std::convert::Infallible> {
        Ok((&self.names[index], self.data[index].len() as u32, Contents(self.data[index].clone(), 0)))
    }
    fn name(&mut self, index: usize) -> &str {
        &self.names[index]
    }
    fn done(&mut self, index: usize) {
        self.done.push(index);
    }
}

#[test]
fn a_pipelined_batch_with_group_commit_in_a_secure_session() {
    let (client_end, server_end) = duplex(997, 21);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = serve(server_end, 8192, Config { group_commit: true, ..secure_config() }, seen);
    let mut rng = TestRng(77);
    let stream =
        client_handshake(client_end, USER, &PSK, &mut rng, vec![0u8; 8192], vec![0u8; 8192]).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut client =
        Client::new(SecureOnce(Some(stream)), USER, &mut buf).unwrap().with_version(SECURE_VERSION);
    let sizes: Vec<usize> = (0..40).map(|i| [0, 1, 4096, 10_000][i % 4] + i).collect();
    let mut files = Files {
        names: (0..40).map(|i| format!("f{i:02}")).collect(),
        data: sizes.iter().enumerate().map(|(i, &n)| pattern(n, i as u8)).collect(),
        done: Vec::new(),
    };
    client.backup_batch(40, &mut files).unwrap();
    assert_eq!(files.done, (0..40).collect::<Vec<_>>());
    drop(client);
    let (end, _, store) = server.join().unwrap();
    assert_eq!(end, SessionEnd::Closed);
    for (name, data) in files.names.iter().zip(&files.data) {
        assert_eq!(store.get(USER, name), Some(&data[..]), "{name}");
    }
}

/// A transport that delivers scripted input in reads cut at `cuts` and
/// records what is written.
struct Cut {
    script: Script,
    cuts: Vec<usize>,
    pos: usize,
}

impl ErrorType for Cut {
    type Error = std::convert::Infallible;
}

impl Read for Cut {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let next = self.cuts.iter().copied().find(|&c| c > self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(next - self.pos);
        let n = self.script.read(&mut buf[..want])?;
        self.pos += n;
        Ok(n)
    }
}

impl Write for Cut {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.script.write(buf)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn cut(input: &[u8], cuts: Vec<usize>) -> Cut {
    Cut { script: Script::new(input, usize::MAX), cuts, pos: 0 }
}

/// The bytes a client with `rng` sends first, and the server's answer to
/// them, from one run of both helpers over scripts.
fn recorded_flights(psk: &[u8; 32]) -> (Vec<u8>, Vec<u8>) {
    let mut client_io = cut(&[], vec![]);
    let err = client_handshake(&mut client_io, USER, psk, &mut TestRng(9), vec![0u8; 4098], vec![0u8; 4096]);
    assert!(matches!(err, Err(SecureError::Closed)), "nothing to read yet");
    let flight = client_io.script.output.clone();
    let mut server_io = cut(&flight, vec![]);
    let _ = server_handshake(&mut server_io, lookup, &mut TestRng(10), vec![0u8; 4098], vec![0u8; 4096]);
    (flight, server_io.script.output.clone())
}

#[test]
fn the_server_handshake_survives_every_split_of_hello_and_message_1() {
    let (flight, reply) = recorded_flights(&PSK);
    assert_eq!(flight.len(), backup_core::secure::CLIENT_FIRST_FLIGHT_LEN);
    for at in 0..=flight.len() {
        let mut io = cut(&flight, vec![at]);
        let stream = server_handshake(&mut io, lookup, &mut TestRng(10), vec![0u8; 4098], vec![0u8; 4096]);
        assert!(stream.is_ok(), "split at {at}");
        drop(stream);
        assert_eq!(io.script.output, reply, "split at {at}");
    }
    let mut io = cut(&flight, (1..flight.len()).collect());
    assert!(server_handshake(&mut io, lookup, &mut TestRng(10), vec![0u8; 4098], vec![0u8; 4096]).is_ok());
}

#[test]
fn the_client_handshake_survives_every_split_of_message_2_and_reads_no_further() {
    let (_, reply) = recorded_flights(&PSK);
    let mut input = reply.clone();
    input.extend_from_slice(b"first record bytes");
    for at in 0..=reply.len() {
        let mut io = cut(&input, vec![at]);
        let stream = client_handshake(&mut io, USER, &PSK, &mut TestRng(9), vec![0u8; 4098], vec![0u8; 4096]);
        assert!(stream.is_ok(), "split at {at}");
        drop(stream);
        assert_eq!(io.script.unread(), b"first record bytes", "split at {at}");
    }
}

const AUTH_FAILED: [u8; AUTH_FAILED_LEN] = *b"\x03\xeb\x03\x00\x00\x15\x00\x00\x00authentication failed";

#[test]
fn a_wrong_key_and_an_unknown_user_get_exactly_the_refusal() {
    let (_, reply) = recorded_flights(&[0x55; 32]);
    assert_eq!(reply, AUTH_FAILED);
    // An unknown user: the same bytes, through the same path.
    let mut client_io = cut(&[], vec![]);
    let _ = client_handshake(&mut client_io, 4242, &PSK, &mut TestRng(9), vec![0u8; 4098], vec![0u8; 4096]);
    let mut server_io = cut(&client_io.script.output, vec![]);
    let err = server_handshake(&mut server_io, lookup, &mut TestRng(10), vec![0u8; 4098], vec![0u8; 4096]);
    assert!(matches!(err, Err(SecureError::Handshake(HandshakeError::AuthenticationFailed))));
    assert_eq!(server_io.script.output, AUTH_FAILED);
}

#[test]
fn the_client_reads_the_refusal_and_its_reason() {
    let mut io = cut(&AUTH_FAILED, vec![3]);
    let (mut rx, mut tx) = (vec![0u8; 4098], vec![0u8; 4096]);
    let err = client_handshake(&mut io, USER, &PSK, &mut TestRng(9), &mut rx[..], &mut tx[..]);
    assert!(matches!(
        err,
        Err(SecureError::Handshake(HandshakeError::Refused { version: 3, status: 1003, reason_len: 21 }))
    ));
    assert_eq!(&rx[..21], b"authentication failed");
}

#[test]
fn a_client_owning_its_buffers_is_handed_the_refusal_reason() {
    let mut io = cut(&AUTH_FAILED, vec![3]);
    let mut reason = Vec::new();
    let err = backup_core::secure::client_handshake_with_reason(
        &mut io,
        USER,
        &PSK,
        &mut TestRng(9),
        vec![0u8; 4098],
        vec![0u8; 4096],
        |r| reason.extend_from_slice(r),
    );
    assert!(matches!(err, Err(SecureError::Handshake(HandshakeError::Refused { reason_len: 21, .. }))));
    assert_eq!(reason, b"authentication failed");
}

/// What a server makes of `records` arriving after a real handshake: the
/// session's end, what it wrote after message 2, and its store. The client's
/// records are sealed by the sans-IO machines under the keys of the very
/// handshake the server replays (its RNG is seeded alike each time).
fn serve_records(
    records: impl FnOnce(&mut backup_core::secure::Sealer) -> Vec<u8>,
) -> (SessionEnd<SecureError<std::convert::Infallible>>, Vec<u8>, Box<TestStore>) {
    use backup_core::secure::ClientHandshake;
    let mut flight = [0u8; backup_core::secure::CLIENT_FIRST_FLIGHT_LEN];
    let (mut client, n) = ClientHandshake::start(USER, &PSK, 4096, &mut TestRng(31), &mut flight).unwrap();
    let mut first = cut(&flight[..n], vec![]);
    let _ = server_handshake(&mut first, lookup, &mut TestRng(32), vec![0u8; 4098], vec![0u8; 4096]).unwrap();
    let reply = first.script.output.clone();
    assert_eq!(client.feed(&reply), reply.len());
    let (mut sealer, _) = client.finish().unwrap().split();
    let mut input = flight[..n].to_vec();
    input.extend_from_slice(&records(&mut sealer));

    let mut io = Script::new(&input, 7);
    let mut stream =
        server_handshake(&mut io, lookup, &mut TestRng(32), vec![0u8; 4098], vec![0u8; 4096]).unwrap();
    let mut store = Box::new(TestStore::new());
    let mut buf = vec![0u8; 4096];
    let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, secure_config()).unwrap();
    let end = dispatcher.serve(&mut stream, &mut |_: &Outcome<'_>| {});
    drop(stream);
    let after = io.output[reply.len()..].to_vec();
    (end, after, store)
}

fn seal(sealer: &mut backup_core::secure::Sealer, plaintext: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; plaintext.len() + backup_core::secure::RECORD_OVERHEAD];
    let n = sealer.seal(plaintext, &mut out).unwrap();
    out.truncate(n);
    out
}

/// A version-3 backup of `data` as `name`, header and payload in one plaintext.
fn backup_request(name: &str, data: &[u8]) -> Vec<u8> {
    let mut req = vec![0x07, 0, 0, 0, SECURE_VERSION, 100, name.len() as u8, 0];
    req.extend_from_slice(name.as_bytes());
    req.extend_from_slice(&(data.len() as u32).to_le_bytes());
    req.extend_from_slice(data);
    req
}

#[test]
fn records_from_the_client_reach_the_store() {
    let (end, after, store) = serve_records(|s| seal(s, &backup_request("a", b"version one")));
    assert_eq!(end, SessionEnd::Closed);
    assert_eq!(store.get(USER, "a"), Some(&b"version one"[..]));
    // One record back: the 212 for "a" (10 bytes of plaintext).
    assert_eq!(after.len(), 10 + backup_core::secure::RECORD_OVERHEAD);
}

#[test]
fn a_flipped_bit_in_a_record_ends_the_session_with_nothing_stored_or_sent() {
    let (_, ok_after, _) = serve_records(|s| seal(s, &backup_request("a", b"version one")));
    let (end, after, store) = serve_records(|s| {
        let mut records = seal(s, &backup_request("a", b"version one"));
        let req = backup_request("a", b"version two");
        let (head, payload) = req.split_at(req.len() - 11);
        records.extend(seal(s, head));
        let mut bad = seal(s, payload);
        bad[5] ^= 0x10;
        records.extend(bad);
        records
    });
    assert_eq!(end, SessionEnd::Transport(TransportError::Io(SecureError::Record(RecordError::Decrypt))));
    assert_eq!(store.get(USER, "a"), Some(&b"version one"[..]), "the previous version stays");
    assert_eq!(after, ok_after, "nothing is sent after the fault");
}

#[test]
fn record_lengths_0_16_and_over_max_record_end_the_session_at_once() {
    for len in [0u16, 16, 4097, 65535] {
        let (end, after, store) = serve_records(|s| {
            let mut records = seal(s, &backup_request("a", b"kept"));
            records.extend_from_slice(&len.to_le_bytes());
            records.extend_from_slice(&[0u8; 40]);
            records
        });
        assert_eq!(
            end,
            SessionEnd::Transport(TransportError::Io(SecureError::Record(RecordError::BadLength(len)))),
            "length {len}"
        );
        assert_eq!(store.get(USER, "a"), Some(&b"kept"[..]));
        assert_eq!(after.len(), 10 + backup_core::secure::RECORD_OVERHEAD, "only the first 212 went out");
    }
}

#[test]
fn a_replayed_record_ends_the_session() {
    let (end, _, store) = serve_records(|s| {
        let mut records = seal(s, &backup_request("a", b"once"));
        let again = records.clone();
        records.extend(again);
        records
    });
    assert_eq!(end, SessionEnd::Transport(TransportError::Io(SecureError::Record(RecordError::Decrypt))));
    assert_eq!(store.file_count(), 1);
}

#[test]
fn a_peer_closing_inside_a_record_is_a_fault_not_an_end() {
    let (end, _, store) = serve_records(|s| {
        let mut records = seal(s, &backup_request("a", b"whole"));
        let cut_short = seal(s, &backup_request("b", b"never"));
        records.extend_from_slice(&cut_short[..cut_short.len() - 1]);
        records
    });
    assert_eq!(end, SessionEnd::Transport(TransportError::Io(SecureError::Closed)));
    assert_eq!((store.get(USER, "b"), store.file_count()), (None, 1));
}
