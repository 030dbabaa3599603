//! Write-behind for large files, shared by the server (uploads) and the
//! client (restores).
//!
//! A durable write of a big file ends with a sync. Left alone, the kernel
//! keeps every written page dirty in memory until then (or until its dirty
//! limits throttle the writer), so the transfer runs first and the disk
//! works afterwards. [`WriteBehind`] instead asks the kernel to start
//! writing each [`WINDOW`] as soon as it is complete, and to drop the window
//! before it, whose writeback has had a window's time to finish: the disk
//! works while the network does, the final sync finds at most two windows
//! dirty, and a 1 GiB transfer does not push 1 GiB of other data out of the
//! page cache. Small files (under one window) are written as they were.
//!
//! Both requests are `posix_fadvise(POSIX_FADV_DONTNEED)`: on Linux it
//! queues the range's dirty pages for writeback without waiting, then
//! discards the pages that are clean, so a window gets written by the first
//! call and dropped by the second. The advice changes no data and neither
//! call waits for the disk, so it is safe to ignore its failure; where the
//! advice does not exist the writer is a plain pass-through.

use std::io::{self, Write};
use std::os::fd::AsFd;

mod offload;
pub use offload::{BUFFERS, CHUNK, OFFLOAD_MIN, Offloaded};

/// Bytes between two pieces of advice: large enough that the system calls
/// cost nothing next to the writes, small enough to keep the disk busy from
/// the start of a transfer and at most two windows dirty at its end.
pub const WINDOW: u64 = 8 << 20;

/// A writer that starts writeback behind itself; see the crate docs.
///
/// It counts the bytes that pass through it from the file's current end, so
/// it expects sequential writes into a new or truncated file.
#[derive(Debug)]
pub struct WriteBehind<F> {
    file: F,
    /// Bytes written through us.
    written: u64,
    /// End of the last window whose writeback was started.
    started: u64,
    /// End of the last window that was dropped.
    dropped: u64,
}

impl<F: Write + AsFd> WriteBehind<F> {
    /// Wraps `file`, positioned at offset 0.
    pub fn new(file: F) -> WriteBehind<F> {
        WriteBehind { file, written: 0, started: 0, dropped: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The file, for syncing it at the end.
    pub fn get_ref(&self) -> &F {
        &self.file
    }

    /// The file, unwrapped.
    pub fn into_inner(self) -> F {
        self.file
    }

    fn advance(&mut self, n: usize) {
        self.written += n as u64;
        if self.written - self.started >= WINDOW {
            advise_dont_need(&self.file, self.started, self.written);
            advise_dont_need(&self.file, self.dropped, self.started);
            self.dropped = self.started;
            self.started = self.written;
        }
    }
}

impl<F: Write + AsFd> Write for WriteBehind<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.advance(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn advise_dont_need(file: &impl AsFd, from: u64, to: u64) {
    if let Some(len) = std::num::NonZeroU64::new(to.saturating_sub(from)) {
        // Advice only (see the crate docs): a failure changes nothing.
        let _ = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed);
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn advise_dont_need(_: &impl AsFd, _: u64, _: u64) {}

/// What the tests of both writers share.
#[cfg(test)]
mod test_support {
    use std::fs::File;
    use std::io::{Read, Seek};

    /// Bytes that differ from their neighbours, so a misplaced chunk shows.
    pub(crate) fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Everything in `file`, from its start.
    pub(crate) fn read_back(mut file: &File) -> Vec<u8> {
        let mut back = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut back).unwrap();
        back
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{pattern, read_back};
    use super::*;

    #[test]
    fn bytes_written_through_several_windows_read_back_unchanged() {
        let data = pattern(3 * WINDOW as usize + 12_345);
        let file = tempfile::tempfile().unwrap();
        let mut writer = WriteBehind::new(&file);
        // Uneven chunks, so window boundaries fall inside writes.
        for chunk in data.chunks(1_000_003) {
            writer.write_all(chunk).unwrap();
        }
        assert_eq!(writer.written(), data.len() as u64);
        writer.get_ref().sync_data().unwrap();
        assert!(read_back(&file) == data, "contents changed");
    }

    #[test]
    fn advice_follows_the_windows() {
        let mut writer = WriteBehind::new(tempfile::tempfile().unwrap());
        writer.write_all(&vec![1; WINDOW as usize - 1]).unwrap();
        assert_eq!((writer.started, writer.dropped), (0, 0), "no advice inside the first window");
        writer.write_all(&[1, 1]).unwrap();
        assert_eq!((writer.started, writer.dropped), (WINDOW + 1, 0));
        writer.write_all(&vec![1; WINDOW as usize]).unwrap();
        assert_eq!((writer.started, writer.dropped), (2 * WINDOW + 1, WINDOW + 1));
    }
}
