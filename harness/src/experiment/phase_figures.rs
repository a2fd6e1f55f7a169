//! From the seconds a variant was watched to the figures its predictions are judged on: percentiles
//! over each phase's merged histogram, statements per request over the phase's totals, how long the
//! cache took to recover after a fault, and the caveats that make a phase unfit to judge (a fault that
//! never touched traffic, a steady state that never reached the offered load).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::definition::{Plan, RUN_PHASE};
use super::verdict::{Caveats, MIN_ACHIEVED_SHARE, PhaseStats, Sample};
use crate::load::quantile_ms;
use crate::vocabulary::Metric;

/// The cache hit ratio that counts as recovered.
const RECOVERED_HIT_RATIO: f64 = 0.9;

/// The per-second metrics whose busiest second of a phase is a figure of its own.
const PEAKS: [(Metric, Metric); 2] = [
    (Metric::PgStatementsPerS, Metric::PgStatementsPeak),
    (Metric::CacheMissesPerS, Metric::CacheMissesPeak),
];

/// The highest value `metric` took in one second of `phase`.
fn busiest_second(samples: &[Sample], phase: &str, metric: Metric) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.phase == phase)
        .filter_map(|s| s.values.get(&metric).copied())
        .reduce(f64::max)
}

/// Figures a mean of seconds cannot give: percentiles over the phase's merged histogram, the busiest
/// second of Postgres, statements per request over the phase's totals, and how long the cache took to
/// recover after a fault phase.
pub(super) fn derived_stats(
    plan: &Plan,
    samples: &[Sample],
    histograms: &BTreeMap<String, Histogram<u64>>,
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
    for (phase, histogram) in histograms {
        stats.set(phase, Metric::P50Ms, quantile_ms(histogram, 0.50));
        stats.set(phase, Metric::P95Ms, quantile_ms(histogram, 0.95));
        stats.set(phase, Metric::P99Ms, quantile_ms(histogram, 0.99));
    }
    for phase in &plan.phases {
        for (per_second, peak) in PEAKS {
            if let Some(value) = busiest_second(samples, &phase.name, per_second) {
                stats.set(&phase.name, peak, value);
            }
        }
        let in_phase = samples.iter().filter(|s| s.phase == phase.name);
        let (statements, requests) = in_phase.fold((0.0, 0.0), |(st, rq), s| {
            (
                st + s.values.get(&Metric::PgStatementsPerS).unwrap_or(&0.0),
                rq + s.values.get(&Metric::ThroughputRps).unwrap_or(&0.0),
            )
        });
        if requests > 0.0 {
            stats.set(&phase.name, Metric::StatementsPerRequest, statements / requests);
        }
    }
    for pair in plan.phases.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if before.faults.is_empty() {
            continue;
        }
        let phase_start = samples.iter().find(|s| s.phase == after.name).map(|s| s.at_s);
        let recovered = samples.iter().filter(|s| s.phase == after.name).find(|s| {
            s.values
                .get(&Metric::CacheHitRatio)
                .is_some_and(|r| *r >= RECOVERED_HIT_RATIO)
        });
        let seconds = match (phase_start, recovered) {
            (Some(start), Some(sample)) => sample.at_s - start + 1.0,
            // Not within the phase: no finite figure is honest (it serializes as null).
            _ => f64::INFINITY,
        };
        stats.set(&after.name, Metric::HitRatioRecoveryS, seconds);
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
