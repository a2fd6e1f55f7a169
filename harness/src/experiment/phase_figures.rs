//! From the seconds a variant was watched to the figures its predictions are judged on: percentiles
//! over each phase's merged histogram, statements per request over the phase's totals, how long the
//! cache took to recover after a fault, and the caveats that make a phase unfit to judge (a fault that
//! never touched traffic, a steady state that never reached the offered load).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::definition::{Plan, RUN_PHASE};
use super::verdict::{Caveats, MIN_ACHIEVED_SHARE, PhaseStats, Sample};
use crate::load::{Group, SecondSample, quantile_ms};
use crate::vocabulary::Metric;

/// The cache hit ratio that counts as recovered.
const RECOVERED_HIT_RATIO: f64 = 0.9;

/// The per-second metrics whose busiest second of a phase is a figure of its own.
const PEAKS: [(Metric, Metric); 2] = [
    (Metric::PgStatementsPerS, Metric::PgStatementsPeak),
    (Metric::CacheMissesPerS, Metric::CacheMissesPeak),
];

/// The most `metric` (a rate of events per second) counted in one sample of `phase`: the rate times
/// the time since the sample before, rounded to a whole count (the two clocks differ by a few
/// milliseconds). A count, not a rate: a burst of 4 in a sample that came 0.8 s after the last is 4,
/// not 5 per second.
fn busiest_second(samples: &[Sample], phase: &str, metric: Metric) -> Option<f64> {
    samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.phase == phase)
        .filter_map(|(i, s)| {
            let since = i.checked_sub(1).map_or(0.0, |before| samples[before].at_s);
            Some((s.values.get(&metric)? * (s.at_s - since)).round())
        })
        .reduce(f64::max)
}

/// The client's latencies of each phase, merged from its seconds: of every request, and of each group
/// that has a percentile of its own.
#[derive(Debug, Default)]
pub(super) struct PhaseLatencies(BTreeMap<(String, Option<Group>), Histogram<u64>>);

impl PhaseLatencies {
    /// Adds one second of `phase`.
    pub(super) fn add(&mut self, phase: &str, second: &SecondSample) {
        self.merge(phase, None, &second.latency_us(Group::ALL));
        for group in &second.groups {
            if group_p95(group.group).is_some() {
                self.merge(phase, Some(group.group), &group.latency_us);
            }
        }
    }

    fn merge(&mut self, phase: &str, group: Option<Group>, latency: &Histogram<u64>) {
        match self.0.get_mut(&(phase.to_owned(), group)) {
            // Auto-resizing histograms of the same precision always add.
            Some(merged) => drop(merged.add(latency)),
            None => drop(self.0.insert((phase.to_owned(), group), latency.clone())),
        }
    }
}

/// The 95th percentile metric of a group's requests, for the groups that have one.
pub(super) fn group_p95(group: Group) -> Option<Metric> {
    match group {
        Group::Browse => Some(Metric::BrowseP95Ms),
        Group::Checkout => Some(Metric::CheckoutP95Ms),
        Group::History => Some(Metric::HistoryP95Ms),
        _ => None,
    }
}

/// Figures a mean of seconds cannot give: percentiles over the phase's merged histograms, the busiest
/// second, figures per request over the phase's totals, and how long the cache took to recover after
/// a fault phase.
pub(super) fn derived_stats(
    plan: &Plan,
    samples: &[Sample],
    latencies: &PhaseLatencies,
    stats: &mut PhaseStats,
) {
    let whole_run: Vec<Sample> = samples
        .iter()
        .map(|s| Sample {
            phase: RUN_PHASE.into(),
            ..s.clone()
        })
        .collect();
    for (metric, value) in PhaseStats::from_samples(&whole_run).phase(RUN_PHASE) {
        stats.set(RUN_PHASE, metric, value);
    }
    for ((phase, group), histogram) in &latencies.0 {
        match group.and_then(group_p95) {
            Some(p95) => stats.set(phase, p95, quantile_ms(histogram, 0.95)),
            None => {
                stats.set(phase, Metric::P50Ms, quantile_ms(histogram, 0.50));
                stats.set(phase, Metric::P95Ms, quantile_ms(histogram, 0.95));
                stats.set(phase, Metric::P99Ms, quantile_ms(histogram, 0.99));
            }
        }
    }
    for phase in &plan.phases {
        for (per_second, peak) in PEAKS {
            if let Some(value) = busiest_second(samples, &phase.name, per_second) {
                stats.set(&phase.name, peak, value);
            }
        }
        for (per_second, per_request) in PER_REQUEST {
            if let Some(value) = per_completed_request(samples, &phase.name, per_second) {
                stats.set(&phase.name, per_request, value);
            }
        }
        let payments = Metric::PaymentRequestsPerS;
        if let Some(value) = ratio_of_totals(samples, &phase.name, payments, Metric::CheckoutsPerS) {
            stats.set(&phase.name, Metric::PaymentRequestsPerCheckout, value);
        }
    }
    recovery(plan, samples, stats);
}

/// The per-second metrics that are also a figure per request: their phase total over its requests.
pub(super) const PER_REQUEST: [(Metric, Metric); 2] = [
    (Metric::PgStatementsPerS, Metric::StatementsPerRequest),
    (Metric::PgTuplesReadPerS, Metric::TuplesReadPerRequest),
];

/// `metric`'s total over `phase` divided by the requests completed in it.
fn per_completed_request(samples: &[Sample], phase: &str, metric: Metric) -> Option<f64> {
    ratio_of_totals(samples, phase, metric, Metric::ThroughputRps)
}

/// The phase's total of `numerator` over its total of `denominator` (both per-second figures of the
/// same seconds); nothing when the phase has no `numerator` at all or a zero `denominator`.
fn ratio_of_totals(samples: &[Sample], phase: &str, numerator: Metric, denominator: Metric) -> Option<f64> {
    let in_phase = samples.iter().filter(|s| s.phase == phase);
    let (mut total, mut over, mut seen) = (0.0, 0.0, false);
    for sample in in_phase {
        if let Some(value) = sample.values.get(&numerator) {
            total += value;
            seen = true;
        }
        over += sample.values.get(&denominator).unwrap_or(&0.0);
    }
    (seen && over > 0.0).then(|| total / over)
}

/// How long after each fault phase the cache hit ratio took to be back above 0.9 and, in a lab with a
/// mail server, the outbox took to catch up: nothing dead-lettered, and no more waiting than one
/// second's orders (a busy shop always has a few emails on their way).
fn recovery(plan: &Plan, samples: &[Sample], stats: &mut PhaseStats) {
    let mail = samples
        .iter()
        .any(|s| s.values.contains_key(&Metric::MailDeliveredPerS));
    for pair in plan.phases.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if before.faults.is_empty() {
            continue;
        }
        let seconds = seconds_until(samples, &after.name, cache_recovered);
        stats.set(&after.name, Metric::HitRatioRecoveryS, seconds);
        if mail {
            let seconds = seconds_until(samples, &after.name, outbox_caught_up);
            stats.set(&after.name, Metric::EmailBacklogClearS, seconds);
        }
    }
}

fn cache_recovered(sample: &Sample) -> bool {
    let ratio = sample.values.get(&Metric::CacheHitRatio);
    ratio.is_some_and(|r| *r >= RECOVERED_HIT_RATIO)
}

/// Nothing dead-lettered, and no more emails waiting than the orders of the sample's second.
fn outbox_caught_up(sample: &Sample) -> bool {
    let level = |metric| sample.values.get(&metric).copied();
    let orders = level(Metric::OrdersPerS).unwrap_or(0.0).max(1.0);
    level(Metric::OutboxPending)
        .zip(level(Metric::OutboxDead))
        .is_some_and(|(pending, dead)| dead == 0.0 && pending <= orders)
}

/// Seconds from the start of `phase` to the end of its first sample that meets `condition`; infinite
/// when none does (not within the phase: no finite figure is honest, and it serializes as null).
fn seconds_until(samples: &[Sample], phase: &str, condition: impl Fn(&Sample) -> bool) -> f64 {
    let phase_start = samples.iter().find(|s| s.phase == phase).map(|s| s.at_s);
    let met = samples.iter().filter(|s| s.phase == phase).find(|s| condition(s));
    match (phase_start, met) {
        (Some(start), Some(sample)) => sample.at_s - start + 1.0,
        _ => f64::INFINITY,
    }
}

/// What makes a phase unfit to judge: `untouched` (per phase, the faults that never touched traffic,
/// from the proxy's evidence), and a steady state that fell short of the offered load.
pub(super) fn caveats(plan: &Plan, stats: &PhaseStats, untouched: &BTreeMap<String, Vec<String>>) -> Caveats {
    let mut caveats = Caveats {
        untouched_faults: untouched.clone(),
        ..Caveats::default()
    };
    let mut after_a_fault = false;
    for phase in &plan.phases {
        // The steady state (every phase before the first fault) must reach the offered rate: otherwise
        // the load generator, not the system, set the figures. During and after a fault, a shortfall
        // is the system's own story (a stall, a slow recovery), which the predictions judge.
        after_a_fault |= !phase.faults.is_empty();
        if !after_a_fault
            && let Some(achieved) = stats.get(&phase.name, Metric::ThroughputRps)
            && achieved < plan.rate * MIN_ACHIEVED_SHARE
        {
            caveats
                .load_shortfall
                .insert(phase.name.clone(), (plan.rate, achieved));
        }
    }
    caveats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(phase: &str, at_s: f64, figures: &[(Metric, f64)]) -> Sample {
        Sample {
            phase: phase.into(),
            at_s,
            values: figures.iter().copied().collect(),
            replicas: BTreeMap::new(),
        }
    }

    #[test]
    fn payment_requests_per_checkout_is_a_ratio_of_the_phases_totals() {
        let samples = vec![
            second("storm", 1.0, &[(Metric::CheckoutsPerS, 20.0)]),
            second(
                "storm",
                2.0,
                &[(Metric::CheckoutsPerS, 20.0), (Metric::PaymentRequestsPerS, 35.0)],
            ),
            second(
                "storm",
                3.0,
                &[(Metric::CheckoutsPerS, 10.0), (Metric::PaymentRequestsPerS, 20.0)],
            ),
            second("calm", 4.0, &[(Metric::CheckoutsPerS, 10.0)]),
        ];
        let ratio = |phase| {
            ratio_of_totals(
                &samples,
                phase,
                Metric::PaymentRequestsPerS,
                Metric::CheckoutsPerS,
            )
        };
        // 55 requests over 50 checkouts: a second without the proxy's count still has its checkouts.
        assert_eq!(ratio("storm"), Some(1.1));
        assert_eq!(ratio("calm"), None, "no payment figure at all: nothing to say");
    }

    #[test]
    fn the_outbox_has_caught_up_when_nothing_is_dead_and_no_more_than_a_seconds_orders_wait() {
        let backlog = |pending, dead| {
            vec![
                (Metric::OutboxPending, pending),
                (Metric::OutboxDead, dead),
                (Metric::OrdersPerS, 20.0),
            ]
        };
        let samples = vec![
            second("outage", 9.0, &backlog(160.0, 300.0)),
            second("recovery", 10.0, &backlog(400.0, 0.0)),
            second("recovery", 11.0, &backlog(25.0, 0.0)),
            second("recovery", 12.0, &backlog(19.0, 1.0)),
            second("recovery", 13.0, &backlog(19.0, 0.0)),
        ];
        assert_eq!(seconds_until(&samples, "recovery", outbox_caught_up), 4.0);
        assert_eq!(seconds_until(&samples, "outage", outbox_caught_up), f64::INFINITY);
    }
}
