//! The request dispatcher: serves one connection's requests against a
//! [`Store`] until the session ends, and reports each request's outcome.
//!
//! The dispatcher reads exactly the bytes each request still needs, so it
//! never consumes the next request's bytes; payloads stream through the
//! caller's buffer chunk by chunk. Each response's header and the start of
//! its payload go out in one write, because some clients read the first
//! block with a single `recv` and expect the header to be all there.

use embedded_io::{Read, ReadReady, Write};

use crate::codec::{Decoded, RequestDecoder, RequestEnd};
use crate::error::{StoreError, TransportError};
use crate::io::write_all;
use crate::store::{Listing, Store};
use crate::wire::{
    BufferTooSmall, LEGACY_VERSION, MAX_FILE_SIZE, MAX_NAME_LEN, MAX_REASON_LEN, NameBuf, Op,
    PROTOCOL_VERSION, RESPONSE_MAX_HEADER_LEN, Response, ResponseView, Status,
};

/// Smallest buffer a [`Dispatcher`] accepts: a response header with a name,
/// plus one list entry.
pub const DISPATCH_MIN_BUFFER_LEN: usize = RESPONSE_MAX_HEADER_LEN + MAX_NAME_LEN + 1;

/// Bytes of the dispatcher's buffer set aside for group commit: the 212s of
/// backups whose commit waits for one shared [`Store::sync`].
pub const GROUP_COMMIT_AREA_LEN: usize = 8 * 1024;

/// Most bytes of a list reply gathered in the buffer before they are
/// written. A reader that stops reading leaves its connection holding the
/// part of the buffer a list filled: the server's 128 KiB buffers made 1000
/// non-readers of a long list take 157-160 MiB, 16 KiB 56-90 MiB
/// (of which about 25 MiB is what 1000 idle connections take), and listing
/// 100,000 names took as long (262-279 ms, within noise).
pub const LIST_WRITE_LEN: usize = 16 * 1024;

/// Reason sent when a backup is larger than [`Config::max_file_size`].
pub const REASON_TOO_LARGE: &str = "file exceeds the server's size limit";

/// Server settings the dispatcher enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Largest backup accepted; larger ones are refused before their payload.
    pub max_file_size: u32,
    /// Highest protocol version served; responses carry the lower of this
    /// and the client's. A dispatcher serving a
    /// [`SecureStream`](crate::secure::SecureStream) sets
    /// [`SECURE_VERSION`](crate::secure::SECURE_VERSION) (3: the version-2
    /// session rules, inside a secure session); a plaintext one keeps 2, so
    /// no plaintext client is ever answered 3.
    pub version: u8,
    /// Group commit: while the next request is already waiting, commit
    /// backups with [`Store::commit_upload_deferred`] and hold their 212s;
    /// then [`Store::sync`] once and send them all. A 212 still goes out only
    /// once its backup is durable. Needs a buffer of at least
    /// [`DISPATCH_MIN_BUFFER_LEN`] + [`GROUP_COMMIT_AREA_LEN`] bytes, and
    /// pays off when clients pipeline.
    pub group_commit: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_file_size: MAX_FILE_SIZE, version: PROTOCOL_VERSION, group_commit: false }
    }
}

/// What became of one request, for the server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Outcome<'a> {
    /// The requesting user (0 if the request was too short to tell).
    pub user_id: u32,
    /// The operation.
    pub op: Op,
    /// The file name, empty for list and for refused names.
    pub name: &'a str,
    /// The status sent (for a group-committed backup: to be sent after the
    /// shared sync), or `None` when no response could be sent.
    pub status: Option<Status>,
    /// Payload bytes received (backup) or sent (restore, list).
    pub bytes: u64,
    /// Why the request failed, if it did.
    pub reason: Option<&'static str>,
}

/// Receives the dispatcher's per-request events. Closures taking an
/// [`Outcome`] implement it.
pub trait Observer {
    /// The first byte of a request arrived.
    fn request_started(&mut self) {}
    /// A request was answered, or abandoned.
    fn request_finished(&mut self, outcome: &Outcome<'_>);
}

impl<F: FnMut(&Outcome<'_>)> Observer for F {
    fn request_finished(&mut self, outcome: &Outcome<'_>) {
        self(outcome)
    }
}

/// A transport that may send a stored file's bytes by itself, such as a
/// socket using the kernel's zero-copy path. The provided method declines,
/// and the dispatcher copies through its buffer instead; a transport with
/// nothing better implements this trait with an empty body.
pub trait SendFile<R>: Write {
    /// Sends the next `len` bytes of `file`, adding each byte that went out
    /// to `sent` (so a failure can still say how much was sent). `Ok(false)`:
    /// not supported here, nothing was sent. A file that ends early is
    /// [`StoreError::Changed`].
    fn send_file(
        &mut self,
        file: &mut R,
        len: u64,
        sent: &mut u64,
    ) -> Result<bool, SendFileError<Self::Error>> {
        let _ = (file, len, sent);
        Ok(false)
    }
}

/// Why [`SendFile::send_file`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendFileError<E> {
    /// Writing to the peer failed.
    Transport(E),
    /// Reading the file failed.
    Source(StoreError),
}

/// Why a session ended, and so what the caller does with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SessionEnd<E> {
    /// The peer closed between requests or inside zero padding: close.
    Closed,
    /// A request started with op 0 (zero padding): drain, then close.
    Padding,
    /// A 1003 answered a request whose rest cannot be framed: drain, then close.
    Refused,
    /// The peer closed in the middle of a request: close.
    Truncated,
    /// The transport failed: close.
    Transport(TransportError<E>),
    /// A restore failed after part of it was sent; the response cannot be
    /// completed, so the connection must be closed.
    Aborted(StoreError),
    /// The dispatcher's own invariant broke (a bug, never input): close
    /// rather than guess at the framing.
    Internal,
}

impl<E> SessionEnd<E> {
    /// Whether the peer may still be sending and must be drained with
    /// [`drain`](crate::io::drain) before closing, so it can read our last
    /// response instead of a reset.
    pub fn should_drain(&self) -> bool {
        matches!(self, SessionEnd::Padding | SessionEnd::Refused)
    }
}

/// What a handler did: the status sent and whether the session goes on.
struct Done<E> {
    status: Option<Status>,
    bytes: u64,
    reason: Option<&'static str>,
    end: Option<SessionEnd<E>>,
    /// A group-committed backup whose 212 is held: its outcome is reported
    /// when the held answers go out, with the status actually sent.
    held: bool,
}

impl<E> Done<E> {
    fn answered(status: Status, bytes: u64) -> Self {
        Done { status: Some(status), bytes, reason: None, end: None, held: false }
    }

    fn lost(reason: &'static str, end: SessionEnd<E>) -> Self {
        Self::cut(None, 0, reason, end)
    }

    /// The session ended inside a request after `bytes` of its payload
    /// moved; `status` is the header already sent, if one was.
    fn cut(status: Option<Status>, bytes: u64, reason: &'static str, end: SessionEnd<E>) -> Self {
        Done { status, bytes, reason: Some(reason), end: Some(end), held: false }
    }
}

/// The request being served, copied out of the decoder.
struct Current {
    user: u32,
    version: u8,
    op: Op,
    name: NameBuf,
    size: u32,
}

/// What the log needs of a held backup besides its 212, which holds the
/// name: the user and the payload bytes received. Kept at the end of the
/// area, growing down, while the 212s grow up from its start.
const HELD_NOTE_LEN: usize = 4 + 8;

/// 212s held back until the store's next sync (group commit).
struct Acks<'b> {
    area: &'b mut [u8],
    len: usize,
    count: usize,
}

impl Acks<'_> {
    /// Whether group commit is on and another 212 fits.
    fn has_room(&self) -> bool {
        self.area.len() - self.len - self.count * HELD_NOTE_LEN >= RESPONSE_MAX_HEADER_LEN + HELD_NOTE_LEN
    }

    fn enabled(&self) -> bool {
        !self.area.is_empty()
    }

    fn note_range(&self, index: usize) -> core::ops::Range<usize> {
        let end = self.area.len() - index * HELD_NOTE_LEN;
        end - HELD_NOTE_LEN..end
    }

    fn push(&mut self, response: &Response<'_>, user: u32, bytes: u64) -> bool {
        if !self.has_room() {
            return false;
        }
        let note = self.note_range(self.count);
        let Some(rest) = self.area.get_mut(self.len..note.start) else { return false };
        let Ok(n) = response.emit(rest) else { return false };
        let Some(dst) = self.area.get_mut(note) else { return false };
        let (user_dst, bytes_dst) = dst.split_at_mut(4);
        user_dst.copy_from_slice(&user.to_le_bytes());
        bytes_dst.copy_from_slice(&bytes.to_le_bytes());
        self.len += n;
        self.count += 1;
        true
    }

    /// Syncs the store, then sends the held 212s in one write; if the sync
    /// fails, each held backup is answered 1003 instead, in order. Each held
    /// backup's outcome goes to `observer` with what was actually sent.
    fn flush<S: Store, C: Write, O: Observer + ?Sized>(
        &mut self,
        store: &mut S,
        conn: &mut C,
        observer: &mut O,
    ) -> Result<(), TransportError<C::Error>> {
        if self.count == 0 {
            return Ok(());
        }
        let (len, count) = (self.len, self.count);
        self.len = 0;
        self.count = 0;
        let synced = store.sync();
        let mut result = match synced {
            Ok(()) => write_all(conn, self.area.get(..len).unwrap_or(&[])),
            Err(_) => Ok(()),
        };
        let mut one = [0u8; RESPONSE_MAX_HEADER_LEN + MAX_REASON_LEN];
        let mut at = 0;
        for index in 0..count {
            let held = ResponseView::new_unchecked(self.area.get(at..len).unwrap_or(&[]));
            at += held.header_len();
            let (status, reason) = match (synced, &result) {
                (_, Err(_)) => (None, Some("connection failed")),
                (Ok(()), Ok(())) => (Some(Status::Done), None),
                (Err(e), Ok(())) => {
                    let version = held.version().max(LEGACY_VERSION);
                    match answer_error(conn, &mut one, version, e.reason()).end {
                        None => (Some(Status::Error), Some(e.reason())),
                        Some(end) => {
                            result = Err(match end {
                                SessionEnd::Transport(e) => e,
                                _ => TransportError::WriteZero,
                            });
                            (None, Some("connection failed"))
                        }
                    }
                }
            };
            let note = self.area.get(self.note_range(index)).unwrap_or(&[]);
            let user = note.get(..4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes);
            let bytes = note.get(4..).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
            observer.request_finished(&Outcome {
                user_id: user,
                op: Op::Backup,
                name: core::str::from_utf8(held.name()).unwrap_or(""),
                status,
                bytes,
                reason,
            });
        }
        result
    }
}

/// Serves requests from one connection at a time against a [`Store`].
pub struct Dispatcher<'b, S: Store> {
    store: S,
    buf: &'b mut [u8],
    acks: Acks<'b>,
    config: Config,
    decoder: RequestDecoder,
}

impl<'b, S: Store> Dispatcher<'b, S> {
    /// A dispatcher streaming through `buf`, which must hold at least
    /// [`DISPATCH_MIN_BUFFER_LEN`] bytes; larger buffers mean fewer reads and
    /// writes per payload.
    pub fn new(store: S, buf: &'b mut [u8], config: Config) -> Result<Self, BufferTooSmall> {
        if buf.len() < DISPATCH_MIN_BUFFER_LEN {
            return Err(BufferTooSmall);
        }
        let area = if config.group_commit && buf.len() >= DISPATCH_MIN_BUFFER_LEN + GROUP_COMMIT_AREA_LEN {
            GROUP_COMMIT_AREA_LEN
        } else {
            0
        };
        let (buf, area) = buf.split_at_mut(buf.len() - area);
        Ok(Dispatcher {
            store,
            buf,
            acks: Acks { area, len: 0, count: 0 },
            config,
            decoder: RequestDecoder::new(),
        })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Serves requests from `conn` until the session ends, and says how it
    /// ended. The caller then closes the connection, after
    /// [`drain`](crate::io::drain)ing it if [`SessionEnd::should_drain`].
    /// `ReadReady` tells group commit whether the next request is waiting.
    pub fn serve<C, O>(&mut self, conn: &mut C, observer: &mut O) -> SessionEnd<C::Error>
    where
        C: Read + ReadReady + SendFile<S::Reader>,
        O: Observer + ?Sized,
    {
        loop {
            if let Some(end) = self.serve_one(conn, observer) {
                // Every response path sends held 212s first, so what is left
                // belongs before the end: a client that half-closed after
                // pipelining still hears them.
                return match self.acks.flush(&mut self.store, conn, observer) {
                    Ok(()) => end,
                    Err(_) if matches!(end, SessionEnd::Transport(_)) => end,
                    Err(e) => SessionEnd::Transport(e),
                };
            }
        }
    }

    /// Sends held 212s (after the store's sync) before anything else goes out.
    fn settle<C: Write, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
    ) -> Result<(), TransportError<C::Error>> {
        self.acks.flush(&mut self.store, conn, observer)
    }

    /// Sends held 212s if the next read would wait for the peer.
    fn settle_before_waiting<C: Read + ReadReady + Write, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
    ) -> Result<(), TransportError<C::Error>> {
        if self.acks.count > 0 && !matches!(conn.read_ready(), Ok(true)) {
            self.settle(conn, observer)?;
        }
        Ok(())
    }

    /// Serves one request; `Some` when the session is over.
    fn serve_one<C, O>(&mut self, conn: &mut C, observer: &mut O) -> Option<SessionEnd<C::Error>>
    where
        C: Read + ReadReady + SendFile<S::Reader>,
        O: Observer + ?Sized,
    {
        self.decoder.reset();
        let mut started = false;
        loop {
            let want = self.decoder.needed().min(self.buf.len());
            if want == 0 {
                break;
            }
            // Hold 212s only while the client has more for us: before
            // waiting for input, make them durable and send them. Before
            // every read, not only the first: a request can arrive in pieces.
            if let Err(e) = self.settle_before_waiting(conn, observer) {
                return Some(SessionEnd::Transport(e));
            }
            let Some(window) = self.buf.get_mut(..want) else { return Some(SessionEnd::Internal) };
            let n = match conn.read(window) {
                Ok(0) => {
                    return Some(match self.decoder.finish() {
                        RequestEnd::Clean => SessionEnd::Closed,
                        RequestEnd::Truncated => {
                            self.report_unparsed(observer, None, "connection closed mid-request");
                            SessionEnd::Truncated
                        }
                    });
                }
                Ok(n) => n,
                Err(e) => return Some(SessionEnd::Transport(TransportError::Io(e))),
            };
            if !started {
                observer.request_started();
                started = true;
            }
            let input = self.buf.get(..n).unwrap_or(&[]);
            match self.decoder.feed(input) {
                Ok((_, Decoded::Header)) => break,
                Ok((_, Decoded::EndOfSession)) => return Some(SessionEnd::Padding),
                Ok((_, Decoded::Partial | Decoded::Payload(_))) => {}
                Err(e) => {
                    let version = self.decoder.view().version().clamp(LEGACY_VERSION, self.config.version);
                    if let Err(e) = self.settle(conn, observer) {
                        return Some(SessionEnd::Transport(e));
                    }
                    let sent = self.respond_error(conn, version, e.reason());
                    self.report_unparsed(observer, sent.then_some(Status::Error), e.reason());
                    return Some(SessionEnd::Refused);
                }
            }
        }
        // A complete header parses and its name fits: the decoder checked both.
        let Some(req) = self.decoder.header().and_then(|header| {
            Some(Current {
                user: header.user_id,
                version: header.version.min(self.config.version),
                op: header.op,
                name: NameBuf::from_str(header.name)?,
                size: header.size,
            })
        }) else {
            return Some(SessionEnd::Internal);
        };
        let done = match req.op {
            Op::Backup => self.backup(conn, observer, &req),
            Op::Restore => self.restore(conn, observer, &req),
            Op::Delete => self.delete(conn, observer, &req),
            Op::List => self.list(conn, observer, &req),
            // The decoder refuses unknown ops before the header completes.
            Op::Unknown(_) => Done::lost("unknown op", SessionEnd::Refused),
        };
        if !done.held {
            observer.request_finished(&Outcome {
                user_id: req.user,
                op: req.op,
                name: req.name.as_str(),
                status: done.status,
                bytes: done.bytes,
                reason: done.reason,
            });
        }
        done.end
    }

    fn report_unparsed<O: Observer + ?Sized>(
        &self,
        observer: &mut O,
        status: Option<Status>,
        reason: &'static str,
    ) {
        let view = self.decoder.view();
        observer.request_finished(&Outcome {
            user_id: view.user_id(),
            op: view.op(),
            name: "",
            status,
            bytes: 0,
            reason: Some(reason),
        });
    }

    fn backup<C: Read + ReadReady + Write, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
        req: &Current,
    ) -> Done<C::Error> {
        if req.size > self.config.max_file_size {
            return self.refuse(conn, observer, req.version, REASON_TOO_LARGE);
        }
        let mut upload = match self.store.begin_upload(req.user, req.name.as_str(), req.size) {
            Ok(upload) => upload,
            Err(e) => return self.refuse(conn, observer, req.version, e.reason()),
        };
        let mut received: u64 = 0;
        while !self.decoder.is_complete() {
            // Earlier backups' 212s do not wait for this payload to trickle in.
            if let Err(e) = self.settle_before_waiting(conn, observer) {
                self.store.abort_upload(upload);
                return Done::cut(None, received, "connection failed mid-upload", SessionEnd::Transport(e));
            }
            let want = self.decoder.needed().min(self.buf.len());
            let Some(window) = self.buf.get_mut(..want) else { break };
            let n = match conn.read(window) {
                Ok(0) => {
                    self.store.abort_upload(upload);
                    return Done::cut(None, received, "connection closed mid-upload", SessionEnd::Truncated);
                }
                Ok(n) => n,
                Err(e) => {
                    self.store.abort_upload(upload);
                    let end = SessionEnd::Transport(e.into());
                    return Done::cut(None, received, "connection failed mid-upload", end);
                }
            };
            let chunk = match self.decoder.feed(self.buf.get(..n).unwrap_or(&[])) {
                Ok((_, Decoded::Payload(chunk))) => chunk,
                _ => &[],
            };
            if let Err(e) = self.store.write_upload(&mut upload, chunk) {
                self.store.abort_upload(upload);
                // The client is still sending: answer now, then drain.
                return self.refuse(conn, observer, req.version, e.reason());
            }
            received += chunk.len() as u64;
        }
        if !self.acks.enabled() {
            return match self.store.commit_upload(upload) {
                Ok(()) => self.respond(conn, observer, req, Status::Done, received),
                // The request was read whole, so the session can go on.
                Err(e) => self.answer_error(conn, observer, req.version, e.reason()),
            };
        }
        if !self.acks.has_room() {
            if let Err(e) = self.settle(conn, observer) {
                self.store.abort_upload(upload);
                return Done::lost("connection failed", SessionEnd::Transport(e));
            }
        }
        match self.store.commit_upload_deferred(upload) {
            Ok(()) => {
                let ack = Response {
                    version: req.version,
                    status: Status::Done,
                    name: req.name.as_bytes(),
                    size: 0,
                };
                if self.acks.push(&ack, req.user, received) {
                    Done { held: true, ..Done::answered(Status::Done, received) }
                } else {
                    Done::lost("internal buffer too small", SessionEnd::Internal)
                }
            }
            Err(e) => self.answer_error(conn, observer, req.version, e.reason()),
        }
    }

    fn restore<C: Read + SendFile<S::Reader>, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
        req: &Current,
    ) -> Done<C::Error> {
        if let Err(e) = self.settle(conn, observer) {
            return Done::lost("connection failed", SessionEnd::Transport(e));
        }
        let (mut reader, size) = match self.store.open(req.user, req.name.as_str()) {
            Ok(opened) => opened,
            Err(StoreError::NotFound) => return self.respond(conn, observer, req, Status::NotFound, 0),
            Err(e) => return self.answer_error(conn, observer, req.version, e.reason()),
        };
        let header =
            Response { version: req.version, status: Status::Restored, name: req.name.as_bytes(), size };
        let Ok(header_len) = header.emit(self.buf) else {
            return self.answer_error(conn, observer, req.version, "internal buffer too small");
        };
        // The first chunk rides with the header; nothing is sent until it is
        // read, so a failure here can still be answered with 1003.
        let first_end = self.buf.len().min(header_len.saturating_add(size as usize));
        let mut filled = header_len;
        while filled < first_end {
            let Some(window) = self.buf.get_mut(filled..first_end) else { break };
            match self.store.read(&mut reader, window) {
                Ok(0) => return self.answer_error(conn, observer, req.version, StoreError::Changed.reason()),
                Ok(n) => filled += n,
                Err(e) => return self.answer_error(conn, observer, req.version, e.reason()),
            }
        }
        if let Err(e) = write_all(conn, self.buf.get(..filled).unwrap_or(&[])) {
            return Done::lost("connection failed mid-restore", SessionEnd::Transport(e));
        }
        // From here on the 210 is out: a failure is logged with it and with
        // the payload bytes that went out before it.
        let cut = |sent, reason, end| Done::cut(Some(Status::Restored), sent, reason, end);
        let mut sent = (filled - header_len) as u64;
        let total = u64::from(size);
        if sent < total {
            match conn.send_file(&mut reader, total - sent, &mut sent) {
                Ok(true) => sent = total,
                Ok(false) => {}
                Err(SendFileError::Transport(e)) => {
                    let end = SessionEnd::Transport(e.into());
                    return cut(sent, "connection failed mid-restore", end);
                }
                Err(SendFileError::Source(e)) => return cut(sent, e.reason(), SessionEnd::Aborted(e)),
            }
        }
        while sent < total {
            let want = self.buf.len().min(usize::try_from(total - sent).unwrap_or(usize::MAX));
            let Some(window) = self.buf.get_mut(..want) else { break };
            let n = match self.store.read(&mut reader, window) {
                Ok(0) => {
                    return cut(sent, StoreError::Changed.reason(), SessionEnd::Aborted(StoreError::Changed));
                }
                Ok(n) => n,
                Err(e) => return cut(sent, e.reason(), SessionEnd::Aborted(e)),
            };
            if let Err(e) = write_all(conn, self.buf.get(..n).unwrap_or(&[])) {
                return cut(sent, "connection failed mid-restore", SessionEnd::Transport(e));
            }
            sent += n as u64;
        }
        Done::answered(Status::Restored, sent)
    }

    fn delete<C: Write, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
        req: &Current,
    ) -> Done<C::Error> {
        // A held backup of this name must land before it is deleted.
        if let Err(e) = self.settle(conn, observer) {
            return Done::lost("connection failed", SessionEnd::Transport(e));
        }
        match self.store.delete(req.user, req.name.as_str()) {
            Ok(()) => self.respond(conn, observer, req, Status::Done, 0),
            Err(StoreError::NotFound) => self.respond(conn, observer, req, Status::NotFound, 0),
            Err(e) => self.answer_error(conn, observer, req.version, e.reason()),
        }
    }

    fn list<C: Write, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
        req: &Current,
    ) -> Done<C::Error> {
        if let Err(e) = self.settle(conn, observer) {
            return Done::lost("connection failed", SessionEnd::Transport(e));
        }
        let mut listing = match self.store.list(req.user) {
            Ok(listing) => listing,
            Err(e) => return answer_error(conn, self.buf, req.version, e.reason()),
        };
        let total = listing.payload_len();
        if total == 0 {
            drop(listing);
            let empty = Current { name: NameBuf::new(), ..*req };
            return self.respond(conn, observer, &empty, Status::NoFiles, 0);
        }
        let Ok(size) = u32::try_from(total) else {
            return answer_error(conn, self.buf, req.version, "too many files to list");
        };
        let header = Response { version: req.version, status: Status::Listed, name: b"", size };
        let Ok(mut at) = header.emit(self.buf) else {
            return answer_error(conn, self.buf, req.version, "internal buffer too small");
        };
        let mut written: u64 = 0;
        // Payload bytes already out, and where the unsent ones start in the
        // buffer, so that a failure is logged with what went out.
        let (mut out, mut unsent_from) = (None, at);
        let cut = |out: Option<u64>, end| {
            Done::cut(out.map(|_| Status::Listed), out.unwrap_or(0), "connection failed mid-list", end)
        };
        while let Some(name) = listing.next_name() {
            let entry_len = name.len() + 1;
            written += entry_len as u64;
            if written > total {
                break;
            }
            if at + entry_len > self.buf.len().min(LIST_WRITE_LEN) {
                if let Err(e) = write_all(conn, self.buf.get(..at).unwrap_or(&[])) {
                    return cut(out, SessionEnd::Transport(e));
                }
                out = Some(out.unwrap_or(0) + (at - unsent_from) as u64);
                (at, unsent_from) = (0, 0);
            }
            if let Some(dst) = self.buf.get_mut(at..at + entry_len) {
                let (text, newline) = dst.split_at_mut(name.len());
                text.copy_from_slice(name.as_bytes());
                newline.fill(b'\n');
            }
            at += entry_len;
        }
        if let Err(e) = write_all(conn, self.buf.get(..at).unwrap_or(&[])) {
            return cut(out, SessionEnd::Transport(e));
        }
        if written != total {
            // The store's snapshot disagreed with its own length: the
            // response cannot be framed, so the connection must go.
            let end = SessionEnd::Aborted(StoreError::Changed);
            return Done::cut(Some(Status::Listed), written.min(total), StoreError::Changed.reason(), end);
        }
        Done::answered(Status::Listed, total)
    }

    /// Sends a payload-less response naming the request's file.
    fn respond<C: Write, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
        req: &Current,
        status: Status,
        bytes: u64,
    ) -> Done<C::Error> {
        let response = Response { version: req.version, status, name: req.name.as_bytes(), size: 0 };
        let sent = self.settle(conn, observer).and_then(|()| {
            let n = response.emit(self.buf).map_err(|_| TransportError::WriteZero)?;
            write_all(conn, self.buf.get(..n).unwrap_or(&[]))
        });
        match sent {
            Ok(()) => Done::answered(status, bytes),
            Err(e) => Done::lost("connection failed", SessionEnd::Transport(e)),
        }
    }

    /// Answers 1003 and keeps the session: the request was read whole.
    fn answer_error<C: Write, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
        version: u8,
        reason: &'static str,
    ) -> Done<C::Error> {
        if let Err(e) = self.settle(conn, observer) {
            return Done::lost("connection failed", SessionEnd::Transport(e));
        }
        answer_error(conn, self.buf, version, reason)
    }

    /// Answers 1003 and ends the session: what follows cannot be framed.
    fn refuse<C: Write, O: Observer + ?Sized>(
        &mut self,
        conn: &mut C,
        observer: &mut O,
        version: u8,
        reason: &'static str,
    ) -> Done<C::Error> {
        let mut done = self.answer_error(conn, observer, version, reason);
        done.end.get_or_insert(SessionEnd::Refused);
        done
    }

    fn respond_error<C: Write>(&mut self, conn: &mut C, version: u8, reason: &'static str) -> bool {
        answer_error(conn, self.buf, version, reason).status.is_some()
    }
}

/// Sends 1003 with `reason` as its payload, header and reason in one write.
fn answer_error<C: Write>(conn: &mut C, buf: &mut [u8], version: u8, reason: &'static str) -> Done<C::Error> {
    let bytes = reason.as_bytes();
    let payload = bytes.get(..bytes.len().min(MAX_REASON_LEN)).unwrap_or(&[]);
    let response = Response { version, status: Status::Error, name: b"", size: payload.len() as u32 };
    let sent = response.emit(buf).map_err(|_| TransportError::WriteZero).and_then(|n| {
        let end = n + payload.len();
        if let Some(dst) = buf.get_mut(n..end) {
            dst.copy_from_slice(payload);
        }
        write_all(conn, buf.get(..end).unwrap_or(&[]))
    });
    match sent {
        Ok(()) => Done { reason: Some(reason), ..Done::answered(Status::Error, 0) },
        Err(e) => Done::lost("connection failed", SessionEnd::Transport(e)),
    }
}
