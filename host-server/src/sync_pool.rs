//! A fixed set of threads, shared by every connection, that `fdatasync`
//! the files of group commits in parallel.
//!
//! The kernel merges concurrent flushes: on a virtio disk, 1 thread did
//! 5,200 small-file syncs per second, 4 threads 11,500, 8 threads 15,000.
//! Starting threads for each commit (as before) made the server's thread
//! count grow with its commits (290 threads at 100 connections) and let a
//! refused thread creation fail a commit. Here the threads are started once,
//! and the committing thread works through its own group too, so a group
//! finishes even when every pool thread is busy with others' groups, or
//! none could be started.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Threads in the pool: the measured knee above.
pub const SYNC_THREADS: usize = 8;

/// One group's files and their results.
struct Group {
    files: Vec<File>,
    next: AtomicUsize,
    results: Mutex<(Vec<Option<io::Result<()>>>, usize)>,
    finished: Condvar,
}

impl Group {
    /// Syncs files of the group until none is left to take.
    fn work(&self) {
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(file) = self.files.get(index) else { return };
            let result = file.sync_data();
            let mut results = self.results.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = results.0.get_mut(index) {
                *slot = Some(result);
            }
            results.1 += 1;
            if results.1 == self.files.len() {
                self.finished.notify_all();
            }
        }
    }
}

/// The shared sync threads.
#[derive(Debug)]
pub struct SyncPool {
    queue: Mutex<Option<Sender<Arc<Group>>>>,
    threads: usize,
}

impl SyncPool {
    /// Starts up to `threads` threads; those the system refuses are logged
    /// and done without (committing threads then sync their own groups).
    pub fn start(threads: usize) -> SyncPool {
        let (queue, jobs) = channel::<Arc<Group>>();
        let jobs = Arc::new(Mutex::new(jobs));
        let mut started = 0;
        for n in 0..threads {
            let jobs = jobs.clone();
            match std::thread::Builder::new().name(format!("sync-{n}")).spawn(move || serve(&jobs)) {
                Ok(_) => started += 1,
                Err(e) => log::warn!("cannot start sync thread {n}: {e}; continuing with {started}"),
            }
        }
        SyncPool { queue: Mutex::new(Some(queue)), threads: started }
    }

    /// Threads running.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// `fdatasync` of every file, in parallel: one result per file, in order.
    pub fn sync_data_all(&self, files: Vec<File>) -> Vec<io::Result<()>> {
        let count = files.len();
        let group = Arc::new(Group {
            files,
            next: AtomicUsize::new(0),
            results: Mutex::new(((0..count).map(|_| None).collect(), 0)),
            finished: Condvar::new(),
        });
        let helpers = count.saturating_sub(1).min(self.threads);
        if helpers > 0 {
            let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(queue) = queue.as_ref() {
                for _ in 0..helpers {
                    // A closed queue only means no help: the loop below
                    // does every file itself.
                    let _ = queue.send(group.clone());
                }
            }
        }
        group.work();
        let mut results = group.results.lock().unwrap_or_else(PoisonError::into_inner);
        while results.1 < count {
            results = group.finished.wait(results).unwrap_or_else(PoisonError::into_inner);
        }
        std::mem::take(&mut results.0)
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("sync result missing"))))
            .collect()
    }
}

impl Drop for SyncPool {
    fn drop(&mut self) {
        // The threads see the queue close and exit.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

fn serve(jobs: &Mutex<Receiver<Arc<Group>>>) {
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(group) => group.work(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_file_gets_its_own_result_in_order_with_or_without_threads() {
        for threads in [0, 1, SYNC_THREADS] {
            let pool = SyncPool::start(threads);
            assert_eq!(pool.threads(), threads);
            let files: Vec<File> = (0..20)
                .map(|i| {
                    let mut f = tempfile::tempfile().unwrap();
                    f.write_all(&[i as u8; 100]).unwrap();
                    f
                })
                .collect();
            let results = pool.sync_data_all(files);
            assert_eq!(results.len(), 20);
            assert!(results.iter().all(|r| r.is_ok()));
        }
    }

    #[test]
    fn many_committers_share_the_pool_and_all_finish() {
        let pool = Arc::new(SyncPool::start(2));
        let committers: Vec<_> = (0..16)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let files = (0..5).map(|_| tempfile::tempfile().unwrap()).collect();
                    pool.sync_data_all(files).len()
                })
            })
            .collect();
        for c in committers {
            assert_eq!(c.join().unwrap(), 5);
        }
    }
}
