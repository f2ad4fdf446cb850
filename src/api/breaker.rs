//! A circuit breaker for the database: once a request finds it unreachable, requests
//! fail fast for a cooldown instead of each waiting out the pool timeout; then exactly
//! one request at a time is let through to probe, and its success closes the breaker.
//!
//! Lock-free, and the clock is an argument, so the state machine is tested without
//! sleeping.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether a request may go to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The database is believed up.
    Pass,
    /// The breaker is open and its cooldown over: this request probes. The caller
    /// must report the outcome with [`Breaker::succeeded`] or [`Breaker::failed`].
    Probe,
    /// Fail fast.
    Reject,
}

pub struct Breaker {
    epoch: Instant,
    cooldown: Duration,
    /// Milliseconds since `epoch` until which requests are rejected; 0 when closed.
    open_until_ms: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    pub fn new(cooldown: Duration, epoch: Instant) -> Breaker {
        Breaker {
            epoch,
            cooldown,
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        // +1 so that "open until" is never the 0 that means closed.
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX) + 1
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let open_until = self.open_until_ms.load(Ordering::Acquire);
        if open_until == 0 {
            return Admission::Pass;
        }
        if self.ms(now) < open_until {
            return Admission::Reject;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Admission::Probe
        } else {
            Admission::Reject
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }

    /// A request reached the database.
    pub fn succeeded(&self) {
        if self.open_until_ms.load(Ordering::Acquire) != 0 {
            self.open_until_ms.store(0, Ordering::Release);
        }
        if self.probing.load(Ordering::Acquire) {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// A request found the database unreachable.
    pub fn failed(&self, now: Instant) {
        let until = self
            .ms(now)
            .saturating_add(u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX));
        self.open_until_ms.store(until, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_until_a_failure_then_rejects_for_the_cooldown() {
        let t0 = Instant::now();
        let breaker = Breaker::new(Duration::from_millis(500), t0);
        assert_eq!(breaker.admit(t0), Admission::Pass);
        breaker.failed(t0);
        assert!(breaker.is_open());
        assert_eq!(
            breaker.admit(t0 + Duration::from_millis(10)),
            Admission::Reject
        );
        assert_eq!(
            breaker.admit(t0 + Duration::from_millis(499)),
            Admission::Reject
        );
    }

    #[test]
    fn after_the_cooldown_one_request_probes_at_a_time() {
        let t0 = Instant::now();
        let breaker = Breaker::new(Duration::from_millis(500), t0);
        breaker.failed(t0);
        let later = t0 + Duration::from_millis(600);
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert_eq!(
            breaker.admit(later),
            Admission::Reject,
            "one probe at a time"
        );
        // The probe fails: the cooldown starts again.
        breaker.failed(later);
        assert_eq!(
            breaker.admit(later + Duration::from_millis(100)),
            Admission::Reject
        );
        let again = later + Duration::from_millis(600);
        assert_eq!(breaker.admit(again), Admission::Probe);
        breaker.succeeded();
        assert!(!breaker.is_open());
        assert_eq!(breaker.admit(again), Admission::Pass);
        assert_eq!(breaker.admit(again), Admission::Pass);
    }
}
