//! A [`WriteBehind`] on a thread of its own, for transfers whose bytes cost
//! work before they can be written (a version-3 session opens every record
//! first).
//!
//! On one thread, receiving, opening and writing take turns: while `write`
//! waits for the page cache or the kernel's dirty-page throttling, nothing is
//! received or opened, and while a record is opened the disk's queue runs
//! dry. Measured on the 2-core VM with a 1 GiB version-3 backup: 310 MB/s,
//! with both cores idle or waiting for I/O half of the time. [`Offloaded`]
//! copies each write into one of a few [`CHUNK`]-sized buffers and hands full
//! ones to a writer thread, which writes them through a [`WriteBehind`]; the
//! caller goes on receiving while the writer waits for the disk: the same
//! backup then took 2.5-2.9 s instead of 3.0-3.7 s (plaintext: 1.5-2.0 s).
//!
//! Errors of the writer surface on the next `write` or at
//! [`finish`](Offloaded::finish); after one, nothing more is written.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

use crate::WriteBehind;

/// Bytes handed to the writer at once: large enough that the hand-over costs
/// nothing next to the writes (one channel message per 256 KiB), small
/// enough that [`BUFFERS`] of them are little memory per transfer.
pub const CHUNK: usize = 256 * 1024;
/// Buffers per transfer: one being filled, the others queued or being
/// written, so the writer has the next chunk ready when it finishes one.
/// (1 MiB in all per transfer.)
pub const BUFFERS: usize = 4;
/// Transfers at least this big are worth a writer thread: smaller ones fit
/// in its buffers whole, so there is nothing to overlap.
pub const OFFLOAD_MIN: u64 = (CHUNK * BUFFERS) as u64;

/// A writer whose writes are made by a thread of its own; see the module
/// docs. Call [`finish`](Offloaded::finish) to wait for every byte to reach
/// the file: dropping it without also stops the writer, after the bytes
/// already handed over.
#[derive(Debug)]
pub struct Offloaded<F: Write + AsFd + Send + 'static> {
    /// The buffer being filled; `None` only after a writer failure.
    fill: Option<Vec<u8>>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<io::Result<WriteBehind<F>>>>,
    /// Bytes accepted from the caller.
    written: u64,
}

impl<F: Write + AsFd + Send + 'static> Offloaded<F> {
    /// Starts the writer thread for `file`, positioned at offset 0. Fails only
    /// if the thread cannot be started; the caller then writes inline.
    pub fn new(file: F) -> Result<Offloaded<F>, (F, io::Error)> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(BUFFERS);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(BUFFERS);
        // The buffers circulate: filled here, written there, sent back.
        for _ in 1..BUFFERS {
            // The channel holds BUFFERS: these sends cannot block or fail.
            let _ = empty_tx.send(Vec::with_capacity(CHUNK));
        }
        // The file goes to the thread through a channel of its own, so that a
        // thread that cannot start hands it back.
        let (file_tx, file_rx) = sync_channel::<F>(1);
        let spawned = thread::Builder::new()
            .name("write-behind".into())
            // The thread holds no buffers of its own on its stack.
            .stack_size(64 * 1024)
            .spawn(move || {
                let Ok(file) = file_rx.recv() else {
                    return Err(io::Error::other("write-behind: no file handed over"));
                };
                let mut out = WriteBehind::new(file);
                for mut chunk in full_rx {
                    out.write_all(&chunk)?;
                    chunk.clear();
                    // The owner may be gone (finished or dropped): fine.
                    let _ = empty_tx.send(chunk);
                }
                Ok(out)
            });
        match spawned {
            Ok(writer) => {
                // The thread waits for exactly this one message.
                if let Err(e) = file_tx.send(file) {
                    return Err((e.0, io::Error::other("write-behind thread ended at start")));
                }
                Ok(Offloaded {
                    fill: Some(Vec::with_capacity(CHUNK)),
                    full: Some(full_tx),
                    empty: empty_rx,
                    writer: Some(writer),
                    written: 0,
                })
            }
            Err(e) => Err((file, e)),
        }
    }

    /// Bytes accepted so far (not all of them written yet).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Hands the full buffer to the writer and takes an empty one back,
    /// waiting while all of them are queued.
    fn hand_over(&mut self) -> io::Result<()> {
        let (Some(chunk), Some(full)) = (self.fill.take(), self.full.as_ref()) else {
            return Err(self.writer_error());
        };
        if full.send(chunk).is_err() {
            return Err(self.writer_error());
        }
        match self.empty.recv() {
            Ok(buf) => {
                self.fill = Some(buf);
                Ok(())
            }
            Err(_) => Err(self.writer_error()),
        }
    }

    /// The writer stopped early: its error, once joined.
    fn writer_error(&mut self) -> io::Error {
        self.full = None;
        self.fill = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("write-behind thread panicked"),
            Some(Ok(Ok(_))) | None => io::Error::other("write-behind: the writer already stopped"),
        }
    }

    /// Hands over what is buffered, waits for the writer to write it all and
    /// returns the writer, ready to sync.
    pub fn finish(mut self) -> io::Result<WriteBehind<F>> {
        if let (Some(chunk), Some(full)) = (self.fill.take(), self.full.take()) {
            if !chunk.is_empty() && full.send(chunk).is_err() {
                return Err(self.writer_error());
            }
        }
        // The sender is dropped: the writer ends after the last chunk.
        self.full = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("write-behind thread panicked")),
            None => Err(io::Error::other("write-behind: the writer already stopped")),
        }
    }
}

impl<F: Write + AsFd + Send + 'static> Write for Offloaded<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = match self.fill.as_ref() {
            Some(fill) => CHUNK - fill.len(),
            None => return Err(self.writer_error()),
        };
        let n = room.min(buf.len());
        if let (Some(fill), Some(bytes)) = (self.fill.as_mut(), buf.get(..n)) {
            fill.extend_from_slice(bytes);
        }
        self.written += n as u64;
        if self.fill.as_ref().is_some_and(|f| f.len() == CHUNK) {
            self.hand_over()?;
        }
        Ok(n)
    }

    /// Writes reach the file only at [`finish`](Offloaded::finish); there is
    /// nothing to flush in between.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F: Write + AsFd + Send + 'static> Drop for Offloaded<F> {
    fn drop(&mut self) {
        // Stops the writer after what it already has, and waits, so that no
        // thread writes into a file its owner gave up.
        self.full = None;
        self.fill = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pattern, read_back};

    #[test]
    fn bytes_written_through_the_thread_read_back_unchanged() {
        let data = pattern(5 * CHUNK + 4321);
        let file = tempfile::tempfile().unwrap();
        let mut writer = Offloaded::new(file.try_clone().unwrap()).unwrap();
        // Uneven writes, so chunk boundaries fall inside them.
        for piece in data.chunks(65_521) {
            writer.write_all(piece).unwrap();
        }
        assert_eq!(writer.written(), data.len() as u64);
        let out = writer.finish().unwrap();
        assert_eq!(out.written(), data.len() as u64);
        out.get_ref().sync_data().unwrap();
        assert!(read_back(&file) == data, "contents changed");
    }

    #[test]
    fn a_write_error_of_the_thread_reaches_the_caller() {
        // A read-only descriptor: the thread's first write fails.
        let path = tempfile::NamedTempFile::new().unwrap();
        let file = std::fs::File::open(path.path()).unwrap();
        let mut writer = Offloaded::new(file).unwrap();
        let chunk = vec![7u8; CHUNK];
        let mut failed = false;
        for _ in 0..2 * BUFFERS {
            if writer.write_all(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed || writer.finish().is_err(), "the failure was lost");
    }

    #[test]
    fn dropping_it_unfinished_stops_the_thread() {
        let mut writer = Offloaded::new(tempfile::tempfile().unwrap()).unwrap();
        writer.write_all(&vec![1; 3 * CHUNK]).unwrap();
        drop(writer); // Joins: the test would hang if the thread did not end.
    }
}
