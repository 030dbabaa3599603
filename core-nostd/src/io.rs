//! Small blocking I/O loops over `embedded-io`, without the panics of its
//! provided methods (`write_all` panics when a write returns `Ok(0)`).

use embedded_io::{Read, Write};

use crate::error::TransportError;

/// Writes all of `buf` to the peer; a write that accepts nothing is an
/// error, not a panic.
pub(crate) fn write_all<W: Write + ?Sized>(w: &mut W, buf: &[u8]) -> Result<(), TransportError<W::Error>> {
    if write_whole(w, buf)? { Ok(()) } else { Err(TransportError::WriteZero) }
}

/// Writes all of `buf`; `Ok(false)` when a write accepted nothing. For a
/// transport that is [`TransportError::WriteZero`]; for a restore's sink it
/// is a full sink, which is no transport's failure.
pub(crate) fn write_whole<W: Write + ?Sized>(w: &mut W, mut buf: &[u8]) -> Result<bool, W::Error> {
    while !buf.is_empty() {
        match w.write(buf)? {
            0 => return Ok(false),
            n => buf = buf.get(n..).unwrap_or(&[]),
        }
    }
    Ok(true)
}

/// Reads until `buf` is full or the reader ends; returns the count read.
pub(crate) fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<usize, R::Error> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match r.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// How [`drain`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Drained {
    /// The peer closed its side: closing now sends no reset.
    PeerClosed,
    /// `limit` bytes were discarded and the peer kept sending.
    LimitReached,
    /// The transport failed (a read timeout, typically).
    Failed,
}

/// Reads and discards what the peer still sends after a session has ended, up
/// to `limit` bytes, so that closing does not send a reset that could destroy
/// the response the peer has not read yet. Bound the time with the
/// transport's read timeout.
pub fn drain<R: Read + ?Sized>(r: &mut R, scratch: &mut [u8], limit: u64) -> Drained {
    let mut discarded: u64 = 0;
    while discarded < limit {
        let want = scratch.len().min(usize::try_from(limit - discarded).unwrap_or(usize::MAX));
        let Some(window) = scratch.get_mut(..want).filter(|w| !w.is_empty()) else {
            return Drained::Failed;
        };
        match r.read(window) {
            Ok(0) => return Drained::PeerClosed,
            Ok(n) => discarded += n as u64,
            Err(_) => return Drained::Failed,
        }
    }
    Drained::LimitReached
}
