//! The server direction: block-framed requests to stream requests, stream
//! responses to the blocks its client reads.

use crate::codec::{Decoded, ResponseDecoder};
use crate::wire::{Op, REQUEST_MAX_HEADER_LEN, REQUEST_PREFIX_LEN, Status};

use super::{
    BLOCK_LEN, BlockEnd, BlockError, OutStage, REQ_NAME_AT, REQ_NAME_LEN_AT, REQ_OP_AT, SIZE_LEN,
    request_name_len,
};

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

/// Translates one stream response into blocks as that project's client reads
/// them. Holds the block being filled, never more.
#[derive(Debug, Clone)]
pub struct ResponseBlocker {
    decoder: ResponseDecoder,
    block: [u8; BLOCK_LEN],
    len: usize,
    ready: bool,
    /// Read by [`BlockServerConn::answered`](super::BlockServerConn::answered).
    pub(super) stage: OutStage,
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
