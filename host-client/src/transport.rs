//! TCP connections as the core client's transport.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use backup_core::Connect;
use rustix::event::{PollFd, PollFlags, Timespec};

/// Connects to the first reachable address, with connect, read and write
/// timeouts.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    pub addrs: Vec<SocketAddr>,
    pub timeout: Duration,
}

/// An open connection.
#[derive(Debug)]
pub struct TcpConn(TcpStream);

impl Connect for TcpConnector {
    type Conn = TcpConn;

    fn connect(&mut self) -> io::Result<TcpConn> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, self.timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(self.timeout))?;
                    stream.set_write_timeout(Some(self.timeout))?;
                    stream.set_nodelay(true)?;
                    return Ok(TcpConn(stream));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl embedded_io::ErrorType for TcpConn {
    type Error = io::Error;
}

impl embedded_io::Read for TcpConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl embedded_io::Write for TcpConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl embedded_io::ReadReady for TcpConn {
    /// Whether the server has sent something (or closed) already: during an
    /// upload, that is its early refusal.
    fn read_ready(&mut self) -> io::Result<bool> {
        let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
        let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
        let ready = rustix::event::poll(&mut fds, Some(&zero))?;
        Ok(ready > 0)
    }
}
