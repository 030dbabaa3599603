//! The async client (feature `async` of backup-core) on tokio, through
//! `embedded-io-adapters`, against the real server: the classic sequence,
//! pipelined batches and an early refusal, with the blocking client's
//! results and errors.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use backup_core::async_client::{AsyncClient, AsyncConnect};
use backup_core::client::{Batch, BatchFile, RestoreBatch};
use backup_core::{ClientError, wire::MAX_NAME_LEN};
use embedded_io_adapters::tokio_1::FromTokio;
use support::*;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

/// A tokio socket as an `embedded-io-async` connection. The adapter gives
/// `Read` and `Write`; `ReadReady` (the early-refusal check) is a peek that
/// does not wait.
struct Conn(FromTokio<TcpStream>);

impl embedded_io_async::ErrorType for Conn {
    type Error = std::io::Error;
}

impl embedded_io_async::Read for Conn {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf).await
    }
}

impl embedded_io_async::Write for Conn {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush().await
    }
}

impl embedded_io::ReadReady for Conn {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(self.0.inner_mut()).poll_peek(&mut cx, &mut buf) {
            Poll::Ready(Ok(_)) => Ok(true),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(false),
        }
    }
}

struct Tcp(std::net::SocketAddr);

impl AsyncConnect for Tcp {
    type Conn = Conn;
    async fn connect(&mut self) -> Result<Conn, std::io::Error> {
        Ok(Conn(FromTokio::new(TcpStream::connect(self.0).await?)))
    }
}

/// A byte slice as an async source.
struct Bytes<'a>(&'a [u8]);

impl embedded_io_async::ErrorType for Bytes<'_> {
    type Error = Infallible;
}

impl embedded_io_async::Read for Bytes<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// A growing vector as an async sink.
#[derive(Default)]
struct Sink(Vec<u8>);

impl embedded_io_async::ErrorType for Sink {
    type Error = Infallible;
}

impl embedded_io_async::Write for Sink {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn the_classic_sequence_runs_on_the_async_client_as_on_the_blocking_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    runtime().block_on(async {
        let mut buf = [0u8; 4096];
        let mut client = AsyncClient::new(Tcp(server.addr), 7, &mut buf).unwrap();
        assert!(matches!(client.list(|_| {}).await, Err(ClientError::NoFiles)));
        let first = pattern(1 << 20, 1);
        let second = pattern(1, 2);
        client.backup("first.bin", first.len() as u32, &mut Bytes(&first)).await.unwrap();
        client.backup(".second", 1, &mut Bytes(&second)).await.unwrap();
        assert!(client.is_connected(), "a version-2 server keeps the connection");
        let mut names = Vec::new();
        assert_eq!(client.list(|name| names.push(name.to_vec())).await.unwrap(), 2);
        assert_eq!(names, [b".second".to_vec(), b"first.bin".to_vec()]);
        let mut sink = Sink::default();
        let mut heard = 0;
        let size = client.restore("first.bin", &mut sink, |s| heard = s).await.unwrap();
        assert_eq!((size, heard), (1 << 20, 1 << 20));
        assert!(sink.0 == first, "restored byte for byte");
        client.delete("first.bin").await.unwrap();
        assert!(matches!(
            client.restore("first.bin", &mut Sink::default(), |_| {}).await,
            Err(ClientError::NotFound)
        ));
        assert!(matches!(client.delete("first.bin").await, Err(ClientError::NotFound)));
        assert!(matches!(client.delete("a/b").await, Err(ClientError::InvalidName(_))));
    });
    assert!(std::fs::read(server.root.join("7/.second")).unwrap() == [pattern(1, 2)[0]]);
}

struct Files(Vec<(String, Vec<u8>)>, Vec<usize>);

impl Batch for Files {
    type Reader = Bytes<'static>;
    fn file(&mut self, index: usize) -> BatchFile<'_, Self::Reader> {
        let (name, data) = &self.0[index];
        // The test's files outlive the batch run.
        let data: &'static [u8] = Box::leak(data.clone().into_boxed_slice());
        Ok((name.as_str(), data.len() as u32, Bytes(data)))
    }
    fn name(&mut self, index: usize) -> &str {
        &self.0[index].0
    }
    fn done(&mut self, index: usize) {
        self.1.push(index);
    }
}

struct Restores(Vec<String>, Vec<Vec<u8>>);

impl RestoreBatch for Restores {
    type Writer = Sink;
    fn name(&mut self, index: usize) -> &str {
        &self.0[index]
    }
    fn open(&mut self, _: usize, _: u32) -> Result<Sink, Infallible> {
        Ok(Sink::default())
    }
    fn finish(&mut self, _: usize, writer: Sink) -> Result<(), Infallible> {
        self.1.push(writer.0);
        Ok(())
    }
}

#[test]
fn pipelined_batches_back_up_and_restore_every_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {});
    let files: Vec<_> = (0..200).map(|i| (format!("f{i:03}"), pattern(i * 37, i as u64))).collect();
    runtime().block_on(async {
        let mut buf = [0u8; 2048];
        let mut client = AsyncClient::new(Tcp(server.addr), 9, &mut buf).unwrap();
        let mut batch = Files(files.clone(), Vec::new());
        client.backup_batch(files.len(), &mut batch).await.unwrap();
        assert_eq!(batch.1, (0..200).collect::<Vec<_>>(), "each 212 heard in order");
        let mut restores = Restores(files.iter().map(|f| f.0.clone()).collect(), Vec::new());
        client.restore_batch(files.len(), &mut restores).await.unwrap();
        assert!(restores.1 == files.iter().map(|f| f.1.clone()).collect::<Vec<_>>());
        let mut missing = Restores(vec!["f000".into(), "nope".into(), "f001".into()], Vec::new());
        let stopped = client.restore_batch(3, &mut missing).await.unwrap_err();
        assert!(matches!((stopped.index, stopped.error), (1, ClientError::NotFound)));
    });
    for (name, data) in &files {
        assert!(&std::fs::read(server.root.join("9").join(name)).unwrap() == data, "{name} on disk");
    }
}

#[test]
fn an_early_refusal_stops_the_upload_and_gives_the_servers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| c.max_file_size = 1000);
    runtime().block_on(async {
        let mut buf = [0u8; 1024];
        let mut client = AsyncClient::new(Tcp(server.addr), 11, &mut buf).unwrap();
        let big = pattern(8 << 20, 3);
        let refused = client.backup("big.bin", big.len() as u32, &mut Bytes(&big)).await;
        assert!(matches!(refused, Err(ClientError::Server)), "{refused:?}");
        assert_eq!(client.server_reason(), backup_core::dispatch::REASON_TOO_LARGE);
        // The next request works on a new connection.
        client.backup("small.bin", 3, &mut Bytes(b"abc")).await.unwrap();
        let long = "n".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(client.backup(&long, 0, &mut Bytes(b"")).await, Err(ClientError::InvalidName(_))));
    });
    assert!(!server.root.join("11/big.bin").exists(), "nothing of the refused file is stored");
    assert_eq!(std::fs::read(server.root.join("11/small.bin")).unwrap(), b"abc");
}

/// A connector that keeps the connections handed back to it, as one whose
/// connections hold `'static` buffers must (embassy-net's `TcpSocket`), and
/// notes at each connect how many it holds.
struct Keeping {
    addr: std::net::SocketAddr,
    kept: Vec<Conn>,
    held_at_connect: std::rc::Rc<std::cell::RefCell<Vec<usize>>>,
}

impl AsyncConnect for Keeping {
    type Conn = Conn;
    async fn connect(&mut self) -> Result<Conn, std::io::Error> {
        self.held_at_connect.borrow_mut().push(self.kept.len());
        Ok(Conn(FromTokio::new(TcpStream::connect(self.addr).await?)))
    }
    fn release(&mut self, conn: Conn) {
        self.kept.push(conn);
    }
}

#[test]
fn a_finished_connection_goes_back_to_its_connector_before_the_next_connect() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| c.max_file_size = 1000);
    let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    runtime().block_on(async {
        let mut buf = [0u8; 1024];
        let connector = Keeping { addr: server.addr, kept: Vec::new(), held_at_connect: held.clone() };
        let mut client = AsyncClient::new(connector, 12, &mut buf).unwrap();
        client.backup("a.bin", 3, &mut Bytes(b"abc")).await.unwrap();
        // The server closes after refusing: the client hands that one back.
        let big = pattern(8 << 20, 4);
        assert!(client.backup("big.bin", big.len() as u32, &mut Bytes(&big)).await.is_err());
        client.backup("b.bin", 3, &mut Bytes(b"def")).await.unwrap();
        client.disconnect();
        assert!(!client.is_connected());
        assert_eq!(client.list(|_| {}).await.unwrap(), 2);
    });
    assert_eq!(*held.borrow(), [0, 1, 2], "each earlier connection was handed back first");
}
