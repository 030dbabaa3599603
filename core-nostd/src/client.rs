//! The blocking client: back up, restore, delete and list over any
//! `embedded-io` transport.
//!
//! The client sends protocol version 2 and keeps the connection for the next
//! request when the server answers 2; otherwise it closes it after the
//! response and connects anew for the next request, as servers answering 1 may
//! close (and pad their responses) after every response. It reads responses
//! that older servers cut short, and ignores a trailing NUL in list payloads.

use core::convert::Infallible;

use embedded_io::{ErrorType, Read, ReadReady, Write};

use crate::codec::{Decoded, ResponseDecoder, ResponseEnd};
use crate::error::{ProtocolError, TransportError};
use crate::io::{read_full, write_all};
use crate::wire::{
    BufferTooSmall, MAX_REASON_LEN, NameBuf, NameError, Op, PROTOCOL_VERSION, REQUEST_MAX_HEADER_LEN,
    Request, Response, Status, check_name,
};

/// Smallest buffer a [`Client`] accepts: the longest request header.
pub const CLIENT_MIN_BUFFER_LEN: usize = REQUEST_MAX_HEADER_LEN;

/// Requests a batch keeps in flight before it waits for an answer. Answers
/// are small, so this many never fill the socket buffers of either side.
pub const PIPELINE_WINDOW: usize = 64;

/// One file of a batch: its name, size and contents, or why it cannot be read.
pub type BatchFile<'a, R> = Result<(&'a str, u32, R), <R as ErrorType>::Error>;

/// Files for [`Client::backup_batch`], opened one at a time as they are sent.
pub trait Batch {
    /// A file's contents.
    type Reader: Read;
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
    /// Where a restored file's bytes go.
    type Writer: Write;
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

/// The reason a server gave with a 1003 response (at most 255 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
struct ServerReason {
    bytes: [u8; MAX_REASON_LEN],
    len: usize,
}

impl ServerReason {
    const fn new() -> Self {
        ServerReason { bytes: [0; MAX_REASON_LEN], len: 0 }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps as much of `more` as fits.
    fn extend(&mut self, more: &[u8]) {
        let take = more.len().min(MAX_REASON_LEN - self.len);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.len..self.len + take), more.get(..take)) {
            dst.copy_from_slice(src);
            self.len += take;
        }
    }

    /// The reason as text: its longest valid UTF-8 prefix, without trailing NULs.
    fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or(&[]);
        let text = match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => core::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or(""),
        };
        text.trim_end_matches('\0')
    }
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

/// What [`receive`] saw of a response.
#[derive(Clone, Copy)]
struct Received {
    status: Status,
    /// The server's version and a complete response: the connection may be reused.
    reusable: bool,
}

/// Something a response delivered to the caller.
enum Event<'a> {
    Header { status: Status, size: u32, name: &'a [u8] },
    Payload(&'a [u8]),
}

/// A blocking client for one user.
pub struct Client<'b, C: Connect> {
    connector: C,
    conn: Option<C::Conn>,
    user_id: u32,
    buf: &'b mut [u8],
    decoder: ResponseDecoder,
    reason: ServerReason,
    /// The held connection answered version 2: requests may be pipelined.
    pipelining: bool,
}

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
            user_id,
            buf,
            decoder: ResponseDecoder::new(),
            reason: ServerReason::new(),
            pipelining: false,
        })
    }

    /// The user whose files this client handles.
    pub fn user_id(&self) -> u32 {
        self.user_id
    }

    /// Whether a connection is held open for the next request.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The reason the server gave with its last 1003 response
    /// ([`ClientError::Server`]); empty if it gave none.
    pub fn server_reason(&self) -> &str {
        self.reason.as_str()
    }

    /// Closes the held connection, if any.
    pub fn disconnect(&mut self) {
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
        check_name(name).map_err(ClientError::InvalidName)?;
        let request =
            Request { user_id: self.user_id, version: PROTOCOL_VERSION, op: Op::Backup, name, size };
        let header_len = request.emit(self.buf).map_err(|_| ClientError::SinkFull)?;
        // The first chunk rides with the header; read it before connecting,
        // so a failing source leaves the connection untouched.
        let first_end = self.buf.len().min(header_len.saturating_add(size as usize));
        let window = self.buf.get_mut(header_len..first_end).unwrap_or(&mut []);
        let got = read_full(source, window).map_err(ClientError::Local)?;
        if header_len + got < first_end {
            return Err(ClientError::SourceEnded);
        }
        self.connection::<R::Error>()?;
        let (Some(conn), buf) = (self.conn.as_mut(), &mut *self.buf) else {
            return Err(TransportError::Closed.into());
        };
        let mut sent = got as u64;
        let mut failure = write_all(conn, buf.get(..first_end).unwrap_or(&[])).err();
        let mut local = None;
        while failure.is_none() && sent < u64::from(size) {
            match conn.read_ready() {
                // The server answered before the payload was through: a refusal.
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    failure = Some(TransportError::Io(e));
                    break;
                }
            }
            let want = buf.len().min(usize::try_from(u64::from(size) - sent).unwrap_or(usize::MAX));
            let window = buf.get_mut(..want).unwrap_or(&mut []);
            match source.read(window) {
                Ok(0) => local = Some(ClientError::SourceEnded),
                Ok(n) => {
                    failure = write_all(conn, buf.get(..n).unwrap_or(&[])).err();
                    sent += n as u64;
                }
                Err(e) => local = Some(ClientError::Local(e)),
            }
            if local.is_some() {
                break;
            }
        }
        if let Some(e) = local {
            // The server is waiting for bytes that will not come.
            self.conn = None;
            return Err(e);
        }
        let finished = failure.is_none() && sent == u64::from(size);
        let received = self.receive(Some(name), &mut |_| Ok(())).map_err(|f| f.into_client(None));
        if !finished {
            // The request was cut short: whatever the server answered, this
            // connection's framing is lost.
            self.conn = None;
        }
        match (received, failure) {
            (Ok(Status::Done), None) if finished => Ok(()),
            (Err(ClientError::Transport(_)), Some(e)) => Err(ClientError::Transport(e)),
            (Ok(status), _) => Err(ProtocolError::UnexpectedStatus(status.code()).into()),
            (Err(e), _) => Err(e),
        }
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
    ) -> Result<(), BatchError<ConnError<C>, <B::Reader as ErrorType>::Error>> {
        let mut sent = 0;
        let mut acked = 0;
        while acked < count {
            let window_open = self.may_send(sent, acked, count);
            if !window_open {
                self.await_ack(batch, &mut acked)?;
                continue;
            }
            let (name, size, mut source) = match batch.file(sent) {
                Ok(file) => file,
                Err(e) => return Err(self.stop_batch(batch, &mut acked, sent, ClientError::Local(e))),
            };
            if let Err(e) = check_name(name) {
                return Err(self.stop_batch(batch, &mut acked, sent, ClientError::InvalidName(e)));
            }
            let request =
                Request { user_id: self.user_id, version: PROTOCOL_VERSION, op: Op::Backup, name, size };
            let Ok(header_len) = request.emit(self.buf) else {
                return Err(self.stop_batch(batch, &mut acked, sent, ClientError::SinkFull));
            };
            self.send_payload(batch, header_len, size, &mut source, sent, &mut acked)?;
            sent += 1;
        }
        Ok(())
    }

    /// Sends the request whose header is in the buffer, and its payload;
    /// between chunks, takes the answers that have arrived for earlier files.
    fn send_payload<B: Batch>(
        &mut self,
        batch: &mut B,
        header_len: usize,
        size: u32,
        source: &mut B::Reader,
        index: usize,
        acked: &mut usize,
    ) -> Result<(), BatchError<ConnError<C>, <B::Reader as ErrorType>::Error>> {
        let fail = |index, error| BatchError { index, error };
        let first_end = self.buf.len().min(header_len.saturating_add(size as usize));
        let window = self.buf.get_mut(header_len..first_end).unwrap_or(&mut []);
        let got = match read_full(source, window) {
            Ok(got) if header_len + got == first_end => got,
            Ok(_) => return Err(self.stop_batch(batch, acked, index, ClientError::SourceEnded)),
            Err(e) => return Err(self.stop_batch(batch, acked, index, ClientError::Local(e))),
        };
        self.connection().map_err(|e| fail(*acked, e))?;
        let mut chunk_end = first_end;
        let mut sent = got as u64;
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Err(fail(*acked, TransportError::Closed.into()));
            };
            if let Err(e) = write_all(conn, self.buf.get(..chunk_end).unwrap_or(&[])) {
                // The server may have refused and closed: the answers it sent
                // first are still readable, and its reason beats a broken pipe.
                let mut answered = None;
                while *acked <= index {
                    if let Err(stop) = self.await_ack(batch, acked) {
                        answered = Some(stop);
                        break;
                    }
                }
                self.conn = None;
                return Err(match answered {
                    Some(stop) if !matches!(stop.error, ClientError::Transport(_)) => stop,
                    _ => fail(*acked, e.into()),
                });
            }
            if sent == u64::from(size) {
                return Ok(());
            }
            // Answers for earlier files come in while we send; an answer for
            // this one before its payload is through is a refusal.
            while *acked < index && self.answer_waiting() {
                self.await_ack(batch, acked)?;
            }
            if *acked == index && self.answer_waiting() {
                let received =
                    self.receive(Some(batch.name(index)), &mut |_| Ok(())).map_err(|f| f.into_client(None));
                self.conn = None;
                let error = match received {
                    Err(e) => e,
                    Ok(status) => ProtocolError::UnexpectedStatus(status.code()).into(),
                };
                return Err(fail(index, error));
            }
            let want = self.buf.len().min(usize::try_from(u64::from(size) - sent).unwrap_or(usize::MAX));
            let window = self.buf.get_mut(..want).unwrap_or(&mut []);
            match source.read(window) {
                Ok(0) => {
                    // The server waits for bytes that will not come.
                    self.conn = None;
                    return Err(fail(*acked, ClientError::SourceEnded));
                }
                Ok(n) => {
                    chunk_end = n;
                    sent += n as u64;
                }
                Err(e) => {
                    self.conn = None;
                    return Err(fail(*acked, ClientError::Local(e)));
                }
            }
        }
    }

    /// Whether a batch may send request `sent` while `answered` have been
    /// answered: one at a time until the server has promised (version 2) to
    /// keep the connection, then up to [`PIPELINE_WINDOW`] ahead.
    fn may_send(&self, sent: usize, answered: usize, count: usize) -> bool {
        sent < count
            && (sent == answered
                || (self.pipelining && self.conn.is_some() && sent - answered < PIPELINE_WINDOW))
    }

    /// Whether the server has sent something we have not read.
    fn answer_waiting(&mut self) -> bool {
        matches!(self.conn.as_mut().map(|c| c.read_ready()), Some(Ok(true)))
    }

    /// Reads the answer for file `acked`.
    fn await_ack<B: Batch>(
        &mut self,
        batch: &mut B,
        acked: &mut usize,
    ) -> Result<(), BatchError<ConnError<C>, <B::Reader as ErrorType>::Error>> {
        match self.receive(Some(batch.name(*acked)), &mut |_| Ok(())) {
            Ok(Status::Done) => {
                batch.done(*acked);
                *acked += 1;
                Ok(())
            }
            Ok(status) => {
                self.conn = None;
                Err(BatchError {
                    index: *acked,
                    error: ProtocolError::UnexpectedStatus(status.code()).into(),
                })
            }
            Err(f) => Err(BatchError { index: *acked, error: f.into_client(None) }),
        }
    }

    /// File `index` failed before any of it was sent: collect the answers
    /// still due for earlier files, then report it.
    fn stop_batch<B: Batch>(
        &mut self,
        batch: &mut B,
        acked: &mut usize,
        index: usize,
        error: ClientError<ConnError<C>, <B::Reader as ErrorType>::Error>,
    ) -> BatchError<ConnError<C>, <B::Reader as ErrorType>::Error> {
        while *acked < index {
            if let Err(e) = self.await_ack(batch, acked) {
                return e;
            }
        }
        BatchError { index, error }
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
    ) -> Result<(), BatchError<ConnError<C>, <B::Writer as ErrorType>::Error>> {
        let mut sent = 0;
        let mut done = 0;
        while done < count {
            let window_open = self.may_send(sent, done, count);
            if window_open {
                let request = {
                    let name = batch.name(sent);
                    check_name(name)
                        .map_err(|e| BatchError { index: sent, error: ClientError::InvalidName(e) })?;
                    Request {
                        user_id: self.user_id,
                        version: PROTOCOL_VERSION,
                        op: Op::Restore,
                        name,
                        size: 0,
                    }
                    .emit(self.buf)
                };
                let len = request.map_err(|_| BatchError { index: sent, error: ClientError::SinkFull })?;
                self.connection().map_err(|e| BatchError { index: done, error: e })?;
                let Some(conn) = self.conn.as_mut() else {
                    return Err(BatchError { index: done, error: TransportError::Closed.into() });
                };
                if let Err(e) = write_all(conn, self.buf.get(..len).unwrap_or(&[])) {
                    self.conn = None;
                    return Err(BatchError { index: done, error: e.into() });
                }
                sent += 1;
                continue;
            }
            let mut writer = None;
            let mut local = None;
            // The expected name is the batch's, which the handler needs too:
            // the handler checks a 210's name before opening anything, and
            // every answer's name is checked once it is in.
            let received = self.receive(None, &mut |event| match event {
                Event::Header { status: Status::Restored, name, .. }
                    if name != batch.name(done).as_bytes() =>
                {
                    Err(Stop::Protocol(ProtocolError::NameMismatch))
                }
                Event::Header { status: Status::Restored, size, .. } => match batch.open(done, size) {
                    Ok(w) => {
                        writer = Some(w);
                        Ok(())
                    }
                    Err(e) => {
                        local = Some(e);
                        Err(Stop::Local)
                    }
                },
                Event::Header { .. } => Ok(()),
                Event::Payload(chunk) => match writer.as_mut().map(|w| write_all(w, chunk)) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(TransportError::Io(e))) => {
                        local = Some(e);
                        Err(Stop::Local)
                    }
                    _ => Err(Stop::SinkFull),
                },
            });
            let failed = |error| BatchError { index: done, error };
            let received = match (received, self.decoder.header()) {
                (Ok(_), Some(header)) if check_echo(&header, batch.name(done).as_bytes()).is_err() => {
                    Err(Failed::Protocol(ProtocolError::NameMismatch))
                }
                (received, _) => received,
            };
            match received {
                Ok(Status::Restored) => match writer {
                    Some(w) => batch.finish(done, w).map_err(|e| failed(ClientError::Local(e)))?,
                    None => return Err(failed(ProtocolError::UnexpectedStatus(210).into())),
                },
                Ok(status) => {
                    // The answers still in flight belong to files we will
                    // not take: this connection cannot be reused.
                    self.conn = None;
                    return Err(failed(match status {
                        Status::NotFound => ClientError::NotFound,
                        other => ProtocolError::UnexpectedStatus(other.code()).into(),
                    }));
                }
                Err(f) => {
                    self.conn = None;
                    return Err(failed(f.into_client(local)));
                }
            }
            done += 1;
        }
        Ok(())
    }

    /// Restores `name` into `sink`. `on_size` hears the file's size before
    /// its first byte. Returns the size.
    pub fn restore<W: Write>(
        &mut self,
        name: &str,
        sink: &mut W,
        on_size: impl FnOnce(u32),
    ) -> Result<u32, ClientError<ConnError<C>, W::Error>> {
        check_name(name).map_err(ClientError::InvalidName)?;
        self.send(&Request {
            user_id: self.user_id,
            version: PROTOCOL_VERSION,
            op: Op::Restore,
            name,
            size: 0,
        })?;
        let mut on_size = Some(on_size);
        let mut size = 0;
        let mut local = None;
        let received = self.receive(Some(name), &mut |event| match event {
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
                    Stop::Local
                }
                _ => Stop::SinkFull,
            }),
        });
        let status = received.map_err(|f| f.into_client(local.take()))?;
        match status {
            Status::Restored => Ok(size),
            Status::NotFound => Err(ClientError::NotFound),
            other => Err(ProtocolError::UnexpectedStatus(other.code()).into()),
        }
    }

    /// Deletes `name`.
    pub fn delete(&mut self, name: &str) -> Result<(), ClientError<ConnError<C>>> {
        check_name(name).map_err(ClientError::InvalidName)?;
        self.send(&Request {
            user_id: self.user_id,
            version: PROTOCOL_VERSION,
            op: Op::Delete,
            name,
            size: 0,
        })?;
        match self.receive(Some(name), &mut |_| Ok(())).map_err(|f| f.into_client(None))? {
            Status::Done => Ok(()),
            Status::NotFound => Err(ClientError::NotFound),
            other => Err(ProtocolError::UnexpectedStatus(other.code()).into()),
        }
    }

    /// Lists the user's names, calling `each` once per name in the server's
    /// (sorted) order, and returns how many there were. Names are assembled
    /// across reads, so they may be longer than any one read. They come as
    /// bytes, as the server sent them: one name that is not UTF-8 does not
    /// spoil the list, and a caller that only compares needs no UTF-8 code.
    pub fn list(&mut self, mut each: impl FnMut(&[u8])) -> Result<usize, ClientError<ConnError<C>>> {
        self.send(&Request {
            user_id: self.user_id,
            version: PROTOCOL_VERSION,
            op: Op::List,
            name: "",
            size: 0,
        })?;
        let mut pending = NameBuf::new();
        let mut count = 0;
        let mut emit = |pending: &mut NameBuf| {
            if !pending.is_empty() {
                each(pending.as_bytes());
                count += 1;
                pending.clear();
            }
        };
        let received = self.receive(None, &mut |event| {
            let Event::Payload(chunk) = event else { return Ok(()) };
            for piece in chunk.split_inclusive(|&b| b == b'\n') {
                let (text, ends) = match piece.split_last() {
                    Some((b'\n', text)) => (text, true),
                    _ => (piece, false),
                };
                // Some servers end the payload with a NUL; names never hold one.
                let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
                if !pending.extend(text) {
                    return Err(Stop::Protocol(ProtocolError::BadListEntry));
                }
                if ends {
                    emit(&mut pending);
                }
            }
            Ok(())
        });
        let status = received.map_err(|f| f.into_client(None))?;
        emit(&mut pending);
        match status {
            Status::Listed => Ok(count),
            Status::NoFiles => Err(ClientError::NoFiles),
            other => Err(ProtocolError::UnexpectedStatus(other.code()).into()),
        }
    }

    /// Connects unless a connection is held.
    fn connection<L>(&mut self) -> Result<(), ClientError<ConnError<C>, L>> {
        if self.conn.is_none() {
            self.pipelining = false;
            self.conn = Some(self.connector.connect().map_err(TransportError::Io)?);
        }
        Ok(())
    }

    /// Sends a request without payload.
    fn send<L>(&mut self, request: &Request<'_>) -> Result<(), ClientError<ConnError<C>, L>> {
        let len = request.emit(self.buf).map_err(|_| ClientError::SinkFull)?;
        self.connection::<L>()?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(TransportError::Closed.into());
        };
        if let Err(e) = write_all(conn, self.buf.get(..len).unwrap_or(&[])) {
            self.conn = None;
            return Err(e.into());
        }
        Ok(())
    }

    /// Reads one response, handing its header and payload to `on_event`
    /// (a 1003 reason is collected here), and keeps the connection only if
    /// the server promised to (version 2) and the response was whole. A
    /// 210, 212 or 1001 must name `expected`, if given.
    ///
    /// `on_event` is a trait object so that one copy of the reading loop
    /// serves every request: on a microcontroller each copy costs flash.
    fn receive(
        &mut self,
        expected: Option<&str>,
        on_event: &mut dyn FnMut(Event<'_>) -> Result<(), Stop>,
    ) -> Result<Status, Failed<ConnError<C>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failed::Transport(TransportError::Closed));
        };
        let expected = expected.map(str::as_bytes);
        let result = receive(conn, self.buf, &mut self.decoder, &mut self.reason, expected, on_event);
        if matches!(result, Ok(Received { reusable: true, .. })) {
            self.pipelining = true;
        } else {
            self.conn = None;
            self.pipelining = false;
        }
        result.map(|r| r.status)
    }
}

/// Why a response handler stopped reading.
enum Stop {
    /// The caller's sink failed; the caller kept its error.
    Local,
    SinkFull,
    Protocol(ProtocolError),
}

/// How reading a response failed, before the caller's error type is known.
enum Failed<E> {
    Transport(TransportError<E>),
    Protocol(ProtocolError),
    Server,
    Stopped(Stop),
}

impl<E> From<TransportError<E>> for Failed<E> {
    fn from(e: TransportError<E>) -> Self {
        Failed::Transport(e)
    }
}

impl<E> From<ProtocolError> for Failed<E> {
    fn from(e: ProtocolError) -> Self {
        Failed::Protocol(e)
    }
}

impl<E> Failed<E> {
    /// The caller's error, with the local error its handler kept.
    fn into_client<L>(self, local: Option<L>) -> ClientError<E, L> {
        match self {
            Failed::Transport(e) => ClientError::Transport(e),
            Failed::Protocol(e) | Failed::Stopped(Stop::Protocol(e)) => ClientError::Protocol(e),
            Failed::Server => ClientError::Server,
            Failed::Stopped(Stop::Local) => local.map_or(ClientError::SinkFull, ClientError::Local),
            Failed::Stopped(Stop::SinkFull) => ClientError::SinkFull,
        }
    }
}

/// A 210, 212 or 1001 names the file it answers; one that names another
/// file than the request is not this request's answer. The names are
/// compared where they lie, in the decoder and the caller's `&str`: no copy.
fn check_echo(header: &Response<'_>, expected: &[u8]) -> Result<(), ProtocolError> {
    let names_a_file = matches!(header.status, Status::Restored | Status::Done | Status::NotFound);
    if names_a_file && header.name != expected { Err(ProtocolError::NameMismatch) } else { Ok(()) }
}

fn receive<T: Read>(
    conn: &mut T,
    buf: &mut [u8],
    decoder: &mut ResponseDecoder,
    reason: &mut ServerReason,
    expected: Option<&[u8]>,
    on_event: &mut dyn FnMut(Event<'_>) -> Result<(), Stop>,
) -> Result<Received, Failed<T::Error>> {
    decoder.reset();
    reason.clear();
    let mut ended_early = false;
    while !decoder.is_complete() {
        let want = decoder.needed().min(buf.len());
        let Some(window) = buf.get_mut(..want).filter(|w| !w.is_empty()) else { break };
        let n = conn.read(window).map_err(TransportError::Io)?;
        if n == 0 {
            match decoder.finish()? {
                ResponseEnd::Nothing => return Err(TransportError::Closed.into()),
                ResponseEnd::Complete => {
                    ended_early = true;
                    break;
                }
            }
        }
        match decoder.feed(buf.get(..n).unwrap_or(&[]))? {
            (_, Decoded::Header) => {
                if let Some(h) = decoder.header() {
                    // Before the caller sees it: no byte of another file's
                    // payload reaches the caller's sink.
                    if let Some(expected) = expected {
                        check_echo(&h, expected)?;
                    }
                    on_event(Event::Header { status: h.status, size: h.size, name: h.name })
                        .map_err(Failed::Stopped)?;
                }
            }
            (_, Decoded::Payload(chunk)) => match decoder.header().map(|h| h.status) {
                Some(Status::Error) => reason.extend(chunk),
                _ => on_event(Event::Payload(chunk)).map_err(Failed::Stopped)?,
            },
            _ => {}
        }
    }
    let header = decoder.header().ok_or(ProtocolError::Truncated)?;
    // Again for the short forms, whose header is only known at their end.
    if let (Some(expected), true) = (expected, ended_early) {
        check_echo(&header, expected)?;
    }
    if header.status == Status::Error {
        return Err(Failed::Server);
    }
    Ok(Received { status: header.status, reusable: header.version >= PROTOCOL_VERSION && !ended_early })
}
