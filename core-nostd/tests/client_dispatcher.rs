//! The client against the dispatcher, end to end in memory, over a duplex
//! whose every read and write is short.

mod support;

use std::thread;

use backup_core::{Client, ClientError, Config, Dispatcher, Outcome, RamStore, SessionEnd};
use support::{OneShot, duplex};

const MIB: usize = 1 << 20;
type BigStore = RamStore<8, { 8 * MIB }>;

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
