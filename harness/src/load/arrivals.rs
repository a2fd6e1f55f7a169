//! The arrival schedule that paces a run: the n-th request, whichever user sends it, may leave at
//! `first + n / rate`.
//!
//! Goose's own throttle (`throttle_requests`) frees a token after each sleep of `1 s / rate` on tokio's
//! millisecond timer; every sleep ends on the next tick, the lateness piles up, and asked for 150
//! requests/s it let 127 to 129 through, second after second, on this machine. Slots on an absolute
//! schedule do not drift: one may leave up to a tick late, but that does not move the next.
//!
//! A user waits for its slot, sends, reads the answer, then takes the next free slot. When the service
//! stalls and every user is waiting on it, the slots fall behind; the users take the missed ones as soon
//! as they are free, as the requests that arrived during the stall would have been, and the run keeps
//! its offered count. Each request's latency is counted from its slot (`Slot::due`), not from when a
//! user got round to it, so the wait behind the stall is in the figures, as it is for a real client.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub(super) struct Arrivals {
    rate: f64,
    first: OnceLock<Instant>,
    next: AtomicU64,
}

impl Arrivals {
    /// `rate`: requests per second, above 0 (checked with the load spec).
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            first: OnceLock::new(),
            next: AtomicU64::new(0),
        }
    }

    /// Waits for the next free slot (at once if it is already past) and answers it; `None` when
    /// `end` closes the schedule first.
    pub async fn take_slot(&self, end: &CancellationToken) -> Option<Slot> {
        if end.is_cancelled() {
            return None;
        }
        let slot = self.claim();
        tokio::select! {
            () = tokio::time::sleep_until(slot.due.into()) => Some(slot),
            () = end.cancelled() => None,
        }
    }

    /// Claims the next free slot; the first claim starts the schedule.
    fn claim(&self) -> Slot {
        let claimed = Instant::now();
        let first = *self.first.get_or_init(|| claimed);
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Slot {
            n,
            due: first + Duration::from_secs_f64(n as f64 / self.rate),
            claimed,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// One request's place on the schedule.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Its number: slot 0 starts the schedule.
    pub n: u64,
    /// When it was due to leave.
    pub due: Instant,
    /// When a user came for it: after `due` when every user was busy until then.
    pub claimed: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_one_over_the_rate_apart_whoever_claims_them() {
        let arrivals = Arrivals::new(150.0);
        let mut slots: Vec<Instant> = std::thread::scope(|scope| {
            let users: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..75).map(|_| arrivals.claim().due).collect::<Vec<_>>()))
                .collect();
            users.into_iter().flat_map(|u| u.join().unwrap()).collect()
        });
        slots.sort();
        let first = slots[0];
        for (n, slot) in slots.iter().enumerate() {
            let expected = Duration::from_secs_f64(n as f64 / 150.0);
            let off = (*slot - first).abs_diff(expected);
            assert!(off < Duration::from_micros(1), "slot {n}: {:?}", *slot - first);
        }
    }
}
