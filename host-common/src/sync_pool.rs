//! A fixed set of threads that runs groups of disk jobs in parallel: the
//! `fdatasync` of a group commit's files on the server, the sync and rename
//! of restored files on the client.
//!
//! The kernel merges concurrent flushes: on a virtio disk, 1 thread did
//! 5,200 small-file syncs (and renames) per second, 4 threads 11,500, 8
//! threads 15,000. Starting threads for each commit (as the server once did)
//! made its thread count grow with its commits (290 threads at 100
//! connections) and let a refused thread creation fail a commit. Here the
//! threads are started once, and the thread that hands in a group works
//! through it too, so a group finishes even when every pool thread is busy
//! with other groups, or none could be started.

use std::fs::File;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Threads in a pool: the measured knee above.
pub const SYNC_THREADS: usize = 8;

/// One job of a group: a sync, or a sync and what depends on it.
pub type Job<T> = Box<dyn FnOnce() -> T + Send>;

/// One group's jobs and their results.
struct Group<T> {
    /// Each job is taken out once, by whichever thread claims its index.
    jobs: Vec<Mutex<Option<Job<T>>>>,
    next: AtomicUsize,
    /// The results in the jobs' order, and how many are in.
    results: Mutex<(Vec<Option<T>>, usize)>,
    finished: Condvar,
}

/// A group whose result type the pool's threads need not know.
trait Work: Send + Sync {
    /// Runs jobs of the group until none is left to take.
    fn work(&self);
}

impl<T: Send> Work for Group<T> {
    fn work(&self) {
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = self.jobs.get(index) else { return };
            let job = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            // A job that panics has no result, but is counted: its group
            // still finishes, and its thread lives on for other groups.
            let result = job.and_then(|job| std::panic::catch_unwind(AssertUnwindSafe(job)).ok());
            let mut results = self.results.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(place) = results.0.get_mut(index) {
                *place = result;
            }
            results.1 += 1;
            if results.1 == self.jobs.len() {
                self.finished.notify_all();
            }
        }
    }
}

/// The shared threads.
#[derive(Debug)]
pub struct SyncPool {
    queue: Mutex<Option<Sender<Arc<dyn Work>>>>,
    threads: usize,
}

impl SyncPool {
    /// Starts up to `threads` threads; those the system refuses are logged
    /// and done without (callers then run their own groups).
    pub fn start(threads: usize) -> SyncPool {
        let (queue, jobs) = channel::<Arc<dyn Work>>();
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

    /// Runs every job, in parallel on the pool and on this thread, and
    /// returns when all are done: one result per job, in order (a job that
    /// panicked has none, and its place is left out).
    pub fn run_all<T: Send + 'static>(&self, jobs: Vec<Job<T>>) -> Vec<T> {
        let count = jobs.len();
        let group = Arc::new(Group {
            jobs: jobs.into_iter().map(|job| Mutex::new(Some(job))).collect(),
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
                    // does every job itself.
                    let _ = queue.send(group.clone());
                }
            }
        }
        group.work();
        let mut results = group.results.lock().unwrap_or_else(PoisonError::into_inner);
        while results.1 < count {
            results = group.finished.wait(results).unwrap_or_else(PoisonError::into_inner);
        }
        std::mem::take(&mut results.0).into_iter().flatten().collect()
    }

    /// `fdatasync` of every file, in parallel: one result per file, in order.
    pub fn sync_data_all(&self, files: Vec<File>) -> Vec<io::Result<()>> {
        let count = files.len();
        let jobs = files.into_iter().map(|file| Box::new(move || file.sync_data()) as Job<_>).collect();
        let mut results = self.run_all(jobs);
        results.resize_with(count, || Err(io::Error::other("sync result missing")));
        results
    }
}

impl Drop for SyncPool {
    fn drop(&mut self) {
        // The threads see the queue close and exit.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

fn serve(jobs: &Mutex<Receiver<Arc<dyn Work>>>) {
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

    #[test]
    fn results_of_any_jobs_come_back_in_the_jobs_order() {
        let pool = SyncPool::start(3);
        let jobs: Vec<Job<usize>> = (0..50usize).map(|i| Box::new(move || i * 2) as Job<usize>).collect();
        assert_eq!(pool.run_all(jobs), (0..50usize).map(|i| i * 2).collect::<Vec<_>>());
    }
}
