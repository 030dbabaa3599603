//! A file read for upload, which must hold exactly the size announced in
//! the backup's header.
//!
//! The header goes out first, with the size the file had when it was
//! planned; the server stores the file once that many bytes have arrived. A
//! file that grows meanwhile (a log being written, or a `/proc` file whose
//! metadata says 0 or 4096 whatever it holds) would be stored cut short and
//! acknowledged. So the last chunk is held back until the file is known to
//! end where it should: if it holds more, the read fails, the core drops
//! the connection before the payload is complete, and the server discards
//! the upload and keeps any earlier version. (A file that shrinks ends
//! early, which the core already treats the same way.)

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `size` bytes of a file, failing if the file turns out to hold more.
pub struct Snapshot {
    file: File,
    path: PathBuf,
    size: u64,
    left: u64,
}

impl Snapshot {
    /// Opens `path` to read its `size` bytes. A file planned as empty is
    /// checked at once: the core reads nothing from it.
    pub fn open(path: &Path, size: u32) -> io::Result<Snapshot> {
        let file = File::open(path)?;
        let mut snapshot = Snapshot { file, path: path.to_path_buf(), size: size.into(), left: size.into() };
        if size == 0 {
            snapshot.check_end()?;
        }
        Ok(snapshot)
    }

    /// Fails unless the file ends right after `size` bytes.
    fn check_end(&mut self) -> io::Result<()> {
        let grew = self.file.read(&mut [0u8; 1])? > 0 || self.file.metadata()?.len() != self.size;
        if grew {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} changed while it was read (it no longer holds the {} bytes it had when the backup \
                     started), so it was not stored and the server keeps any earlier version; \
                     try again once nothing is writing to it",
                    self.path.display(),
                    self.size
                ),
            ));
        }
        Ok(())
    }
}

impl Read for Snapshot {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            self.check_end()?;
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(buf.get_mut(..want).unwrap_or(&mut []))?;
        self.left -= n as u64;
        if n > 0 && self.left == 0 {
            // Before the last bytes are handed over: a failure here keeps
            // the upload one chunk short of complete.
            self.check_end()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(snapshot: &mut Snapshot, chunk: usize) -> (usize, io::Result<()>) {
        let mut buf = vec![0u8; chunk];
        let mut got = 0;
        loop {
            match snapshot.read(&mut buf) {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got += n,
                Err(e) => return (got, Err(e)),
            }
        }
    }

    #[test]
    fn a_file_of_the_planned_size_reads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let (got, end) = read_all(&mut Snapshot::open(&path, 10_000).unwrap(), 4096);
        assert_eq!(got, 10_000);
        assert!(end.is_ok());
    }

    #[test]
    fn a_file_that_grew_fails_before_its_last_bytes_are_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        // Planned at 9,000 bytes; it holds more now.
        let (got, end) = read_all(&mut Snapshot::open(&path, 9_000).unwrap(), 4096);
        assert!(got < 9_000, "never the whole announced size: {got}");
        let message = end.unwrap_err().to_string();
        assert!(message.contains("changed while it was read") && message.contains("try again"), "{message}");
    }

    #[test]
    fn a_file_planned_empty_that_holds_bytes_fails_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"grew").unwrap();
        assert!(Snapshot::open(&path, 0).is_err());
        std::fs::write(&path, b"").unwrap();
        assert!(Snapshot::open(&path, 0).is_ok());
    }
}
