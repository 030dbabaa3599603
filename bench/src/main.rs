//! `backup-bench`: measures backup-server and backup-client against the raw
//! wire (socat) and rsync in daemon mode, and against what a user would
//! otherwise pick for authenticated, encrypted backups (`rsync -e ssh` to a
//! private sshd, restic to `rclone serve restic`), on 127.0.0.1, in one run,
//! and prints medians with min and max, our ratio to each peer and the
//! target for that ratio.
//!
//! Run it through `bash .ci/bench`, which builds the release binaries and
//! installs the peers. See BENCHMARKS.md for the workloads and results.
//!
//! `--bin DIR` names the folder holding the `backup-server` and
//! `backup-client` to measure (default: this program's own folder), and
//! `--baseline-bin DIR` another build of both (`.ci/bench --baseline REV`
//! builds one from an earlier commit): workloads 1 to 3 then run against
//! both, repetition by repetition in turn, so that both see the same
//! machine, and a second table gives ours beside the baseline's.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_client::transport::{TcpConn, TcpConnector};
use backup_core::client::ConnError;
use backup_core::secure::{self, SECURE_VERSION, SecureError, SecureStream};
use backup_core::{Client, ClientError, Connect};
use rand_core::OsRng;

const MIB: u64 = 1 << 20;
/// The keyed user of the version-3 rows (plaintext rows are user 1: a user
/// with a key is never served in plaintext).
const V3_USER: u32 = 3;

struct Options {
    reps: usize,
    work: PathBuf,
    big: u64,
    small_files: usize,
    clients: usize,
    churn: usize,
    /// Workloads to run (`--only 1,3`); all by default.
    only: Vec<u32>,
    /// Where our `backup-server` and `backup-client` are.
    bin: PathBuf,
    /// Where the baseline's are, if it is measured too.
    baseline: Option<PathBuf>,
}

impl Options {
    fn runs(&self, workload: u32) -> bool {
        self.only.is_empty() || self.only.contains(&workload)
    }
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    Options {
        reps: value("--reps").and_then(|v| v.parse().ok()).unwrap_or(if quick { 1 } else { 3 }),
        work: value("--dir").map_or_else(|| std::env::temp_dir().join("backup-bench"), PathBuf::from),
        big: if quick { 64 * MIB } else { 1024 * MIB },
        small_files: if quick { 1000 } else { 10_000 },
        clients: 64,
        churn: if quick { 1000 } else { 10_000 },
        only: value("--only")
            .map_or_else(Vec::new, |v| v.split(',').filter_map(|w| w.parse().ok()).collect()),
        bin: value("--bin").map_or_else(own_dir, PathBuf::from),
        baseline: value("--baseline-bin").map(PathBuf::from),
    }
}

/// A build of the server and the client: ours, or the baseline.
struct Build<'a> {
    /// `ours` or `base`: labels and folder names.
    label: &'static str,
    bin: &'a Path,
}

impl Options {
    /// Ours first, then the baseline if there is one.
    fn builds(&self) -> Vec<Build<'_>> {
        let mut builds = vec![Build { label: "ours", bin: &self.bin }];
        if let Some(bin) = &self.baseline {
            builds.push(Build { label: "base", bin });
        }
        builds
    }
}

/// The builds in the order repetition `rep` runs them, with their index:
/// each goes first in turn, so that neither always meets a disk or a page
/// cache the other has just warmed or filled.
fn turns<'b, 'a>(builds: &'b [Build<'a>], rep: usize) -> impl Iterator<Item = (usize, &'b Build<'a>)> {
    let n = builds.len();
    (0..n).map(move |i| (i + rep) % n).filter_map(move |b| builds.get(b).map(|build| (b, build)))
}

/// Ours against the baseline on one figure.
struct Versus {
    workload: String,
    unit: &'static str,
    ours: Stat,
    baseline: Stat,
}

/// Figures of repeated runs.
#[derive(Clone)]
struct Stat(Vec<f64>);

impl Stat {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
    fn show(&self) -> String {
        format!("{:.1} [{:.1}-{:.1}]", self.median(), self.min(), self.max())
    }
}

/// A peer's figures beside ours, and the target for our ratio to it, if any.
struct Peer {
    name: &'static str,
    stat: Stat,
    /// Ours / peer (medians) must be at least this.
    target: Option<f64>,
}

fn peer(name: &'static str, figures: Vec<f64>, target: Option<f64>) -> Peer {
    Peer { name, stat: Stat(figures), target }
}

struct Row {
    workload: String,
    unit: &'static str,
    ours: Stat,
    peers: Vec<Peer>,
}

/// This program's folder: `target/release`, where `.ci/bench` built the
/// server and the client beside it.
fn own_dir() -> PathBuf {
    std::env::current_exe().expect("own path").parent().expect("a folder").to_path_buf()
}

/// Stops with a clear message if `bin` lacks the server or the client.
fn check_bins(bin: &Path) {
    for name in ["backup-server", "backup-client"] {
        let path = bin.join(name);
        assert!(path.is_file(), "{} is missing (build it with cargo build --release)", path.display());
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A release backup-server as a child process.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(bin: &Path, root: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(bin.join("backup-server"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "error", "--root"])
            .arg(root)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("backup-server runs (build it with cargo build --release)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("a line");
        let addr =
            line.split_whitespace().nth(3).expect("address").trim_end_matches(',').parse().expect("addr");
        Server { child, addr }
    }

    /// Peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user with a key in a storage root's registry (`backup-server user
/// add`), and the owner-only file holding its key line, for the client's
/// `--key-file`: its sessions are version 3, authenticated and encrypted.
struct KeyedUser {
    id: u32,
    key: [u8; 32],
    key_file: PathBuf,
}

impl KeyedUser {
    /// Registers user `id` in `root` with a new random key (the server's
    /// default: no key on a command line) and saves its line in `key_file`.
    fn add(bin: &Path, root: &Path, id: u32, key_file: &Path) -> KeyedUser {
        let out = Command::new(bin.join("backup-server"))
            .args(["user", "add", "--id", &id.to_string(), "--root"])
            .arg(root)
            .stderr(Stdio::inherit())
            .output()
            .expect("backup-server user add runs");
        assert!(out.status.success(), "backup-server user add failed");
        let line = String::from_utf8(out.stdout).expect("a key line").trim().to_string();
        let hex = line
            .strip_prefix(&format!("backup-key:{id}:"))
            .unwrap_or_else(|| panic!("backup-server user add printed {line:?}"));
        let mut key = [0u8; 32];
        assert_eq!(hex.len(), 64, "a key of 64 hex digits");
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
        }
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(key_file)
            .expect("key file");
        writeln!(file, "{line}").expect("key file");
        KeyedUser { id, key, key_file: key_file.to_path_buf() }
    }
}

/// Whether `bin`'s client speaks version 3 (has `--key-file`), asked once per build.
fn speaks_v3(bin: &Path) -> bool {
    static ASKED: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());
    let mut asked = ASKED.lock().unwrap();
    if let Some((_, v3)) = asked.iter().find(|(b, _)| b == bin) {
        return *v3;
    }
    let v3 = Command::new(bin.join("backup-client"))
        .arg("--help")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--key-file"));
    asked.push((bin.to_path_buf(), v3));
    v3
}

/// Who a client invocation is: plaintext user 1, or a keyed user (version 3).
#[derive(Clone, Copy)]
enum As<'a> {
    Plain,
    Keyed(&'a KeyedUser),
}

fn client(bin: &Path, server: &Server, who: As, args: &[&str], extra: &[String]) -> Duration {
    let mut cmd = Command::new(bin.join("backup-client"));
    match who {
        // A client that speaks version 3 would use a key saved by `login`
        // or given in BACKUP_KEY: the plaintext rows say --plaintext.
        As::Plain if speaks_v3(bin) => cmd.args(["--user", "1", "--plaintext"]),
        As::Plain => cmd.args(["--user", "1"]),
        As::Keyed(user) => cmd.arg("--key-file").arg(&user.key_file),
    };
    let started = Instant::now();
    let status = cmd
        .args(["-q", "--server", &server.addr.to_string()])
        .args(args)
        .args(extra)
        .status()
        .expect("backup-client runs");
    assert!(status.success(), "backup-client {args:?} failed");
    started.elapsed()
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed");
}

fn fsync(path: &Path) {
    File::open(path).and_then(|f| f.sync_all()).expect("fsync");
}

fn write_random(path: &Path, len: u64, seed: u64) {
    let mut file = std::io::BufWriter::new(File::create(path).expect("create"));
    let mut x = seed | 1;
    let mut block = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(MIB) as usize;
        file.write_all(&block[..n]).expect("write");
        left -= n as u64;
    }
    file.flush().expect("flush");
}

/// socat from `src` to `dst` over TCP, then fsync of `dst`: the raw wire.
fn socat_copy(src: &Path, dst: &Path) -> Duration {
    let port = free_port();
    let mut listener = Command::new("socat")
        .args(["-u", "-b", "1048576"])
        .arg(format!("TCP-LISTEN:{port},reuseaddr,bind=127.0.0.1"))
        .arg(format!("OPEN:{},creat,trunc", dst.display()))
        .spawn()
        .expect("socat runs");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    run(Command::new("socat")
        .args(["-u", "-b", "1048576"])
        .arg(format!("OPEN:{}", src.display()))
        .arg(format!("TCP:127.0.0.1:{port}")));
    listener.wait().expect("socat listener");
    fsync(dst);
    started.elapsed()
}

/// An rsync daemon serving `root` as module `m`.
struct Rsync {
    child: Child,
    port: u16,
}

impl Rsync {
    fn start(work: &Path, root: &Path) -> Rsync {
        let port = free_port();
        let conf = work.join("rsyncd.conf");
        std::fs::write(
            &conf,
            format!(
                "use chroot = no\nuid = root\ngid = root\n[m]\npath = {}\nread only = no\n",
                root.display()
            ),
        )
        .expect("rsyncd.conf");
        let child = Command::new("rsync")
            .args(["--daemon", "--no-detach", "--address=127.0.0.1", &format!("--port={port}")])
            .arg(format!("--config={}", conf.display()))
            .spawn()
            .expect("rsync runs");
        std::thread::sleep(Duration::from_millis(300));
        Rsync { child, port }
    }

    fn push(&self, src: &Path, dest: &str, fsync: bool) -> Duration {
        self.rsync(format!("{}/", src.display()), format!("rsync://127.0.0.1:{}/m/{dest}/", self.port), fsync)
    }

    fn pull(&self, src: &str, dest: &Path, fsync: bool) -> Duration {
        self.rsync(format!("rsync://127.0.0.1:{}/m/{src}/", self.port), format!("{}/", dest.display()), fsync)
    }

    fn rsync(&self, from: String, to: String, fsync: bool) -> Duration {
        rsync(from, to, fsync, None)
    }
}

/// One timed `rsync -a --whole-file` (with `--fsync` if asked, which rsync
/// 3.2+ passes on to the receiving side), over `-e ssh` if given.
fn rsync(from: String, to: String, fsync: bool, ssh: Option<&str>) -> Duration {
    let started = Instant::now();
    let mut cmd = Command::new("rsync");
    cmd.args(["-a", "--whole-file"]);
    if fsync {
        cmd.arg("--fsync");
    }
    if let Some(ssh) = ssh {
        cmd.args(["-e", ssh]);
    }
    run(cmd.arg(from).arg(to));
    started.elapsed()
}

/// Waits until something listens on 127.0.0.1:`port`.
fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} does not listen on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private sshd on 127.0.0.1 as the current user, with its own config,
/// host key and authorized ed25519 client key in `dir`: the far end of
/// `rsync -e ssh`, as a user would back up to another machine with it.
struct Sshd {
    child: Child,
    /// The `-e` command for rsync.
    ssh: String,
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).expect("ssh folder");
        let host_key = dir.join("host_ed25519");
        let client_key = dir.join("client_ed25519");
        for key in [&host_key, &client_key] {
            let _ = std::fs::remove_file(key);
            let _ = std::fs::remove_file(key.with_extension("pub"));
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "backup-bench", "-f"])
                .arg(key));
        }
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .expect("sshd_config");
        // sshd re-executes itself, so it must be started by its absolute path.
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("sshd is installed (Debian openssh-server; .ci/bench installs it)");
        let log = File::create(dir.join("sshd.log")).expect("sshd.log");
        let child = Command::new(sshd)
            .arg("-f")
            .arg(&config)
            .args(["-D", "-e"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd runs");
        wait_for_port(port, "sshd");
        let ssh = format!(
            "ssh -p {port} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o BatchMode=yes -o LogLevel=ERROR",
            client_key.display()
        );
        Sshd { child, ssh }
    }

    /// `src` (a file, or a folder's contents) into the folder `dest` at the far end.
    fn push(&self, src: &Path, dest: &Path, fsync: bool) -> Duration {
        let from = if src.is_dir() { format!("{}/", src.display()) } else { src.display().to_string() };
        rsync(from, format!("127.0.0.1:{}/", dest.display()), fsync, Some(&self.ssh))
    }

    /// `src` (a file, or a folder's contents) from the far end into the folder `dest`.
    fn pull(&self, src: &Path, dest: &Path, fsync: bool) -> Duration {
        let from = if src.is_dir() { format!("{}/", src.display()) } else { src.display().to_string() };
        rsync(format!("127.0.0.1:{from}"), format!("{}/", dest.display()), fsync, Some(&self.ssh))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rclone serve restic` on 127.0.0.1, storing restic repositories in a
/// folder, and the restic client that backs up to it. Every repetition
/// gets a fresh repository: restic deduplicates, so a second backup of the
/// same bytes into the same repository would send nothing.
struct Restic {
    child: Child,
    port: u16,
    cache: PathBuf,
}

/// The environment's CA variables (`AWS_CA_BUNDLE`, `SSL_CERT_FILE`, ...)
/// are for its HTTPS proxies; rclone and restic speak plain HTTP on the
/// loopback here, and such variables have been seen to break them, so
/// their child processes run without any.
fn without_ca_variables(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.contains("CA_BUNDLE") || upper.contains("CA_CERT") || upper.starts_with("SSL_CERT") {
            cmd.env_remove(&name);
        }
    }
    cmd
}

impl Restic {
    fn start(dir: &Path) -> Restic {
        let repos = dir.join("repos");
        std::fs::create_dir_all(&repos).expect("restic folder");
        let port = free_port();
        let log = File::create(dir.join("rclone.log")).expect("rclone.log");
        let child = without_ca_variables(&mut Command::new("rclone"))
            .args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")])
            .arg(&repos)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rclone runs (Debian rclone; .ci/bench installs it)");
        wait_for_port(port, "rclone serve restic");
        Restic { child, port, cache: dir.join("cache") }
    }

    fn restic(&self, repo: &str) -> Command {
        let mut cmd = Command::new("restic");
        without_ca_variables(&mut cmd)
            .args(["-q", "-r", &format!("rest:http://127.0.0.1:{}/{repo}/", self.port)])
            .env("RESTIC_PASSWORD", "backup-bench")
            .env("RESTIC_CACHE_DIR", &self.cache)
            .stdout(Stdio::null());
        cmd
    }

    /// A fresh repository (not timed).
    fn init(&self, repo: &str) {
        run(self.restic(repo).arg("init"));
    }

    /// One `restic backup PATH`: a file, or a folder and all in it.
    fn backup(&self, repo: &str, path: &Path) -> Duration {
        let started = Instant::now();
        run(self.restic(repo).arg("backup").arg(path));
        started.elapsed()
    }

    /// `restic restore latest --target DEST`, which recreates the backed-up
    /// absolute paths under `dest`.
    fn restore(&self, repo: &str, dest: &Path) -> Duration {
        let started = Instant::now();
        run(self.restic(repo).args(["restore", "latest", "--target"]).arg(dest));
        started.elapsed()
    }
}

impl Drop for Restic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `restic restore --target dest` put what was backed up from `path`.
fn restored_under(dest: &Path, path: &Path) -> PathBuf {
    dest.join(path.strip_prefix("/").unwrap_or(path))
}

impl Drop for Rsync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether our plaintext run comes first in repetition `rep`, then the
/// version-3 run, or the other way round: each goes first in turn, so that
/// neither always meets a disk or a page cache the other has just left busy.
fn plain_first(rep: usize) -> [bool; 2] {
    if rep % 2 == 0 { [true, false] } else { [false, true] }
}

/// Our plaintext row beside its peers, and our version-3 row beside our
/// plaintext figures (ratio at least `v3_target`) and the peers for
/// authenticated, encrypted backups (with their targets). Without version-3
/// figures, those peers stand beside the plaintext row, with no target.
struct Rows<'a> {
    workload: String,
    unit: &'static str,
    plain: Vec<f64>,
    plain_peers: Vec<Peer>,
    v3: Vec<f64>,
    v3_target: f64,
    secure_peers: Vec<Peer>,
    into: &'a mut Vec<Row>,
}

impl Rows<'_> {
    fn push(self) {
        let Rows { workload, unit, plain, mut plain_peers, v3, v3_target, mut secure_peers, into } = self;
        if v3.is_empty() {
            plain_peers.extend(secure_peers.into_iter().map(|p| Peer { target: None, ..p }));
            into.push(Row { workload, unit, ours: Stat(plain), peers: plain_peers });
        } else {
            secure_peers.insert(0, peer("ours, plaintext", plain.clone(), Some(v3_target)));
            into.push(Row { workload: workload.clone(), unit, ours: Stat(plain), peers: plain_peers });
            into.push(Row {
                workload: format!("{workload}, version 3"),
                unit,
                ours: Stat(v3),
                peers: secure_peers,
            });
        }
    }
}

/// Opens a version-3 session on each connection: the core's handshake
/// (`backup_core::secure::client_handshake`) over the command-line client's
/// TCP transport, with the operating system's randomness, and record
/// buffers as large as records go, as a host client has.
struct SecureConnector {
    tcp: TcpConnector,
    user: u32,
    key: [u8; 32],
}

impl Connect for SecureConnector {
    type Conn = SecureStream<TcpConn, Box<[u8]>>;

    fn connect(&mut self) -> Result<Self::Conn, SecureError<std::io::Error>> {
        let conn = self.tcp.connect().map_err(SecureError::Io)?;
        let rx = vec![0u8; secure::rx_buffer_len(u16::MAX)].into_boxed_slice();
        let tx = vec![0u8; secure::tx_buffer_len(secure::MAX_RECORD_PLAINTEXT)].into_boxed_slice();
        secure::client_handshake(conn, self.user, &self.key, &mut OsRng, rx, tx)
    }
}

/// `n` list requests, each on a new connection: requests per second. The
/// user has no files, so 1002 is the answer expected; any other error
/// stops the benchmark rather than counting as a fast request.
fn churn_rate<C: Connect>(client: &mut Client<'_, C>, n: usize) -> f64
where
    ConnError<C>: std::fmt::Debug,
{
    let started = Instant::now();
    for i in 0..n {
        match client.list(|_| {}) {
            Ok(_) | Err(ClientError::NoFiles) => {}
            Err(e) => panic!("workload 5: list {i}: {e:?} ({})", client.server_reason()),
        }
        client.disconnect();
    }
    per_s(n, started.elapsed())
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn per_s(count: usize, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64()
}

/// One run of workload 3: its throughput, (p50, p99) latencies in ms, errors
/// and the server's peak memory.
struct Burst {
    mb_per_s: f64,
    all: (f64, f64),
    backups: (f64, f64),
    restores: (f64, f64),
    errors: usize,
    rss_kib: f64,
}

/// `clients` threads at once, each backing up 50 files of 256 KiB and then
/// restoring them, against a new server (from `bin`) storing in `root`. The
/// clients are this program's core client, whichever server is measured.
fn burst(bin: &Path, root: &Path, clients: usize) -> Burst {
    let server = Server::start(bin, root, &[]);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0usize));
    let file = Arc::new({
        let mut v = vec![0u8; 256 * 1024];
        for (i, b) in v.iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8;
        }
        v
    });
    let started = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..clients {
            let (latencies, errors, file, addr) =
                (latencies.clone(), errors.clone(), file.clone(), server.addr);
            scope.spawn(move || {
                let connector = TcpConnector { addrs: vec![addr], timeout: Duration::from_secs(60) };
                let mut buf = vec![0u8; 256 * 1024];
                let mut client = Client::new(connector, 100 + c as u32, &mut buf).expect("buffer");
                let mut mine = Vec::new();
                for i in 0..50 {
                    let t = Instant::now();
                    let result = client.backup(&format!("f{i}"), file.len() as u32, &mut &file[..]);
                    mine.push(("backup", t.elapsed()));
                    if let Err(e) = &result {
                        eprintln!("workload 3: client {c}: backup f{i}: {e:?}");
                    }
                    let ok = result.is_ok();
                    *errors.lock().unwrap() += usize::from(!ok);
                }
                // One buffer for all restores: a fresh 256 KiB allocation is
                // an mmap, page faults and an munmap per request, which would
                // be timed as the request's latency.
                let mut out = Vec::with_capacity(file.len());
                for i in 0..50 {
                    out.clear();
                    let t = Instant::now();
                    let result = client.restore(&format!("f{i}"), &mut out, |_| {});
                    // The request's latency, not the check of what it brought.
                    mine.push(("restore", t.elapsed()));
                    if let Err(e) = &result {
                        eprintln!("workload 3: client {c}: restore f{i}: {e:?}");
                    }
                    let restored = result.is_ok();
                    let ok = restored && out == *file;
                    *errors.lock().unwrap() += usize::from(!ok);
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    let wall = started.elapsed();
    let rss_kib = server.peak_rss_kib();
    drop(server);
    let all = latencies.lock().unwrap().clone();
    let percentiles = |op: Option<&str>| {
        let mut lat: Vec<Duration> =
            all.iter().filter(|(o, _)| op.is_none_or(|op| op == *o)).map(|(_, d)| *d).collect();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
        (pct(0.5), pct(0.99))
    };
    let errors = *errors.lock().unwrap();
    Burst {
        mb_per_s: mb_per_s(clients as u64 * 50 * 2 * 256 * 1024, wall),
        all: percentiles(None),
        backups: percentiles(Some("backup")),
        restores: percentiles(Some("restore")),
        errors,
        rss_kib,
    }
}

fn main() {
    let o = options();
    for build in o.builds() {
        check_bins(build.bin);
    }
    // Deleting tens of thousands of files makes ext4 slow to create new ones
    // for minutes, which would skew this run's small-file figures: move the
    // last run's files aside now and delete them only when done.
    let old = o.work.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    let _ = std::fs::rename(&o.work, &old);
    std::fs::create_dir_all(&o.work).expect("work folder");
    let w = |p: &str| o.work.join(p);
    let builds = o.builds();
    let mut rows = Vec::new();
    let mut versus = Vec::new();
    let mut notes = Vec::new();
    // Ours against the baseline: figures of builds[0] and builds[1].
    let mut compare = |workload: String, unit: &'static str, figures: &[Vec<f64>]| {
        if let [ours, baseline] = figures {
            versus.push(Versus {
                workload,
                unit,
                ours: Stat(ours.clone()),
                baseline: Stat(baseline.clone()),
            });
        }
    };

    // The peers for authenticated, encrypted backups, for workloads 1 and 2.
    let secure = (o.runs(1) || o.runs(2)).then(|| (Sshd::start(&w("ssh")), Restic::start(&w("restic"))));

    // Ours inside version-3 sessions (authenticated, encrypted), as user
    // V3_USER with a key, if our client speaks it.
    let v3 = speaks_v3(&o.bin);
    if !v3 && (o.runs(1) || o.runs(2)) {
        notes.push(format!("no version-3 rows: {} has no --key-file", o.bin.join("backup-client").display()));
    }

    let mut rss1 = 0.0f64;
    if let (true, Some((sshd, restic))) = (o.runs(1), &secure) {
        // 1. One big file, both directions, both fsynced.
        eprintln!("workload 1: one {} MiB file", o.big / MIB);
        let big = w("big.bin");
        write_random(&big, o.big, 7);
        let (mut up, mut down) = (vec![vec![]; builds.len()], vec![vec![]; builds.len()]);
        let (mut raw_up, mut raw_down) = (vec![], vec![]);
        let (mut ssh_up, mut ssh_down) = (vec![], vec![]);
        let (mut restic_up, mut restic_down) = (vec![], vec![]);
        let (mut v3_up, mut v3_down) = (vec![], vec![]);
        for rep in 0..o.reps {
            for plain_turn in plain_first(rep) {
                if plain_turn {
                    for (b, build) in turns(&builds, rep) {
                        // Fresh folders each time: ext4 is slow to reuse inodes just freed.
                        let server = Server::start(build.bin, &w(&format!("{}-1-{rep}", build.label)), &[]);
                        let backup = ["backup", big.to_str().unwrap()];
                        up[b].push(mb_per_s(o.big, client(build.bin, &server, As::Plain, &backup, &[])));
                        let out = w(&format!("restored-{}-1-{rep}", build.label));
                        std::fs::create_dir_all(&out).unwrap();
                        let restore = ["restore", "big.bin", "-o", out.to_str().unwrap()];
                        down[b].push(mb_per_s(o.big, client(build.bin, &server, As::Plain, &restore, &[])));
                        if b == 0 {
                            rss1 = rss1.max(server.peak_rss_kib());
                        }
                    }
                } else {
                    if v3 {
                        let root = w(&format!("v3-1-{rep}"));
                        let user = KeyedUser::add(&o.bin, &root, V3_USER, &w(&format!("v3-1-{rep}.key")));
                        let server = Server::start(&o.bin, &root, &[]);
                        let backup = ["backup", big.to_str().unwrap()];
                        v3_up.push(mb_per_s(o.big, client(&o.bin, &server, As::Keyed(&user), &backup, &[])));
                        let out = w(&format!("restored-v3-1-{rep}"));
                        std::fs::create_dir_all(&out).unwrap();
                        let restore = ["restore", "big.bin", "-o", out.to_str().unwrap()];
                        v3_down
                            .push(mb_per_s(o.big, client(&o.bin, &server, As::Keyed(&user), &restore, &[])));
                    }
                }
            }
            let raw = w(&format!("raw-1-{rep}"));
            std::fs::create_dir_all(&raw).unwrap();
            raw_up.push(mb_per_s(o.big, socat_copy(&big, &raw.join("big.bin"))));
            raw_down.push(mb_per_s(o.big, socat_copy(&raw.join("big.bin"), &raw.join("back.bin"))));
            let (there, back) = (w(&format!("ssh-1-{rep}")), w(&format!("ssh-restored-1-{rep}")));
            std::fs::create_dir_all(&there).unwrap();
            std::fs::create_dir_all(&back).unwrap();
            ssh_up.push(mb_per_s(o.big, sshd.push(&big, &there, true)));
            ssh_down.push(mb_per_s(o.big, sshd.pull(&there.join("big.bin"), &back, true)));
            let repo = format!("1-{rep}");
            restic.init(&repo);
            restic_up.push(mb_per_s(o.big, restic.backup(&repo, &big)));
            let out = w(&format!("restic-restored-1-{rep}"));
            restic_down.push(mb_per_s(o.big, restic.restore(&repo, &out)));
            let restored = restored_under(&out, &big).metadata().map(|m| m.len()).unwrap_or(0);
            assert_eq!(restored, o.big, "restic restored {} bytes of {}", restored, o.big);
        }
        let size = format!("{} MiB", o.big / MIB);
        compare(format!("1 back up one {size} file"), "MB/s", &up);
        compare(format!("1 restore one {size} file"), "MB/s", &down);
        for (what, ours, raw, ssh, restic, v3) in [
            ("back up", up.swap_remove(0), raw_up, ssh_up, restic_up, v3_up),
            ("restore", down.swap_remove(0), raw_down, ssh_down, restic_down, v3_down),
        ] {
            Rows {
                workload: format!("1 {what} one {size} file"),
                unit: "MB/s",
                plain: ours,
                plain_peers: vec![peer("raw wire (socat + fsync)", raw, Some(0.95))],
                v3,
                v3_target: 0.85,
                secure_peers: vec![
                    peer("rsync -e ssh --fsync", ssh, Some(2.0)),
                    peer("restic to rclone serve restic (no fsync)", restic, None),
                ],
                into: &mut rows,
            }
            .push();
        }
    }

    if let (true, Some((sshd, restic))) = (o.runs(2), &secure) {
        // 2. Many small files from one client invocation.
        let n = o.small_files;
        eprintln!("workload 2: {n} files of 4 KiB");
        let small = w("small");
        std::fs::create_dir_all(&small).unwrap();
        let names: Vec<String> = (0..n).map(|i| format!("f{i:05}")).collect();
        for (i, name) in names.iter().enumerate() {
            write_random(&small.join(name), 4096, i as u64 + 11);
        }
        let paths: Vec<String> = names.iter().map(|name| small.join(name).display().to_string()).collect();
        let rsync_root = w("rsync");
        std::fs::create_dir_all(&rsync_root).unwrap();
        let rsync = Rsync::start(&o.work, &rsync_root);
        // Ours (per build): synced up and down, unsynced up and down; then
        // rsync the same four.
        let mut r = vec![[vec![], vec![], vec![], vec![]]; builds.len()];
        let mut rs = [vec![], vec![], vec![], vec![]];
        let mut ss = [vec![], vec![], vec![], vec![]];
        let (mut restic_up, mut restic_down) = (vec![], vec![]);
        let mut v3s = [vec![], vec![], vec![], vec![]];
        for rep in 0..o.reps {
            for plain_turn in plain_first(rep) {
                if plain_turn {
                    for (b, build) in turns(&builds, rep) {
                        for (durable, up, down) in [(true, 0, 1), (false, 2, 3)] {
                            let flags: &[&str] = if durable { &[] } else { &["--unsafe-no-fsync"] };
                            let root = w(&format!("{}-2-{durable}-{rep}", build.label));
                            let server = Server::start(build.bin, &root, flags);
                            r[b][up]
                                .push(per_s(n, client(build.bin, &server, As::Plain, &["backup"], &paths)));
                            let out = w(&format!("restored-{}-2-{durable}-{rep}", build.label));
                            std::fs::create_dir_all(&out).unwrap();
                            let restore = ["restore", "-o", out.to_str().unwrap(), "--unsafe-no-fsync"];
                            let restore = if durable { &restore[..3] } else { &restore[..] };
                            r[b][down].push(per_s(n, client(build.bin, &server, As::Plain, restore, &names)));
                        }
                    }
                } else {
                    for (durable, up, down) in [(true, 0, 1), (false, 2, 3)] {
                        if !v3 {
                            break;
                        }
                        let flags: &[&str] = if durable { &[] } else { &["--unsafe-no-fsync"] };
                        let root = w(&format!("v3-2-{durable}-{rep}"));
                        let user =
                            KeyedUser::add(&o.bin, &root, V3_USER, &w(&format!("v3-2-{durable}-{rep}.key")));
                        let server = Server::start(&o.bin, &root, flags);
                        v3s[up]
                            .push(per_s(n, client(&o.bin, &server, As::Keyed(&user), &["backup"], &paths)));
                        let out = w(&format!("restored-v3-2-{durable}-{rep}"));
                        std::fs::create_dir_all(&out).unwrap();
                        let restore = ["restore", "-o", out.to_str().unwrap(), "--unsafe-no-fsync"];
                        let restore = if durable { &restore[..3] } else { &restore[..] };
                        v3s[down].push(per_s(n, client(&o.bin, &server, As::Keyed(&user), restore, &names)));
                    }
                }
            }
            for (fsync, up, down) in [(true, 0, 1), (false, 2, 3)] {
                let dest = format!("{fsync}-{rep}");
                rs[up].push(per_s(n, rsync.push(&small, &dest, fsync)));
                let out = w(&format!("rsync-restored-{fsync}-{rep}"));
                std::fs::create_dir_all(&out).unwrap();
                rs[down].push(per_s(n, rsync.pull(&dest, &out, fsync)));
                let (there, back) =
                    (w(&format!("ssh-2-{fsync}-{rep}")), w(&format!("ssh-restored-2-{fsync}-{rep}")));
                std::fs::create_dir_all(&there).unwrap();
                std::fs::create_dir_all(&back).unwrap();
                ss[up].push(per_s(n, sshd.push(&small, &there, fsync)));
                ss[down].push(per_s(n, sshd.pull(&there, &back, fsync)));
            }
            let repo = format!("2-{rep}");
            restic.init(&repo);
            restic_up.push(per_s(n, restic.backup(&repo, &small)));
            let out = w(&format!("restic-restored-2-{rep}"));
            restic_down.push(per_s(n, restic.restore(&repo, &out)));
            let restored = std::fs::read_dir(restored_under(&out, &small)).map(|d| d.count()).unwrap_or(0);
            assert_eq!(restored, n, "restic restored {restored} files of {n}");
        }
        drop(rsync);
        let whats = [
            ("back up {n} x 4 KiB, synced", "rsync --fsync", "rsync -e ssh --fsync"),
            ("restore {n} x 4 KiB, synced", "rsync --fsync", "rsync -e ssh --fsync"),
            ("back up {n} x 4 KiB, no sync", "rsync", "rsync -e ssh"),
            ("restore {n} x 4 KiB, no sync", "rsync", "rsync -e ssh"),
        ];
        // restic syncs nothing (neither rclone's store nor its restore), so
        // it stands beside our unsynced figures.
        let restic = [vec![], vec![], restic_up, restic_down];
        for (i, ((((what, daemon, ssh), theirs), over_ssh), (restic, v3))) in
            whats.into_iter().zip(rs).zip(ss).zip(restic.into_iter().zip(v3s)).enumerate()
        {
            let workload = format!("2 {}", what.replace("{n}", &n.to_string()));
            let figures: Vec<Vec<f64>> = r.iter().map(|per_build| per_build[i].clone()).collect();
            compare(workload.clone(), "files/s", &figures);
            let mut secure_peers = vec![peer(ssh, over_ssh, Some(2.0))];
            if !restic.is_empty() {
                secure_peers.push(peer("restic to rclone serve restic", restic, None));
            }
            Rows {
                workload,
                unit: "files/s",
                plain: r[0][i].clone(),
                plain_peers: vec![peer(daemon, theirs, Some(1.0))],
                v3,
                v3_target: 0.9,
                secure_peers,
                into: &mut rows,
            }
            .push();
        }
    }

    if o.runs(3) {
        // 3. Many clients at once; per-request latency. 4. Server memory.
        let clients = o.clients;
        eprintln!("workload 3: {clients} clients x 50 files of 256 KiB");
        let mut runs: Vec<Vec<Burst>> = builds.iter().map(|_| Vec::new()).collect();
        for rep in 0..o.reps {
            for (b, build) in turns(&builds, rep) {
                let root = w(&format!("{}-3-{rep}", build.label));
                runs[b].push(burst(build.bin, &root, clients));
            }
        }
        let figures = |f: &dyn Fn(&Burst) -> f64| -> Vec<Vec<f64>> {
            runs.iter().map(|per_build| per_build.iter().map(f).collect()).collect()
        };
        let what = format!("3 {clients} clients x 50 files of 256 KiB");
        compare(format!("{what}, in all"), "MB/s", &figures(&|r| r.mb_per_s));
        compare(format!("{what}, p50 of all requests"), "ms", &figures(&|r| r.all.0));
        compare(format!("{what}, p99 of all requests"), "ms", &figures(&|r| r.all.1));
        let runs = &runs[0];
        let stat = |f: &dyn Fn(&Burst) -> f64| Stat(runs.iter().map(f).collect()).show();
        let errors: usize = runs.iter().map(|r| r.errors).sum();
        notes.push(format!(
            "3 {clients} clients x 50 files of 256 KiB, backed up then restored, median [min-max] of {} runs: \
             {} MB/s in all, errors {errors}; all requests: p50 {} ms, p99 {} ms, p99/p50 {}; \
             backups: p50 {} ms, p99/p50 {}; restores: p50 {} ms, p99/p50 {}",
            o.reps,
            stat(&|r| r.mb_per_s),
            stat(&|r| r.all.0),
            stat(&|r| r.all.1),
            stat(&|r| r.all.1 / r.all.0),
            stat(&|r| r.backups.0),
            stat(&|r| r.backups.1 / r.backups.0),
            stat(&|r| r.restores.0),
            stat(&|r| r.restores.1 / r.restores.0),
        ));
        let rss3 = runs.iter().map(|r| r.rss_kib).fold(0.0, f64::max);
        notes.push(format!(
            "4 server peak RSS: {:.1} MiB during workload 1 ({} MiB file), {:.1} MiB during workload 3",
            rss1 / 1024.0,
            o.big / MIB,
            rss3 / 1024.0
        ));
    }

    if o.runs(5) {
        // 5. Connection churn, in plaintext and (if our client speaks it) in
        // version-3 sessions, each with its own server, in turn.
        let churn = o.churn;
        eprintln!("workload 5: {churn} lists, each on a new connection");
        let server = Server::start(&o.bin, &w("ours-5"), &[]);
        let connector = TcpConnector { addrs: vec![server.addr], timeout: Duration::from_secs(60) };
        let mut buf = vec![0u8; 4096];
        let mut plain = Client::new(connector, 5, &mut buf).expect("buffer");
        let secure = v3.then(|| {
            let root = w("v3-5");
            let user = KeyedUser::add(&o.bin, &root, V3_USER, &w("v3-5.key"));
            (Server::start(&o.bin, &root, &[]), user)
        });
        let mut buf = vec![0u8; 4096];
        let mut keyed = secure.as_ref().map(|(server, user)| {
            let tcp = TcpConnector { addrs: vec![server.addr], timeout: Duration::from_secs(60) };
            let connector = SecureConnector { tcp, user: user.id, key: user.key };
            Client::new(connector, user.id, &mut buf).expect("buffer").with_version(SECURE_VERSION)
        });
        let (mut rates, mut v3_rates) = (vec![], vec![]);
        for _ in 0..o.reps {
            rates.push(churn_rate(&mut plain, churn));
            if let Some(keyed) = &mut keyed {
                v3_rates.push(churn_rate(keyed, churn));
            }
        }
        notes.push(format!(
            "5 {churn} list requests, each on a new connection: {} requests/s (median [min-max])",
            Stat(rates.clone()).show()
        ));
        if !v3_rates.is_empty() {
            rows.push(Row {
                workload: format!("5 {churn} lists, each on a new connection, version 3"),
                unit: "requests/s",
                ours: Stat(v3_rates),
                peers: vec![peer("ours, plaintext", rates, None)],
            });
        }
        drop(server);
    }

    println!("\nmedian [min-max] of {} runs; ratio = ours / peer (median)\n", o.reps);
    println!("| workload | unit | ours | peer | peer figure | ratio | target | met |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in &rows {
        for p in &row.peers {
            let ratio = row.ours.median() / p.stat.median();
            let (target, met) = match p.target {
                Some(t) => (format!("≥ {t}"), if ratio >= t { "yes" } else { "**no**" }),
                None => ("—".to_string(), "—"),
            };
            println!(
                "| {} | {} | {} | {} | {} | {ratio:.2} | {target} | {met} |",
                row.workload,
                row.unit,
                row.ours.show(),
                p.name,
                p.stat.show(),
            );
        }
    }
    println!();
    for note in notes {
        println!("- {note}");
    }
    if !versus.is_empty() {
        println!(
            "\nours against the baseline ({}), measured in turn in this run; ratio = ours / baseline \
             (median; for ms, lower is better)\n",
            o.baseline.as_deref().map_or_else(String::new, |b| b.display().to_string())
        );
        println!("| workload | unit | ours | baseline | ratio |");
        println!("|---|---|---|---|---|");
        for v in &versus {
            println!(
                "| {} | {} | {} | {} | {:.2} |",
                v.workload,
                v.unit,
                v.ours.show(),
                v.baseline.show(),
                v.ours.median() / v.baseline.median()
            );
        }
    }
    // This run's files stay until the next run has measured (see above);
    // only the big ones go now.
    if let Ok(entries) = std::fs::read_dir(&o.work) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("-1-") || name == "big.bin" {
                let path = entry.path();
                let _ =
                    if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            }
        }
    }
    // And restic's repositories of workload 1.
    drop(secure);
    if let Ok(entries) = std::fs::read_dir(w("restic/repos")) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("1-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&old);
    println!(
        "\nThis run's small files are left in {} until the next run has measured. Leave a few minutes \
         between runs: the last run's files were deleted just now, and ext4 creates files slowly for \
         minutes after many deletions.",
        o.work.display()
    );
}
