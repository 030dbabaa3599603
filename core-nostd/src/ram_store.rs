//! A [`Store`] in a fixed buffer: up to `FILES` files sharing `BYTES` bytes,
//! for microcontrollers and tests. No allocator.
//!
//! Committed files are packed at the front of the buffer; an upload is staged
//! after them and only replaces the old version when committed, so an aborted
//! upload leaves everything as it was. One upload at a time.

use heapless::Vec;

use crate::error::StoreError;
use crate::store::{Listing, Store};
use crate::wire::MAX_NAME_LEN;

#[derive(Debug, Clone)]
struct Entry {
    user: u32,
    name: Vec<u8, MAX_NAME_LEN>,
    start: usize,
    len: usize,
}

impl Entry {
    fn key(&self) -> (u32, &[u8]) {
        (self.user, &self.name)
    }
}

#[derive(Debug, Clone)]
struct Staging {
    user: u32,
    name: Vec<u8, MAX_NAME_LEN>,
    ticket: u32,
    expected: usize,
    written: usize,
}

/// An upload in progress in a [`RamStore`].
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RamUpload {
    ticket: u32,
}

/// A file open for reading in a [`RamStore`].
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RamReader {
    generation: u32,
    pos: usize,
    end: usize,
}

/// A fixed-capacity in-memory store.
#[derive(Debug)]
pub struct RamStore<const FILES: usize, const BYTES: usize> {
    /// Sorted by (user, name).
    entries: Vec<Entry, FILES>,
    data: [u8; BYTES],
    /// Bytes of committed files at the front of `data`.
    used: usize,
    staging: Option<Staging>,
    next_ticket: u32,
    /// Changes whenever committed bytes move, so open readers notice.
    generation: u32,
}

impl<const FILES: usize, const BYTES: usize> Default for RamStore<FILES, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const FILES: usize, const BYTES: usize> RamStore<FILES, BYTES> {
    /// An empty store.
    pub const fn new() -> Self {
        RamStore {
            entries: Vec::new(),
            data: [0; BYTES],
            used: 0,
            staging: None,
            next_ticket: 0,
            generation: 0,
        }
    }

    /// A stored file's bytes, for checks.
    pub fn get(&self, user: u32, name: &str) -> Option<&[u8]> {
        let entry = self.entries.get(self.find(user, name).ok()?)?;
        self.data.get(entry.start..entry.start + entry.len)
    }

    /// Number of files stored for all users.
    pub fn file_count(&self) -> usize {
        self.entries.len()
    }

    fn find(&self, user: u32, name: &str) -> Result<usize, usize> {
        self.find_key(user, name.as_bytes())
    }

    fn find_key(&self, user: u32, name: &[u8]) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.key().cmp(&(user, name)))
    }

    fn name_vec(name: &str) -> Result<Vec<u8, MAX_NAME_LEN>, StoreError> {
        Vec::from_slice(name.as_bytes()).map_err(|_| StoreError::Io)
    }

    /// Removes entry `index` and closes the gap its bytes left, moving staged
    /// bytes along.
    fn remove_entry(&mut self, index: usize) {
        let Some(old) = (index < self.entries.len()).then(|| self.entries.remove(index)) else {
            return;
        };
        let staged = self.staging.as_ref().map_or(0, |s| s.written);
        let tail_end = self.used + staged;
        self.data.copy_within(old.start + old.len..tail_end, old.start);
        for e in self.entries.iter_mut().filter(|e| e.start > old.start) {
            e.start -= old.len;
        }
        self.used -= old.len;
        self.generation = self.generation.wrapping_add(1);
    }
}

impl<const FILES: usize, const BYTES: usize> Store for RamStore<FILES, BYTES> {
    type Upload = RamUpload;
    type Reader = RamReader;
    type Listing<'a>
        = RamListing<'a>
    where
        Self: 'a;

    fn begin_upload(&mut self, user: u32, name: &str, size: u32) -> Result<RamUpload, StoreError> {
        if self.staging.is_some() {
            return Err(StoreError::Busy);
        }
        let size = size as usize;
        if size > BYTES {
            return Err(StoreError::TooLarge);
        }
        if size > BYTES - self.used {
            return Err(StoreError::NoSpace);
        }
        if self.find(user, name).is_err() && self.entries.is_full() {
            return Err(StoreError::NoSpace);
        }
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.staging =
            Some(Staging { user, name: Self::name_vec(name)?, ticket, expected: size, written: 0 });
        Ok(RamUpload { ticket })
    }

    fn write_upload(&mut self, upload: &mut RamUpload, chunk: &[u8]) -> Result<(), StoreError> {
        let used = self.used;
        let staging = match &mut self.staging {
            Some(s) if s.ticket == upload.ticket => s,
            _ => return Err(StoreError::Io),
        };
        if staging.written + chunk.len() > staging.expected {
            return Err(StoreError::TooLarge);
        }
        let at = used + staging.written;
        let dst = self.data.get_mut(at..at + chunk.len()).ok_or(StoreError::NoSpace)?;
        dst.copy_from_slice(chunk);
        staging.written += chunk.len();
        Ok(())
    }

    fn commit_upload(&mut self, upload: RamUpload) -> Result<(), StoreError> {
        let Some(staged) = self.staging.as_ref().filter(|s| s.ticket == upload.ticket) else {
            return Err(StoreError::Io);
        };
        if staged.written != staged.expected {
            self.staging = None;
            return Err(StoreError::Io);
        }
        // Remove the old version while the staged bytes are still tracked, so
        // compaction moves them along.
        if let Ok(index) = self.find_key(staged.user, &staged.name) {
            self.remove_entry(index);
        }
        let Some(staged) = self.staging.take() else {
            return Err(StoreError::Io);
        };
        let index = self.find_key(staged.user, &staged.name).unwrap_or_else(|i| i);
        let entry = Entry { user: staged.user, name: staged.name, start: self.used, len: staged.written };
        self.used += entry.len;
        self.entries.insert(index, entry).map_err(|_| StoreError::NoSpace)?;
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    fn abort_upload(&mut self, upload: RamUpload) {
        if self.staging.as_ref().is_some_and(|s| s.ticket == upload.ticket) {
            self.staging = None;
        }
    }

    fn open(&mut self, user: u32, name: &str) -> Result<(RamReader, u32), StoreError> {
        let index = self.find(user, name).map_err(|_| StoreError::NotFound)?;
        let entry = self.entries.get(index).ok_or(StoreError::NotFound)?;
        let size = u32::try_from(entry.len).map_err(|_| StoreError::TooLarge)?;
        let reader =
            RamReader { generation: self.generation, pos: entry.start, end: entry.start + entry.len };
        Ok((reader, size))
    }

    fn read(&mut self, reader: &mut RamReader, buf: &mut [u8]) -> Result<usize, StoreError> {
        if reader.generation != self.generation {
            return Err(StoreError::Changed);
        }
        let n = buf.len().min(reader.end - reader.pos);
        let src = self.data.get(reader.pos..reader.pos + n).ok_or(StoreError::Io)?;
        buf.get_mut(..n).ok_or(StoreError::Io)?.copy_from_slice(src);
        reader.pos += n;
        Ok(n)
    }

    fn delete(&mut self, user: u32, name: &str) -> Result<(), StoreError> {
        let index = self.find(user, name).map_err(|_| StoreError::NotFound)?;
        self.remove_entry(index);
        Ok(())
    }

    fn list(&mut self, user: u32) -> Result<RamListing<'_>, StoreError> {
        let first = self.entries.partition_point(|e| e.user < user);
        let count = self.entries.get(first..).map_or(0, |rest| rest.partition_point(|e| e.user == user));
        let entries = self.entries.get(first..first + count).unwrap_or(&[]);
        let payload_len = entries.iter().map(|e| e.name.len() as u64 + 1).sum();
        Ok(RamListing { entries, payload_len })
    }
}

/// One user's names in a [`RamStore`].
#[derive(Debug)]
pub struct RamListing<'a> {
    entries: &'a [Entry],
    payload_len: u64,
}

impl Listing for RamListing<'_> {
    fn payload_len(&self) -> u64 {
        self.payload_len
    }

    fn next_name(&mut self) -> Option<&str> {
        let (first, rest) = self.entries.split_first()?;
        self.entries = rest;
        // Names were validated as UTF-8 before they were stored.
        core::str::from_utf8(&first.name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &mut RamStore<4, 64>, user: u32, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut up = store.begin_upload(user, name, bytes.len() as u32)?;
        store.write_upload(&mut up, bytes)?;
        store.commit_upload(up)
    }

    fn names(store: &mut RamStore<4, 64>, user: u32) -> std::vec::Vec<std::string::String> {
        let mut listing = store.list(user).unwrap();
        let mut out = std::vec::Vec::new();
        while let Some(n) = listing.next_name() {
            out.push(n.into());
        }
        out
    }

    #[test]
    fn overwrite_replaces_and_compacts_while_other_files_keep_their_bytes() {
        let mut store = RamStore::<4, 64>::new();
        put(&mut store, 1, "b", b"bbbb").unwrap();
        put(&mut store, 1, "a", b"aa").unwrap();
        put(&mut store, 2, "a", b"2a").unwrap();
        put(&mut store, 1, "b", b"BBBBBB").unwrap();
        assert_eq!(store.get(1, "a"), Some(&b"aa"[..]));
        assert_eq!(store.get(1, "b"), Some(&b"BBBBBB"[..]));
        assert_eq!(store.get(2, "a"), Some(&b"2a"[..]));
        assert_eq!(names(&mut store, 1), ["a", "b"]);
        assert_eq!(store.list(1).unwrap().payload_len(), 4);
        assert_eq!(store.list(3).unwrap().payload_len(), 0);
    }

    #[test]
    fn aborted_upload_leaves_the_previous_version() {
        let mut store = RamStore::<4, 64>::new();
        put(&mut store, 1, "f", b"old").unwrap();
        let mut up = store.begin_upload(1, "f", 5).unwrap();
        store.write_upload(&mut up, b"ne").unwrap();
        store.abort_upload(up);
        assert_eq!(store.get(1, "f"), Some(&b"old"[..]));
        let mut short = store.begin_upload(1, "f", 5).unwrap();
        store.write_upload(&mut short, b"ne").unwrap();
        assert_eq!(store.commit_upload(short), Err(StoreError::Io));
        assert_eq!(store.get(1, "f"), Some(&b"old"[..]));
    }

    #[test]
    fn full_store_refuses_before_the_payload() {
        let mut store = RamStore::<4, 64>::new();
        assert_eq!(store.begin_upload(1, "big", 65).err(), Some(StoreError::TooLarge));
        put(&mut store, 1, "a", &[1; 60]).unwrap();
        assert_eq!(store.begin_upload(1, "b", 5).err(), Some(StoreError::NoSpace));
        for name in ["b", "c", "d"] {
            put(&mut store, 1, name, b"").unwrap();
        }
        assert_eq!(store.begin_upload(1, "e", 0).err(), Some(StoreError::NoSpace));
        assert!(store.begin_upload(1, "d", 0).is_ok(), "overwriting needs no new slot");
    }

    #[test]
    fn delete_then_open_is_not_found_and_stale_readers_fail() {
        let mut store = RamStore::<4, 64>::new();
        put(&mut store, 1, "a", b"aa").unwrap();
        put(&mut store, 1, "b", b"bb").unwrap();
        let (mut reader, size) = store.open(1, "b").unwrap();
        assert_eq!(size, 2);
        store.delete(1, "a").unwrap();
        assert_eq!(store.open(1, "a").err(), Some(StoreError::NotFound));
        assert_eq!(store.delete(1, "a"), Err(StoreError::NotFound));
        let mut buf = [0; 4];
        assert_eq!(store.read(&mut reader, &mut buf), Err(StoreError::Changed));
        assert_eq!(store.get(1, "b"), Some(&b"bb"[..]));
    }
}
