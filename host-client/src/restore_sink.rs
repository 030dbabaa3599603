//! Where a restore's bytes go: its temporary file, written by a thread of
//! its own ([`write_behind::Offloaded`]) when the file is big, so that
//! receiving (and, in version 3, opening records) goes on while the disk
//! writes; small files, or a thread that cannot start, are written inline.

use std::io::{self, Write};
use std::os::fd::AsFd;

use write_behind::{OFFLOAD_MIN, Offloaded, WriteBehind};

/// A restore's writer; call [`finish`](RestoreSink::finish) before the file
/// is synced or placed.
#[derive(Debug)]
pub enum RestoreSink<F: Write + AsFd + Send + 'static> {
    /// Written by the caller's thread.
    Inline(WriteBehind<F>),
    /// Written by a thread of its own.
    Offloaded(Offloaded<F>),
}

impl<F: Write + AsFd + Send + 'static> RestoreSink<F> {
    /// A writer for a restore of `size` bytes (`None`: not known yet, so
    /// assumed big) into `file`.
    pub fn new(file: F, size: Option<u64>) -> RestoreSink<F> {
        if size.is_some_and(|size| size < OFFLOAD_MIN) {
            return RestoreSink::Inline(WriteBehind::new(file));
        }
        match Offloaded::new(file) {
            Ok(writer) => RestoreSink::Offloaded(writer),
            Err((file, _)) => RestoreSink::Inline(WriteBehind::new(file)),
        }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        match self {
            RestoreSink::Inline(w) => w.written(),
            RestoreSink::Offloaded(w) => w.written(),
        }
    }

    /// Waits until every byte is in the file, and returns the file; a
    /// failed write of the writer thread is reported here.
    pub fn finish(self) -> io::Result<F> {
        match self {
            RestoreSink::Inline(w) => Ok(w.into_inner()),
            RestoreSink::Offloaded(w) => w.finish().map(WriteBehind::into_inner),
        }
    }
}

impl<F: Write + AsFd + Send + 'static> Write for RestoreSink<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RestoreSink::Inline(w) => w.write(buf),
            RestoreSink::Offloaded(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            RestoreSink::Inline(w) => w.flush(),
            RestoreSink::Offloaded(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    #[test]
    fn small_restores_are_written_inline_and_big_or_unknown_ones_by_a_thread() {
        let file = || tempfile::tempfile().unwrap();
        assert!(matches!(RestoreSink::new(file(), Some(OFFLOAD_MIN - 1)), RestoreSink::Inline(_)));
        assert!(matches!(RestoreSink::new(file(), Some(OFFLOAD_MIN)), RestoreSink::Offloaded(_)));
        assert!(matches!(RestoreSink::new(file(), None), RestoreSink::Offloaded(_)));
    }

    #[test]
    fn a_finished_restore_holds_every_byte() {
        let data: Vec<u8> = (0..3 * OFFLOAD_MIN as usize + 17).map(|i| (i * 7 % 251) as u8).collect();
        let mut sink = RestoreSink::new(tempfile::tempfile().unwrap(), None);
        for piece in data.chunks(16_384) {
            sink.write_all(piece).unwrap();
        }
        assert_eq!(sink.written(), data.len() as u64);
        let mut file = sink.finish().unwrap();
        file.rewind().unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert!(back == data, "every byte, in order");
    }
}
