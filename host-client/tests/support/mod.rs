//! What both client test suites need: the real server in-process, a
//! folder to run the client binary in, and output checks.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use backup_server::{FsStorage, Server, ServerConfig, ShutdownHandle, StoreOptions};

pub struct RealServer {
    pub addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<thread::JoinHandle<std::io::Result<()>>>,
    _root: tempfile::TempDir,
}

impl RealServer {
    pub fn start(customize: impl FnOnce(&mut ServerConfig)) -> RealServer {
        let root = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        customize(&mut config);
        let store = FsStorage::open(root.path(), StoreOptions::default()).unwrap();
        let server = Server::bind(config, store).unwrap();
        let addr = server.local_addr().unwrap();
        let handle = server.shutdown_handle();
        RealServer { addr, handle, thread: Some(thread::spawn(move || server.run())), _root: root }
    }
}

impl RealServer {
    /// The server's storage root (where `backup-server user` keeps keys).
    pub fn root(&self) -> &std::path::Path {
        self._root.path()
    }

    /// Registers `user` with a new key and returns its key line.
    pub fn add_user(&self, user: u32) -> String {
        backup_server::users::Registry::edit(self.root()).unwrap().add(Some(user), None).unwrap().expose()
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
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_backup-client"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env_remove("BACKUP_SERVER")
            .env_remove("BACKUP_USER");
        command
    }

    pub fn client(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

/// Runs the client, killing it (and failing) if it takes over `secs` seconds.
pub fn output_within(work: &Workdir, args: &[&str], secs: u64) -> Output {
    let started = Instant::now();
    let mut child = work.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            panic!("backup-client {args:?} still running after {secs} s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

/// Deterministic bytes of `len`, different for each `seed` (xorshift).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Backs up files of 0 B to 64 MiB in one command with `base` arguments
/// (server, user or key), lists them and restores them byte for byte; the
/// files' names.
pub fn back_up_list_and_restore_files_up_to_64_mib(work: &Workdir, base: &[&str]) -> Vec<String> {
    let sizes = [0usize, 1, 1000, 1 << 20, 64 << 20];
    let files: Vec<(String, Vec<u8>)> =
        sizes.iter().enumerate().map(|(i, &n)| (format!("file-{n}.bin"), pattern(n, i as u64))).collect();
    let paths: Vec<String> = files
        .iter()
        .map(|(name, data)| work.write(&format!("src/{name}"), data).display().to_string())
        .collect();
    let mut args: Vec<&str> = [base, &["backup"]].concat();
    args.extend(paths.iter().map(String::as_str));
    assert_exit(&work.client(&args), 0);

    let out = work.client(&[base, &["list"]].concat());
    assert_exit(&out, 0);
    let mut names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), names);

    std::fs::create_dir(work.path("out")).unwrap();
    let mut args: Vec<&str> = [base, &["restore", "-o", "out"]].concat();
    args.extend(files.iter().map(|(name, _)| name.as_str()));
    assert_exit(&work.client(&args), 0);
    for (name, data) in &files {
        assert!(
            std::fs::read(work.path(&format!("out/{name}"))).unwrap() == *data,
            "{name} restored byte for byte"
        );
    }
    files.into_iter().map(|(name, _)| name).collect()
}
