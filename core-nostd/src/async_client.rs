//! The async client (feature `async`): the blocking [`Client`](crate::Client)'s
//! operations over `embedded-io-async` transports, such as embassy-net's
//! `TcpSocket`, with the same results and errors.
//!
//! It is a second shell over the same session engine
//! ([`session`](crate::session)): every decision (connection reuse, the
//! pipelining window, early refusal, name checks, status mapping, which
//! error wins) is the engine's; only the loops that move bytes are written
//! again, with `.await`. No allocator, no executor: any executor that can
//! poll a future runs it.
//!
//! ```ignore
//! let mut buf = [0u8; 1024];
//! let mut client = AsyncClient::new(connector, user_id, &mut buf)?;
//! client.backup("log.txt", data.len() as u32, &mut data).await?;
//! client.list(|name| defmt::info!("{=[u8]:a}", name)).await?;
//! ```

use embedded_io::ReadReady;
use embedded_io_async::{ErrorType, Read, Write};

use crate::client::{
    Batch, BatchError, BatchFiles, CLIENT_MIN_BUFFER_LEN, ClientError, Files, OneFile, RestoreBatch,
};
use crate::error::{ProtocolError, TransportError};
use crate::session::answer::{AnswerReader, Event, Verdict, check_echo};
use crate::session::client::{
    BackupNeed, BackupRun, ClientSession, ListSplitter, RestoreNeed, RestoreRun, outcome,
};
use crate::session::fault::Fault;
use crate::wire::{BufferTooSmall, Op, Status};

/// Opens connections to the server, asynchronously.
// Futures of this trait are not required to be `Send`: embedded executors
// run on one core, and a `Send` bound would shut out their sockets.
#[allow(async_fn_in_trait)]
pub trait AsyncConnect {
    /// An open connection. `ReadReady` lets a backup notice the server's
    /// early refusal and stop sending.
    type Conn: Read + Write + ReadReady;
    /// Opens a connection.
    async fn connect(&mut self) -> Result<Self::Conn, <Self::Conn as ErrorType>::Error>;
    /// Takes back a connection the client is done with (it disconnects, or
    /// the server closed it), before any later [`connect`](Self::connect).
    /// The default drops it. A connector whose connections hold buffers
    /// they cannot give back, such as embassy-net's `TcpSocket<'static>`,
    /// keeps it here and connects it again on the next `connect`.
    fn release(&mut self, conn: Self::Conn) {
        drop(conn);
    }
}

/// The transport error type of an async connector's connections.
pub type AsyncConnError<C> = <<C as AsyncConnect>::Conn as ErrorType>::Error;

type Kept<C> = Option<TransportError<AsyncConnError<C>>>;

/// An async client for one user.
pub struct AsyncClient<'b, C: AsyncConnect> {
    connector: C,
    conn: Option<C::Conn>,
    session: ClientSession,
    buf: &'b mut [u8],
    answer: AnswerReader,
}

/// What a response handler does with an answer's header and payload.
#[allow(async_fn_in_trait)]
trait Handler {
    async fn header(&mut self, status: Status, size: u32, name: &[u8]) -> Result<(), Fault>;
    async fn payload(&mut self, chunk: &[u8]) -> Result<(), Fault>;
}

/// For answers without a payload.
struct Ignore;

impl Handler for Ignore {
    async fn header(&mut self, _: Status, _: u32, _: &[u8]) -> Result<(), Fault> {
        Ok(())
    }
    async fn payload(&mut self, _: &[u8]) -> Result<(), Fault> {
        Ok(())
    }
}

/// Writes all of `chunk`; a write that accepts nothing is a full sink.
async fn write_all<W: Write + ?Sized>(w: &mut W, mut chunk: &[u8]) -> Result<(), TransportError<W::Error>> {
    while !chunk.is_empty() {
        match w.write(chunk).await? {
            0 => return Err(TransportError::WriteZero),
            n => chunk = chunk.get(n..).unwrap_or(&[]),
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the reader ends; returns the count read.
async fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<usize, R::Error> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match r.read(rest).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A sink's error kept for the caller, and the sink.
struct SinkHandler<'s, W: Write, F: FnOnce(u32)> {
    sink: &'s mut W,
    on_size: Option<F>,
    size: u32,
    local: Option<W::Error>,
}

impl<W: Write, F: FnOnce(u32)> Handler for SinkHandler<'_, W, F> {
    async fn header(&mut self, status: Status, size: u32, _: &[u8]) -> Result<(), Fault> {
        if status == Status::Restored {
            self.size = size;
            if let Some(f) = self.on_size.take() {
                f(size);
            }
        }
        Ok(())
    }
    async fn payload(&mut self, chunk: &[u8]) -> Result<(), Fault> {
        write_all(self.sink, chunk).await.map_err(|e| match e {
            TransportError::Io(e) => {
                self.local = Some(e);
                Fault::Local
            }
            _ => Fault::SinkFull,
        })
    }
}

struct ListHandler<'e, F: FnMut(&[u8])> {
    names: ListSplitter,
    each: &'e mut F,
}

impl<F: FnMut(&[u8])> Handler for ListHandler<'_, F> {
    async fn header(&mut self, _: Status, _: u32, _: &[u8]) -> Result<(), Fault> {
        Ok(())
    }
    async fn payload(&mut self, chunk: &[u8]) -> Result<(), Fault> {
        self.names.feed(chunk, self.each)
    }
}

/// One file of a restore batch: the 210's name is checked before the batch
/// opens anything.
struct BatchSink<'a, B: RestoreBatch> {
    batch: &'a mut B,
    index: usize,
    writer: Option<B::Writer>,
    local: Option<<B::Writer as ErrorType>::Error>,
}

impl<B: RestoreBatch> Handler for BatchSink<'_, B>
where
    B::Writer: Write,
{
    async fn header(&mut self, status: Status, size: u32, name: &[u8]) -> Result<(), Fault> {
        if status != Status::Restored {
            return Ok(());
        }
        if name != self.batch.name(self.index).as_bytes() {
            return Err(Fault::Protocol(ProtocolError::NameMismatch));
        }
        match self.batch.open(self.index, size) {
            Ok(w) => {
                self.writer = Some(w);
                Ok(())
            }
            Err(e) => {
                self.local = Some(e);
                Err(Fault::Local)
            }
        }
    }
    async fn payload(&mut self, chunk: &[u8]) -> Result<(), Fault> {
        let Some(w) = self.writer.as_mut() else { return Err(Fault::SinkFull) };
        match write_all(w, chunk).await {
            Ok(()) => Ok(()),
            Err(TransportError::Io(e)) => {
                self.local = Some(e);
                Err(Fault::Local)
            }
            Err(_) => Err(Fault::SinkFull),
        }
    }
}

impl<'b, C: AsyncConnect> AsyncClient<'b, C> {
    /// A client streaming through `buf`, which must hold at least
    /// [`CLIENT_MIN_BUFFER_LEN`] bytes; larger buffers mean fewer writes.
    pub fn new(connector: C, user_id: u32, buf: &'b mut [u8]) -> Result<Self, BufferTooSmall> {
        if buf.len() < CLIENT_MIN_BUFFER_LEN {
            return Err(BufferTooSmall);
        }
        Ok(AsyncClient {
            connector,
            conn: None,
            session: ClientSession::new(user_id),
            buf,
            answer: AnswerReader::new(),
        })
    }

    /// Sends requests with version byte `version` (at least 2) instead of 2:
    /// [`SECURE_VERSION`](crate::secure::SECURE_VERSION) when every
    /// connection the connector opens is a
    /// [`SecureStream`](crate::secure::SecureStream). The session rules stay
    /// those of version 2: a server answering 2 or higher keeps the connection.
    pub fn with_version(mut self, version: u8) -> Self {
        self.session.set_version(version);
        self
    }

    /// The user whose files this client handles.
    pub fn user_id(&self) -> u32 {
        self.session.user_id()
    }

    /// Whether a connection is held open for the next request.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The reason the server gave with its last 1003 response
    /// ([`ClientError::Server`]); empty if it gave none.
    pub fn server_reason(&self) -> &str {
        self.answer.reason()
    }

    /// Closes the held connection, if any.
    pub fn disconnect(&mut self) {
        self.session.close();
        self.release();
    }

    /// Hands the held connection, if any, back to the connector.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.connector.release(conn);
        }
    }

    /// Backs up `size` bytes read from `source` as `name`; see
    /// [`Client::backup`](crate::Client::backup).
    pub async fn backup<R: Read>(
        &mut self,
        name: &str,
        size: u32,
        source: &mut R,
    ) -> Result<(), ClientError<AsyncConnError<C>, R::Error>> {
        let mut one = OneFile { name, size, source };
        self.back_up(1, &mut one).await.map_err(|e| e.error)
    }

    /// Backs up `count` files from `batch`, pipelined; see
    /// [`Client::backup_batch`](crate::Client::backup_batch).
    pub async fn backup_batch<B: Batch>(
        &mut self,
        count: usize,
        batch: &mut B,
    ) -> Result<(), BatchError<AsyncConnError<C>, <B::Reader as ErrorType>::Error>>
    where
        B::Reader: Read,
    {
        self.back_up(count, &mut BatchFiles { batch, source: None }).await
    }

    async fn back_up<F: Files>(
        &mut self,
        count: usize,
        files: &mut F,
    ) -> Result<(), BatchError<AsyncConnError<C>, <F::Reader as ErrorType>::Error>>
    where
        F::Reader: Read,
    {
        let mut run = BackupRun::new(count, self.buf.len());
        let (mut transport, mut local) = (None, None);
        loop {
            match run.next(&mut self.session) {
                BackupNeed::Open(index) => match files.open(index) {
                    Ok((name, size)) => run.opened(&self.session, self.buf, name, size),
                    Err(e) => {
                        local.get_or_insert(e);
                        run.local_failed(&mut self.session);
                    }
                },
                BackupNeed::Fill { from, to, whole } => {
                    let window = self.buf.get_mut(from..to).unwrap_or(&mut []);
                    let read = match files.source() {
                        Some(source) if whole => read_full(source, window).await,
                        Some(source) => source.read(window).await,
                        None => Ok(0),
                    };
                    match read {
                        Ok(n) => run.filled(&mut self.session, n),
                        Err(e) => {
                            local.get_or_insert(e);
                            run.local_failed(&mut self.session);
                        }
                    }
                }
                BackupNeed::Send(len) => match self.send(len).await {
                    Ok(()) => run.sent(),
                    Err(e) => {
                        transport.get_or_insert(e);
                        run.transport_failed(&mut self.session);
                    }
                },
                BackupNeed::Poll => {
                    run.polled(matches!(self.conn.as_mut().map(|c| c.read_ready()), Some(Ok(true))));
                }
                BackupNeed::Answer(index) => {
                    let expected = files.name(index).as_bytes();
                    let answer = self.receive(Some(expected), &mut Ignore, &mut transport).await;
                    if run.answered(&mut self.session, answer) {
                        files.done(index);
                    }
                }
                BackupNeed::Finished(result) => {
                    self.follow_session();
                    return result.map_err(|(index, fault)| BatchError {
                        index,
                        error: fault.into_client(transport, local),
                    });
                }
            }
        }
    }

    /// Restores `count` files, pipelined; see
    /// [`Client::restore_batch`](crate::Client::restore_batch).
    pub async fn restore_batch<B: RestoreBatch>(
        &mut self,
        count: usize,
        batch: &mut B,
    ) -> Result<(), BatchError<AsyncConnError<C>, <B::Writer as ErrorType>::Error>>
    where
        B::Writer: Write,
    {
        let mut run = RestoreRun::new(count);
        let (mut transport, mut local) = (None, None);
        loop {
            match run.next(&self.session) {
                RestoreNeed::Request(index) => {
                    match self.request(Op::Restore, batch.name(index), &mut transport).await {
                        Ok(()) => run.requested(),
                        Err(fault) => run.failed(&mut self.session, fault),
                    }
                }
                RestoreNeed::Answer(index) => {
                    let mut sink = BatchSink { batch: &mut *batch, index, writer: None, local: None };
                    let received = self.receive(None, &mut sink, &mut transport).await;
                    let BatchSink { writer, local: kept, .. } = sink;
                    if kept.is_some() {
                        local = kept;
                    }
                    let echoed = self
                        .answer
                        .header()
                        .is_none_or(|header| check_echo(&header, batch.name(index).as_bytes()).is_ok());
                    if run.received(&mut self.session, received, echoed, writer.is_some()) {
                        if let Some(w) = writer {
                            match batch.finish(index, w) {
                                Ok(()) => run.answered(&mut self.session, Ok(Status::Restored)),
                                Err(e) => {
                                    local = Some(e);
                                    run.finish_failed();
                                }
                            }
                        }
                    }
                }
                RestoreNeed::Finished(result) => {
                    self.follow_session();
                    return result.map_err(|(index, fault)| BatchError {
                        index,
                        error: fault.into_client(transport, local),
                    });
                }
            }
        }
    }

    /// Restores `name` into `sink`; see [`Client::restore`](crate::Client::restore).
    pub async fn restore<W: Write>(
        &mut self,
        name: &str,
        sink: &mut W,
        on_size: impl FnOnce(u32),
    ) -> Result<u32, ClientError<AsyncConnError<C>, W::Error>> {
        let mut transport = None;
        let mut handler = SinkHandler { sink, on_size: Some(on_size), size: 0, local: None };
        let mut result = self.request(Op::Restore, name, &mut transport).await;
        if result.is_ok() {
            let received = self.receive(Some(name.as_bytes()), &mut handler, &mut transport).await;
            result = received.and_then(|status| outcome(Op::Restore, status));
        }
        let size = handler.size;
        result.map(|()| size).map_err(|fault| fault.into_client(transport, handler.local))
    }

    /// Deletes `name`.
    pub async fn delete(&mut self, name: &str) -> Result<(), ClientError<AsyncConnError<C>>> {
        let mut transport = None;
        let mut result = self.request(Op::Delete, name, &mut transport).await;
        if result.is_ok() {
            let received = self.receive(Some(name.as_bytes()), &mut Ignore, &mut transport).await;
            result = received.and_then(|status| outcome(Op::Delete, status));
        }
        result.map_err(|fault| fault.into_client(transport, None))
    }

    /// Lists the user's names, calling `each` once per name in the server's
    /// order; see [`Client::list`](crate::Client::list).
    pub async fn list(
        &mut self,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, ClientError<AsyncConnError<C>>> {
        let mut transport = None;
        let mut result = self.request(Op::List, "", &mut transport).await.map(|()| 0);
        if result.is_ok() {
            let mut handler = ListHandler { names: ListSplitter::new(), each: &mut each };
            let received = self.receive(None, &mut handler, &mut transport).await;
            result = received.and_then(|status| {
                let count = handler.names.finish(handler.each);
                outcome(Op::List, status).map(|()| count)
            });
        }
        result.map_err(|fault| fault.into_client(transport, None))
    }

    async fn connect(&mut self) -> Result<(), TransportError<AsyncConnError<C>>> {
        self.release();
        self.conn = Some(self.connector.connect().await?);
        self.session.connected();
        Ok(())
    }

    /// Writes `buf[..len]` whole, connecting first if the session has no connection.
    async fn send(&mut self, len: usize) -> Result<(), TransportError<AsyncConnError<C>>> {
        if self.session.needs_connection() {
            self.connect().await?;
        }
        let conn = self.conn.as_mut().ok_or(TransportError::Closed)?;
        write_all(conn, self.buf.get(..len).unwrap_or(&[])).await
    }

    fn follow_session(&mut self) {
        if self.session.needs_connection() {
            self.release();
        }
    }

    async fn request(&mut self, op: Op, name: &str, transport: &mut Kept<C>) -> Result<(), Fault> {
        let len = self.session.emit(self.buf, op, name, 0)?;
        self.send(len).await.map_err(|e| {
            self.disconnect();
            transport.get_or_insert(e);
            Fault::Transport
        })
    }

    /// Reads one answer into `handler`; the blocking client's `receive`, awaited.
    async fn receive<H: Handler>(
        &mut self,
        expected: Option<&[u8]>,
        handler: &mut H,
        transport: &mut Kept<C>,
    ) -> Result<Status, Fault> {
        let verdict = match self.conn.as_mut() {
            Some(conn) => receive(conn, self.buf, &mut self.answer, expected, handler, transport).await,
            None => Err(Fault::Closed),
        };
        self.session.answered(&verdict);
        self.follow_session();
        verdict.map(|v| v.status)
    }
}

/// The reading loop: exactly the bytes the answer still needs, fed to the engine.
async fn receive<T: Read, H: Handler>(
    conn: &mut T,
    buf: &mut [u8],
    answer: &mut AnswerReader,
    expected: Option<&[u8]>,
    handler: &mut H,
    transport: &mut Option<TransportError<T::Error>>,
) -> Result<Verdict, Fault> {
    answer.start();
    loop {
        let want = answer.needed().min(buf.len());
        let Some(window) = buf.get_mut(..want).filter(|w| !w.is_empty()) else { break };
        let n = match conn.read(window).await {
            Ok(n) => n,
            Err(e) => {
                transport.get_or_insert(TransportError::Io(e));
                return Err(Fault::Transport);
            }
        };
        if n == 0 {
            answer.closed()?;
            break;
        }
        match answer.feed(buf.get(..n).unwrap_or(&[]), expected)? {
            Some(Event::Header { status, size, name }) => handler.header(status, size, name).await?,
            Some(Event::Payload(chunk)) => handler.payload(chunk).await?,
            None => {}
        }
    }
    answer.verdict(expected)
}
