//! The `--listen-block` listener against a test double of the Python client
//! of NaftaliProjects/File-Transfer-and_Backup-in-cpp-and-python
//! (`Client/clientRequest.py`, `Client/clientResponse.py`), reproducing its
//! framing byte for byte: a 1024-byte header block with a big-endian
//! `name_len` (`struct.pack_into('!H', ...)`), data blocks of size + 1020
//! bytes then 1024, zero padded, and one `recv(1024)` per block read.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use backup_server::{FsStorage, Server, ServerConfig, StoreOptions};

const BUFFER_SIZE: usize = 1024;

struct BlockServer {
    block: SocketAddr,
    stream: SocketAddr,
    root: std::path::PathBuf,
    handle: backup_server::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl BlockServer {
    fn start(root: &Path) -> BlockServer {
        BlockServer::start_with(root, |_| {})
    }

    fn start_with(root: &Path, configure: impl FnOnce(&mut ServerConfig)) -> BlockServer {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        config.listen_block = Some("127.0.0.1:0".parse().unwrap());
        config.shutdown_grace = Duration::from_secs(2);
        config.idle_timeout = Duration::from_secs(5);
        configure(&mut config);
        let server = Server::bind(config, FsStorage::open(root, StoreOptions::default()).unwrap()).unwrap();
        let block = server.block_addr().unwrap();
        let stream = server.local_addr().unwrap();
        let root = server.root().to_path_buf();
        let handle = server.shutdown_handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        BlockServer { block, stream, root, handle, thread }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.block).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }
}

impl Drop for BlockServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            t.join().unwrap().unwrap();
        }
    }
}

/// `Request.getHeaderByteArray`: note `name_len = len(self.fileName)` counts
/// characters and the slice assignment of the UTF-8 bytes may grow the block.
fn py_header(user: u32, version: u8, op: u8, name: Option<&str>) -> Vec<u8> {
    let mut header = vec![0u8; BUFFER_SIZE];
    header[0..4].copy_from_slice(&user.to_le_bytes());
    header[4] = version;
    header[5] = op;
    if let Some(name) = name {
        let name_len = name.chars().count();
        header[6..8].copy_from_slice(&(name_len as u16).to_be_bytes());
        header.splice(8..8 + name_len, name.bytes());
    }
    header
}

/// `Request.uploadFile`.
fn py_upload(sock: &mut TcpStream, data: &[u8]) {
    let first = data.len().min(BUFFER_SIZE - 4);
    let mut packet = vec![0u8; BUFFER_SIZE];
    packet[0..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    packet[4..4 + first].copy_from_slice(&data[..first]);
    sock.write_all(&packet).unwrap();
    let mut sent = first;
    while sent < data.len() {
        let chunk = &data[sent..data.len().min(sent + BUFFER_SIZE)];
        let mut packet = vec![0u8; BUFFER_SIZE];
        packet[..chunk.len()].copy_from_slice(chunk);
        sock.write_all(&packet).unwrap();
        sent += chunk.len();
    }
}

/// `sock.recv(1024)`.
fn recv(sock: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    let n = sock.read(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// `int.from_bytes(data[a:b], 'little')`, short slices included.
fn le(data: &[u8], range: std::ops::Range<usize>) -> u64 {
    let end = range.end.min(data.len());
    let start = range.start.min(end);
    data[start..end].iter().rev().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

#[derive(Debug, Default, PartialEq)]
struct PyResponse {
    version: u8,
    status: u64,
    name: Option<Vec<u8>>,
    /// What `listenRestoredFile` writes, or the list bytes.
    payload: Option<Vec<u8>>,
}

/// `Response.__init__` with `listenListFIles` and `listenRestoredFile`.
fn py_response(sock: &mut TcpStream) -> PyResponse {
    let data = recv(sock);
    let mut r = PyResponse { version: data[0], status: le(&data, 1..3), ..Default::default() };
    if [210, 212, 1001].contains(&r.status) {
        let n = le(&data, 3..5) as usize;
        r.name = Some(data[5..5 + n].to_vec());
    }
    if r.status == 211 || r.status == 210 {
        let data = recv(sock);
        // Its real server sends nothing here for an empty restore; ours the size.
        assert!(data.len() >= 4, "no size block");
        let size = le(&data, 0..4) as i64;
        let mut got = data.get(4..).unwrap_or(&[]).to_vec();
        let mut remaining = size - got.len() as i64;
        while remaining > 0 {
            let data = recv(sock);
            // The real client would spin forever on b''; the double fails.
            assert!(!data.is_empty(), "server closed with {remaining} bytes owed");
            got.extend_from_slice(&data);
            remaining -= data.len() as i64;
        }
        r.payload = Some(got);
    }
    r
}

fn backup(server: &BlockServer, user: u32, name: &str, data: &[u8]) -> PyResponse {
    let mut sock = server.connect();
    sock.write_all(&py_header(user, 1, 100, Some(name))).unwrap();
    py_upload(&mut sock, data);
    py_response(&mut sock)
}

fn ask(server: &BlockServer, user: u32, op: u8, name: Option<&str>) -> PyResponse {
    let mut sock = server.connect();
    sock.write_all(&py_header(user, 1, op, name)).unwrap();
    py_response(&mut sock)
}

const SIZES: [usize; 7] = [0, 1, 1019, 1020, 1021, 1024, 1 << 20];

fn contents(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 253) as u8 + 1).collect()
}

fn done(name: &str) -> PyResponse {
    PyResponse { version: 1, status: 212, name: Some(name.as_bytes().to_vec()), payload: None }
}

#[test]
fn its_python_client_backs_up_lists_restores_and_deletes_every_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = BlockServer::start(dir.path());
    let user = 4242;
    let mut names = Vec::new();
    for size in SIZES {
        let name = format!("f{size}.bin");
        assert_eq!(backup(&server, user, &name, &contents(size)), done(&name), "size {size}");
        let stored = std::fs::read(server.root.join(user.to_string()).join(&name)).unwrap();
        assert!(stored == contents(size), "size {size}: stored {} bytes, not exactly", stored.len());
        names.push(name);
    }
    names.sort();
    let listed = ask(&server, user, 202, None);
    assert_eq!((listed.version, listed.status, listed.name.as_ref()), (1, 211, None));
    let expected: String = names.iter().map(|n| format!("{n}\n")).collect();
    assert_eq!(String::from_utf8(listed.payload.unwrap()).unwrap(), expected);
    for size in SIZES {
        let name = format!("f{size}.bin");
        let restored = ask(&server, user, 200, Some(&name));
        assert_eq!(restored.status, 210, "size {size}");
        assert_eq!(restored.name.as_deref(), Some(name.as_bytes()));
        assert!(restored.payload.unwrap() == contents(size), "size {size}: restored file differs");
    }
    for name in &names {
        assert_eq!(ask(&server, user, 201, Some(name)), done(name));
    }
    let missing = PyResponse { version: 1, status: 1001, name: Some(b"f0.bin".to_vec()), payload: None };
    assert_eq!(ask(&server, user, 200, Some("f0.bin")), missing);
    assert_eq!(ask(&server, user, 201, Some("f0.bin")), missing);
    let none = ask(&server, user, 202, None);
    assert_eq!((none.version, none.status, none.payload), (1, 1002, None));
}

/// Sends raw bytes, half-closes, and reads the whole answer.
fn raw(server: &BlockServer, bytes: &[u8]) -> Vec<u8> {
    let mut sock = server.connect();
    sock.write_all(bytes).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    sock.read_to_end(&mut answer).unwrap();
    answer
}

/// A 1003 as the block listener sends it: the header block, then the reason.
fn refusal(reason: &str) -> Vec<u8> {
    let mut block = vec![0u8; BUFFER_SIZE];
    block[..3].copy_from_slice(&[1, 0xeb, 0x03]);
    block.extend_from_slice(&(reason.len() as u32).to_le_bytes());
    block.extend_from_slice(reason.as_bytes());
    block
}

fn stored_files(server: &BlockServer, user: u32) -> Vec<String> {
    match std::fs::read_dir(server.root.join(user.to_string())) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn hostile_block_input_gets_exact_refusals_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = BlockServer::start(dir.path());
    let user = 77;
    let full = [py_header(user, 1, 100, Some("a.bin")), {
        let mut b = vec![0u8; BUFFER_SIZE];
        b[..4].copy_from_slice(&5000u32.to_le_bytes());
        b
    }]
    .concat();
    let header = py_header(user, 1, 200, Some("a.bin"));
    let mut bad_len = header.clone();
    bad_len[6..8].copy_from_slice(&[0x01, 0x2c]); // 300 big-endian, 11265 little-endian
    let mut zero_len = header.clone();
    zero_len[6..8].copy_from_slice(&[0, 0]);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("short header block", header[..500].to_vec(), refusal("request cut short")),
        ("header block cut inside the size", full[..BUFFER_SIZE + 2].to_vec(), refusal("request cut short")),
        ("size larger than the data that follows", full.clone(), refusal("request cut short")),
        ("name_len invalid either way", bad_len, refusal("name length must be 1 to 255 bytes")),
        ("name_len 0", zero_len, refusal("name length must be 1 to 255 bytes")),
        (
            "name_len counting characters of a UTF-8 name",
            py_header(user, 1, 100, Some("é.bin")),
            refusal("non-zero byte in block padding (name length does not match the name)"),
        ),
        ("op 0", vec![0u8; BUFFER_SIZE], refusal("unknown op")),
        ("a name with a slash", py_header(user, 1, 200, Some("../x")), refusal("name contains '/'")),
        ("nothing at all", Vec::new(), Vec::new()),
    ];
    for (what, bytes, expected) in cases {
        assert_eq!(raw(&server, &bytes), expected, "{what}");
        assert!(stored_files(&server, user).is_empty(), "{what}: stored {:?}", stored_files(&server, user));
    }
    // No crash: the listener still serves.
    assert_eq!(backup(&server, user, "a.bin", b"ok"), done("a.bin"));
    assert_eq!(stored_files(&server, user), vec!["a.bin".to_string()]);
}

/// Block bytes without their runs of zeros, for failure messages.
fn brief(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    let tail = String::from_utf8_lossy(bytes.get(BUFFER_SIZE..).unwrap_or(&[])).into_owned();
    format!("{} bytes {head:02x?}.. then {tail:?}", bytes.len())
}

/// A header block with every field given: no name_len for ops without a name.
fn block_of(fields: &[u8]) -> Vec<u8> {
    let mut block = vec![0u8; BUFFER_SIZE];
    block[..fields.len()].copy_from_slice(fields);
    block
}

/// A 212 or 1001 as the block listener sends it: one header block.
fn named_block(status: u16, name: &[u8]) -> Vec<u8> {
    let s = status.to_le_bytes();
    block_of(&[&[1, s[0], s[1], name.len() as u8, 0][..], name].concat())
}

#[test]
fn versions_unknown_ops_and_forbidden_names_get_a_1003_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = BlockServer::start(dir.path());
    let user = 78u32;
    let u = user.to_le_bytes();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("version 0", block_of(&[u[0], u[1], u[2], u[3], 0, 0xca]), refusal("unsupported protocol version")),
        // A later version reads as version 1, as on the stream listener.
        ("version 3", block_of(&[u[0], u[1], u[2], u[3], 3, 0xca]), block_of(&[1, 0xea, 0x03])),
        ("op 7", block_of(&[u[0], u[1], u[2], u[3], 1, 7]), refusal("unknown op")),
        ("op 255", block_of(&[u[0], u[1], u[2], u[3], 1, 255]), refusal("unknown op")),
        (
            "bytes after an op without a name",
            block_of(&[u[0], u[1], u[2], u[3], 1, 0xca, 0, 5, b'a']),
            refusal("non-zero byte in block padding (name length does not match the name)"),
        ),
        (
            "a NUL in the name",
            block_of(&[u[0], u[1], u[2], u[3], 1, 200, 0, 3, b'a', 0, b'b']),
            refusal("name contains a NUL byte"),
        ),
        (
            "the name ..",
            block_of(&[u[0], u[1], u[2], u[3], 1, 201, 0, 2, b'.', b'.']),
            refusal("name is '.' or '..'"),
        ),
        (
            "a name that is not UTF-8",
            block_of(&[u[0], u[1], u[2], u[3], 1, 200, 0, 2, b'a', 0xff]),
            refusal("name is not valid UTF-8"),
        ),
        (
            // The name is judged with the size: a backup's size block is sent.
            "a slash in a backup's name",
            [
                block_of(&[u[0], u[1], u[2], u[3], 1, 100, 0, 3, b'a', b'/', b'b']),
                block_of(&[1, 0, 0, 0, b'x']),
            ]
            .concat(),
            refusal("name contains '/'"),
        ),
    ];
    for (what, bytes, expected) in cases {
        let answer = raw(&server, &bytes);
        assert!(answer == expected, "{what}: got {}, not {}", brief(&answer), brief(&expected));
        assert!(stored_files(&server, user).is_empty(), "{what}: stored {:?}", stored_files(&server, user));
    }
}

#[test]
fn a_size_of_4_gib_less_1_with_one_block_of_data_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = BlockServer::start(dir.path());
    let user = 79u32;
    let mut data = vec![0x5au8; BUFFER_SIZE];
    data[..4].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let bytes = [py_header(user, 1, 100, Some("big.bin")), data].concat();
    let answer = raw(&server, &bytes);
    assert_eq!(answer[..3], [1, 0xeb, 0x03], "not a 1003: {:?}", &answer[..answer.len().min(16)]);
    let reason = String::from_utf8_lossy(&answer[BUFFER_SIZE + 4..]).into_owned();
    assert!(!reason.is_empty(), "a 1003 without its reason");
    assert!(stored_files(&server, user).is_empty(), "stored {:?}", stored_files(&server, user));
    // The listener still serves.
    assert_eq!(backup(&server, user, "a.bin", b"ok"), done("a.bin"));
}

#[test]
fn bytes_after_the_declared_size_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = BlockServer::start(dir.path());
    let user = 80u32;
    let mut first = vec![0xeeu8; BUFFER_SIZE];
    first[..7].copy_from_slice(&[3, 0, 0, 0, b'a', b'b', b'c']);
    let bytes = [py_header(user, 1, 100, Some("a.bin")), first, vec![0xee; 3 * BUFFER_SIZE]].concat();
    assert_eq!(raw(&server, &bytes), named_block(212, b"a.bin"));
    assert_eq!(std::fs::read(server.root.join(user.to_string()).join("a.bin")).unwrap(), b"abc");
}

/// Whether the server closed or reset `s` within `wait`, looked at without reading.
fn hung_up(s: &TcpStream, wait: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(s, PollFlags::RDHUP)];
    poll(&mut fds, Some(&Timespec::try_from(wait).unwrap())).unwrap();
    fds[0].revents().intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
}

/// Sends `bytes` one every 250 ms (never idle); the time until the server
/// hung up, or `None` if it had not within 15 s.
fn trickle(addr: SocketAddr, bytes: &[u8]) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    for byte in bytes {
        if s.write_all(&[*byte]).is_err() || hung_up(&s, Duration::from_millis(250)) {
            return Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    None
}

#[test]
fn a_header_block_trickled_below_the_minimum_rate_is_cut_like_a_stream_header() {
    let dir = tempfile::tempdir().unwrap();
    // 4 bytes a second against 512 B/s: cut about 2 s in, as on the stream listener.
    let server = BlockServer::start_with(dir.path(), |c| c.idle_timeout = Duration::from_secs(2));
    let stream_header = [&[7, 0, 0, 0, 1, 200, 200, 0][..], &[b'n'; 200][..]].concat();
    let stream_cut = trickle(server.stream, &stream_header).expect("the stream listener kept a trickler");
    let block_cut = trickle(server.block, &py_header(7, 1, 200, Some("a.bin")));
    assert!(
        block_cut.is_some_and(|t| t < stream_cut + Duration::from_secs(2)),
        "block trickler cut after {block_cut:?}, stream trickler after {stream_cut:?}"
    );
}

#[test]
fn stalled_half_blocks_and_a_restore_never_read_free_their_slots_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = BlockServer::start_with(dir.path(), |c| {
        c.idle_timeout = Duration::from_secs(2);
        c.max_connections = 2;
        c.max_connections_per_ip = 2;
    });
    let big = contents(16 << 20);
    assert_eq!(backup(&server, 9, "big.bin", &big), done("big.bin"));
    let mut stalled = server.connect();
    stalled.write_all(&py_header(9, 1, 200, Some("big.bin"))[..500]).unwrap();
    let mut never_reads = server.connect();
    never_reads.write_all(&py_header(9, 1, 200, Some("big.bin"))).unwrap();
    thread::sleep(Duration::from_millis(200));
    // Both slots are held; the next client waits in the backlog until they go.
    let started = Instant::now();
    assert_eq!(backup(&server, 9, "a.bin", b"ok"), done("a.bin"));
    assert!(started.elapsed() < Duration::from_secs(8), "served after {:?}", started.elapsed());
    drop((stalled, never_reads));
}
