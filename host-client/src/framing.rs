//! Which framing the server speaks: the stream framing, or the 1024-byte
//! blocks of the C++/Python File-Transfer-and_Backup project's server
//! ([`backup_core::block`]). Both give the core's client the same transport.

use std::io;

use backup_core::Connect;
use backup_core::block::{BlockClientConn, BlockIoError};

use crate::transport::{TcpConn, TcpConnector};

/// How requests and responses are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Framing {
    /// One byte stream (`backup-server`'s main listener).
    #[default]
    Stream,
    /// 1024-byte blocks, one request per connection.
    Block,
}

/// Connects with the chosen framing.
#[derive(Debug, Clone)]
pub struct FramedConnector {
    /// The TCP side.
    pub tcp: TcpConnector,
    /// The framing of every connection.
    pub framing: Framing,
}

/// A connection in either framing.
#[derive(Debug)]
pub enum FramedConn {
    /// Stream framing: the TCP connection itself.
    Stream(TcpConn),
    /// Block framing, translated by the core.
    Block(Box<BlockClientConn<TcpConn>>),
}

impl Connect for FramedConnector {
    type Conn = FramedConn;

    fn connect(&mut self) -> io::Result<FramedConn> {
        let conn = self.tcp.connect()?;
        Ok(match self.framing {
            Framing::Stream => FramedConn::Stream(conn),
            Framing::Block => FramedConn::Block(Box::new(BlockClientConn::new(conn))),
        })
    }
}

/// Block framing errors as I/O errors, so every command's messages stay one type.
fn flat(e: BlockIoError<io::Error>) -> io::Error {
    match e {
        BlockIoError::Io(e) => e,
        BlockIoError::Framing(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        other => io::Error::other(other.to_string()),
    }
}

impl embedded_io::ErrorType for FramedConn {
    type Error = io::Error;
}

impl embedded_io::Read for FramedConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            FramedConn::Stream(c) => c.read(buf),
            FramedConn::Block(c) => c.read(buf).map_err(flat),
        }
    }
}

impl embedded_io::Write for FramedConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            FramedConn::Stream(c) => c.write(buf),
            FramedConn::Block(c) => c.write(buf).map_err(flat),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            FramedConn::Stream(c) => c.flush(),
            FramedConn::Block(c) => c.flush().map_err(flat),
        }
    }
}

impl embedded_io::ReadReady for FramedConn {
    fn read_ready(&mut self) -> io::Result<bool> {
        match self {
            FramedConn::Stream(c) => c.read_ready(),
            FramedConn::Block(c) => c.read_ready().map_err(flat),
        }
    }
}
