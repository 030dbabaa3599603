//! A TCP connection as the core's transport: buffered reads with an idle
//! timeout between bytes, unbuffered writes, and restores sent with the
//! kernel's zero-copy path (`sendfile`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use backup_core::StoreError;
use backup_core::dispatch::{SendFile, SendFileError};
use rustix::io::Errno;

use crate::fs_store::FsReader;

/// Read buffer: enough for many small requests per system call. Payload
/// reads larger than this bypass it.
const READ_BUF_LEN: usize = 16 * 1024;

/// A served TCP connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
    idle_timeout: Duration,
    deadline: Option<Instant>,
}

impl Conn {
    /// Wraps an accepted stream. A read waiting longer than `idle_timeout` for
    /// its next byte fails, and so does a write the peer does not take in time.
    pub fn new(stream: TcpStream, idle_timeout: Duration) -> io::Result<Conn> {
        stream.set_read_timeout(Some(idle_timeout))?;
        stream.set_write_timeout(Some(idle_timeout))?;
        // Responses go out whole in one write; do not let Nagle hold the last
        // segment back waiting for the client's delayed ACK.
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; READ_BUF_LEN].into_boxed_slice(),
            pos: 0,
            filled: 0,
            idle_timeout,
            deadline: None,
        })
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

    fn arm_timeout(&self) -> io::Result<()> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left.min(self.idle_timeout)))?;
        }
        Ok(())
    }
}

impl embedded_io::ErrorType for Conn {
    type Error = io::Error;
}

impl embedded_io::Read for Conn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled {
            self.arm_timeout()?;
            if out.len() >= self.buf.len() {
                return self.stream.read(out);
            }
            self.filled = self.stream.read(&mut self.buf)?;
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
        let mut fds = [rustix::event::PollFd::new(&self.stream, rustix::event::PollFlags::IN)];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        Ok(rustix::event::poll(&mut fds, Some(&zero))? > 0)
    }
}

impl embedded_io::Write for Conn {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.stream.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SendFile<FsReader> for Conn {
    /// Sends the rest of a restore with sendfile(2): the kernel moves the
    /// bytes from the page cache to the socket without copying them through
    /// us. Falls back to the dispatcher's copy if the kernel refuses at once.
    fn send_file(
        &mut self,
        file: &mut FsReader,
        len: u64,
        sent: &mut u64,
    ) -> Result<bool, SendFileError<io::Error>> {
        let mut left = len;
        while left > 0 {
            // The kernel moves at most about 2 GiB per call.
            let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            match rustix::fs::sendfile(&self.stream, &file.file, None, chunk) {
                Ok(0) => return Err(SendFileError::Source(StoreError::Changed)),
                Ok(n) => {
                    left -= n as u64;
                    *sent += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if left == len => return Ok(false),
                Err(e) => return Err(SendFileError::Transport(e.into())),
            }
        }
        Ok(true)
    }
}
