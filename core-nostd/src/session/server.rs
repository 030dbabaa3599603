//! The server's decisions: how requests follow one another, which version
//! answers, when a backup's 212 may be held for a shared sync (group commit)
//! and when held 212s must go out (before waiting for input, and before any
//! restore, delete, list or error response), what a failure answers and
//! which end a session gets, and what the log hears of each request.
//!
//! The machine holds no socket, file, clock or store. [`ServerSession::next`]
//! says what it needs; the shell (the [`Dispatcher`](crate::Dispatcher))
//! does it, with the caller's buffer and the store's handles (upload, reader,
//! listing), and tells the machine what happened. Buffer positions are
//! index ranges into that buffer, which the shell owns.

use super::held::Held;
use crate::codec::{Decoded, RequestDecoder, RequestEnd};
use crate::dispatch::{
    Config, DISPATCH_MIN_BUFFER_LEN, GROUP_COMMIT_AREA_LEN, LIST_WRITE_LEN, Outcome, REASON_TOO_LARGE,
};
use crate::error::StoreError;
use crate::wire::{LEGACY_VERSION, MAX_NAME_LEN, MAX_REASON_LEN, NameBuf, Op, Response, Status};

/// Reason logged when the machine's own invariant breaks.
const REASON_INTERNAL: &str = "internal error";

/// How a session ended, before the shell adds the transport error it kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Closed,
    Padding,
    Refused,
    Truncated,
    /// The transport failed; the shell kept the error.
    Transport,
    Aborted(StoreError),
    Internal,
}

/// What the machine needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Read once into `buf[..len]`, then [`ServerSession::read`].
    Read(usize),
    /// Write `buf[from..to]` whole, then [`ServerSession::wrote`].
    Write { from: usize, to: usize },
    /// Ask, without waiting, whether input is waiting, then
    /// [`ServerSession::polled`] (a failed poll: nothing is).
    Poll,
    /// Tell the observer a request started, then [`ServerSession::started`].
    Started,
    /// Tell the observer [`ServerSession::outcome`], then
    /// [`ServerSession::reported`]. The request's handles (reader) go.
    Report,
    /// Call the store, then the method the call names.
    Store(StoreCall),
    /// The session is over.
    End(End),
}

/// A store call, on the request's user, name and size
/// ([`ServerSession::request`]) and the handles the shell holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreCall {
    /// `begin_upload`, then [`ServerSession::begun`].
    BeginUpload,
    /// `write_upload` of `buf[..len]`, then [`ServerSession::upload_written`].
    WriteUpload(usize),
    /// `commit_upload`, then [`ServerSession::committed`].
    Commit,
    /// `commit_upload_deferred`, then [`ServerSession::committed`].
    CommitDeferred,
    /// `abort_upload`, then [`ServerSession::aborted`].
    Abort,
    /// `sync`, then [`ServerSession::synced`].
    Sync,
    /// `open`, keeping the reader, then [`ServerSession::opened`].
    Open,
    /// `read` of the reader into `buf[from..to]`, then [`ServerSession::file_read`].
    ReadFile { from: usize, to: usize },
    /// Offer the next `len` bytes of the reader to the transport's zero-copy
    /// path, then [`ServerSession::file_sent`].
    SendFile(u64),
    /// `delete`, then [`ServerSession::deleted`].
    Delete,
    /// `list`, keeping the listing while [`ServerSession::listing`], then
    /// [`ServerSession::listed`].
    List,
    /// The listing's next name, then [`ServerSession::next_name`].
    NextName,
}

/// How the zero-copy offer went, besides the bytes it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// All of it went out.
    All,
    /// Not supported here: nothing went out.
    Declined,
    /// The transport failed; the shell kept the error.
    Transport,
    /// Reading the file failed.
    Source(StoreError),
}

/// The shell's I/O failed; it kept the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed;

/// What a request came to: the status sent and whether the session goes on.
#[derive(Debug, Clone, Copy)]
struct Done {
    status: Option<Status>,
    bytes: u64,
    reason: Option<&'static str>,
    end: Option<End>,
}

impl Done {
    fn answered(status: Status, bytes: u64) -> Self {
        Done { status: Some(status), bytes, reason: None, end: None }
    }

    /// The session ended inside a request after `bytes` of its payload
    /// moved; `status` is the header already sent, if one was.
    fn cut(status: Option<Status>, bytes: u64, reason: &'static str, end: End) -> Self {
        Done { status, bytes, reason: Some(reason), end: Some(end) }
    }

    fn lost(reason: &'static str, end: End) -> Self {
        Self::cut(None, 0, reason, end)
    }
}

/// The request being served, copied out of the decoder.
#[derive(Debug, Clone, Copy)]
struct Current {
    user: u32,
    version: u8,
    op: Op,
    name: NameBuf,
    size: u32,
}

/// A payload-less response, or a 1003 with its reason, to send once the
/// held 212s are out.
#[derive(Debug, Clone, Copy)]
struct Reply {
    version: u8,
    status: Status,
    /// For 1003: the reason sent and logged.
    reason: Option<&'static str>,
    /// Payload bytes to log (a backup's 212).
    bytes: u64,
    /// Whether the response names the request's file.
    named: bool,
    /// The end that follows, if the session cannot go on.
    end: Option<End>,
    /// The request failed before its header was whole: the log hears of it
    /// from the decoder's bytes, and the session ends refused even if the
    /// 1003 could not be sent.
    unparsed: bool,
}

/// Where to go once the held 212s are out (or could not be sent).
#[derive(Debug, Clone, Copy)]
enum Resume {
    ReadHeader,
    ReadPayload,
    CommitDeferred,
    Open,
    Delete,
    List,
    Reply(Reply),
    End(End),
}

/// What the next report is about.
#[derive(Debug, Clone, Copy)]
enum Note {
    Request(Done),
    /// A request that failed before its header was whole.
    Unparsed {
        status: Option<Status>,
        reason: &'static str,
    },
    /// Held 212 `index` of the flush, `at` bytes into its 212s.
    Held {
        at: usize,
        index: usize,
        status: Option<Status>,
        reason: Option<&'static str>,
    },
}

/// Sending the held 212s: sync, one write, then each one's report.
#[derive(Debug, Clone, Copy)]
struct Flush {
    taken: (usize, usize),
    count: usize,
    index: usize,
    at: usize,
    /// The header length of entry `index`, once known.
    entry_len: usize,
    synced: Result<(), StoreError>,
    /// The write failed: the rest are reported unsent.
    failed: bool,
    resume: Resume,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Sync,
    Write,
    /// Report entry `index`, or answer it 1003 first (the sync failed).
    Each,
    /// Entry `index`'s 1003, `buf[..len]`, is being written.
    AnswerOut(usize),
    /// Entry `index` is being reported.
    Report,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading the header; `polled`: a poll found input waiting.
    Header {
        polled: bool,
    },
    Begin,
    /// Reading the payload; `polled` as for the header.
    Payload {
        polled: bool,
    },
    /// `len` payload bytes are being stored.
    Storing(usize),
    Commit {
        deferred: bool,
    },
    /// The upload is being discarded; then `then` (a reply, or the report).
    Abort(AbortThen),
    Open,
    /// The first chunk is read behind the 210's header, up to `to`.
    First {
        to: usize,
    },
    /// The 210's header and first chunk are being written.
    FirstOut,
    SendFile,
    CopyRead,
    CopyOut(usize),
    Delete,
    List,
    /// Names are gathered into the buffer after `at`.
    Listing,
    /// `buf[..at]` of a list is being written; `last`: the payload is complete.
    ListOut {
        last: bool,
    },
    /// `reply` is to be written into the buffer, then sent.
    Replying(Reply),
    /// `buf[..len]` holds `reply`, being written.
    ReplyOut(Reply, usize),
    Flushing(Step),
    Report {
        end: Option<End>,
    },
    /// The session ends once the held 212s are out.
    Ending(End),
    Over(End),
}

#[derive(Debug, Clone, Copy)]
enum AbortThen {
    Finish(Done),
    Reply(Reply),
}

/// One connection's session as the server sees it.
pub(crate) struct ServerSession {
    config: Config,
    /// The streaming part of the buffer: `buf[..main]`; the rest is the
    /// held 212s' area.
    main: usize,
    held: Held,
    decoder: RequestDecoder,
    state: State,
    req: Current,
    /// The observer has not yet heard that the request started.
    announce: bool,
    started: bool,
    upload_open: bool,
    /// The status header already out for this request (a 210 or 211).
    header_out: Option<Status>,
    /// Payload bytes received (backup) or sent (restore, list).
    moved: u64,
    /// Restore: the file's size; list: the payload's.
    total: u64,
    /// The buffer is filled up to here (restore's first chunk, list).
    at: usize,
    /// List: payload bytes gathered, and bytes of the buffer that are header.
    gathered: u64,
    unsent_from: usize,
    flush: Flush,
    note: Note,
}

impl ServerSession {
    /// A session streaming through a buffer of `buf_len` bytes, of which the
    /// end is set aside for group commit when `config` asks and it fits.
    pub(crate) fn new(config: Config, buf_len: usize) -> Self {
        let area = if config.group_commit && buf_len >= DISPATCH_MIN_BUFFER_LEN + GROUP_COMMIT_AREA_LEN {
            GROUP_COMMIT_AREA_LEN
        } else {
            0
        };
        let main = buf_len - area;
        let mut session = ServerSession {
            config,
            main,
            held: Held::new(main, area),
            decoder: RequestDecoder::new(),
            state: State::Header { polled: false },
            req: Current { user: 0, version: 0, op: Op::List, name: NameBuf::new(), size: 0 },
            announce: false,
            started: false,
            upload_open: false,
            header_out: None,
            moved: 0,
            total: 0,
            at: 0,
            gathered: 0,
            unsent_from: 0,
            flush: Flush {
                taken: (0, 0),
                count: 0,
                index: 0,
                at: 0,
                entry_len: 0,
                synced: Ok(()),
                failed: false,
                resume: Resume::End(End::Internal),
            },
            note: Note::Unparsed { status: None, reason: REASON_INTERNAL },
        };
        session.start_request();
        session
    }

    /// The request's user, name and size, for the store calls.
    pub(crate) fn request(&self) -> (u32, &str, u32) {
        (self.req.user, self.req.name.as_str(), self.req.size)
    }

    /// Whether the shell must keep the listing open.
    pub(crate) fn listing(&self) -> bool {
        matches!(self.state, State::Listing | State::ListOut { last: false })
    }

    /// What the shell does next. Asking again without telling the machine
    /// anything returns the same need.
    pub(crate) fn next(&mut self, buf: &mut [u8]) -> Need {
        if self.announce {
            return Need::Started;
        }
        loop {
            return match self.state {
                State::Header { polled } => {
                    let want = self.decoder.needed().min(self.main);
                    if want == 0 {
                        self.dispatch();
                        continue;
                    }
                    // Hold 212s only while the client has more for us:
                    // before waiting for input, make them durable and send
                    // them. Before every read, not only the first: a request
                    // can arrive in pieces.
                    if self.held.count() > 0 && !polled { Need::Poll } else { Need::Read(want) }
                }
                State::Begin => Need::Store(StoreCall::BeginUpload),
                State::Payload { polled } => {
                    if self.decoder.is_complete() {
                        self.complete_upload();
                        continue;
                    }
                    // Earlier backups' 212s do not wait for this payload to
                    // trickle in.
                    if self.held.count() > 0 && !polled {
                        Need::Poll
                    } else {
                        Need::Read(self.decoder.needed().min(self.main))
                    }
                }
                State::Storing(len) => Need::Store(StoreCall::WriteUpload(len)),
                State::Commit { deferred: false } => Need::Store(StoreCall::Commit),
                State::Commit { deferred: true } => Need::Store(StoreCall::CommitDeferred),
                State::Abort(_) => Need::Store(StoreCall::Abort),
                State::Open => Need::Store(StoreCall::Open),
                State::First { to } if self.at < to => Need::Store(StoreCall::ReadFile { from: self.at, to }),
                State::First { .. } => {
                    self.state = State::FirstOut;
                    continue;
                }
                State::FirstOut => Need::Write { from: 0, to: self.at },
                State::SendFile => Need::Store(StoreCall::SendFile(self.total.saturating_sub(self.moved))),
                State::CopyRead if self.moved < self.total => {
                    let left = usize::try_from(self.total - self.moved).unwrap_or(usize::MAX);
                    Need::Store(StoreCall::ReadFile { from: 0, to: self.main.min(left) })
                }
                State::CopyRead => {
                    self.finish(Done::answered(Status::Restored, self.moved));
                    continue;
                }
                State::CopyOut(n) => Need::Write { from: 0, to: n },
                State::Delete => Need::Store(StoreCall::Delete),
                State::List => Need::Store(StoreCall::List),
                State::Listing => {
                    // Room for the longest entry, or write what is gathered
                    // first: a name is taken only when it fits.
                    if self.at + MAX_NAME_LEN + 1 > self.main.min(LIST_WRITE_LEN) {
                        self.state = State::ListOut { last: false };
                        continue;
                    }
                    Need::Store(StoreCall::NextName)
                }
                State::ListOut { .. } => Need::Write { from: 0, to: self.at },
                State::Replying(reply) => {
                    match emit_reply(buf.get_mut(..self.main), &reply, self.req.name.as_bytes()) {
                        Some(len) => self.state = State::ReplyOut(reply, len),
                        None => self.internal(),
                    }
                    continue;
                }
                State::ReplyOut(_, len) => Need::Write { from: 0, to: len },
                State::Flushing(step) => match self.flush_need(buf, step) {
                    Some(need) => need,
                    None => continue,
                },
                State::Report { .. } => Need::Report,
                State::Ending(end) => {
                    // Every response path sends held 212s first, so what is
                    // left belongs before the end: a client that half-closed
                    // after pipelining still hears them.
                    self.start_flush(Resume::End(end));
                    continue;
                }
                State::Over(end) => Need::End(end),
            };
        }
    }

    /// The observer heard that the request started.
    pub(crate) fn started(&mut self) {
        self.announce = false;
    }

    /// A read into `buf[..len]` (the last [`Need::Read`]) returned `n`
    /// bytes, or failed.
    pub(crate) fn read(&mut self, buf: &[u8], n: Result<usize, Failed>) {
        match self.state {
            State::Header { .. } => self.header_read(buf, n),
            State::Payload { .. } => self.payload_read(buf, n),
            _ => self.internal(),
        }
    }

    fn header_read(&mut self, buf: &[u8], n: Result<usize, Failed>) {
        let n = match n {
            Ok(0) => {
                match self.decoder.finish() {
                    RequestEnd::Clean => self.end(End::Closed),
                    RequestEnd::Truncated => {
                        self.report_unparsed(None, "connection closed mid-request", End::Truncated);
                    }
                }
                return;
            }
            Ok(n) => n,
            Err(Failed) => return self.end(End::Transport),
        };
        if !self.started {
            self.started = true;
            self.announce = true;
        }
        let Some(input) = buf.get(..n) else { return self.end(End::Internal) };
        match self.decoder.feed(input) {
            Ok((_, Decoded::Header)) => self.dispatch(),
            Ok((_, Decoded::EndOfSession)) => self.end(End::Padding),
            Ok((_, Decoded::Partial | Decoded::Payload(_))) => self.state = State::Header { polled: false },
            Err(e) => {
                let version = self.decoder.view().version().clamp(LEGACY_VERSION, self.config.version);
                let reply = Reply { unparsed: true, ..error_reply(version, e.reason(), Some(End::Refused)) };
                self.start_flush(Resume::Reply(reply));
            }
        }
    }

    fn payload_read(&mut self, buf: &[u8], n: Result<usize, Failed>) {
        let done = match n {
            Ok(0) => Done::cut(None, self.moved, "connection closed mid-upload", End::Truncated),
            Ok(n) => {
                let chunk = match buf.get(..n).map(|input| self.decoder.feed(input)) {
                    Some(Ok((_, Decoded::Payload(chunk)))) => chunk.len(),
                    _ => 0,
                };
                self.state =
                    if chunk == 0 { State::Payload { polled: false } } else { State::Storing(chunk) };
                return;
            }
            Err(Failed) => Done::cut(None, self.moved, "connection failed mid-upload", End::Transport),
        };
        self.abort_then(AbortThen::Finish(done));
    }

    /// A write of the last [`Need::Write`] went out whole, or failed.
    pub(crate) fn wrote(&mut self, result: Result<(), Failed>) {
        let ok = result.is_ok();
        match self.state {
            State::FirstOut if ok => {
                self.header_out = Some(Status::Restored);
                self.moved = (self.at - self.unsent_from) as u64;
                self.state = if self.moved < self.total { State::SendFile } else { State::CopyRead };
            }
            State::FirstOut => self.finish(Done::lost("connection failed mid-restore", End::Transport)),
            State::CopyOut(n) if ok => {
                self.moved += n as u64;
                self.state = State::CopyRead;
            }
            State::CopyOut(_) => self.finish(self.cut("connection failed mid-restore", End::Transport)),
            State::ListOut { last } if ok => {
                self.header_out = Some(Status::Listed);
                self.moved += (self.at - self.unsent_from) as u64;
                self.at = 0;
                self.unsent_from = 0;
                if last {
                    self.list_complete();
                } else {
                    self.state = State::Listing;
                }
            }
            State::ListOut { .. } => self.finish(self.cut("connection failed mid-list", End::Transport)),
            State::ReplyOut(reply, _) => self.replied(reply, ok),
            State::Flushing(Step::Write) => {
                self.flush.failed = !ok;
                self.state = State::Flushing(Step::Each);
            }
            State::Flushing(Step::AnswerOut(_)) => {
                let (status, reason) = match self.flush.synced {
                    Err(e) if ok => (Some(Status::Error), Some(e.reason())),
                    _ => {
                        self.flush.failed = true;
                        (None, Some("connection failed"))
                    }
                };
                self.report_held(status, reason);
            }
            _ => self.internal(),
        }
    }

    /// The poll of the last [`Need::Poll`]: whether input is waiting.
    pub(crate) fn polled(&mut self, waiting: bool) {
        match self.state {
            State::Header { .. } if waiting => self.state = State::Header { polled: true },
            State::Header { .. } => self.start_flush(Resume::ReadHeader),
            State::Payload { .. } if waiting => self.state = State::Payload { polled: true },
            State::Payload { .. } => self.start_flush(Resume::ReadPayload),
            _ => self.internal(),
        }
    }

    /// The observer heard of [`outcome`](Self::outcome).
    pub(crate) fn reported(&mut self) {
        match self.state {
            State::Report { end: Some(end) } => self.end(end),
            State::Report { end: None } => self.start_request(),
            State::Flushing(Step::Report) => {
                self.flush.index += 1;
                self.flush.at += self.flush.entry_len;
                self.state = State::Flushing(Step::Each);
            }
            _ => self.internal(),
        }
    }

    /// What the log hears of the request (or held backup) just finished.
    pub(crate) fn outcome<'a>(&'a self, buf: &'a [u8]) -> Outcome<'a> {
        match self.note {
            Note::Request(done) => Outcome {
                user_id: self.req.user,
                op: self.req.op,
                name: self.req.name.as_str(),
                status: done.status,
                bytes: done.bytes,
                reason: done.reason,
            },
            Note::Unparsed { status, reason } => {
                let view = self.decoder.view();
                Outcome {
                    user_id: view.user_id(),
                    op: view.op(),
                    name: "",
                    status,
                    bytes: 0,
                    reason: Some(reason),
                }
            }
            Note::Held { at, index, status, reason } => {
                let taken = self.flush.taken.0..self.flush.taken.1;
                let entry = self.held.entry(buf, &taken, at, index);
                let name = core::str::from_utf8(entry.name).unwrap_or("");
                Outcome { user_id: entry.user, op: Op::Backup, name, status, bytes: entry.bytes, reason }
            }
        }
    }

    /// `begin_upload` returned.
    pub(crate) fn begun(&mut self, result: Result<(), StoreError>) {
        match result {
            Ok(()) => {
                self.upload_open = true;
                self.moved = 0;
                self.state = State::Payload { polled: false };
            }
            Err(e) => self.answer_error(e.reason(), Some(End::Refused)),
        }
    }

    /// `write_upload` of the last chunk returned.
    pub(crate) fn upload_written(&mut self, result: Result<(), StoreError>) {
        let State::Storing(len) = self.state else { return self.internal() };
        match result {
            Ok(()) => {
                self.moved += len as u64;
                self.state = State::Payload { polled: false };
            }
            // The client is still sending: answer now, then drain.
            Err(e) => self.abort_then(AbortThen::Reply(error_reply(
                self.req.version,
                e.reason(),
                Some(End::Refused),
            ))),
        }
    }

    /// `commit_upload` or `commit_upload_deferred` returned; the upload is
    /// the store's either way. A deferred one's 212 goes into `buf`'s area.
    pub(crate) fn committed(&mut self, buf: &mut [u8], result: Result<(), StoreError>) {
        let State::Commit { deferred } = self.state else { return self.internal() };
        self.upload_open = false;
        match result {
            Ok(()) if !deferred => self.respond(Status::Done, self.moved, true),
            Ok(()) => {
                let ack = Response {
                    version: self.req.version,
                    status: Status::Done,
                    name: self.req.name.as_bytes(),
                    size: 0,
                };
                if self.held.push(buf, &ack, self.req.user, self.moved) {
                    // Its outcome is reported when the held answers go out,
                    // with the status actually sent.
                    self.start_request();
                } else {
                    self.internal();
                }
            }
            // The request was read whole, so the session can go on.
            Err(e) => self.answer_error(e.reason(), None),
        }
    }

    /// The upload was discarded.
    pub(crate) fn aborted(&mut self) {
        let State::Abort(then) = self.state else { return self.internal() };
        self.upload_open = false;
        match then {
            AbortThen::Finish(done) => self.finish(done),
            AbortThen::Reply(reply) => self.start_flush(Resume::Reply(reply)),
        }
    }

    /// `sync` returned.
    pub(crate) fn synced(&mut self, result: Result<(), StoreError>) {
        let State::Flushing(Step::Sync) = self.state else { return self.internal() };
        self.flush.synced = result;
        self.state = State::Flushing(if result.is_ok() { Step::Write } else { Step::Each });
    }

    /// `open` returned the file's size; the 210's header goes into `buf`.
    pub(crate) fn opened(&mut self, buf: &mut [u8], result: Result<u32, StoreError>) {
        let size = match result {
            Ok(size) => size,
            Err(StoreError::NotFound) => return self.respond(Status::NotFound, 0, true),
            Err(e) => return self.answer_error(e.reason(), None),
        };
        let header = Response {
            version: self.req.version,
            status: Status::Restored,
            name: self.req.name.as_bytes(),
            size,
        };
        let Some(header_len) = buf.get_mut(..self.main).and_then(|main| header.emit(main).ok()) else {
            return self.internal();
        };
        // The first chunk rides with the header; nothing is sent until it is
        // read, so a failure here can still be answered with 1003.
        self.total = u64::from(size);
        self.moved = 0;
        self.at = header_len;
        self.unsent_from = header_len;
        let to = self.main.min(header_len.saturating_add(size as usize));
        self.state = State::First { to };
    }

    /// `read` of the reader returned.
    pub(crate) fn file_read(&mut self, result: Result<usize, StoreError>) {
        match (self.state, result) {
            (State::First { .. }, Ok(0)) => self.answer_error(StoreError::Changed.reason(), None),
            (State::First { to }, Ok(n)) if self.at + n <= to => self.at += n,
            (State::First { .. }, Err(e)) => self.answer_error(e.reason(), None),
            // From here on the 210 is out: a failure is logged with it and
            // with the payload bytes that went out before it.
            (State::CopyRead, Ok(0)) => {
                let e = StoreError::Changed;
                self.finish(self.cut(e.reason(), End::Aborted(e)));
            }
            (State::CopyRead, Ok(n)) if n <= self.main => self.state = State::CopyOut(n),
            (State::CopyRead, Err(e)) => self.finish(self.cut(e.reason(), End::Aborted(e))),
            _ => self.internal(),
        }
    }

    /// The zero-copy offer came back, having moved `moved` bytes.
    pub(crate) fn file_sent(&mut self, sent: Sent, moved: u64) {
        let State::SendFile = self.state else { return self.internal() };
        self.moved += moved;
        match sent {
            Sent::All => {
                self.moved = self.total;
                self.finish(Done::answered(Status::Restored, self.moved));
            }
            Sent::Declined => self.state = State::CopyRead,
            Sent::Transport => self.finish(self.cut("connection failed mid-restore", End::Transport)),
            Sent::Source(e) => self.finish(self.cut(e.reason(), End::Aborted(e))),
        }
    }

    /// `delete` returned.
    pub(crate) fn deleted(&mut self, result: Result<(), StoreError>) {
        match result {
            Ok(()) => self.respond(Status::Done, 0, true),
            Err(StoreError::NotFound) => self.respond(Status::NotFound, 0, true),
            Err(e) => self.answer_error(e.reason(), None),
        }
    }

    /// `list` returned the listing's payload length; the 211's header goes
    /// into `buf`.
    pub(crate) fn listed(&mut self, buf: &mut [u8], result: Result<u64, StoreError>) {
        let total = match result {
            Ok(0) => return self.respond(Status::NoFiles, 0, false),
            Ok(total) => total,
            Err(e) => return self.answer_error(e.reason(), None),
        };
        let Ok(size) = u32::try_from(total) else {
            return self.answer_error("too many files to list", None);
        };
        let header = Response { version: self.req.version, status: Status::Listed, name: b"", size };
        let Some(header_len) = buf.get_mut(..self.main).and_then(|main| header.emit(main).ok()) else {
            return self.internal();
        };
        self.total = total;
        self.moved = 0;
        self.gathered = 0;
        self.at = header_len;
        // Payload bytes already out are counted from here, so that a
        // failure is logged with what went out.
        self.unsent_from = header_len;
        self.state = State::Listing;
    }

    /// The listing's next name (`None`: it has no more), copied into `buf`.
    pub(crate) fn next_name(&mut self, buf: &mut [u8], name: Option<&[u8]>) {
        let State::Listing = self.state else { return self.internal() };
        let Some(name) = name else {
            self.state = State::ListOut { last: true };
            return;
        };
        let entry_len = name.len() + 1;
        self.gathered += entry_len as u64;
        if self.gathered > self.total {
            self.state = State::ListOut { last: true };
            return;
        }
        let Some(dst) = buf.get_mut(self.at..self.at + entry_len) else { return self.internal() };
        let (text, newline) = dst.split_at_mut(name.len());
        text.copy_from_slice(name);
        newline.fill(b'\n');
        self.at += entry_len;
    }

    /// The shell could not do what was asked (a handle it should hold is
    /// missing, a range is outside its buffer): the machine's invariant broke.
    pub(crate) fn internal(&mut self) {
        let done = self.cut(REASON_INTERNAL, End::Internal);
        if self.upload_open {
            self.abort_then(AbortThen::Finish(done));
        } else {
            self.finish(done);
        }
    }

    fn start_request(&mut self) {
        self.decoder.reset();
        self.started = false;
        self.header_out = None;
        self.moved = 0;
        self.state = State::Header { polled: false };
    }

    /// The header is whole: serve the request it asks for.
    fn dispatch(&mut self) {
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
            return self.end(End::Internal);
        };
        self.req = req;
        match req.op {
            Op::Backup if req.size > self.config.max_file_size => {
                self.answer_error(REASON_TOO_LARGE, Some(End::Refused));
            }
            Op::Backup => self.state = State::Begin,
            Op::Restore => self.start_flush(Resume::Open),
            // A held backup of this name must land before it is deleted.
            Op::Delete => self.start_flush(Resume::Delete),
            Op::List => self.start_flush(Resume::List),
            // The decoder refuses unknown ops before the header completes.
            Op::Unknown(_) => self.finish(Done::lost("unknown op", End::Refused)),
        }
    }

    fn complete_upload(&mut self) {
        if !self.held.enabled() {
            self.state = State::Commit { deferred: false };
        } else if !self.held.has_room() {
            self.start_flush(Resume::CommitDeferred);
        } else {
            self.state = State::Commit { deferred: true };
        }
    }

    fn list_complete(&mut self) {
        if self.gathered != self.total {
            // The store's snapshot disagreed with its own length: the
            // response cannot be framed, so the connection must go.
            let e = StoreError::Changed;
            let done =
                Done::cut(Some(Status::Listed), self.gathered.min(self.total), e.reason(), End::Aborted(e));
            return self.finish(done);
        }
        self.finish(Done::answered(Status::Listed, self.total));
    }

    /// The request ends inside it, with what it moved so far.
    fn cut(&self, reason: &'static str, end: End) -> Done {
        Done::cut(self.header_out, self.moved, reason, end)
    }

    fn abort_then(&mut self, then: AbortThen) {
        self.state = State::Abort(then);
    }

    fn finish(&mut self, done: Done) {
        self.note = Note::Request(done);
        self.state = State::Report { end: done.end };
    }

    fn report_unparsed(&mut self, status: Option<Status>, reason: &'static str, end: End) {
        self.note = Note::Unparsed { status, reason };
        self.state = State::Report { end: Some(end) };
    }

    fn end(&mut self, end: End) {
        self.state = State::Ending(end);
    }

    /// Sends a payload-less response once the held 212s are out.
    fn respond(&mut self, status: Status, bytes: u64, named: bool) {
        let reply = Reply {
            version: self.req.version,
            status,
            reason: None,
            bytes,
            named,
            end: None,
            unparsed: false,
        };
        self.start_flush(Resume::Reply(reply));
    }

    /// The one way to answer 1003: once the held 212s are out, with `reason`
    /// as the payload. `end`: what follows cannot be framed (the payload is
    /// still coming), so the session ends after the answer.
    fn answer_error(&mut self, reason: &'static str, end: Option<End>) {
        let reply = error_reply(self.req.version, reason, end);
        self.start_flush(Resume::Reply(reply));
    }

    fn replied(&mut self, reply: Reply, ok: bool) {
        if reply.unparsed {
            let reason = reply.reason.unwrap_or(REASON_INTERNAL);
            self.report_unparsed(ok.then_some(Status::Error), reason, End::Refused);
            return;
        }
        let done = if ok {
            Done { status: Some(reply.status), bytes: reply.bytes, reason: reply.reason, end: reply.end }
        } else {
            Done::lost("connection failed", End::Transport)
        };
        self.finish(done);
    }

    /// Sends the held 212s (after the store's sync) before anything else
    /// goes out, then goes on as `resume` says.
    fn start_flush(&mut self, resume: Resume) {
        if self.held.count() == 0 {
            return self.resume(resume, true);
        }
        let (taken, count) = self.held.take();
        let taken = (taken.start, taken.end);
        self.flush =
            Flush { taken, count, index: 0, at: 0, entry_len: 0, synced: Ok(()), failed: false, resume };
        self.state = State::Flushing(Step::Sync);
    }

    fn flush_need(&mut self, buf: &mut [u8], step: Step) -> Option<Need> {
        let Flush { taken, count, index, at, synced, failed, resume, .. } = self.flush;
        match step {
            Step::Sync => Some(Need::Store(StoreCall::Sync)),
            Step::Write => Some(Need::Write { from: taken.0, to: taken.1 }),
            Step::Each if index == count => {
                self.resume(resume, !failed);
                None
            }
            Step::Each => {
                let entry = self.held.entry(buf, &(taken.0..taken.1), at, index);
                self.flush.entry_len = entry.header_len;
                let version = entry.version.max(LEGACY_VERSION);
                match synced {
                    _ if failed => self.report_held(None, Some("connection failed")),
                    Ok(()) => self.report_held(Some(Status::Done), None),
                    Err(e) => {
                        let reply = error_reply(version, e.reason(), None);
                        match emit_reply(buf.get_mut(..self.main), &reply, b"") {
                            Some(len) => self.state = State::Flushing(Step::AnswerOut(len)),
                            // No 1003 can be framed: the session cannot go on.
                            None => {
                                self.flush.failed = true;
                                self.report_held(None, Some(REASON_INTERNAL));
                            }
                        }
                    }
                }
                None
            }
            Step::AnswerOut(len) => Some(Need::Write { from: 0, to: len }),
            Step::Report => Some(Need::Report),
        }
    }

    fn report_held(&mut self, status: Option<Status>, reason: Option<&'static str>) {
        let Flush { at, index, .. } = self.flush;
        self.note = Note::Held { at, index, status, reason };
        self.state = State::Flushing(Step::Report);
    }

    fn resume(&mut self, resume: Resume, ok: bool) {
        match (resume, ok) {
            (Resume::ReadHeader, true) => self.state = State::Header { polled: true },
            (Resume::ReadHeader, false) => self.end(End::Transport),
            (Resume::ReadPayload, true) => self.state = State::Payload { polled: true },
            (Resume::ReadPayload, false) => {
                let done = Done::cut(None, self.moved, "connection failed mid-upload", End::Transport);
                self.abort_then(AbortThen::Finish(done));
            }
            (Resume::CommitDeferred, true) => self.state = State::Commit { deferred: true },
            (Resume::CommitDeferred, false) => {
                self.abort_then(AbortThen::Finish(Done::lost("connection failed", End::Transport)));
            }
            (Resume::Open, true) => self.state = State::Open,
            (Resume::Delete, true) => self.state = State::Delete,
            (Resume::List, true) => self.state = State::List,
            (Resume::Reply(reply), true) => self.state = State::Replying(reply),
            (Resume::Reply(Reply { unparsed: true, .. }), false) => self.end(End::Transport),
            (Resume::Open | Resume::Delete | Resume::List | Resume::Reply(_), false) => {
                self.finish(Done::lost("connection failed", End::Transport));
            }
            (Resume::End(end), true) => self.state = State::Over(end),
            (Resume::End(end), false) => {
                self.state = State::Over(if end == End::Transport { end } else { End::Transport })
            }
        }
    }
}

/// Writes `reply` into `main` (the streaming part of the buffer), naming
/// `name` if the reply does; returns its length.
fn emit_reply(main: Option<&mut [u8]>, reply: &Reply, name: &[u8]) -> Option<usize> {
    let main = main?;
    let payload = match reply.reason {
        Some(reason) if reply.status == Status::Error => {
            let bytes = reason.as_bytes();
            bytes.get(..bytes.len().min(MAX_REASON_LEN)).unwrap_or(&[])
        }
        _ => &[],
    };
    let name = if reply.named { name } else { b"" };
    let response =
        Response { version: reply.version, status: reply.status, name, size: payload.len() as u32 };
    let n = response.emit(main).ok()?;
    main.get_mut(n..n + payload.len())?.copy_from_slice(payload);
    Some(n + payload.len())
}

/// A 1003 with `reason`, logged as sent.
fn error_reply(version: u8, reason: &'static str, end: Option<End>) -> Reply {
    Reply {
        version,
        status: Status::Error,
        reason: Some(reason),
        bytes: 0,
        named: false,
        end,
        unparsed: false,
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::codec::ResponseDecoder;

    fn request(op: u8, name: &[u8], payload: Option<&[u8]>) -> Vec<u8> {
        let mut bytes = std::vec![7, 0, 0, 0, 2, op, name.len() as u8, 0];
        bytes.extend_from_slice(name);
        if let Some(payload) = payload {
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(payload);
        }
        bytes
    }

    /// Answers the machine's reads from `input` (and its start events)
    /// until it needs something else.
    fn run(session: &mut ServerSession, buf: &mut [u8], input: &mut &[u8]) -> Need {
        loop {
            match session.next(buf) {
                Need::Read(len) => {
                    let n = len.min(input.len());
                    buf[..n].copy_from_slice(&input[..n]);
                    *input = &input[n..];
                    session.read(buf, Ok(n));
                }
                Need::Started => session.started(),
                other => return other,
            }
        }
    }

    /// Like [`run`], answering every poll with `waiting`; the poll is asked
    /// before each read while 212s are held.
    fn run_polled(session: &mut ServerSession, buf: &mut [u8], input: &mut &[u8], waiting: bool) -> Need {
        loop {
            match run(session, buf, input) {
                Need::Poll => session.polled(waiting),
                other => return other,
            }
        }
    }

    /// Stores a one-chunk backup the machine has just asked to begin.
    fn store_backup(session: &mut ServerSession, buf: &mut [u8], input: &mut &[u8]) {
        session.begun(Ok(()));
        let Need::Store(StoreCall::WriteUpload(_)) = run_polled(session, buf, input, true) else {
            panic!("no chunk")
        };
        session.upload_written(Ok(()));
        assert_eq!(run(session, buf, input), Need::Store(StoreCall::CommitDeferred));
        session.committed(buf, Ok(()));
    }

    fn statuses(bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut decoder = ResponseDecoder::new();
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (used, event) = decoder.feed(rest).unwrap();
            if event == Decoded::Header {
                let header = decoder.header().unwrap();
                out.push((header.status.code(), header.name.to_vec()));
            }
            if decoder.is_complete() {
                decoder.reset();
            }
            rest = &rest[used..];
        }
        out
    }

    fn group_commit() -> (ServerSession, Vec<u8>) {
        let len = 4096 + GROUP_COMMIT_AREA_LEN;
        (ServerSession::new(Config { group_commit: true, ..Config::default() }, len), std::vec![0; len])
    }

    #[test]
    fn a_held_212_waits_while_the_next_request_is_waiting_and_goes_out_after_one_sync_once_none_is() {
        let (mut session, mut buf) = group_commit();
        let input = [request(100, b"a", Some(b"1")), request(100, b"b", Some(b"22"))].concat();
        let mut input = &input[..];
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::Store(StoreCall::BeginUpload));
        store_backup(&mut session, &mut buf, &mut input);
        // The poll finds b waiting: no sync, a's 212 stays held.
        assert_eq!(run_polled(&mut session, &mut buf, &mut input, true), Need::Store(StoreCall::BeginUpload));
        store_backup(&mut session, &mut buf, &mut input);
        // Nothing waits now: one sync, then both 212s in one write.
        assert_eq!(run_polled(&mut session, &mut buf, &mut input, false), Need::Store(StoreCall::Sync));
        session.synced(Ok(()));
        let Need::Write { from, to } = run(&mut session, &mut buf, &mut input) else { panic!("no write") };
        assert_eq!(statuses(&buf[from..to]), [(212, b"a".to_vec()), (212, b"b".to_vec())]);
        session.wrote(Ok(()));
        for name in ["a", "b"] {
            assert_eq!(run(&mut session, &mut buf, &mut input), Need::Report);
            let outcome = session.outcome(&buf);
            assert_eq!((outcome.name, outcome.status), (name, Some(Status::Done)));
            session.reported();
        }
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::End(End::Closed));
    }

    #[test]
    fn held_212s_are_synced_and_sent_before_a_restore_opens_its_file() {
        let (mut session, mut buf) = group_commit();
        let input = [request(100, b"a", Some(b"1")), request(200, b"a", None)].concat();
        let mut input = &input[..];
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::Store(StoreCall::BeginUpload));
        store_backup(&mut session, &mut buf, &mut input);
        // The restore is waiting, but the file it reads must be durable first.
        assert_eq!(run_polled(&mut session, &mut buf, &mut input, true), Need::Store(StoreCall::Sync));
        session.synced(Ok(()));
        assert!(matches!(run(&mut session, &mut buf, &mut input), Need::Write { .. }));
        session.wrote(Ok(()));
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::Report);
        session.reported();
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::Store(StoreCall::Open));
    }

    #[test]
    fn a_file_read_longer_than_its_window_ends_the_session_internal_logged_with_its_210() {
        let mut buf = std::vec![0; 1024];
        let mut session = ServerSession::new(Config::default(), buf.len());
        let input = request(200, b"f", None);
        let mut input = &input[..];
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::Store(StoreCall::Open));
        session.opened(&mut buf, Ok(5000));
        let Need::Store(StoreCall::ReadFile { from, to }) = run(&mut session, &mut buf, &mut input) else {
            panic!("no first chunk")
        };
        session.file_read(Ok(to - from));
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::Write { from: 0, to: 1024 });
        session.wrote(Ok(()));
        let Need::Store(StoreCall::SendFile(_)) = run(&mut session, &mut buf, &mut input) else { panic!() };
        session.file_sent(Sent::Declined, 0);
        let Need::Store(StoreCall::ReadFile { to, .. }) = run(&mut session, &mut buf, &mut input) else {
            panic!()
        };
        session.file_read(Ok(to + 1));
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::Report);
        let outcome = session.outcome(&buf);
        assert_eq!((outcome.status, outcome.bytes), (Some(Status::Restored), 1024 - 10));
        session.reported();
        assert_eq!(run(&mut session, &mut buf, &mut input), Need::End(End::Internal));
    }
}
