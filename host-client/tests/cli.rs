//! The `backup-client` binary against the real `backup-server` (in-process on
//! an ephemeral port) and against a test double of a version-1 server.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

mod support;

use support::*;

#[test]
fn every_subcommand_against_the_real_server_with_files_up_to_64_mib() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let addr = server.addr.to_string();
    let s = ["--server", addr.as_str()];

    let out = work.client(&["whoami"]);
    assert_exit(&out, 0);
    let id = stdout(&out).trim().parse::<u32>().unwrap();
    assert!(id != 0);
    assert!(stderr(&out).contains(&format!("your user id is {id}; keep it")));
    let again = work.client(&["whoami"]);
    assert_eq!(stdout(&again).trim(), id.to_string());
    assert!(stderr(&again).is_empty(), "the id is announced only once");

    let out = work.client(&[&s[..], &["list"]].concat());
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("no files stored"), "{}", stderr(&out));

    back_up_list_and_restore_files_up_to_64_mib(&work, &s);

    work.write("src/long-local-name.txt", b"renamed");
    assert_exit(&work.client(&[&s[..], &["backup", "src/long-local-name.txt", "--as", "short"]].concat()), 0);
    assert_exit(&work.client(&[&s[..], &["restore", "short"]].concat()), 0);
    assert_eq!(std::fs::read(work.path("short")).unwrap(), b"renamed");

    assert_exit(&work.client(&[&s[..], &["delete", "short", "file-0.bin"]].concat()), 0);
    let out = work.client(&[&s[..], &["list"]].concat());
    assert!(!stdout(&out).contains("short") && !stdout(&out).contains("file-0.bin"));
}

#[test]
fn run_session_with_server_info_and_backup_info() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    work.write("server.info", format!("{} {}\n", server.addr.ip(), server.addr.port()).as_bytes());
    work.write("docs/a.txt", b"first file");
    work.write("docs/b.bin", &pattern(300_000, 7));
    work.write("docs/backup.info", b"# what to back up\na.txt\n\nb.bin\n");
    let out = work.client(&["--user", "77", "run", "--info", "docs/backup.info"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for expected in [
        "[1/7] list: no files yet",
        "[2/7] back up",
        "[4/7] list: 2 files: a.txt, b.bin",
        "[5/7] restore a.txt as tmp: 10 bytes",
        "[6/7] delete a.txt: deleted",
        "[7/7] restore a.txt again: not found, as expected",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(std::fs::read(work.path("tmp")).unwrap(), b"first file");
}

/// The legacy double's files: (user, name) to contents.
type LegacyFiles = Mutex<HashMap<(u32, String), Vec<u8>>>;

/// A version-1 server as existing ones behave: one request per connection,
/// responses padded with zeros to 1024-byte blocks, a NUL after the list.
fn legacy_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files: Arc<LegacyFiles> = Arc::default();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let files = files.clone();
            thread::spawn(move || legacy_serve(stream.unwrap(), &files));
        }
    });
    addr
}

fn legacy_serve(mut s: TcpStream, files: &LegacyFiles) {
    let mut head = [0u8; 6];
    s.read_exact(&mut head).unwrap();
    let user = u32::from_le_bytes(head[..4].try_into().unwrap());
    let op = head[5];
    let mut name = String::new();
    if op != 202 {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut raw = vec![0u8; u16::from_le_bytes(len) as usize];
        s.read_exact(&mut raw).unwrap();
        name = String::from_utf8(raw).unwrap();
    }
    let mut files = files.lock().unwrap();
    let (status, payload): (u16, Vec<u8>) = match op {
        100 => {
            let mut size = [0u8; 4];
            s.read_exact(&mut size).unwrap();
            let mut data = vec![0u8; u32::from_le_bytes(size) as usize];
            s.read_exact(&mut data).unwrap();
            files.insert((user, name.clone()), data);
            (212, vec![])
        }
        200 => match files.get(&(user, name.clone())) {
            Some(data) => (210, data.clone()),
            None => (1001, vec![]),
        },
        201 => match files.remove(&(user, name.clone())) {
            Some(_) => (212, vec![]),
            None => (1001, vec![]),
        },
        _ => {
            let mut names: Vec<&String> = files.keys().filter(|(u, _)| *u == user).map(|(_, n)| n).collect();
            names.sort();
            if names.is_empty() {
                (1002, vec![])
            } else {
                let mut list: Vec<u8> = names.iter().flat_map(|n| format!("{n}\n").into_bytes()).collect();
                list.push(0);
                (211, list)
            }
        }
    };
    let name = if op == 202 { String::new() } else { name };
    let mut out = vec![1u8];
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out.resize(out.len().div_ceil(1024) * 1024, 0);
    let _ = s.write_all(&out);
}

#[test]
fn run_session_against_a_version_1_server_that_pads_and_closes() {
    let addr = legacy_server();
    let work = Workdir::new();
    work.write("server.info", format!("{addr}\n").as_bytes());
    work.write("one.txt", b"legacy one");
    work.write("two.bin", &pattern(5000, 3));
    work.write("backup.info", b"one.txt\ntwo.bin\n");
    let out = work.client(&["--user", "5", "run"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("[4/7] list: 2 files: one.txt, two.bin"), "{text}");
    assert!(text.contains("[7/7] restore one.txt again: not found, as expected"), "{text}");
    assert_eq!(std::fs::read(work.path("tmp")).unwrap(), b"legacy one");
}

#[test]
fn several_files_at_once_work_with_a_version_1_server_one_connection_each() {
    let addr = legacy_server();
    let work = Workdir::new();
    let names = ["a.txt", "b.txt", "c.bin"];
    for (i, name) in names.iter().enumerate() {
        work.write(name, &pattern(3000 + i, i as u64));
    }
    let s = ["--server", &addr.to_string(), "--user", "9"].map(String::from);
    let mut args: Vec<&str> = s.iter().map(String::as_str).collect();
    args.push("backup");
    args.extend(names);
    let out = work.client(&args);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 3, "a line per file: {}", stdout(&out));
    std::fs::create_dir(work.path("back")).unwrap();
    let mut args: Vec<&str> = s.iter().map(String::as_str).collect();
    args.extend(["restore", "-o", "back"]);
    args.extend(names);
    assert_exit(&work.client(&args), 0);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(std::fs::read(work.path(&format!("back/{name}"))).unwrap(), pattern(3000 + i, i as u64));
    }
}

#[test]
fn server_down_is_a_connection_failure_that_says_what_to_check() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let work = Workdir::new();
    let out = work.client(&["--server", &format!("127.0.0.1:{port}"), "--user", "1", "list"]);
    assert_exit(&out, 6);
    assert!(stderr(&out).contains("is backup-server running there?"), "{}", stderr(&out));
}

#[test]
fn a_malformed_server_info_is_quoted_with_the_expected_form() {
    let work = Workdir::new();
    work.write("server.info", b"localhost-without-port\n");
    let out = work.client(&["--user", "1", "list"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("\"localhost-without-port\"") && err.contains("IP:port or IP port"), "{err}");
}

#[test]
fn a_missing_file_to_back_up_is_reported_before_anything_is_sent() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    work.write("here.txt", b"x");
    let addr = server.addr.to_string();
    let out = work.client(&["--server", &addr, "--user", "2", "backup", "here.txt", "missing.txt"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("missing.txt"), "{}", stderr(&out));
    let list = work.client(&["--server", &addr, "--user", "2", "list"]);
    assert_exit(&list, 4);
}

#[test]
fn restoring_an_unknown_name_exits_3_and_leaves_no_file() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let out = work.client(&["--server", &server.addr.to_string(), "--user", "3", "restore", "ghost"]);
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("no such file"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(work.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| n == "config"), "no file, temporary or not, left behind: {left:?}");
}

#[test]
fn a_batch_restore_keeps_the_files_before_an_unknown_name_and_refuses_duplicates() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let addr = server.addr.to_string();
    let s = ["--server", addr.as_str(), "--user", "5"];
    let big = pattern(20 << 20, 5);
    let a = work.write("a.bin", &big).display().to_string();
    let b = work.write("b.txt", b"bee").display().to_string();
    let c = work.write("c.txt", b"sea").display().to_string();
    assert_exit(&work.client(&[&s[..], &["backup", &a, &b, &c]].concat()), 0);
    std::fs::create_dir(work.path("out")).unwrap();
    let twice = work.client(&[&s[..], &["restore", "-o", "out", "a.bin", "b.txt", "a.bin"]].concat());
    assert_exit(&twice, 2);
    assert!(stderr(&twice).contains("a.bin is named twice"), "{}", stderr(&twice));
    let out = work.client(&[&s[..], &["restore", "-o", "out", "a.bin", "b.txt", "ghost", "c.txt"]].concat());
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("ghost") && stderr(&out).contains("2 of 4"), "{}", stderr(&out));
    assert!(std::fs::read(work.path("out/a.bin")).unwrap() == big, "a.bin restored byte for byte");
    assert_eq!(std::fs::read(work.path("out/b.txt")).unwrap(), b"bee");
    let left: Vec<_> = std::fs::read_dir(work.path("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "c.txt not restored, no temporary file left behind: {left:?}");

    // The same without syncing, for comparisons with tools that do not sync.
    std::fs::create_dir(work.path("fast")).unwrap();
    let fast = ["restore", "--unsafe-no-fsync", "-o", "fast", "a.bin", "b.txt", "c.txt"];
    assert_exit(&work.client(&[&s[..], &fast].concat()), 0);
    assert!(std::fs::read(work.path("fast/a.bin")).unwrap() == big);
    assert_eq!(std::fs::read(work.path("fast/c.txt")).unwrap(), b"sea");
}

#[test]
fn restore_refuses_to_overwrite_without_force_and_replaces_with_it() {
    let server = RealServer::start(|_| {});
    let work = Workdir::new();
    let addr = server.addr.to_string();
    let s = ["--server", addr.as_str(), "--user", "4"];
    work.write("doc.txt", b"server copy");
    assert_exit(&work.client(&[&s[..], &["backup", "doc.txt"]].concat()), 0);
    std::fs::write(work.path("doc.txt"), b"local edits").unwrap();
    let out = work.client(&[&s[..], &["restore", "doc.txt"]].concat());
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(work.path("doc.txt")).unwrap(), b"local edits", "untouched");
    assert_exit(&work.client(&[&s[..], &["restore", "doc.txt", "--force"]].concat()), 0);
    assert_eq!(std::fs::read(work.path("doc.txt")).unwrap(), b"server copy");
}

#[test]
fn a_refused_upload_reports_the_server_reason_with_exit_5() {
    let server = RealServer::start(|c| c.max_file_size = 1000);
    let work = Workdir::new();
    work.write("big.bin", &pattern(5 << 20, 1));
    let out = work.client(&["--server", &server.addr.to_string(), "--user", "6", "backup", "big.bin"]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains("file exceeds the server's size limit"), "{}", stderr(&out));
}

#[test]
fn invalid_names_are_refused_locally() {
    let work = Workdir::new();
    let out = work.client(&["--user", "1", "restore", "../etc/passwd"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("name contains '/'"), "{}", stderr(&out));
    let out = work.client(&["--user", "1", "delete", ".."]);
    assert_exit(&out, 1);
}

#[test]
fn help_has_examples_for_every_subcommand() {
    let work = Workdir::new();
    for sub in ["backup", "restore", "delete", "list", "run"] {
        let out = work.client(&["help", sub]);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("Example"), "{sub} --help shows examples");
    }
}

#[test]
fn completions_and_the_manual_page_come_from_the_binary() {
    let work = Workdir::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = work.client(&["completions", shell]);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("backup-client"), "completions {shell}");
    }
    let man = work.client(&["man"]);
    assert_exit(&man, 0);
    assert!(stdout(&man).contains(".TH backup-client"), "{}", stdout(&man));
}
