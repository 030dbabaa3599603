//! The `backup-client` binary with a key: authenticated sessions (protocol
//! version 3) against the real server, where the key comes from and how it
//! is guarded, and what happens against servers that do not speak version 3.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;

mod support;

use support::*;

/// Writes `line` to an owner-only key file in `work`.
fn key_file(work: &Workdir, name: &str, line: &str) -> String {
    let path = work.write(name, format!("{line}\n").as_bytes());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

/// The user folders the server's root holds (which users stored something).
fn users_with_files(server: &RealServer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.parse::<u32>().is_ok())
        .collect();
    names.sort();
    names
}

#[test]
fn every_subcommand_in_an_authenticated_session_with_files_up_to_64_mib() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let line = server.add_user(5001);
    let key = key_file(&work, "key", &line);
    let addr = server.addr.to_string();
    let s = ["--server", addr.as_str(), "--key-file", key.as_str()];

    let out = work.client(&[&s[..], &["whoami"]].concat());
    assert_eq!(stdout(&out).trim(), "5001", "the key line names the user");
    assert_exit(&work.client(&[&s[..], &["list"]].concat()), 4);

    back_up_list_and_restore_files_up_to_64_mib(&work, &s);
    assert_exit(&work.client(&[&s[..], &["delete", "file-0.bin", "file-1.bin"]].concat()), 0);
    let out = work.client(&[&s[..], &["list"]].concat());
    assert_eq!(stdout(&out).lines().count(), 3);

    // What was stored is this user's, reachable only with the key.
    let plain = work.client(&["--server", &addr, "--user", "5001", "list"]);
    assert_exit(&plain, 5);
    assert!(stderr(&plain).contains("requires an authenticated session"), "{}", stderr(&plain));
}

#[test]
fn a_batch_of_many_files_travels_pipelined_in_one_session() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let key = key_file(&work, "key", &server.add_user(5002));
    let addr = server.addr.to_string();
    let s = ["--server", addr.as_str(), "--key-file", key.as_str()];
    let paths: Vec<String> = (0..60)
        .map(|i| work.write(&format!("src/f{i:02}"), &pattern(i * 977, i as u64)).display().to_string())
        .collect();
    let mut args: Vec<&str> = [&s[..], &["backup"]].concat();
    args.extend(paths.iter().map(String::as_str));
    assert_exit(&work.client(&args), 0);
    let names: Vec<String> = (0..60).map(|i| format!("f{i:02}")).collect();
    let mut args: Vec<&str> = [&s[..], &["restore", "-o", "out"]].concat();
    std::fs::create_dir(work.path("out")).unwrap();
    args.extend(names.iter().map(String::as_str));
    assert_exit(&work.client(&args), 0);
    for (i, name) in names.iter().enumerate() {
        assert!(
            std::fs::read(work.path(&format!("out/{name}"))).unwrap() == pattern(i * 977, i as u64),
            "{name}"
        );
    }
    let mut args: Vec<&str> = [&s[..], &["delete"]].concat();
    args.extend(names.iter().map(String::as_str));
    assert_exit(&work.client(&args), 0);
    assert_exit(&work.client(&[&s[..], &["list"]].concat()), 4);
}

#[test]
fn login_reads_the_key_line_from_standard_input_and_keeps_it_owner_only() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let line = server.add_user(5003);
    let mut child = work.command(&["login"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{line}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(line.rsplit(':').next().unwrap()), "the key is never printed");
    let saved = work.path("config/backup-client/key");
    assert_eq!(std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(saved.parent().unwrap()).unwrap().permissions().mode();
    assert_eq!(dir & 0o077, 0, "the config folder is the user's alone");
    work.write("a.txt", b"with the saved key");
    let addr = server.addr.to_string();
    assert_exit(&work.client(&["--server", &addr, "backup", "a.txt"]), 0);
    assert_eq!(users_with_files(&server), ["5003"]);
}

#[test]
fn key_file_beats_backup_key_beats_the_saved_key() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let (saved, env, file) = (server.add_user(5011), server.add_user(5012), server.add_user(5013));
    assert_exit(&work.client(&["login", &saved]), 0);
    let file = key_file(&work, "key", &file);
    work.write("a.txt", b"a");
    let addr = server.addr.to_string();
    let backup = |extra: &[&str], env_key: Option<&str>| {
        let mut command =
            work.command(&[&["--server", addr.as_str()][..], extra, &["backup", "a.txt"]].concat());
        if let Some(key) = env_key {
            command.env("BACKUP_KEY", key);
        }
        let out = command.output().unwrap();
        assert_exit(&out, 0);
    };
    backup(&[], None);
    assert_eq!(users_with_files(&server), ["5011"], "the saved key");
    backup(&[], Some(&env));
    assert_eq!(users_with_files(&server), ["5011", "5012"], "BACKUP_KEY over the saved key");
    backup(&["--key-file", &file], Some(&env));
    assert_eq!(users_with_files(&server), ["5011", "5012", "5013"], "--key-file over both");
}

#[test]
fn a_key_file_others_can_read_is_refused_before_anything_is_sent() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let key = key_file(&work, "key", &server.add_user(5004));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    work.write("a.txt", b"a");
    let out = work.client(&["--server", &server.addr.to_string(), "--key-file", &key, "backup", "a.txt"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains(&format!("chmod 600 {key}")), "{}", stderr(&out));
    assert!(users_with_files(&server).is_empty());
}

#[test]
fn a_wrong_key_is_a_connection_failure_that_says_what_to_do_and_never_shows_the_key() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let line = server.add_user(5005);
    let wrong_hex = "ab".repeat(32);
    let wrong = format!("backup-key:5005:{wrong_hex}");
    let key = key_file(&work, "key", &wrong);
    let out = work.client(&["--server", &server.addr.to_string(), "--key-file", &key, "list"]);
    assert_exit(&out, 6);
    let err = stderr(&out);
    assert!(
        err.contains("does not accept your key for user 5005") && err.contains("backup-client login"),
        "{err}"
    );
    assert!(!err.contains(&wrong_hex) && !err.contains(line.rsplit(':').next().unwrap()), "{err}");
}

/// A server of an older version: what it does with a HELLO, and every
/// connection's first bytes, to show the client never fell back.
fn old_server(answer: Option<&'static [u8]>) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let log = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut head = [0u8; 6];
            let _ = stream.read_exact(&mut head);
            log.lock().unwrap().push(head.to_vec());
            if let Some(answer) = answer {
                let _ = stream.write_all(answer);
            }
        }
    });
    (addr, seen)
}

#[test]
fn against_an_old_server_a_keyed_client_fails_naming_plaintext_and_never_falls_back() {
    // A version-2 server answers the HELLO's op 1 as an unknown op; some
    // older ones just close.
    let unknown_op: &[u8] = b"\x02\xeb\x03\x00\x00\x0a\x00\x00\x00unknown op";
    for answer in [Some(unknown_op), None] {
        let (addr, seen) = old_server(answer);
        let work = Workdir::new();
        let key = key_file(&work, "key", &format!("backup-key:5006:{}", "cd".repeat(32)));
        work.write("a.txt", b"secret");
        let out = work.client(&["--server", &addr.to_string(), "--key-file", &key, "backup", "a.txt"]);
        assert_exit(&out, 6);
        let err = stderr(&out);
        assert!(err.contains("does not speak protocol version 3") && err.contains("--plaintext"), "{err}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one connection, no plaintext retry");
        assert_eq!(seen[0], [0x8e, 0x13, 0, 0, 3, 1], "a HELLO for user 5006");
    }
}
