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

use embedded_io::{ErrorType, Read, ReadReady, Write};

use crate::client::Connect;
use crate::codec::{Decoded, RequestDecoder, ResponseDecoder};
use crate::dispatch::SendFile;
use crate::io::write_all;
use crate::wire::{
    LEGACY_BLOCK_LEN, LEGACY_VERSION, MAX_NAME_LEN, Op, REQUEST_MAX_HEADER_LEN, REQUEST_PREFIX_LEN, Response,
    Status,
};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InStage {
    /// Bytes of the header block read so far.
    Header {
        at: usize,
    },
    /// Bytes of the size read so far.
    Size {
        at: usize,
    },
    Data {
        remaining: u32,
    },
    Done,
}

/// Translates one block-framed request into stream request bytes.
#[derive(Debug, Clone)]
pub struct RequestUnblocker {
    stage: InStage,
    /// The header block's fields as read (user id to the end of the name).
    fields: [u8; REQUEST_MAX_HEADER_LEN],
    /// Name length once decided.
    name_len: Option<usize>,
    /// Stream bytes made and not yet handed out.
    pending: [u8; REQUEST_MAX_HEADER_LEN],
    pending_len: usize,
    pending_at: usize,
}

impl Default for RequestUnblocker {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestUnblocker {
    /// Waiting for the first byte of a header block.
    pub const fn new() -> Self {
        RequestUnblocker {
            stage: InStage::Header { at: 0 },
            fields: [0; REQUEST_MAX_HEADER_LEN],
            name_len: None,
            pending: [0; REQUEST_MAX_HEADER_LEN],
            pending_len: 0,
            pending_at: 0,
        }
    }

    /// Whether the request has been read and handed out whole; later input is
    /// padding, never consumed.
    pub fn is_complete(&self) -> bool {
        self.stage == InStage::Done && self.pending_at == self.pending_len
    }

    /// What the input's end means now.
    pub fn finish(&self) -> BlockEnd {
        match self.stage {
            InStage::Header { at: 0 } => BlockEnd::Nothing,
            InStage::Done => BlockEnd::Complete,
            _ => BlockEnd::CutShort,
        }
    }

    /// Consumes block-framed `input` and writes stream bytes into `out`;
    /// returns (bytes consumed, bytes written). Stops consuming at the end of
    /// the request. Input may come in pieces of any size.
    pub fn feed(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), BlockError> {
        let mut used = 0;
        let mut made = 0;
        loop {
            if self.pending_at < self.pending_len {
                let src = self.pending.get(self.pending_at..self.pending_len).unwrap_or(&[]);
                let dst = out.get_mut(made..).unwrap_or(&mut []);
                let n = src.len().min(dst.len());
                if n == 0 {
                    return Ok((used, made));
                }
                dst.get_mut(..n).unwrap_or(&mut []).copy_from_slice(src.get(..n).unwrap_or(&[]));
                self.pending_at += n;
                made += n;
                continue;
            }
            let rest = input.get(used..).unwrap_or(&[]);
            match self.stage {
                InStage::Done => return Ok((used, made)),
                InStage::Data { remaining } => {
                    let dst = out.get_mut(made..).unwrap_or(&mut []);
                    let n = rest.len().min(dst.len()).min(remaining as usize);
                    if n == 0 {
                        return Ok((used, made));
                    }
                    dst.get_mut(..n).unwrap_or(&mut []).copy_from_slice(rest.get(..n).unwrap_or(&[]));
                    used += n;
                    made += n;
                    // n is at most `remaining`, a u32.
                    let left = remaining - n as u32;
                    self.stage = if left == 0 { InStage::Done } else { InStage::Data { remaining: left } };
                }
                InStage::Size { at } => {
                    let Some(&byte) = rest.first() else { return Ok((used, made)) };
                    used += 1;
                    self.push_pending(byte);
                    if at + 1 < SIZE_LEN {
                        self.stage = InStage::Size { at: at + 1 };
                    } else {
                        let size_at = self.pending_len - SIZE_LEN;
                        let mut size = [0; SIZE_LEN];
                        size.copy_from_slice(self.pending.get(size_at..self.pending_len).unwrap_or(&[0; 4]));
                        let size = u32::from_le_bytes(size);
                        self.stage =
                            if size == 0 { InStage::Done } else { InStage::Data { remaining: size } };
                    }
                }
                InStage::Header { at } => {
                    let Some(&byte) = rest.first() else { return Ok((used, made)) };
                    used += 1;
                    self.header_byte(at, byte)?;
                }
            }
        }
    }

    fn push_pending(&mut self, byte: u8) {
        if let Some(slot) = self.pending.get_mut(self.pending_len) {
            *slot = byte;
            self.pending_len += 1;
        }
    }

    /// Takes byte `at` of the header block.
    fn header_byte(&mut self, at: usize, byte: u8) -> Result<(), BlockError> {
        let op = Op::from(self.fields.get(REQ_OP_AT).copied().unwrap_or(0));
        let fields_end = match (op.has_name(), self.name_len) {
            (true, Some(n)) => REQ_NAME_AT + n,
            (true, None) => REQ_NAME_AT,
            (false, _) => REQUEST_PREFIX_LEN,
        };
        if at < fields_end.max(REQUEST_PREFIX_LEN) {
            if let Some(slot) = self.fields.get_mut(at) {
                *slot = byte;
            }
        } else if byte != 0 {
            // `at` is below BLOCK_LEN.
            return Err(BlockError::Padding { offset: at as u16 });
        }
        let at = at + 1;
        if at == REQUEST_PREFIX_LEN && self.fields.get(REQ_OP_AT) == Some(&0) {
            return Err(BlockError::NoOp);
        }
        if at == REQ_NAME_AT && op.has_name() {
            let field = [self.fields.get(REQ_NAME_LEN_AT).copied().unwrap_or(0), byte];
            let n = request_name_len(field)?;
            self.name_len = Some(n);
        }
        if at < BLOCK_LEN {
            self.stage = InStage::Header { at };
            return Ok(());
        }
        // The whole block is in: hand out the stream header.
        self.pending_len = 0;
        self.pending_at = 0;
        for i in 0..REQUEST_PREFIX_LEN {
            self.push_pending(self.fields.get(i).copied().unwrap_or(0));
        }
        if let (true, Some(n)) = (op.has_name(), self.name_len) {
            // n is at most 255.
            for b in (n as u16).to_le_bytes() {
                self.push_pending(b);
            }
            for i in REQ_NAME_AT..REQ_NAME_AT + n {
                self.push_pending(self.fields.get(i).copied().unwrap_or(0));
            }
        }
        self.stage = if op.has_payload() { InStage::Size { at: 0 } } else { InStage::Done };
        Ok(())
    }
}

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

/// Translates one stream response into blocks as that project's client reads
/// them. Holds the block being filled, never more.
#[derive(Debug, Clone)]
pub struct ResponseBlocker {
    decoder: ResponseDecoder,
    block: [u8; BLOCK_LEN],
    len: usize,
    ready: bool,
    stage: OutStage,
    size: u32,
}

impl Default for ResponseBlocker {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseBlocker {
    /// Waiting for the first byte of a stream response.
    pub const fn new() -> Self {
        ResponseBlocker {
            decoder: ResponseDecoder::new(),
            block: [0; BLOCK_LEN],
            len: 0,
            ready: false,
            stage: OutStage::Header,
            size: 0,
        }
    }

    /// Whether every block of the response has been sent.
    pub fn is_complete(&self) -> bool {
        self.stage == OutStage::Done
    }

    /// A block to send now, whole in one write, if one is ready.
    pub fn ready(&self) -> Option<&[u8]> {
        if self.ready { self.block.get(..self.len) } else { None }
    }

    /// The ready block went out: start the next one.
    pub fn sent(&mut self) {
        if !self.ready {
            return;
        }
        self.ready = false;
        self.len = 0;
        match self.stage {
            OutStage::DataNext => {
                self.block = [0; BLOCK_LEN];
                for (slot, b) in self.block.iter_mut().zip(self.size.to_le_bytes()) {
                    *slot = b;
                }
                self.len = SIZE_LEN;
                self.stage = OutStage::Data;
                if self.decoder.is_complete() {
                    self.ready = true;
                    self.stage = OutStage::Last;
                }
            }
            OutStage::Last => self.stage = OutStage::Done,
            _ => {}
        }
    }

    /// Consumes stream bytes until a block is ready (send it, then call
    /// [`sent`](Self::sent)); returns how many. Consumes nothing while a
    /// block waits or once the response is complete.
    pub fn push(&mut self, input: &[u8]) -> Result<usize, BlockError> {
        let mut used = 0;
        while !self.ready && used < input.len() {
            match self.stage {
                OutStage::Header => {
                    let rest = input.get(used..).unwrap_or(&[]);
                    let (n, decoded) = self.decoder.feed(rest).map_err(BlockError::Stream)?;
                    used += n;
                    if decoded == Decoded::Header {
                        self.header_block()?;
                    } else if n == 0 {
                        return Err(BlockError::AfterEnd);
                    }
                }
                OutStage::Data => {
                    let room = BLOCK_LEN - self.len;
                    let rest = input.get(used..).unwrap_or(&[]);
                    let rest = rest.get(..room.min(rest.len())).unwrap_or(&[]);
                    let (n, decoded) = self.decoder.feed(rest).map_err(BlockError::Stream)?;
                    used += n;
                    if let Decoded::Payload(chunk) = decoded {
                        if let Some(dst) = self.block.get_mut(self.len..self.len + chunk.len()) {
                            dst.copy_from_slice(chunk);
                            self.len += chunk.len();
                        }
                    }
                    if self.decoder.is_complete() {
                        self.ready = true;
                        self.stage = OutStage::Last;
                    } else if self.len == BLOCK_LEN {
                        self.ready = true;
                    } else if n == 0 {
                        return Err(BlockError::AfterEnd);
                    }
                }
                OutStage::DataNext | OutStage::Last | OutStage::Done => return Err(BlockError::AfterEnd),
            }
        }
        Ok(used)
    }

    fn header_block(&mut self) -> Result<(), BlockError> {
        let Some(h) = self.decoder.header() else { return Err(BlockError::AfterEnd) };
        let mut block = [0; BLOCK_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            if let Some(dst) = block.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
                at += bytes.len();
            }
        };
        put(&[h.version]);
        put(&u16::from(h.status).to_le_bytes());
        if !h.name.is_empty() {
            // The decoder bounds names to 255 bytes.
            put(&(h.name.len() as u16).to_le_bytes());
            put(h.name);
        }
        let data_follows = matches!(h.status, Status::Restored | Status::Listed) || h.size > 0;
        self.size = h.size;
        self.block = block;
        self.len = BLOCK_LEN;
        self.ready = true;
        self.stage = if data_follows { OutStage::DataNext } else { OutStage::Last };
        Ok(())
    }
}

/// Why a [`BlockServerConn`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BlockIoError<E> {
    /// The transport's own error.
    Io(E),
    /// The peer's bytes break the block framing.
    Framing(BlockError),
    /// A write accepted no bytes.
    WriteZero,
}

impl<E: core::fmt::Debug> core::fmt::Display for BlockIoError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BlockIoError::Io(e) => write!(f, "transport error: {e:?}"),
            BlockIoError::Framing(e) => write!(f, "block framing: {e}"),
            BlockIoError::WriteZero => f.write_str("transport accepted no bytes"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for BlockIoError<E> {}

impl<E: embedded_io::Error> embedded_io::Error for BlockIoError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            BlockIoError::Io(e) => e.kind(),
            BlockIoError::Framing(_) => embedded_io::ErrorKind::InvalidData,
            BlockIoError::WriteZero => embedded_io::ErrorKind::WriteZero,
        }
    }
}

fn from_transport<E>(e: crate::error::TransportError<E>) -> BlockIoError<E> {
    match e {
        crate::error::TransportError::Io(e) => BlockIoError::Io(e),
        _ => BlockIoError::WriteZero,
    }
}

/// A server-side connection in block framing, as a stream transport for the
/// [`Dispatcher`](crate::Dispatcher): reads end after the one request, and
/// each response goes out block by block, one write per block.
#[derive(Debug)]
pub struct BlockServerConn<T> {
    inner: T,
    unblocker: RequestUnblocker,
    blocker: ResponseBlocker,
    input: [u8; BLOCK_LEN],
    pos: usize,
    filled: usize,
    error: Option<BlockError>,
}

impl<T: Read + Write> BlockServerConn<T> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: T) -> Self {
        BlockServerConn {
            inner,
            unblocker: RequestUnblocker::new(),
            blocker: ResponseBlocker::new(),
            input: [0; BLOCK_LEN],
            pos: 0,
            filled: 0,
            error: None,
        }
    }

    /// The wrapped transport, to drain and close it.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The framing error that stopped reading, if one did.
    pub fn framing_error(&self) -> Option<BlockError> {
        self.error
    }

    /// How the request's input ended.
    pub fn request_end(&self) -> BlockEnd {
        self.unblocker.finish()
    }

    /// Whether a response has started going out.
    pub fn answered(&self) -> bool {
        self.blocker.ready().is_some() || self.blocker.stage != OutStage::Header
    }

    /// Sends a 1003 with `reason` (cut to 255 bytes), for a request the
    /// dispatcher never saw whole.
    pub fn refuse(&mut self, reason: &str) -> Result<(), BlockIoError<T::Error>> {
        let reason = reason.as_bytes();
        let reason = reason.get(..reason.len().min(crate::wire::MAX_REASON_LEN)).unwrap_or(&[]);
        self.blocker = ResponseBlocker::new();
        let mut header = [0; crate::wire::RESPONSE_MIN_HEADER_LEN];
        // Both fit: an empty name, and the length is at most 255.
        let response =
            Response { version: LEGACY_VERSION, status: Status::Error, name: &[], size: reason.len() as u32 };
        let len = response.emit(&mut header).map_err(|_| BlockIoError::WriteZero)?;
        self.write_stream(header.get(..len).unwrap_or(&[]))?;
        self.write_stream(reason)
    }

    fn write_stream(&mut self, mut data: &[u8]) -> Result<(), BlockIoError<T::Error>> {
        while !data.is_empty() {
            let n = embedded_io::Write::write(self, data)?;
            data = data.get(n..).unwrap_or(&[]);
        }
        Ok(())
    }
}

impl<T: ErrorType> ErrorType for BlockServerConn<T> {
    type Error = BlockIoError<T::Error>;
}

impl<T: Read + Write> Read for BlockServerConn<T> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Self::Error> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let input = self.input.get(self.pos..self.filled).unwrap_or(&[]);
            let (used, made) = self.unblocker.feed(input, out).map_err(|e| {
                self.error = Some(e);
                BlockIoError::Framing(e)
            })?;
            self.pos += used;
            if made > 0 {
                return Ok(made);
            }
            if self.unblocker.is_complete() {
                // One request per connection: what follows is padding.
                return Ok(0);
            }
            if self.pos < self.filled {
                continue;
            }
            let n = self.inner.read(&mut self.input).map_err(BlockIoError::Io)?;
            if n == 0 {
                return Ok(0);
            }
            self.pos = 0;
            self.filled = n;
        }
    }
}

impl<T: Read + Write> ReadReady for BlockServerConn<T> {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.pos < self.filled)
    }
}

impl<T: Read + Write> Write for BlockServerConn<T> {
    fn write(&mut self, data: &[u8]) -> Result<usize, Self::Error> {
        if data.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.blocker.push(data).map_err(BlockIoError::Framing)?;
            // A block made by `sent` (the size block of an empty file) goes too.
            let mut sent = false;
            while let Some(block) = self.blocker.ready() {
                write_all(&mut self.inner, block).map_err(from_transport)?;
                self.blocker.sent();
                sent = true;
            }
            if n > 0 {
                return Ok(n);
            }
            if !sent {
                return Err(BlockIoError::Framing(BlockError::AfterEnd));
            }
        }
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().map_err(BlockIoError::Io)
    }
}

/// Restores are copied block by block: the kernel's zero-copy path would
/// bypass the framing.
impl<T: Read + Write, R> SendFile<R> for BlockServerConn<T> {}

/// Translates one stream request into blocks as that project's server reads
/// them: the header block, then for a backup the size and data, the first
/// data block padded to 1024 bytes and the last later one not padded (its
/// server reads exactly the bytes still due, and closing with padding unread
/// would reset the connection before its answer is read).
#[derive(Debug, Clone)]
pub struct RequestBlocker {
    decoder: RequestDecoder,
    block: [u8; BLOCK_LEN],
    len: usize,
    ready: bool,
    stage: OutStage,
    first_data: bool,
    size: u32,
}

impl Default for RequestBlocker {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestBlocker {
    /// Waiting for the first byte of a stream request.
    pub const fn new() -> Self {
        RequestBlocker {
            decoder: RequestDecoder::new(),
            block: [0; BLOCK_LEN],
            len: 0,
            ready: false,
            stage: OutStage::Header,
            first_data: true,
            size: 0,
        }
    }

    /// Whether every block of the request has been sent.
    pub fn is_complete(&self) -> bool {
        self.stage == OutStage::Done
    }

    /// A block to send now, if one is ready.
    pub fn ready(&self) -> Option<&[u8]> {
        if self.ready { self.block.get(..self.len) } else { None }
    }

    /// The ready block went out: start the next one.
    pub fn sent(&mut self) {
        if !self.ready {
            return;
        }
        self.ready = false;
        self.block = [0; BLOCK_LEN];
        self.len = 0;
        match self.stage {
            OutStage::DataNext => {
                for (slot, b) in self.block.iter_mut().zip(self.size.to_le_bytes()) {
                    *slot = b;
                }
                self.len = SIZE_LEN;
                self.stage = OutStage::Data;
                if self.decoder.is_complete() {
                    self.len = BLOCK_LEN;
                    self.ready = true;
                    self.stage = OutStage::Last;
                }
            }
            OutStage::Data => self.first_data = false,
            OutStage::Last => self.stage = OutStage::Done,
            _ => {}
        }
    }

    /// Consumes stream bytes until a block is ready; returns how many.
    pub fn push(&mut self, input: &[u8]) -> Result<usize, BlockError> {
        let mut used = 0;
        while !self.ready && used < input.len() {
            let rest = input.get(used..).unwrap_or(&[]);
            match self.stage {
                OutStage::Header => {
                    let (n, decoded) = self.decoder.feed(rest).map_err(BlockError::Stream)?;
                    used += n;
                    if decoded == Decoded::Header {
                        self.header_block();
                    } else if n == 0 {
                        return Err(BlockError::AfterEnd);
                    }
                }
                OutStage::Data => {
                    let room = BLOCK_LEN - self.len;
                    let rest = rest.get(..room.min(rest.len())).unwrap_or(&[]);
                    let (n, decoded) = self.decoder.feed(rest).map_err(BlockError::Stream)?;
                    used += n;
                    if let Decoded::Payload(chunk) = decoded {
                        if let Some(dst) = self.block.get_mut(self.len..self.len + chunk.len()) {
                            dst.copy_from_slice(chunk);
                            self.len += chunk.len();
                        }
                    }
                    if self.decoder.is_complete() {
                        if self.first_data {
                            self.len = BLOCK_LEN;
                        }
                        self.ready = true;
                        self.stage = OutStage::Last;
                    } else if self.len == BLOCK_LEN {
                        self.ready = true;
                    } else if n == 0 {
                        return Err(BlockError::AfterEnd);
                    }
                }
                OutStage::DataNext | OutStage::Last | OutStage::Done => return Err(BlockError::AfterEnd),
            }
        }
        Ok(used)
    }

    fn header_block(&mut self) {
        let Some(h) = self.decoder.header() else { return };
        let mut at = 0;
        let block = &mut self.block;
        let mut put = |bytes: &[u8]| {
            if let Some(dst) = block.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
                at += bytes.len();
            }
        };
        put(&h.user_id.to_le_bytes());
        put(&[h.version, u8::from(h.op)]);
        if h.op.has_name() {
            // Little-endian: what its server reads (natively, on x86); the
            // big-endian form its client sends works there only by accident.
            put(&(h.name.len() as u16).to_le_bytes());
            put(h.name.as_bytes());
        }
        self.size = h.size;
        self.len = BLOCK_LEN;
        self.ready = true;
        self.stage = if h.op.has_payload() { OutStage::DataNext } else { OutStage::Last };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerStage {
    Header { at: usize },
    Size { at: usize },
    Data { remaining: u32 },
    Done,
}

/// Translates one block-framed response into stream response bytes. The
/// version becomes 1 whatever the server said, since block framing carries
/// one request per connection; a data part (size and data) follows the
/// header block of 210, 211 and 1003, and when the server closes instead
/// (its server does for an empty restore) the size is 0. Bytes after the
/// data (padding, the spare blocks its server sends) are never consumed.
#[derive(Debug, Clone)]
pub struct ResponseUnblocker {
    stage: AnswerStage,
    fields: [u8; RESP_NAME_AT + MAX_NAME_LEN],
    pending: [u8; crate::wire::RESPONSE_MAX_HEADER_LEN],
    pending_len: usize,
    pending_at: usize,
}

impl Default for ResponseUnblocker {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseUnblocker {
    /// Waiting for the first byte of a header block.
    pub const fn new() -> Self {
        ResponseUnblocker {
            stage: AnswerStage::Header { at: 0 },
            fields: [0; RESP_NAME_AT + MAX_NAME_LEN],
            pending: [0; crate::wire::RESPONSE_MAX_HEADER_LEN],
            pending_len: 0,
            pending_at: 0,
        }
    }

    /// Whether the response has been handed out whole.
    pub fn is_complete(&self) -> bool {
        self.stage == AnswerStage::Done && self.pending_at == self.pending_len
    }

    fn status(&self) -> Status {
        let f = &self.fields;
        Status::from(u16::from_le_bytes([f.get(1).copied().unwrap_or(0), f.get(2).copied().unwrap_or(0)]))
    }

    fn name_len(&self) -> usize {
        let f = &self.fields;
        let n = u16::from_le_bytes([f.get(3).copied().unwrap_or(0), f.get(4).copied().unwrap_or(0)]);
        if matches!(self.status(), Status::Restored | Status::Done | Status::NotFound) {
            usize::from(n)
        } else {
            0
        }
    }

    /// The input ended: a missing data part means size 0. Returns what the
    /// end means.
    pub fn input_ended(&mut self) -> BlockEnd {
        match self.stage {
            AnswerStage::Header { at: 0 } => BlockEnd::Nothing,
            AnswerStage::Size { at: 0 } => {
                self.stream_header(0);
                self.stage = AnswerStage::Done;
                BlockEnd::Complete
            }
            AnswerStage::Done => BlockEnd::Complete,
            _ => BlockEnd::CutShort,
        }
    }

    fn stream_header(&mut self, size: u32) {
        let n = self.name_len();
        let name = self.fields.get(RESP_NAME_AT..RESP_NAME_AT + n).unwrap_or(&[]);
        let response = Response { version: LEGACY_VERSION, status: self.status(), name, size };
        self.pending_len = response.emit(&mut self.pending).unwrap_or(0);
        self.pending_at = 0;
    }

    /// Consumes block-framed `input`, writes stream bytes into `out`;
    /// returns (consumed, written).
    pub fn feed(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), BlockError> {
        let mut used = 0;
        let mut made = 0;
        loop {
            if self.pending_at < self.pending_len {
                let src = self.pending.get(self.pending_at..self.pending_len).unwrap_or(&[]);
                let dst = out.get_mut(made..).unwrap_or(&mut []);
                let n = src.len().min(dst.len());
                if n == 0 {
                    return Ok((used, made));
                }
                dst.get_mut(..n).unwrap_or(&mut []).copy_from_slice(src.get(..n).unwrap_or(&[]));
                self.pending_at += n;
                made += n;
                continue;
            }
            let rest = input.get(used..).unwrap_or(&[]);
            match self.stage {
                AnswerStage::Done => return Ok((used, made)),
                AnswerStage::Data { remaining } => {
                    let dst = out.get_mut(made..).unwrap_or(&mut []);
                    let n = rest.len().min(dst.len()).min(remaining as usize);
                    if n == 0 {
                        return Ok((used, made));
                    }
                    dst.get_mut(..n).unwrap_or(&mut []).copy_from_slice(rest.get(..n).unwrap_or(&[]));
                    used += n;
                    made += n;
                    let left = remaining - n as u32;
                    self.stage =
                        if left == 0 { AnswerStage::Done } else { AnswerStage::Data { remaining: left } };
                }
                AnswerStage::Size { at } => {
                    let Some(&byte) = rest.first() else { return Ok((used, made)) };
                    used += 1;
                    // The size is kept in the spare end of `pending` until whole.
                    if let Some(slot) = self.pending.get_mut(at) {
                        *slot = byte;
                    }
                    if at + 1 < SIZE_LEN {
                        self.stage = AnswerStage::Size { at: at + 1 };
                    } else {
                        let mut size = [0; SIZE_LEN];
                        size.copy_from_slice(self.pending.get(..SIZE_LEN).unwrap_or(&[0; SIZE_LEN]));
                        let size = u32::from_le_bytes(size);
                        self.stream_header(size);
                        self.stage =
                            if size == 0 { AnswerStage::Done } else { AnswerStage::Data { remaining: size } };
                    }
                }
                AnswerStage::Header { at } => {
                    let Some(&byte) = rest.first() else { return Ok((used, made)) };
                    used += 1;
                    if let Some(slot) = self.fields.get_mut(at) {
                        *slot = byte;
                    }
                    let at = at + 1;
                    if at == RESP_NAME_AT && self.name_len() > MAX_NAME_LEN {
                        return Err(BlockError::ResponseNameLength(self.name_len() as u16));
                    }
                    if at < BLOCK_LEN {
                        self.stage = AnswerStage::Header { at };
                    } else if matches!(self.status(), Status::Restored | Status::Listed | Status::Error) {
                        self.stage = AnswerStage::Size { at: 0 };
                    } else {
                        self.stream_header(0);
                        self.stage = AnswerStage::Done;
                    }
                }
            }
        }
    }
}

/// A client-side connection to a block-framed server, as a stream transport
/// for the [`Client`](crate::Client): requests go out block by block, and the
/// one response reads as a stream response of version 1, so the client
/// connects anew for the next request.
#[derive(Debug)]
pub struct BlockClientConn<T> {
    inner: T,
    blocker: RequestBlocker,
    unblocker: ResponseUnblocker,
    input: [u8; BLOCK_LEN],
    pos: usize,
    filled: usize,
}

impl<T: Read + Write> BlockClientConn<T> {
    /// Wraps a fresh connection.
    pub fn new(inner: T) -> Self {
        BlockClientConn {
            inner,
            blocker: RequestBlocker::new(),
            unblocker: ResponseUnblocker::new(),
            input: [0; BLOCK_LEN],
            pos: 0,
            filled: 0,
        }
    }
}

impl<T: ErrorType> ErrorType for BlockClientConn<T> {
    type Error = BlockIoError<T::Error>;
}

impl<T: Read + Write> Read for BlockClientConn<T> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Self::Error> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let input = self.input.get(self.pos..self.filled).unwrap_or(&[]);
            let (used, made) = self.unblocker.feed(input, out).map_err(BlockIoError::Framing)?;
            self.pos += used;
            if made > 0 {
                return Ok(made);
            }
            if self.unblocker.is_complete() {
                return Ok(0);
            }
            if self.pos < self.filled {
                continue;
            }
            let n = self.inner.read(&mut self.input).map_err(BlockIoError::Io)?;
            if n == 0 {
                if self.unblocker.input_ended() == BlockEnd::Complete && !self.unblocker.is_complete() {
                    continue;
                }
                return Ok(0);
            }
            self.pos = 0;
            self.filled = n;
        }
    }
}

impl<T: Read + Write + ReadReady> ReadReady for BlockClientConn<T> {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        if self.pos < self.filled {
            return Ok(true);
        }
        self.inner.read_ready().map_err(BlockIoError::Io)
    }
}

impl<T: Read + Write> Write for BlockClientConn<T> {
    fn write(&mut self, data: &[u8]) -> Result<usize, Self::Error> {
        if data.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.blocker.push(data).map_err(BlockIoError::Framing)?;
            // A block made by `sent` (the size block of an empty file) goes too.
            let mut sent = false;
            while let Some(block) = self.blocker.ready() {
                write_all(&mut self.inner, block).map_err(from_transport)?;
                self.blocker.sent();
                sent = true;
            }
            if n > 0 {
                return Ok(n);
            }
            if !sent {
                return Err(BlockIoError::Framing(BlockError::AfterEnd));
            }
        }
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().map_err(BlockIoError::Io)
    }
}

/// Opens block-framed connections through another connector.
#[derive(Debug, Clone)]
pub struct BlockConnect<C>(pub C);

impl<C: Connect> Connect for BlockConnect<C> {
    type Conn = BlockClientConn<C::Conn>;

    fn connect(&mut self) -> Result<Self::Conn, <Self::Conn as ErrorType>::Error> {
        self.0.connect().map(BlockClientConn::new).map_err(BlockIoError::Io)
    }
}

#[cfg(test)]
mod tests;
