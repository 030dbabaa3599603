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
//! early, which the core already treats the same way.) A file rewritten in
//! place at the same size would pass that check and be stored torn, half
//! old and half new, so the end is also checked against the file's
//! modification and change times when it was opened, as GNU tar's "file
//! changed as we read it" does. (A write within the same tick of the
//! kernel's coarse clock as the opening can still go unseen.)
//!
//! The file is opened without blocking and refused unless it is a regular
//! file: planning checked that, but something else may stand at the path
//! by the time a batch reaches it, and opening a FIFO would wait forever
//! for a writer, where `--timeout` does not reach.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

/// `size` bytes of a file, failing if the file turns out to hold more.
pub struct Snapshot {
    file: File,
    path: PathBuf,
    size: u64,
    left: u64,
    /// Modification and change times (seconds, nanoseconds) when opened.
    times: [i64; 4],
}

fn times(meta: &std::fs::Metadata) -> [i64; 4] {
    [meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec()]
}

impl Snapshot {
    /// Opens `path` to read its `size` bytes. A file planned as empty is
    /// checked at once: the core reads nothing from it.
    pub fn open(path: &Path, size: u32) -> io::Result<Snapshot> {
        let file =
            std::fs::OpenOptions::new().read(true).custom_flags(OFlags::NONBLOCK.bits() as i32).open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            // Callers name the file.
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file any more"));
        }
        // Back to blocking reads: on a regular file the flag changes nothing,
        // but it is not ours to leave set.
        rustix::fs::fcntl_setfl(&file, OFlags::empty())?;
        let mut snapshot = Snapshot {
            file,
            path: path.to_path_buf(),
            size: size.into(),
            left: size.into(),
            times: times(&meta),
        };
        if size == 0 {
            snapshot.check_end()?;
        }
        Ok(snapshot)
    }

    /// Fails unless the file ends right after `size` bytes.
    fn check_end(&mut self) -> io::Result<()> {
        let meta = self.file.metadata()?;
        let changed =
            self.file.read(&mut [0u8; 1])? > 0 || meta.len() != self.size || times(&meta) != self.times;
        if changed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} changed while it was read (it was written to, or no longer holds the {} bytes it had \
                     when the backup started), so it was not stored and the server keeps any earlier version; \
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
    fn a_file_rewritten_in_place_at_the_same_size_while_it_is_read_fails_before_its_last_bytes() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let mut snapshot = Snapshot::open(&path, 10_000).unwrap();
        let mut first = vec![0u8; 4096];
        assert_eq!(snapshot.read(&mut first).unwrap(), 4096);
        // Past a tick of the kernel's coarse clock, so the change shows in
        // the file's times; then an editor-style rewrite of the part already
        // read, the size unchanged.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        writer.seek(SeekFrom::Start(0)).unwrap();
        writer.write_all(&[2u8; 4096]).unwrap();
        drop(writer);
        let (got, end) = read_all(&mut snapshot, 4096);
        assert!(4096 + got < 10_000, "never the whole announced size: {}", 4096 + got);
        let message = end.unwrap_err().to_string();
        assert!(message.contains("changed while it was read"), "{message}");
    }

    #[test]
    fn a_fifo_in_place_of_the_planned_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
        let (done, opened) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(Snapshot::open(&path, 0).map(drop).map_err(|e| e.to_string()));
        });
        let result = opened.recv_timeout(std::time::Duration::from_secs(5)).expect("open returns at once");
        let message = result.unwrap_err();
        assert!(message.contains("not a regular file"), "{message}");
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
