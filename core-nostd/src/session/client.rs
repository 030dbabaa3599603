//! The client's decisions: when to connect and when a connection may be
//! kept, how many requests may be in flight, when an upload stops because
//! the server refused it, which status means what, and which error wins
//! when several things fail at once. The shells (blocking and async) only
//! move bytes between these machines, the connection and the caller's
//! files.

use super::answer::Verdict;
use super::fault::Fault;
use crate::wire::{NameBuf, Op, PROTOCOL_VERSION, Request, Status, check_name};

/// Requests a batch keeps in flight before it waits for an answer. Answers
/// are small, so this many never fill the socket buffers of either side.
pub const PIPELINE_WINDOW: usize = 64;

/// The state of the connection, as far as the protocol is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// None held: the next request connects.
    Closed,
    /// Held, but the server has not yet promised to keep it.
    Open,
    /// The server answered version 2 in full: the connection stays for the
    /// next request, and requests may be pipelined.
    Promised,
}

/// One user's session with the server, across connections.
pub(crate) struct ClientSession {
    user_id: u32,
    /// The version byte of every request: 2, or 3 inside a secure session.
    version: u8,
    link: Link,
}

impl ClientSession {
    pub(crate) const fn new(user_id: u32) -> Self {
        ClientSession { user_id, version: PROTOCOL_VERSION, link: Link::Closed }
    }

    /// Sends `version` from now on: [`SECURE_VERSION`](crate::secure::SECURE_VERSION)
    /// over a secure stream, whose session rules are those of version 2.
    pub(crate) fn set_version(&mut self, version: u8) {
        self.version = version;
    }

    pub(crate) fn user_id(&self) -> u32 {
        self.user_id
    }

    /// Whether the next request must open a connection first.
    pub(crate) fn needs_connection(&self) -> bool {
        self.link == Link::Closed
    }

    /// A connection was opened.
    pub(crate) fn connected(&mut self) {
        self.link = Link::Open;
    }

    /// The connection's framing is lost, or it failed: drop it.
    pub(crate) fn close(&mut self) {
        self.link = Link::Closed;
    }

    /// An answer was read: keep the connection only if the server promised to.
    pub(crate) fn answered(&mut self, verdict: &Result<Verdict, Fault>) {
        self.link = match verdict {
            Ok(Verdict { reusable: true, .. }) => Link::Promised,
            _ => Link::Closed,
        };
    }

    /// Whether request `sent` may go out while `answered` have been
    /// answered: one at a time until the server has promised (version 2) to
    /// keep the connection, then up to [`PIPELINE_WINDOW`] ahead.
    pub(crate) fn may_send(&self, sent: usize, answered: usize, count: usize) -> bool {
        sent < count
            && (sent == answered || (self.link == Link::Promised && sent - answered < PIPELINE_WINDOW))
    }

    /// The request header for `op` on `name` (empty for list), written into
    /// `buf`; a name that breaks the rules is refused before anything is sent.
    pub(crate) fn emit(&self, buf: &mut [u8], op: Op, name: &str, size: u32) -> Result<usize, Fault> {
        if op != Op::List {
            check_name(name).map_err(Fault::InvalidName)?;
        }
        let request = Request { user_id: self.user_id, version: self.version, op, name, size };
        request.emit(buf).map_err(|_| Fault::SinkFull)
    }
}

/// What a status means as the answer to `op`: the one mapping of statuses
/// to results.
#[inline(always)]
pub(crate) fn outcome(op: Op, status: Status) -> Result<(), Fault> {
    let wanted = match op {
        Op::Restore => Status::Restored,
        Op::List => Status::Listed,
        _ => Status::Done,
    };
    match status {
        _ if status == wanted => Ok(()),
        Status::NotFound if matches!(op, Op::Restore | Op::Delete) => Err(Fault::NotFound),
        Status::NoFiles if op == Op::List => Err(Fault::NoFiles),
        other => Err(Fault::Protocol(crate::error::ProtocolError::UnexpectedStatus(other.code()))),
    }
}

/// What a [`BackupRun`] needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackupNeed {
    /// Open file `index` of the batch and call [`BackupRun::opened`] with
    /// its name and size, or [`BackupRun::local_failed`].
    Open(usize),
    /// Read the source into `buf[from..to]`, then [`BackupRun::filled`]
    /// with the count. `whole`: keep reading until the window is full or the
    /// source ends; else one read.
    Fill { from: usize, to: usize, whole: bool },
    /// Write `buf[..len]` whole, on a new connection if the session has
    /// none, then [`BackupRun::sent`] or [`BackupRun::transport_failed`].
    Send(usize),
    /// Ask whether the server has sent something (without waiting), then
    /// [`BackupRun::polled`]; a failed poll counts as nothing waiting.
    Poll,
    /// Read the answer for file `index` (it must name that file), then
    /// [`BackupRun::answered`].
    Answer(usize),
    /// The run is over: `Ok`, or the first file not confirmed and why.
    Finished(Result<(), (usize, Fault)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackupState {
    /// Between files: send the next one or wait for an answer.
    Choose,
    /// Waiting for the answer that opens the window again.
    Awaiting,
    /// The first chunk of file `sent` is being read behind its header.
    First,
    /// `buf[..len]` of file `sent` is being written.
    Sending,
    /// Between chunks: has an answer come?
    Polling,
    /// An answer arrived while file `sent` was being sent: an earlier
    /// file's (`acked < sent`), or its own, before its payload was through:
    /// a refusal.
    Interrupted,
    /// The next chunk is being read.
    Refill,
    /// File `index` failed before any of it went out: collect the answers
    /// due for earlier files, then report it.
    Stopping,
    /// Writing file `sent` failed: the server may have refused and closed,
    /// and the answers it sent first are still readable.
    Salvaging,
    /// Over: `fault` says whether and why, at `index`.
    Finished,
}

/// Backs up a batch of files over one connection where the server allows,
/// pipelined ([`PIPELINE_WINDOW`]), each file's payload streamed in chunks
/// of the shell's buffer, stopping a file early when the server answers
/// before its payload is through (a refusal).
pub(crate) struct BackupRun {
    count: usize,
    /// The shell's buffer length: the largest chunk.
    buf_len: usize,
    /// Files wholly sent.
    sent: usize,
    /// Files answered 212.
    acked: usize,
    state: BackupState,
    /// File `sent`: its size, and the payload bytes read so far.
    size: u32,
    done: u64,
    /// The bytes of `buf` to send next; while the first chunk is read, where
    /// it starts (after the header).
    len: usize,
    from: usize,
    /// Where and why the run stops (Stopping, Finished).
    index: usize,
    fault: Option<Fault>,
}

impl BackupRun {
    pub(crate) const fn new(count: usize, buf_len: usize) -> Self {
        BackupRun {
            count,
            buf_len,
            sent: 0,
            acked: 0,
            state: BackupState::Choose,
            size: 0,
            done: 0,
            len: 0,
            from: 0,
            index: 0,
            fault: None,
        }
    }

    /// What the shell does next.
    pub(crate) fn next(&mut self, session: &mut ClientSession) -> BackupNeed {
        loop {
            return match self.state {
                BackupState::Choose if self.acked == self.count => {
                    self.finish(None, 0);
                    continue;
                }
                BackupState::Choose if session.may_send(self.sent, self.acked, self.count) => {
                    BackupNeed::Open(self.sent)
                }
                BackupState::Choose => {
                    self.state = BackupState::Awaiting;
                    BackupNeed::Answer(self.acked)
                }
                BackupState::Stopping if self.acked >= self.index => {
                    self.state = BackupState::Finished;
                    continue;
                }
                BackupState::Salvaging if self.acked > self.sent => {
                    session.close();
                    self.finish(Some(Fault::Transport), self.acked);
                    continue;
                }
                BackupState::Stopping
                | BackupState::Salvaging
                | BackupState::Awaiting
                | BackupState::Interrupted => BackupNeed::Answer(self.acked),
                BackupState::First => BackupNeed::Fill { from: self.from, to: self.len, whole: true },
                BackupState::Sending => BackupNeed::Send(self.len),
                BackupState::Polling => BackupNeed::Poll,
                BackupState::Refill => {
                    let left = usize::try_from(u64::from(self.size) - self.done).unwrap_or(usize::MAX);
                    BackupNeed::Fill { from: 0, to: left.min(self.buf_len), whole: false }
                }
                BackupState::Finished => BackupNeed::Finished(match self.fault {
                    None => Ok(()),
                    Some(fault) => Err((self.index, fault)),
                }),
            };
        }
    }

    fn finish(&mut self, fault: Option<Fault>, index: usize) {
        self.state = BackupState::Finished;
        self.fault = fault;
        self.index = index;
    }

    /// File `sent` cannot start: report it once the earlier answers are in.
    fn stop(&mut self, fault: Fault) {
        self.state = BackupState::Stopping;
        self.fault = Some(fault);
        self.index = self.sent;
    }

    /// The file being sent cannot be finished: its framing is lost.
    fn abandon(&mut self, session: &mut ClientSession, fault: Fault) {
        session.close();
        self.finish(Some(fault), self.acked);
    }

    /// File `sent` is open as `name`, `size` bytes: its header goes into
    /// `buf`, and its first chunk will ride with it.
    pub(crate) fn opened(&mut self, session: &ClientSession, buf: &mut [u8], name: &str, size: u32) {
        match session.emit(buf, Op::Backup, name, size) {
            Ok(header_len) => {
                self.state = BackupState::First;
                self.size = size;
                self.from = header_len;
                self.len = buf.len().min(header_len.saturating_add(size as usize));
            }
            Err(fault) => self.stop(fault),
        }
    }

    /// The source gave `n` bytes (0: it ended).
    pub(crate) fn filled(&mut self, session: &mut ClientSession, n: usize) {
        match self.state {
            BackupState::First if self.from + n == self.len => {
                self.done = n as u64;
                self.state = BackupState::Sending;
            }
            BackupState::First => self.stop(Fault::SourceEnded),
            BackupState::Refill if n > 0 => {
                self.len = n;
                self.done += n as u64;
                self.state = BackupState::Sending;
            }
            // The server waits for bytes that will not come.
            _ => self.abandon(session, Fault::SourceEnded),
        }
    }

    /// The source or the batch failed; the shell kept the error.
    pub(crate) fn local_failed(&mut self, session: &mut ClientSession) {
        match self.state {
            BackupState::Refill => self.abandon(session, Fault::Local),
            _ => self.stop(Fault::Local),
        }
    }

    /// Connecting or writing failed; the shell kept the error.
    pub(crate) fn transport_failed(&mut self, session: &mut ClientSession) {
        match self.state {
            BackupState::Sending => self.state = BackupState::Salvaging,
            _ => self.abandon(session, Fault::Transport),
        }
    }

    /// The buffer went out whole.
    pub(crate) fn sent(&mut self) {
        if self.state != BackupState::Sending {
            return;
        }
        if self.done >= u64::from(self.size) {
            self.sent += 1;
            self.state = BackupState::Choose;
        } else {
            self.state = BackupState::Polling;
        }
    }

    /// Whether the server has sent something we have not read.
    pub(crate) fn polled(&mut self, waiting: bool) {
        if self.state == BackupState::Polling {
            self.state = if waiting { BackupState::Interrupted } else { BackupState::Refill };
        }
    }

    /// The answer the last [`BackupNeed::Answer`] asked for, as read (the
    /// session already knows whether the connection stays). `true`: that
    /// file is backed up, tell the batch.
    pub(crate) fn answered(&mut self, session: &mut ClientSession, answer: Result<Status, Fault>) -> bool {
        // An answer for the file being sent, before its payload is through.
        let refused = self.state == BackupState::Interrupted && self.acked == self.sent;
        let fault = match answer {
            Ok(Status::Done) if !refused => {
                self.acked += 1;
                self.state = match self.state {
                    BackupState::Awaiting => BackupState::Choose,
                    // Answers for earlier files come in while we send.
                    BackupState::Interrupted => BackupState::Polling,
                    other => other,
                };
                return true;
            }
            Ok(status) => {
                session.close();
                Fault::Protocol(crate::error::ProtocolError::UnexpectedStatus(status.code()))
            }
            Err(fault) => fault,
        };
        match self.state {
            _ if refused => self.abandon(session, fault),
            // The server's reason beats a broken pipe.
            BackupState::Salvaging if fault.is_transport() => self.abandon(session, Fault::Transport),
            BackupState::Salvaging => self.abandon(session, fault),
            _ => self.finish(Some(fault), self.acked),
        }
        false
    }
}

/// What a [`RestoreRun`] needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestoreNeed {
    /// Write the restore request for file `index` (see
    /// [`ClientSession::emit`]), connecting first if the session needs it,
    /// then [`RestoreRun::requested`] or [`RestoreRun::failed`].
    Request(usize),
    /// Read the answer for file `index` into its sink, then
    /// [`RestoreRun::answered`].
    Answer(usize),
    /// The run is over.
    Finished(Result<(), (usize, Fault)>),
}

/// Restores a batch: requests go out ahead, up to [`PIPELINE_WINDOW`] (they
/// are small), and answers are taken in order.
pub(crate) struct RestoreRun {
    count: usize,
    sent: usize,
    done: usize,
    finished: Option<Result<(), (usize, Fault)>>,
}

impl RestoreRun {
    pub(crate) const fn new(count: usize) -> Self {
        RestoreRun { count, sent: 0, done: 0, finished: None }
    }

    pub(crate) fn next(&self, session: &ClientSession) -> RestoreNeed {
        match self.finished {
            Some(result) => RestoreNeed::Finished(result),
            None if self.done == self.count => RestoreNeed::Finished(Ok(())),
            None if session.may_send(self.sent, self.done, self.count) => RestoreNeed::Request(self.sent),
            None => RestoreNeed::Answer(self.done),
        }
    }

    /// The request for file `sent` went out.
    pub(crate) fn requested(&mut self) {
        self.sent += 1;
    }

    /// Building or sending a request failed with `fault`: a bad name is
    /// file `sent`'s fault, a failed connection stops at the first file not
    /// restored.
    pub(crate) fn failed(&mut self, session: &mut ClientSession, fault: Fault) {
        let index = match fault {
            Fault::InvalidName(_) | Fault::SinkFull => self.sent,
            _ => {
                session.close();
                self.done
            }
        };
        self.finished = Some(Err((index, fault)));
    }

    /// File `done`'s answer as read, and whether its sink took it whole
    /// (`Ok(())`) or why not. The answers still in flight after a failure
    /// belong to files we will not take: the connection goes.
    pub(crate) fn answered(&mut self, session: &mut ClientSession, answer: Result<Status, Fault>) {
        match answer.and_then(|status| outcome(Op::Restore, status)) {
            Ok(()) => self.done += 1,
            Err(fault) => {
                session.close();
                self.finished = Some(Err((self.done, fault)));
            }
        }
    }

    /// File `done`'s answer as read, whether its header names that file
    /// (`echoed`) and whether a sink was opened for it. `true`: the file
    /// arrived whole; finish its sink, then [`answered`](Self::answered) with
    /// 210 or [`finish_failed`](Self::finish_failed).
    pub(crate) fn received(
        &mut self,
        session: &mut ClientSession,
        answer: Result<Status, Fault>,
        echoed: bool,
        opened: bool,
    ) -> bool {
        let answer = match answer {
            Ok(_) if !echoed => Err(Fault::Protocol(crate::error::ProtocolError::NameMismatch)),
            Ok(Status::Restored) if opened => return true,
            Ok(Status::Restored) => Err(Fault::Protocol(crate::error::ProtocolError::UnexpectedStatus(210))),
            other => other,
        };
        self.answered(session, answer);
        false
    }

    /// The sink refused to finish file `done`; the connection is fine.
    pub(crate) fn finish_failed(&mut self) {
        self.finished = Some(Err((self.done, Fault::Local)));
    }
}

/// Splits a list payload into names, across chunks of any size. Some
/// servers end the payload with a NUL; names never hold one.
pub(crate) struct ListSplitter {
    pending: NameBuf,
    count: usize,
}

impl ListSplitter {
    pub(crate) const fn new() -> Self {
        ListSplitter { pending: NameBuf::new(), count: 0 }
    }

    /// Takes a chunk of the payload, calling `each` for every name it completes.
    pub(crate) fn feed(&mut self, chunk: &[u8], each: &mut dyn FnMut(&[u8])) -> Result<(), Fault> {
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            let (text, ends) = match piece.split_last() {
                Some((b'\n', text)) => (text, true),
                _ => (piece, false),
            };
            let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
            if !self.pending.extend(text) {
                return Err(Fault::Protocol(crate::error::ProtocolError::BadListEntry));
            }
            if ends {
                self.emit(each);
            }
        }
        Ok(())
    }

    /// The payload ended: a last name without its newline counts. Returns
    /// how many names there were.
    pub(crate) fn finish(&mut self, each: &mut dyn FnMut(&[u8])) -> usize {
        self.emit(each);
        self.count
    }

    fn emit(&mut self, each: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            each(self.pending.as_bytes());
            self.count += 1;
            self.pending.clear();
        }
    }
}
