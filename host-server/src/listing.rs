//! Listings that hold a file descriptor and a few KiB, never the names.
//!
//! A list reply states its payload length before the names, so the whole
//! sorted list must exist before the first byte goes out, and it must stay
//! as it was until the last byte has (a slow reader can take minutes).
//! Keeping it in memory let connections that ask and never read hold
//! gigabytes (issue #17). Instead a listing is a [`Spool`]: the payload
//! itself (each name and `\n`, sorted by bytes) in an unlinked temporary
//! file, built by an external merge sort whose memory is a fixed budget,
//! and at most [`SORT_SLOTS`] builds run at once in the whole server. A
//! [`SpoolReader`] then streams it through a small buffer.
//!
//! The builder takes names from anywhere ([`SpoolBuilder::push`]), so an
//! object-store backend can feed it its paged listings; [`snapshot`] feeds
//! it a user folder, and lets listings of one folder that ask while a build
//! of it waits for its turn share that build.
//!
//! (Crates that sort externally, such as `extsort`, budget by item count
//! rather than bytes, write named files in a folder of their own choosing
//! and use their own record format; here the runs and the spool are the
//! wire payload itself, in unlinked files beside the user's data.)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError};

use backup_core::MAX_NAME_LEN;
use backup_core::wire::validate_name;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::commit_gate::{CommitGate, Turn};
use crate::fs_store::TEMP_PREFIX;

/// Bytes of names (with their index) a build sorts in memory before it
/// writes them out as a run. Building and reading the spool of 100,000
/// names of 220 bytes (release build, warm cache, best of 5, two runs on a
/// shared 2-core machine): 64 KiB 307-429 ms, 256 KiB 253-271 ms, 1 MiB
/// 225-248 ms, 4 MiB 230-236 ms, 64 MiB 189-224 ms; sorting in memory as
/// before took 290-438 ms. Past 1 MiB more memory buys little.
pub const RUN_BUDGET: usize = 1024 * 1024;

/// Builds that may run at once in the whole server. Each holds at most
/// about twice [`RUN_BUDGET`] while sorting (a run, plus what its vectors
/// grew by) and about [`RUN_BUDGET`] plus `WRITE_BUF` while merging, so
/// all builds together stay within a few MiB. Building is CPU work and the
/// server's machine has 2 cores: more slots would not empty the queue
/// sooner, only spend more memory.
pub const SORT_SLOTS: usize = 2;

/// Read buffer of each run being merged: the merge's fan-in is
/// `RUN_BUDGET / MERGE_READ_BUF` (64 with 1 MiB), so the merge stays
/// within the budget; more runs than that are merged in several passes.
const MERGE_READ_BUF: usize = 16 * 1024;

/// Most runs merged at once, whatever the budget, and the fewest.
const MAX_FAN_IN: usize = 64;
const MIN_FAN_IN: usize = 2;

/// Buffer of a listing being sent: the memory a connection that never
/// reads keeps. A name is at most 255 bytes, so this holds at least one.
const SEND_READ_BUF: usize = 4 * 1024;

/// Writes to the run and spool files go out in pieces of this size.
const WRITE_BUF: usize = 64 * 1024;

/// Index entry of a name in a run: where it starts and how long it is.
type Entry = (u32, u32);

/// Owner-only, like the stored files.
const TMP_MODE: u32 = 0o600;

/// Gives builds their turn, first come first served, server-wide.
static SORT_GATE: LazyLock<CommitGate> = LazyLock::new(|| CommitGate::new(SORT_SLOTS));

/// Tells apart the names of fallback temporary files.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// One listing's payload, sorted and complete, in an unlinked file: it
/// disappears with the last reader.
#[derive(Debug)]
pub struct Spool {
    file: File,
    len: u64,
}

impl Spool {
    /// Bytes of the payload: each name's length plus one for its `\n`.
    pub fn payload_len(&self) -> u64 {
        self.len
    }

    /// A reader from the first name; readers of one spool are independent.
    pub fn reader(self: &Arc<Self>) -> SpoolReader {
        SpoolReader { lines: Lines::new(0..self.len, SEND_READ_BUF), spool: self.clone() }
    }
}

/// Yields a spool's names in order through a buffer of a few KiB.
#[derive(Debug)]
pub struct SpoolReader {
    spool: Arc<Spool>,
    lines: Lines,
}

impl SpoolReader {
    /// Bytes of the whole payload, as [`Spool::payload_len`].
    pub fn payload_len(&self) -> u64 {
        self.spool.len
    }

    /// The next name, `None` after the last. A spool that cannot be read
    /// back whole is an error, so the caller can end the reply.
    pub fn next_name(&mut self) -> io::Result<Option<&str>> {
        match self.lines.next(&self.spool.file)? {
            None => Ok(None),
            Some(line) => std::str::from_utf8(line)
                .map(Some)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "listing spool holds invalid UTF-8")),
        }
    }
}

/// Sorts names into a [`Spool`] within a memory budget. At most
/// [`SORT_SLOTS`] builders exist at once in the process: [`SpoolBuilder::new`]
/// waits for a turn, so the memory of all listings being built is bounded
/// whatever the number of connections. Duplicate names are listed once.
pub struct SpoolBuilder<'a> {
    /// Where the temporary files go (unlinked, so never seen there).
    tmp_dir: BorrowedFd<'a>,
    budget: usize,
    /// The names of the current run, each followed by `\n`.
    arena: Vec<u8>,
    index: Vec<Entry>,
    /// Runs written out so far, as ranges of `runs_file`.
    runs_file: Option<File>,
    runs: Vec<Range<u64>>,
    runs_end: u64,
    _turn: Turn<'static>,
}

impl std::fmt::Debug for SpoolBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolBuilder")
            .field("budget", &self.budget)
            .field("in_memory", &self.index.len())
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl<'a> SpoolBuilder<'a> {
    /// Waits for a build's turn, then starts one whose temporary files go in
    /// `tmp_dir` and which keeps at most about `run_budget` bytes of names in
    /// memory (at least one name; [`RUN_BUDGET`] in the server).
    pub fn new(tmp_dir: BorrowedFd<'a>, run_budget: usize) -> SpoolBuilder<'a> {
        let turn = SORT_GATE.enter();
        // Arena offsets are u32.
        let budget = run_budget.min(u32::MAX as usize / 2);
        SpoolBuilder {
            tmp_dir,
            budget,
            arena: Vec::new(),
            index: Vec::new(),
            runs_file: None,
            runs: Vec::new(),
            runs_end: 0,
            _turn: turn,
        }
    }

    /// Adds a name: 1 to 255 bytes without `\n`, which frames the spool.
    /// (Callers list valid names only; this check keeps the framing sound.)
    pub fn push(&mut self, name: &str) -> io::Result<()> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_NAME_LEN || bytes.contains(&b'\n') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "name cannot be listed"));
        }
        let cost = bytes.len() + 1 + size_of::<Entry>();
        if !self.index.is_empty() && self.used() + cost > self.budget {
            self.spill()?;
        }
        // In range: the arena stays below `budget`, which fits a u32.
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        self.arena.push(b'\n');
        self.index.push((start, bytes.len() as u32));
        Ok(())
    }

    /// Sorts what is left, merges the runs, and returns the spool.
    pub fn finish(mut self) -> io::Result<Spool> {
        let spool_file = unlinked_file(self.tmp_dir)?;
        let mut out = PosWriter::new(&spool_file, 0);
        if self.runs.is_empty() {
            self.sort_run();
            write_sorted(&self.arena, &self.index, &mut out)?;
        } else {
            if !self.index.is_empty() {
                self.spill()?;
            }
            // The merge's buffers take the place of the run's.
            self.arena = Vec::new();
            self.index = Vec::new();
            let fan_in = (self.budget / MERGE_READ_BUF).clamp(MIN_FAN_IN, MAX_FAN_IN);
            let runs_file = self.runs_file.take().ok_or_else(|| io::Error::other("runs without a file"))?;
            let mut runs = std::mem::take(&mut self.runs);
            while runs.len() > fan_in {
                let mut merged = Vec::with_capacity(runs.len().div_ceil(fan_in));
                for group in runs.chunks(fan_in) {
                    let mut pass = PosWriter::new(&runs_file, self.runs_end);
                    merge(&runs_file, group, &mut pass)?;
                    let end = pass.finish()?;
                    merged.push(self.runs_end..end);
                    self.runs_end = end;
                }
                runs = merged;
            }
            merge(&runs_file, &runs, &mut out)?;
        }
        let len = out.finish()?;
        Ok(Spool { file: spool_file, len })
    }

    fn used(&self) -> usize {
        self.arena.len() + self.index.len() * size_of::<Entry>()
    }

    fn sort_run(&mut self) {
        let arena = &self.arena;
        self.index.sort_unstable_by(|&a, &b| name_at(arena, a).cmp(name_at(arena, b)));
    }

    /// Writes the current run out, sorted, and empties it.
    fn spill(&mut self) -> io::Result<()> {
        self.sort_run();
        if self.runs_file.is_none() {
            self.runs_file = Some(unlinked_file(self.tmp_dir)?);
        }
        let file = self.runs_file.as_ref().ok_or_else(|| io::Error::other("no runs file"))?;
        let mut out = PosWriter::new(file, self.runs_end);
        write_sorted(&self.arena, &self.index, &mut out)?;
        let end = out.finish()?;
        self.runs.push(self.runs_end..end);
        self.runs_end = end;
        self.arena.clear();
        self.index.clear();
        Ok(())
    }
}

fn name_at(arena: &[u8], (start, len): Entry) -> &[u8] {
    arena.get(start as usize..(start + len) as usize).unwrap_or_default()
}

/// Writes sorted names, each once.
fn write_sorted(arena: &[u8], index: &[Entry], out: &mut PosWriter<'_>) -> io::Result<()> {
    let mut last: Option<&[u8]> = None;
    for &entry in index {
        let name = name_at(arena, entry);
        if last != Some(name) {
            out.write_line(name)?;
            last = Some(name);
        }
    }
    Ok(())
}

/// Merges sorted runs of `src` into `out`, each name once.
fn merge(src: &File, runs: &[Range<u64>], out: &mut PosWriter<'_>) -> io::Result<()> {
    let mut readers: Vec<Lines> = runs.iter().map(|run| Lines::new(run.clone(), MERGE_READ_BUF)).collect();
    // Each head owns its name's bytes; popped heads are refilled in place,
    // so the merge allocates once per run, not once per name.
    let mut heads = BinaryHeap::with_capacity(readers.len());
    for (i, reader) in readers.iter_mut().enumerate() {
        if let Some(line) = reader.next(src)? {
            heads.push(Reverse((line.to_vec(), i)));
        }
    }
    let mut last: Vec<u8> = Vec::with_capacity(MAX_NAME_LEN);
    while let Some(Reverse((mut name, i))) = heads.pop() {
        if name != last {
            out.write_line(&name)?;
            last.clear();
            last.extend_from_slice(&name);
        }
        let Some(reader) = readers.get_mut(i) else { continue };
        if let Some(line) = reader.next(src)? {
            name.clear();
            name.extend_from_slice(line);
            heads.push(Reverse((name, i)));
        }
    }
    Ok(())
}

/// Reads `\n`-terminated names from a range of a file through a buffer.
#[derive(Debug)]
struct Lines {
    /// Empty until the first read, so a reader not yet read from is small.
    buf: Vec<u8>,
    cap: usize,
    /// The unread bytes of `buf`.
    lo: usize,
    hi: usize,
    /// Where the next read from the file starts, and where the range ends.
    pos: u64,
    end: u64,
}

impl Lines {
    fn new(range: Range<u64>, cap: usize) -> Lines {
        let cap = cap.max(MAX_NAME_LEN + 1);
        Lines { buf: Vec::new(), cap, lo: 0, hi: 0, pos: range.start, end: range.end }
    }

    fn next(&mut self, file: &File) -> io::Result<Option<&[u8]>> {
        loop {
            let unread = self.buf.get(self.lo..self.hi).unwrap_or_default();
            if let Some(at) = unread.iter().position(|&b| b == b'\n') {
                let line = self.lo..self.lo + at;
                self.lo += at + 1;
                return Ok(self.buf.get(line));
            }
            if self.pos >= self.end {
                if unread.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, "listing spool ends inside a name"));
            }
            let kept = unread.len();
            if kept >= self.cap {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "listing spool holds an overlong name",
                ));
            }
            if self.buf.is_empty() {
                self.buf = vec![0; self.cap];
            }
            self.buf.copy_within(self.lo..self.hi, 0);
            let room = (self.cap - kept).min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
            let into = self.buf.get_mut(kept..kept + room).unwrap_or_default();
            let n = file.read_at(into, self.pos)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "listing spool shorter than written",
                ));
            }
            self.pos += n as u64;
            self.lo = 0;
            self.hi = kept + n;
        }
    }
}

/// Buffered positional writes: runs and spools are written at known
/// offsets, so one file can be read and appended to by a merge pass.
struct PosWriter<'f> {
    file: &'f File,
    pos: u64,
    buf: Vec<u8>,
}

impl<'f> PosWriter<'f> {
    fn new(file: &'f File, pos: u64) -> PosWriter<'f> {
        PosWriter { file, pos, buf: Vec::with_capacity(WRITE_BUF) }
    }

    fn write_line(&mut self, name: &[u8]) -> io::Result<()> {
        if self.buf.len() + name.len() + 1 > WRITE_BUF {
            self.flush()?;
        }
        self.buf.extend_from_slice(name);
        self.buf.push(b'\n');
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all_at(&self.buf, self.pos)?;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered; returns where the written bytes end.
    fn finish(mut self) -> io::Result<u64> {
        self.flush()?;
        Ok(self.pos)
    }
}

/// A new file in `dir` that no folder lists: `O_TMPFILE` where the
/// filesystem has it, otherwise created under a name no client can send
/// and unlinked at once.
pub fn unlinked_file(dir: BorrowedFd<'_>) -> io::Result<File> {
    let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, ".", flags, Mode::from_raw_mode(TMP_MODE)) {
        Ok(fd) => Ok(File::from(fd)),
        // No O_TMPFILE here: older kernels say EISDIR, some filesystems
        // EOPNOTSUPP.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => named_then_unlinked(dir),
        Err(e) => Err(e.into()),
    }
}

/// The fallback of [`unlinked_file`]. The name starts with [`TEMP_PREFIX`],
/// so it is never listed, and a crash between the two calls leaves a file
/// that the next start removes with the uploads' leftovers.
fn named_then_unlinked(dir: BorrowedFd<'_>) -> io::Result<File> {
    let name =
        format!("{TEMP_PREFIX}list-{}-{}", std::process::id(), NEXT_TMP.fetch_add(1, Ordering::Relaxed));
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name.as_str(), flags, Mode::from_raw_mode(TMP_MODE))?;
    rustix::fs::unlinkat(dir, name.as_str(), AtFlags::empty())?;
    Ok(File::from(fd))
}

/// Pushes the names of the regular files with valid names in `dir`, as the
/// quota scan decides: links, folders, and files made by hand with odd names
/// are not a user's files. The entry's type saves a `stat` when it is known.
pub fn push_dir_files(builder: &mut SpoolBuilder<'_>, dir: &OwnedFd) -> io::Result<()> {
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let Ok(name) = validate_name(entry.file_name().to_bytes()) else { continue };
        let is_file = match entry.file_type() {
            FileType::RegularFile => true,
            FileType::Unknown => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => FileType::from_raw_mode(stat.st_mode).is_file(),
                // Gone since the folder was read: not in the snapshot.
                Err(Errno::NOENT) => false,
                Err(e) => return Err(e.into()),
            },
            _ => false,
        };
        if is_file {
            builder.push(name)?;
        }
    }
    Ok(())
}

/// A build of one folder's listing, and those waiting for it.
#[derive(Debug, Default)]
struct Shared {
    result: Mutex<Option<Result<Arc<Spool>, io::Error>>>,
    ready: Condvar,
}

impl Shared {
    fn wait(&self) -> io::Result<Arc<Spool>> {
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*result {
                Some(Ok(spool)) => return Ok(spool.clone()),
                Some(Err(e)) => return Err(copy_error(e)),
                None => result = self.ready.wait(result).unwrap_or_else(PoisonError::into_inner),
            }
        }
    }

    fn publish(&self, outcome: Result<Arc<Spool>, io::Error>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        self.ready.notify_all();
    }
}

fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// A folder, by device and inode, so stores with different roots in one
/// process never share.
type FolderId = (u64, u64);

/// Builds waiting for their turn, by folder. A listing asked for while one
/// of these waits joins it: the build reads the folder only after its turn
/// comes, so after the request, and the result is as fresh as a build of
/// its own. A build leaves this map when it starts reading.
static QUEUED: LazyLock<Mutex<HashMap<FolderId, Arc<Shared>>>> = LazyLock::new(Mutex::default);

/// Publishes an error if the build ends without a result (a panic), so
/// those who joined it do not wait forever; and leaves the queue.
struct Publisher {
    folder: FolderId,
    shared: Arc<Shared>,
    done: bool,
}

impl Publisher {
    fn leave_queue(&self) {
        let mut queued = QUEUED.lock().unwrap_or_else(PoisonError::into_inner);
        if queued.get(&self.folder).is_some_and(|s| Arc::ptr_eq(s, &self.shared)) {
            queued.remove(&self.folder);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if !self.done {
            self.leave_queue();
            self.shared.publish(Err(io::Error::other("listing build ended without a result")));
        }
    }
}

/// A sorted snapshot of the user files in `dir` (see [`push_dir_files`]),
/// as of after this call began.
pub fn snapshot(dir: &OwnedFd) -> io::Result<Arc<Spool>> {
    let stat = rustix::fs::fstat(dir)?;
    let folder = (stat.st_dev, stat.st_ino);
    let shared = {
        let mut queued = QUEUED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waiting) = queued.get(&folder) {
            let waiting = waiting.clone();
            drop(queued);
            return waiting.wait();
        }
        let shared = Arc::new(Shared::default());
        queued.insert(folder, shared.clone());
        shared
    };
    let mut publisher = Publisher { folder, shared, done: false };
    let mut builder = SpoolBuilder::new(dir.as_fd(), RUN_BUDGET);
    publisher.leave_queue();
    let built = push_dir_files(&mut builder, dir).and_then(|()| builder.finish()).map(Arc::new);
    let result = match &built {
        Ok(spool) => Ok(spool.clone()),
        Err(e) => Err(copy_error(e)),
    };
    publisher.shared.publish(result);
    publisher.done = true;
    built
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn read_all(spool: Spool) -> Vec<String> {
        let spool = Arc::new(spool);
        let mut reader = spool.reader();
        let mut names = Vec::new();
        while let Some(name) = reader.next_name().unwrap() {
            names.push(name.to_owned());
        }
        names
    }

    fn build(dir: &OwnedFd, budget: usize, names: &[String]) -> Spool {
        let mut builder = SpoolBuilder::new(dir.as_fd(), budget);
        for name in names {
            builder.push(name).unwrap();
        }
        builder.finish().unwrap()
    }

    fn open_dir(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap()
    }

    /// Names of many lengths (1 to 255 bytes), shared prefixes, multi-byte
    /// characters, and duplicates, in a scrambled order.
    fn tricky_names(count: usize) -> Vec<String> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = ["a", "b", ".", "é", "日", "😀", "A", "~", " ", "-"];
        (0..count)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut name = String::new();
                let len = 1 + (x % 255) as usize;
                let mut y = x;
                while name.len() < len {
                    let piece = alphabet[(y % alphabet.len() as u64) as usize];
                    if name.len() + piece.len() > len {
                        break;
                    }
                    name.push_str(piece);
                    y = y.rotate_right(3) ^ i as u64;
                }
                if name.is_empty() {
                    name.push('z');
                }
                if i % 17 == 0 { "dup".repeat(1 + i % 3) } else { name }
            })
            .collect()
    }

    fn sorted_set(names: &[String]) -> Vec<String> {
        let set: BTreeSet<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        set.into_iter().map(|n| String::from_utf8(n.to_vec()).unwrap()).collect()
    }

    #[test]
    fn every_run_budget_yields_the_byte_sorted_set_and_its_exact_length() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_dir(tmp.path());
        let names = tricky_names(3000);
        let want = sorted_set(&names);
        let want_len: u64 = want.iter().map(|n| n.len() as u64 + 1).sum();
        // One name per run, a few per run, fan-in 2 with many passes, one
        // run with room to spare.
        for budget in [0, 300, 1000, 40_000, 100_000, RUN_BUDGET] {
            let spool = build(&dir, budget, &names);
            assert_eq!(spool.payload_len(), want_len, "budget {budget}");
            assert_eq!(read_all(spool), want, "budget {budget}");
        }
        assert!(tempfile_names(tmp.path()).is_empty(), "the temporary files are unlinked");
    }

    #[test]
    fn names_exactly_filling_a_run_and_one_more_sort_across_the_boundary() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_dir(tmp.path());
        // 10 names of 9 bytes cost 10 + 8 each: a budget of 180 holds
        // exactly 10, so the next starts a second run.
        let names: Vec<String> = (0..21).rev().map(|i| format!("name{i:05}")).collect();
        for budget in [179, 180, 181] {
            assert_eq!(read_all(build(&dir, budget, &names)), sorted_set(&names), "budget {budget}");
        }
    }

    #[test]
    fn no_names_make_an_empty_spool() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_dir(tmp.path());
        let spool = build(&dir, 100, &[]);
        assert_eq!(spool.payload_len(), 0);
        assert!(read_all(spool).is_empty());
    }

    #[test]
    fn a_name_that_would_break_the_framing_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_dir(tmp.path());
        let mut builder = SpoolBuilder::new(dir.as_fd(), 100);
        for bad in [String::new(), "a\nb".into(), "x".repeat(256)] {
            assert_eq!(builder.push(&bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        builder.push(&"x".repeat(255)).unwrap();
        assert_eq!(read_all(builder.finish().unwrap()), ["x".repeat(255)]);
    }

    #[test]
    fn two_readers_of_one_spool_each_get_every_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_dir(tmp.path());
        let names: Vec<String> = (0..500).map(|i| format!("{i:0>200}")).collect();
        let spool = Arc::new(build(&dir, 1000, &names));
        let (mut a, mut b) = (spool.reader(), spool.reader());
        for want in sorted_set(&names) {
            assert_eq!(a.next_name().unwrap(), Some(want.as_str()));
            assert_eq!(b.next_name().unwrap(), Some(want.as_str()));
        }
        assert_eq!(a.next_name().unwrap(), None);
    }

    #[test]
    fn the_fallback_temporary_file_is_usable_and_leaves_no_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_dir(tmp.path());
        let file = named_then_unlinked(dir.as_fd()).unwrap();
        file.write_all_at(b"kept\n", 0).unwrap();
        let mut back = [0u8; 5];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"kept\n");
        assert!(tempfile_names(tmp.path()).is_empty());
    }

    #[test]
    fn a_folder_lists_only_its_regular_files_with_valid_names() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["b", "a", ".hidden", "é"] {
            std::fs::File::create(tmp.path().join(name)).unwrap();
        }
        std::fs::create_dir(tmp.path().join("folder")).unwrap();
        std::os::unix::fs::symlink("a", tmp.path().join("link")).unwrap();
        std::fs::File::create(tmp.path().join("back\\slash")).unwrap();
        let dir = open_dir(tmp.path());
        let spool = Arc::try_unwrap(snapshot(&dir).unwrap()).unwrap();
        assert_eq!(read_all(spool), [".hidden", "a", "b", "é"]);
    }

    /// The measurement behind [`RUN_BUDGET`]: run with `cargo test --release
    /// -p backup-server --lib -- --ignored --nocapture run_budget`.
    #[test]
    #[ignore = "measurement: run with --ignored --nocapture"]
    fn run_budget_timings_for_100000_names_of_220_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut first = tmp.path().to_path_buf();
        for i in 0..100_000u32 {
            let mut name = format!("{:08x}-", i.wrapping_mul(0x9e37_79b1));
            name.extend(std::iter::repeat_n('n', 220 - name.len()));
            let path = tmp.path().join(name);
            // Hard links are quick to make; ext4 allows 65,000 per file.
            if i % 50_000 == 0 {
                std::fs::File::create(&path).unwrap();
                first = path;
            } else {
                std::fs::hard_link(&first, path).unwrap();
            }
        }
        let dir = open_dir(tmp.path());
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            // What listing did before spools: stat each entry, sort in memory.
            let started = std::time::Instant::now();
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&dir).unwrap() {
                let entry = entry.unwrap();
                let Ok(name) = validate_name(entry.file_name().to_bytes()) else { continue };
                let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).unwrap();
                if FileType::from_raw_mode(stat.st_mode).is_file() {
                    names.push(name.to_owned());
                }
            }
            names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            best = best.min(started.elapsed());
        }
        println!("in memory, as before: {best:.2?}");
        for budget in [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20] {
            let mut best = std::time::Duration::MAX;
            for _ in 0..5 {
                let started = std::time::Instant::now();
                let mut builder = SpoolBuilder::new(dir.as_fd(), budget);
                push_dir_files(&mut builder, &dir).unwrap();
                let spool = builder.finish().unwrap();
                let mut reader = Arc::new(spool).reader();
                while reader.next_name().unwrap().is_some() {}
                best = best.min(started.elapsed());
            }
            println!("run budget {:>5} KiB: built and read in {best:.2?}", budget >> 10);
        }
    }

    fn tempfile_names(path: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(path).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
    }
}
