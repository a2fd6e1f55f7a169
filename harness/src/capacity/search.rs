//! The search for the knee: bracket it by doubling or halving the rate, then bisect the bracket until
//! it is as narrow as asked. Pure arithmetic over what each rate did, so it is tested without a lab.

use serde::Serialize;

/// How far below the first rate the search halves before it says no rate holds.
const FLOOR_DIVISOR: f64 = 64.0;
/// A search that has not narrowed its bracket in this many rates stops where it is.
pub const MAX_RATES: usize = 24;

/// Where the knee lies, as far as the search found it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "bound", rename_all = "snake_case")]
pub enum Found {
    /// `held` held the objective and `broke` did not: the capacity is `held`, within the bracket.
    Between { held: f64, broke: f64 },
    /// Every rate up to the ceiling held: the capacity is at least `held`.
    AtLeast { held: f64 },
    /// Down to `broke`, no rate held.
    Below { broke: f64 },
    /// This machine could not offer `at` (the generator's own lag, or connections the port
    /// forwarding into the lab dropped): the search closed in on it from below, the service held
    /// `held` (0 when no rate was held), and what it holds beyond that is unknown.
    GeneratorBound { held: f64, at: f64 },
    /// The search tried its most rates without narrowing the bracket (the service's knee moves).
    Unsettled { held: f64, broke: f64 },
    /// The search stopped as soon as every prediction that needs it was decided (the gate asks no
    /// more): the capacity is at least `held` (0 when no rate held yet) and below `broke` (when a
    /// rate broke yet).
    Decided { held: f64, broke: Option<f64> },
}

impl Found {
    /// The capacity the search can vouch for: the highest rate that held (0 when none did).
    pub fn capacity(self) -> f64 {
        match self {
            Self::Between { held, .. }
            | Self::AtLeast { held }
            | Self::GeneratorBound { held, .. }
            | Self::Unsettled { held, .. }
            | Self::Decided { held, .. } => held,
            Self::Below { .. } => 0.0,
        }
    }

    /// Where the capacity lies, as far as the search can vouch: one rate for a knee found (the
    /// highest that held) or for nothing holding (0), a range for a bound.
    pub fn range(self) -> (f64, f64) {
        match self {
            Self::Between { held, .. } => (held, held),
            Self::Below { .. } => (0.0, 0.0),
            Self::AtLeast { held } | Self::GeneratorBound { held, .. } => (held, f64::INFINITY),
            Self::Unsettled { held, broke } => (held, broke),
            Self::Decided { held, broke } => (held, broke.unwrap_or(f64::INFINITY)),
        }
    }

    /// Whether `capacity` is a measurement a prediction can be judged on: a knee found, or no rate
    /// holding down to the floor (the fault takes practically all of it: capacity 0, within the
    /// floor). A ceiling, the generator's limit or a bracket that never settled leave it unknown.
    pub fn conclusive(self) -> bool {
        matches!(self, Self::Between { .. } | Self::Below { .. })
    }

    /// Why the capacity is not a measurement of the service's knee, when it is not.
    pub fn caveat(self) -> Option<String> {
        match self {
            Self::Between { .. } => None,
            Self::AtLeast { held } => Some(format!(
                "every rate up to the ceiling held: the capacity is at least {held:.1}/s (raise capacity.max_rate)"
            )),
            Self::Below { broke } => Some(format!("no rate held, down to {broke:.2}/s")),
            Self::GeneratorBound { held, at } => Some(format!(
                "this machine could not offer {at:.1}/s (the load generator fell behind its schedule, or the port forwarding into the lab dropped connections), and the service held {held:.1}/s"
            )),
            Self::Unsettled { held, broke } => Some(format!(
                "the bracket {held:.1} to {broke:.1}/s did not narrow in {MAX_RATES} rates"
            )),
            Self::Decided { held, broke } => Some(format!(
                "the search stopped once its predictions were decided: the capacity is at least {held:.1}/s{}",
                broke.map_or_else(String::new, |b| format!(" and below {b:.1}/s"))
            )),
        }
    }
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Between { held, broke } => write!(f, "{held:.1}/s (held; {broke:.1}/s did not)"),
            other => write!(
                f,
                "{:.1}/s ({})",
                other.capacity(),
                other.caveat().unwrap_or_default()
            ),
        }
    }
}

/// A search in progress: the highest rate that held, the lowest that broke.
#[derive(Debug, Clone)]
pub struct Search {
    from: f64,
    max_rate: f64,
    resolution: f64,
    held: Option<f64>,
    broke: Option<f64>,
    rates: usize,
    generator_bound: Option<f64>,
}

impl Search {
    /// A search that starts at `from`, never tries above `max_rate`, and ends when the bracket is
    /// narrower than `resolution` (a fraction of the rate that held).
    pub fn new(from: f64, max_rate: f64, resolution: f64) -> Self {
        Self {
            from: from.min(max_rate),
            max_rate,
            resolution,
            held: None,
            broke: None,
            rates: 0,
            generator_bound: None,
        }
    }

    /// The next rate to try, or where the knee is. A rate the generator could not offer caps the
    /// search as a break would: the search goes on below it, and when its bracket closes on that
    /// rate rather than on one the service broke, the capacity is a bound.
    pub fn next(&self) -> Result<f64, Found> {
        let floor = self.from / FLOOR_DIVISOR;
        let top = match (self.broke, self.generator_bound) {
            (Some(broke), Some(at)) => Some(broke.min(at)),
            (broke, at) => broke.or(at),
        };
        let service_broke = |top: f64| self.broke == Some(top);
        let bound = |held: f64, at: f64| Err(Found::GeneratorBound { held, at });
        match (self.held, top) {
            (None, None) => Ok(self.from),
            (Some(held), None) if held >= self.max_rate => Err(Found::AtLeast { held }),
            (None, Some(top)) if top <= floor && service_broke(top) => Err(Found::Below { broke: top }),
            (None, Some(top)) if top <= floor => bound(0.0, top),
            (Some(held), Some(top)) if (top - held) <= self.resolution * held => {
                if service_broke(top) {
                    Err(Found::Between { held, broke: top })
                } else {
                    bound(held, top)
                }
            }
            (Some(held), Some(top)) if self.rates >= MAX_RATES && service_broke(top) => {
                Err(Found::Unsettled { held, broke: top })
            }
            (Some(held), Some(top)) if self.rates >= MAX_RATES => bound(held, top),
            (Some(held), None) => Ok((held * 2.0).min(self.max_rate)),
            (None, Some(top)) => Ok((top / 2.0).max(floor)),
            (Some(held), Some(top)) => Ok((held + top) / 2.0),
        }
    }

    /// What `rate` did, decided (repeats included).
    pub fn record(&mut self, rate: f64, held: bool) {
        self.rates += 1;
        if held {
            self.held = Some(self.held.map_or(rate, |h| h.max(rate)));
        } else {
            self.broke = Some(self.broke.map_or(rate, |b| b.min(rate)));
        }
    }

    /// Where the search stands now, as a finding: between the highest rate that held and the
    /// lowest the service broke at, either of them still open.
    pub fn so_far(&self) -> Found {
        Found::Decided {
            held: self.held.unwrap_or(0.0),
            broke: self.broke,
        }
    }

    /// Whether a rate has held and a higher one broken: the knee lies between them.
    pub fn bracketed(&self) -> bool {
        self.held.is_some() && self.broke.is_some()
    }

    /// The load generator could not offer `rate` (or this machine could not carry it into the lab).
    pub fn generator_bound(&mut self, rate: f64) {
        self.rates += 1;
        self.generator_bound = Some(self.generator_bound.map_or(rate, |at| at.min(rate)));
    }
}

/// Whether trials of one rate have decided it: the majority of `repeats` agreeing. `None` while it
/// is open.
pub fn decided(trials: &[bool], repeats: u32) -> Option<bool> {
    let need = repeats as usize / 2 + 1;
    let held = trials.iter().filter(|&&h| h).count();
    let broke = trials.len() - held;
    if held >= need {
        Some(true)
    } else if broke >= need {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a search against a service whose knee is `knee`.
    fn search(knee: f64, from: f64, max_rate: f64) -> (Found, usize) {
        let mut search = Search::new(from, max_rate, 0.1);
        let mut tried = 0;
        loop {
            match search.next() {
                Ok(rate) => {
                    tried += 1;
                    search.record(rate, rate <= knee);
                }
                Err(found) => return (found, tried),
            }
        }
    }

    #[test]
    fn the_knee_is_found_within_the_resolution_from_either_side() {
        for (knee, from) in [(22.2, 80.0), (22.2, 5.0), (300.0, 80.0), (1.0, 40.0)] {
            let (found, tried) = search(knee, from, 10_000.0);
            let Found::Between { held, broke } = found else {
                panic!("knee {knee} from {from}: {found:?}");
            };
            assert!(held <= knee && knee < broke, "{held} {knee} {broke}");
            assert!(broke - held <= 0.1 * held, "{held} {broke}");
            assert!(knee - held <= 0.1 * knee, "capacity {held} of {knee}");
            assert!(tried <= 12, "{tried} rates for knee {knee} from {from}");
        }
    }

    #[test]
    fn a_search_says_when_it_hit_the_ceiling_the_floor_or_the_generator() {
        assert_eq!(search(500.0, 10.0, 100.0).0, Found::AtLeast { held: 100.0 });
        let (below, _) = search(0.01, 64.0, 1000.0);
        assert!(
            matches!(below, Found::Below { broke } if broke <= 1.0),
            "{below:?}"
        );
        assert_eq!(below.capacity(), 0.0);
        assert!(below.conclusive() && !Found::AtLeast { held: 1.0 }.conclusive());
        // A generator that cannot offer 40/s, in front of a service whose knee is 22.2: the search
        // goes on below 40 and finds the service's knee.
        let mut s = Search::new(10.0, 1000.0, 0.1);
        let found = loop {
            match s.next() {
                Ok(rate) if rate >= 40.0 => s.generator_bound(rate),
                Ok(rate) => s.record(rate, rate <= 22.2),
                Err(found) => break found,
            }
        };
        assert!(
            matches!(found, Found::Between { held, broke } if held <= 22.2 && broke > 22.2),
            "{found:?}"
        );
        // One that cannot offer 15/s: the capacity is a bound, below the generator's limit.
        let mut s = Search::new(10.0, 1000.0, 0.1);
        let found = loop {
            match s.next() {
                Ok(rate) if rate >= 15.0 => s.generator_bound(rate),
                Ok(rate) => s.record(rate, rate <= 22.2),
                Err(found) => break found,
            }
        };
        let Found::GeneratorBound { held, at } = found else {
            panic!("{found:?}");
        };
        assert!(
            held < 15.0 && at >= 15.0 && at - held <= 0.1 * held,
            "{held} {at}"
        );
        assert!(!found.conclusive() && found.caveat().is_some());
    }

    #[test]
    fn the_majority_of_the_repeats_decides_a_rate() {
        assert_eq!(decided(&[true], 1), Some(true));
        assert_eq!(decided(&[true], 3), None);
        assert_eq!(decided(&[true, false], 3), None);
        assert_eq!(decided(&[true, false, false], 3), Some(false));
        assert_eq!(decided(&[true, true], 3), Some(true));
    }
}
