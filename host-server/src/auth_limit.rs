//! Failed handshakes, counted per address: an address (an IPv6 /64 counts
//! as one, see [`IpKey`]) that failed [`MAX_FAILURES`] handshakes within
//! [`WINDOW`] is refused further handshakes until that window has passed.
//! Other addresses are not affected. Guessing a 256-bit key is hopeless
//! anyway; this keeps a scanner from spending our CPU on handshakes and
//! fills the log with one line per refused address, not one per attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ip_key::IpKey;

/// Failed handshakes an address may have within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
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
}

/// The failure counts of every address.
#[derive(Debug, Default)]
pub struct AuthLimit {
    windows: Mutex<HashMap<IpKey, Window>>,
}

impl AuthLimit {
    /// No failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `ip` may try a handshake at `now`.
    pub fn allows(&self, ip: IpAddr, now: Instant) -> bool {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match windows.get(&IpKey::of(ip)) {
            Some(w) => now.duration_since(w.started) >= WINDOW || w.failures < MAX_FAILURES,
            None => true,
        }
    }

    /// Counts a failed handshake of `ip` at `now`; true when this failure
    /// is the one that makes the address refused (log it once, then).
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let key = IpKey::of(ip);
        if !windows.contains_key(&key) && windows.len() >= MAX_TRACKED {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                if let Some(oldest) = windows.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| *k) {
                    windows.remove(&oldest);
                }
            }
        }
        let w = windows.entry(key).or_insert(Window { started: now, failures: 0 });
        if now.duration_since(w.started) >= WINDOW {
            *w = Window { started: now, failures: 0 };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures == MAX_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_ten_failures_a_minute_and_others_are_not() {
        let limit = AuthLimit::new();
        let (bad, good): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = Instant::now();
        for i in 1..MAX_FAILURES {
            assert!(!limit.failed(bad, t), "failure {i}");
            assert!(limit.allows(bad, t));
        }
        assert!(limit.failed(bad, t), "the tenth failure starts the refusal");
        assert!(!limit.allows(bad, t + Duration::from_secs(59)));
        assert!(limit.allows(good, t));
        assert!(limit.allows(bad, t + WINDOW), "the refusal ends with the window");
    }

    #[test]
    fn one_ipv6_slash_64_counts_as_one_address() {
        let limit = AuthLimit::new();
        let t = Instant::now();
        for i in 0..MAX_FAILURES {
            limit.failed(format!("2001:db8::{i:x}").parse().unwrap(), t);
        }
        assert!(!limit.allows("2001:db8::ffff".parse().unwrap(), t));
        assert!(limit.allows("2001:db8:0:1::1".parse().unwrap(), t));
    }

    #[test]
    fn the_table_stays_bounded_however_many_addresses_fail() {
        let limit = AuthLimit::new();
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            limit.failed(IpAddr::V4(i.into()), t);
        }
        assert!(limit.windows.lock().unwrap().len() <= MAX_TRACKED);
    }
}
