//! Version-3 connections: the core's handshake and records over a TCP
//! connection, keyed by the user's key, and what a failed handshake means
//! for the user (a key the server does not hold, or a server too old for
//! version 3), as a typed error the messages can tell apart.

use std::fmt;
use std::io;

use backup_core::secure::{
    AUTH_FAILED_REASON, HandshakeError, SecureError, SecureStream, TAG_LEN, client_handshake_with_reason,
    rx_buffer_len, tx_buffer_len,
};
use backup_core::wire::MAX_REASON_LEN;
use host_common::key_line::KeyLine;
use rand_core::OsRng;

use crate::transport::TcpConn;

/// The largest record either way: the protocol's largest, so big transfers
/// pay the per-record costs (a length, a tag, a system call) as rarely as
/// possible. 128 KiB of buffers per connection.
const RECORD_LEN: u16 = u16::MAX;

/// A version-3 session over TCP.
pub type SecureConn = SecureStream<TcpConn, Vec<u8>>;

/// Why a version-3 session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The server does not hold this key for this user (or no such user).
    KeyRefused,
    /// The server answered the HELLO with a plaintext refusal of its own:
    /// an old server ("unknown op"), or a limit (the reason says which).
    Refused(String),
    /// The server closed the connection during the handshake: an old server
    /// that drops unknown requests.
    Closed,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFailure::KeyRefused => f.write_str("the server does not accept this key"),
            HandshakeFailure::Refused(reason) => write!(f, "the server refused the secure session: {reason}"),
            HandshakeFailure::Closed => f.write_str("the server closed the connection during the handshake"),
        }
    }
}

impl std::error::Error for HandshakeFailure {}

/// Opens a version-3 session on `tcp` for `key`'s user; a plaintext
/// refusal's reason tells a refused key from an old server.
pub fn open(tcp: TcpConn, key: &KeyLine) -> io::Result<SecureConn> {
    let rx = vec![0u8; rx_buffer_len(RECORD_LEN)];
    let tx = vec![0u8; tx_buffer_len(RECORD_LEN as usize - TAG_LEN)];
    let mut reason = String::new();
    // A reason is at most 255 bytes; a server claiming more is cut there.
    let keep = |r: &[u8]| reason = String::from_utf8_lossy(&r[..r.len().min(MAX_REASON_LEN)]).into_owned();
    client_handshake_with_reason(tcp, key.user, key.key.bytes(), &mut OsRng, rx, tx, keep).map_err(
        |e| match e {
            // An old server that closes on the HELLO with message 1 unread
            // resets the connection rather than closing it.
            SecureError::Io(e) if is_hang_up(&e) => {
                io::Error::new(io::ErrorKind::PermissionDenied, HandshakeFailure::Closed)
            }
            SecureError::Io(e) => e,
            SecureError::Closed => io::Error::new(io::ErrorKind::PermissionDenied, HandshakeFailure::Closed),
            SecureError::Handshake(e) => handshake_error(e, &reason),
            other => flat(other),
        },
    )
}

fn is_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe
    )
}

/// A failed handshake as an I/O error carrying a [`HandshakeFailure`] where
/// the failure means something to the user.
fn handshake_error(e: HandshakeError, reason: &str) -> io::Error {
    let failure = match e {
        HandshakeError::AuthenticationFailed => HandshakeFailure::KeyRefused,
        HandshakeError::Refused { .. } if reason == AUTH_FAILED_REASON => HandshakeFailure::KeyRefused,
        HandshakeError::Refused { .. } => HandshakeFailure::Refused(crate::text::printable(reason)),
        other => return io::Error::new(io::ErrorKind::InvalidData, other.reason()),
    };
    io::Error::new(io::ErrorKind::PermissionDenied, failure)
}

/// A record-layer error as an I/O error, so every command's messages stay one type.
pub fn flat(e: SecureError<io::Error>) -> io::Error {
    match e {
        SecureError::Io(e) => e,
        SecureError::Closed => io::Error::new(io::ErrorKind::UnexpectedEof, "closed inside a record"),
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}
