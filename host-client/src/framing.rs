//! Which framing the server speaks: the stream framing, or the 1024-byte
//! blocks of the C++/Python File-Transfer-and_Backup project's server
//! ([`backup_core::block`]). Both give the core's client the same transport.

use std::io;

use backup_core::Connect;
use backup_core::block::{BlockClientConn, BlockIoError};

use host_common::key_line::KeyLine;

use crate::secure_conn::{self, SecureConn};
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
    /// With a key, every connection is a version-3 session (stream framing only).
    pub key: Option<KeyLine>,
}

/// A connection in either framing.
pub enum FramedConn {
    /// Stream framing: the TCP connection itself.
    Stream(TcpConn),
    /// Block framing, translated by the core.
    Block(Box<BlockClientConn<TcpConn>>),
    /// A version-3 session: the core's records over the TCP connection.
    Secure(Box<SecureConn>),
}

impl std::fmt::Debug for FramedConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FramedConn::Stream(_) => "FramedConn::Stream",
            FramedConn::Block(_) => "FramedConn::Block",
            // The session's keys are not for printing.
            FramedConn::Secure(_) => "FramedConn::Secure",
        })
    }
}

impl Connect for FramedConnector {
    type Conn = FramedConn;

    fn connect(&mut self) -> io::Result<FramedConn> {
        let conn = self.tcp.connect()?;
        Ok(match (self.framing, &self.key) {
            (Framing::Stream, Some(key)) => FramedConn::Secure(Box::new(secure_conn::open(conn, key)?)),
            (Framing::Stream, None) => FramedConn::Stream(conn),
            // The block framing is version 1's; main.rs refuses a key with it.
            (Framing::Block, _) => FramedConn::Block(Box::new(BlockClientConn::new(conn))),
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
            FramedConn::Secure(c) => c.read(buf).map_err(secure_conn::flat),
        }
    }
}

impl embedded_io::Write for FramedConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            FramedConn::Stream(c) => c.write(buf),
            FramedConn::Block(c) => c.write(buf).map_err(flat),
            FramedConn::Secure(c) => c.write(buf).map_err(secure_conn::flat),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            FramedConn::Stream(c) => c.flush(),
            FramedConn::Block(c) => c.flush().map_err(flat),
            FramedConn::Secure(c) => c.flush().map_err(secure_conn::flat),
        }
    }
}

impl embedded_io::ReadReady for FramedConn {
    fn read_ready(&mut self) -> io::Result<bool> {
        match self {
            FramedConn::Stream(c) => c.read_ready(),
            FramedConn::Block(c) => c.read_ready().map_err(flat),
            FramedConn::Secure(c) => c.read_ready().map_err(secure_conn::flat),
        }
    }
}
