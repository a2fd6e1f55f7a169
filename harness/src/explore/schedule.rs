//! A fault schedule (some faults, held together over one window of a short load) and its shrinking:
//! delta debugging toward the smallest schedule that still breaks what it broke. Fewer faults first,
//! then a shorter window, then a later start. The search is pure: `Shrink` proposes the next smaller
//! schedule and is told whether it still breaks, so it is tested against a fake oracle.

use std::collections::VecDeque;

use serde::Serialize;

use crate::faults::Fault;

/// The shortest window a shrink goes down to, in seconds.
const MIN_SECONDS: f64 = 1.0;

/// Faults injected `at_s` seconds into a trial's load and reverted together `seconds` later: the
/// first at `at_s`, the others `lead_s` after it (0: all at once).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    #[serde(serialize_with = "named")]
    pub faults: Vec<Fault>,
    pub at_s: f64,
    pub seconds: f64,
    pub lead_s: f64,
}

fn named<S: serde::Serializer>(faults: &[Fault], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(faults.iter().map(ToString::to_string))
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.faults.is_empty() {
            return f.write_str("no fault");
        }
        let faults: Vec<String> = self.faults.iter().map(ToString::to_string).collect();
        if let (true, [first, rest @ ..]) = (self.lead_s > 0.0, faults.as_slice()) {
            return write!(
                f,
                "{first} at {} s for {} s, {} from {} s",
                self.at_s,
                self.seconds,
                rest.join(" + "),
                self.at_s + self.lead_s
            );
        }
        write!(
            f,
            "{} at {} s for {} s",
            faults.join(" + "),
            self.at_s,
            self.seconds
        )
    }
}

impl Schedule {
    /// `faults` at `at_s` for `seconds`, staggered when they are a slow fault and a failure (the
    /// slow one first, leading by half the window; `lead`).
    pub fn new(faults: Vec<Fault>, at_s: f64, seconds: f64) -> Self {
        let lead_s = lead(&faults, seconds);
        Self {
            faults,
            at_s,
            seconds,
            lead_s,
        }
    }

    /// The faults that start at `at_s`, and those that join them `lead_s` later.
    pub fn waves(&self) -> (&[Fault], &[Fault]) {
        match self.lead_s > 0.0 && !self.faults.is_empty() {
            true => self.faults.split_at(1),
            false => (&self.faults, &[]),
        }
    }

    /// The schedules one step smaller than this one, simplest first: each with one fault fewer, the
    /// window halved, the window started half its length later (while it still ends by `end_s`).
    pub fn smaller(&self, end_s: f64) -> Vec<Schedule> {
        let mut smaller = Vec::new();
        if self.faults.len() > 1 {
            for i in 0..self.faults.len() {
                let mut faults = self.faults.clone();
                faults.remove(i);
                // What is left keeps the instants it had: a fault that joined late still does.
                let late = i == 0 && self.lead_s > 0.0;
                smaller.push(Schedule {
                    faults,
                    at_s: self.at_s + if late { self.lead_s } else { 0.0 },
                    seconds: self.seconds - if late { self.lead_s } else { 0.0 },
                    lead_s: 0.0,
                });
            }
        }
        let half = (self.seconds / 2.0).floor().max(MIN_SECONDS);
        if half < self.seconds {
            smaller.push(Schedule {
                seconds: half,
                lead_s: self.lead_s * half / self.seconds,
                ..self.clone()
            });
        }
        let later = self.at_s + (self.seconds / 2.0).floor().max(MIN_SECONDS);
        if later + self.seconds <= end_s {
            smaller.push(Schedule {
                at_s: later,
                ..self.clone()
            });
        }
        smaller
    }
}

/// How long the first of `faults` leads: half the window when they are two, the first slows a link
/// and the second fails something. A slow call holds open whatever waits on it (a transaction
/// around an SMTP conversation, a checkout around the provider), and a failure that lands while it
/// is held meets all of that work in flight: a side effect done, its commit lost. Faults that start
/// together meet only the few milliseconds' worth in flight at their instant. `pairs` puts the slow
/// one first.
pub fn lead(faults: &[Fault], seconds: f64) -> f64 {
    match faults {
        [first, second] if first.slows() && !second.slows() => (seconds / 2.0).floor().max(0.5),
        _ => 0.0,
    }
}

/// Delta debugging of one breaking schedule: try each smaller one in turn; the first that still
/// breaks becomes the schedule, and its own smaller ones are tried next. Done when none does.
#[derive(Debug)]
pub struct Shrink {
    smallest: Schedule,
    pending: VecDeque<Schedule>,
    end_s: f64,
    /// Schedules tried, and how many of them still broke.
    pub tried: usize,
    pub accepted: usize,
}

impl Shrink {
    pub fn new(breaking: Schedule, end_s: f64) -> Self {
        let pending = breaking.smaller(end_s).into();
        Self {
            smallest: breaking,
            pending,
            end_s,
            tried: 0,
            accepted: 0,
        }
    }

    /// The next schedule to try; `None` once no smaller one breaks.
    pub fn next(&self) -> Option<&Schedule> {
        self.pending.front()
    }

    /// Whether the schedule `next` gave still broke.
    pub fn record(&mut self, still_breaks: bool) {
        let Some(tried) = self.pending.pop_front() else {
            return;
        };
        self.tried += 1;
        if still_breaks {
            self.accepted += 1;
            self.pending = tried.smaller(self.end_s).into();
            self.smallest = tried;
        }
    }

    /// The smallest schedule found to break so far.
    pub fn smallest(&self) -> &Schedule {
        &self.smallest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::proxy::{NetworkFault, ScopedFault};
    use crate::vocabulary::{Link, Role};

    fn shrunk(start: Schedule, breaks: impl Fn(&Schedule) -> bool) -> (Schedule, usize) {
        let mut shrink = Shrink::new(start, 10.0);
        while let Some(next) = shrink.next() {
            let verdict = breaks(next);
            shrink.record(verdict);
        }
        (shrink.smallest().clone(), shrink.tried)
    }

    #[test]
    fn a_harmless_extra_fault_is_dropped_and_the_window_shrinks_to_what_still_breaks() {
        let kill = Fault::Kill(Role::Postgres);
        let latency = Fault::Network {
            link: Link::Redis,
            fault: ScopedFault::from(NetworkFault::Latency {
                ms: 500.0,
                jitter_ms: 0.0,
            }),
        };
        let start = Schedule {
            faults: vec![latency, kill.clone()],
            at_s: 2.0,
            seconds: 4.0,
            lead_s: 0.0,
        };
        // Breaks whenever Postgres is killed and the load runs on at least 2 s after the kill.
        let (smallest, tried) = shrunk(start, |s| s.faults.contains(&kill) && s.at_s <= 8.0);
        assert_eq!(smallest.faults, vec![kill]);
        assert_eq!(smallest.seconds, 1.0);
        assert!(smallest.at_s > 2.0 && smallest.at_s <= 8.0, "{smallest}");
        assert!(tried < 20, "{tried} tries");
    }

    #[test]
    fn a_schedule_nothing_smaller_breaks_stays_as_it_was() {
        let start = Schedule::new(vec![Fault::Pause(Role::Redis)], 2.0, 4.0);
        let (smallest, tried) = shrunk(start.clone(), |s| *s == start);
        assert_eq!(smallest, start);
        assert_eq!(tried, 2, "half as long, then later: both tried once");
        assert_eq!(start.to_string(), "pause redis at 2 s for 4 s");
    }

    #[test]
    fn a_slow_fault_leads_a_failure_by_half_the_window_and_the_failure_alone_keeps_its_instant() {
        let slow = Fault::Network {
            link: Link::Mail,
            fault: ScopedFault::from(NetworkFault::Latency {
                ms: 100.0,
                jitter_ms: 0.0,
            }),
        };
        let down = Fault::Network {
            link: Link::Postgres,
            fault: ScopedFault::from(NetworkFault::Down),
        };
        let staggered = Schedule::new(vec![slow.clone(), down.clone()], 2.0, 4.0);
        assert_eq!(staggered.lead_s, 2.0);
        assert_eq!(staggered.waves(), (&[slow.clone()][..], &[down.clone()][..]));
        assert_eq!(
            staggered.to_string(),
            "latency 100ms on the mail link at 2 s for 4 s, down on the postgres link from 4 s"
        );
        let together = [down.clone(), slow.clone()];
        assert_eq!(
            Schedule::new(together.to_vec(), 2.0, 4.0).lead_s,
            0.0,
            "failure first: together"
        );
        let slower = [slow.clone(), slow.clone()];
        assert_eq!(
            Schedule::new(slower.to_vec(), 2.0, 4.0).lead_s,
            0.0,
            "nothing fails"
        );
        let smaller = staggered.smaller(10.0);
        let alone = |fault: &Fault| smaller.iter().find(|s| s.faults == [fault.clone()]).unwrap();
        assert_eq!(
            (alone(&down).at_s, alone(&down).seconds, alone(&down).lead_s),
            (4.0, 2.0, 0.0)
        );
        assert_eq!((alone(&slow).at_s, alone(&slow).seconds), (2.0, 4.0));
        let halved = smaller
            .iter()
            .find(|s| s.faults.len() == 2 && s.seconds == 2.0)
            .unwrap();
        assert_eq!(halved.lead_s, 1.0, "the lead shrinks with the window");
    }
}
