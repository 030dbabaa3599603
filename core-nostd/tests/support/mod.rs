//! Transports for tests: a scripted one for exact request/response checks and
//! a threaded duplex whose reads and writes are short.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Condvar, Mutex};

use backup_core::dispatch::SendFile;
use backup_core::{Config, Dispatcher, Outcome, RamStore, SessionEnd};
use embedded_io::{ErrorType, Read, ReadReady, Write};

/// Feeds fixed input in reads of at most `max_read` bytes and records output.
pub struct Script {
    input: Vec<u8>,
    pos: usize,
    max_read: usize,
    pub output: Vec<u8>,
}

impl Script {
    pub fn new(input: &[u8], max_read: usize) -> Self {
        Script { input: input.to_vec(), pos: 0, max_read, output: Vec::new() }
    }

    /// Bytes of input the reader never consumed.
    pub fn unread(&self) -> &[u8] {
        &self.input[self.pos..]
    }
}

impl ErrorType for Script {
    type Error = Infallible;
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.max_read).min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_io::ReadReady for Script {
    /// Always: the script is all there, and its end reads at once.
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}

impl SendFile for Script {}

pub type TestStore = RamStore<16, 65536>;

/// Serves `input` with a fresh dispatcher over `store`, reading at most
/// `max_read` bytes at a time; returns what it wrote, how it ended, the
/// outcomes it reported, and the input it left unread.
pub fn serve_script(
    store: &mut TestStore,
    input: &[u8],
    max_read: usize,
) -> (Vec<u8>, SessionEnd<Infallible>, Vec<String>, Vec<u8>) {
    let mut buf = [0u8; 1024];
    let mut dispatcher = Dispatcher::new(store, &mut buf, Config::default()).unwrap();
    let mut conn = Script::new(input, max_read);
    let mut outcomes = Vec::new();
    let mut observe = |o: &Outcome<'_>| {
        outcomes.push(format!("{} {} {:?} {:?}", o.op.as_str(), o.name, o.status.map(|s| s.code()), o.reason))
    };
    let end = dispatcher.serve(&mut conn, &mut observe);
    let unread = conn.unread().to_vec();
    (conn.output, end, outcomes, unread)
}

/// One direction of a duplex: a byte queue that can be closed.
#[derive(Default)]
struct Pipe {
    state: Mutex<(VecDeque<u8>, bool)>,
    ready: Condvar,
}

/// Bytes a direction holds before writes block, like a socket buffer.
const PIPE_CAPACITY: usize = 64 * 1024;

/// One end of an in-memory duplex. Each read and write moves at most a
/// pseudo-random 1..=`max_chunk` bytes, so every caller meets short reads
/// and short writes; a full direction blocks the writer.
pub struct DuplexEnd {
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    max_chunk: usize,
    seed: u64,
}

pub fn duplex(max_chunk: usize, seed: u64) -> (DuplexEnd, DuplexEnd) {
    let (a, b) = (Arc::new(Pipe::default()), Arc::new(Pipe::default()));
    (
        DuplexEnd { rx: a.clone(), tx: b.clone(), max_chunk, seed },
        DuplexEnd { rx: b, tx: a, max_chunk, seed: seed ^ 0x9e37_79b9_7f4a_7c15 },
    )
}

impl DuplexEnd {
    fn next_chunk(&mut self) -> usize {
        // xorshift: deterministic per seed, no dependency.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        1 + (self.seed % self.max_chunk as u64) as usize
    }
}

impl Drop for DuplexEnd {
    fn drop(&mut self) {
        // Both directions: the peer's reads see the end, its writes fail.
        for pipe in [&self.tx, &self.rx] {
            pipe.state.lock().unwrap().1 = true;
            pipe.ready.notify_all();
        }
    }
}

/// The duplex's error: the other end is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hangup;

impl core::fmt::Display for Hangup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("hang-up")
    }
}

impl std::error::Error for Hangup {}

impl embedded_io::Error for Hangup {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::BrokenPipe
    }
}

impl ErrorType for DuplexEnd {
    type Error = Hangup;
}

impl Read for DuplexEnd {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Hangup> {
        let limit = self.next_chunk().min(buf.len());
        let mut state = self.rx.state.lock().unwrap();
        while state.0.is_empty() && !state.1 && !buf.is_empty() {
            state = self.rx.ready.wait(state).unwrap();
        }
        let n = limit.min(state.0.len());
        for (dst, src) in buf.iter_mut().zip(state.0.drain(..n)) {
            *dst = src;
        }
        self.rx.ready.notify_all();
        Ok(n)
    }
}

impl ReadReady for DuplexEnd {
    fn read_ready(&mut self) -> Result<bool, Hangup> {
        let state = self.rx.state.lock().unwrap();
        Ok(!state.0.is_empty() || state.1)
    }
}

impl Write for DuplexEnd {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Hangup> {
        let n = self.next_chunk().min(buf.len());
        let mut state = self.tx.state.lock().unwrap();
        while state.0.len() >= PIPE_CAPACITY && !state.1 {
            state = self.tx.ready.wait(state).unwrap();
        }
        if state.1 {
            return Err(Hangup);
        }
        state.0.extend(&buf[..n]);
        self.tx.ready.notify_all();
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), Hangup> {
        Ok(())
    }
}

impl SendFile for DuplexEnd {}

/// A connector handing out one prepared duplex end, then refusing.
pub struct OneShot(pub Option<DuplexEnd>);

impl backup_core::Connect for OneShot {
    type Conn = DuplexEnd;
    fn connect(&mut self) -> Result<DuplexEnd, Hangup> {
        self.0.take().ok_or(Hangup)
    }
}
