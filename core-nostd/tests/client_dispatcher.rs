//! The client against the dispatcher, end to end in memory, over a duplex
//! whose every read and write is short.

mod support;

use std::thread;

use backup_core::{Client, ClientError, Config, Dispatcher, Outcome, RamStore, SessionEnd};
use support::{OneShot, duplex};

const MIB: usize = 1 << 20;
type BigStore = RamStore<64, { 8 * MIB }>;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

/// list (1002) → back up two files → list → restore the first → delete it →
/// restore it again (1001) → restore the second, all on one connection.
fn classic_sequence(size: usize, seed: u64) {
    let (client_end, mut server_end) = duplex(997, seed);
    let server = thread::Builder::new()
        .stack_size(32 * MIB)
        .spawn(move || {
            let mut store = Box::new(BigStore::new());
            let mut buf = vec![0u8; 4096];
            let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, Config::default()).unwrap();
            let mut log = Vec::new();
            let end = dispatcher.serve(&mut server_end, &mut |o: &Outcome<'_>| {
                log.push((o.op.as_str().to_string(), o.name.to_string(), o.status.map(|s| s.code()), o.bytes))
            });
            (end, log)
        })
        .unwrap();

    let first = pattern(size, 1);
    let second = pattern(size + 3, 2);
    let mut buf = vec![0u8; 4096];
    let mut client = Client::new(OneShot(Some(client_end)), 7, &mut buf).unwrap();

    assert_eq!(client.list(|_| panic!("no names expected")), Err(ClientError::NoFiles));
    client.backup("first.bin", first.len() as u32, &mut &first[..]).unwrap();
    client.backup("second.bin", second.len() as u32, &mut &second[..]).unwrap();
    let mut names = Vec::new();
    assert_eq!(client.list(|n| names.push(String::from_utf8_lossy(n).into_owned())), Ok(2));
    assert_eq!(names, ["first.bin", "second.bin"]);

    let mut restored = Vec::new();
    let mut announced = None;
    let got = client.restore("first.bin", &mut restored, |s| announced = Some(s)).unwrap();
    assert_eq!((got as usize, announced), (first.len(), Some(first.len() as u32)));
    assert!(restored == first, "first file differs after restore");

    client.delete("first.bin").unwrap();
    assert_eq!(client.restore("first.bin", &mut Vec::new(), |_| {}), Err(ClientError::NotFound));
    assert_eq!(client.delete("first.bin"), Err(ClientError::NotFound));

    let mut restored = Vec::new();
    client.restore("second.bin", &mut restored, |_| {}).unwrap();
    assert!(restored == second, "second file differs after restore");
    assert!(client.is_connected(), "a version-2 server's connection is kept");
    drop(client);

    let (end, log) = server.join().unwrap();
    assert_eq!(end, SessionEnd::Closed);
    let statuses: Vec<_> = log.iter().map(|(op, _, status, _)| (op.as_str(), status.unwrap())).collect();
    assert_eq!(
        statuses,
        [
            ("list", 1002),
            ("backup", 212),
            ("backup", 212),
            ("list", 211),
            ("restore", 210),
            ("delete", 212),
            ("restore", 1001),
            ("delete", 1001),
            ("restore", 210)
        ]
    );
    assert_eq!(log[1].3, size as u64, "backup reports the bytes received");
}

#[test]
fn classic_sequence_with_empty_files() {
    classic_sequence(0, 1);
}

#[test]
fn classic_sequence_with_one_byte_files() {
    classic_sequence(1, 2);
}

#[test]
fn classic_sequence_with_files_of_one_buffer() {
    classic_sequence(4096, 3);
}

#[test]
fn classic_sequence_with_files_of_several_mebibytes() {
    classic_sequence(3 * MIB + 17, 4);
}

#[test]
fn invalid_names_are_refused_before_anything_is_sent() {
    let mut buf = vec![0u8; 512];
    let mut client = Client::new(OneShot(None), 7, &mut buf).unwrap();
    assert_eq!(
        client.delete("../etc/passwd"),
        Err(ClientError::InvalidName(backup_core::wire::NameError::Slash))
    );
    assert!(!client.is_connected());
}

#[test]
fn a_refused_upload_stops_sending_and_reports_the_server_reason() {
    let (client_end, mut server_end) = duplex(4096, 9);
    let server = thread::spawn(move || {
        let mut store = Box::new(RamStore::<4, 1024>::new());
        let mut buf = vec![0u8; 1024];
        let config = Config { max_file_size: 100, ..Config::default() };
        let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, config).unwrap();
        let end = dispatcher.serve(&mut server_end, &mut |_: &Outcome<'_>| {});
        assert_eq!(end, SessionEnd::Refused);
        // Drain like a server would, until the client gives up.
        // Less than the upload: PeerClosed proves the client stopped sending.
        backup_core::io::drain(&mut server_end, &mut buf, 1 << 20)
    });
    let big = vec![7u8; 2 * MIB];
    let mut buf = vec![0u8; 1024];
    let mut client = Client::new(OneShot(Some(client_end)), 7, &mut buf).unwrap();
    assert_eq!(client.backup("big", big.len() as u32, &mut &big[..]), Err(ClientError::Server));
    assert_eq!(client.server_reason(), "file exceeds the server's size limit");
    assert!(!client.is_connected(), "the session ended with the refusal");
    drop(client);
    assert_eq!(server.join().unwrap(), backup_core::io::Drained::PeerClosed);
}

/// A batch of generated files, recording the order of their 212s.
struct Files {
    sizes: Vec<usize>,
    names: Vec<String>,
    data: Vec<Vec<u8>>,
    done: Vec<usize>,
}

impl Files {
    fn new(sizes: Vec<usize>) -> Files {
        let names = (0..sizes.len()).map(|i| format!("file-{i:03}")).collect();
        let data = sizes.iter().enumerate().map(|(i, &n)| pattern(n, i as u8)).collect();
        Files { sizes, names, data, done: Vec::new() }
    }
}

/// An owned file's contents, read from the start.
struct Contents(Vec<u8>, usize);

impl embedded_io::ErrorType for Contents {
    type Error = std::convert::Infallible;
}

impl embedded_io::Read for Contents {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

impl backup_core::Batch for Files {
    type Reader = Contents;

    fn file(&mut self, index: usize) -> Result<(&str, u32, Contents), std::convert::Infallible> {
        Ok((&self.names[index], self.sizes[index] as u32, Contents(self.data[index].clone(), 0)))
    }

    fn name(&mut self, index: usize) -> &str {
        &self.names[index]
    }

    fn done(&mut self, index: usize) {
        self.done.push(index);
    }
}

fn serve_in_thread(
    mut server_end: support::DuplexEnd,
    config: Config,
) -> thread::JoinHandle<(SessionEnd<support::Hangup>, Box<BigStore>)> {
    thread::Builder::new()
        .stack_size(32 * MIB)
        .spawn(move || {
            let mut store = Box::new(BigStore::new());
            let mut buf = vec![0u8; 4096 + backup_core::dispatch::GROUP_COMMIT_AREA_LEN];
            let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, config).unwrap();
            let end = dispatcher.serve(&mut server_end, &mut |_: &Outcome<'_>| {});
            (end, store)
        })
        .unwrap()
}

#[test]
fn a_pipelined_batch_is_acknowledged_in_order_and_stored_whole() {
    let (client_end, server_end) = duplex(997, 21);
    let server = serve_in_thread(server_end, Config { group_commit: true, ..Config::default() });
    let mut files = Files::new((0..40).map(|i| [0, 1, 4096, 10_000][i % 4] + i).collect());
    let mut buf = vec![0u8; 4096];
    let mut client = Client::new(OneShot(Some(client_end)), 7, &mut buf).unwrap();
    client.backup_batch(files.sizes.len(), &mut files).unwrap();
    assert_eq!(files.done, (0..40).collect::<Vec<_>>());
    drop(client);
    let (end, store) = server.join().unwrap();
    assert_eq!(end, SessionEnd::Closed);
    for (name, data) in files.names.iter().zip(&files.data) {
        assert_eq!(store.get(7, name), Some(&data[..]), "{name}");
    }
}

#[test]
fn a_refusal_inside_a_batch_reports_the_first_unconfirmed_file() {
    let (client_end, server_end) = duplex(4096, 22);
    let server =
        serve_in_thread(server_end, Config { group_commit: true, max_file_size: 5000, ..Config::default() });
    let mut files = Files::new(vec![10, 20, 30, 40, 50, 200_000, 60, 70]);
    let mut buf = vec![0u8; 4096];
    let mut client = Client::new(OneShot(Some(client_end)), 7, &mut buf).unwrap();
    let err = client.backup_batch(files.sizes.len(), &mut files).unwrap_err();
    assert_eq!((err.index, err.error), (5, ClientError::Server));
    assert_eq!(client.server_reason(), "file exceeds the server's size limit");
    assert_eq!(files.done, [0, 1, 2, 3, 4]);
    drop(client);
    let (end, store) = server.join().unwrap();
    assert_eq!(end, SessionEnd::Refused);
    assert_eq!(store.file_count(), 5);
}

/// Restored files, collected whole.
struct Restores {
    names: Vec<String>,
    got: Vec<(usize, Vec<u8>)>,
}

impl backup_core::RestoreBatch for Restores {
    type Writer = Vec<u8>;

    fn name(&mut self, index: usize) -> &str {
        &self.names[index]
    }

    fn open(&mut self, _index: usize, size: u32) -> Result<Vec<u8>, std::convert::Infallible> {
        Ok(Vec::with_capacity(size as usize))
    }

    fn finish(&mut self, index: usize, writer: Vec<u8>) -> Result<(), std::convert::Infallible> {
        self.got.push((index, writer));
        Ok(())
    }
}

#[test]
fn a_pipelined_restore_batch_returns_every_file_whole_and_in_order() {
    let (client_end, server_end) = duplex(997, 23);
    let server = serve_in_thread(server_end, Config { group_commit: true, ..Config::default() });
    let mut files = Files::new((0..30).map(|i| [0, 1, 5000, 70_000][i % 4] + i).collect());
    let mut buf = vec![0u8; 4096];
    let mut client = Client::new(OneShot(Some(client_end)), 7, &mut buf).unwrap();
    client.backup_batch(files.sizes.len(), &mut files).unwrap();
    let mut restores = Restores { names: files.names.clone(), got: Vec::new() };
    client.restore_batch(restores.names.len(), &mut restores).unwrap();
    assert_eq!(restores.got.len(), 30);
    for (i, (index, data)) in restores.got.iter().enumerate() {
        assert_eq!(*index, i);
        assert!(*data == files.data[i], "{} restored whole", files.names[i]);
    }
    // A name the server does not have stops the batch at its index.
    let mut missing =
        Restores { names: vec![files.names[0].clone(), "nope".into(), files.names[1].clone()], got: vec![] };
    let err = client.restore_batch(3, &mut missing).unwrap_err();
    assert_eq!((err.index, err.error), (1, ClientError::NotFound));
    assert_eq!(missing.got.len(), 1);
    drop(client);
    let _ = server.join().unwrap();
}
