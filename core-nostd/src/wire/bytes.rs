//! Panic-free little-endian field access. Out-of-range reads yield `None` and
//! out-of-range writes report failure, so no accessor can panic on any input.

use core::ops::Range;

pub(crate) fn u16_at(buf: &[u8], field: Range<usize>) -> Option<u16> {
    let bytes: [u8; 2] = buf.get(field)?.try_into().ok()?;
    Some(u16::from_le_bytes(bytes))
}

pub(crate) fn u32_at(buf: &[u8], field: Range<usize>) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(field)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Copies `value` into `buf[at..]`; false when it does not fit.
pub(crate) fn put(buf: &mut [u8], at: usize, value: &[u8]) -> bool {
    match at.checked_add(value.len()).and_then(|end| buf.get_mut(at..end)) {
        Some(dst) => {
            dst.copy_from_slice(value);
            true
        }
        None => false,
    }
}

/// The name bytes present in `buf`: up to `len` bytes from `start`.
pub(crate) fn name_slice(buf: &[u8], start: usize, len: u16) -> &[u8] {
    let end = start.saturating_add(usize::from(len)).min(buf.len());
    buf.get(start.min(end)..end).unwrap_or(&[])
}
