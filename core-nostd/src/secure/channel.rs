//! What a secure stream holds between calls, whichever shell drives it
//! (blocking or async): the two record ciphers, the caller's buffers, the
//! opened plaintext not yet read, and whether a fault ended the session.
//! Pure bookkeeping: the shells only move bytes between it and the transport.

use core::ops::Range;

use super::handshake::Transport;
use super::record::{Opener, Sealer};
use super::{HandshakeError, RECORD_HEADER_LEN, RECORD_OVERHEAD, RecordError, rx_buffer_len};

pub(crate) struct Channel<B> {
    sealer: Sealer,
    opener: Opener,
    rx: B,
    tx: B,
    /// The opened plaintext in `rx` not yet read.
    plain: Range<usize>,
    failed: bool,
}

impl<B> Channel<B> {
    /// Refuses everything once failed: nothing more reaches the peer.
    pub(crate) fn check(&self) -> Result<(), RecordError> {
        if self.failed { Err(RecordError::Failed) } else { Ok(()) }
    }

    pub(crate) fn fail(&mut self) {
        self.failed = true;
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.failed
    }

    pub(crate) fn peer_max_record(&self) -> u16 {
        self.sealer.peer_max_record()
    }

    pub(crate) fn has_plain(&self) -> bool {
        !self.plain.is_empty()
    }

    /// Whether no record is partly received.
    pub(crate) fn at_boundary(&self) -> bool {
        self.opener.at_boundary()
    }
}

impl<B: AsMut<[u8]>> Channel<B> {
    pub(crate) fn new(transport: Transport, mut rx: B, mut tx: B) -> Result<Self, HandshakeError> {
        if rx.as_mut().len() < rx_buffer_len(transport.max_record()) || tx.as_mut().len() <= RECORD_OVERHEAD {
            return Err(HandshakeError::BufferTooSmall);
        }
        let (sealer, opener) = transport.split();
        Ok(Channel { sealer, opener, rx, tx, plain: 0..0, failed: false })
    }

    /// The most plaintext one record from here carries.
    pub(crate) fn max_write(&mut self) -> usize {
        self.sealer.max_plaintext().min(self.tx.as_mut().len().saturating_sub(RECORD_OVERHEAD))
    }

    /// Copies buffered plaintext into `buf`; returns the count (0 if none).
    pub(crate) fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let Some(plain) = self.rx.as_mut().get(self.plain.clone()) else { return 0 };
        let n = plain.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), plain.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.plain.start += n;
        n
    }

    /// Where the next bytes from the transport go: exactly what the record
    /// still lacks. Only called with no plaintext buffered.
    pub(crate) fn rx_space(&mut self) -> Result<&mut [u8], RecordError> {
        if self.opener.needed() == 0 {
            // Only a failed opener needs nothing: its space is empty.
            self.failed = true;
            return Err(RecordError::Failed);
        }
        Ok(self.opener.space(self.rx.as_mut()))
    }

    /// `n` bytes arrived in [`rx_space`](Self::rx_space); `true` once a
    /// record opened and its plaintext is buffered.
    pub(crate) fn received(&mut self, n: usize) -> Result<bool, RecordError> {
        match self.opener.advance(self.rx.as_mut(), n) {
            Ok(Some(plain)) => {
                self.plain = plain;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Seals as much of `buf` as one record carries; returns the plaintext
    /// count taken and the record to write whole.
    pub(crate) fn seal(&mut self, buf: &[u8]) -> Result<(usize, &[u8]), RecordError> {
        let n = buf.len().min(self.max_write());
        let tx = self.tx.as_mut();
        let sealed = match (tx.get_mut(RECORD_HEADER_LEN..RECORD_HEADER_LEN + n), buf.get(..n)) {
            (Some(dst), Some(src)) => {
                dst.copy_from_slice(src);
                self.sealer.seal_in_place(tx, n)
            }
            _ => Err(RecordError::BufferTooSmall),
        };
        match sealed {
            Ok(len) => Ok((n, tx.get(..len).unwrap_or_default())),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}
