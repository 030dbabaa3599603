//! A TCP connection as the core's transport: buffered reads, unbuffered
//! writes, restores sent with the kernel's zero-copy path (`sendfile`), and
//! the limits that keep a slow or silent peer from holding a connection.
//!
//! The socket is non-blocking and every wait for the peer is a `poll`
//! bounded by what the limits leave, so the time spent waiting is measured
//! exactly, and time the server spends on its own disk is never counted:
//!
//! - **Idle timeout.** A wait fails once the peer has made no progress for
//!   the idle timeout: no byte received, and not one whole [`SEND_CHUNK`] (or
//!   everything we had to send) taken. A partial send does not count, so a
//!   peer that never reads is dropped after one idle timeout, however much
//!   the kernel's buffers absorb by dribs and drabs.
//! - **Minimum rate.** Within a request (from its first byte to its answer,
//!   as the shared `busy` flag of the server's request log says), the time
//!   waited may not exceed the idle timeout plus bytes moved / min rate
//!   ([`RateClock`]).
//!
//! A wait that runs out fails with [`io::ErrorKind::TimedOut`], and the
//! dispatcher ends the session.

use std::any::Any;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backup_core::StoreError;
use backup_core::dispatch::{SendFile, SendFileError};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::rate::RateClock;

/// Read buffer: enough for many small requests per system call. Payload
/// reads larger than this bypass it.
const READ_BUF_LEN: usize = 16 * 1024;

/// The unit of progress for what we send: the idle timer restarts when the
/// peer has taken this much (or all we had). Small enough that a slow but
/// live reader (8 KB/s against a 3 s idle timeout in the tests; 273 B/s at
/// the default 60 s) is never taken for one that stopped reading.
pub const SEND_CHUNK: u64 = 16 * 1024;

/// Unsent bytes the kernel keeps queued for us (`TCP_NOTSENT_LOWAT`).
/// Without it, a peer that does not read lets the kernel take up to
/// `tcp_wmem`'s maximum of ours (measured on loopback: 4.29 MB; with this
/// limit, 271 KB), which is kernel memory per slow peer and bytes the rate
/// clock would credit without the peer having taken them. The option's
/// author suggests 128 KB or less suffices to keep the link busy; a
/// sendfile of 512 MiB over loopback measured 1.2-1.3 GB/s without the
/// limit and 1.7-2.6 GB/s with it.
const UNSENT_LIMIT: u32 = 128 * 1024;

/// Why a wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Idle,
    Rate,
    Deadline,
}

/// A served TCP connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
    idle_timeout: Duration,
    deadline: Option<Instant>,
    /// Time waited on the peer since it last made progress.
    stalled: Duration,
    /// Bytes sent since the idle timer last restarted.
    unmarked: u64,
    /// Set by the server's request log while a request is being served.
    busy: Option<Arc<AtomicBool>>,
    in_request: bool,
    clock: RateClock,
    /// Bytes of the last socket read outside a request: the start of the
    /// next request, credited to it when it begins.
    before_request: u64,
    /// Whether the first byte received sets `busy` (see
    /// [`Conn::request_from_first_byte`]); cleared once it has.
    first_byte_starts_request: bool,
    send_timed_out: bool,
}

impl Conn {
    /// Wraps an accepted stream (made non-blocking). A wait for the peer
    /// fails once it has made no progress for `idle_timeout`.
    pub fn new(stream: TcpStream, idle_timeout: Duration) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        // Responses go out whole in one write; do not let Nagle hold the last
        // segment back waiting for the client's delayed ACK.
        stream.set_nodelay(true)?;
        if let Err(e) = limit_unsent(&stream, UNSENT_LIMIT) {
            log::debug!("cannot limit a socket's unsent bytes ({e}); slow readers may take longer to drop");
        }
        Ok(Conn {
            stream,
            buf: vec![0; READ_BUF_LEN].into_boxed_slice(),
            pos: 0,
            filled: 0,
            idle_timeout,
            deadline: None,
            stalled: Duration::ZERO,
            unmarked: 0,
            busy: None,
            in_request: false,
            clock: RateClock::new(idle_timeout, 0),
            before_request: 0,
            first_byte_starts_request: false,
            send_timed_out: false,
        })
    }

    /// Enforces `min_rate` bytes per second (0: off) on each request, whose
    /// span `busy` marks (set at its first byte, cleared once answered);
    /// the grace is the idle timeout.
    pub fn with_min_rate(mut self, busy: Arc<AtomicBool>, min_rate: u64) -> Conn {
        self.busy = Some(busy);
        self.clock = RateClock::new(self.idle_timeout, min_rate);
        self
    }

    /// Sets `busy` at the first byte received, for a framing whose request
    /// reaches the request log only later: the block listener's dispatcher
    /// sees nothing until a 1024-byte header block is whole, and without
    /// this a client trickling that block is held to the idle timeout per
    /// byte instead of the minimum rate.
    pub fn request_from_first_byte(mut self) -> Conn {
        self.first_byte_starts_request = true;
        self
    }

    /// The stream, for shutting it down from another thread.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads fail once `deadline` has passed, however busy the peer is.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Sends our FIN: nothing more will be written.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Whether a send ran out of time: our unsent bytes are still queued,
    /// and a plain close would keep them (and the kernel's memory) until
    /// the peer takes them.
    pub fn send_timed_out(&self) -> bool {
        self.send_timed_out
    }

    /// The first `n` bytes the peer sent, without consuming them: the next
    /// reads return them again. Fewer if the peer closed first. For telling
    /// a version-3 HELLO from a plaintext request; `n` is at most the read
    /// buffer's length, and only a fresh connection may be peeked.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.pos != 0 {
            return Err(io::Error::other("peek after reading"));
        }
        while self.filled < n {
            // The rate clock runs from the first byte, as in `read`: a
            // trickled HELLO or first request is cut by --min-rate.
            self.track_request();
            let got = match (&self.stream).read(&mut self.buf[self.filled..]) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(PollFlags::IN)?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if got == 0 {
                break;
            }
            self.received(got);
            self.filled += got;
        }
        Ok(&self.buf[..self.filled.min(n)])
    }

    /// Closes with a reset, dropping what the kernel still holds for a peer
    /// that would not take it (what nginx's `reset_timedout_connection` does).
    pub fn reset(self) {
        let _ = rustix::net::sockopt::set_socket_linger(&self.stream, Some(Duration::ZERO));
    }

    /// Follows the request log's flag: a request starts its rate clock with
    /// the bytes that began it, and its end stops the clock.
    fn track_request(&mut self) {
        let Some(busy) = &self.busy else { return };
        let busy = busy.load(Ordering::SeqCst);
        if busy && !self.in_request {
            self.in_request = true;
            self.clock.restart();
            self.clock.moved(self.before_request);
        } else if !busy {
            self.in_request = false;
        }
    }

    fn received(&mut self, n: usize) {
        if n > 0 {
            self.stalled = Duration::ZERO;
            if self.first_byte_starts_request {
                self.first_byte_starts_request = false;
                if let Some(busy) = &self.busy {
                    busy.store(true, Ordering::SeqCst);
                }
            }
        }
        if self.in_request {
            self.clock.moved(n as u64);
        } else {
            self.before_request = n as u64;
        }
    }

    /// `n` bytes went out; `whole`: all we had to send.
    fn sent(&mut self, n: u64, whole: bool) {
        if self.in_request {
            self.clock.moved(n);
        }
        self.unmarked += n;
        if whole || self.unmarked >= SEND_CHUNK {
            self.stalled = Duration::ZERO;
            self.unmarked = 0;
        }
    }

    /// Waits until the socket is ready for `flags`, for at most what the
    /// limits leave; fails with `TimedOut` once nothing is left. Returns
    /// early on readiness (or a signal): the caller retries its operation.
    fn wait(&mut self, flags: PollFlags) -> io::Result<()> {
        let now = Instant::now();
        let mut limit = (self.idle_timeout.saturating_sub(self.stalled), Limit::Idle);
        if self.in_request {
            if let Some(left) = self.clock.left().filter(|left| *left < limit.0) {
                limit = (left, Limit::Rate);
            }
        }
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(now);
            if left < limit.0 {
                limit = (left, Limit::Deadline);
            }
        }
        if limit.0.is_zero() {
            if flags.contains(PollFlags::OUT) {
                self.send_timed_out = true;
            }
            return Err(self.timed_out(limit.1));
        }
        let timeout = Timespec::try_from(limit.0).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
        let mut fds = [PollFd::new(&self.stream, flags)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let waited = now.elapsed();
        self.stalled = self.stalled.saturating_add(waited);
        if self.in_request {
            self.clock.waited(waited);
        }
        Ok(())
    }

    fn timed_out(&self, limit: Limit) -> io::Error {
        let message = match limit {
            Limit::Idle => format!(
                "the client sent nothing and took nothing for {} s (--idle-timeout)",
                self.idle_timeout.as_secs_f32()
            ),
            Limit::Rate => format!(
                "the client is slower than --min-rate {} B/s: {} bytes moved in {:.1} s of waiting on it",
                self.clock.min_rate(),
                self.clock.bytes(),
                self.clock.time_waited().as_secs_f32()
            ),
            Limit::Deadline => "the time for reading the client's last bytes is over".to_string(),
        };
        io::Error::new(io::ErrorKind::TimedOut, message)
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// Sets `TCP_NOTSENT_LOWAT`, which neither std nor rustix offers.
fn limit_unsent(stream: &TcpStream, bytes: u32) -> io::Result<()> {
    let value = bytes as libc::c_int;
    // SAFETY: the descriptor is open for the borrow of `stream`, and the
    // option value is a c_int that lives across the call, with its size.
    let status = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

impl embedded_io::ErrorType for Conn {
    type Error = io::Error;
}

impl embedded_io::Read for Conn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.track_request();
        if self.pos == self.filled {
            if self.past_deadline() {
                return Err(self.timed_out(Limit::Deadline));
            }
            let direct = out.len() >= self.buf.len();
            let n = loop {
                let got = if direct { (&self.stream).read(out) } else { (&self.stream).read(&mut self.buf) };
                match got {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::IN)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            self.received(n);
            if direct {
                return Ok(n);
            }
            self.filled = n;
            self.pos = 0;
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl embedded_io::ReadReady for Conn {
    /// Whether a read would return at once: bytes are buffered, or the
    /// socket has some (or has ended). Group commit holds answers only then.
    fn read_ready(&mut self) -> io::Result<bool> {
        if self.pos < self.filled {
            return Ok(true);
        }
        host_common::ready::readable_now(&self.stream)
    }
}

impl embedded_io::Write for Conn {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.track_request();
        if data.is_empty() {
            return Ok(0);
        }
        loop {
            match (&self.stream).write(data) {
                Ok(n) => {
                    self.sent(n as u64, n == data.len());
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::OUT)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SendFile for Conn {
    /// Sends the rest of a restore from a [`File`] the store lent with
    /// sendfile(2): the kernel moves the bytes from the page cache to the
    /// socket without copying them through us. Declines other sources, and
    /// falls back to the dispatcher's copy if the kernel refuses at once.
    fn send_file(
        &mut self,
        source: &mut dyn Any,
        len: u64,
        sent: &mut u64,
    ) -> Result<bool, SendFileError<io::Error>> {
        let Some(file) = source.downcast_mut::<File>() else { return Ok(false) };
        self.track_request();
        let mut left = len;
        while left > 0 {
            // The kernel moves at most about 2 GiB per call; the socket
            // takes what fits and the idle timer counts whole chunks.
            let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            match rustix::fs::sendfile(&self.stream, &*file, None, chunk) {
                Ok(0) => return Err(SendFileError::Source(StoreError::Changed)),
                Ok(n) => {
                    left -= n as u64;
                    *sent += n as u64;
                    self.sent(n as u64, left == 0);
                }
                Err(Errno::AGAIN) => self.wait(PollFlags::OUT).map_err(SendFileError::Transport)?,
                Err(Errno::INTR) => {}
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if left == len => return Ok(false),
                Err(e) => return Err(SendFileError::Transport(e.into())),
            }
        }
        Ok(true)
    }
}
