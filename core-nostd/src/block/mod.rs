//! The 1024-byte block framing of NaftaliProjects/File-Transfer-and_Backup-in-cpp-and-python
//! (a C++ Boost.Asio server and a Python client), translated to and from the
//! stream framing, so the dispatcher serves it unchanged.
//!
//! Sans-IO: [`RequestUnblocker`] turns block-framed request bytes into
//! stream request bytes, [`ResponseBlocker`] turns stream response bytes into
//! the blocks that project's client parses. Neither holds more than one block,
//! whatever the file size. [`BlockServerConn`] runs both over a transport.
//!
//! Layout (see `PROTOCOL.md`, "Block framing"):
//! - request: a header block (user id u32 LE, version, op, for ops 100, 200
//!   and 201 `name_len` and the name; zeros to 1024 bytes). Its client writes
//!   `name_len` big-endian; a little-endian one is accepted when it is the
//!   only valid reading. A backup's size (u32 LE) and data follow contiguously
//!   (the first data block holds up to 1020 bytes); zero padding after the
//!   data is ignored.
//! - response: a header block (version, status u16 LE, and for a named answer
//!   `name_len` u16 LE and the name; zeros to 1024 bytes), then for 210, 211
//!   and a 1003 with a reason, the size (u32 LE) and the data in 1024-byte
//!   writes, the last one not padded: that client writes everything it
//!   receives into the restored file, so padding would corrupt it.
//!
//! Files: this one holds the offsets, the errors and the reading of a
//! request's `name_len`; `server` the server direction ([`RequestUnblocker`],
//! [`ResponseBlocker`]), `client` the client direction ([`RequestBlocker`],
//! [`ResponseUnblocker`]), `conn` the transports that run them
//! ([`BlockServerConn`], [`BlockClientConn`], [`BlockConnect`]).

use crate::wire::{LEGACY_BLOCK_LEN, MAX_NAME_LEN, REQUEST_PREFIX_LEN};

mod client;
mod conn;
mod server;

pub use client::{RequestBlocker, ResponseUnblocker};
pub use conn::{BlockClientConn, BlockConnect, BlockIoError, BlockServerConn};
pub use server::{RequestUnblocker, ResponseBlocker};

/// Length of every block.
pub const BLOCK_LEN: usize = LEGACY_BLOCK_LEN;
/// Bytes of the size field that starts a data part.
pub const SIZE_LEN: usize = 4;
/// File bytes the first data block of a backup holds (after the size).
pub const FIRST_DATA_LEN: usize = BLOCK_LEN - SIZE_LEN;
/// Offset of `name_len` in a request header block.
pub const REQ_NAME_LEN_AT: usize = REQUEST_PREFIX_LEN;
/// Offset of the name in a request header block.
pub const REQ_NAME_AT: usize = REQ_NAME_LEN_AT + 2;
/// Offset of the op in a request header block.
pub const REQ_OP_AT: usize = 5;
/// Offset of `name_len` in a response header block.
pub const RESP_NAME_LEN_AT: usize = 3;
/// Offset of the name in a response header block.
pub const RESP_NAME_AT: usize = RESP_NAME_LEN_AT + 2;

/// Block-framed bytes that cannot be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BlockError {
    /// The connection ended inside a header block or a size field.
    CutShort,
    /// Neither reading of a request's `name_len` is 1 to 255 bytes.
    NameLength {
        /// The big-endian reading (what its client writes).
        big_endian: u16,
        /// The little-endian reading.
        little_endian: u16,
    },
    /// A non-zero byte in a header block's padding: the name length does not
    /// match the name (its client counts characters, not UTF-8 bytes), or
    /// the block is not a request.
    Padding {
        /// Offset of the byte in the block.
        offset: u16,
    },
    /// A header block with op 0: no request.
    NoOp,
    /// A response `name_len` over 255.
    ResponseNameLength(u16),
    /// Stream bytes after the end of the one message a connection carries.
    AfterEnd,
    /// The stream bytes to translate break the stream framing.
    Stream(crate::error::ProtocolError),
}

impl BlockError {
    /// The reason sent in a 1003 response.
    pub const fn reason(self) -> &'static str {
        match self {
            BlockError::CutShort => "request cut short",
            BlockError::NameLength { .. } => "name length must be 1 to 255 bytes",
            BlockError::Padding { .. } => {
                "non-zero byte in block padding (name length does not match the name)"
            }
            BlockError::NoOp => "unknown op",
            BlockError::ResponseNameLength(_) => "name length must be 1 to 255 bytes",
            BlockError::AfterEnd => "bytes after the end of the message",
            BlockError::Stream(e) => e.reason(),
        }
    }
}

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())?;
        match self {
            BlockError::NameLength { big_endian, little_endian } => {
                write!(f, " (got {big_endian} big-endian, {little_endian} little-endian)")
            }
            BlockError::Padding { offset } => write!(f, " at offset {offset}"),
            BlockError::ResponseNameLength(n) => write!(f, " (got {n})"),
            _ => Ok(()),
        }
    }
}

impl core::error::Error for BlockError {}

/// How the block-framed input ended, when the transport reported its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BlockEnd {
    /// Not one byte arrived.
    Nothing,
    /// The message was whole.
    Complete,
    /// It ended inside the message.
    CutShort,
}

/// Picks the request's name length: the big-endian reading its client
/// writes, else the little-endian one when that alone is valid.
pub fn request_name_len(field: [u8; 2]) -> Result<usize, BlockError> {
    let big_endian = u16::from_be_bytes(field);
    let little_endian = u16::from_le_bytes(field);
    let valid = |n: u16| (1..=MAX_NAME_LEN).contains(&usize::from(n));
    if valid(big_endian) {
        Ok(usize::from(big_endian))
    } else if valid(little_endian) {
        Ok(usize::from(little_endian))
    } else {
        Err(BlockError::NameLength { big_endian, little_endian })
    }
}

/// Where a blocker ([`ResponseBlocker`], [`RequestBlocker`]) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutStage {
    Header,
    /// The header block is out; a data part follows.
    DataNext,
    Data,
    /// Nothing more follows the block being sent.
    Last,
    Done,
}

#[cfg(test)]
mod tests;
