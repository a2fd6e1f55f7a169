//! The client's figures of one second, as the metrics the rest of the lab speaks: what was offered and
//! what completed, errors and logouts, latency from the slot and service time from the send, and how
//! well the generator kept its schedule. This is the producer of every metric whose owner is the
//! client (`Producer::Client`).

use std::collections::BTreeMap;

use super::sample::{Group, SecondSample, quantile_ms};
use crate::vocabulary::Metric;

/// The 95th-percentile metric of a group's requests, for the groups that have one.
pub fn group_p95(group: Group) -> Option<Metric> {
    match group {
        Group::Browse => Some(Metric::BrowseP95Ms),
        Group::Checkout => Some(Metric::CheckoutP95Ms),
        Group::History => Some(Metric::HistoryP95Ms),
        _ => None,
    }
}

/// The client's figures of the seconds one sample covers, as a mean second: a sampler that fell a
/// second behind finds two finished seconds, and both count. Counts (what completed, what was due,
/// checkouts) are per second, shares and percentiles over every request of them, the busy peak the
/// higher. `None` when no second finished.
pub fn client_figures_of(seconds: &[SecondSample]) -> Option<BTreeMap<Metric, f64>> {
    let (first, rest) = seconds.split_first()?;
    let mut merged = first.clone();
    for second in rest {
        merged.merge(second);
    }
    let mut values = client_figures(&merged);
    let n = seconds.len() as f64;
    for count in [Metric::ThroughputRps, Metric::OfferedRps, Metric::CheckoutsPerS] {
        if let Some(value) = values.get_mut(&count) {
            *value /= n;
        }
    }
    Some(values)
}

/// Every client figure of `second`: what completed, what was due and how many users were busy,
/// always; latency figures only when something completed in it, and the generator's lag only when
/// something left in it (a second of total stall has neither: its requests are counted late, in the
/// seconds they end in, from their slots).
pub fn client_figures(second: &SecondSample) -> BTreeMap<Metric, f64> {
    let mut values = BTreeMap::new();
    let count = second.count() as f64;
    let schedule = &second.schedule;
    values.insert(Metric::ThroughputRps, count);
    values.insert(Metric::OfferedRps, schedule.due as f64);
    values.insert(Metric::BusyUsers, f64::from(schedule.busy_peak));
    if schedule.sent > 0 {
        values.insert(Metric::GeneratorLagMs, quantile_ms(&schedule.behind_us, 0.99));
        values.insert(Metric::GeneratorOwnLagMs, quantile_ms(&schedule.own_lag_us, 0.99));
    }
    if count == 0.0 {
        return values;
    }
    let latency = second.latency_us(Group::ALL);
    values.insert(Metric::ErrorRate, second.errors() as f64 / count);
    if let Some(share) = second.logged_out_share() {
        values.insert(Metric::LoggedOutShare, share);
    }
    values.insert(Metric::P50Ms, quantile_ms(&latency, 0.50));
    values.insert(Metric::P95Ms, quantile_ms(&latency, 0.95));
    values.insert(Metric::P99Ms, quantile_ms(&latency, 0.99));
    values.insert(Metric::ServiceP95Ms, quantile_ms(&second.service_us(), 0.95));
    if let Some(checkouts) = second.group(Group::Checkout) {
        values.insert(Metric::CheckoutsPerS, checkouts.count() as f64);
    }
    for group in &second.groups {
        if let Some(p95) = group_p95(group.group) {
            values.insert(p95, quantile_ms(&group.latency_us, 0.95));
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::load::sample::{GroupSecond, RequestOutcome, RequestTiming, ScheduleSecond};

    /// A second of `ok` browse requests taking `latency_ms` each, and `due` slots.
    fn second(unix_second: i64, ok: u32, latency_ms: u64, due: u64) -> SecondSample {
        let mut browse = GroupSecond::new(Group::Browse);
        let due_at = Instant::now();
        let done = due_at + Duration::from_millis(latency_ms);
        let timing = RequestTiming {
            due: due_at,
            free: due_at,
            sent: due_at,
            completed: done,
        };
        for _ in 0..ok {
            browse.add(RequestOutcome::Ok, &timing);
        }
        let mut schedule = ScheduleSecond::new(0);
        schedule.due = due;
        SecondSample {
            unix_second,
            groups: vec![browse],
            schedule,
        }
    }

    /// A sampler a second late finds two finished seconds: the sample is their mean second, not the
    /// later one alone (which dropped 10 fast requests and read 30 requests/s here).
    #[test]
    fn two_finished_seconds_make_one_mean_second() {
        let values = client_figures_of(&[second(100, 10, 1, 20), second(101, 30, 100, 20)]).unwrap();
        assert_eq!(values[&Metric::ThroughputRps], 20.0);
        assert_eq!(values[&Metric::OfferedRps], 20.0);
        let p50 = values[&Metric::P50Ms];
        assert!((99.0..=101.0).contains(&p50), "p50 over all 40 requests: {p50}");
        let p = |q| values[&q];
        assert!(p(Metric::P95Ms) >= p(Metric::P50Ms));
        assert!(client_figures_of(&[]).is_none());
        let one = client_figures_of(&[second(100, 10, 1, 20)]).unwrap();
        assert_eq!(one, client_figures(&second(100, 10, 1, 20)));
    }
}
