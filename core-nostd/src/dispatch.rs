//! The request dispatcher: serves one connection's requests against a
//! [`Store`] until the session ends, and reports each request's outcome.
//!
//! The dispatcher reads exactly the bytes each request still needs, so it
//! never consumes the next request's bytes; payloads stream through the
//! caller's buffer chunk by chunk. Each response's header and the start of
//! its payload go out in one write, because some clients read the first
//! block with a single `recv` and expect the header to be all there.

use core::any::Any;

use embedded_io::{Read, ReadReady, Write};

use crate::error::{StoreError, TransportError};
use crate::io::write_all;
use crate::session::server::{End, Failed, Need, Sent, ServerSession, StoreCall};
use crate::store::{Listing, Store};
use crate::wire::{
    BufferTooSmall, MAX_FILE_SIZE, MAX_NAME_LEN, Op, PROTOCOL_VERSION, RESPONSE_MAX_HEADER_LEN, Status,
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
/// socket using the kernel's zero-copy path. The store decides whether a
/// file can go that way ([`Store::zero_copy`] lends what the file is, such as
/// an OS file); the transport downcasts it to what it can send from. The
/// provided method declines, and the dispatcher copies through its buffer
/// instead; a transport with nothing better implements this trait with an
/// empty body.
pub trait SendFile: Write {
    /// Sends the next `len` bytes of `source`, adding each byte that went out
    /// to `sent` (so a failure can still say how much was sent). `Ok(false)`:
    /// not supported here (or not for this kind of source), nothing was
    /// sent. A file that ends early is [`StoreError::Changed`].
    fn send_file(
        &mut self,
        source: &mut dyn Any,
        len: u64,
        sent: &mut u64,
    ) -> Result<bool, SendFileError<Self::Error>> {
        let _ = (source, len, sent);
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

/// Serves requests from one connection at a time against a [`Store`].
///
/// The decisions are the session engine's; this loop moves bytes between it,
/// the connection and the store, and holds the store's handles.
pub struct Dispatcher<'b, S: Store> {
    store: S,
    buf: &'b mut [u8],
    config: Config,
}

impl<'b, S: Store> Dispatcher<'b, S> {
    /// A dispatcher streaming through `buf`, which must hold at least
    /// [`DISPATCH_MIN_BUFFER_LEN`] bytes; larger buffers mean fewer reads and
    /// writes per payload.
    pub fn new(store: S, buf: &'b mut [u8], config: Config) -> Result<Self, BufferTooSmall> {
        if buf.len() < DISPATCH_MIN_BUFFER_LEN {
            return Err(BufferTooSmall);
        }
        Ok(Dispatcher { store, buf, config })
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
        C: Read + ReadReady + SendFile,
        O: Observer + ?Sized,
    {
        let mut engine = ServerSession::new(self.config, self.buf.len());
        // The first transport error, which the end reports.
        let mut kept: Option<TransportError<C::Error>> = None;
        let mut upload: Option<S::Upload> = None;
        let mut reader: Option<S::Reader> = None;
        let buf = &mut *self.buf;
        let store = &mut self.store;
        loop {
            match engine.next(buf) {
                Need::Read(len) => {
                    let got = match buf.get_mut(..len) {
                        Some(window) => conn.read(window).map_err(|e| keep(&mut kept, TransportError::Io(e))),
                        None => Err(Failed),
                    };
                    engine.read(buf, got);
                }
                Need::Write { from, to } => match buf.get(from..to) {
                    Some(bytes) => engine.wrote(write_all(conn, bytes).map_err(|e| keep(&mut kept, e))),
                    None => engine.internal(),
                },
                Need::Poll => engine.polled(matches!(conn.read_ready(), Ok(true))),
                Need::Started => {
                    observer.request_started();
                    engine.started();
                }
                Need::Report => {
                    reader = None;
                    observer.request_finished(&engine.outcome(buf));
                    engine.reported();
                }
                Need::Store(call) => {
                    let (user, name, size) = engine.request();
                    match call {
                        StoreCall::BeginUpload => {
                            let begun = store.begin_upload(user, name, size).map(|u| upload = Some(u));
                            engine.begun(begun);
                        }
                        StoreCall::WriteUpload(len) => match (upload.as_mut(), buf.get(..len)) {
                            (Some(u), Some(chunk)) => engine.upload_written(store.write_upload(u, chunk)),
                            _ => engine.internal(),
                        },
                        StoreCall::Commit | StoreCall::CommitDeferred => match upload.take() {
                            Some(u) if call == StoreCall::Commit => {
                                engine.committed(buf, store.commit_upload(u))
                            }
                            Some(u) => engine.committed(buf, store.commit_upload_deferred(u)),
                            None => engine.internal(),
                        },
                        StoreCall::Abort => {
                            if let Some(u) = upload.take() {
                                store.abort_upload(u);
                            }
                            engine.aborted();
                        }
                        StoreCall::Sync => engine.synced(store.sync()),
                        StoreCall::Open => {
                            let opened = store.open(user, name).map(|(r, size)| {
                                reader = Some(r);
                                size
                            });
                            engine.opened(buf, opened);
                        }
                        StoreCall::ReadFile { from, to } => match (reader.as_mut(), buf.get_mut(from..to)) {
                            (Some(r), Some(window)) => engine.file_read(store.read(r, window)),
                            _ => engine.internal(),
                        },
                        StoreCall::SendFile(len) => {
                            let mut moved = 0;
                            let sent = match reader.as_mut().and_then(|r| store.zero_copy(r)) {
                                None => Sent::Declined,
                                Some(source) => match conn.send_file(source, len, &mut moved) {
                                    Ok(true) => Sent::All,
                                    Ok(false) => Sent::Declined,
                                    Err(SendFileError::Transport(e)) => {
                                        keep(&mut kept, TransportError::Io(e));
                                        Sent::Transport
                                    }
                                    Err(SendFileError::Source(e)) => Sent::Source(e),
                                },
                            };
                            engine.file_sent(sent, moved);
                        }
                        StoreCall::Delete => engine.deleted(store.delete(user, name)),
                        StoreCall::List => list(store, conn, buf, &mut engine, &mut kept),
                        // Names are taken only while the listing is open.
                        StoreCall::NextName => engine.internal(),
                    }
                }
                Need::End(end) => {
                    if let Some(u) = upload.take() {
                        store.abort_upload(u);
                    }
                    return session_end(end, kept);
                }
            }
        }
    }
}

/// Serves a list request: the listing borrows the store, so its names are
/// taken here while the engine streams them.
fn list<S: Store, C: Write>(
    store: &mut S,
    conn: &mut C,
    buf: &mut [u8],
    engine: &mut ServerSession,
    kept: &mut Option<TransportError<C::Error>>,
) {
    let (user, ..) = engine.request();
    let mut listing = match store.list(user) {
        Ok(listing) => listing,
        Err(e) => return engine.listed(buf, Err(e)),
    };
    engine.listed(buf, Ok(listing.payload_len()));
    while engine.listing() {
        match engine.next(buf) {
            Need::Store(StoreCall::NextName) => {
                let name = listing.next_name().map(str::as_bytes);
                engine.next_name(buf, name);
            }
            Need::Write { from, to } => match buf.get(from..to) {
                Some(bytes) => engine.wrote(write_all(conn, bytes).map_err(|e| keep(kept, e))),
                None => engine.internal(),
            },
            _ => engine.internal(),
        }
    }
}

/// Keeps the first transport error, which the session's end reports.
fn keep<E>(kept: &mut Option<TransportError<E>>, e: TransportError<E>) -> Failed {
    kept.get_or_insert(e);
    Failed
}

/// The engine's end, with the transport error the shell kept.
fn session_end<E>(end: End, kept: Option<TransportError<E>>) -> SessionEnd<E> {
    match end {
        End::Closed => SessionEnd::Closed,
        End::Padding => SessionEnd::Padding,
        End::Refused => SessionEnd::Refused,
        End::Truncated => SessionEnd::Truncated,
        // A transport end with no error kept is the engine's own mistake.
        End::Transport => kept.map_or(SessionEnd::Internal, SessionEnd::Transport),
        End::Aborted(e) => SessionEnd::Aborted(e),
        End::Internal => SessionEnd::Internal,
    }
}
