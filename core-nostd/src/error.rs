//! Error types, split by origin: what the peer sent ([`ProtocolError`], and
//! the names it may send, [`NameError`]), the transport ([`TransportError`])
//! and local storage ([`StoreError`]).
//!
//! The wire format builds these, so nothing here comes from
//! [`wire`](crate::wire): the two modules do not import each other.

/// The peer sent bytes that break the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProtocolError {
    /// The message ended before its header was complete.
    Truncated,
    /// A request with an op this side does not know.
    UnknownOp(u8),
    /// Version 0, which no peer speaks.
    UnsupportedVersion(u8),
    /// A `name_len` of 0 or over 255.
    NameLength(u16),
    /// A name that breaks the naming rules.
    Name(NameError),
    /// A response status that does not answer the request sent.
    UnexpectedStatus(u16),
    /// A list payload entry longer than a name can be.
    BadListEntry,
    /// A 210, 212 or 1001 names another file than the request did: the
    /// answer is not for the file asked about.
    NameMismatch,
}

impl ProtocolError {
    /// The reason sent in a 1003 response and shown to users.
    pub const fn reason(self) -> &'static str {
        match self {
            ProtocolError::Truncated => "message truncated",
            ProtocolError::UnknownOp(_) => "unknown op",
            ProtocolError::UnsupportedVersion(_) => "unsupported protocol version",
            ProtocolError::NameLength(_) => "name length must be 1 to 255 bytes",
            ProtocolError::Name(e) => e.reason(),
            ProtocolError::UnexpectedStatus(_) => "unexpected response status",
            ProtocolError::BadListEntry => "malformed list entry",
            ProtocolError::NameMismatch => "response names another file than the request",
        }
    }
}

impl From<NameError> for ProtocolError {
    fn from(e: NameError) -> Self {
        ProtocolError::Name(e)
    }
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())?;
        match self {
            ProtocolError::UnknownOp(op) => write!(f, " {op}"),
            ProtocolError::UnsupportedVersion(v) => write!(f, " {v}"),
            ProtocolError::NameLength(n) => write!(f, " (got {n})"),
            ProtocolError::UnexpectedStatus(s) => write!(f, " {s}"),
            _ => Ok(()),
        }
    }
}

impl core::error::Error for ProtocolError {}

/// Why a file name is refused (see [`validate_name`](crate::wire::validate_name)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NameError {
    /// Zero bytes long.
    Empty,
    /// Longer than [`MAX_NAME_LEN`](crate::wire::MAX_NAME_LEN) bytes.
    TooLong,
    /// Not valid UTF-8.
    NotUtf8,
    /// Contains `/`.
    Slash,
    /// Contains `\`.
    Backslash,
    /// Contains a NUL byte.
    Nul,
    /// Contains another control character.
    Control,
    /// Is `.` or `..`.
    DotOrDotDot,
}

impl NameError {
    /// The reason sent in a 1003 response and shown to users.
    pub const fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "name is empty",
            NameError::TooLong => "name is longer than 255 bytes",
            NameError::NotUtf8 => "name is not valid UTF-8",
            NameError::Slash => "name contains '/'",
            NameError::Backslash => "name contains '\\'",
            NameError::Nul => "name contains a NUL byte",
            NameError::Control => "name contains a control character",
            NameError::DotOrDotDot => "name is '.' or '..'",
        }
    }
}

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())
    }
}

impl core::error::Error for NameError {}

/// Why a path (a version-3 name) is refused (see
/// [`validate_path`](crate::wire::validate_path)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PathError {
    /// Zero bytes long.
    Empty,
    /// Longer than [`MAX_PATH_LEN`](crate::wire::MAX_PATH_LEN) bytes.
    TooLong,
    /// More than [`MAX_PATH_SEGMENTS`](crate::wire::MAX_PATH_SEGMENTS) segments.
    TooManySegments,
    /// Not valid UTF-8.
    NotUtf8,
    /// A leading, trailing or doubled `/`.
    EmptySegment,
    /// A segment that is not a valid name.
    Segment(NameError),
}

impl PathError {
    /// The reason sent in a 1003 response and shown to users.
    pub const fn reason(self) -> &'static str {
        match self {
            PathError::Empty => "path is empty",
            PathError::TooLong => "path is longer than 1024 bytes",
            PathError::TooManySegments => "path has more than 32 segments",
            PathError::NotUtf8 => "path is not valid UTF-8",
            PathError::EmptySegment => "path has an empty segment (a leading, trailing or doubled '/')",
            PathError::Segment(e) => match e {
                NameError::TooLong => "a path segment is longer than 255 bytes",
                NameError::Backslash => "a path segment contains '\\'",
                NameError::Nul => "a path segment contains a NUL byte",
                NameError::Control => "a path segment contains a control character",
                NameError::DotOrDotDot => "a path segment is '.' or '..'",
                _ => "a path segment is not a valid name",
            },
        }
    }
}

impl core::fmt::Display for PathError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())
    }
}

impl core::error::Error for PathError {}

/// The transport failed or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransportError<E> {
    /// The transport's own error.
    Io(E),
    /// The peer closed the connection where more bytes were due.
    Closed,
    /// A write accepted no bytes.
    WriteZero,
}

impl<E> From<E> for TransportError<E> {
    fn from(e: E) -> Self {
        TransportError::Io(e)
    }
}

impl<E: core::fmt::Debug> core::fmt::Display for TransportError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TransportError::Io(e) => write!(f, "transport error: {e:?}"),
            TransportError::Closed => f.write_str("connection closed by peer"),
            TransportError::WriteZero => f.write_str("transport accepted no bytes"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for TransportError<E> {}

/// Why a [`Store`](crate::store::Store) could not do what was asked. Each kind
/// has a fixed reason for the 1003 response; stores log details themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StoreError {
    /// No file of that name.
    NotFound,
    /// The user's quota would be exceeded.
    QuotaExceeded,
    /// The file is larger than this store accepts.
    TooLarge,
    /// The disk, or the RAM store, is full.
    NoSpace,
    /// The operating system refused access.
    PermissionDenied,
    /// The store cannot take another upload right now.
    Busy,
    /// The file changed size while it was read.
    Changed,
    /// The name is taken by something that is not a regular file (a
    /// directory or a symbolic link planted in the user's folder).
    NotAFile,
    /// Any other I/O failure.
    Io,
    /// The user has a key, and this session is not authenticated
    /// ([`access`](crate::access)).
    AuthenticationRequired,
    /// The request names another user than the one this session was
    /// authenticated for ([`access`](crate::access)).
    OtherUser,
    /// The key this session authenticated with is no longer the user's key
    /// (the user was removed or given a new key since); the session's
    /// requests are refused from then on ([`access`](crate::access)).
    KeyRevoked,
}

impl StoreError {
    /// The reason sent in a 1003 response.
    pub const fn reason(self) -> &'static str {
        match self {
            StoreError::NotFound => "no such file",
            StoreError::QuotaExceeded => "over quota",
            StoreError::TooLarge => "file too large",
            StoreError::NoSpace => "server storage full",
            StoreError::PermissionDenied => "permission denied on server storage",
            StoreError::Busy => "server busy",
            StoreError::Changed => "file changed while being read",
            StoreError::NotAFile => "not a regular file",
            StoreError::Io => "server storage I/O error",
            StoreError::AuthenticationRequired => {
                "this user requires an authenticated session (protocol version 3)"
            }
            StoreError::OtherUser => "this session is authenticated for another user",
            StoreError::KeyRevoked => {
                "the key of this session was revoked; connect again with the user's current key"
            }
        }
    }
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())
    }
}

impl core::error::Error for StoreError {}

impl embedded_io::Error for StoreError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            StoreError::NotFound => ErrorKind::NotFound,
            StoreError::PermissionDenied
            | StoreError::AuthenticationRequired
            | StoreError::OtherUser
            | StoreError::KeyRevoked => ErrorKind::PermissionDenied,
            StoreError::NoSpace => ErrorKind::OutOfMemory,
            StoreError::TooLarge | StoreError::QuotaExceeded => ErrorKind::InvalidInput,
            StoreError::Changed | StoreError::NotAFile => ErrorKind::InvalidData,
            StoreError::Busy | StoreError::Io => ErrorKind::Other,
        }
    }
}
