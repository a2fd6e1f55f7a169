//! From the seconds a variant was watched to the figures its predictions are judged on: percentiles
//! over each phase's merged histogram, statements per request over the phase's totals, how long the
//! cache took to recover after a fault, and the caveats that make a phase unfit to judge (a fault that
//! never touched traffic, a steady state that never reached the offered load).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::definition::{Plan, RUN_PHASE};
use super::verdict::{Caveats, MIN_ACHIEVED_SHARE, PhaseStats, Sample};
use crate::load::{Group, ScheduleSecond, SecondSample, group_p95, quantile_ms};
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
        .filter(|(_, s)| in_phase(s, phase))
        .filter_map(|(i, s)| {
            let since = i.checked_sub(1).map_or(0.0, |before| samples[before].at_s);
            Some((s.values.get(&metric)? * (s.at_s - since)).round())
        })
        .reduce(f64::max)
}

/// Whether `sample` is one of `phase`'s; every sample is one of the whole run's.
fn in_phase(sample: &Sample, phase: &str) -> bool {
    phase == RUN_PHASE || sample.phase == phase
}

/// The client's record of each phase (and of the whole run, `run`), merged from its seconds: the
/// latencies of every request and of each group that has a percentile of its own, the service times,
/// and how the generator kept its schedule.
#[derive(Debug, Default)]
pub(super) struct PhaseLatencies {
    latency: BTreeMap<(String, Option<Group>), Histogram<u64>>,
    service: BTreeMap<String, Histogram<u64>>,
    schedule: BTreeMap<String, ScheduleSecond>,
    counts: BTreeMap<String, Counts>,
}

/// A phase's requests, for its shares: over every request of the phase, not a mean of its seconds
/// (a second of a stall that completed one failed request would weigh as much as one that
/// completed seventeen good ones).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: u64,
    errors: u64,
    /// Requests only a logged-in user makes, and those answered as logged out.
    logged_in: u64,
    logged_out: u64,
}

impl Counts {
    fn add(&mut self, second: &SecondSample) {
        self.requests += second.count();
        self.errors += second.errors();
        for group in second.groups.iter().filter(|g| g.group.needs_login()) {
            self.logged_in += group.count();
            self.logged_out += group.logged_out;
        }
    }
}

impl PhaseLatencies {
    /// Adds one second of `phase` (to the phase and to the whole run).
    pub(super) fn add(&mut self, phase: &str, second: &SecondSample) {
        for phase in [phase, RUN_PHASE] {
            merge(
                &mut self.latency,
                (phase.to_owned(), None),
                &second.latency_us(Group::ALL),
            );
            for group in second.groups.iter().filter(|g| group_p95(g.group).is_some()) {
                merge(
                    &mut self.latency,
                    (phase.to_owned(), Some(group.group)),
                    &group.latency_us,
                );
            }
            merge(&mut self.service, phase.to_owned(), &second.service_us());
            self.counts.entry(phase.to_owned()).or_default().add(second);
            match self.schedule.get_mut(phase) {
                Some(merged) => merged.merge(&second.schedule),
                None => drop(self.schedule.insert(phase.to_owned(), second.schedule.clone())),
            }
        }
    }

    /// The mean service time over `phases` together, in milliseconds.
    pub(super) fn mean_service_ms(&self, phases: &[&str]) -> Option<f64> {
        let mut merged = BTreeMap::new();
        for histogram in phases.iter().filter_map(|p| self.service.get(*p)) {
            merge(&mut merged, (), histogram);
        }
        let merged = merged.remove(&()).filter(|h| !h.is_empty())?;
        Some(merged.mean() / 1000.0)
    }

    /// How the generator kept its schedule over `phase`.
    pub(super) fn schedule(&self, phase: &str) -> Option<&ScheduleSecond> {
        self.schedule.get(phase)
    }

    /// The figures over each phase's merged record: latency and service-time percentiles, the
    /// shares of errors and of logged-out answers over its requests, the generator's lag, the most
    /// users busy at once.
    fn figures(&self, stats: &mut PhaseStats) {
        for ((phase, group), histogram) in &self.latency {
            match group.and_then(group_p95) {
                Some(p95) => stats.set(phase, p95, quantile_ms(histogram, 0.95)),
                None => {
                    stats.set(phase, Metric::P50Ms, quantile_ms(histogram, 0.50));
                    stats.set(phase, Metric::P95Ms, quantile_ms(histogram, 0.95));
                    stats.set(phase, Metric::P99Ms, quantile_ms(histogram, 0.99));
                }
            }
        }
        for (phase, histogram) in &self.service {
            stats.set(phase, Metric::ServiceP95Ms, quantile_ms(histogram, 0.95));
        }
        for (phase, counts) in &self.counts {
            if counts.requests > 0 {
                stats.set(
                    phase,
                    Metric::ErrorRate,
                    counts.errors as f64 / counts.requests as f64,
                );
            }
            if counts.logged_in > 0 {
                let share = counts.logged_out as f64 / counts.logged_in as f64;
                stats.set(phase, Metric::LoggedOutShare, share);
            }
        }
        for (phase, schedule) in &self.schedule {
            stats.set(phase, Metric::BusyUsers, f64::from(schedule.busy_peak));
            if schedule.sent > 0 {
                stats.set(
                    phase,
                    Metric::GeneratorLagMs,
                    quantile_ms(&schedule.behind_us, 0.99),
                );
                stats.set(
                    phase,
                    Metric::GeneratorOwnLagMs,
                    quantile_ms(&schedule.own_lag_us, 0.99),
                );
            }
        }
    }
}

fn merge<K: Ord>(merged: &mut BTreeMap<K, Histogram<u64>>, key: K, histogram: &Histogram<u64>) {
    match merged.get_mut(&key) {
        // Auto-resizing histograms of the same precision always add.
        Some(into) => drop(into.add(histogram)),
        None => drop(merged.insert(key, histogram.clone())),
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
    latencies.figures(stats);
    let phases = plan.phases.iter().map(|p| p.name.as_str());
    for phase in phases.chain([RUN_PHASE]) {
        for (per_second, peak) in PEAKS {
            if let Some(value) = busiest_second(samples, phase, per_second) {
                stats.set(phase, peak, value);
            }
        }
        for (per_second, per_request) in PER_REQUEST {
            if let Some(value) = per_completed_request(samples, phase, per_second) {
                stats.set(phase, per_request, value);
            }
        }
        let payments = Metric::PaymentRequestsPerS;
        if let Some(value) = ratio_of_totals(samples, phase, payments, Metric::CheckoutsPerS) {
            stats.set(phase, Metric::PaymentRequestsPerCheckout, value);
        }
    }
    recovery(plan, samples, stats);
}

/// The per-second metrics that are also a figure per request: their phase total over its requests.
const PER_REQUEST: [(Metric, Metric); 2] = [
    (Metric::PgStatementsPerS, Metric::StatementsPerRequest),
    (Metric::PgTuplesReadPerS, Metric::TuplesReadPerRequest),
];

/// One second's figures per completed request (statements, rows read), from its totals.
pub(super) fn per_request_figures(values: &mut BTreeMap<Metric, f64>) {
    let Some(&requests) = values.get(&Metric::ThroughputRps).filter(|r| **r > 0.0) else {
        return;
    };
    for (per_second, per_request) in PER_REQUEST {
        if let Some(total) = values.get(&per_second) {
            values.insert(per_request, total / requests);
        }
    }
}

/// `metric`'s total over `phase` divided by the requests completed in it.
fn per_completed_request(samples: &[Sample], phase: &str, metric: Metric) -> Option<f64> {
    ratio_of_totals(samples, phase, metric, Metric::ThroughputRps)
}

/// The phase's total of `numerator` over its total of `denominator`, over the seconds that have both
/// (a sample without the client's figures for its second still has the lab's: counting its payment
/// requests with no checkouts beside them read 1.24 requests a checkout where every second read 1.0);
/// nothing when no second has both or the `denominator` totals zero.
fn ratio_of_totals(samples: &[Sample], phase: &str, numerator: Metric, denominator: Metric) -> Option<f64> {
    let (mut total, mut over, mut seen) = (0.0, 0.0, false);
    for sample in samples.iter().filter(|s| in_phase(s, phase)) {
        let (Some(value), Some(per)) = (sample.values.get(&numerator), sample.values.get(&denominator))
        else {
            continue;
        };
        total += value;
        over += per;
        seen = true;
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

/// The generator's own lateness (99th percentile over a phase) above which it, not the service, set
/// the pace: a user was free and the request still left this late, so the service was offered less
/// than the plan says, and every latency of the phase carries that much of the generator's own delay.
/// tokio's timer is 1 ms; on this 2-core machine the freeze test (`tests/load.rs`) reads under 2 ms
/// at p99, and the quick gate's phases a few ms, so 50 ms is a generator starved of CPU, not noise.
pub const OWN_LAG_LIMIT_MS: f64 = 50.0;

/// The share of a phase's own latency (p99) the generator's lateness must reach to count: 50 ms late
/// in a phase whose requests take seconds (Postgres restarting) changes none of its figures.
const OWN_LAG_SHARE: f64 = 0.25;

/// The schedule lag (99th percentile over a phase) above which slots waited for a free user, when
/// every user was busy: the pool of users was exhausted.
pub const POOL_WAIT_LIMIT_MS: f64 = 100.0;

/// The share of the users a healthy service may keep busy on average before the pool counts as too
/// small: Little's law gives the mean (rate x mean service time); bursts around it need the rest.
const POOL_UTILISATION: f64 = 0.8;

/// What makes a phase unfit to judge: `untouched` (per phase, the faults that never touched the
/// system), a steady state that fell short of the offered load, and any phase in which the
/// generator, not the service, kept the load from being offered.
pub(super) fn caveats(
    plan: &Plan,
    stats: &PhaseStats,
    latencies: &PhaseLatencies,
    untouched: &BTreeMap<String, Vec<String>>,
) -> Caveats {
    let mut caveats = Caveats {
        untouched_faults: untouched.clone(),
        ..Caveats::default()
    };
    let steady: Vec<&str> = plan
        .phases
        .iter()
        .take_while(|p| p.faults.is_empty())
        .map(|p| p.name.as_str())
        .collect();
    // Users the healthy service keeps busy at the offered rate (Little's law), from its mean service
    // time in the steady state.
    let needed = latencies
        .mean_service_ms(&steady)
        .map(|mean_ms| plan.rate * mean_ms / 1000.0);
    let phases = plan.phases.iter().map(|p| p.name.as_str());
    for phase in phases.clone().chain([RUN_PHASE]) {
        let latency_p99 = stats.get(phase, Metric::P99Ms);
        let schedule = latencies.schedule(phase);
        if let Some(reason) = generator_limit(plan.users, schedule, needed, latency_p99, phase) {
            caveats.generator.insert(phase.to_owned(), reason);
        }
    }
    for phase in &plan.phases {
        // The steady state (every phase before the first fault) must reach the offered rate: otherwise
        // the load generator, not the system, set the figures. During and after a fault, a shortfall
        // is the system's own story (a stall, a slow recovery), which the predictions judge, unless the
        // generator's own record says it was the generator.
        if steady.contains(&phase.name.as_str())
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

/// Why the generator, not the service, kept `phase`'s load from being offered, if it did: it was
/// late with a user free (its CPU or timer) by more than `OWN_LAG_LIMIT_MS` and by more than a
/// quarter of the phase's own latency (`latency_p99`: a lateness that small next to what the phase
/// measures moves none of its figures), or every user was busy while even the healthy service would
/// have kept `needed` of them busy at this rate, more than the pool can give: too few users. An
/// exhausted pool with enough users for the healthy service is the service's doing (a stall, a
/// slowdown, the catch-up after one), and shows as latency from the slot.
fn generator_limit(
    users: u32,
    schedule: Option<&ScheduleSecond>,
    needed: Option<f64>,
    latency_p99: Option<f64>,
    phase: &str,
) -> Option<String> {
    let schedule = schedule.filter(|s| s.sent > 0)?;
    let own = quantile_ms(&schedule.own_lag_us, 0.99);
    if own > OWN_LAG_LIMIT_MS && own > latency_p99.unwrap_or(0.0) * OWN_LAG_SHARE {
        return Some(format!(
            "in {phase}, the load generator sent late by its own doing (p99 {own:.0} ms after its slot with a user free: its CPU or timer), so the load offered was not what the plan says"
        ));
    }
    let behind = quantile_ms(&schedule.behind_us, 0.99);
    let exhausted = schedule.busy_peak >= users && behind > POOL_WAIT_LIMIT_MS;
    let needed = needed.filter(|n| *n > f64::from(users) * POOL_UTILISATION)?;
    exhausted.then(|| {
        format!(
            "in {phase}, all {users} users were busy and requests waited up to {behind:.0} ms (p99) for one, and even the steady state's service time needs {needed:.0} users at this rate (Little's law): too few users for the rate (raise load.users)"
        )
    })
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

    /// A phase's schedule: every send `behind_ms` late, `own_ms` of it with a user free, and at most
    /// `busy` users waiting on an answer at once.
    fn schedule(behind_ms: u64, own_ms: u64, busy: u32) -> ScheduleSecond {
        let mut behind_us = Histogram::new(3).unwrap();
        let mut own_lag_us = Histogram::new(3).unwrap();
        behind_us.record(behind_ms * 1000 + 1).unwrap();
        own_lag_us.record(own_ms * 1000 + 1).unwrap();
        ScheduleSecond {
            due: 100,
            sent: 100,
            behind_us,
            own_lag_us,
            busy_peak: busy,
        }
    }

    /// A second of `ok` and `errors` checkouts, `logged_out` of the errors a logged-out user's.
    fn requests(ok: u64, errors: u64, logged_out: u64) -> SecondSample {
        let mut latency_us = Histogram::new(3).unwrap();
        latency_us.record_n(1000, ok + errors).unwrap();
        let checkout = crate::load::GroupSecond {
            group: Group::Checkout,
            ok,
            expected: 0,
            errors,
            logged_out,
            service_us: latency_us.clone(),
            latency_us,
        };
        SecondSample {
            unix_second: 0,
            groups: vec![checkout],
            schedule: schedule(0, 0, 1),
        }
    }

    /// pretix's Redis back after an outage (a quick run of 2026-12-05): one second completed a
    /// single failed order, the next three 39 good ones. Its error rate is 1 in 40, not the mean of
    /// its seconds' rates (1.0, 0, 0, 0: 0.25), which refuted a prediction the orders bore out.
    #[test]
    fn a_phases_shares_are_over_its_requests_not_a_mean_of_its_seconds() {
        let mut latencies = PhaseLatencies::default();
        for second in [
            requests(0, 1, 1),
            requests(9, 0, 0),
            requests(17, 0, 0),
            requests(13, 0, 0),
        ] {
            latencies.add("after", &second);
        }
        let mut stats = PhaseStats::default();
        latencies.figures(&mut stats);
        assert_eq!(stats.get("after", Metric::ErrorRate), Some(1.0 / 40.0));
        assert_eq!(stats.get("after", Metric::LoggedOutShare), Some(1.0 / 40.0));
        assert_eq!(stats.get(RUN_PHASE, Metric::ErrorRate), Some(1.0 / 40.0));
    }

    /// retry-storm's defended baseline in a CI run: five seconds of one payment request a checkout,
    /// one of them without the client's figures (its second came in the next sample).
    #[test]
    fn a_ratio_counts_only_the_seconds_that_have_both_figures() {
        let (pay, checkouts) = (Metric::PaymentRequestsPerS, Metric::CheckoutsPerS);
        let samples: Vec<Sample> = [Some(20.0), Some(20.0), None, Some(20.0), Some(19.0)]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut figures = vec![(pay, 20.0)];
                figures.extend(c.map(|c| (checkouts, c)));
                second("baseline", i as f64 + 1.0, &figures)
            })
            .collect();
        let ratio = ratio_of_totals(&samples, "baseline", pay, checkouts).unwrap();
        assert!((ratio - 80.0 / 79.0).abs() < 1e-9, "{ratio}");
        let none: Vec<Sample> = samples.iter().filter(|s| s.values.len() == 1).cloned().collect();
        assert_eq!(ratio_of_totals(&none, "baseline", pay, checkouts), None);
    }

    #[test]
    fn the_generator_is_blamed_only_for_what_it_did_itself() {
        // Late with a user free: its own CPU or timer.
        let starved = generator_limit(20, Some(&schedule(80, 70, 5)), Some(2.0), Some(90.0), "fault");
        assert!(starved.is_some_and(|r| r.contains("by its own doing")));
        // As late, in a phase whose requests take seconds: it moved none of its figures.
        let slow = generator_limit(20, Some(&schedule(80, 70, 5)), Some(2.0), Some(3000.0), "fault");
        assert_eq!(slow, None);
        // Every user busy, and even the healthy service needs 30 of the 20 at this rate: too few users.
        let few = generator_limit(20, Some(&schedule(900, 1, 20)), Some(30.0), None, "fault");
        assert!(few.is_some_and(|r| r.contains("too few users")));
        // Every user busy, though the healthy service needs 2: a stall's doing, judged as measured.
        let stalled = generator_limit(20, Some(&schedule(900, 1, 20)), Some(2.0), None, "fault");
        assert_eq!(stalled, None);
        // On schedule.
        let kept = generator_limit(20, Some(&schedule(2, 1, 6)), Some(30.0), None, "fault");
        assert_eq!(kept, None);
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
        // 55 requests over the 30 checkouts of the same two seconds: the first second's checkouts
        // paid for requests nobody counted (a model that counted them read 1.1, and a second without
        // the client's figures the other way round read 1.24 where every second read 1.0).
        assert_eq!(ratio("storm"), Some(55.0 / 30.0));
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
