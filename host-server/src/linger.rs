//! Connections the server turns away (too many from one address, or no
//! thread to serve them): a 1003 saying why, then a close that does not
//! destroy it.
//!
//! Closing a socket with unread bytes sends a reset, and a reset can discard
//! our 1003 before the client reads it. So a refused connection gets its
//! answer and our FIN at once, then waits here, its input read and
//! discarded, until the client closes or a short time passes. One thread
//! serves every refused connection, and the accept loop never waits for it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use backup_core::wire::{LEGACY_VERSION, MAX_REASON_LEN, RESPONSE_MAX_HEADER_LEN, Response, Status};
use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// Refused connections waiting for their client to close, at most: the
/// oldest is closed early to make room, so a flood costs bounded memory.
const MAX_LINGERING: usize = 64;
/// How long a refused client gets to read our answer and close: a reply of
/// under 300 bytes needs one round trip, far less than this on any link.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Bytes read and discarded from one refused client, at most (a request
/// header and some payload already in flight).
const LINGER_BYTES: usize = 64 * 1024;
/// How often the thread looks for newly refused connections while it
/// waits on the others.
const LINGER_TICK: Duration = Duration::from_millis(50);
/// Stack for the linger thread: it only holds a small scratch buffer.
const LINGER_STACK: usize = 64 * 1024;

struct Lingering {
    stream: TcpStream,
    until: Instant,
    discarded: usize,
}

struct Queue {
    waiting: Mutex<VecDeque<Lingering>>,
    added: Condvar,
    stopping: AtomicBool,
}

impl Queue {
    fn waiting(&self) -> MutexGuard<'_, VecDeque<Lingering>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds connections, closing the oldest beyond the bound.
    fn put(&self, mut more: Vec<Lingering>, front: bool) {
        let mut waiting = self.waiting();
        if front {
            more.extend(waiting.drain(..));
            waiting.extend(more);
        } else {
            waiting.extend(more);
        }
        while waiting.len() > MAX_LINGERING {
            waiting.pop_front();
        }
        drop(waiting);
        self.added.notify_one();
    }
}

/// The thread that closes refused connections cleanly.
pub struct Linger {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl Linger {
    /// Starts the linger thread. The server starts it before accepting, so
    /// that refusing never needs a thread the system may not give.
    pub fn start() -> io::Result<Linger> {
        let queue = Arc::new(Queue {
            waiting: Mutex::new(VecDeque::new()),
            added: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let shared = queue.clone();
        let thread = thread::Builder::new()
            .name("linger".into())
            .stack_size(LINGER_STACK)
            .spawn(move || run(&shared))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start the thread that closes refused connections: {e}"),
                )
            })?;
        Ok(Linger { queue, thread: Some(thread) })
    }

    /// Answers `stream` with a 1003 carrying `reason` (cut to 255 bytes),
    /// sends our FIN, and leaves the close to the linger thread. Never blocks.
    pub fn refuse(&self, stream: TcpStream, reason: &str) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        let mut reply = [0u8; RESPONSE_MAX_HEADER_LEN + MAX_REASON_LEN];
        let n = refusal(reason, &mut reply);
        // A new connection's send buffer is empty, so a reply this small
        // goes in one write; if it does not, closing is all that is left.
        let written = (&stream).write(&reply[..n])?;
        if written < n {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "the refusal did not fit the send buffer"));
        }
        stream.shutdown(Shutdown::Write)?;
        self.queue.put(vec![Lingering { stream, until: Instant::now() + LINGER_TIME, discarded: 0 }], false);
        Ok(())
    }
}

impl Drop for Linger {
    fn drop(&mut self) {
        self.queue.stopping.store(true, Ordering::SeqCst);
        self.queue.added.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A 1003 with `reason` as its payload, in `out`; returns its length.
///
/// Version 1: the connection is closed after this answer, and version 2
/// promises the opposite (PROTOCOL.md, "Versions"); every client reads a
/// version-1 answer.
pub fn refusal(reason: &str, out: &mut [u8; RESPONSE_MAX_HEADER_LEN + MAX_REASON_LEN]) -> usize {
    let mut cut = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let payload = reason.as_bytes().get(..cut).unwrap_or(&[]);
    let response =
        Response { version: LEGACY_VERSION, status: Status::Error, name: b"", size: payload.len() as u32 };
    // The buffer holds any header without a name plus the longest reason.
    let header = response.emit(out).unwrap_or(0);
    let end = header + payload.len();
    if let Some(dst) = out.get_mut(header..end) {
        dst.copy_from_slice(payload);
    }
    end
}

fn run(queue: &Queue) {
    let mut scratch = vec![0u8; 16 * 1024];
    loop {
        let mut waiting = queue.waiting();
        while waiting.is_empty() && !queue.stopping.load(Ordering::SeqCst) {
            waiting = queue.added.wait(waiting).unwrap_or_else(PoisonError::into_inner);
        }
        if queue.stopping.load(Ordering::SeqCst) {
            return;
        }
        // Poll without the lock, so the accept loop can add more meanwhile.
        let mut batch: Vec<Lingering> = waiting.drain(..).collect();
        drop(waiting);
        let now = Instant::now();
        let wait = batch.iter().map(|l| l.until.saturating_duration_since(now)).min().unwrap_or_default();
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> =
                batch.iter().map(|l| PollFd::new(&l.stream, PollFlags::IN | PollFlags::RDHUP)).collect();
            let timeout =
                Timespec::try_from(wait.min(LINGER_TICK)).unwrap_or(Timespec { tv_sec: 0, tv_nsec: 0 });
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) => fds.iter().map(|fd| !fd.revents().is_empty()).collect(),
                Err(_) => vec![false; fds.len()],
            }
        };
        let now = Instant::now();
        let mut kept = Vec::with_capacity(batch.len());
        for (mut lingering, ready) in batch.drain(..).zip(ready) {
            if ready && !discard(&mut lingering, &mut scratch) {
                continue; // the client closed (or failed): closing sends no reset
            }
            if now < lingering.until {
                kept.push(lingering);
            }
        }
        queue.put(kept, true);
    }
}

/// Reads what is there and discards it; `false` once the connection is
/// done (the peer closed, it failed, or it sent more than we discard).
fn discard(lingering: &mut Lingering, scratch: &mut [u8]) -> bool {
    loop {
        match lingering.stream.read(scratch) {
            Ok(0) => return false,
            Ok(n) => {
                lingering.discarded += n;
                if lingering.discarded > LINGER_BYTES {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_version_1_error_with_the_reason_cut_at_a_character() {
        let mut out = [0u8; RESPONSE_MAX_HEADER_LEN + MAX_REASON_LEN];
        let n = refusal("busy", &mut out);
        assert_eq!(&out[..n], &[1, 0xeb, 0x03, 0, 0, 4, 0, 0, 0, b'b', b'u', b's', b'y']);
        let long = "é".repeat(200); // 400 bytes
        let n = refusal(&long, &mut out);
        assert_eq!(u32::from_le_bytes(out[5..9].try_into().unwrap()), 254);
        assert!(std::str::from_utf8(&out[9..n]).is_ok());
    }
}
