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
