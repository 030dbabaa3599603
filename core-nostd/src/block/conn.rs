//! The transports: [`BlockServerConn`] for the dispatcher, and
//! [`BlockClientConn`] (opened by [`BlockConnect`]) for the client.

use embedded_io::{ErrorType, Read, ReadReady, Write};

use crate::client::Connect;
use crate::dispatch::SendFile;
use crate::io::write_all;
use crate::wire::{LEGACY_VERSION, Response, Status};

use super::{
    BLOCK_LEN, BlockEnd, BlockError, OutStage, RequestBlocker, RequestUnblocker, ResponseBlocker,
    ResponseUnblocker,
};

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

    /// The wrapped transport, given back.
    pub fn into_inner(self) -> T {
        self.inner
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
impl<T: Read + Write> SendFile for BlockServerConn<T> {}

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
