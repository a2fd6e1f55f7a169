//! The timing attacker's answer: from response times alone, can one tell a wrong password for an
//! account that exists from one for an email nobody has?
//!
//! Two figures, both from the probes' single latencies (the recorder keeps each one):
//! - the accuracy of a threshold classifier trained on half of the probes (every other one, in the
//!   order they completed) and tested on the other half: 1.0 when one response time gives the answer
//!   away, 0.5 when it says nothing. Balanced (the mean of each class's share answered right), so an
//!   uneven split cannot pass for skill;
//! - the two-sided p-value of a Mann-Whitney U test (rank-based, so a few slow outliers on a noisy
//!   machine weigh no more than any other answer) that the two sets of times come from one distribution.

use serde::{Deserialize, Serialize};

/// The probes' latencies, in microseconds, in the order they completed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probes {
    /// Wrong passwords for seeded emails.
    pub known_us: Vec<u64>,
    /// Wrong passwords for emails nobody has.
    pub unknown_us: Vec<u64>,
}

/// The rank test's level for "no leak" verdicts, and the power asked of it (`detectable_ms`):
/// z(1 - 0.01 / 2) and z(0.8) of the standard normal.
const Z_HALF_ALPHA: f64 = 2.575_829;
const Z_POWER: f64 = 0.841_621;

/// A standard deviation read from the median absolute deviation (x 1.4826, its ratio on normal data).
fn robust_sigma(samples: &[u64]) -> f64 {
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        if values.len().is_multiple_of(2) {
            (values[mid - 1] + values[mid]) / 2.0
        } else {
            values[mid]
        }
    };
    let mut values: Vec<f64> = samples.iter().map(|&v| v as f64).collect();
    let center = median(&mut values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    1.4826 * median(&mut deviations)
}

/// A classifier: "the account exists" when the latency is above `at` (or below, when `known_slower`
/// is false).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Threshold {
    at: u64,
    known_slower: bool,
}

impl Threshold {
    fn says_known(self, latency: u64) -> bool {
        (latency > self.at) == self.known_slower
    }

    /// The mean of the share of each class it answers right.
    fn balanced_accuracy(self, known: &[u64], unknown: &[u64]) -> f64 {
        let right = |samples: &[u64], is_known: bool| {
            samples
                .iter()
                .filter(|&&l| self.says_known(l) == is_known)
                .count() as f64
                / samples.len() as f64
        };
        (right(known, true) + right(unknown, false)) / 2.0
    }
}

/// Every other sample, starting at `first` (0 or 1).
fn half(samples: &[u64], first: usize) -> Vec<u64> {
    samples.iter().skip(first).step_by(2).copied().collect()
}

/// The threshold and direction that answer the training samples best.
fn train(known: &[u64], unknown: &[u64]) -> Threshold {
    let mut candidates: Vec<u64> = known.iter().chain(unknown).copied().collect();
    candidates.sort_unstable();
    candidates.dedup();
    let mut best = (
        Threshold {
            at: 0,
            known_slower: true,
        },
        f64::MIN,
    );
    for at in candidates {
        for known_slower in [true, false] {
            let threshold = Threshold { at, known_slower };
            let accuracy = threshold.balanced_accuracy(known, unknown);
            if accuracy > best.1 {
                best = (threshold, accuracy);
            }
        }
    }
    best.0
}

impl Probes {
    /// What the attacker learns, and the smallest leak it could have learnt, as metrics of the whole
    /// run (none from too few probes).
    pub fn figures(&self) -> Vec<(crate::vocabulary::Metric, f64)> {
        use crate::vocabulary::Metric;
        let accuracy = self.classifier_accuracy().map(|a| (Metric::TimingAccuracy, a));
        let p = self.mann_whitney_p().map(|p| (Metric::TimingPValue, p));
        let detectable = self.detectable_ms().map(|d| (Metric::TimingDetectableMs, d));
        accuracy.into_iter().chain(p).chain(detectable).collect()
    }

    /// The smallest difference between the two kinds' typical times, in milliseconds, that the rank
    /// test on these probes would find at the 1% level four times in five: what a verdict of
    /// "no leak" could have seen. For a shift of `d` in data spread `sigma`, a two-sample test needs
    /// `d = (z(1 - alpha/2) + z(power)) * sigma * sqrt(1/n1 + 1/n2)` (`Z_HALF_ALPHA`, `Z_POWER`); the
    /// rank test is as efficient as a t-test to a factor of 3/pi on normal data (its asymptotic
    /// relative efficiency), so `d` grows by `sqrt(pi/3)`. The spread is each kind's own (median absolute deviation, scaled to a
    /// standard deviation, so a few stalls of the machine do not inflate it), pooled.
    pub fn detectable_ms(&self) -> Option<f64> {
        if !self.usable() {
            return None;
        }
        let (nk, nu) = (self.known_us.len() as f64, self.unknown_us.len() as f64);
        let (sk, su) = (robust_sigma(&self.known_us), robust_sigma(&self.unknown_us));
        let pooled = ((sk * sk * (nk - 1.0) + su * su * (nu - 1.0)) / (nk + nu - 2.0)).sqrt();
        let z = Z_HALF_ALPHA + Z_POWER;
        let efficiency = (3.0 / std::f64::consts::PI).sqrt();
        Some(z * pooled * (1.0 / nk + 1.0 / nu).sqrt() / efficiency / 1000.0)
    }

    /// Whether there are enough probes of each kind to train and test: four of each at least (two
    /// to train on, two to test).
    pub fn usable(&self) -> bool {
        self.known_us.len() >= 4 && self.unknown_us.len() >= 4
    }

    /// The classifier's balanced accuracy on the half of the probes it was not trained on.
    pub fn classifier_accuracy(&self) -> Option<f64> {
        if !self.usable() {
            return None;
        }
        let threshold = train(&half(&self.known_us, 0), &half(&self.unknown_us, 0));
        Some(threshold.balanced_accuracy(&half(&self.known_us, 1), &half(&self.unknown_us, 1)))
    }

    /// The two-sided p-value of the Mann-Whitney U test (normal approximation, ties corrected).
    pub fn mann_whitney_p(&self) -> Option<f64> {
        if !self.usable() {
            return None;
        }
        let (nk, nu) = (self.known_us.len() as f64, self.unknown_us.len() as f64);
        let n = nk + nu;
        let (known_ranks, tie_term) = rank_sum(&self.known_us, &self.unknown_us);
        let u = known_ranks - nk * (nk + 1.0) / 2.0;
        let mean = nk * nu / 2.0;
        let variance = nk * nu / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
        if variance <= 0.0 {
            return Some(1.0); // every latency the same: nothing tells them apart
        }
        let z = ((u - mean).abs() - 0.5).max(0.0) / variance.sqrt();
        Some(libm::erfc(z / std::f64::consts::SQRT_2))
    }
}

/// The sum of the ranks of `first`'s values among both sets (ties get their average rank), and the
/// ties' correction term, the sum over groups of equal values of `t^3 - t`.
fn rank_sum(first: &[u64], second: &[u64]) -> (f64, f64) {
    let mut all: Vec<(u64, bool)> = first
        .iter()
        .map(|&v| (v, true))
        .chain(second.iter().map(|&v| (v, false)))
        .collect();
    all.sort_unstable_by_key(|&(v, _)| v);
    let (mut sum, mut ties, mut i) = (0.0, 0.0, 0);
    while i < all.len() {
        let end = i + all[i..].iter().take_while(|(v, _)| *v == all[i].0).count();
        let average_rank = (i + 1 + end) as f64 / 2.0;
        let in_first = all[i..end].iter().filter(|(_, f)| *f).count() as f64;
        sum += average_rank * in_first;
        let t = (end - i) as f64;
        ties += t * t * t - t;
        i = end;
    }
    (sum, ties)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of `n` latencies around `centre` microseconds, +/- `spread`.
    fn around(centre: u64, spread: u64, n: usize, seed: u64) -> Vec<u64> {
        (0..n as u64)
            .map(|i| centre - spread + (i * 7919 + seed * 104_729) % (2 * spread + 1))
            .collect()
    }

    #[test]
    fn a_login_that_skips_the_hash_gives_the_account_away() {
        // Wrong password: ~20 ms of argon2; unknown email: ~1.5 ms.
        let probes = Probes {
            known_us: around(20_000, 3_000, 200, 1),
            unknown_us: around(1_500, 400, 200, 2),
        };
        assert_eq!(probes.classifier_accuracy(), Some(1.0));
        assert!(probes.mann_whitney_p().unwrap() < 1e-12);
    }

    #[test]
    fn a_verdict_of_no_leak_says_what_it_could_have_seen() {
        let same = |n, spread| Probes {
            known_us: around(20_000, spread, n, 3),
            unknown_us: around(20_000, spread, n, 4),
        };
        let many = same(300, 3_000).detectable_ms().unwrap();
        assert!(
            (0.3..1.5).contains(&many),
            "{many} ms from 300 probes of each kind"
        );
        // A shift twice that size is found by the test on the same number of probes.
        let shift = (2.0 * many * 1000.0) as u64;
        let leaky = Probes {
            known_us: around(20_000 + shift, 3_000, 300, 3),
            unknown_us: around(20_000, 3_000, 300, 4),
        };
        assert!(leaky.mann_whitney_p().unwrap() < 0.01);
        // Four probes of each kind on a noisy machine could not have seen the story's 18 ms leak.
        let few = same(4, 15_000).detectable_ms().unwrap();
        assert!(few > 18.0, "{few} ms from 4 probes of each kind");
    }

    #[test]
    fn the_same_work_either_way_says_nothing() {
        let probes = Probes {
            known_us: around(20_000, 3_000, 300, 3),
            unknown_us: around(20_000, 3_000, 300, 4),
        };
        let accuracy = probes.classifier_accuracy().unwrap();
        assert!((0.4..=0.6).contains(&accuracy), "{accuracy}");
        assert!(
            probes.mann_whitney_p().unwrap() > 0.05,
            "{:?}",
            probes.mann_whitney_p()
        );
    }

    #[test]
    fn rank_sums_average_their_ties_and_small_shifts_show_with_enough_samples() {
        // Ranks of 1, 2, 2, 3 among 1, 2, 2, 3: 1, 2.5, 2.5, 4; the first set's sum is 1 + 2.5 = 3.5.
        let (sum, ties) = rank_sum(&[1, 2], &[2, 3]);
        assert_eq!((sum, ties), (3.5, 6.0));
        let shifted = Probes {
            known_us: around(20_300, 1_000, 2_000, 5),
            unknown_us: around(20_000, 1_000, 2_000, 6),
        };
        assert!(
            shifted.mann_whitney_p().unwrap() < 0.001,
            "{:?}",
            shifted.mann_whitney_p()
        );
        assert!(Probes::default().classifier_accuracy().is_none());
    }
}
