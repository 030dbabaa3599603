//! The client against the attacks of the adversarial review (issue #17,
//! items 10 to 13): the real binary against the real server in-process, or
//! against small fake servers that misbehave on purpose.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod support;

use support::*;

/// A response as a server sends it.
fn response(status: u16, name: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![2u8];
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads one request header (and a backup's payload); returns the op and name.
fn read_request(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 6];
    s.read_exact(&mut head).ok()?;
    let op = head[5];
    let mut name = Vec::new();
    if op != 202 {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        name = vec![0u8; u16::from_le_bytes(len) as usize];
        s.read_exact(&mut name).ok()?;
    }
    if op == 100 {
        let mut size = [0u8; 4];
        s.read_exact(&mut size).ok()?;
        std::io::copy(&mut s.take(u64::from(u32::from_le_bytes(size))), &mut std::io::sink()).ok()?;
    }
    Some((op, name))
}

/// A fake server: `serve` handles each connection, on a thread of its own.
fn fake_server(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = std::sync::Arc::new(serve);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let serve = serve.clone();
            thread::spawn(move || serve(stream));
        }
    });
    addr
}

// Item 10: two files with one base name.

#[test]
fn backing_up_two_files_with_one_base_name_is_refused_before_anything_is_sent() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    work.write("a/notes.txt", b"first");
    work.write("b/notes.txt", b"second");
    let addr = server.addr.to_string();
    let s = ["--server", addr.as_str(), "--user", "10"];
    let out = work.client(&[&s[..], &["backup", "a/notes.txt", "b/notes.txt"]].concat());
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("a/notes.txt") && err.contains("b/notes.txt") && err.contains("--as"), "{err}");
    assert_exit(&work.client(&[&s[..], &["list"]].concat()), 4);

    work.write("backup.info", b"a/notes.txt\nb/notes.txt\n");
    let out = work.client(&[&s[..], &["run"]].concat());
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("a/notes.txt") && err.contains("b/notes.txt"), "{err}");
    assert!(stdout(&out).is_empty(), "no step ran: {}", stdout(&out));
    assert_exit(&work.client(&[&s[..], &["list"]].concat()), 4);
}

// Item 11: server text on the terminal, and answers for other files.

/// Terminal escapes a hostile server tried: a window-title change, a screen
/// clear, and a carriage return that overwrites the line with a fake one.
const EVIL: &[&[u8]] =
    &[b"\x1b]0;owned\x07title.txt", b"\x1b[2Jclear.txt", b"x\r\x1b[Kbackup-client: all good"];

fn evil_server() -> SocketAddr {
    fake_server(|mut s| {
        while let Some((op, name)) = read_request(&mut s) {
            let answer = match op {
                202 => {
                    response(211, b"", &EVIL.iter().flat_map(|n| [*n, b"\n"].concat()).collect::<Vec<_>>())
                }
                100 if name == b"refused.txt" => response(1003, b"", &EVIL.concat()),
                100 => response(212, b"other.txt", b""),
                200 => response(210, b"other.txt", b"someone else's"),
                _ => response(1001, b"other.txt", b""),
            };
            if s.write_all(&answer).is_err() {
                return;
            }
        }
    })
}

#[track_caller]
fn assert_no_terminal_controls(text: &str) {
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "raw control characters in {text:?}");
}

#[test]
fn names_and_reasons_from_the_server_are_printed_with_controls_escaped() {
    let addr = evil_server().to_string();
    let work = Workdir::new();
    let s = ["--server", addr.as_str(), "--user", "11"];
    let out = work.client(&[&s[..], &["list"]].concat());
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert_no_terminal_controls(&text);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["\\u{1b}]0;owned\\u{7}title.txt", "\\u{1b}[2Jclear.txt", "x\\u{d}\\u{1b}[Kbackup-client: all good"]
    );

    work.write("refused.txt", b"data");
    let out = work.client(&[&s[..], &["backup", "refused.txt"]].concat());
    assert_exit(&out, 5);
    let err = stderr(&out);
    assert_no_terminal_controls(&err);
    assert!(err.contains("\\u{1b}]0;owned"), "{err}");

    work.write("docs/a.txt", b"data");
    work.write("docs/backup.info", b"a.txt\n");
    let out = work.client(&[&s[..], &["run", "--info", "docs/backup.info"]].concat());
    assert_no_terminal_controls(&stdout(&out));
    assert!(stdout(&out).contains("\\u{1b}[2Jclear.txt"), "{}", stdout(&out));
}

#[test]
fn an_answer_naming_another_file_is_a_protocol_error_not_a_success() {
    let addr = evil_server().to_string();
    let work = Workdir::new();
    let s = ["--server", addr.as_str(), "--user", "11"];
    work.write("mine.txt", b"data");
    for args in [&["backup", "mine.txt"][..], &["restore", "mine.txt", "-o", "back"], &["delete", "mine.txt"]]
    {
        let out = work.client(&[&s[..], args].concat());
        assert_exit(&out, 6);
        assert!(stderr(&out).contains("names another file"), "{args:?}: {}", stderr(&out));
        assert!(!stdout(&out).contains("backed up") && !stdout(&out).contains("deleted"), "{}", stdout(&out));
    }
    assert!(!work.path("back").exists(), "nothing restored from another file's answer");
    work.write("second.txt", b"data");
    let out = work.client(&[&s[..], &["backup", "mine.txt", "second.txt"]].concat());
    assert_exit(&out, 6);
    assert!(stderr(&out).contains("0 of 2 files were backed up"), "{}", stderr(&out));
}

// Item 12: memory that grows with the listing, and waits without end.

/// A server that keeps files in memory and lists `extra` names `a` before
/// them: 40 MB of `a\n` took the old client to 1 GB.
fn big_list_server(extra: usize) -> SocketAddr {
    let files: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>> =
        Default::default();
    fake_server(move |mut s| {
        loop {
            let mut head = [0u8; 6];
            if s.read_exact(&mut head).is_err() {
                return;
            }
            let op = head[5];
            let mut name = Vec::new();
            if op != 202 {
                let mut len = [0u8; 2];
                s.read_exact(&mut len).unwrap();
                name = vec![0u8; u16::from_le_bytes(len) as usize];
                s.read_exact(&mut name).unwrap();
            }
            let mut files = files.lock().unwrap();
            let answer = match op {
                100 => {
                    let mut size = [0u8; 4];
                    s.read_exact(&mut size).unwrap();
                    let mut data = vec![0u8; u32::from_le_bytes(size) as usize];
                    s.read_exact(&mut data).unwrap();
                    files.insert(name.clone(), data);
                    response(212, &name, b"")
                }
                200 => match files.get(&name) {
                    Some(data) => response(210, &name, data),
                    None => response(1001, &name, b""),
                },
                201 => match files.remove(&name) {
                    Some(_) => response(212, &name, b""),
                    None => response(1001, &name, b""),
                },
                _ => {
                    let tail: Vec<u8> = files.keys().flat_map(|n| [&n[..], b"\n"].concat()).collect();
                    let size = (extra * 2 + tail.len()) as u32;
                    let mut head = response(211, b"", b"");
                    head[5..9].copy_from_slice(&size.to_le_bytes());
                    if s.write_all(&head).is_err() {
                        return;
                    }
                    let chunk = b"a\n".repeat(32 * 1024);
                    let mut left = extra;
                    while left > 0 {
                        let n = left.min(32 * 1024);
                        if s.write_all(&chunk[..n * 2]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                    tail
                }
            };
            if s.write_all(&answer).is_err() {
                return;
            }
        }
    })
}

/// The peak resident memory of a process so far, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the client with stdout counted, not kept; returns its exit code,
/// stdout's line count, its first lines, stderr and its peak memory in KiB.
fn run_measured(work: &Workdir, args: &[&str]) -> (Option<i32>, usize, Vec<String>, String, u64) {
    let mut child = work.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let counter = thread::spawn(move || {
        let mut lines = 0;
        let mut first = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = out.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            if first.len() < 64 * 1024 {
                first.extend_from_slice(&buf[..n]);
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
        }
        let first = String::from_utf8_lossy(&first).lines().take(20).map(String::from).collect();
        (lines, first)
    });
    let mut err = child.stderr.take().unwrap();
    let errors = thread::spawn(move || {
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        text
    });
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("the client took over two minutes");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let (lines, first) = counter.join().unwrap();
    assert!(peak > 0, "the client's memory was read at least once");
    (status.code(), lines, first, errors.join().unwrap(), peak)
}

const A_LINES: usize = 20_000_000;
const MAX_RSS_KIB: u64 = 64 * 1024;

#[test]
fn a_40_mb_listing_streams_through_in_bounded_memory() {
    let addr = big_list_server(A_LINES).to_string();
    let work = Workdir::new();
    let (code, lines, first, err, peak) = run_measured(&work, &["--server", &addr, "--user", "12", "list"]);
    println!("list of {A_LINES} names (40 MB): client peak RSS {peak} KiB");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines, A_LINES, "every name printed");
    assert_eq!(first[0], "a");
    assert!(peak < MAX_RSS_KIB, "peak RSS {peak} KiB");
}

#[test]
fn a_run_session_keeps_a_bounded_summary_of_a_40_mb_listing() {
    let addr = big_list_server(A_LINES).to_string();
    let work = Workdir::new();
    work.write("z.txt", b"last in the list");
    work.write("backup.info", b"z.txt\n");
    let (code, _, first, err, peak) = run_measured(&work, &["--server", &addr, "--user", "12", "run"]);
    println!("run with lists of {A_LINES} names: client peak RSS {peak} KiB");
    assert_eq!(code, Some(0), "{err}\n{first:?}");
    let step = &first[0];
    let shown = &step[..step.len().min(300)];
    assert!(step.starts_with("[1/6] list: 20000000 files: a, a,"), "{shown}");
    assert!(step.ends_with(", and 19999990 more") && step.len() < 200, "{shown}");
    assert!(first[2].contains("20000001 files") && first[2].ends_with("and 19999991 more"), "{first:?}");
    assert!(peak < MAX_RSS_KIB, "peak RSS {peak} KiB");
}

#[test]
fn a_server_trickling_a_byte_a_second_fails_within_the_timeout() {
    let addr = fake_server(|mut s| {
        if read_request(&mut s).is_none() {
            return;
        }
        // A list answer, one byte a second: each byte comes well within the
        // timeout, the answer never.
        for byte in response(211, b"", &b"a\n".repeat(100)) {
            if s.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_secs(1));
        }
    })
    .to_string();
    let work = Workdir::new();
    let started = Instant::now();
    let out = output_within(&work, &["--server", &addr, "--user", "12", "--timeout", "3", "list"], 10);
    let took = started.elapsed();
    println!("trickling server: the client gave up after {took:?}");
    assert_exit(&out, 6);
    assert!(stderr(&out).contains("3 s of --timeout"), "{}", stderr(&out));
    assert!(took >= Duration::from_secs(3), "not before the timeout: {took:?}");
}

#[test]
fn a_transfer_longer_than_the_timeout_passes_while_it_moves() {
    const CHUNK: usize = 128 * 1024;
    const CHUNKS: usize = 8;
    let addr = fake_server(|mut s| {
        let Some((_, name)) = read_request(&mut s) else { return };
        let mut head = response(210, &name, b"");
        let size = (CHUNK * CHUNKS) as u32;
        let at = head.len() - 4;
        head[at..].copy_from_slice(&size.to_le_bytes());
        s.write_all(&head).unwrap();
        for i in 0..CHUNKS {
            thread::sleep(Duration::from_millis(300));
            s.write_all(&vec![i as u8; CHUNK]).unwrap();
        }
    })
    .to_string();
    let work = Workdir::new();
    let started = Instant::now();
    let out = work.client(&["--server", &addr, "--user", "12", "--timeout", "1", "restore", "slow.bin"]);
    let took = started.elapsed();
    assert_exit(&out, 0);
    assert!(took > Duration::from_secs(2), "the transfer outlasted --timeout 1: {took:?}");
    assert_eq!(std::fs::metadata(work.path("slow.bin")).unwrap().len(), (CHUNK * CHUNKS) as u64);
}

// Item 13: configuration files with a byte order mark, or that are not files.

#[test]
fn server_info_and_backup_info_may_start_with_a_byte_order_mark() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    work.write("server.info", format!("\u{feff}{}\n", server.addr).as_bytes());
    work.write("a.txt", b"with a BOM");
    work.write("backup.info", "\u{feff}a.txt\n".as_bytes());
    let out = work.client(&["--user", "13", "run"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("[2/6] back up"), "{}", stdout(&out));
    assert_eq!(std::fs::read(work.path("tmp")).unwrap(), b"with a BOM");
}

#[test]
fn a_server_info_that_is_a_fifo_or_a_device_is_an_error_naming_it() {
    let work = Workdir::new();
    let fifo = work.path("server.info");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // Opening the FIFO would block until someone writes to it.
    let out = output_within(&work, &["--user", "13", "list"], 10);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&fifo.display().to_string()) && err.contains("FIFO"), "{err}");

    std::fs::remove_file(&fifo).unwrap();
    std::os::unix::fs::symlink("/dev/null", &fifo).unwrap();
    let out = output_within(&work, &["--user", "13", "list"], 10);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("server.info is a device"), "{}", stderr(&out));

    std::fs::remove_file(&fifo).unwrap();
    let info = work.path("backup.info");
    assert!(Command::new("mkfifo").arg(&info).status().unwrap().success());
    let out = output_within(&work, &["--user", "13", "run"], 10);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("backup.info is a FIFO"), "{}", stderr(&out));
}

// Item 13: temporary files a killed restore leaves behind.

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn age(path: &std::path::Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - by).unwrap();
}

#[test]
fn a_restore_killed_midway_leaves_a_named_temporary_file_that_the_next_restore_removes() {
    let addr = fake_server(|mut s| {
        while let Some((_, name)) = read_request(&mut s) {
            if name == b"stall.bin" {
                // A start, then nothing: the client is killed meanwhile.
                let mut head = response(210, &name, b"");
                let at = head.len() - 4;
                head[at..].copy_from_slice(&(1u32 << 20).to_le_bytes());
                head.extend_from_slice(&[7u8; 1000]);
                let _ = s.write_all(&head);
                let _ = s.read(&mut [0u8; 1]);
                return;
            }
            if s.write_all(&response(210, &name, b"fine")).is_err() {
                return;
            }
        }
    })
    .to_string();
    let work = Workdir::new();
    std::fs::create_dir(work.path("out")).unwrap();
    let out_dir = work.path("out");
    let mut child = work
        .command(&["--server", &addr, "--user", "13", "restore", "stall.bin", "-o", "out"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while temp_files(&out_dir).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "no temporary file appeared");
        thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let dead = child.id();
    let left = temp_files(&out_dir);
    assert_eq!(left.len(), 1, "{left:?}");
    let prefix = format!(".backup-restore-{dead}-");
    assert!(left[0].starts_with(&prefix) && left[0].ends_with(".tmp"), "recognisable as ours: {left:?}");

    // Only files that are ours, old, and whose process is gone are removed.
    let stale = out_dir.join(&left[0]);
    age(&stale, Duration::from_secs(600));
    let fresh = out_dir.join(format!("{prefix}fresh1.tmp"));
    std::fs::write(&fresh, b"being written").unwrap();
    let running = out_dir.join(format!(".backup-restore-{}-alive1.tmp", std::process::id()));
    std::fs::write(&running, b"still being written").unwrap();
    age(&running, Duration::from_secs(600));
    let foreign = out_dir.join(".tmpAbC123");
    std::fs::write(&foreign, b"not ours").unwrap();
    age(&foreign, Duration::from_secs(600));

    let out = work.client(&["--server", &addr, "--user", "13", "restore", "ok.txt", "-o", "out"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!("removed out/{}, left by an interrupted restore", left[0])),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read(out_dir.join("ok.txt")).unwrap(), b"fine");
    let mut kept = vec![
        fresh.file_name().unwrap().to_str().unwrap().to_string(),
        running.file_name().unwrap().to_str().unwrap().to_string(),
        ".tmpAbC123".to_string(),
    ];
    kept.sort();
    assert_eq!(temp_files(&out_dir), kept);
}

// Item 13: files whose size changes while they are read.

#[test]
fn a_proc_file_whose_metadata_says_0_bytes_is_refused_not_stored_empty() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let addr = server.addr.to_string();
    let s = ["--server", addr.as_str(), "--user", "14"];
    work.write("after.txt", b"x");
    for args in [&["backup", "/proc/self/status"][..], &["backup", "/proc/self/status", "after.txt"]] {
        let out = work.client(&[&s[..], args].concat());
        assert_exit(&out, 1);
        let err = stderr(&out);
        assert!(
            err.contains("/proc/self/status changed while it was read") && err.contains("try again"),
            "{err}"
        );
    }
    assert_exit(&work.client(&[&s[..], &["list"]].concat()), 4);
}

#[test]
fn a_file_that_grows_during_its_upload_is_never_sent_whole() {
    const SIZE: usize = 32 << 20;
    let work = Workdir::new();
    let path = work.write("growing.log", &vec![b'.'; SIZE]);
    let (received, got) = std::sync::mpsc::channel();
    let addr = fake_server(move |mut s| {
        let mut head = [0u8; 6 + 2 + 11 + 4];
        s.read_exact(&mut head).unwrap();
        let size = u32::from_le_bytes(head[19..23].try_into().unwrap()) as usize;
        // The file grows after its size went out, long before the client
        // can have read its end (32 MiB, more than the socket buffers hold).
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"late line\n").unwrap();
        let mut payload = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => payload += n,
            }
            if payload == size {
                // As a real server would: all announced bytes are in, stored.
                s.write_all(&response(212, b"growing.log", b"")).unwrap();
            }
        }
        received.send((size, payload)).unwrap();
    })
    .to_string();
    let out = output_within(&work, &["--server", &addr, "--user", "14", "backup", "growing.log"], 30);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("growing.log changed while it was read"), "{}", stderr(&out));
    let (size, payload) = got.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(size, SIZE, "the size announced is the planned one");
    assert!(payload < SIZE, "the payload stopped short, so no server can store it: {payload} of {size}");
}

/// A restored file named like one of our temporaries (`.backup-restore-<pid>-XXXXXX.tmp`)
/// would be taken, once five minutes old and its "pid" gone, for what an
/// interrupted restore left, and removed by the next restore into that
/// folder: the client deleting a file it had restored. So a restore never
/// creates a file of such a name; `-o` gives it another.
#[test]
fn a_restore_never_creates_a_file_that_a_later_restore_would_remove_as_its_leftover() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let addr = server.addr.to_string();
    let s = ["--server", addr.as_str(), "--user", "15"];
    // No process has this pid (Linux pids stop at 4194304).
    let lookalike = ".backup-restore-999999999-abcdef.tmp";
    work.write(lookalike, b"a file of the user's");
    work.write("other.txt", b"other");
    assert_exit(&work.client(&[&s[..], &["backup", lookalike, "other.txt"]].concat()), 0);
    std::fs::create_dir(work.path("out")).unwrap();

    let out = work.client(&[&s[..], &["restore", lookalike, "-o", "out"]].concat());
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(lookalike) && err.contains("-o"), "says why and what to do instead: {err}");
    assert!(temp_files(&work.path("out")).is_empty(), "nothing written");
    let out = work.client(&[&s[..], &["restore", lookalike, "-o", "out/kept.bin"]].concat());
    assert_exit(&out, 0);
    assert_eq!(std::fs::read(work.path("out/kept.bin")).unwrap(), b"a file of the user's");
    let out = work.client(&[&s[..], &["restore", "other.txt", lookalike, "-o", "out"]].concat());
    assert_exit(&out, 1);

    // What it prevents: such a file, old, is removed by the next restore.
    let planted = work.write(&format!("out/{lookalike}"), b"planted by hand");
    age(&planted, Duration::from_secs(600));
    assert_exit(&work.client(&[&s[..], &["restore", "other.txt", "-o", "out"]].concat()), 0);
    assert!(!planted.exists(), "a file of that name is taken for a leftover, as documented");
    assert_eq!(std::fs::read(work.path("out/kept.bin")).unwrap(), b"a file of the user's");
}

/// `run` restores its first file as the file `./tmp`. A folder there passed
/// the checks made before anything is sent (they looked for `tmp/NAME`),
/// and the session failed at its restore step, after its backups, with
/// "tmp: File exists"; with `--force` too, as no file replaces a folder.
#[test]
fn run_refuses_a_tmp_folder_before_anything_is_sent() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let addr = server.addr.to_string();
    work.write("a.txt", b"first file");
    work.write("backup.info", b"a.txt\n");
    std::fs::create_dir(work.path("tmp")).unwrap();
    for force in [&[][..], &["--force"][..]] {
        let out = work.client(&[&["--server", addr.as_str(), "--user", "16", "run"][..], force].concat());
        assert_exit(&out, 1);
        assert!(stderr(&out).contains("tmp is a folder"), "{}", stderr(&out));
        assert!(stdout(&out).is_empty(), "no step ran: {}", stdout(&out));
    }
    let listed = work.client(&["--server", addr.as_str(), "--user", "16", "list"]);
    assert_exit(&listed, 4);
}
