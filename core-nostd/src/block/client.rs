//! The client direction: stream requests to the blocks its server reads,
//! block-framed responses to stream responses.

use crate::codec::{Decoded, RequestDecoder};
use crate::wire::{LEGACY_VERSION, MAX_NAME_LEN, Response, Status};

use super::{BLOCK_LEN, BlockEnd, BlockError, OutStage, RESP_NAME_AT, SIZE_LEN};

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
