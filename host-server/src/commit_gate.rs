//! A fair limit on how many commits wait for the disk at once.
//!
//! Without it, every connection's sync joins the disk's queue at once and is
//! served in no particular order, so under load some backups wait behind
//! several rounds of others (a long latency tail). Through the gate, commits
//! enter in the order they asked, at most `slots` at a time: the same work,
//! a narrower spread of waiting times.

use std::sync::{Condvar, Mutex, PoisonError};

/// First come, first served, `slots` at a time.
#[derive(Debug)]
pub struct CommitGate {
    slots: u64,
    /// Tickets handed out, and commits finished.
    state: Mutex<(u64, u64)>,
    finished: Condvar,
}

/// A commit's turn; the next one may enter when it is dropped.
pub struct Turn<'a>(&'a CommitGate);

impl CommitGate {
    /// A gate letting `slots` (at least 1) commits through at once.
    pub fn new(slots: usize) -> CommitGate {
        CommitGate { slots: slots.max(1) as u64, state: Mutex::new((0, 0)), finished: Condvar::new() }
    }

    /// Waits for this commit's turn.
    pub fn enter(&self) -> Turn<'_> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = state.0;
        state.0 += 1;
        // Ticket t may enter once fewer than `slots` tickets before it are
        // unfinished. (Later tickets may finish first, so `finished` can
        // exceed t: compare without subtracting.)
        while ticket >= state.1 + self.slots {
            state = self.finished.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 += 1;
        drop(state);
        self.0.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn no_more_than_the_slots_are_inside_at_once_and_everyone_gets_through() {
        let gate = Arc::new(CommitGate::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _turn = gate.enter();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(gate.state.lock().unwrap().1, 16 * 50);
    }
}
