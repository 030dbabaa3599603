//! Failed handshakes, counted per address: an address (an IPv6 /64 counts
//! as one, see [`IpKey`]) that failed [`MAX_FAILURES`] handshakes within
//! [`WINDOW`] is refused further handshakes until that window has passed.
//! Other addresses are not affected. Guessing a 256-bit key is hopeless
//! anyway; this keeps a scanner from spending our CPU on handshakes and
//! fills the log with one line per refused address, not one per attempt.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ip_key::IpKey;

/// Failed handshakes an address may have within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// Handshakes an address may have under way at once. They count apart
/// from failures: a fleet behind one NAT connecting at the same second must
/// not read as failing. A handshake takes the server a fraction of a
/// millisecond once message 1 is in, so only a stalled one stays long; and
/// a burst of failing ones gets at most this many tries past the limit.
pub const MAX_IN_FLIGHT: u32 = 32;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most. Each entry is some 40 bytes, so the table
/// stays under 3 MiB however many addresses an attacker has; when it is
/// full the entry whose window started first makes room.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    /// Handshakes of the address under way, at most [`MAX_IN_FLIGHT`]: a
    /// thousand concurrent attempts get no more than that many tries.
    in_flight: u32,
}

impl Window {
    fn fresh(now: Instant) -> Window {
        Window { started: now, failures: 0, in_flight: 0 }
    }
}

/// The failure counts of every address.
#[derive(Debug, Default)]
pub struct AuthLimit {
    table: Mutex<Table>,
}

/// Each address's window, and the same keys ordered by when their window
/// started, so a full table makes room in O(log n) (oldest first) instead
/// of scanning 65,536 entries under the lock on every new address.
#[derive(Debug, Default)]
struct Table {
    windows: HashMap<IpKey, Window>,
    by_start: BTreeSet<(Instant, IpKey)>,
}

impl Table {
    /// Makes room for one more address: the one whose window started
    /// first and has no handshake under way goes. False if none can.
    fn make_room(&mut self) -> bool {
        let oldest =
            self.by_start.iter().find(|(_, k)| self.windows.get(k).is_none_or(|w| w.in_flight == 0)).copied();
        match oldest {
            Some(entry) => {
                self.by_start.remove(&entry);
                self.windows.remove(&entry.1);
                true
            }
            None => false,
        }
    }
}

/// Why an address may not start a handshake now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`MAX_FAILURES`] failed within the window.
    Failures,
    /// [`MAX_IN_FLIGHT`] are under way.
    Busy,
}

/// A handshake under way, counted against its address: a failure unless
/// [`succeeded`](Attempt::succeeded) is called (a peer that sends half a
/// handshake, or closes, or stalls, spends its address's allowance like
/// one that sends a wrong key).
#[derive(Debug)]
pub struct Attempt<'a> {
    limit: &'a AuthLimit,
    key: IpKey,
    ip: IpAddr,
    succeeded: bool,
}

impl AuthLimit {
    /// No failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a handshake of `ip` at `now`, unless the address failed
    /// [`MAX_FAILURES`] handshakes within [`WINDOW`] or has
    /// [`MAX_IN_FLIGHT`] under way.
    pub fn attempt(&self, ip: IpAddr, now: Instant) -> Result<Attempt<'_>, Refused> {
        let mut table = self.lock();
        let table = &mut *table;
        let key = IpKey::of(ip);
        // Every tracked address with a handshake under way: no room to
        // count another.
        if !table.windows.contains_key(&key) && table.windows.len() >= MAX_TRACKED && !table.make_room() {
            return Err(Refused::Busy);
        }
        let w = table.windows.entry(key).or_insert_with(|| {
            table.by_start.insert((now, key));
            Window::fresh(now)
        });
        if now.duration_since(w.started) >= WINDOW {
            table.by_start.remove(&(w.started, key));
            table.by_start.insert((now, key));
            *w = Window { in_flight: w.in_flight, ..Window::fresh(now) };
        }
        if w.failures >= MAX_FAILURES {
            return Err(Refused::Failures);
        }
        if w.in_flight >= MAX_IN_FLIGHT {
            return Err(Refused::Busy);
        }
        w.in_flight += 1;
        Ok(Attempt { limit: self, key, ip, succeeded: false })
    }
}

impl Attempt<'_> {
    /// The handshake succeeded: it does not count.
    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut table = self.limit.lock();
        let Some(w) = table.windows.get_mut(&self.key) else { return };
        w.in_flight = w.in_flight.saturating_sub(1);
        if !self.succeeded {
            w.failures = w.failures.saturating_add(1);
            if w.failures == MAX_FAILURES {
                // Once per address and window, not once per attempt.
                log::warn!(
                    "{}: {MAX_FAILURES} failed handshakes within {} s: refusing this address's handshakes for a while",
                    self.ip,
                    WINDOW.as_secs()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(limit: &AuthLimit, ip: IpAddr, t: Instant) -> bool {
        limit.attempt(ip, t).is_ok()
    }

    #[test]
    fn an_address_is_refused_after_ten_failures_a_minute_and_others_are_not() {
        let limit = AuthLimit::new();
        let (bad, good): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = Instant::now();
        for i in 0..MAX_FAILURES {
            assert!(fail(&limit, bad, t), "failure {i} was let through");
        }
        assert_eq!(limit.attempt(bad, t + Duration::from_secs(59)).err(), Some(Refused::Failures));
        assert!(limit.attempt(good, t).is_ok());
        assert!(limit.attempt(bad, t + WINDOW).is_ok(), "the refusal ends with the window");
    }

    #[test]
    fn successful_handshakes_do_not_count() {
        let limit = AuthLimit::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..(MAX_FAILURES * 3) {
            limit.attempt(ip, t).unwrap().succeeded();
        }
        assert!(limit.attempt(ip, t).is_ok());
    }

    #[test]
    fn concurrent_handshakes_are_capped_apart_from_failures() {
        let limit = AuthLimit::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        let under_way: Vec<_> = (0..MAX_IN_FLIGHT).map(|_| limit.attempt(ip, t).unwrap()).collect();
        assert_eq!(limit.attempt(ip, t).err(), Some(Refused::Busy), "one more than the cap");
        under_way.into_iter().for_each(Attempt::succeeded);
        assert!(limit.attempt(ip, t).is_ok(), "successes count as nothing");
        let failing: Vec<_> = (0..MAX_IN_FLIGHT).map(|_| limit.attempt(ip, t).unwrap()).collect();
        drop(failing);
        assert_eq!(limit.attempt(ip, t).err(), Some(Refused::Failures), "once they end, they count");
    }

    #[test]
    fn one_ipv6_slash_64_counts_as_one_address() {
        let limit = AuthLimit::new();
        let t = Instant::now();
        for i in 0..MAX_FAILURES {
            fail(&limit, format!("2001:db8::{i:x}").parse().unwrap(), t);
        }
        assert!(limit.attempt("2001:db8::ffff".parse().unwrap(), t).is_err());
        assert!(limit.attempt("2001:db8:0:1::1".parse().unwrap(), t).is_ok());
    }

    #[test]
    fn a_full_table_forgets_the_oldest_window_but_never_one_under_way() {
        let limit = AuthLimit::new();
        let t = Instant::now();
        let first: IpAddr = IpAddr::V4(0.into());
        let held = limit.attempt(first, t).unwrap();
        for i in 1..MAX_TRACKED as u32 {
            fail(&limit, IpAddr::V4(i.into()), t + Duration::from_millis(u64::from(i % 1000)));
        }
        fail(&limit, "203.0.113.1".parse().unwrap(), t + Duration::from_secs(1));
        let table = limit.table.lock().unwrap();
        assert!(table.windows.contains_key(&IpKey::of(first)), "under way: kept");
        assert!(!table.windows.contains_key(&IpKey::of(IpAddr::V4(1000.into()))), "oldest idle one: gone");
        drop(table);
        drop(held);
    }

    #[test]
    fn the_table_stays_bounded_however_many_addresses_fail() {
        let limit = AuthLimit::new();
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            fail(&limit, IpAddr::V4(i.into()), t);
        }
        let table = limit.table.lock().unwrap();
        assert!(table.windows.len() <= MAX_TRACKED && table.by_start.len() == table.windows.len());
    }
}
