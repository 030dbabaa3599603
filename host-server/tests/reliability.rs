//! Reliability: faults, crashes, load, slow clients and hostile input, with
//! nothing lost. Each test has a quick size that runs with every test run and
//! a long size behind `--ignored`:
//!
//! ```sh
//! cargo test --release -p backup-server --test reliability -- --ignored --nocapture
//! ```
//!
//! Every test prints its figures (`--nocapture` shows them).

mod support;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use backup_core::codec::{Decoded, ResponseDecoder};
use support::*;

// ---------------------------------------------------------------------------
// Fault injection: an upload cut after k bytes, for k all over the request.

/// Closes a connection with a reset instead of a FIN (SO_LINGER 0).
fn reset(stream: TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
    drop(stream);
}

fn fault_injection(every_byte: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    let old = versioned(1, 3000);
    assert_eq!(PlainClient::new(&server, 40).call(BACKUP, b"doc", Some(&old)).status, 212);

    let new = versioned(2, 5000);
    let request = request(40, BACKUP, b"doc", Some(&new));
    let header_len = request.len() - new.len();
    let cuts: Vec<usize> = if every_byte {
        (0..request.len()).collect()
    } else {
        // Every byte of the header (user id, version, op, name length, name,
        // size), then the payload in steps, and right before the last byte.
        (0..=header_len)
            .chain((header_len + 1..request.len()).step_by(97))
            .chain([request.len() - 1])
            .collect()
    };
    for (i, &k) in cuts.iter().enumerate() {
        let mut stream = server.connect();
        stream.write_all(&request[..k]).unwrap();
        if i % 2 == 0 {
            stream.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            assert!(rest.is_empty(), "no answer to a cut request (k = {k})");
        } else {
            reset(stream);
        }
        let reply = PlainClient::new(&server, 40).call(RESTORE, b"doc", None);
        assert_eq!(version_of(&reply.payload), Some(1), "previous version after a cut at {k}");
    }
    eventually("no temporary file is left", || temporary_files(&server.root).is_empty());
    assert_eq!(PlainClient::new(&server, 40).call(LIST, b"", None).payload, b"doc\n");
    assert_root_is_clean(&server.root);
    println!(
        "fault injection: {} cuts (half by FIN, half by reset), {} survived, 0 files lost",
        cuts.len(),
        cuts.len()
    );
}

#[test]
fn an_upload_cut_anywhere_leaves_the_previous_version_and_no_temporary_file() {
    fault_injection(false);
}

#[test]
#[ignore = "long: run with --ignored"]
fn long_an_upload_cut_after_every_single_byte_leaves_the_previous_version() {
    fault_injection(true);
}

// ---------------------------------------------------------------------------
// Crash test: SIGKILL during concurrent backups, restart, check.

/// What a client knows of one file: the last version acknowledged with 212,
/// and the versions sent since, which the crash may or may not have kept.
#[derive(Default, Clone)]
struct Known {
    acked: Option<u64>,
    in_flight: Vec<u64>,
}

type History = Arc<Mutex<HashMap<(u32, String), Known>>>;

/// Restores every known file and checks it is its last acknowledged version
/// or one sent after it, whole; returns how many acknowledged backups were
/// checked. Afterwards, what is stored becomes the new acknowledged state.
fn verify_after_restart(server: &ChildServer, history: &History) -> usize {
    let mut checked = 0;
    let mut history = history.lock().unwrap();
    for ((user, name), known) in history.iter_mut() {
        let mut stream = server.connect();
        stream.write_all(&request(*user, RESTORE, name.as_bytes(), None)).unwrap();
        let reply = read_reply(&mut stream).unwrap();
        let found = match reply.status {
            210 => {
                Some(version_of(&reply.payload).unwrap_or_else(|| panic!("{name}: restored a partial file")))
            }
            1001 => None,
            other => panic!("{name}: status {other}"),
        };
        let allowed = found == known.acked || found.is_some_and(|f| known.in_flight.contains(&f));
        assert!(
            allowed,
            "{user}/{name}: found {found:?}, acknowledged {:?}, in flight {:?}",
            known.acked, known.in_flight
        );
        if known.acked.is_some() {
            checked += 1;
        }
        *known = Known { acked: found, in_flight: Vec::new() };
    }
    checked
}

fn crash_test(rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let history: History = Arc::default();
    let seeds = Arc::new(AtomicU64::new(1));
    let (mut acked_total, mut in_flight_total, mut checked_total) = (0u64, 0u64, 0usize);
    let mut rng = Rng(0x5eed_c4a5);
    for round in 0..rounds {
        let mut server = ChildServer::start(&root, &[]);
        assert_eq!(temporary_files(&root), Vec::<String>::new(), "temporary files removed at start-up");
        checked_total += verify_after_restart(&server, &history);

        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..8u32)
            .map(|worker| {
                let (history, seeds, stop, acked, addr) =
                    (history.clone(), seeds.clone(), stop.clone(), acked.clone(), server.addr);
                thread::spawn(move || {
                    let user = 7000 + worker;
                    let mut rng = Rng(u64::from(worker) * 7919 + round as u64 + 1);
                    let Ok(mut stream) = TcpStream::connect(addr) else { return };
                    // Odd workers pipeline four backups a write, so the
                    // server group-commits; even ones wait for each answer.
                    let depth = if worker % 2 == 1 { 4 } else { 1 };
                    while !stop.load(Ordering::SeqCst) {
                        let batch: Vec<(String, u64)> = (0..depth)
                            .map(|_| (format!("file-{}", rng.below(3)), seeds.fetch_add(1, Ordering::SeqCst)))
                            .collect();
                        let mut bytes = Vec::new();
                        for (name, seed) in &batch {
                            let data = versioned(*seed, 8 + rng.below(200_000) as usize);
                            history
                                .lock()
                                .unwrap()
                                .entry((user, name.clone()))
                                .or_default()
                                .in_flight
                                .push(*seed);
                            bytes.extend(request(user, BACKUP, name.as_bytes(), Some(&data)));
                        }
                        if stream.write_all(&bytes).is_err() {
                            return; // the server died
                        }
                        for (name, seed) in batch {
                            match read_reply(&mut stream) {
                                Ok(reply) if reply.status == 212 => {
                                    acked.fetch_add(1, Ordering::SeqCst);
                                    let mut history = history.lock().unwrap();
                                    let known = history.get_mut(&(user, name)).unwrap();
                                    // Seeds grow in send order: later ones stay in flight.
                                    known.acked = Some(seed);
                                    known.in_flight.retain(|s| *s > seed);
                                }
                                Ok(reply) => panic!("backup answered {}", reply.status),
                                Err(_) => return,
                            }
                        }
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(30 + rng.below(150)));
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.join().unwrap();
        }
        acked_total += acked.load(Ordering::SeqCst);
        in_flight_total += history.lock().unwrap().values().map(|k| k.in_flight.len() as u64).sum::<u64>();
    }
    let server = ChildServer::start(&root, &[]);
    checked_total += verify_after_restart(&server, &history);
    drop(server);
    assert_root_is_clean(&root);
    println!(
        "crash test: {rounds} SIGKILLs, {acked_total} backups acknowledged, {in_flight_total} in flight at a kill, \
         {checked_total} acknowledged files checked after restarts, 0 lost, 0 partial"
    );
}

#[test]
fn acknowledged_backups_survive_sigkill_and_nothing_partial_appears() {
    crash_test(50);
}

#[test]
#[ignore = "long: run with --ignored"]
fn long_acknowledged_backups_survive_a_hundred_sigkills() {
    crash_test(100);
}

// ---------------------------------------------------------------------------
// Load: many clients mixing every op over shared and separate users.

fn load_test(clients: u32, duration: Duration) {
    let dir = tempfile::tempdir().unwrap();
    // Every client comes from 127.0.0.1, and a reconnecting one may arrive
    // before the server has seen its previous connection close.
    let server = ChildServer::start(dir.path(), &["--max-connections-per-ip", "2048"]);
    let seeds = Arc::new(AtomicU64::new(1));
    let ops = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (seeds, ops, addr) = (seeds.clone(), ops.clone(), server.addr);
            thread::spawn(move || {
                let mut rng = Rng(u64::from(c) + 99);
                let connect = || {
                    let s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    s
                };
                let mut stream = connect();
                while Instant::now() < deadline {
                    let user = if rng.below(2) == 0 { 5000 } else { 6000 + c };
                    let name = format!("n{}", rng.below(6));
                    let op = [BACKUP, RESTORE, DELETE, LIST][rng.below(4) as usize];
                    let data =
                        versioned(seeds.fetch_add(1, Ordering::Relaxed), 8 + rng.below(40_000) as usize);
                    let payload = (op == BACKUP).then_some(&data[..]);
                    stream.write_all(&request(user, op, name.as_bytes(), payload)).unwrap();
                    let reply = read_reply(&mut stream).unwrap();
                    match (op, reply.status) {
                        (BACKUP, 212) | (DELETE, 212 | 1001) | (RESTORE, 1001) | (LIST, 211 | 1002) => {}
                        (RESTORE, 210) => assert!(version_of(&reply.payload).is_some(), "a whole version"),
                        (op, status) => panic!("op {op} answered {status}: {:?}", reply.reason()),
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                    if rng.below(20) == 0 {
                        stream = connect(); // some clients reconnect
                    }
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        samples.push(server.rss_kib());
        thread::sleep(Duration::from_millis(200));
    }
    for worker in workers {
        worker.join().unwrap();
    }
    samples.push(server.rss_kib());
    let peak = samples.iter().max().copied().unwrap_or(0);
    let settled = samples[samples.len() / 4..].iter().min().copied().unwrap_or(0);
    let last = *samples.last().unwrap();
    println!(
        "load test: {clients} clients for {duration:?}: {} requests, 0 errors; server RSS peak {} MiB, \
         after warm-up {} MiB, at the end {} MiB",
        ops.load(Ordering::Relaxed),
        peak / 1024,
        settled / 1024,
        last / 1024
    );
    // Flat memory: a fixed buffer per connection, nothing that grows per request.
    assert!(last <= settled + 32 * 1024, "server memory grew from {settled} KiB to {last} KiB");
    assert_root_is_clean(dir.path());
}

#[test]
fn two_hundred_fifty_six_clients_mixing_every_op_get_no_errors_and_whole_versions() {
    load_test(256, Duration::from_secs(3));
}

#[test]
#[ignore = "long: run with --ignored"]
fn long_two_hundred_fifty_six_clients_for_a_minute() {
    load_test(256, Duration::from_secs(60));
}

// ---------------------------------------------------------------------------
// Slow and idle clients.

fn slow_clients(stalled: usize) {
    let dir = tempfile::tempdir().unwrap();
    // All from 127.0.0.1, so the per-address limit is raised; and the
    // byte-every-0.7 s clients below are what --min-rate cuts, so it is off:
    // this test is about the idle timeout (tests/slow_clients.rs, the rate).
    let server = ChildServer::start(
        dir.path(),
        &[
            "--idle-timeout",
            "2",
            "--max-connections",
            "2048",
            "--max-connections-per-ip",
            "2048",
            "--min-rate",
            "0",
        ],
    );
    let idle: Vec<TcpStream> = (0..stalled)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(&[1]).unwrap(); // one byte of a request, then nothing
            s
        })
        .collect();
    // A few clients send a request a byte at a time, well within the timeout.
    let dribblers: Vec<_> = (0..3u32)
        .map(|i| {
            let addr = server.addr;
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                for byte in request(8000 + i, LIST, b"", None) {
                    s.write_all(&[byte]).unwrap();
                    thread::sleep(Duration::from_millis(700));
                }
                read_reply(&mut s).unwrap().status
            })
        })
        .collect();
    // A well-behaved client is served promptly throughout.
    let mut client = PlainClient { stream: server.connect(), user: 8100 };
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(5);
    let mut requests = 0;
    while Instant::now() < until {
        let started = Instant::now();
        assert_eq!(client.call(BACKUP, b"f", Some(&versioned(requests, 1000))).status, 212);
        assert_eq!(version_of(&client.call(RESTORE, b"f", None).payload), Some(requests));
        slowest = slowest.max(started.elapsed());
        requests += 1;
        thread::sleep(Duration::from_millis(100));
    }
    assert!(slowest < Duration::from_secs(1), "a well-behaved client waited {slowest:?}");
    for d in dribblers {
        assert_eq!(d.join().unwrap(), 1002, "a slow but steady client is served");
    }
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        match s.read(&mut [0; 16]) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => closed += 1,
            other => panic!("a stalled connection was not closed: {other:?}"),
        }
    }
    assert_eq!(closed, stalled);
    println!(
        "slow clients: {stalled} stalled connections all closed by the idle timeout; 3 byte-a-second clients \
         served; the well-behaved client's slowest round trip {slowest:?} over {requests} rounds"
    );
}

#[test]
fn a_thousand_stalled_connections_do_not_starve_a_well_behaved_client() {
    slow_clients(1000);
}

// ---------------------------------------------------------------------------
// Hostile input against the running server.

/// Sends `bytes`, closes our side, and returns everything the server sent
/// before closing its own.
fn exchange(server: &TestServer, bytes: &[u8]) -> Vec<u8> {
    let mut s = server.connect();
    s.write_all(bytes).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

fn error_reply(version: u8, reason: &str) -> Vec<u8> {
    let mut bytes = vec![version, 0xeb, 0x03, 0, 0];
    bytes.extend_from_slice(&(reason.len() as u32).to_le_bytes());
    bytes.extend_from_slice(reason.as_bytes());
    bytes
}

fn header(op: u8, name_len: u16, name: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x2a, 0, 0, 0, 2, op];
    bytes.extend_from_slice(&name_len.to_le_bytes());
    bytes.extend_from_slice(name);
    bytes
}

#[test]
fn every_malformed_request_gets_its_exact_response_or_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"secret").unwrap();
    let server = TestServer::start_in(&dir.path().join("root"), |c| c.max_file_size = 1 << 20);
    let valid = request(42, BACKUP, b"doc", Some(b"payload"));
    let mut tried = 0;

    // Every truncation of a valid request: no answer, a clean close.
    for cut in 0..valid.len() {
        assert_eq!(exchange(&server, &valid[..cut]), b"", "cut at {cut}");
        tried += 1;
    }
    let name_len = "name length must be 1 to 255 bytes";
    let restore_255 = header(RESTORE, 255, &[b'x'; 255]);
    let mut not_found_255 = vec![2, 0xe9, 0x03, 255, 0];
    not_found_255.extend_from_slice(&[b'x'; 255]);
    not_found_255.extend_from_slice(&[0; 4]);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("name_len 0", header(RESTORE, 0, b""), error_reply(2, name_len)),
        ("name_len 255", restore_255, not_found_255),
        ("name_len 256", header(RESTORE, 256, &[b'x'; 256]), error_reply(2, name_len)),
        ("name_len 65535", header(DELETE, 65535, b"x"), error_reply(2, name_len)),
        ("size 0", [header(BACKUP, 1, b"e"), vec![0; 4]].concat(), vec![2, 0xd4, 0, 1, 0, b'e', 0, 0, 0, 0]),
        (
            "size u32::MAX",
            [header(BACKUP, 1, b"e"), vec![0xff; 4]].concat(),
            error_reply(2, "file exceeds the server's size limit"),
        ),
        ("op 0 (padding)", vec![0x2a, 0, 0, 0, 2, 0], vec![]),
        ("op 1", vec![0x2a, 0, 0, 0, 2, 1], error_reply(2, "unknown op")),
        ("op 99", vec![0x2a, 0, 0, 0, 2, 99], error_reply(2, "unknown op")),
        ("op 203", vec![0x2a, 0, 0, 0, 2, 203], error_reply(2, "unknown op")),
        ("op 255", vec![0x2a, 0, 0, 0, 2, 255], error_reply(2, "unknown op")),
        ("version 0", vec![0x2a, 0, 0, 0, 0, 202], error_reply(1, "unsupported protocol version")),
        ("invalid UTF-8", header(RESTORE, 2, b"\xc3\x28"), error_reply(2, "name is not valid UTF-8")),
        ("..", header(RESTORE, 2, b".."), error_reply(2, "name is '.' or '..'")),
        (".", header(DELETE, 1, b"."), error_reply(2, "name is '.' or '..'")),
        ("a/../b", header(RESTORE, 6, b"a/../b"), error_reply(2, "name contains '/'")),
        ("\\..\\", header(RESTORE, 4, b"\\..\\"), error_reply(2, "name contains '\\'")),
        ("absolute", header(RESTORE, 11, b"/etc/passwd"), error_reply(2, "name contains '/'")),
        ("NUL", header(RESTORE, 3, b"a\0b"), error_reply(2, "name contains a NUL byte")),
        ("newline", header(RESTORE, 3, b"a\nb"), error_reply(2, "name contains a control character")),
    ];
    for (what, bytes, expected) in &cases {
        assert_eq!(&exchange(&server, bytes), expected, "{what}");
        tried += 1;
    }
    std::fs::create_dir_all(server.root.join("42")).unwrap();
    std::os::unix::fs::symlink(&outside, server.root.join("42/link")).unwrap();
    let reply = exchange(&server, &header(RESTORE, 4, b"link"));
    assert_eq!(reply, error_reply(2, "not a regular file"), "planted symlink");
    std::fs::remove_file(server.root.join("42/link")).unwrap();
    tried += 1;
    assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
    assert_eq!(dir_names(dir.path()), ["outside", "root"]);
    assert_root_is_clean(&server.root);
    println!("hostile corpus: {tried} malformed requests, each with its exact response or a clean close");
}

/// Random bytes and mutated valid requests, each on its own connection.
fn random_input(connections: u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(&dir.path().join("root"), |c| {
        c.max_file_size = 1 << 20;
        c.idle_timeout = Duration::from_secs(5);
    });
    let seeds = [
        request(1, BACKUP, b"a.txt", Some(b"hello")),
        request(1, RESTORE, b"a.txt", None),
        request(1, DELETE, b"a.txt", None),
        request(1, LIST, b"", None),
    ];
    let responses = Arc::new(AtomicU64::new(0));
    thread::scope(|scope| {
        for t in 0..4u64 {
            let (server, seeds, responses) = (&server, &seeds, responses.clone());
            scope.spawn(move || {
                let mut rng = Rng(0xfeed + t);
                for _ in 0..connections / 4 {
                    let mut bytes = match rng.below(3) {
                        0 => (0..rng.below(600)).map(|_| rng.next() as u8).collect(),
                        _ => seeds[rng.below(4) as usize].clone(),
                    };
                    for _ in 0..rng.below(4) {
                        let at = rng.below(bytes.len() as u64 + 1) as usize;
                        match rng.below(3) {
                            0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                            1 => bytes.truncate(at),
                            _ => bytes.insert(at.min(bytes.len()), rng.next() as u8),
                        }
                    }
                    if rng.below(2) == 0 {
                        bytes.extend_from_slice(&seeds[rng.below(4) as usize]);
                    }
                    let out = exchange(server, &bytes);
                    // Whatever came back is a sequence of whole responses.
                    let mut dec = ResponseDecoder::new();
                    let mut rest = &out[..];
                    while !rest.is_empty() {
                        let (used, event) = dec.feed(rest).expect("valid responses");
                        if event == Decoded::Header {
                            responses.fetch_add(1, Ordering::Relaxed);
                        }
                        rest = &rest[used..];
                        if dec.is_complete() {
                            dec.reset();
                        }
                    }
                    assert!(dec.finish().is_ok(), "the last response is whole");
                }
            });
        }
    });
    // The server still serves correctly, and nothing exists outside the root.
    let mut client = PlainClient::new(&server, 77);
    assert_eq!(client.call(BACKUP, b"after", Some(b"still fine")).status, 212);
    assert_eq!(client.call(RESTORE, b"after", None).payload, b"still fine");
    eventually("no temporary file is left", || temporary_files(&server.root).is_empty());
    assert_eq!(dir_names(dir.path()), ["root"]);
    assert_root_is_clean(&server.root);
    println!(
        "random input: {connections} connections of random or mutated bytes, {} responses, all valid; \
         the server serves on and nothing exists outside its root",
        responses.load(Ordering::Relaxed)
    );
}

#[test]
fn random_and_mutated_input_never_hurts_the_server_or_escapes_the_root() {
    random_input(400);
}

#[test]
#[ignore = "long: run with --ignored"]
fn long_random_and_mutated_input_on_twenty_thousand_connections() {
    random_input(20_000);
}
