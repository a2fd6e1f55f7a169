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

    /// A call to the dependency, if one may go now: moves Open to HalfOpen once the cool-down has
    /// passed, and then admits exactly one caller (the probe) until it reports back. The caller
    /// reports the outcome on the returned `Call`; a call dropped without a report (its request was
    /// cancelled mid-flight) is no outcome, and a probe dropped so opens the breaker again, or it
    /// would skip the dependency forever.
    pub fn allow(&self) -> Option<Call<'_>> {
        let mut inner = self.lock();
        let probe = match inner.state {
            BreakerState::Closed => false,
            BreakerState::HalfOpen => return None,
            BreakerState::Open if inner.opened_at.elapsed() >= self.cool_down => {
                inner.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open => return None,
        };
        Some(Call {
            breaker: self,
            probe,
            reported: false,
        })
    }

    fn record_success(&self) {
        let mut inner = self.lock();
        inner.state = BreakerState::Closed;
        inner.consecutive_failures = 0;
    }

    fn record_failure(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        if inner.state == BreakerState::HalfOpen || inner.consecutive_failures >= self.failure_threshold {
            inner.state = BreakerState::Open;
            inner.opened_at = Instant::now();
        }
    }

    /// A probe that never reported: back to Open, so another goes after the cool-down.
    fn abandon_probe(&self) {
        let mut inner = self.lock();
        if inner.state == BreakerState::HalfOpen {
            inner.state = BreakerState::Open;
            inner.opened_at = Instant::now();
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }
}

/// One call the breaker let through; report how it went with `succeeded` or `failed`.
#[must_use = "report the call's outcome, or a probe is counted as abandoned"]
#[derive(Debug)]
pub struct Call<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl Call<'_> {
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.record_success();
    }

    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.record_failure();
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(breaker: &CircuitBreaker) {
        breaker.allow().expect("the call is let through").failed();
    }

    #[test]
    fn opens_after_the_threshold_and_skips_calls() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.allow().is_none());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(60));
        fail(&breaker);
        breaker.allow().unwrap().succeeded();
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_admits_one_probe_and_closes_on_success() {
        let breaker = CircuitBreaker::new(1, Duration::ZERO);
        fail(&breaker);
        let probe = breaker
            .allow()
            .expect("cool-down of zero: the probe goes through");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.allow().is_none(), "only one probe at a time");
        probe.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let breaker = CircuitBreaker::new(5, Duration::ZERO);
        for _ in 0..5 {
            fail(&breaker);
        }
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    /// A request cancelled while its probe was in flight (the client went away) reports nothing; the
    /// breaker must not wait for that report forever. Seen in a capacity search: the defended
    /// service never asked the dead Redis again for 50 s.
    #[test]
    fn an_abandoned_probe_lets_another_through_after_the_cool_down() {
        let breaker = CircuitBreaker::new(1, Duration::ZERO);
        fail(&breaker);
        drop(breaker.allow().expect("the probe goes through"));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.allow().is_some(), "a new probe after the cool-down");
    }

    #[test]
    fn an_abandoned_call_while_closed_is_no_outcome() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(60));
        fail(&breaker);
        drop(breaker.allow().unwrap());
        fail(&breaker);
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "two failures, the dropped call not counted"
        );
    }
}
