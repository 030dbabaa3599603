//! Group commit: pipelined backups share one store sync, and no 212 leaves
//! before the sync that makes its backup durable.

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;

use backup_core::codec::{Decoded, ResponseDecoder};
use backup_core::dispatch::{GROUP_COMMIT_AREA_LEN, SendFile};
use backup_core::ram_store::{RamListing, RamReader, RamUpload};
use backup_core::store::Store;
use backup_core::{Config, Dispatcher, Outcome, RamStore, SessionEnd, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Commit(String),
    Sync,
    Delete(String),
    Sent(u16, String),
}

type Log = Rc<RefCell<Vec<Event>>>;

/// A RAM store that logs deferred commits and syncs.
struct LoggedStore {
    inner: RamStore<16, 65536>,
    log: Log,
    pending: Vec<String>,
    /// Every sync fails (a disk error after the uploads were received).
    fail_sync: bool,
}

impl Store for LoggedStore {
    type Upload = (RamUpload, String);
    type Reader = RamReader;
    type Listing<'a> = RamListing<'a>;

    fn begin_upload(&mut self, user: u32, name: &str, size: u32) -> Result<Self::Upload, StoreError> {
        Ok((self.inner.begin_upload(user, name, size)?, name.to_string()))
    }
    fn write_upload(&mut self, upload: &mut Self::Upload, chunk: &[u8]) -> Result<(), StoreError> {
        self.inner.write_upload(&mut upload.0, chunk)
    }
    fn commit_upload(&mut self, upload: Self::Upload) -> Result<(), StoreError> {
        self.commit_upload_deferred(upload)?;
        self.sync()
    }
    fn commit_upload_deferred(&mut self, upload: Self::Upload) -> Result<(), StoreError> {
        self.inner.commit_upload(upload.0)?;
        self.log.borrow_mut().push(Event::Commit(upload.1.clone()));
        self.pending.push(upload.1);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        if self.fail_sync && !self.pending.is_empty() {
            self.pending.clear();
            return Err(StoreError::Io);
        }
        if !self.pending.is_empty() {
            self.pending.clear();
            self.log.borrow_mut().push(Event::Sync);
        }
        Ok(())
    }
    fn abort_upload(&mut self, upload: Self::Upload) {
        self.inner.abort_upload(upload.0)
    }
    fn open(&mut self, user: u32, name: &str) -> Result<(RamReader, u32), StoreError> {
        self.inner.open(user, name)
    }
    fn read(&mut self, reader: &mut RamReader, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.inner.read(reader, buf)
    }
    fn delete(&mut self, user: u32, name: &str) -> Result<(), StoreError> {
        self.log.borrow_mut().push(Event::Delete(name.to_string()));
        self.inner.delete(user, name)
    }
    fn list(&mut self, user: u32) -> Result<RamListing<'_>, StoreError> {
        self.inner.list(user)
    }
}

/// Scripted input that reports the next request as waiting (or not), and
/// logs every response it is sent.
struct Conn {
    input: Vec<u8>,
    pos: usize,
    ready: bool,
    log: Log,
    decoder: ResponseDecoder,
}

impl embedded_io::ErrorType for Conn {
    type Error = Infallible;
}

impl embedded_io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl embedded_io::ReadReady for Conn {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.ready)
    }
}

impl embedded_io::Write for Conn {
    fn write(&mut self, mut buf: &[u8]) -> Result<usize, Infallible> {
        let n = buf.len();
        while !buf.is_empty() {
            let (used, event) = self.decoder.feed(buf).unwrap();
            if event == Decoded::Header || self.decoder.is_complete() {
                if let Some(h) = self.decoder.header().filter(|_| event == Decoded::Header) {
                    let name = String::from_utf8_lossy(h.name).into_owned();
                    self.log.borrow_mut().push(Event::Sent(h.status.code(), name));
                }
            }
            if self.decoder.is_complete() {
                self.decoder.reset();
            }
            buf = &buf[used..];
        }
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl SendFile for Conn {}

fn backup(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![7, 0, 0, 0, 2, 100, name.len() as u8, 0];
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

fn restore(name: &str) -> Vec<u8> {
    let mut b = vec![7, 0, 0, 0, 2, 200, name.len() as u8, 0];
    b.extend_from_slice(name.as_bytes());
    b
}

fn delete(name: &str) -> Vec<u8> {
    let mut b = vec![7, 0, 0, 0, 2, 201, name.len() as u8, 0];
    b.extend_from_slice(name.as_bytes());
    b
}

fn serve(input: Vec<u8>, ready: bool, max_file_size: u32) -> (Vec<Event>, SessionEnd<Infallible>) {
    let (events, _, end) = serve_logged(input, ready, max_file_size, false);
    (events, end)
}

/// What the server's log hears of one request: its name, the status sent
/// (`None`: nothing could be sent), the payload bytes and the reason.
type Logged = (String, Option<u16>, u64, Option<&'static str>);

fn serve_logged(
    input: Vec<u8>,
    ready: bool,
    max_file_size: u32,
    fail_sync: bool,
) -> (Vec<Event>, Vec<Logged>, SessionEnd<Infallible>) {
    let log: Log = Rc::default();
    let mut store = LoggedStore { inner: RamStore::new(), log: log.clone(), pending: Vec::new(), fail_sync };
    let mut buf = vec![0u8; 4096 + GROUP_COMMIT_AREA_LEN];
    let config = Config { group_commit: true, max_file_size, ..Config::default() };
    let mut dispatcher = Dispatcher::new(&mut store, &mut buf, config).unwrap();
    let mut conn = Conn { input, pos: 0, ready, log: log.clone(), decoder: ResponseDecoder::new() };
    let mut outcomes = Vec::new();
    let end = dispatcher.serve(&mut conn, &mut |o: &Outcome<'_>| {
        outcomes.push((o.name.to_string(), o.status.map(|s| s.code()), o.bytes, o.reason));
    });
    let events = log.borrow().clone();
    (events, outcomes, end)
}

fn commit(name: &str) -> Event {
    Event::Commit(name.into())
}

fn sent(status: u16, name: &str) -> Event {
    Event::Sent(status, name.into())
}

#[test]
fn pipelined_backups_share_one_sync_and_their_212s_follow_it_before_the_next_response() {
    let input = [backup("a", b"1"), backup("b", b"22"), backup("c", b"333"), restore("b")].concat();
    let (events, end) = serve(input, true, u32::MAX);
    assert_eq!(
        events,
        [
            commit("a"),
            commit("b"),
            commit("c"),
            Event::Sync,
            sent(212, "a"),
            sent(212, "b"),
            sent(212, "c"),
            sent(210, "b")
        ]
    );
    assert_eq!(end, SessionEnd::Closed);
}

#[test]
fn a_delete_after_a_held_backup_of_the_same_name_waits_for_its_sync() {
    let input = [backup("a", b"1"), delete("a")].concat();
    let (events, _) = serve(input, true, u32::MAX);
    assert_eq!(events, [commit("a"), Event::Sync, sent(212, "a"), Event::Delete("a".into()), sent(212, "a")]);
}

#[test]
fn held_212s_are_sent_when_the_client_half_closes_after_pipelining() {
    let input = [backup("a", b"1"), backup("b", b"2")].concat();
    let (events, end) = serve(input, true, u32::MAX);
    assert_eq!(events, [commit("a"), commit("b"), Event::Sync, sent(212, "a"), sent(212, "b")]);
    assert_eq!(end, SessionEnd::Closed);
}

#[test]
fn without_a_waiting_request_each_backup_is_synced_and_answered_before_the_next_is_read() {
    let input = [backup("a", b"1"), backup("b", b"2")].concat();
    let (events, _) = serve(input, false, u32::MAX);
    assert_eq!(events, [commit("a"), Event::Sync, sent(212, "a"), commit("b"), Event::Sync, sent(212, "b")]);
}

#[test]
fn a_refusal_after_held_212s_comes_after_them() {
    let input = [backup("a", b"1"), backup("b", b"2"), backup("big", b"too long")].concat();
    let (events, end) = serve(input, true, 4);
    assert_eq!(
        events,
        [commit("a"), commit("b"), Event::Sync, sent(212, "a"), sent(212, "b"), sent(1003, "")]
    );
    assert_eq!(end, SessionEnd::Refused);
}

#[test]
fn held_backups_are_logged_once_each_in_order_with_the_212_that_went_out() {
    let input = [backup("a", b"1"), backup("b", b"22"), restore("b")].concat();
    let (_, logged, _) = serve_logged(input, true, u32::MAX, false);
    assert_eq!(
        logged,
        [
            ("a".to_string(), Some(212), 1, None),
            ("b".to_string(), Some(212), 2, None),
            ("b".to_string(), Some(210), 2, None),
        ]
    );
}

#[test]
fn held_backups_whose_sync_fails_are_logged_with_the_1003_the_client_got() {
    let input = [backup("a", b"1"), backup("b", b"22"), restore("zz")].concat();
    let (events, logged, _) = serve_logged(input, true, u32::MAX, true);
    assert_eq!(events, [commit("a"), commit("b"), sent(1003, ""), sent(1003, ""), sent(1001, "zz")]);
    let reason = Some(StoreError::Io.reason());
    assert_eq!(
        logged,
        [
            ("a".to_string(), Some(1003), 1, reason),
            ("b".to_string(), Some(1003), 2, reason),
            ("zz".to_string(), Some(1001), 0, None),
        ]
    );
}
