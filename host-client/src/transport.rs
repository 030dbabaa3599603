//! TCP connections as the core client's transport, with `--timeout` as a
//! bound on how long the server may keep the client waiting.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use backup_core::Connect;

/// Bytes that must move between client and server, in either direction,
/// for the wait budget to start over.
///
/// Why a budget rather than a deadline per read or per operation: a socket
/// timeout per read lets a server that trickles one byte a second keep the
/// client forever, and a deadline on the whole operation would cut a 4 GiB
/// restore, which at wire speed takes minutes. So what `--timeout` bounds is
/// the time spent blocked waiting for the server since it last moved
/// [`PROGRESS_CHUNK`] bytes (or since the request was sent): a transfer of
/// any length passes as long as the server moves 64 KiB per `--timeout` of
/// waiting (2 KiB/s with the default 30 s), and a stalled or trickling
/// server fails after `--timeout` seconds. Time the client spends on its own
/// work (reading files, syncing) is not waiting and does not count.
pub const PROGRESS_CHUNK: u64 = 64 * 1024;

/// Connects to the first reachable address, with connect, read and write
/// timeouts.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    /// Where the server may be, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// The connect timeout, and the wait budget of each connection.
    pub timeout: Duration,
}

/// An open connection, whose reads and writes fail with
/// [`io::ErrorKind::TimedOut`] once the server has kept the client waiting
/// for its whole budget; see [`PROGRESS_CHUNK`].
#[derive(Debug)]
pub struct TcpConn {
    stream: TcpStream,
    budget: Duration,
    /// Time blocked in reads and writes since the budget last started over.
    waited: Duration,
    /// Bytes moved since then.
    moved: u64,
    /// The last call was a read: the next write is a new request, and the
    /// budget starts over with it.
    reading: bool,
    /// The socket's read and write timeouts as last set.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// How far a socket timeout may run past the budget before it is set
/// again. Setting it before every call cost two system calls per 16 KiB
/// record of a version-3 upload (some 130,000 per GiB); within this slack
/// it is set about once per 50 ms of waiting instead.
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// Sets a socket timeout to `wanted` unless the one set already is within
/// [`TIMEOUT_SLACK`] of it.
fn refresh(
    set: &mut Option<Duration>,
    wanted: Duration,
    apply: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let close = set.is_some_and(|t| t >= wanted.saturating_sub(TIMEOUT_SLACK) && t <= wanted + TIMEOUT_SLACK);
    if !close {
        apply(Some(wanted))?;
        *set = Some(wanted);
    }
    Ok(())
}

impl Connect for TcpConnector {
    type Conn = TcpConn;

    fn connect(&mut self) -> io::Result<TcpConn> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, self.timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(TcpConn::new(stream, self.timeout));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl TcpConn {
    /// A connection whose server may keep the client waiting `budget` at a
    /// time.
    pub fn new(stream: TcpStream, budget: Duration) -> TcpConn {
        TcpConn {
            stream,
            budget,
            waited: Duration::ZERO,
            moved: 0,
            reading: false,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// What is left of the budget, as a socket timeout, or the error that
    /// says it is spent.
    fn remaining(&self) -> io::Result<Duration> {
        // Below a millisecond the kernel would round the timeout up to a
        // tick anyway; a zero timeout would mean no timeout at all.
        match self.budget.checked_sub(self.waited) {
            Some(left) if left >= Duration::from_millis(1) => Ok(left),
            _ => Err(self.spent()),
        }
    }

    fn spent(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the server kept the client waiting {} s in all with less than {} KiB moving",
                self.budget.as_secs(),
                PROGRESS_CHUNK / 1024
            ),
        )
    }

    /// Counts one blocking call: its time, its bytes, and a socket timeout
    /// run out is the budget spent.
    fn account(&mut self, started: Instant, result: io::Result<usize>) -> io::Result<usize> {
        self.waited += started.elapsed();
        match result {
            Ok(n) => {
                self.moved += n as u64;
                if self.moved >= PROGRESS_CHUNK {
                    self.start_over();
                }
                Ok(n)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(self.spent())
            }
            Err(e) => Err(e),
        }
    }

    fn start_over(&mut self) {
        self.waited = Duration::ZERO;
        self.moved = 0;
    }
}

impl embedded_io::ErrorType for TcpConn {
    type Error = io::Error;
}

impl embedded_io::Read for TcpConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reading = true;
        let remaining = self.remaining()?;
        refresh(&mut self.read_timeout, remaining, |t| self.stream.set_read_timeout(t))?;
        let started = Instant::now();
        let result = self.stream.read(buf);
        self.account(started, result)
    }
}

impl embedded_io::Write for TcpConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if std::mem::replace(&mut self.reading, false) {
            // A write after reading is the next request (the core sends
            // requests and reads their answers in turn): a new wait. The
            // server earned it, as the client writes again only after an
            // answer came in whole.
            self.start_over();
        }
        let remaining = self.remaining()?;
        refresh(&mut self.write_timeout, remaining, |t| self.stream.set_write_timeout(t))?;
        let started = Instant::now();
        let result = self.stream.write(buf);
        self.account(started, result)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl embedded_io::ReadReady for TcpConn {
    /// Whether the server has sent something (or closed) already: during an
    /// upload, that is its early refusal.
    fn read_ready(&mut self) -> io::Result<bool> {
        host_common::ready::readable_now(&self.stream)
    }
}
