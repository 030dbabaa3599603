//! Request headers: a typed view over bytes and the parsed [`Request`].

use super::bytes::{name_slice, u16_at, u32_at};
use super::{BufferTooSmall, MAX_NAME_LEN, Op, PROTOCOL_VERSION, REQUEST_PREFIX_LEN, field, validate_name};
use crate::error::ProtocolError;

/// A read-only view of a request header held in a byte buffer.
///
/// After [`check_len`](Self::check_len) succeeds every accessor returns the
/// field's value; before it, accessors return zero or empty for missing bytes.
/// No accessor panics on any input.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RequestView<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        RequestView { buffer }
    }

    /// Wraps a buffer that must hold a whole header for its op.
    pub fn new_checked(buffer: T) -> Result<Self, ProtocolError> {
        let view = Self::new_unchecked(buffer);
        view.check_len()?;
        Ok(view)
    }

    /// Checks that the buffer holds every field the header's op carries.
    pub fn check_len(&self) -> Result<(), ProtocolError> {
        if self.buffer.as_ref().len() < self.header_len() { Err(ProtocolError::Truncated) } else { Ok(()) }
    }

    /// Length of the header this buffer starts with, as far as it can be told
    /// from the bytes present (prefix, then `name_len`).
    pub fn header_len(&self) -> usize {
        let op = self.op();
        if !op.has_name() {
            return REQUEST_PREFIX_LEN;
        }
        let name_end = field::REQ_NAME + usize::from(self.name_len());
        if op.has_payload() { field::req_size(usize::from(self.name_len())).end } else { name_end }
    }

    /// The sender's user id.
    pub fn user_id(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::REQ_USER_ID).unwrap_or(0)
    }

    /// The highest protocol version the sender speaks.
    pub fn version(&self) -> u8 {
        self.byte(field::REQ_VERSION)
    }

    /// The operation.
    pub fn op(&self) -> Op {
        Op::from(self.byte(field::REQ_OP))
    }

    /// The declared name length (0 for ops without a name).
    pub fn name_len(&self) -> u16 {
        if self.op().has_name() { u16_at(self.buffer.as_ref(), field::REQ_NAME_LEN).unwrap_or(0) } else { 0 }
    }

    /// The name bytes present, up to `name_len`.
    pub fn name(&self) -> &[u8] {
        name_slice(self.buffer.as_ref(), field::REQ_NAME, self.name_len())
    }

    /// The declared payload size (0 for ops without a payload).
    pub fn size(&self) -> u32 {
        if self.op().has_payload() {
            let at = field::req_size(usize::from(self.name_len()));
            u32_at(self.buffer.as_ref(), at).unwrap_or(0)
        } else {
            0
        }
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }
}

/// A parsed, validated request header. The payload (for backups) follows it
/// on the wire and is not part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request<'a> {
    /// The user whose files are meant.
    pub user_id: u32,
    /// The highest protocol version the sender speaks.
    pub version: u8,
    /// The operation.
    pub op: Op,
    /// The file name; empty for list.
    pub name: &'a str,
    /// The payload length; 0 for everything but backup.
    pub size: u32,
}

impl<'a> Request<'a> {
    /// A backup of `size` bytes as `name`, in the version this side speaks.
    pub const fn backup(user_id: u32, name: &'a str, size: u32) -> Self {
        Request { user_id, version: PROTOCOL_VERSION, op: Op::Backup, name, size }
    }

    /// A restore of `name`.
    pub const fn restore(user_id: u32, name: &'a str) -> Self {
        Request { user_id, version: PROTOCOL_VERSION, op: Op::Restore, name, size: 0 }
    }

    /// A delete of `name`.
    pub const fn delete(user_id: u32, name: &'a str) -> Self {
        Request { user_id, version: PROTOCOL_VERSION, op: Op::Delete, name, size: 0 }
    }

    /// A list of the user's names.
    pub const fn list(user_id: u32) -> Self {
        Request { user_id, version: PROTOCOL_VERSION, op: Op::List, name: "", size: 0 }
    }

    /// Parses and validates a complete header. Op 0 and other unknown ops,
    /// version 0, a `name_len` of 0 or over 255 and bad names are errors.
    pub fn parse(bytes: &'a [u8]) -> Result<Request<'a>, ProtocolError> {
        let view = RequestView::new_unchecked(bytes);
        if bytes.len() < REQUEST_PREFIX_LEN {
            return Err(ProtocolError::Truncated);
        }
        Self::check_prefix(&view)?;
        if view.op().has_name() && bytes.len() >= field::REQ_NAME {
            Self::check_name_len(view.name_len())?;
        }
        view.check_len()?;
        let name = if view.op().has_name() {
            validate_name(name_slice(bytes, field::REQ_NAME, view.name_len()))?
        } else {
            ""
        };
        Ok(Request {
            user_id: view.user_id(),
            version: view.version(),
            op: view.op(),
            name,
            size: view.size(),
        })
    }

    /// Checks the fixed prefix: a known op and a non-zero version.
    pub(crate) fn check_prefix<T: AsRef<[u8]>>(view: &RequestView<T>) -> Result<(), ProtocolError> {
        if let Op::Unknown(code) = view.op() {
            return Err(ProtocolError::UnknownOp(code));
        }
        if view.version() == 0 {
            return Err(ProtocolError::UnsupportedVersion(0));
        }
        Ok(())
    }

    pub(crate) fn check_name_len(len: u16) -> Result<(), ProtocolError> {
        if len == 0 || usize::from(len) > MAX_NAME_LEN { Err(ProtocolError::NameLength(len)) } else { Ok(()) }
    }

    /// Length of this header on the wire.
    pub fn header_len(&self) -> usize {
        let mut len = REQUEST_PREFIX_LEN;
        if self.op.has_name() {
            len += 2 + self.name.len();
        }
        if self.op.has_payload() {
            len += 4;
        }
        len
    }

    /// Writes this header into the start of `buf` and returns its length.
    /// Names longer than 255 bytes are refused rather than truncated.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.header_len();
        let name = self.name.as_bytes();
        if name.len() > MAX_NAME_LEN {
            return Err(BufferTooSmall);
        }
        // Split the header into its fields once the whole of it fits: no
        // field write can then fail, and the code stays small on firmware.
        let out = buf.get_mut(..len).ok_or(BufferTooSmall)?;
        let (prefix, mut rest) = out.split_at_mut_checked(REQUEST_PREFIX_LEN).ok_or(BufferTooSmall)?;
        let [u0, u1, u2, u3] = self.user_id.to_le_bytes();
        prefix.copy_from_slice(&[u0, u1, u2, u3, self.version, u8::from(self.op)]);
        if self.op.has_name() {
            // The check above bounds the name to 255 bytes.
            let (name_len, tail) = rest.split_at_mut_checked(2).ok_or(BufferTooSmall)?;
            name_len.copy_from_slice(&(name.len() as u16).to_le_bytes());
            let (name_field, tail) = tail.split_at_mut_checked(name.len()).ok_or(BufferTooSmall)?;
            name_field.copy_from_slice(name);
            rest = tail;
        }
        if self.op.has_payload() {
            rest.get_mut(..4).ok_or(BufferTooSmall)?.copy_from_slice(&self.size.to_le_bytes());
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKUP: &[u8] = &[
        0x2a, 0x00, 0x00, 0x00, // user 42
        0x01, 0x64, // version 1, op 100
        0x05, 0x00, b'a', b'.', b't', b'x', b't', // name "a.txt"
        0x03, 0x00, 0x00, 0x00, // size 3
    ];

    #[test]
    fn backup_header_parses_field_by_field() {
        let view = RequestView::new_checked(BACKUP).unwrap();
        assert_eq!(view.user_id(), 42);
        assert_eq!(view.version(), 1);
        assert_eq!(view.op(), Op::Backup);
        assert_eq!(view.name(), b"a.txt");
        assert_eq!(view.size(), 3);
        assert_eq!(
            Request::parse(BACKUP),
            Ok(Request { user_id: 42, version: 1, op: Op::Backup, name: "a.txt", size: 3 })
        );
    }

    #[test]
    fn backup_header_emits_the_same_bytes() {
        let req = Request { user_id: 42, version: 1, op: Op::Backup, name: "a.txt", size: 3 };
        let mut buf = [0u8; 64];
        let n = req.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], BACKUP);
        assert_eq!(req.emit(&mut buf[..n - 1]), Err(BufferTooSmall));
    }

    #[test]
    fn view_accessors_never_panic_on_short_buffers() {
        for cut in 0..BACKUP.len() {
            let view = RequestView::new_unchecked(&BACKUP[..cut]);
            let _ = (view.user_id(), view.version(), view.op(), view.name(), view.size());
            assert_eq!(view.check_len(), Err(ProtocolError::Truncated));
            assert!(Request::parse(&BACKUP[..cut]).is_err());
        }
    }
}
