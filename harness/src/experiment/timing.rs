//! The timing attacker's answer: from response times alone, can one tell a wrong password for an
//! account that exists from one for an email nobody has?
//!
//! Two figures, both from the probes' single latencies (the recorder keeps each one):
//! - the accuracy of a threshold classifier trained on half of the probes (every other one, in the
//!   order they completed) and tested on the other half: 1.0 when one response time gives the answer
//!   away, 0.5 when it says nothing. Balanced (the mean of each class's share answered right), so an
//!   uneven split cannot pass for skill;
//! - the two-sided p-value of a Wilcoxon signed-rank test on the pairs the attacker sends (one of
//!   each kind, one after the other, in an order drawn at random): that within a pair, neither kind
//!   is the slower one more often or by more. Rank-based, so a few slow outliers on a noisy machine
//!   weigh no more than any other answer; paired, so the machine's moods, which last several probes
//!   and reach both kinds alike, cancel. Without a leak, the coin that ordered each pair alone makes
//!   each difference's sign: the test's level holds however the times drift, which a two-sample test
//!   on the same times needs independent probes for;
//! - how big the leak can be: the far end of the 99.9% confidence interval of the pairs' typical
//!   difference (the Hodges-Lehmann estimate's, the interval that goes with the signed-rank test). A
//!   defence rarely makes two code paths take exactly the same time (fetching the account's row
//!   costs something); what it can be judged on is that what is left is too small to use.

use serde::{Deserialize, Serialize};

/// The probes' latencies, in microseconds, in the order they completed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probes {
    /// Wrong passwords for seeded emails.
    pub known_us: Vec<u64>,
    /// Wrong passwords for emails nobody has.
    pub unknown_us: Vec<u64>,
    /// The pairs, (seeded email, unknown email), whose two probes were both answered as expected.
    #[serde(default)]
    pub pairs: Vec<(u64, u64)>,
}

/// The rank test's level (for `detectable_ms` and the leak's confidence interval), and the power
/// asked of it (`detectable_ms`): z(1 - 0.001 / 2) and z(0.8) of the standard normal.
const Z_HALF_ALPHA: f64 = 3.290_527;
const Z_POWER: f64 = 0.841_621;

/// A standard deviation read from the median absolute deviation (x 1.4826, its ratio on normal data).
fn robust_sigma(samples: &[f64]) -> f64 {
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        if values.len().is_multiple_of(2) {
            (values[mid - 1] + values[mid]) / 2.0
        } else {
            values[mid]
        }
    };
    let mut values = samples.to_vec();
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
        let p = self.signed_rank_p().map(|p| (Metric::TimingPValue, p));
        let detectable = self.detectable_ms().map(|d| (Metric::TimingDetectableMs, d));
        let leak = self.leak_bound_ms().map(|l| (Metric::TimingLeakMs, l));
        accuracy
            .into_iter()
            .chain(p)
            .chain(detectable)
            .chain(leak)
            .collect()
    }

    /// The smallest difference between the two kinds' typical times, in milliseconds, that the rank
    /// test on these pairs would find at the 0.1% level four times in five: what a verdict of
    /// "no leak" could have seen. For a shift of `d` in pair differences of spread `sigma`, a paired
    /// test needs `d = (z(1 - alpha/2) + z(power)) * sigma / sqrt(n)` (`Z_HALF_ALPHA`, `Z_POWER`); the
    /// signed-rank test is as efficient as a t-test to a factor of 3/pi on normal data (its asymptotic
    /// relative efficiency), so `d` grows by `sqrt(pi/3)`. The spread is the differences' median
    /// absolute deviation, scaled to a standard deviation, so a few stalls of the machine do not
    /// inflate it.
    pub fn detectable_ms(&self) -> Option<f64> {
        if !self.usable() {
            return None;
        }
        let differences: Vec<f64> = self.differences().map(|d| d as f64).collect();
        let n = differences.len() as f64;
        let z = Z_HALF_ALPHA + Z_POWER;
        let efficiency = (3.0 / std::f64::consts::PI).sqrt();
        Some(z * robust_sigma(&differences) / n.sqrt() / efficiency / 1000.0)
    }

    /// The largest typical leak, in either direction, that the pairs leave plausible: the farther
    /// end from zero of the 99.9% confidence interval of the median of the Walsh averages (the
    /// means of every two pairs' differences, a pair with itself included). The interval's ends are
    /// the Walsh averages `C` from either end, `C` being the signed-rank statistic's lower critical
    /// value (normal approximation); none when there are too few pairs for one.
    pub fn leak_bound_ms(&self) -> Option<f64> {
        if !self.usable() {
            return None;
        }
        let differences: Vec<i64> = self.differences().collect();
        let n = differences.len();
        let differences = &differences;
        let mut walsh: Vec<i64> = (0..n)
            .flat_map(|i| differences[i..].iter().map(move |&d| d + differences[i]))
            .collect(); // sums of two: halved at the end
        walsh.sort_unstable();
        let nf = n as f64;
        let spread = (nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0).sqrt();
        let critical = (nf * (nf + 1.0) / 4.0 - Z_HALF_ALPHA * spread).floor();
        if critical < 0.0 {
            return None;
        }
        let c = critical as usize;
        let (low, high) = (walsh[c], walsh[walsh.len() - 1 - c]);
        Some(low.abs().max(high.abs()) as f64 / 2.0 / 1000.0)
    }

    /// Whether there are enough probes to train and test the classifier (four of each kind: two to
    /// train on, two to test) and pairs for the rank test (eight).
    pub fn usable(&self) -> bool {
        self.known_us.len() >= 4 && self.unknown_us.len() >= 4 && self.pairs.len() >= 8
    }

    /// Each pair's seeded-email time minus its unknown-email time, in microseconds.
    fn differences(&self) -> impl Iterator<Item = i64> + '_ {
        self.pairs
            .iter()
            .map(|&(known, unknown)| known as i64 - unknown as i64)
    }

    /// The classifier's balanced accuracy on the half of the probes it was not trained on.
    pub fn classifier_accuracy(&self) -> Option<f64> {
        if !self.usable() {
            return None;
        }
        let threshold = train(&half(&self.known_us, 0), &half(&self.unknown_us, 0));
        Some(threshold.balanced_accuracy(&half(&self.known_us, 1), &half(&self.unknown_us, 1)))
    }

    /// The two-sided p-value of the Wilcoxon signed-rank test on the pairs' differences (normal
    /// approximation, ties corrected, pairs with no difference left out).
    pub fn signed_rank_p(&self) -> Option<f64> {
        if !self.usable() {
            return None;
        }
        let differences: Vec<i64> = self.differences().filter(|&d| d != 0).collect();
        let n = differences.len() as f64;
        if n == 0.0 {
            return Some(1.0); // every pair answered in the same microsecond: nothing tells them apart
        }
        let (positive_ranks, tie_term) = signed_rank_sum(&differences);
        let mean = n * (n + 1.0) / 4.0;
        let variance = n * (n + 1.0) * (2.0 * n + 1.0) / 24.0 - tie_term / 48.0;
        if variance <= 0.0 {
            return Some(1.0);
        }
        let z = ((positive_ranks - mean).abs() - 0.5).max(0.0) / variance.sqrt();
        Some(libm::erfc(z / std::f64::consts::SQRT_2))
    }
}

/// The sum of the ranks of the positive differences among all differences by size (ties get their
/// average rank), and the ties' correction term, the sum over groups of equal sizes of `t^3 - t`.
fn signed_rank_sum(differences: &[i64]) -> (f64, f64) {
    let mut sizes: Vec<(u64, bool)> = differences.iter().map(|&d| (d.unsigned_abs(), d > 0)).collect();
    sizes.sort_unstable_by_key(|&(size, _)| size);
    let (mut sum, mut ties, mut i) = (0.0, 0.0, 0);
    while i < sizes.len() {
        let end = i + sizes[i..].iter().take_while(|(v, _)| *v == sizes[i].0).count();
        let average_rank = (i + 1 + end) as f64 / 2.0;
        let positive = sizes[i..end].iter().filter(|(_, p)| *p).count() as f64;
        sum += average_rank * positive;
        let t = (end - i) as f64;
        ties += t * t * t - t;
        i = end;
    }
    (sum, ties)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A simulated attacker's run on a simulated machine: `n` pairs of probes sent one after the
    /// other in a random order, each taking `base_us` plus the machine's mood (which wanders: each
    /// probe keeps `persistence` of the last one's, and its spread is `mood_us`), plus its own noise
    /// (+/- `noise_us`); a seeded email's probe takes `known_extra_us` more.
    struct Machine {
        rng: StdRng,
        mood_us: f64,
        persistence: f64,
        noise_us: f64,
    }

    impl Machine {
        fn new(seed: u64, mood_us: f64, noise_us: f64) -> Self {
            Self {
                rng: StdRng::seed_from_u64(seed),
                mood_us,
                persistence: 0.9,
                noise_us,
            }
        }

        fn run(&mut self, n: usize, known_base_us: f64, unknown_base_us: f64) -> Probes {
            let mut probes = Probes::default();
            let mut mood = 0.0;
            let innovation = self.mood_us * (1.0 - self.persistence * self.persistence).sqrt();
            let mut take = |machine: &mut Self, base: f64| {
                mood = machine.persistence * mood + innovation * machine.rng.random_range(-1.7..1.7);
                let noise = machine.noise_us * machine.rng.random_range(-1.0..1.0);
                (base + mood + noise).max(1.0) as u64
            };
            for _ in 0..n {
                let known_first = self.rng.random_bool(0.5);
                let (known, unknown) = if known_first {
                    let k = take(self, known_base_us);
                    (k, take(self, unknown_base_us))
                } else {
                    let u = take(self, unknown_base_us);
                    (take(self, known_base_us), u)
                };
                probes.known_us.push(known);
                probes.unknown_us.push(unknown);
                probes.pairs.push((known, unknown));
            }
            probes
        }
    }

    #[test]
    fn a_login_that_skips_the_hash_gives_the_account_away() {
        // Wrong password: ~20 ms of argon2; unknown email: ~1.5 ms.
        let probes = Machine::new(1, 1_000.0, 400.0).run(200, 20_000.0, 1_500.0);
        assert_eq!(probes.classifier_accuracy(), Some(1.0));
        assert!(probes.signed_rank_p().unwrap() < 1e-12);
        let leak = probes.leak_bound_ms().unwrap();
        assert!((18.5..19.0).contains(&leak), "{leak} ms for 18.5 ms");
    }

    #[test]
    fn a_verdict_of_no_leak_says_what_it_could_have_seen() {
        let many = Machine::new(3, 0.0, 5_000.0)
            .run(300, 20_000.0, 20_000.0)
            .detectable_ms()
            .unwrap();
        assert!((0.5..2.0).contains(&many), "{many} ms from 300 pairs");
        // A shift twice that size is found at the test's level on as many pairs.
        let leaky = Machine::new(3, 0.0, 5_000.0).run(300, 20_000.0 + 2_000.0 * many, 20_000.0);
        let p = leaky.signed_rank_p().unwrap();
        assert!(p < 0.001, "{p} for a leak of {} ms", 2.0 * many);
        // Eight pairs on a noisy machine could not have seen the story's 18 ms leak.
        let few = Machine::new(4, 0.0, 25_000.0)
            .run(8, 20_000.0, 20_000.0)
            .detectable_ms()
            .unwrap();
        assert!(few > 18.0, "{few} ms from 8 pairs");
    }

    #[test]
    fn the_same_work_either_way_says_nothing() {
        let probes = Machine::new(5, 2_000.0, 1_500.0).run(300, 20_000.0, 20_000.0);
        let accuracy = probes.classifier_accuracy().unwrap();
        assert!((0.4..=0.6).contains(&accuracy), "{accuracy}");
        let p = probes.signed_rank_p().unwrap();
        assert!(p > 0.05, "{p}");
        let leak = probes.leak_bound_ms().unwrap();
        assert!(leak < 1.0, "{leak} ms");
    }

    /// What a defence leaves (the account's row fetched, a fraction of a millisecond) may be found by
    /// the rank test, and is still bounded far below the naive login's leak.
    #[test]
    fn a_small_residual_is_found_and_bounded() {
        let probes = Machine::new(7, 500.0, 500.0).run(2_000, 20_300.0, 20_000.0);
        assert!(probes.signed_rank_p().unwrap() < 0.001);
        let leak = probes.leak_bound_ms().unwrap();
        assert!((0.3..0.5).contains(&leak), "{leak} ms for 0.3 ms");
        let few = Probes {
            pairs: vec![(20_000, 19_000); 8],
            ..Probes::default()
        };
        assert_eq!(
            few.leak_bound_ms(),
            None,
            "eight pairs cannot bound anything at 99.9%"
        );
    }

    /// The moods of a machine last several probes and reach both kinds alike; however strong, they
    /// cannot make the test cry leak more often than its level, because each pair's order, not the
    /// times, decides its sign. 2,000 runs of 135 pairs (the quick profile's), no leak: about 20
    /// should fall under 1% by chance (the binomial spread is 4.4).
    #[test]
    fn moods_that_last_do_not_make_a_leak_out_of_nothing() {
        let mut machine = Machine::new(6, 4_000.0, 500.0);
        let false_alarms = (0..2_000)
            .filter(|_| machine.run(135, 20_000.0, 20_000.0).signed_rank_p().unwrap() < 0.01)
            .count();
        assert!(false_alarms <= 35, "{false_alarms} of 2000 runs under 1%");
        // And a leak of a quarter of the moods' spread shows through them.
        let p = machine.run(135, 21_000.0, 20_000.0).signed_rank_p().unwrap();
        assert!(p < 0.001, "{p}");
    }

    #[test]
    fn signed_ranks_average_their_ties() {
        // Sizes 1, 2, 2, 3 rank 1, 2.5, 2.5, 4; the positive differences' ranks sum to 1 + 2.5 + 4.
        let (sum, ties) = signed_rank_sum(&[1, -2, 2, 3]);
        assert_eq!((sum, ties), (7.5, 6.0));
        assert!(Probes::default().classifier_accuracy().is_none());
        assert!(Probes::default().signed_rank_p().is_none());
    }
}
