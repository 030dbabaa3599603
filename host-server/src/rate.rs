//! The minimum transfer rate of a request, as arithmetic: how long a
//! request may still wait on its peer, given the bytes it has moved.

use std::time::Duration;

/// One request's time spent waiting on the peer, against what its bytes
/// earn: a `grace`, plus one second for every `min_rate` bytes moved (in
/// either direction). Like Apache's `mod_reqtimeout` `MinRate`, but counting
/// only time blocked on the peer, so the server's own disk time is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateClock {
    grace: Duration,
    min_rate: u64,
    waited: Duration,
    bytes: u64,
}

impl RateClock {
    /// A clock for requests that may wait `grace`, plus a second per
    /// `min_rate` bytes; `min_rate` 0 never runs out.
    pub fn new(grace: Duration, min_rate: u64) -> RateClock {
        RateClock { grace, min_rate, waited: Duration::ZERO, bytes: 0 }
    }

    /// Starts over, for a new request.
    pub fn restart(&mut self) {
        self.waited = Duration::ZERO;
        self.bytes = 0;
    }

    /// `bytes` moved to or from the peer.
    pub fn moved(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Time spent blocked on the peer.
    pub fn waited(&mut self, time: Duration) {
        self.waited = self.waited.saturating_add(time);
    }

    /// The bytes moved so far in this request.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The time waited so far in this request.
    pub fn time_waited(&self) -> Duration {
        self.waited
    }

    /// The configured rate, in bytes per second (0: off).
    pub fn min_rate(&self) -> u64 {
        self.min_rate
    }

    /// All the waiting the bytes so far allow: the grace plus bytes / rate.
    /// `None` when there is no limit.
    pub fn allowance(&self) -> Option<Duration> {
        if self.min_rate == 0 {
            return None;
        }
        let nanos = u128::from(self.bytes) * 1_000_000_000 / u128::from(self.min_rate);
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        Some(self.grace.saturating_add(earned))
    }

    /// How much longer the request may wait on its peer (zero: over the
    /// limit). `None` when there is no limit.
    pub fn left(&self) -> Option<Duration> {
        self.allowance().map(|allowed| allowed.saturating_sub(self.waited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    #[test]
    fn a_new_request_may_wait_the_grace() {
        assert_eq!(RateClock::new(GRACE, 1000).left(), Some(GRACE));
    }

    #[test]
    fn every_min_rate_bytes_earn_one_more_second_of_waiting() {
        let mut clock = RateClock::new(GRACE, 1000);
        clock.moved(1000);
        assert_eq!(clock.left(), Some(Duration::from_secs(4)));
        clock.moved(500);
        assert_eq!(clock.left(), Some(Duration::from_millis(4500)));
        clock.moved(1);
        assert_eq!(clock.left(), Some(Duration::from_millis(4501)));
    }

    #[test]
    fn waiting_spends_the_allowance_down_to_zero_and_not_below() {
        let mut clock = RateClock::new(GRACE, 1000);
        clock.moved(2000);
        clock.waited(Duration::from_secs(4));
        assert_eq!(clock.left(), Some(Duration::from_secs(1)));
        clock.waited(Duration::from_secs(10));
        assert_eq!(clock.left(), Some(Duration::ZERO));
    }

    #[test]
    fn a_byte_every_two_seconds_runs_out_after_about_the_grace() {
        let mut clock = RateClock::new(GRACE, 512);
        let mut waited = Duration::ZERO;
        while clock.left() > Some(Duration::from_secs(2)) {
            clock.waited(Duration::from_secs(2));
            clock.moved(1);
            waited += Duration::from_secs(2);
        }
        // It waits out what is left in its next wait: about the grace in all.
        let cut = waited + clock.left().unwrap();
        assert!(cut >= GRACE && cut < GRACE + Duration::from_millis(50), "cut after {cut:?}");
    }

    #[test]
    fn a_transfer_at_the_min_rate_never_runs_out_and_one_below_it_does() {
        for (rate, runs_out) in [(1000, false), (900, true)] {
            let mut clock = RateClock::new(GRACE, 1000);
            let mut out = false;
            for _ in 0..1000 {
                clock.waited(Duration::from_secs(1));
                clock.moved(rate);
                out |= clock.left() == Some(Duration::ZERO);
            }
            assert_eq!(out, runs_out, "at {rate} B/s");
        }
    }

    #[test]
    fn restarting_forgets_the_last_request() {
        let mut clock = RateClock::new(GRACE, 1000);
        clock.moved(5000);
        clock.waited(Duration::from_secs(7));
        clock.restart();
        assert_eq!((clock.bytes(), clock.time_waited(), clock.left()), (0, Duration::ZERO, Some(GRACE)));
    }

    #[test]
    fn a_rate_of_zero_is_no_limit_and_huge_counts_saturate() {
        let mut clock = RateClock::new(GRACE, 0);
        clock.waited(Duration::MAX);
        assert_eq!(clock.left(), None);
        let mut clock = RateClock::new(GRACE, 1);
        clock.moved(u64::MAX);
        clock.moved(u64::MAX);
        assert_eq!(clock.bytes(), u64::MAX);
        assert!(clock.left().unwrap() > Duration::from_secs(u64::MAX / 2_000_000_000));
    }
}
