//! A version-3 client built on `snow`, an independent Noise
//! implementation, written from PROTOCOL.md: the server is tested against
//! someone else's reading of the handshake, not its own.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::Reply;

pub const PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// What a server answers a message 1 that does not decrypt, wrong key or
/// unknown user alike (PROTOCOL.md).
pub const AUTH_FAILED: &[u8] = b"\x03\xeb\x03\x00\x00\x15\x00\x00\x00authentication failed";
pub const TOO_MANY: &str = "too many failed handshakes from your address; try again in a minute";
/// The `max_record` this client announces.
pub const CLIENT_MAX_RECORD: u16 = 65535;

pub fn hello(user: u32) -> [u8; 6] {
    let id = user.to_le_bytes();
    [id[0], id[1], id[2], id[3], 3, 1]
}

pub fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// HELLO and framed message 1 for `user` with `key`, and the handshake
/// waiting for message 2.
pub fn first_flight(user: u32, key: &[u8; 32]) -> (Vec<u8>, snow::HandshakeState) {
    let mut prologue = b"backup-v3".to_vec();
    prologue.extend_from_slice(&hello(user));
    let mut noise = snow::Builder::new(PARAMS.parse().unwrap())
        .psk(0, key)
        .unwrap()
        .prologue(&prologue)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut msg1 = [0u8; 128];
    let n = noise.write_message(&CLIENT_MAX_RECORD.to_le_bytes(), &mut msg1).unwrap();
    let mut flight = hello(user).to_vec();
    flight.extend_from_slice(&framed(&msg1[..n]));
    (flight, noise)
}

/// Everything the peer sends until it closes (or resets: a server that
/// closes with our bytes unread resets the connection).
pub fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    if let Err(e) = stream.read_to_end(&mut all) {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    all
}

/// Whether the peer has closed the connection (without consuming anything).
pub fn closed(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let peeked = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false).unwrap();
    match peeked {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A version-3 session of `snow` over TCP.
pub struct Session {
    pub stream: TcpStream,
    pub noise: snow::TransportState,
    pub user: u32,
    /// The largest record ciphertext the server accepts.
    pub server_max_record: usize,
    /// Opened plaintext not yet consumed.
    pub pending: Vec<u8>,
}

impl Session {
    /// Opens a session, or returns every byte the server sent before it
    /// closed instead.
    pub fn open(addr: SocketAddr, user: u32, key: &[u8; 32]) -> Result<Session, Vec<u8>> {
        let stream = TcpStream::connect(addr).unwrap();
        Session::open_on(stream, user, key)
    }

    pub fn open_on(mut stream: TcpStream, user: u32, key: &[u8; 32]) -> Result<Session, Vec<u8>> {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (flight, mut noise) = first_flight(user, key);
        stream.write_all(&flight).unwrap();
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return Err(len.to_vec());
        }
        if len != [50, 0] {
            let mut all = len.to_vec();
            all.extend(read_all(&mut stream));
            return Err(all);
        }
        let mut msg2 = [0u8; 50];
        stream.read_exact(&mut msg2).unwrap();
        let mut payload = [0u8; 16];
        let p = noise.read_message(&msg2, &mut payload).unwrap();
        assert_eq!(p, 2);
        let server_max_record = u16::from_le_bytes([payload[0], payload[1]]) as usize;
        let noise = noise.into_transport_mode().unwrap();
        Ok(Session { stream, noise, user, server_max_record, pending: Vec::new() })
    }

    /// `plain` sealed in records the server accepts, framed.
    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in plain.chunks(self.server_max_record - 16) {
            let mut ct = vec![0u8; chunk.len() + 16];
            let n = self.noise.write_message(chunk, &mut ct).unwrap();
            out.extend_from_slice(&framed(&ct[..n]));
        }
        out
    }

    pub fn send(&mut self, plain: &[u8]) {
        let records = self.seal(plain);
        self.stream.write_all(&records).unwrap();
    }

    /// The next `n` bytes of plaintext, or `None` if the server closed.
    pub fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.pending.len() < n {
            let mut len = [0u8; 2];
            self.stream.read_exact(&mut len).ok()?;
            let mut ct = vec![0u8; u16::from_le_bytes(len) as usize];
            self.stream.read_exact(&mut ct).ok()?;
            let mut plain = vec![0u8; ct.len()];
            let m = self.noise.read_message(&ct, &mut plain).expect("the server's records open");
            self.pending.extend_from_slice(&plain[..m]);
        }
        Some(self.pending.drain(..n).collect())
    }

    pub fn reply(&mut self) -> Option<Reply> {
        let head = self.take(5)?;
        let name = self.take(u16::from_le_bytes([head[3], head[4]]) as usize)?;
        let size = self.take(4)?;
        let payload = self.take(u32::from_le_bytes(size.try_into().unwrap()) as usize)?;
        Some(Reply { version: head[0], status: u16::from_le_bytes([head[1], head[2]]), name, payload })
    }

    pub fn call_as(&mut self, user: u32, op: u8, name: &[u8], payload: Option<&[u8]>) -> Reply {
        self.send(&request(user, op, name, payload));
        self.reply().expect("a reply")
    }

    pub fn call(&mut self, op: u8, name: &[u8], payload: Option<&[u8]>) -> Reply {
        self.call_as(self.user, op, name, payload)
    }
}

/// A version-3 request (the version-1 layout, version byte 3).
pub fn request(user: u32, op: u8, name: &[u8], payload: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = super::request(user, op, name, payload);
    bytes[4] = 3;
    bytes
}
