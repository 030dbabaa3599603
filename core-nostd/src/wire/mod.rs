//! The wire format: field layout, limits, codes, name rules, and typed views
//! with parsed representations of request and response headers.
//!
//! All integers are unsigned little-endian. See `PROTOCOL.md` for the tables
//! and a hex example of every message form.

mod bytes;
mod codes;
mod meta;
mod name;
mod path;
mod request;
mod response;

pub use crate::error::PathError;
pub use codes::{Op, Status};
pub use meta::{LIST_ENTRY_FIXED_LEN, LIST_ENTRY_MAX_LEN, ListEntry, META_LEN, Meta, SHA256_LEN};
pub(crate) use name::NameBuf;
pub use name::{NameError, check_name, validate_name};
pub use path::{MAX_PATH_LEN, MAX_PATH_SEGMENTS, check_path, has_prefix, validate_path};
pub use request::{Request, RequestView};
pub use response::{Response, ResponseView};

/// The highest protocol version this crate speaks. Version 2 is version 1
/// plus the promise that the server keeps the connection open.
pub const PROTOCOL_VERSION: u8 = 2;
/// The first version of the protocol; servers answering it may close after every response.
pub const LEGACY_VERSION: u8 = 1;

/// The TCP port servers listen on and clients connect to unless told
/// otherwise.
pub const DEFAULT_PORT: u16 = 7373;

/// The lowest user id in use. User id 0 is not used: clients never send it
/// (a client refuses it as a setting and never picks it as a new id), which
/// leaves 0 to mean "no user" where a server reports a request too short to
/// carry its user id. A server does not refuse requests for user 0.
pub const MIN_USER_ID: u32 = 1;

/// Longest file name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest reason carried in a 1003 response payload, in bytes.
pub const MAX_REASON_LEN: usize = 255;
/// Largest file the protocol can carry (`size` is a u32).
pub const MAX_FILE_SIZE: u32 = u32::MAX;
/// Block size to which some existing peers pad every request and response.
pub const LEGACY_BLOCK_LEN: usize = 1024;

/// Bytes every request starts with: user id, version, op.
pub const REQUEST_PREFIX_LEN: usize = 6;
/// Longest request header (a backup with a 255-byte name), payload excluded.
pub const REQUEST_MAX_HEADER_LEN: usize = REQUEST_PREFIX_LEN + 2 + MAX_NAME_LEN + 4;
/// Shortest complete response header (empty name), payload excluded.
pub const RESPONSE_MIN_HEADER_LEN: usize = 1 + 2 + 2 + 4;
/// Longest response header (a 255-byte name), payload excluded.
pub const RESPONSE_MAX_HEADER_LEN: usize = RESPONSE_MIN_HEADER_LEN + MAX_NAME_LEN;

/// Byte offsets of every field, in one place. Fields after the name move with
/// its length, so they are functions of it.
pub(crate) mod field {
    pub type Field = core::ops::Range<usize>;

    pub const REQ_USER_ID: Field = 0..4;
    pub const REQ_VERSION: usize = 4;
    pub const REQ_OP: usize = 5;
    pub const REQ_NAME_LEN: Field = 6..8;
    pub const REQ_NAME: usize = 8;
    pub const fn req_size(name_len: usize) -> Field {
        REQ_NAME + name_len..REQ_NAME + name_len + 4
    }

    pub const RESP_VERSION: usize = 0;
    pub const RESP_STATUS: Field = 1..3;
    pub const RESP_NAME_LEN: Field = 3..5;
    pub const RESP_NAME: usize = 5;
    pub const fn resp_size(name_len: usize) -> Field {
        RESP_NAME + name_len..RESP_NAME + name_len + 4
    }
}

/// The caller's buffer cannot hold the header being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall;

impl core::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("buffer too small for the header")
    }
}

impl core::error::Error for BufferTooSmall {}
