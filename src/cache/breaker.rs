//! A minimal circuit breaker. After `threshold` consecutive Redis failures
//! the circuit opens for a cool-down: requests skip Redis at once (the cache
//! is bypassed) instead of each paying a timeout against a dead server. When
//! the cool-down is over, one request at a time probes Redis; a success
//! closes the circuit, a failure opens it again.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Breaker {
    epoch: Instant,
    threshold: u32,
    cooldown: Duration,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open; 0 = closed.
    open_until_ms: AtomicU64,
    probing: AtomicBool,
}

/// What the breaker lets a caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: go ahead.
    Go,
    /// Half-open: go ahead as the one probe.
    Probe,
    /// Open: don't touch Redis.
    Deny,
}

impl Breaker {
    pub fn new(threshold: NonZeroU32, cooldown: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            threshold: threshold.get(),
            cooldown,
            consecutive_failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// Never 0, which means "closed".
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Consecutive failures that open the circuit.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    pub fn permit(&self) -> Permit {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return Permit::Go;
        }
        if self.now_ms() < until {
            return Permit::Deny;
        }
        // Cool-down over: exactly one caller probes.
        if self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            Permit::Probe
        } else {
            Permit::Deny
        }
    }

    /// Returns true when this success closed an open circuit.
    pub fn success(&self, permit: Permit) -> bool {
        self.consecutive_failures.store(0, Ordering::Release);
        if permit == Permit::Probe {
            self.probing.store(false, Ordering::Release);
        }
        self.open_until_ms.swap(0, Ordering::AcqRel) != 0
    }

    /// Returns true when the circuit is (now) open.
    pub fn failure(&self, permit: Permit) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let open = permit == Permit::Probe || failures >= self.threshold;
        if open {
            let cooldown = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX);
            self.open_until_ms.store(self.now_ms().saturating_add(cooldown), Ordering::Release);
        }
        if permit == Permit::Probe {
            self.probing.store(false, Ordering::Release);
        }
        open
    }

    /// Open, and no probe allowed yet.
    pub fn in_cooldown(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        until != 0 && self.now_ms() < until
    }

    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(failures: u32) -> NonZeroU32 {
        NonZeroU32::new(failures).unwrap_or(NonZeroU32::MIN)
    }

    #[test]
    fn opens_after_the_threshold_and_closes_after_a_successful_probe() {
        let b = Breaker::new(after(2), Duration::ZERO);
        assert_eq!(b.permit(), Permit::Go);
        assert!(!b.failure(Permit::Go), "one failure is not an outage");
        assert_eq!(b.permit(), Permit::Go);
        assert!(b.failure(Permit::Go));
        assert!(b.is_open());
        // Cool-down of zero: the next caller is the probe, the one after waits.
        let probe = b.permit();
        assert_eq!(probe, Permit::Probe);
        assert_eq!(b.permit(), Permit::Deny);
        assert!(b.success(probe));
        assert_eq!(b.permit(), Permit::Go);
        assert!(!b.success(Permit::Go));
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(after(2), Duration::from_secs(3600));
        b.failure(Permit::Go);
        b.success(Permit::Go);
        b.failure(Permit::Go);
        assert_eq!(b.permit(), Permit::Go);
    }

    #[test]
    fn stays_open_during_the_cooldown() {
        let b = Breaker::new(after(1), Duration::from_secs(3600));
        b.failure(Permit::Go);
        assert_eq!(b.permit(), Permit::Deny);
    }

    #[test]
    fn a_failed_probe_reopens_at_once() {
        let b = Breaker::new(after(5), Duration::ZERO);
        for _ in 0..5 {
            b.failure(Permit::Go);
        }
        let probe = b.permit();
        assert_eq!(probe, Permit::Probe);
        assert!(b.failure(probe));
        assert!(b.is_open());
        assert_eq!(b.permit(), Permit::Probe);
    }
}
