//! The classic session against the real server over TCP: with a plain spec
//! client, with a client that pads like existing ones, and through a proxy
//! that fragments every byte stream.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use support::*;

const SIZES: [usize; 5] = [0, 1, 1024, 1 << 20, 64 << 20];

/// list (1002) → back up two files → list → restore the first → delete it →
/// restore it again (1001) → restore the second; checked on disk too.
fn classic_sequence(
    server: &TestServer,
    user: u32,
    size: usize,
    mut call: impl FnMut(u8, &[u8], Option<&[u8]>) -> Reply,
) {
    let first = pattern(size, user as u64);
    let second = pattern(size / 2 + 1, user as u64 + 1);
    let user_dir = server.root.join(user.to_string());

    let reply = call(LIST, b"", None);
    assert_eq!((reply.status, reply.payload.len()), (1002, 0));

    let reply = call(BACKUP, b"first.bin", Some(&first));
    assert_eq!((reply.status, reply.name.as_slice()), (212, &b"first.bin"[..]));
    let reply = call(BACKUP, b".second", Some(&second));
    assert_eq!((reply.status, reply.name.as_slice()), (212, &b".second"[..]));
    assert!(std::fs::read(user_dir.join("first.bin")).unwrap() == first, "first.bin on disk");
    assert!(std::fs::read(user_dir.join(".second")).unwrap() == second, ".second on disk");

    let reply = call(LIST, b"", None);
    assert_eq!((reply.status, reply.payload.as_slice()), (211, &b".second\nfirst.bin\n"[..]));

    let reply = call(RESTORE, b"first.bin", None);
    assert_eq!((reply.status, reply.name.as_slice()), (210, &b"first.bin"[..]));
    assert!(reply.payload == first, "first.bin restored byte for byte");

    assert_eq!(call(DELETE, b"first.bin", None).status, 212);
    assert!(!user_dir.join("first.bin").exists());
    let reply = call(RESTORE, b"first.bin", None);
    assert_eq!((reply.status, reply.name.as_slice(), reply.payload.len()), (1001, &b"first.bin"[..], 0));

    let reply = call(RESTORE, b".second", None);
    assert!(reply.status == 210 && reply.payload == second, ".second restored byte for byte");
    assert_eq!(call(DELETE, b".second", None).status, 212);
}

#[test]
fn classic_sequence_with_a_plain_client_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    for (i, size) in SIZES.into_iter().enumerate() {
        let mut client = PlainClient::new(&server, 100 + i as u32);
        classic_sequence(&server, client.user, size, |op, name, payload| {
            let reply = client.call(op, name, payload);
            assert_eq!(reply.version, 2, "our server speaks version 2");
            reply
        });
    }
}

#[test]
fn classic_sequence_with_a_padding_client_like_existing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    for (i, size) in SIZES.into_iter().enumerate() {
        let mut client = PaddingClient { addr: server.addr, user: 200 + i as u32 };
        classic_sequence(&server, client.user, size, |op, name, payload| client.call(op, name, payload));
    }
}

#[test]
fn version_1_requests_get_version_1_responses() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    let mut stream = server.connect();
    stream.write_all(&[7, 0, 0, 0, 1, LIST]).unwrap();
    let reply = read_reply(&mut stream).unwrap();
    assert_eq!((reply.version, reply.status), (1, 1002));
}

/// Forwards both directions in random pieces of 1..=max bytes with small
/// random pauses, passing each side's half-close on to the other.
fn fragmenting_proxy(target: std::net::SocketAddr, max: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for (seed, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            let server = TcpStream::connect(target).unwrap();
            for (from, to, seed) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap(), seed * 2),
                (server, client, seed * 2 + 1),
            ] {
                thread::spawn(move || forward(from, to, max, seed as u64));
            }
        }
    });
    addr
}

fn forward(mut from: TcpStream, mut to: TcpStream, max: usize, seed: u64) {
    let noise = pattern(1 << 16, seed + 1);
    let mut buf = vec![0u8; max];
    for i in 0.. {
        let r = noise[i % noise.len()] as usize;
        let want = 1 + r % max;
        match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Read);
                    return;
                }
            }
        }
        if r % 16 == 0 {
            thread::sleep(Duration::from_micros(200 + (r as u64) * 4));
        }
    }
}

#[test]
fn classic_sequence_through_a_fragmenting_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    let proxy = fragmenting_proxy(server.addr, 97);
    for (i, size) in [0, 1, 1024, 300_000].into_iter().enumerate() {
        let stream = TcpStream::connect(proxy).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut client = PlainClient { stream, user: 300 + i as u32 };
        classic_sequence(&server, client.user, size, |op, name, payload| client.call(op, name, payload));
    }
    // A padding client through the proxy: its half-close travels through it.
    let mut client = PaddingClient { addr: proxy, user: 399 };
    classic_sequence(&server, client.user, 5000, |op, name, payload| client.call(op, name, payload));
}
