//! Finishes restored files on threads of their own: sync each temporary
//! file, rename it over its target, and at the end sync every folder that
//! gained a file, so the renames survive a crash too.
//!
//! A sync waits for the disk; done inline, it would keep the next restore
//! waiting in the socket, and done one at a time it leaves the disk idle
//! between flushes. Here the connection goes on receiving while a placer
//! thread takes the files queued so far as a group and finishes them in
//! parallel on a [`SyncPool`] (the server's group commits run on the same
//! kind of pool; the kernel merges their flushes), and the order that makes
//! each restored file durable (data synced, then renamed, then its folder
//! synced) is unchanged. Lines are printed in the batch's order. After a
//! failure no file still waiting is renamed: their temporary files are
//! removed and their targets left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use host_common::sync_pool::{Job, SYNC_THREADS, SyncPool};
use tempfile::NamedTempFile;

use crate::commands::out;
use crate::progress::Mode;

/// Threads that finish files beside the placer (which works too): the
/// measured knee of parallel syncs (see [`SYNC_THREADS`]).
pub const WORKERS: usize = SYNC_THREADS;

/// Restored files waiting for the placer, at most, and the most it takes
/// as one group: each holds an open file descriptor (so at most twice this
/// many are open), and a full queue makes the connection wait for the disk.
const QUEUE_LEN: usize = 64;

/// How restored files are put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// A rename may replace an existing target.
    pub force: bool,
    /// Sync each file before its rename and each folder after (the default).
    /// Without it a crash soon after a restore can leave files empty.
    pub sync: bool,
}

/// A complete restored file, still under its temporary name.
#[derive(Debug)]
pub struct Restored {
    /// Position in the batch.
    pub index: usize,
    /// The name on the server, for messages.
    pub name: String,
    pub temp: NamedTempFile,
    pub target: PathBuf,
    pub size: u64,
}

/// What the finisher did.
#[derive(Debug, Default)]
pub struct Finished {
    /// Files renamed into place (synced, unless told not to).
    pub files: usize,
    pub bytes: u64,
    /// The first file (in the batch's order) that could not be finished:
    /// its index, its name and why.
    pub failure: Option<(usize, String, io::Error)>,
}

/// A file's outcome, from a worker to the collector.
struct Outcome {
    index: usize,
    name: String,
    result: io::Result<(PathBuf, u64)>,
}

/// The finishing threads and their queue.
pub struct Finisher {
    queue: Option<SyncSender<Restored>>,
    failed: Arc<AtomicBool>,
    placer: Option<JoinHandle<()>>,
    collector: Option<JoinHandle<Finished>>,
}

impl Finisher {
    /// Starts the threads; `mode` says whether to print a line per file.
    pub fn start(how: Placement, mode: Mode) -> io::Result<Finisher> {
        let (queue, files) = sync_channel(QUEUE_LEN);
        let (outcomes, collected) = channel();
        let failed = Arc::new(AtomicBool::new(false));
        let mut finisher = Finisher { queue: Some(queue), failed, placer: None, collector: None };
        // Threads the system refuses are done without: the placer then
        // finishes its groups alone.
        let pool = SyncPool::start(WORKERS);
        let placer_failed = finisher.failed.clone();
        let placer = std::thread::Builder::new()
            .name("finisher-placer".into())
            .spawn(move || place_groups(&files, &pool, &outcomes, &placer_failed, how))?;
        finisher.placer = Some(placer);
        let failed = finisher.failed.clone();
        let collector = std::thread::Builder::new()
            .name("finisher".into())
            .spawn(move || collect(&collected, &failed, how, mode))?;
        finisher.collector = Some(collector);
        Ok(finisher)
    }

    /// Queues a complete file; waits while the queue is full. Fails once
    /// a file has failed, so that the batch stops.
    pub fn submit(&self, file: Restored) -> io::Result<()> {
        match &self.queue {
            Some(queue) if !self.failed.load(Ordering::Relaxed) => queue.send(file).map_err(|_| stopped()),
            _ => Err(stopped()),
        }
    }

    /// Finishes every queued file, then syncs their folders.
    pub fn wait(mut self) -> Finished {
        match self.join() {
            Some(Ok(finished)) => finished,
            _ => Finished {
                failure: Some((0, String::new(), io::Error::other("a finishing thread stopped"))),
                ..Finished::default()
            },
        }
    }

    /// Closes the queue and waits for every thread; the collector's report.
    fn join(&mut self) -> Option<std::thread::Result<Finished>> {
        self.queue = None;
        if let Some(placer) = self.placer.take() {
            let _ = placer.join();
        }
        self.collector.take().map(JoinHandle::join)
    }
}

impl Drop for Finisher {
    /// Stops at once: queued files are removed, not renamed.
    fn drop(&mut self) {
        self.failed.store(true, Ordering::Relaxed);
        let _ = self.join();
    }
}

fn stopped() -> io::Error {
    io::Error::other("stopped after an earlier file failed")
}

/// Takes the queued files a group at a time (what has arrived, up to
/// [`QUEUE_LEN`]) and finishes each group on the pool, until the queue
/// closes.
fn place_groups(
    files: &Receiver<Restored>,
    pool: &SyncPool,
    outcomes: &Sender<Outcome>,
    failed: &Arc<AtomicBool>,
    how: Placement,
) {
    while let Ok(first) = files.recv() {
        let mut group = vec![first];
        while group.len() < QUEUE_LEN {
            match files.try_recv() {
                Ok(file) => group.push(file),
                Err(_) => break,
            }
        }
        let jobs = group
            .into_iter()
            .map(|file| {
                let failed = failed.clone();
                Box::new(move || finish(file, &failed, how)) as Job<Option<Outcome>>
            })
            .collect();
        for outcome in pool.run_all(jobs).into_iter().flatten() {
            let _ = outcomes.send(outcome);
        }
    }
}

/// Places one file, unless an earlier one failed (then its temporary file
/// is removed, and it has no outcome).
fn finish(file: Restored, failed: &AtomicBool, how: Placement) -> Option<Outcome> {
    if failed.load(Ordering::Relaxed) {
        // Dropping the temporary file removes it.
        return None;
    }
    let (index, name) = (file.index, file.name.clone());
    let size = file.size;
    let result = place(file.temp, &file.target, how).map(|()| (file.target, size));
    if result.is_err() {
        failed.store(true, Ordering::Relaxed);
    }
    Some(Outcome { index, name, result })
}

/// Syncs a complete temporary file (unless told not to) and renames it over
/// `target`; without `force`, never over an existing file. The folder's
/// sync is left to the caller, so that one serves many files.
pub fn place(temp: NamedTempFile, target: &Path, how: Placement) -> io::Result<()> {
    if how.sync {
        // fdatasync: the contents and the size, all a restored file needs.
        temp.as_file().sync_data()?;
    }
    let persisted = if how.force { temp.persist(target) } else { temp.persist_noclobber(target) };
    persisted
        .map(drop)
        .map_err(|e| io::Error::new(e.error.kind(), format!("{}: {}", target.display(), e.error)))
}

/// Takes the files' outcomes as they come, reports them in the batch's
/// order, and syncs the folders once every worker is done.
fn collect(outcomes: &Receiver<Outcome>, failed: &AtomicBool, how: Placement, mode: Mode) -> Finished {
    let mut done = Finished::default();
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    let mut folders = BTreeSet::new();
    for outcome in outcomes.iter() {
        waiting.insert(outcome.index, outcome);
        while let Some(outcome) = waiting.remove(&next) {
            next += 1;
            record(&mut done, &mut folders, outcome, mode == Mode::Lines);
        }
    }
    // Files finished after a gap (a failure, or files dropped after it)
    // are in place too, and their folders need the same sync; after a
    // failure no line is printed.
    for outcome in waiting.into_values() {
        record(&mut done, &mut folders, outcome, false);
    }
    for folder in folders.iter().filter(|_| how.sync) {
        if let Err(e) = sync_folder(folder) {
            failed.store(true, Ordering::Relaxed);
            if done.failure.is_none() {
                let e = io::Error::new(e.kind(), format!("syncing folder {}: {e}", folder.display()));
                done.failure = Some((done.files, String::new(), e));
            }
        }
    }
    done
}

/// Counts one file's outcome: a placed file (and a line, if `print` and
/// nothing failed before it) and its folder, or the earliest failure.
fn record(done: &mut Finished, folders: &mut BTreeSet<PathBuf>, outcome: Outcome, print: bool) {
    match outcome.result {
        Ok((target, size)) => {
            if print && done.failure.is_none() {
                out(format_args!("restored {} to {} ({size} bytes)", outcome.name, target.display()));
            }
            folders.insert(parent(&target).to_path_buf());
            done.files += 1;
            done.bytes += size;
        }
        Err(e) if done.failure.as_ref().is_none_or(|(first, ..)| outcome.index < *first) => {
            done.failure = Some((outcome.index, outcome.name, e));
        }
        Err(_) => {}
    }
}

/// Syncs a folder, which makes the renames into it durable.
pub fn sync_folder(folder: &Path) -> io::Result<()> {
    File::open(folder)?.sync_all()
}

/// The folder a target lands in.
pub fn parent(target: &Path) -> &Path {
    target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAFE: Placement = Placement { force: false, sync: true };

    fn restored(dir: &Path, index: usize, body: &[u8], target: &str) -> Restored {
        let mut temp = NamedTempFile::new_in(dir).unwrap();
        io::Write::write_all(&mut temp, body).unwrap();
        Restored { index, name: format!("n{index}"), temp, target: dir.join(target), size: body.len() as u64 }
    }

    #[test]
    fn every_submitted_file_lands_under_its_target_name() {
        let dir = tempfile::tempdir().unwrap();
        let finisher = Finisher::start(SAFE, Mode::Quiet).unwrap();
        for i in 0..200 {
            finisher
                .submit(restored(dir.path(), i, format!("file {i}").as_bytes(), &format!("t{i}")))
                .unwrap();
        }
        let finished = finisher.wait();
        assert!(finished.failure.is_none(), "{:?}", finished.failure);
        assert_eq!(finished.files, 200);
        for i in 0..200 {
            assert_eq!(
                std::fs::read(dir.path().join(format!("t{i}"))).unwrap(),
                format!("file {i}").as_bytes()
            );
        }
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 200, "no temporary file left behind");
    }

    #[test]
    fn an_existing_target_is_the_reported_failure_and_stays_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t1"), b"mine").unwrap();
        let finisher = Finisher::start(SAFE, Mode::Quiet).unwrap();
        finisher.submit(restored(dir.path(), 0, b"zero", "t0")).unwrap();
        finisher.submit(restored(dir.path(), 1, b"one", "t1")).unwrap();
        let finished = finisher.wait();
        let (index, name, _) = finished.failure.expect("a failure");
        assert_eq!((index, name.as_str()), (1, "n1"));
        assert_eq!(std::fs::read(dir.path().join("t1")).unwrap(), b"mine");
        assert_eq!(std::fs::read(dir.path().join("t0")).unwrap(), b"zero");
    }

    #[test]
    fn after_a_failure_no_further_file_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t0"), b"mine").unwrap();
        let finisher = Finisher::start(SAFE, Mode::Quiet).unwrap();
        finisher.submit(restored(dir.path(), 0, b"zero", "t0")).unwrap();
        // The failure is noticed asynchronously; within a moment, submissions
        // are refused.
        let refused = (1..10_000).any(|i| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            finisher.submit(restored(dir.path(), i, b"x", &format!("t{i}"))).is_err()
        });
        assert!(refused);
        let finished = finisher.wait();
        assert_eq!(finished.failure.map(|(index, ..)| index), Some(0));
    }

    #[test]
    fn a_file_refused_after_a_failure_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let finisher = Finisher::start(SAFE, Mode::Quiet).unwrap();
        finisher.failed.store(true, Ordering::Relaxed);
        assert!(finisher.submit(restored(dir.path(), 0, b"zero", "t0")).is_err());
        drop(finisher);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
