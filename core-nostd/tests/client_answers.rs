//! The client against answers that are not for the request it sent: a 210,
//! 212 or 1001 naming another file is a protocol error, never a success or
//! a "no such file" for the file asked about.

mod support;

use std::convert::Infallible;

use backup_core::{Client, ClientError, ProtocolError};
use support::Script;

/// Connects once, to a script of canned answers.
struct Canned(Option<Script>);

impl backup_core::Connect for Canned {
    type Conn = Script;
    fn connect(&mut self) -> Result<Script, Infallible> {
        Ok(self.0.take().unwrap_or_else(|| Script::new(&[], 1)))
    }
}

fn response(status: u16, name: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![2u8];
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn client_with<'b>(answers: &[u8], buf: &'b mut [u8]) -> Client<'b, Canned> {
    Client::new(Canned(Some(Script::new(answers, 7))), 1, buf).unwrap()
}

const MISMATCH: ProtocolError = ProtocolError::NameMismatch;

#[test]
fn a_212_for_another_file_is_not_a_backup_of_this_one() {
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(&response(212, b"other.txt", b""), &mut buf);
    assert_eq!(client.backup("mine.txt", 3, &mut &b"abc"[..]), Err(ClientError::Protocol(MISMATCH)));
    assert!(!client.is_connected(), "the connection's answers are out of step: dropped");
}

#[test]
fn a_212_for_this_file_is_still_a_backup() {
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(&response(212, b"mine.txt", b""), &mut buf);
    assert_eq!(client.backup("mine.txt", 3, &mut &b"abc"[..]), Ok(()));
}

#[test]
fn a_1001_for_another_file_is_not_a_missing_file() {
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(&response(1001, b"other.txt", b""), &mut buf);
    assert_eq!(client.delete("mine.txt"), Err(ClientError::Protocol(MISMATCH)));
}

#[test]
fn a_210_for_another_file_writes_nothing_into_the_sink() {
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(&response(210, b"other.txt", b"not yours"), &mut buf);
    let mut sink = Vec::new();
    assert_eq!(client.restore("mine.txt", &mut sink, |_| {}), Err(ClientError::Protocol(MISMATCH)));
    assert!(sink.is_empty());
}

#[test]
fn a_short_212_is_checked_by_its_name_too() {
    // Older servers stop after the name of a 212 and close.
    let short = &response(212, b"other.txt", b"")[..14];
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(short, &mut buf);
    assert_eq!(client.delete("mine.txt"), Err(ClientError::Protocol(MISMATCH)));
    let short = &response(212, b"mine.txt", b"")[..13];
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(short, &mut buf);
    assert_eq!(client.delete("mine.txt"), Ok(()));
}

struct OneFile(Vec<usize>);

impl backup_core::Batch for OneFile {
    type Reader = &'static [u8];
    fn file(&mut self, _index: usize) -> Result<(&str, u32, &'static [u8]), Infallible> {
        Ok(("mine.txt", 3, b"abc"))
    }
    fn name(&mut self, _index: usize) -> &str {
        "mine.txt"
    }
    fn done(&mut self, index: usize) {
        self.0.push(index);
    }
}

#[test]
fn a_batch_ack_for_another_file_confirms_nothing() {
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(&response(212, b"other.txt", b""), &mut buf);
    let mut batch = OneFile(Vec::new());
    let err = client.backup_batch(1, &mut batch).unwrap_err();
    assert_eq!((err.index, err.error), (0, ClientError::Protocol(MISMATCH)));
    assert!(batch.0.is_empty());
}

struct OneRestore(usize);

impl backup_core::RestoreBatch for OneRestore {
    type Writer = Vec<u8>;
    fn name(&mut self, _index: usize) -> &str {
        "mine.txt"
    }
    fn open(&mut self, _index: usize, _size: u32) -> Result<Vec<u8>, Infallible> {
        self.0 += 1;
        Ok(Vec::new())
    }
    fn finish(&mut self, _index: usize, _writer: Vec<u8>) -> Result<(), Infallible> {
        panic!("another file's contents must not be finished as this one")
    }
}

#[test]
fn a_batch_restore_of_another_file_opens_nothing() {
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(&response(210, b"other.txt", b"not yours"), &mut buf);
    let mut batch = OneRestore(0);
    let err = client.restore_batch(1, &mut batch).unwrap_err();
    assert_eq!((err.index, err.error), (0, ClientError::Protocol(MISMATCH)));
    assert_eq!(batch.0, 0, "no file opened");
    let mut buf = vec![0u8; 1024];
    let mut client = client_with(&response(1001, b"other.txt", b""), &mut buf);
    let err = client.restore_batch(1, &mut OneRestore(0)).unwrap_err();
    assert_eq!(err.error, ClientError::Protocol(MISMATCH), "not a NotFound for mine.txt");
}
