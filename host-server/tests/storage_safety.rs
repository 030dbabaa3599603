//! What the storage promises: nothing lost, nothing half-written, nothing
//! outside its folder, whatever clients do.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::thread;

use backup_server::StoreOptions;
use backup_server::fs_store::TEMP_PREFIX;
use support::*;

#[test]
fn a_client_cut_off_mid_payload_leaves_the_previous_version_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    let old = pattern(10_000, 1);
    let mut client = PlainClient::new(&server, 5);
    assert_eq!(client.call(BACKUP, b"doc", Some(&old)).status, 212);

    let new = pattern(1_000_000, 2);
    let full = request(5, BACKUP, b"doc", Some(&new));
    let mut cut = server.connect();
    cut.write_all(&full[..full.len() / 2]).unwrap();
    eventually("the upload's temporary file appears", || !temporary_files(&server.root).is_empty());
    // It sits in the user's folder, under a name no client can send.
    assert_eq!(client.call(LIST, b"", None).payload, b"doc\n", "an upload in progress is never listed");
    drop(cut);
    eventually("the aborted upload's temporary file is removed", || temporary_files(&server.root).is_empty());

    let reply = client.call(RESTORE, b"doc", None);
    assert!(reply.status == 210 && reply.payload == old, "previous version restored");
    assert_eq!(client.call(LIST, b"", None).payload, b"doc\n");
    assert_eq!(dir_names(&server.root.join("5")), ["doc"]);
}

#[test]
fn temporary_files_left_by_a_crash_are_removed_at_start_up_and_never_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    let mut client = PlainClient::new(&server, 6);
    assert_eq!(client.call(BACKUP, b"kept", Some(b"v1")).status, 212);
    drop(client);
    let root = server.root.clone();
    server.stop();
    // What a crash in the middle of an upload leaves behind.
    std::fs::write(root.join("6").join(format!("{TEMP_PREFIX}123-0")), b"half").unwrap();

    let server = TestServer::start_in(dir.path(), |_| {});
    assert_eq!(temporary_files(&root), Vec::<String>::new());
    assert_eq!(dir_names(&root.join("6")), ["kept"]);
    let mut client = PlainClient::new(&server, 6);
    assert_eq!(client.call(LIST, b"", None).payload, b"kept\n");
    assert_eq!(client.call(RESTORE, b"kept", None).payload, b"v1");
}

#[test]
fn storage_folders_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new-root");
    let server = TestServer::start_in(&root, |_| {});
    PlainClient::new(&server, 8).call(BACKUP, b"f", Some(b"x"));
    for path in [root.clone(), root.join("8")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", path.display());
    }
    let mode = std::fs::metadata(root.join("8/f")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn hostile_names_get_1003_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(&dir.path().join("root"), |_| {});
    let cases: [(&[u8], &str); 6] = [
        (b"../x", "name contains '/'"),
        (b"a/b", "name contains '/'"),
        (b"/etc/passwd", "name contains '/'"),
        (b"..", "name is '.' or '..'"),
        (b"a\0b", "name contains a NUL byte"),
        (b"..\\x", "name contains '\\'"),
    ];
    for (name, reason) in cases {
        for op in [BACKUP, RESTORE, DELETE] {
            let mut client = PlainClient::new(&server, 9);
            let payload = (op == BACKUP).then_some(&b"evil"[..]);
            let reply = client.call(op, name, payload);
            assert_eq!((reply.status, reply.reason()), (1003, reason), "op {op} {name:?}");
            // The session is over: the server closes once we stop sending.
            client.stream.shutdown(std::net::Shutdown::Write).unwrap();
            assert_eq!(client.stream.read(&mut [0; 16]).unwrap(), 0);
        }
    }
    assert_eq!(dir_names(dir.path()), ["root"]);
    assert_eq!(dir_names(&server.root), [backup_server::root_lock::LOCK_FILE], "no user folder");
}

#[test]
fn a_symlink_planted_in_a_user_folder_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"secret").unwrap();
    let server = TestServer::start_in(&dir.path().join("root"), |_| {});
    let mut client = PlainClient::new(&server, 10);
    assert_eq!(client.call(BACKUP, b"real", Some(b"mine")).status, 212);
    std::os::unix::fs::symlink(&outside, server.root.join("10/link")).unwrap();

    for (op, payload) in [(RESTORE, None), (BACKUP, Some(&b"overwrite"[..])), (DELETE, None)] {
        let mut client = PlainClient::new(&server, 10);
        let reply = client.call(op, b"link", payload);
        assert_eq!((reply.status, reply.reason()), (1003, "not a regular file"), "op {op}");
    }
    assert_eq!(
        PlainClient::new(&server, 10).call(LIST, b"", None).payload,
        b"real\n",
        "links are not listed"
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
    assert!(std::fs::symlink_metadata(server.root.join("10/link")).unwrap().is_symlink());
}

#[test]
fn a_user_folder_replaced_by_a_symlink_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("f"), b"secret").unwrap();
    let server = TestServer::start_in(&dir.path().join("root"), |_| {});
    std::os::unix::fs::symlink(&outside, server.root.join("11")).unwrap();
    for (op, name, payload) in [
        (RESTORE, &b"f"[..], None),
        (BACKUP, b"g", Some(&b"data"[..])),
        (DELETE, b"f", None),
        (LIST, b"", None),
    ] {
        let reply = PlainClient::new(&server, 11).call(op, name, payload);
        assert_eq!((reply.status, reply.reason()), (1003, "not a regular file"), "op {op}");
    }
    assert_eq!(dir_names(&outside), ["f"]);
    assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"secret");
}

#[test]
fn uploads_over_the_size_limit_are_refused_before_their_payload() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| c.max_file_size = 1000);
    let mut client = PlainClient::new(&server, 12);
    assert_eq!(client.call(BACKUP, b"f", Some(&[1; 1000])).status, 212);
    // Send only the header: the answer must come without the payload.
    let mut stream = server.connect();
    stream.write_all(&request(12, BACKUP, b"f", None)).unwrap();
    stream.write_all(&1001u32.to_le_bytes()).unwrap();
    let reply = read_reply(&mut stream).unwrap();
    assert_eq!((reply.status, reply.reason()), (1003, "file exceeds the server's size limit"));
    assert_eq!(client.call(RESTORE, b"f", None).payload, [1; 1000]);
}

#[test]
fn uploads_over_the_quota_are_refused_and_replacing_a_file_counts_only_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_with_store(dir.path(), StoreOptions { quota: Some(1000), durable: true }, |_| {});
    let mut client = PlainClient::new(&server, 13);
    assert_eq!(client.call(BACKUP, b"a", Some(&[1; 600])).status, 212);
    let mut stream = server.connect();
    stream.write_all(&request(13, BACKUP, b"b", None)).unwrap();
    stream.write_all(&600u32.to_le_bytes()).unwrap();
    let reply = read_reply(&mut stream).unwrap();
    assert_eq!((reply.status, reply.reason()), (1003, "over quota"));
    assert_eq!(client.call(BACKUP, b"a", Some(&[2; 900])).status, 212, "a replacement frees the old size");
    assert_eq!(client.call(BACKUP, b"c", Some(&[3; 100])).status, 212);
    assert_eq!(client.call(BACKUP, b"d", Some(&[4; 1])).reason(), "over quota");
    // A refusal ends the session; carry on over a new connection.
    let mut client = PlainClient::new(&server, 13);
    assert_eq!(client.call(DELETE, b"c", None).status, 212);
    assert_eq!(client.call(BACKUP, b"d", Some(&[4; 100])).status, 212, "a delete frees its size");
    assert_eq!(client.call(RESTORE, b"a", None).payload, [2; 900]);
    assert_eq!(PlainClient::new(&server, 14).call(BACKUP, b"a", Some(&[1; 1000])).status, 212, "per user");
}

#[test]
fn thirty_two_clients_at_once_always_restore_a_complete_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    const CLIENTS: u64 = 32;
    const SHARED_USER: u32 = 999;
    let versions: Vec<Vec<u8>> = (0..CLIENTS).map(|c| pattern(50_000 + c as usize * 100, 1000 + c)).collect();
    thread::scope(|scope| {
        for c in 0..CLIENTS {
            let server = &server;
            let versions = &versions;
            scope.spawn(move || {
                let mut own = PlainClient::new(server, 2000 + c as u32);
                let mut shared = PlainClient::new(server, SHARED_USER);
                for round in 0..5 {
                    let mine = pattern(20_000 + round * 7, c * 10 + round as u64);
                    assert_eq!(own.call(BACKUP, b"own", Some(&mine)).status, 212);
                    assert!(own.call(RESTORE, b"own", None).payload == mine, "own file intact");
                    let name = format!("shared-{}", round % 2);
                    assert_eq!(shared.call(BACKUP, name.as_bytes(), Some(&versions[c as usize])).status, 212);
                    let got = shared.call(RESTORE, name.as_bytes(), None);
                    assert_eq!(got.status, 210);
                    assert!(versions.contains(&got.payload), "shared file is one complete version");
                }
            });
        }
    });
    assert_eq!(temporary_files(&server.root), Vec::<String>::new());
    assert_eq!(dir_names(&server.root.join(SHARED_USER.to_string())), ["shared-0", "shared-1"]);
}
