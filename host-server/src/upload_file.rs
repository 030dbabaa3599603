//! The temporary file of an upload, written inline or, for big uploads, by
//! a writer thread of its own (`write_behind::Offloaded`): the connection's
//! thread then goes on receiving (and, in version 3, opening records) while
//! the writer waits for the disk.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use write_behind::{Offloaded, WriteBehind};

/// Uploads at least this big get a writer thread ([`write_behind::OFFLOAD_MIN`]).
pub const OFFLOAD_MIN: u32 = write_behind::OFFLOAD_MIN as u32;
/// Uploads with a writer thread at once, server-wide: each holds 1 MiB of
/// buffers and a thread, so the server holds at most 32 MiB and 32 threads
/// more; later big uploads are written inline, as before.
pub const OFFLOAD_SLOTS: usize = 32;

/// A claim on one of [`OFFLOAD_SLOTS`], given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn claim(used: &Arc<AtomicUsize>) -> Option<Slot> {
        used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < OFFLOAD_SLOTS).then_some(n + 1))
            .ok()
            .map(|_| Slot(used.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An upload's temporary file; see the module docs.
#[derive(Debug)]
pub enum UploadFile {
    /// Written by the connection's thread: big uploads start their writeback
    /// as they arrive, so the sync before the 212 has little left to write.
    Inline(WriteBehind<File>),
    /// Written by a thread of its own, until [`finish`](UploadFile::finish);
    /// the slot is held while the thread runs.
    Offloaded(Offloaded<File>, Slot),
    /// The writer thread failed while finishing: nothing more is written.
    Failed,
}

impl UploadFile {
    /// A writer for an upload of `size` bytes into `file`; `used` counts the
    /// server's writer threads.
    pub fn new(file: File, size: u32, used: &Arc<AtomicUsize>) -> UploadFile {
        if size < OFFLOAD_MIN {
            return UploadFile::Inline(WriteBehind::new(file));
        }
        let Some(slot) = Slot::claim(used) else { return UploadFile::Inline(WriteBehind::new(file)) };
        match Offloaded::new(file) {
            Ok(writer) => UploadFile::Offloaded(writer, slot),
            Err((file, e)) => {
                log::debug!("storage: no writer thread ({e}); writing inline");
                UploadFile::Inline(WriteBehind::new(file))
            }
        }
    }

    /// Bytes taken so far.
    pub fn written(&self) -> u64 {
        match self {
            UploadFile::Inline(w) => w.written(),
            UploadFile::Offloaded(w, _) => w.written(),
            UploadFile::Failed => 0,
        }
    }

    /// Writes `chunk` whole (or queues it for the writer thread).
    pub fn write_all(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self {
            UploadFile::Inline(w) => w.write_all(chunk),
            UploadFile::Offloaded(w, _) => w.write_all(chunk),
            UploadFile::Failed => Err(io::Error::other("the upload's writer failed")),
        }
    }

    /// Waits until every byte taken is in the file; afterwards the file can
    /// be synced.
    pub fn finish(&mut self) -> io::Result<()> {
        match std::mem::replace(self, UploadFile::Failed) {
            UploadFile::Offloaded(writer, _slot) => {
                *self = UploadFile::Inline(writer.finish()?);
                Ok(())
            }
            UploadFile::Failed => Err(io::Error::other("the upload's writer failed")),
            inline => {
                *self = inline;
                Ok(())
            }
        }
    }

    /// The file, to sync: only once [`finish`](UploadFile::finish)ed.
    pub fn get_ref(&self) -> io::Result<&File> {
        match self {
            UploadFile::Inline(w) => Ok(w.get_ref()),
            UploadFile::Offloaded(..) => Err(io::Error::other("upload not finished before its sync")),
            UploadFile::Failed => Err(io::Error::other("the upload's writer failed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> File {
        tempfile::tempfile().unwrap()
    }

    #[test]
    fn small_uploads_are_written_inline() {
        let used = Arc::new(AtomicUsize::new(0));
        assert!(matches!(UploadFile::new(file(), OFFLOAD_MIN - 1, &used), UploadFile::Inline(_)));
        assert_eq!(used.load(Ordering::Acquire), 0);
    }

    #[test]
    fn past_the_slots_big_uploads_are_written_inline_until_one_finishes() {
        let used = Arc::new(AtomicUsize::new(0));
        let mut threaded: Vec<UploadFile> =
            (0..OFFLOAD_SLOTS).map(|_| UploadFile::new(file(), OFFLOAD_MIN, &used)).collect();
        assert!(threaded.iter().all(|u| matches!(u, UploadFile::Offloaded(..))));
        assert!(
            matches!(UploadFile::new(file(), OFFLOAD_MIN, &used), UploadFile::Inline(_)),
            "no 33rd thread"
        );
        // Finishing gives the slot back; so does dropping an unfinished one.
        threaded[0].finish().unwrap();
        assert_eq!(used.load(Ordering::Acquire), OFFLOAD_SLOTS - 1);
        threaded.truncate(1);
        assert_eq!(used.load(Ordering::Acquire), 0);
        assert!(matches!(UploadFile::new(file(), OFFLOAD_MIN, &used), UploadFile::Offloaded(..)));
    }

    #[test]
    fn a_finished_upload_holds_every_byte_written() {
        let used = Arc::new(AtomicUsize::new(0));
        let target = file();
        let mut upload = UploadFile::new(target.try_clone().unwrap(), OFFLOAD_MIN, &used);
        assert!(upload.get_ref().is_err(), "no sync before the writer is done");
        let data: Vec<u8> = (0..OFFLOAD_MIN as usize + 17).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(16 * 1024) {
            upload.write_all(piece).unwrap();
        }
        upload.finish().unwrap();
        upload.get_ref().unwrap().sync_data().unwrap();
        assert_eq!(target.metadata().unwrap().len(), data.len() as u64);
    }
}
