//! `backup-client --framing block` against servers that break the block
//! framing: each answers one connection with fixed bytes and closes. The
//! client must fail with its connection or server exit code (never a
//! panic), print a bounded reason, and leave no partial restored file.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

use support::*;

/// Answers each connection with `answer` after reading its header block.
fn start_hostile(answer: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { continue };
            let mut block = [0u8; 1024];
            if sock.read_exact(&mut block).is_ok() {
                let _ = sock.write_all(&answer);
            }
        }
    });
    addr
}

fn block_of(fields: &[u8]) -> Vec<u8> {
    let mut block = vec![0u8; 1024];
    block[..fields.len()].copy_from_slice(fields);
    block
}

fn restore_from(answer: Vec<u8>) -> (std::process::Output, Workdir) {
    let addr = start_hostile(answer).to_string();
    let work = Workdir::new();
    let args = ["--framing", "block", "--server", addr.as_str(), "--user", "5"];
    let out = output_within(&work, &[&args[..], &["restore", "a.bin", "-o", "out.bin"]].concat(), 30);
    (out, work)
}

#[test]
fn garbage_header_blocks_fail_as_connection_errors_and_restore_nothing() {
    let unreadable = "answered with something this client cannot read";
    let closed = "closed the connection unexpectedly";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("every byte 0xab", vec![0xab; 1024], unreadable),
        ("a 210 whose name_len is 65535", block_of(&[1, 0xd2, 0, 0xff, 0xff, b'a']), unreadable),
        (
            "a 210 naming another file",
            block_of(&[1, 0xd2, 0, 5, 0, b'b', b'.', b'b', b'i', b'n']),
            unreadable,
        ),
        ("a 210 naming ../a.bin", block_of(&[&[1, 0xd2, 0, 8, 0][..], b"../a.bin"].concat()), unreadable),
        ("half a header block", vec![1, 0xd2, 0, 5, 0, b'a'], closed),
        ("nothing", Vec::new(), closed),
    ];
    for (what, answer, says) in cases {
        let (out, work) = restore_from(answer);
        assert_eq!(out.status.code(), Some(6), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{what}: {}", stderr(&out));
        assert!(!work.path("out.bin").exists(), "{what}: a restored file");
    }
}

#[test]
fn a_restore_size_larger_than_what_follows_leaves_no_file() {
    let mut answer = block_of(&[&[1, 0xd2, 0, 5, 0][..], b"a.bin"].concat());
    answer.extend_from_slice(&[100, 0, 0, 0]);
    answer.extend_from_slice(b"only ten b");
    let (out, work) = restore_from(answer);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(!work.path("out.bin").exists(), "a partial restored file");
}

#[test]
fn a_1003_declaring_a_4_gib_reason_shows_what_came_cut_to_255_bytes() {
    let mut answer = block_of(&[1, 0xeb, 0x03]);
    answer.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    answer.extend_from_slice(&b"no. ".repeat(1000));
    let (out, work) = restore_from(answer);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no. no."), "{err}");
    assert!(err.len() < 2000, "{} bytes of stderr", err.len());
    assert!(!work.path("out.bin").exists());
}
