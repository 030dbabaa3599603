//! The record layer: after the handshake every byte travels as a record, a
//! u16 length `N` and `N` bytes of Noise transport ciphertext (the
//! plaintext and its 16-byte tag). Each direction has its own cipher and
//! nonce counter, starting at 0 and counting every record; a nonce is never
//! used twice, and 2^64-1 (which Noise reserves) is never used at all.

use core::ops::Range;

use super::noise::Cipher;
use super::{MIN_RECORD, RECORD_HEADER_LEN, RECORD_OVERHEAD, RecordError, TAG_LEN};

/// Refuses the reserved last nonce before the cipher would use it: clatter
/// stops only one nonce later.
fn check_nonce(cipher: &Cipher) -> Result<(), RecordError> {
    if cipher.get_nonce() == u64::MAX { Err(RecordError::NonceExhausted) } else { Ok(()) }
}

/// Seals plaintext into records for the peer.
pub struct Sealer {
    cipher: Cipher,
    /// The largest record ciphertext the peer said it accepts.
    peer_max_record: u16,
}

impl Sealer {
    pub(crate) fn new(cipher: Cipher, peer_max_record: u16) -> Self {
        Sealer { cipher, peer_max_record }
    }

    /// The largest record ciphertext the peer accepts.
    pub fn peer_max_record(&self) -> u16 {
        self.peer_max_record
    }

    /// The most plaintext one record to the peer can carry.
    pub fn max_plaintext(&self) -> usize {
        usize::from(self.peer_max_record).saturating_sub(TAG_LEN)
    }

    /// Seals the `len` plaintext bytes at `buf[RECORD_HEADER_LEN..]` in place
    /// and writes the length prefix; returns the record's length on the wire
    /// (`len` + [`RECORD_OVERHEAD`]). `len` must be 1..=[`max_plaintext`](Self::max_plaintext)
    /// and `buf` must hold the whole record.
    pub fn seal_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, RecordError> {
        if len == 0 || len > self.max_plaintext() {
            return Err(RecordError::BufferTooSmall);
        }
        let total = len + RECORD_OVERHEAD;
        let Some((header, body)) =
            buf.get_mut(..total).and_then(|r| r.split_first_chunk_mut::<RECORD_HEADER_LEN>())
        else {
            return Err(RecordError::BufferTooSmall);
        };
        check_nonce(&self.cipher)?;
        // `len` is at most the peer's u16 max minus the tag, so this fits.
        *header = ((len + TAG_LEN) as u16).to_le_bytes();
        self.cipher.encrypt_with_ad_in_place(&[], body, len).map_err(|_| RecordError::NonceExhausted)?;
        Ok(total)
    }

    /// Seals `plaintext` into `out` as one record; returns its length on the wire.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, RecordError> {
        let Some(dst) = out.get_mut(RECORD_HEADER_LEN..RECORD_HEADER_LEN + plaintext.len()) else {
            return Err(RecordError::BufferTooSmall);
        };
        dst.copy_from_slice(plaintext);
        self.seal_in_place(out, plaintext.len())
    }

    #[cfg(test)]
    pub(crate) fn set_nonce(&mut self, n: u64) {
        self.cipher.set_nonce(n);
    }
}

/// Where the record being received stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `have` bytes of the length prefix are in.
    Header { have: usize },
    /// The prefix announced `len` bytes of ciphertext; `have` are in.
    Body { len: usize, have: usize },
    /// A record was malformed or forged: nothing more is opened.
    Failed,
}

/// Opens the peer's records as their bytes arrive, in a buffer the caller
/// owns: the length prefix at `buf[..2]`, the ciphertext after it, the
/// plaintext decrypted in place over it. It always knows exactly how many
/// bytes it needs next ([`needed`](Self::needed)), so a reader never reads
/// past the record.
pub struct Opener {
    cipher: Cipher,
    /// The largest record ciphertext this side announced.
    max_record: u16,
    stage: Stage,
}

impl Opener {
    pub(crate) fn new(cipher: Cipher, max_record: u16) -> Self {
        Opener { cipher, max_record, stage: Stage::Header { have: 0 } }
    }

    /// The largest record ciphertext this side accepts; its buffer must hold
    /// [`rx_buffer_len`](super::rx_buffer_len) of it.
    pub fn max_record(&self) -> u16 {
        self.max_record
    }

    /// Bytes still needed before the next step: the rest of the length
    /// prefix, then the rest of the ciphertext. 0 once failed.
    pub fn needed(&self) -> usize {
        match self.stage {
            Stage::Header { have } => RECORD_HEADER_LEN - have,
            Stage::Body { len, have } => len - have,
            Stage::Failed => 0,
        }
    }

    /// Whether no record is partly received: a peer that closes here closed
    /// cleanly.
    pub fn at_boundary(&self) -> bool {
        self.stage == Stage::Header { have: 0 }
    }

    /// Whether a fault ended this direction.
    pub fn is_failed(&self) -> bool {
        self.stage == Stage::Failed
    }

    fn window(&self) -> Range<usize> {
        match self.stage {
            Stage::Header { have } => have..RECORD_HEADER_LEN,
            Stage::Body { len, have } => RECORD_HEADER_LEN + have..RECORD_HEADER_LEN + len,
            Stage::Failed => 0..0,
        }
    }

    /// The part of `buf` the next bytes go to: exactly the bytes still needed.
    /// Empty if `buf` is too small for the record (then
    /// [`advance`](Self::advance) with 0 bytes reports it) or the opener failed.
    pub fn space<'a>(&self, buf: &'a mut [u8]) -> &'a mut [u8] {
        buf.get_mut(self.window()).unwrap_or_default()
    }

    /// `n` bytes were written at the start of [`space`](Self::space). Returns
    /// where the plaintext lies in `buf` once a record is whole and
    /// authentic, `None` while it is not yet whole. The plaintext stays valid
    /// until the next call that writes into `buf`.
    pub fn advance(&mut self, buf: &mut [u8], n: usize) -> Result<Option<Range<usize>>, RecordError> {
        match self.step(buf, n) {
            Err(e) => {
                self.stage = Stage::Failed;
                Err(e)
            }
            ok => ok,
        }
    }

    fn step(&mut self, buf: &mut [u8], n: usize) -> Result<Option<Range<usize>>, RecordError> {
        if n > self.needed() {
            return Err(RecordError::BufferTooSmall);
        }
        match self.stage {
            Stage::Failed => Err(RecordError::Failed),
            Stage::Header { have } if have + n < RECORD_HEADER_LEN => {
                self.stage = Stage::Header { have: have + n };
                Ok(None)
            }
            Stage::Header { .. } => {
                let Some(&[lo, hi]) = buf.first_chunk::<RECORD_HEADER_LEN>() else {
                    return Err(RecordError::BufferTooSmall);
                };
                let len = u16::from_le_bytes([lo, hi]);
                if usize::from(len) < MIN_RECORD || len > self.max_record {
                    return Err(RecordError::BadLength(len));
                }
                if buf.len() < RECORD_HEADER_LEN + usize::from(len) {
                    return Err(RecordError::BufferTooSmall);
                }
                self.stage = Stage::Body { len: usize::from(len), have: 0 };
                Ok(None)
            }
            Stage::Body { len, have } if have + n < len => {
                self.stage = Stage::Body { len, have: have + n };
                Ok(None)
            }
            Stage::Body { len, .. } => {
                let body = buf.get_mut(RECORD_HEADER_LEN..).ok_or(RecordError::BufferTooSmall)?;
                check_nonce(&self.cipher)?;
                let plain =
                    self.cipher.decrypt_with_ad_in_place(&[], body, len).map_err(|_| RecordError::Decrypt)?;
                self.stage = Stage::Header { have: 0 };
                Ok(Some(RECORD_HEADER_LEN..RECORD_HEADER_LEN + plain))
            }
        }
    }

    /// Copies what it can use of `input` into `buf` and advances: returns the
    /// bytes consumed and, once a record is whole, where its plaintext lies.
    /// It never consumes past the end of a record.
    pub fn feed(
        &mut self,
        buf: &mut [u8],
        input: &[u8],
    ) -> Result<(usize, Option<Range<usize>>), RecordError> {
        let mut consumed = 0;
        loop {
            if self.is_failed() {
                return Err(RecordError::Failed);
            }
            let rest = input.get(consumed..).unwrap_or_default();
            if rest.is_empty() {
                return Ok((consumed, None));
            }
            let space = self.space(buf);
            if space.is_empty() {
                // Only a buffer under the length prefix leaves no space.
                self.stage = Stage::Failed;
                return Err(RecordError::BufferTooSmall);
            }
            let n = space.len().min(rest.len());
            if let (Some(dst), Some(src)) = (space.get_mut(..n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            consumed += n;
            if let Some(plain) = self.advance(buf, n)? {
                return Ok((consumed, Some(plain)));
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn set_nonce(&mut self, n: u64) {
        self.cipher.set_nonce(n);
    }
}
