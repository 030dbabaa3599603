//! Connection handling: idle timeouts, the bound on connections served at
//! once, and the binary's start-up and graceful shutdown.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::process::{Child, Command};
use std::time::Duration;

use support::*;

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| c.idle_timeout = Duration::from_secs(1));
    let mut idle = server.connect();
    idle.write_all(&[1]).unwrap(); // one byte of a request, then silence
    let mut busy = PlainClient::new(&server, 20);
    for i in 0..5u8 {
        assert_eq!(busy.call(BACKUP, b"f", Some(&[i; 100])).status, 212);
        std::thread::sleep(Duration::from_millis(100));
    }
    idle.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let closed = matches!(idle.read(&mut [0; 1]), Ok(0)) || matches!(idle.read(&mut [0; 1]), Ok(0));
    assert!(closed, "the idle connection was closed by the server");
}

#[test]
fn clients_beyond_max_connections_wait_and_are_then_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| c.max_connections = 2);
    let mut first = PlainClient::new(&server, 21);
    let mut second = PlainClient::new(&server, 22);
    assert_eq!(first.call(LIST, b"", None).status, 1002);
    assert_eq!(second.call(LIST, b"", None).status, 1002);

    let mut third = server.connect();
    third.write_all(&request(23, LIST, b"", None)).unwrap();
    third.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let err = third.read(&mut [0; 1]).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "not served yet: {err}");

    drop(first);
    third.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(read_reply(&mut third).unwrap().status, 1002, "served once a slot is free");
}

fn start_binary(root: &std::path::Path, extra: &[&str]) -> ChildServer {
    ChildServer::start(root, extra)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_lets_transfers_in_flight_finish_and_answers_held_212s_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_binary(dir.path(), &["--shutdown-grace", "20"]);
    let payload = pattern(200_000, 3);
    let full = request(30, BACKUP, b"late", Some(&payload));
    let mut uploading = std::net::TcpStream::connect(server.addr).unwrap();
    uploading.write_all(&full[..1000]).unwrap();
    let mut idle = std::net::TcpStream::connect(server.addr).unwrap();
    idle.write_all(&request(30, LIST, b"", None)).unwrap();
    assert_eq!(read_reply(&mut idle).unwrap().status, 1002);

    std::thread::sleep(Duration::from_millis(200));
    sigterm(&server.child);
    // The idle connection is closed at once; the upload may finish.
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(idle.read(&mut [0; 1]).unwrap(), 0);
    // The rest of it, and more pipelined behind it: their 212s are held for
    // a group commit when the connection turns idle, and must still go out.
    let more: Vec<u8> =
        (0..20).flat_map(|i| request(30, BACKUP, format!("more-{i}").as_bytes(), Some(b"x"))).collect();
    uploading.write_all(&[&full[1000..], &more[..]].concat()).unwrap();
    uploading.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..21 {
        assert_eq!(read_reply(&mut uploading).unwrap().status, 212);
    }
    drop(uploading);

    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(std::fs::read(dir.path().join("30/late")).unwrap() == payload);
    assert_eq!(std::fs::read(dir.path().join("30/more-19")).unwrap(), b"x");
}

#[test]
fn sigterm_aborts_transfers_that_outlast_the_grace_time_and_removes_their_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_binary(dir.path(), &["--shutdown-grace", "1"]);
    let mut uploading = std::net::TcpStream::connect(server.addr).unwrap();
    uploading.write_all(&request(31, BACKUP, b"never", None)).unwrap();
    uploading.write_all(&1_000_000u32.to_le_bytes()).unwrap();
    uploading.write_all(&[0; 1000]).unwrap();
    eventually("the upload has started", || !temporary_files(dir.path()).is_empty());
    sigterm(&server.child);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(temporary_files(dir.path()), Vec::<String>::new());
    assert!(!dir.path().join("31/never").exists());
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_backup-server")).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--root",
        "--max-connections",
        "--max-file-size",
        "--quota",
        "--idle-timeout",
        "--log-level",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
    assert!(help.contains("BACKUP_ROOT"), "--help names the environment variables");
}

#[test]
fn a_bad_flag_value_exits_non_zero_with_a_message() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_backup-server")).args(["--max-file-size", "5GiB"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("4294967295"), "says the limit: {err}");
}

/// `--shutdown-grace` and `--idle-timeout` take any number of seconds, so
/// "forever" may be spelled as the largest: the shutdown's deadline must not
/// overflow the clock (it panicked the accept loop: `Instant + Duration`).
#[test]
fn a_shutdown_grace_and_idle_timeout_beyond_the_clock_mean_no_limit_and_the_server_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| {
        c.shutdown_grace = Duration::from_secs(u64::MAX);
        c.idle_timeout = Duration::from_secs(u64::MAX);
    });
    let mut idle = PlainClient::new(&server, 24);
    assert_eq!(idle.call(LIST, b"", None).status, 1002);
    // Stopping ends the idle connection at once and returns (no panic).
    server.stop();
    assert_eq!(idle.stream.read(&mut [0; 1]).unwrap(), 0, "closed by the shutdown");
}

/// Group commit holds a backup's 212 while the client has more for us, and
/// must send it before waiting for more input. A next request that arrives
/// in pieces was waited for with the 212 held (and the backup not even in
/// place) until it completed or the idle timeout cut the connection: while
/// a slow link delivered the next header, or the whole of the next payload.
#[test]
fn a_held_212_goes_out_when_the_next_request_stalls_in_its_header_or_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| c.idle_timeout = Duration::from_secs(20));
    let mut c = PlainClient::new(&server, 25);
    c.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let b = request(25, BACKUP, b"b", Some(&[2; 1000]));
    let d = request(25, BACKUP, b"d", Some(&[4; 1000]));

    // a, then the first bytes of b's header, and nothing more for now.
    c.stream.write_all(&[&request(25, BACKUP, b"a", Some(b"abc"))[..], &b[..7]].concat()).unwrap();
    let reply = read_reply(&mut c.stream).expect("212 for a while b's header is incomplete");
    assert_eq!((reply.status, reply.name.as_slice()), (212, &b"a"[..]));
    assert_eq!(std::fs::read(server.root.join("25/a")).unwrap(), b"abc");

    // The rest of b, then d's header and half its payload.
    c.stream.write_all(&[&b[7..], &d[..d.len() / 2]].concat()).unwrap();
    let reply = read_reply(&mut c.stream).expect("212 for b while d's payload is incomplete");
    assert_eq!((reply.status, reply.name.as_slice()), (212, &b"b"[..]));
    c.stream.write_all(&d[d.len() / 2..]).unwrap();
    assert_eq!(read_reply(&mut c.stream).unwrap().status, 212);
}
