//! Threads: the real server binary runs a bounded number of them, and a
//! thread the kernel refuses costs one connection, never the server.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// The server's thread count, from /proc.
fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// A cgroup (v1) of the pids controller for one process, removed on drop
/// (after the process is gone: a cgroup with tasks cannot be removed).
struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    /// `None`, with the reason printed, where the test cannot make one.
    fn create() -> Option<PidsCgroup> {
        let base = PathBuf::from("/sys/fs/cgroup/pids");
        let dir = base.join(format!("backup-server-test-{}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => Some(PidsCgroup { dir }),
            Err(e) => {
                println!(
                    "SKIPPED: cannot create a pids cgroup at {} ({e}): this test needs root and cgroup v1's \
                     pids controller to make the kernel refuse threads",
                    dir.display()
                );
                None
            }
        }
    }

    fn write(&self, file: &str, value: &str) {
        std::fs::write(self.dir.join(file), value).unwrap_or_else(|e| panic!("write {value} to {file}: {e}"));
    }

    fn current(&self) -> usize {
        std::fs::read_to_string(self.dir.join("pids.current")).unwrap().trim().parse().unwrap()
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Sends a list request and reads the answer's status, within `wait`.
fn list_status(addr: std::net::SocketAddr, wait: Duration) -> (TcpStream, Result<Reply, std::io::Error>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(&request(40, LIST, b"", None)).unwrap();
    let reply = read_reply(&mut s);
    (s, reply)
}

#[test]
fn a_thread_the_kernel_refuses_costs_one_connection_and_the_server_serves_on() {
    let Some(cgroup) = PidsCgroup::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--max-connections", "16", "--idle-timeout", "30"]);
    cgroup.write("cgroup.procs", &server.child.id().to_string());
    // Room for two connection threads beyond those running now.
    let running = cgroup.current();
    cgroup.write("pids.max", &(running + 2).to_string());

    let served: Vec<TcpStream> = (0..2)
        .map(|i| {
            let (s, reply) = list_status(server.addr, Duration::from_secs(10));
            assert_eq!(reply.unwrap().status, 1002, "connection {i} is served while threads are available");
            s
        })
        .collect();
    // No thread left: each further connection is answered and closed, at once.
    let started = Instant::now();
    for i in 0..3 {
        let (mut s, reply) = list_status(server.addr, Duration::from_secs(10));
        let reply = reply.unwrap_or_else(|e| panic!("refused connection {i} got no answer: {e}"));
        assert_eq!((reply.version, reply.status), (1, 1003));
        assert!(reply.reason().contains("out of threads"), "{:?}", reply.reason());
        assert_eq!(s.read(&mut [0; 16]).unwrap(), 0, "then closed");
    }
    let refused_in = started.elapsed();
    assert!(server.child.try_wait().unwrap().is_none(), "the server is still running");

    // Once a connection ends, its thread serves the next one.
    drop(served);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused_meanwhile = 0;
    loop {
        let (_s, reply) = list_status(server.addr, Duration::from_secs(10));
        match reply.unwrap().status {
            1002 => break,
            1003 => refused_meanwhile += 1,
            other => panic!("answered {other}"),
        }
        assert!(Instant::now() < deadline, "no connection served after the first ones closed");
        thread::sleep(Duration::from_millis(20));
    }
    // And with the limit lifted, new threads again.
    cgroup.write("pids.max", "max");
    let many: Vec<_> = (0..6).map(|_| list_status(server.addr, Duration::from_secs(10))).collect();
    for (_, reply) in &many {
        assert_eq!(reply.as_ref().unwrap().status, 1002);
    }
    assert!(server.child.try_wait().unwrap().is_none(), "the server is still running");
    println!(
        "refused threads: pids.max {} (the server ran {running} tasks); 3 connections refused with a 1003 \
         in {refused_in:?}; after the first two closed, served again ({refused_meanwhile} refused while \
         their threads went idle); 6 served once the limit was lifted",
        running + 2
    );
    drop(many);
    server.kill();
}

#[test]
fn a_hundred_busy_connections_run_on_at_most_a_hundred_and_twelve_threads() {
    const CLIENTS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path(), &["--max-connections", "100"]);
    let pid = server.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (addr, stop, acks) = (server.addr, stop.clone(), acks.clone());
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Pipelined: the server group-commits what is waiting.
                    let batch: Vec<u8> = (0..8)
                        .flat_map(|i| {
                            let name = format!("f{i}");
                            request(7000 + c as u32, BACKUP, name.as_bytes(), Some(&versioned(round, 2000)))
                        })
                        .collect();
                    s.write_all(&batch).unwrap();
                    for _ in 0..8 {
                        assert_eq!(read_reply(&mut s).unwrap().status, 212);
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    round += 1;
                }
            })
        })
        .collect();
    let mut most = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        most = most.max(threads_of(pid));
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let limit = CLIENTS + 8 + 4;
    println!(
        "threads: at most {most} in the server with {CLIENTS} connections backing up pipelined batches \
         ({} backups acknowledged); the bound is {limit}",
        acks.load(Ordering::Relaxed)
    );
    assert!(most <= limit, "{most} threads, over {limit}");
}

/// Not a test of threads, but of what the refusal path must not do: a
/// refused connection whose client never closes still goes away.
#[test]
fn a_refused_client_that_never_closes_is_closed_after_a_short_linger() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path(), &["--max-connections-per-ip", "1"]);
    let mut first = server.connect();
    first.write_all(&request(41, LIST, b"", None)).unwrap();
    assert_eq!(read_reply(&mut first).unwrap().status, 1002);
    let mut second = server.connect();
    let reply = read_reply(&mut second).unwrap();
    assert_eq!((reply.version, reply.status), (1, 1003));
    assert!(reply.reason().contains("too many connections from your address"), "{:?}", reply.reason());
    // We keep sending and never close; the server discards it, then closes
    // its socket, and our writes start failing (a reset answers them).
    let started = Instant::now();
    let closed = loop {
        if second.write_all(&[0; 512]).is_err() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(closed, "the refused connection was closed");
    println!("a refused client that kept sending was closed after {:?}", started.elapsed());
    assert_eq!(
        {
            first.write_all(&request(41, LIST, b"", None)).unwrap();
            read_reply(&mut first).unwrap().status
        },
        1002,
        "the admitted connection is still served"
    );
}
