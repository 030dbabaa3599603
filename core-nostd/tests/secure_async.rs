//! The async secure stream (feature `async`): the async client's classic
//! sequence in a version-3 session against the blocking server side, over
//! the in-memory duplex (its blocking calls wrapped as futures that are
//! ready at once, polled by a minimal executor).
#![cfg(feature = "async")]

mod support;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::thread;

use backup_core::async_client::{AsyncClient, AsyncConnect};
use backup_core::secure::{
    AsyncSecureStream, SECURE_VERSION, SecureError, client_handshake_async, server_handshake,
    server_handshake_async,
};
use backup_core::{ClientError, Config, Dispatcher, Outcome, RamStore, SessionEnd};
use embedded_io::ReadReady;
use embedded_io_async::{ErrorType, Read, Write};
use rand_core::{CryptoRng, RngCore};
use support::{DuplexEnd, Hangup, duplex};

const USER: u32 = 7;
const PSK: [u8; 32] = [0x42; 32];

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.iter_mut().for_each(|d| *d = self.next_u64() as u8);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}

/// The duplex end behind the async traits.
struct Async(DuplexEnd);

impl ErrorType for Async {
    type Error = Hangup;
}

impl Read for Async {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Hangup> {
        embedded_io::Read::read(&mut self.0, buf)
    }
}

impl Write for Async {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Hangup> {
        embedded_io::Write::write(&mut self.0, buf)
    }
    async fn flush(&mut self) -> Result<(), Hangup> {
        Ok(())
    }
}

impl ReadReady for Async {
    fn read_ready(&mut self) -> Result<bool, Hangup> {
        self.0.read_ready()
    }
}

type Secure = AsyncSecureStream<Async, Vec<u8>>;

struct Once(Option<Secure>);

impl AsyncConnect for Once {
    type Conn = Secure;
    async fn connect(&mut self) -> Result<Secure, SecureError<Hangup>> {
        self.0.take().ok_or(SecureError::Io(Hangup))
    }
}

/// A restore sink.
struct Sink(Vec<u8>);

impl ErrorType for Sink {
    type Error = std::convert::Infallible;
}

impl Write for Sink {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[test]
fn the_async_client_runs_the_classic_sequence_in_a_secure_session() {
    let (client_end, mut server_end) = duplex(997, 11);
    let server = thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || {
            let stream = server_handshake(
                &mut server_end,
                |u| (u == USER).then_some(PSK),
                &mut TestRng(5),
                vec![0u8; 2050],
                vec![0u8; 2048],
            )
            .unwrap();
            let mut stream = stream;
            let mut store = Box::new(RamStore::<8, 65536>::new());
            let mut buf = vec![0u8; 4096];
            let config = Config { version: SECURE_VERSION, ..Config::default() };
            let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, config).unwrap();
            dispatcher.serve(&mut stream, &mut |_: &Outcome<'_>| {})
        })
        .unwrap();

    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 13) as u8).collect();
    block_on(async {
        let mut rng = TestRng(6);
        let stream =
            client_handshake_async(Async(client_end), USER, &PSK, &mut rng, vec![0u8; 1026], vec![0u8; 1024])
                .await
                .unwrap();
        let mut buf = vec![0u8; 4096];
        let mut client =
            AsyncClient::new(Once(Some(stream)), USER, &mut buf).unwrap().with_version(SECURE_VERSION);
        assert_eq!(client.list(|_| {}).await, Err(ClientError::NoFiles));
        client.backup("a.bin", data.len() as u32, &mut &data[..]).await.unwrap();
        let mut names = Vec::new();
        assert_eq!(client.list(|n| names.push(n.to_vec())).await, Ok(1));
        assert_eq!(names, [b"a.bin".to_vec()]);
        let mut sink = Sink(Vec::new());
        client.restore("a.bin", &mut sink, |_| {}).await.unwrap();
        assert!(sink.0 == data, "restored whole");
        client.delete("a.bin").await.unwrap();
        assert_eq!(client.delete("a.bin").await, Err(ClientError::NotFound));
    });
    assert!(matches!(server.join().unwrap(), SessionEnd::Closed));
}

#[test]
fn the_async_server_handshake_refuses_a_wrong_key_with_the_same_bytes() {
    let (client_end, server_end) = duplex(5, 12);
    let client = thread::spawn(move || {
        let mut end = client_end;
        let r = backup_core::secure::client_handshake(
            &mut end,
            USER,
            &[0x01; 32],
            &mut TestRng(8),
            vec![0u8; 1026],
            vec![0u8; 1024],
        );
        matches!(
            r,
            Err(SecureError::Handshake(backup_core::secure::HandshakeError::Refused {
                version: 3,
                status: 1003,
                reason_len: 21
            }))
        )
    });
    let result = block_on(server_handshake_async(
        Async(server_end),
        None,
        |u| (u == USER).then_some(PSK),
        &mut TestRng(9),
        vec![0u8; 1026],
        vec![0u8; 1024],
    ));
    assert!(matches!(
        result.err(),
        Some(SecureError::Handshake(backup_core::secure::HandshakeError::AuthenticationFailed))
    ));
    assert!(client.join().unwrap(), "the client read the refusal");
}
