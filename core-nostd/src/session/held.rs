//! Group commit's held answers: the 212s of backups committed with
//! [`Store::commit_upload_deferred`](crate::Store::commit_upload_deferred),
//! kept in the end of the caller's buffer until the store's next sync makes
//! them true.
//!
//! The area holds the 212s ready to go out in one write, growing up from its
//! start, and what the log needs of each besides its name (the user and the
//! payload bytes received), growing down from its end.

use core::ops::Range;

use crate::wire::{RESPONSE_MAX_HEADER_LEN, Response, ResponseView, field};

/// What the log needs of a held backup besides its 212, which holds the name.
const NOTE_LEN: usize = 4 + 8;

/// The held 212s, as index ranges into the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// Where the area starts in the buffer, and its length (0: group commit
    /// is off).
    start: usize,
    area: usize,
    /// Bytes of 212s held, and how many.
    len: usize,
    count: usize,
}

impl Held {
    pub(crate) const fn new(start: usize, area: usize) -> Self {
        Held { start, area, len: 0, count: 0 }
    }

    /// Whether group commit is on.
    pub(crate) fn enabled(&self) -> bool {
        self.area > 0
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Whether another 212 and its note fit.
    pub(crate) fn has_room(&self) -> bool {
        self.area - self.len - self.count * NOTE_LEN >= RESPONSE_MAX_HEADER_LEN + NOTE_LEN
    }

    fn note_range(&self, index: usize) -> Range<usize> {
        let end = self.start + self.area - index * NOTE_LEN;
        end - NOTE_LEN..end
    }

    /// Holds `response` for `user`'s backup of `bytes`; false if it does not fit.
    pub(crate) fn push(&mut self, buf: &mut [u8], response: &Response<'_>, user: u32, bytes: u64) -> bool {
        if !self.has_room() {
            return false;
        }
        let note = self.note_range(self.count);
        let Some(rest) = buf.get_mut(self.start + self.len..note.start) else { return false };
        let Ok(n) = response.emit(rest) else { return false };
        let Some(dst) = buf.get_mut(note) else { return false };
        let (user_dst, bytes_dst) = dst.split_at_mut(4);
        user_dst.copy_from_slice(&user.to_le_bytes());
        bytes_dst.copy_from_slice(&bytes.to_le_bytes());
        self.len += n;
        self.count += 1;
        true
    }

    /// Lets the held answers go: returns the bytes of their 212s (to write
    /// in one go) and how many there are. The area keeps them until the next
    /// [`push`](Self::push), so [`entry`](Self::entry) still reads them.
    pub(crate) fn take(&mut self) -> (Range<usize>, usize) {
        let taken = (self.start..self.start + self.len, self.count);
        self.len = 0;
        self.count = 0;
        taken
    }

    /// The held 212 starting `at` bytes into `taken` (what [`take`](Self::take)
    /// returned), with the user and payload bytes of entry `index`.
    pub(crate) fn entry<'b>(
        &self,
        buf: &'b [u8],
        taken: &Range<usize>,
        at: usize,
        index: usize,
    ) -> Entry<'b> {
        let bytes = buf.get(taken.start + at..taken.end).unwrap_or(&[]);
        let view = ResponseView::new_unchecked(bytes);
        let (header_len, version) = (view.header_len(), view.version());
        let name =
            bytes.get(field::RESP_NAME..field::RESP_NAME + usize::from(view.name_len())).unwrap_or(&[]);
        let note = buf.get(self.note_range(index)).unwrap_or(&[]);
        let user = note.get(..4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes);
        let payload = note.get(4..).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
        Entry { header_len, version, name, user, bytes: payload }
    }
}

/// One held 212, as the flush and the log need it.
pub(crate) struct Entry<'b> {
    pub(crate) header_len: usize,
    pub(crate) version: u8,
    pub(crate) name: &'b [u8],
    pub(crate) user: u32,
    /// Payload bytes the backup received.
    pub(crate) bytes: u64,
}
