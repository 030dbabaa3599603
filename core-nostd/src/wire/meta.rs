//! File metadata as version-3 sessions carry it (issue #13): the fixed
//! block after a path in op 101 requests and status 213 responses, the
//! SHA-256 trailer after their payloads, and the entries of a status-214
//! listing. Field offsets are in one place ([`offset`]); parsing checks the
//! length once, then reads without panicking.
//!
//! ```text
//! metadata block:  size u64 | mtime i64 (ns since the Unix epoch) | mode u32     (20 bytes)
//! list entry:      name_len u16 | name | metadata block | sha256 (32 bytes)
//! ```

use super::bytes::put;
use super::{BufferTooSmall, MAX_PATH_LEN};
use crate::error::ProtocolError;

/// Bytes of a SHA-256 digest.
pub const SHA256_LEN: usize = 32;
/// Bytes of the metadata block.
pub const META_LEN: usize = 8 + 8 + 4;
/// Bytes of a list entry besides its name.
pub const LIST_ENTRY_FIXED_LEN: usize = 2 + META_LEN + SHA256_LEN;
/// Longest list entry (a path of [`MAX_PATH_LEN`] bytes).
pub const LIST_ENTRY_MAX_LEN: usize = LIST_ENTRY_FIXED_LEN + MAX_PATH_LEN;

/// Field offsets within the metadata block.
mod offset {
    use core::ops::Range;
    pub const SIZE: Range<usize> = 0..8;
    pub const MTIME: Range<usize> = 8..16;
    pub const MODE: Range<usize> = 16..20;
}

/// A file's size, modification time and permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Meta {
    /// Payload bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (negative
    /// before it).
    pub mtime_ns: i64,
    /// Permission bits (`0o644`, say); the server keeps the low 12.
    pub mode: u32,
}

fn array<const N: usize>(buf: &[u8], range: core::ops::Range<usize>) -> [u8; N] {
    buf.get(range).and_then(|b| b.try_into().ok()).unwrap_or([0; N])
}

impl Meta {
    /// Parses the block at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Meta, ProtocolError> {
        if buf.len() < META_LEN {
            return Err(ProtocolError::Truncated);
        }
        Ok(Meta {
            size: u64::from_le_bytes(array(buf, offset::SIZE)),
            mtime_ns: i64::from_le_bytes(array(buf, offset::MTIME)),
            mode: u32::from_le_bytes(array(buf, offset::MODE)),
        })
    }

    /// Writes the block at the start of `buf`; its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let fits = put(buf, offset::SIZE.start, &self.size.to_le_bytes())
            && put(buf, offset::MTIME.start, &self.mtime_ns.to_le_bytes())
            && put(buf, offset::MODE.start, &self.mode.to_le_bytes());
        if fits { Ok(META_LEN) } else { Err(BufferTooSmall) }
    }
}

/// One file of a status-214 listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListEntry<'a> {
    /// The file's path, as sent (check it with
    /// [`validate_path`](super::validate_path)).
    pub name: &'a [u8],
    /// Its metadata.
    pub meta: Meta,
    /// The SHA-256 of its content.
    pub sha256: [u8; SHA256_LEN],
}

impl<'a> ListEntry<'a> {
    /// Parses the entry at the start of `buf`: the entry and its length,
    /// or [`ProtocolError::Truncated`] if `buf` ends inside it (more bytes
    /// are needed; not an error of the peer's).
    pub fn parse(buf: &'a [u8]) -> Result<(ListEntry<'a>, usize), ProtocolError> {
        if buf.len() < 2 {
            return Err(ProtocolError::Truncated);
        }
        let name_len = usize::from(u16::from_le_bytes(array(buf, 0..2)));
        let total = LIST_ENTRY_FIXED_LEN + name_len;
        let (Some(name), Some(meta), Some(sha)) = (
            buf.get(2..2 + name_len),
            buf.get(2 + name_len..2 + name_len + META_LEN),
            buf.get(2 + name_len + META_LEN..total),
        ) else {
            return Err(ProtocolError::Truncated);
        };
        let sha256 = sha.try_into().map_err(|_| ProtocolError::Truncated)?;
        Ok((ListEntry { name, meta: Meta::parse(meta)?, sha256 }, total))
    }

    /// Bytes of this entry on the wire.
    pub fn len(&self) -> usize {
        LIST_ENTRY_FIXED_LEN + self.name.len()
    }

    /// Whether the entry has an empty name (never sent by a server).
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
    }

    /// Writes the entry at the start of `buf`; its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let name_len = u16::try_from(self.name.len()).map_err(|_| BufferTooSmall)?;
        let meta_at = 2 + self.name.len();
        let mut block = [0u8; META_LEN];
        self.meta.emit(&mut block)?;
        let fits = put(buf, 0, &name_len.to_le_bytes())
            && put(buf, 2, self.name)
            && put(buf, meta_at, &block)
            && put(buf, meta_at + META_LEN, &self.sha256);
        if fits { Ok(self.len()) } else { Err(BufferTooSmall) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-256 of "hello\n".
    const HELLO_SHA256: [u8; 32] = [
        0x58, 0x91, 0xb5, 0xb5, 0x22, 0xd5, 0xdf, 0x08, 0x6d, 0x0f, 0xf0, 0xb1, 0x10, 0xfb, 0xd9, 0xd2, 0x1b,
        0xb4, 0xfc, 0x71, 0x63, 0xaf, 0x34, 0xd0, 0x82, 0x86, 0xa2, 0xe8, 0x46, 0xf6, 0xbe, 0x03,
    ];

    /// docs/a.txt, 6 bytes, mtime 2026-12-03 00:00:00 UTC, mode 0644.
    const ENTRY: &[u8] = &[
        0x0a, 0x00, b'd', b'o', b'c', b's', b'/', b'a', b'.', b't', b'x', b't', // name_len, name
        0x06, 0, 0, 0, 0, 0, 0, 0, // size
        0x00, 0x00, 0xaa, 0xa5, 0x50, 0x95, 0xed, 0x18, // mtime (ns)
        0xa4, 0x01, 0x00, 0x00, // mode 0o644
        0x58, 0x91, 0xb5, 0xb5, 0x22, 0xd5, 0xdf, 0x08, 0x6d, 0x0f, 0xf0, 0xb1, 0x10, 0xfb, 0xd9, 0xd2, 0x1b,
        0xb4, 0xfc, 0x71, 0x63, 0xaf, 0x34, 0xd0, 0x82, 0x86, 0xa2, 0xe8, 0x46, 0xf6, 0xbe, 0x03,
    ];

    fn entry() -> ListEntry<'static> {
        ListEntry {
            name: b"docs/a.txt",
            meta: Meta { size: 6, mtime_ns: 1_796_256_000_000_000_000, mode: 0o644 },
            sha256: HELLO_SHA256,
        }
    }

    #[test]
    fn a_list_entry_is_these_bytes_both_ways() {
        let mut buf = [0u8; 128];
        let n = entry().emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], ENTRY);
        assert_eq!(ListEntry::parse(ENTRY), Ok((entry(), ENTRY.len())));
    }

    #[test]
    fn an_entry_cut_at_any_byte_asks_for_more_and_never_panics() {
        for cut in 0..ENTRY.len() {
            assert_eq!(ListEntry::parse(&ENTRY[..cut]), Err(ProtocolError::Truncated), "cut at {cut}");
        }
        let mut two = ENTRY.to_vec();
        two.extend_from_slice(ENTRY);
        let (first, n) = ListEntry::parse(&two).unwrap();
        assert_eq!((first, ListEntry::parse(&two[n..]).unwrap().0), (entry(), entry()));
    }

    #[test]
    fn the_metadata_block_keeps_negative_times_and_big_sizes() {
        let meta = Meta { size: (1 << 63) - 1, mtime_ns: -1, mode: 0o7777 };
        let mut buf = [0u8; META_LEN];
        assert_eq!(meta.emit(&mut buf), Ok(META_LEN));
        assert_eq!(
            buf,
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0x0f, 0, 0
            ]
        );
        assert_eq!(Meta::parse(&buf), Ok(meta));
        assert_eq!(meta.emit(&mut [0u8; META_LEN - 1]), Err(BufferTooSmall));
    }
}
