//! The blocking client: back up, restore, delete and list over any
//! `embedded-io` transport.
//!
//! The client sends protocol version 2 and keeps the connection for the next
//! request when the server answers 2; otherwise it closes it after the
//! response and connects anew for the next request, as servers answering 1 may
//! close (and pad their responses) after every response. It reads responses
//! that older servers cut short, and ignores a trailing NUL in list payloads.
//!
//! Every one of those decisions lives in the session engine
//! ([`session`](crate::session)); this is the loop that moves bytes for it.

use core::convert::Infallible;

use embedded_io::{ErrorType, Read, ReadReady, Write};

use crate::error::{ProtocolError, TransportError};
use crate::io::{read_full, write_all};
use crate::session::answer::{AnswerReader, Event, Verdict, check_echo};
use crate::session::client::{
    BackupNeed, BackupRun, ClientSession, ListSplitter, RestoreNeed, RestoreRun, outcome,
};
use crate::session::fault::Fault;
use crate::wire::{BufferTooSmall, NameError, Op, REQUEST_MAX_HEADER_LEN, Status};

pub use crate::session::client::PIPELINE_WINDOW;

/// Smallest buffer a [`Client`] accepts: the longest request header.
pub const CLIENT_MIN_BUFFER_LEN: usize = REQUEST_MAX_HEADER_LEN;

/// One file of a batch: its name, size and contents, or why it cannot be read.
pub type BatchFile<'a, R> = Result<(&'a str, u32, R), <R as ErrorType>::Error>;

/// Files for [`Client::backup_batch`], opened one at a time as they are sent.
pub trait Batch {
    /// A file's contents: an [`embedded_io::Read`] for the blocking client,
    /// an `embedded_io_async::Read` for the async one.
    type Reader: ErrorType;
    /// Name, size and contents of file `index`.
    fn file(&mut self, index: usize) -> BatchFile<'_, Self::Reader>;
    /// The name [`file`](Self::file) gave for file `index`: its 212 must
    /// name it. (Asked again rather than kept: the client holds no names.)
    fn name(&mut self, index: usize) -> &str;
    /// File `index` is backed up: its 212 arrived.
    fn done(&mut self, index: usize);
}

/// Files for [`Client::restore_batch`].
pub trait RestoreBatch {
    /// Where a restored file's bytes go: an [`embedded_io::Write`] for the
    /// blocking client, an `embedded_io_async::Write` for the async one.
    type Writer: ErrorType;
    /// The name of file `index`.
    fn name(&mut self, index: usize) -> &str;
    /// File `index` is on its way, `size` bytes: where should it go?
    fn open(&mut self, index: usize, size: u32) -> Result<Self::Writer, <Self::Writer as ErrorType>::Error>;
    /// File `index` arrived whole into `writer`.
    fn finish(
        &mut self,
        index: usize,
        writer: Self::Writer,
    ) -> Result<(), <Self::Writer as ErrorType>::Error>;
}

/// Where a batch stopped: files before `index` are done (backed up or
/// restored), the rest are not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BatchError<T, L> {
    /// The first file not confirmed.
    pub index: usize,
    /// Why.
    pub error: ClientError<T, L>,
}

/// Opens connections to the server. A microcontroller whose link is a single
/// stream (a UART to a network module) returns that stream each time.
pub trait Connect {
    /// An open connection. `ReadReady` lets a backup notice the server's
    /// early refusal and stop sending.
    type Conn: Read + Write + ReadReady;
    /// Opens a connection.
    fn connect(&mut self) -> Result<Self::Conn, <Self::Conn as ErrorType>::Error>;
}

/// Why a client request did not succeed. `T` is the transport's error, `L`
/// the local source's or sink's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientError<T, L = Infallible> {
    /// The server has no file of that name (1001).
    NotFound,
    /// The user has no files (1002).
    NoFiles,
    /// The server refused (1003); its reason is [`Client::server_reason`].
    /// (Kept in the client: a 255-byte reason moved through every `Result`
    /// would cost firmware stack and code.)
    Server,
    /// The name breaks the naming rules; nothing was sent.
    InvalidName(NameError),
    /// The backup source ended before the size announced.
    SourceEnded,
    /// The restore sink accepted no more bytes.
    SinkFull,
    /// The local source or sink failed.
    Local(L),
    /// The server's bytes break the protocol.
    Protocol(ProtocolError),
    /// The connection failed.
    Transport(TransportError<T>),
}

impl<T, L> From<ProtocolError> for ClientError<T, L> {
    fn from(e: ProtocolError) -> Self {
        ClientError::Protocol(e)
    }
}

impl<T, L> From<TransportError<T>> for ClientError<T, L> {
    fn from(e: TransportError<T>) -> Self {
        ClientError::Transport(e)
    }
}

impl<T: core::fmt::Debug, L: core::fmt::Debug> core::fmt::Display for ClientError<T, L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::NotFound => f.write_str("no such file on the server"),
            ClientError::NoFiles => f.write_str("no files stored for this user"),
            ClientError::Server => f.write_str("server refused the request"),
            ClientError::InvalidName(e) => write!(f, "invalid name: {e}"),
            ClientError::SourceEnded => f.write_str("the file ended before its announced size"),
            ClientError::SinkFull => f.write_str("the output accepted no more bytes"),
            ClientError::Local(e) => write!(f, "local I/O error: {e:?}"),
            ClientError::Protocol(e) => write!(f, "protocol error: {e}"),
            ClientError::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl<T: core::fmt::Debug, L: core::fmt::Debug> core::error::Error for ClientError<T, L> {}

/// The transport error type of a connector's connections.
pub type ConnError<C> = <<C as Connect>::Conn as ErrorType>::Error;

/// A blocking client for one user.
pub struct Client<'b, C: Connect> {
    connector: C,
    conn: Option<C::Conn>,
    session: ClientSession,
    buf: &'b mut [u8],
    answer: AnswerReader,
}

/// The first transport error of a request, kept while the engine decides
/// which error the caller hears.
type Kept<C> = Option<TransportError<ConnError<C>>>;

impl<'b, C: Connect> Client<'b, C> {
    /// A client streaming through `buf`, which must hold at least
    /// [`CLIENT_MIN_BUFFER_LEN`] bytes; larger buffers mean fewer writes.
    pub fn new(connector: C, user_id: u32, buf: &'b mut [u8]) -> Result<Self, BufferTooSmall> {
        if buf.len() < CLIENT_MIN_BUFFER_LEN {
            return Err(BufferTooSmall);
        }
        Ok(Client {
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
        self.conn = None;
    }

    /// Backs up `size` bytes read from `source` as `name`, replacing any
    /// previous version. If the server refuses early (size, quota, name), the
    /// client stops sending and returns the server's reason.
    pub fn backup<R: Read>(
        &mut self,
        name: &str,
        size: u32,
        source: &mut R,
    ) -> Result<(), ClientError<ConnError<C>, R::Error>> {
        self.back_up(1, &mut OneFile { name, size, source }).map_err(|e| e.error)
    }

    /// Backs up `count` files from `batch`, pipelined: once the server has
    /// answered version 2 on this connection, up to [`PIPELINE_WINDOW`]
    /// requests are in flight, so the server can serve them back to back
    /// (and make them durable with one sync). [`Batch::done`] hears each
    /// 212 in order. On failure, files before the error's index are backed
    /// up and the rest are not confirmed.
    pub fn backup_batch<B: Batch>(
        &mut self,
        count: usize,
        batch: &mut B,
    ) -> Result<(), BatchError<ConnError<C>, <B::Reader as ErrorType>::Error>>
    where
        B::Reader: Read,
    {
        self.back_up(count, &mut BatchFiles { batch, source: None })
    }

    /// The backup loop: moves bytes for the engine's [`BackupRun`].
    fn back_up<F: Files>(
        &mut self,
        count: usize,
        files: &mut F,
    ) -> Result<(), BatchError<ConnError<C>, <F::Reader as ErrorType>::Error>>
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
                        Some(source) if whole => read_full(source, window),
                        Some(source) => source.read(window),
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
                BackupNeed::Send(len) => match self.send(len) {
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
                    let answer = self.receive(Some(files.name(index)), &mut |_| Ok(()), &mut transport);
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

    /// Restores `count` files, pipelined like [`backup_batch`](Self::backup_batch):
    /// restore requests go out ahead (they are small), and each answer
    /// streams into the writer [`RestoreBatch::open`] gives for it. A name
    /// the server does not have stops the batch with [`ClientError::NotFound`]
    /// at its index; files before it are restored.
    pub fn restore_batch<B: RestoreBatch>(
        &mut self,
        count: usize,
        batch: &mut B,
    ) -> Result<(), BatchError<ConnError<C>, <B::Writer as ErrorType>::Error>>
    where
        B::Writer: Write,
    {
        let mut run = RestoreRun::new(count);
        let (mut transport, mut local) = (None, None);
        loop {
            match run.next(&self.session) {
                RestoreNeed::Request(index) => {
                    match self.request(Op::Restore, batch.name(index), &mut transport) {
                        Ok(()) => run.requested(),
                        Err(fault) => run.failed(&mut self.session, fault),
                    }
                }
                RestoreNeed::Answer(index) => {
                    let mut writer = None;
                    // The expected name is the batch's, which the handler
                    // needs too: the handler checks a 210's name before
                    // opening anything, and every answer's name is checked
                    // once it is in.
                    let received = self.receive(
                        None,
                        &mut |event| match event {
                            Event::Header { status: Status::Restored, name, .. }
                                if name != batch.name(index).as_bytes() =>
                            {
                                Err(Fault::Protocol(ProtocolError::NameMismatch))
                            }
                            Event::Header { status: Status::Restored, size, .. } => {
                                match batch.open(index, size) {
                                    Ok(w) => {
                                        writer = Some(w);
                                        Ok(())
                                    }
                                    Err(e) => {
                                        local = Some(e);
                                        Err(Fault::Local)
                                    }
                                }
                            }
                            Event::Header { .. } => Ok(()),
                            Event::Payload(chunk) => match writer.as_mut().map(|w| write_all(w, chunk)) {
                                Some(Ok(())) => Ok(()),
                                Some(Err(TransportError::Io(e))) => {
                                    local = Some(e);
                                    Err(Fault::Local)
                                }
                                _ => Err(Fault::SinkFull),
                            },
                        },
                        &mut transport,
                    );
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

    /// Restores `name` into `sink`. `on_size` hears the file's size before
    /// its first byte. Returns the size.
    pub fn restore<W: Write>(
        &mut self,
        name: &str,
        sink: &mut W,
        on_size: impl FnOnce(u32),
    ) -> Result<u32, ClientError<ConnError<C>, W::Error>> {
        let (mut transport, mut local) = (None, None);
        let mut on_size = Some(on_size);
        let mut size = 0;
        let mut result = self.request(Op::Restore, name, &mut transport);
        if result.is_ok() {
            let received = self.receive(
                Some(name),
                &mut |event| match event {
                    Event::Header { status: Status::Restored, size: s, .. } => {
                        size = s;
                        if let Some(f) = on_size.take() {
                            f(s);
                        }
                        Ok(())
                    }
                    Event::Header { .. } => Ok(()),
                    Event::Payload(chunk) => write_all(sink, chunk).map_err(|e| match e {
                        TransportError::Io(e) => {
                            local = Some(e);
                            Fault::Local
                        }
                        _ => Fault::SinkFull,
                    }),
                },
                &mut transport,
            );
            result = received.and_then(|status| outcome(Op::Restore, status));
        }
        result.map(|()| size).map_err(|fault| fault.into_client(transport, local))
    }

    /// Deletes `name`.
    pub fn delete(&mut self, name: &str) -> Result<(), ClientError<ConnError<C>>> {
        let mut transport = None;
        let mut result = self.request(Op::Delete, name, &mut transport);
        if result.is_ok() {
            let received = self.receive(Some(name), &mut |_| Ok(()), &mut transport);
            result = received.and_then(|status| outcome(Op::Delete, status));
        }
        result.map_err(|fault| fault.into_client(transport, None))
    }

    /// Lists the user's names, calling `each` once per name in the server's
    /// (sorted) order, and returns how many there were. Names are assembled
    /// across reads, so they may be longer than any one read. They come as
    /// bytes, as the server sent them: one name that is not UTF-8 does not
    /// spoil the list, and a caller that only compares needs no UTF-8 code.
    pub fn list(&mut self, mut each: impl FnMut(&[u8])) -> Result<usize, ClientError<ConnError<C>>> {
        let mut transport = None;
        let mut names = ListSplitter::new();
        let mut result = self.request(Op::List, "", &mut transport).map(|()| 0);
        if result.is_ok() {
            let received = self.receive(
                None,
                &mut |event| match event {
                    Event::Payload(chunk) => names.feed(chunk, &mut each),
                    Event::Header { .. } => Ok(()),
                },
                &mut transport,
            );
            result = received.and_then(|status| {
                let count = names.finish(&mut each);
                outcome(Op::List, status).map(|()| count)
            });
        }
        result.map_err(|fault| fault.into_client(transport, None))
    }

    /// Opens a connection, replacing any held one.
    fn connect(&mut self) -> Result<(), TransportError<ConnError<C>>> {
        self.conn = None;
        self.conn = Some(self.connector.connect()?);
        self.session.connected();
        Ok(())
    }

    /// Writes `buf[..len]` whole, connecting first if the session has no connection.
    fn send(&mut self, len: usize) -> Result<(), TransportError<ConnError<C>>> {
        if self.session.needs_connection() {
            self.connect()?;
        }
        let conn = self.conn.as_mut().ok_or(TransportError::Closed)?;
        write_all(conn, self.buf.get(..len).unwrap_or(&[]))
    }

    /// Drops the connection when the session has given it up.
    fn follow_session(&mut self) {
        if self.session.needs_connection() {
            self.conn = None;
        }
    }

    /// Sends a request without payload, connecting first if need be.
    fn request(&mut self, op: Op, name: &str, transport: &mut Kept<C>) -> Result<(), Fault> {
        let len = self.session.emit(self.buf, op, name, 0)?;
        self.send(len).map_err(|e| {
            self.disconnect();
            transport.get_or_insert(e);
            Fault::Transport
        })
    }

    /// Reads one answer, handing its header and payload to `on_event` (a
    /// 1003 reason is collected by the engine), and keeps the connection
    /// only if the engine says the server promised to. A 210, 212 or 1001
    /// must name `expected`, if given.
    ///
    /// `on_event` is a trait object so that one copy of the reading loop
    /// serves every request: on a microcontroller each copy costs flash.
    fn receive(
        &mut self,
        expected: Option<&str>,
        on_event: &mut dyn FnMut(Event<'_>) -> Result<(), Fault>,
        transport: &mut Kept<C>,
    ) -> Result<Status, Fault> {
        let expected = expected.map(str::as_bytes);
        let verdict = match self.conn.as_mut() {
            Some(conn) => receive(conn, self.buf, &mut self.answer, expected, on_event, transport),
            None => Err(Fault::Closed),
        };
        self.session.answered(&verdict);
        self.follow_session();
        verdict.map(|v| v.status)
    }
}

/// The reading loop: exactly the bytes the answer still needs, fed to the engine.
fn receive<T: Read>(
    conn: &mut T,
    buf: &mut [u8],
    answer: &mut AnswerReader,
    expected: Option<&[u8]>,
    on_event: &mut dyn FnMut(Event<'_>) -> Result<(), Fault>,
    transport: &mut Option<TransportError<T::Error>>,
) -> Result<Verdict, Fault> {
    answer.start();
    loop {
        let want = answer.needed().min(buf.len());
        let Some(window) = buf.get_mut(..want).filter(|w| !w.is_empty()) else { break };
        let n = match conn.read(window) {
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
        if let Some(event) = answer.feed(buf.get(..n).unwrap_or(&[]), expected)? {
            on_event(event)?;
        }
    }
    answer.verdict(expected)
}

/// Where a backup's files come from: a caller's [`Batch`], or the one
/// source of [`Client::backup`] (which so takes the batch's path). Both
/// shells use it; each bounds the reader by its own `Read`.
pub(crate) trait Files {
    type Reader: ErrorType;
    /// Opens file `index`: its name and size; its source is then [`source`](Self::source).
    fn open(&mut self, index: usize) -> Result<(&str, u32), <Self::Reader as ErrorType>::Error>;
    fn source(&mut self) -> Option<&mut Self::Reader>;
    fn name(&mut self, index: usize) -> &str;
    fn done(&mut self, index: usize);
}

pub(crate) struct BatchFiles<'a, B: Batch> {
    pub(crate) batch: &'a mut B,
    pub(crate) source: Option<B::Reader>,
}

impl<B: Batch> Files for BatchFiles<'_, B> {
    type Reader = B::Reader;
    fn open(&mut self, index: usize) -> Result<(&str, u32), <Self::Reader as ErrorType>::Error> {
        let (name, size, source) = self.batch.file(index)?;
        self.source = Some(source);
        Ok((name, size))
    }
    fn source(&mut self) -> Option<&mut Self::Reader> {
        self.source.as_mut()
    }
    fn name(&mut self, index: usize) -> &str {
        self.batch.name(index)
    }
    fn done(&mut self, index: usize) {
        self.batch.done(index)
    }
}

pub(crate) struct OneFile<'a, R> {
    pub(crate) name: &'a str,
    pub(crate) size: u32,
    pub(crate) source: &'a mut R,
}

impl<R: ErrorType> Files for OneFile<'_, R> {
    type Reader = R;
    fn open(&mut self, _: usize) -> Result<(&str, u32), R::Error> {
        Ok((self.name, self.size))
    }
    fn source(&mut self) -> Option<&mut R> {
        Some(self.source)
    }
    fn name(&mut self, _: usize) -> &str {
        self.name
    }
    fn done(&mut self, _: usize) {}
}
