//! A server on an ephemeral port with a temporary root, and a raw client
//! written from the protocol tables alone (not the core's client), so the
//! tests cross-check the implementation against the specification.
#![allow(dead_code)]

pub mod netns;
pub mod noise;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use backup_server::{FsStorage, Server, ServerConfig, ShutdownHandle, StoreOptions};

pub struct TestServer {
    pub addr: SocketAddr,
    pub root: PathBuf,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with an ephemeral port, storing in `root`.
    pub fn start_in(root: &Path, customize: impl FnOnce(&mut ServerConfig)) -> TestServer {
        TestServer::start_with_store(root, StoreOptions::default(), customize)
    }

    /// [`start_in`](Self::start_in) with the store's own options (a quota).
    pub fn start_with_store(
        root: &Path,
        options: StoreOptions,
        customize: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        config.shutdown_grace = Duration::from_secs(2);
        customize(&mut config);
        let store = FsStorage::open(root, options).expect("the store opens");
        let server = Server::bind(config, store).expect("server binds");
        let addr = server.local_addr().unwrap();
        let root = server.root().to_path_buf();
        let handle = server.shutdown_handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        TestServer { addr, root, handle, thread }
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    }

    /// Stops the server and waits for it, as a Ctrl-C would.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            thread.join().unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

pub const BACKUP: u8 = 100;
pub const RESTORE: u8 = 200;
pub const DELETE: u8 = 201;
pub const LIST: u8 = 202;

/// A request as the tables in PROTOCOL.md lay it out.
pub fn request(user: u32, op: u8, name: &[u8], payload: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = user.to_le_bytes().to_vec();
    bytes.push(2);
    bytes.push(op);
    if op != LIST {
        bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
        bytes.extend_from_slice(name);
    }
    if let Some(payload) = payload {
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
    }
    bytes
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub version: u8,
    pub status: u16,
    pub name: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Reply {
    pub fn reason(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap()
    }
}

pub fn read_reply(stream: &mut TcpStream) -> io::Result<Reply> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head)?;
    let name_len = u16::from_le_bytes([head[3], head[4]]) as usize;
    let mut name = vec![0u8; name_len];
    stream.read_exact(&mut name)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut payload = vec![0u8; u32::from_le_bytes(size) as usize];
    stream.read_exact(&mut payload)?;
    Ok(Reply { version: head[0], status: u16::from_le_bytes([head[1], head[2]]), name, payload })
}

/// A spec client on one connection: requests back to back, no padding.
pub struct PlainClient {
    pub stream: TcpStream,
    pub user: u32,
}

impl PlainClient {
    pub fn new(server: &TestServer, user: u32) -> Self {
        PlainClient { stream: server.connect(), user }
    }

    pub fn call(&mut self, op: u8, name: &[u8], payload: Option<&[u8]>) -> Reply {
        self.stream.write_all(&request(self.user, op, name, payload)).unwrap();
        read_reply(&mut self.stream).unwrap()
    }
}

/// A client like existing ones: a connection per request, the request padded
/// with zeros to a multiple of 1024 bytes, a zero `size` after restore and
/// delete, and `name_len` and `size` zero after list.
pub struct PaddingClient {
    pub addr: SocketAddr,
    pub user: u32,
}

impl PaddingClient {
    pub fn call(&mut self, op: u8, name: &[u8], payload: Option<&[u8]>) -> Reply {
        let mut bytes = request(self.user, op, name, payload);
        match op {
            RESTORE | DELETE => bytes.extend_from_slice(&[0; 4]),
            LIST => bytes.extend_from_slice(&[0; 6]),
            _ => {}
        }
        bytes.resize(bytes.len().div_ceil(1024) * 1024, 0);
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.write_all(&bytes).unwrap();
        let reply = read_reply(&mut stream).unwrap();
        // The server sends nothing more and closes once we do.
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "nothing after the response: {rest:?}");
        reply
    }
}

/// Deterministic test data, different per seed.
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

/// Waits (bounded) until `check` holds, for effects of another thread.
pub fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Uploads in progress (or left behind) in every user folder under `root`.
pub fn temporary_files(root: &Path) -> Vec<String> {
    let prefix = backup_server::fs_store::TEMP_PREFIX;
    let mut found = Vec::new();
    for user in dir_names(root) {
        found.extend(dir_names(&root.join(&user)).into_iter().filter(|n| n.starts_with(prefix)));
    }
    found
}

/// Names of the files in a folder, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The real `backup-server` binary as a child process, so it can be killed,
/// and its memory read from /proc.
pub struct ChildServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Starts the binary on 127.0.0.1 with an ephemeral port, storing in `root`.
    pub fn start(root: &Path, extra: &[&str]) -> ChildServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_backup-server"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn", "--root"])
            .arg(root)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.split_whitespace().nth(3).unwrap().trim_end_matches(',').parse().unwrap();
        assert!(
            line.contains(&root.canonicalize().unwrap().display().to_string()),
            "says where it stores: {line}"
        );
        ChildServer { child, addr }
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// File contents that prove themselves: an 8-byte seed, then the pattern
/// of that seed. Any restore can be checked for being one whole version.
pub fn versioned(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = seed.to_le_bytes().to_vec();
    bytes.extend(pattern(len.saturating_sub(8), seed));
    bytes
}

/// The seed of a whole version, or `None` for anything else.
pub fn version_of(bytes: &[u8]) -> Option<u64> {
    let seed = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    (bytes[8..] == pattern(bytes.len() - 8, seed)[..]).then_some(seed)
}

/// A small deterministic random source (xorshift64*), seeded per test.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Everything under `root` is a user folder of files with valid names (so
/// no temporary file is left), and nothing was created beside `root`.
pub fn assert_root_is_clean(root: &Path) {
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name == backup_server::root_lock::LOCK_FILE || name.starts_with(backup_server::users::USERS_FILE) {
            continue;
        }
        assert!(name.parse::<u32>().is_ok(), "only user folders in the root: {name}");
        assert!(entry.file_type().unwrap().is_dir());
        for file in std::fs::read_dir(entry.path()).unwrap() {
            let file = file.unwrap();
            assert!(file.file_type().unwrap().is_file(), "only regular files: {:?}", file.path());
            let fname = file.file_name();
            assert!(backup_core::wire::validate_name(fname.as_encoded_bytes()).is_ok(), "{fname:?}");
        }
    }
}
