//! The client against the attacks of the adversarial review (issue #17,
//! items 10 to 13): the real binary against the real server in-process, or
//! against small fake servers that misbehave on purpose.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;

use backup_server::{Server, ServerConfig, ShutdownHandle};

struct RealServer {
    addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<thread::JoinHandle<std::io::Result<()>>>,
    _root: tempfile::TempDir,
}

impl RealServer {
    fn start() -> RealServer {
        let root = tempfile::tempdir().unwrap();
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), root.path().to_path_buf());
        let server = Server::bind(config).unwrap();
        let addr = server.local_addr().unwrap();
        let handle = server.shutdown_handle();
        RealServer { addr, handle, thread: Some(thread::spawn(move || server.run())), _root: root }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

/// A folder to run the client in, with its own config folder.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        Workdir { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_backup-client"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env_remove("BACKUP_SERVER")
            .env_remove("BACKUP_USER");
        command
    }

    fn client(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

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
    let server = RealServer::start();
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
