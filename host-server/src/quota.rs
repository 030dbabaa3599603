//! Per-user quota accounting that stays exact under any interleaving of one
//! server's uploads and deletes.
//!
//! Every change to a user's stored files (a rename into place, a delete) is
//! made while holding that user's shard lock, together with the reading of
//! the old file's size and the update of the count, so no two changes of one
//! user can interleave between "how big was it" and "replace it". The check
//! that decides is made there, at the rename: an upload admitted when it
//! began can still be refused at its commit if others filled the quota
//! meanwhile, so the stored bytes never exceed the quota. The check when an
//! upload begins only saves sending a payload that cannot fit.
//!
//! The counts are a cache of what the user's folder holds (recomputed by
//! scanning it on a miss, so they survive restarts), kept only for users
//! that store something, and at most [`CACHED_USERS`] of them: requests for
//! any number of user ids cannot grow it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use backup_core::StoreError;

/// Independent locks: changes of users in different shards never wait for
/// each other.
const SHARDS: usize = 64;

/// Users whose stored bytes are kept in memory, at most (about 40 bytes
/// each); others are scanned again when next needed.
pub const CACHED_USERS: usize = 16 * 1024;

const PER_SHARD: usize = CACHED_USERS / SHARDS;

/// Stored bytes per user, checked against one quota.
#[derive(Debug)]
pub struct QuotaBook {
    quota: u64,
    shards: Box<[Mutex<HashMap<u32, u64>>]>,
}

impl QuotaBook {
    /// A book for users who may each store `quota` bytes.
    pub fn new(quota: u64) -> QuotaBook {
        QuotaBook { quota, shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    /// The quota, in bytes.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Runs `change` with the user's stored bytes, which it may update,
    /// while no other change of this user's files can run. `scan` computes
    /// the stored bytes from the folder when they are not cached.
    pub fn with_user<T>(
        &self,
        user: u32,
        scan: impl FnOnce() -> Result<u64, StoreError>,
        change: impl FnOnce(&mut u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let shard = self.shards.get(user as usize % SHARDS).ok_or(StoreError::Io)?;
        let mut cached = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let mut used = match cached.get(&user) {
            Some(&used) => used,
            None => scan()?,
        };
        let result = change(&mut used);
        if used == 0 {
            cached.remove(&user);
        } else {
            if cached.len() >= PER_SHARD && !cached.contains_key(&user) {
                // Forget some other user: their folder is scanned again when
                // they next change something.
                if let Some(&other) = cached.keys().next() {
                    cached.remove(&other);
                }
            }
            cached.insert(user, used);
        }
        result
    }

    /// Whether `used` bytes, with `replaced` of them replaced by `size`
    /// new ones, stay within the quota; the total if so.
    pub fn fits(&self, used: u64, replaced: u64, size: u64) -> Result<u64, StoreError> {
        let after = used.saturating_sub(replaced).saturating_add(size);
        if after > self.quota { Err(StoreError::QuotaExceeded) } else { Ok(after) }
    }

    /// Users whose counts are in memory.
    pub fn cached_users(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_that_store_nothing_are_not_kept() {
        let book = QuotaBook::new(100);
        for user in 0..10_000 {
            book.with_user(user, || Ok(0), |used| book.fits(*used, 0, 0)).unwrap();
        }
        assert_eq!(book.cached_users(), 0);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound_however_many_users_store_something() {
        let book = QuotaBook::new(100);
        for user in 0..200_000 {
            book.with_user(user, || Ok(1), |_| Ok(())).unwrap();
        }
        assert!(book.cached_users() <= CACHED_USERS, "{}", book.cached_users());
    }

    #[test]
    fn a_forgotten_user_is_scanned_again() {
        let book = QuotaBook::new(100);
        book.with_user(
            1,
            || Ok(0),
            |used| {
                *used = 60;
                Ok(())
            },
        )
        .unwrap();
        // Cached: the scan is not asked.
        let used = book.with_user(1, || panic!("cached"), |used| Ok(*used)).unwrap();
        assert_eq!(used, 60);
        for user in 2..200_000 {
            book.with_user(user, || Ok(1), |_| Ok(())).unwrap();
        }
        let used = book.with_user(1, || Ok(60), |used| Ok(*used)).unwrap();
        assert_eq!(used, 60);
    }

    #[test]
    fn fits_counts_the_replaced_file_out() {
        let book = QuotaBook::new(100);
        assert_eq!(book.fits(90, 50, 60), Ok(100));
        assert_eq!(book.fits(90, 50, 61), Err(StoreError::QuotaExceeded));
        assert_eq!(book.fits(0, 0, u64::MAX), Err(StoreError::QuotaExceeded));
    }
}
