//! The client against the attacks of the adversarial review (issue #17,
//! items 10 to 13): the real binary against the real server in-process, or
//! against small fake servers that misbehave on purpose.

use std::net::SocketAddr;
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
