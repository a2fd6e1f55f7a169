//! A circuit breaker for the calls to a dependency (Redis, the payment provider): after a run of
//! failures it stops calling it for a while, then lets one probe through to find out whether it is
//! back.
//!
//! Hand-written because it is the defence this service exists to demonstrate: its states are exported
//! as a metric and its thresholds must be visible to the experiments that judge it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the breaker currently does with calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are being counted.
    Closed,
    /// Calls are skipped until the cool-down ends.
    Open,
    /// The cool-down ended; one probe call is in flight, the rest are skipped.
    HalfOpen,
}

impl BreakerState {
    /// The value of a breaker's state gauge (`fortress_cache_breaker_state`).
    pub fn as_gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Instant,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    inner: Mutex<Inner>,
    failure_threshold: u32,
    cool_down: Duration,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, cool_down: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: Instant::now(),
            }),
            failure_threshold: failure_threshold.max(1),
            cool_down,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a call may go to the dependency now. Moves Open to HalfOpen once the cool-down has passed, and
    /// then admits exactly one caller (the probe) until it reports back.
    pub fn allow(&self) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => false,
            BreakerState::Open if inner.opened_at.elapsed() >= self.cool_down => {
                inner.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open => false,
        }
    }

    pub fn record_success(&self) {
        let mut inner = self.lock();
        inner.state = BreakerState::Closed;
        inner.consecutive_failures = 0;
    }

    pub fn record_failure(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        if inner.state == BreakerState::HalfOpen || inner.consecutive_failures >= self.failure_threshold {
            inner.state = BreakerState::Open;
            inner.opened_at = Instant::now();
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_skips_calls() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            assert!(breaker.allow());
            breaker.record_failure();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.allow());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(60));
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_admits_one_probe_and_closes_on_success() {
        let breaker = CircuitBreaker::new(1, Duration::ZERO);
        breaker.record_failure();
        assert!(breaker.allow(), "cool-down of zero: the probe goes through");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(!breaker.allow(), "only one probe at a time");
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let breaker = CircuitBreaker::new(5, Duration::ZERO);
        for _ in 0..5 {
            breaker.record_failure();
        }
        assert!(breaker.allow());
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
