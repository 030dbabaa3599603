//! Response headers: a typed view over bytes and the parsed [`Response`].

use super::bytes::{name_slice, put, u16_at, u32_at};
use super::{BufferTooSmall, MAX_NAME_LEN, MAX_REASON_LEN, RESPONSE_MIN_HEADER_LEN, Status, field};
use crate::error::ProtocolError;

/// A read-only view of a response header held in a byte buffer.
///
/// After [`check_len`](Self::check_len) succeeds every accessor returns the
/// field's value; before it, accessors return zero or empty for missing
/// bytes, which is also how short responses from older servers read.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ResponseView<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        ResponseView { buffer }
    }

    /// Wraps a buffer that must hold a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, ProtocolError> {
        let view = Self::new_unchecked(buffer);
        view.check_len()?;
        Ok(view)
    }

    /// Checks that the buffer holds every header field.
    pub fn check_len(&self) -> Result<(), ProtocolError> {
        if self.buffer.as_ref().len() < self.header_len() { Err(ProtocolError::Truncated) } else { Ok(()) }
    }

    /// Length of the header, from `name_len` when present.
    pub fn header_len(&self) -> usize {
        field::resp_size(usize::from(self.name_len())).end
    }

    /// The protocol version the server answers with.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref().get(field::RESP_VERSION).copied().unwrap_or(0)
    }

    /// The status.
    pub fn status(&self) -> Status {
        Status::from(u16_at(self.buffer.as_ref(), field::RESP_STATUS).unwrap_or(0))
    }

    /// The declared name length.
    pub fn name_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::RESP_NAME_LEN).unwrap_or(0)
    }

    /// The name bytes present, up to `name_len`.
    pub fn name(&self) -> &[u8] {
        name_slice(self.buffer.as_ref(), field::RESP_NAME, self.name_len())
    }

    /// The declared payload size.
    pub fn size(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::resp_size(usize::from(self.name_len()))).unwrap_or(0)
    }
}

/// A parsed response header. The payload follows it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Response<'a> {
    /// The protocol version the server answers with.
    pub version: u8,
    /// The status.
    pub status: Status,
    /// The name the response is about, as sent (empty where it does not apply).
    pub name: &'a [u8],
    /// The payload length.
    pub size: u32,
}

impl<'a> Response<'a> {
    /// Parses a complete header. Names are kept as bytes: a client compares
    /// them, it does not store by them.
    pub fn parse(bytes: &'a [u8]) -> Result<Response<'a>, ProtocolError> {
        ResponseView::new_checked(bytes)?;
        Ok(Self::from_partial(bytes))
    }

    /// Reads whatever fields a possibly short header holds; missing ones read
    /// as zero or empty, which is how short responses of older servers mean them.
    pub(crate) fn from_partial(bytes: &'a [u8]) -> Self {
        let view = ResponseView::new_unchecked(bytes);
        Response {
            version: view.version(),
            status: view.status(),
            name: name_slice(bytes, field::RESP_NAME, view.name_len()),
            size: view.size(),
        }
    }

    /// Length of this header on the wire.
    pub fn header_len(&self) -> usize {
        RESPONSE_MIN_HEADER_LEN + self.name.len()
    }

    /// The name as text, if it is UTF-8.
    pub fn name_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.name).ok()
    }

    /// Writes this header into the start of `buf` and returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.header_len();
        if buf.len() < len || self.name.len() > MAX_NAME_LEN {
            return Err(BufferTooSmall);
        }
        // The length check above bounds the name to 255 bytes.
        let name_len = self.name.len() as u16;
        let ok = put(buf, field::RESP_VERSION, &[self.version])
            && put(buf, field::RESP_STATUS.start, &u16::from(self.status).to_le_bytes())
            && put(buf, field::RESP_NAME_LEN.start, &name_len.to_le_bytes())
            && put(buf, field::RESP_NAME, self.name)
            && put(buf, field::resp_size(self.name.len()).start, &self.size.to_le_bytes());
        if ok { Ok(len) } else { Err(BufferTooSmall) }
    }

    /// Writes a whole 1003 into the start of `buf`: version `version`, an
    /// empty name, and `reason` (cut to [`MAX_REASON_LEN`] bytes) as its
    /// payload, so header and reason go out in one write. Returns its length.
    pub fn emit_error(version: u8, reason: &str, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let reason = reason.as_bytes();
        let reason = reason.get(..reason.len().min(MAX_REASON_LEN)).unwrap_or_default();
        let response = Response { version, status: Status::Error, name: b"", size: reason.len() as u32 };
        let header = response.emit(buf)?;
        let end = header + reason.len();
        buf.get_mut(header..end).ok_or(BufferTooSmall)?.copy_from_slice(reason);
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESTORED: &[u8] = &[
        0x02, 0xd2, 0x00, // version 2, status 210
        0x01, 0x00, b'a', // name "a"
        0x02, 0x00, 0x00, 0x00, // size 2
    ];

    #[test]
    fn restored_header_parses_and_emits_identically() {
        let resp = Response::parse(RESTORED).unwrap();
        assert_eq!(resp, Response { version: 2, status: Status::Restored, name: b"a", size: 2 });
        let mut buf = [0u8; 32];
        let n = resp.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], RESTORED);
    }

    #[test]
    fn short_views_read_missing_fields_as_empty() {
        let view = ResponseView::new_unchecked(&RESTORED[..3]);
        assert_eq!(view.status(), Status::Restored);
        assert_eq!(view.name(), b"");
        assert_eq!(view.size(), 0);
        assert_eq!(view.check_len(), Err(ProtocolError::Truncated));
    }

    #[test]
    fn a_1003_is_emitted_whole_with_its_reason_as_payload_cut_to_255_bytes() {
        let mut buf = [0u8; 300];
        let n = Response::emit_error(2, "busy", &mut buf).unwrap();
        assert_eq!(buf[..n], [0x02, 0xeb, 0x03, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, b'b', b'u', b's', b'y']);
        let long = "x".repeat(300);
        assert_eq!(Response::emit_error(1, &long, &mut buf), Ok(RESPONSE_MIN_HEADER_LEN + MAX_REASON_LEN));
        assert_eq!(buf[5..9], [0xff, 0, 0, 0]);
        assert_eq!(Response::emit_error(1, "busy", &mut buf[..12]), Err(BufferTooSmall));
    }
}
