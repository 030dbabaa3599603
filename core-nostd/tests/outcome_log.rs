//! What the dispatcher reports of each request is what was sent: the log a
//! server keeps from these outcomes must not claim more, or less, than the
//! client got.

mod support;

use backup_core::dispatch::SendFile;
use backup_core::store::Store;
use backup_core::{Config, Dispatcher, Outcome};
use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};
use support::TestStore;

/// Scripted input; output is accepted up to `budget` bytes, then the peer
/// is gone (a restore's reader that disconnects midway).
struct Vanishing {
    input: Vec<u8>,
    pos: usize,
    budget: usize,
}

impl ErrorType for Vanishing {
    type Error = ErrorKind;
}

impl Read for Vanishing {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let n = buf.len().min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl ReadReady for Vanishing {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(true)
    }
}

impl Write for Vanishing {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        match buf.len().min(self.budget) {
            0 => Err(ErrorKind::BrokenPipe),
            n => {
                self.budget -= n;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl SendFile for Vanishing {}

#[test]
fn a_restore_cut_by_the_client_is_logged_with_its_210_and_the_bytes_that_went_out() {
    let mut store = Box::new(TestStore::new());
    let mut upload = store.begin_upload(7, "f", 5000).unwrap();
    store.write_upload(&mut upload, &[b'x'; 5000]).unwrap();
    store.commit_upload(upload).unwrap();
    // Restore "f", version 2.
    let input = vec![7, 0, 0, 0, 2, 200, 1, 0, b'f'];
    let mut conn = Vanishing { input, pos: 0, budget: 3000 };
    let mut buf = [0u8; 1024];
    let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, Config::default()).unwrap();
    let mut logged = Vec::new();
    dispatcher.serve(&mut conn, &mut |o: &Outcome<'_>| {
        logged.push((o.status.map(|s| s.code()), o.bytes, o.reason))
    });
    // The first write carried the 10-byte header and 1014 bytes of the file,
    // the second 1024 more; the third was cut.
    assert_eq!(logged, [(Some(210), 1014 + 1024, Some("connection failed mid-restore"))]);
}

#[test]
fn an_upload_cut_midway_is_logged_with_the_bytes_received() {
    let mut store = Box::new(TestStore::new());
    // Back up "f" of 100 bytes, of which 40 arrive.
    let mut input = vec![7, 0, 0, 0, 2, 100, 1, 0, b'f', 100, 0, 0, 0];
    input.extend_from_slice(&[b'y'; 40]);
    let mut conn = Vanishing { input, pos: 0, budget: usize::MAX };
    let mut buf = [0u8; 1024];
    let mut dispatcher = Dispatcher::new(&mut *store, &mut buf, Config::default()).unwrap();
    let mut logged = Vec::new();
    dispatcher.serve(&mut conn, &mut |o: &Outcome<'_>| {
        logged.push((o.status.map(|s| s.code()), o.bytes, o.reason))
    });
    assert_eq!(logged, [(None, 40, Some("connection closed mid-upload"))]);
}
