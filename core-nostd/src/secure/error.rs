//! Why a secure session could not start or had to end, by cause.

use crate::error::TransportError;
use crate::secure::hello::HelloError;

/// Why a handshake failed. Every variant ends the connection; only
/// [`AuthenticationFailed`](Self::AuthenticationFailed) on the server side
/// comes with bytes to send (the plaintext 1003), which the machines write
/// themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first six bytes are not a version-3 HELLO.
    Hello(HelloError),
    /// Server: message 1 did not decrypt under the user's key, or the user is
    /// unknown (the two are one answer on purpose). Client: message 2 did not
    /// decrypt, so the server does not hold our key.
    AuthenticationFailed,
    /// Client: the server answered in plaintext instead of message 2, with
    /// this response header: an old server's "unknown op", or our own
    /// server's "authentication failed". `reason_len` bytes of reason follow
    /// the header on the wire.
    Refused {
        /// The version byte of the plaintext response.
        version: u8,
        /// Its status code (1003 from every server we know).
        status: u16,
        /// The reason's length, from the response's `size`.
        reason_len: u32,
    },
    /// A handshake message's length prefix is not the one message length
    /// this pattern has.
    BadFrameLength(u16),
    /// The peer's payload announced a `max_record` under the minimum (64).
    BadMaxRecord(u16),
    /// The caller's `max_record` is under the minimum (64), or its buffer is
    /// too small for what it was asked to hold.
    BufferTooSmall,
    /// The handshake was driven out of order (finished before it was complete).
    NotComplete,
    /// The Noise state machine refused for another reason (not seen with the
    /// fixed pattern and lengths used here; kept so nothing panics).
    Noise,
}

impl HandshakeError {
    /// A short reason for logs.
    pub const fn reason(self) -> &'static str {
        match self {
            HandshakeError::Hello(e) => e.reason(),
            HandshakeError::AuthenticationFailed => super::AUTH_FAILED_REASON,
            HandshakeError::Refused { .. } => "the server refused the secure session",
            HandshakeError::BadFrameLength(_) => "handshake message of the wrong length",
            HandshakeError::BadMaxRecord(_) => "peer's max_record under 64",
            HandshakeError::BufferTooSmall => "buffer too small for the secure session",
            HandshakeError::NotComplete => "handshake not complete",
            HandshakeError::Noise => "noise handshake failure",
        }
    }
}

impl core::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())?;
        match self {
            HandshakeError::Refused { version, status, .. } => {
                write!(f, " (version {version}, status {status})")
            }
            HandshakeError::BadFrameLength(n) | HandshakeError::BadMaxRecord(n) => write!(f, " (got {n})"),
            _ => Ok(()),
        }
    }
}

impl core::error::Error for HandshakeError {}

impl From<HelloError> for HandshakeError {
    fn from(e: HelloError) -> Self {
        HandshakeError::Hello(e)
    }
}

/// Why a record could not be sealed or opened. Each one means: close the
/// connection now, send nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RecordError {
    /// A record's length prefix is under [`MIN_RECORD`](super::MIN_RECORD) or
    /// over the `max_record` this side announced.
    BadLength(u16),
    /// The record did not authenticate: altered, reordered, replayed or not
    /// ours.
    Decrypt,
    /// The nonce counter reached 2^64-1, which Noise reserves: this
    /// direction cannot carry another record.
    NonceExhausted,
    /// The caller's buffer cannot hold the record, or the plaintext is empty
    /// or longer than the peer accepts.
    BufferTooSmall,
    /// An earlier fault ended this direction.
    Failed,
}

impl RecordError {
    /// A short reason for logs.
    pub const fn reason(self) -> &'static str {
        match self {
            RecordError::BadLength(_) => "record length out of range",
            RecordError::Decrypt => "record failed to decrypt",
            RecordError::NonceExhausted => "record nonces exhausted",
            RecordError::BufferTooSmall => "record does not fit the buffer",
            RecordError::Failed => "record layer failed earlier",
        }
    }
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())?;
        if let RecordError::BadLength(n) = self {
            write!(f, " (got {n})")?;
        }
        Ok(())
    }
}

impl core::error::Error for RecordError {}

/// Why a [`SecureStream`](super::SecureStream) or a blocking handshake
/// failed: the transport `E`, or the secure layer itself. After any of them
/// the stream refuses every further read and write, so nothing more reaches
/// the peer; the shell closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SecureError<E> {
    /// The transport's own error.
    Io(E),
    /// The peer closed the connection inside a handshake message or record.
    Closed,
    /// A transport write accepted no bytes.
    WriteZero,
    /// The handshake failed.
    Handshake(HandshakeError),
    /// A record was malformed, did not decrypt, or cannot be sealed.
    Record(RecordError),
}

impl<E> From<TransportError<E>> for SecureError<E> {
    fn from(e: TransportError<E>) -> Self {
        match e {
            TransportError::Io(e) => SecureError::Io(e),
            TransportError::Closed => SecureError::Closed,
            TransportError::WriteZero => SecureError::WriteZero,
        }
    }
}

impl<E> From<HandshakeError> for SecureError<E> {
    fn from(e: HandshakeError) -> Self {
        SecureError::Handshake(e)
    }
}

impl<E> From<RecordError> for SecureError<E> {
    fn from(e: RecordError) -> Self {
        SecureError::Record(e)
    }
}

impl<E: core::fmt::Debug> core::fmt::Display for SecureError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SecureError::Io(e) => write!(f, "transport error: {e:?}"),
            SecureError::Closed => f.write_str("connection closed by peer inside a secure message"),
            SecureError::WriteZero => f.write_str("transport accepted no bytes"),
            SecureError::Handshake(e) => write!(f, "{e}"),
            SecureError::Record(e) => write!(f, "{e}"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for SecureError<E> {}

impl<E: embedded_io::Error> embedded_io::Error for SecureError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            SecureError::Io(e) => e.kind(),
            SecureError::Closed => ErrorKind::ConnectionReset,
            SecureError::WriteZero => ErrorKind::WriteZero,
            SecureError::Handshake(HandshakeError::AuthenticationFailed | HandshakeError::Refused { .. }) => {
                ErrorKind::PermissionDenied
            }
            SecureError::Handshake(_)
            | SecureError::Record(RecordError::BadLength(_) | RecordError::Decrypt) => ErrorKind::InvalidData,
            SecureError::Record(_) => ErrorKind::Other,
        }
    }
}
