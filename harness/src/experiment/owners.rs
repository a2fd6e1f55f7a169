//! Every metric has the owner it declares: each producer, fed everything it reads, produces every
//! metric declared as its own and none declared as another's. The producers are checked in three
//! groups: the client (`load::client_figures`), the observer (whose readings of the service, Postgres,
//! Redis, the balancer, the mail server, the provider and the proxy come out of one `rates`), and the
//! judge. A metric nothing produces (a prediction on it could only ever be inconclusive) fails here.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::definition::{Profile, RUN_PHASE, parse};
use super::invariants::InvariantReport;
use super::phase_figures::{PhaseLatencies, derived_stats, per_request_figures};
use super::timing::Probes;
use super::verdict::{PhaseStats, Sample};
use crate::load::{self, Group, Recorder, RequestOutcome};
use crate::observe::rates_of_every_source;
use crate::vocabulary::{Metric, Producer};

/// A plan with a fault phase and a phase after it, a mail server and a payment provider.
const PLAN: &str = r#"
name = "owners"
story = "every producer at work"
[topology]
replicas = 2
mail = true
payments = true
[load]
rate = 10
users = 4
mix = { browse = 1, checkout = 1, history = 1, login_probe = 1 }
[[phases]]
name = "baseline"
seconds = 2
[[phases]]
name = "fault"
seconds = 2
faults = [{ kind = "kill", target = "redis" }]
[[phases]]
name = "recovery"
seconds = 2
[variants.defended]
modes = {}
"#;

/// One second of every kind of request, sent a little behind its slot.
fn client_seconds() -> (Vec<load::SecondSample>, Recorder) {
    let recorder = Recorder::new();
    recorder.schedule(Instant::now(), 10.0);
    for (group, outcome) in [
        (Group::Browse, RequestOutcome::Ok),
        (Group::Checkout, RequestOutcome::Ok),
        (Group::History, RequestOutcome::LoggedOut),
        (Group::Login, RequestOutcome::Ok),
    ] {
        let due = Instant::now() - Duration::from_millis(5);
        recorder.sending(due, due).done(group, outcome);
    }
    (recorder.take_all(), recorder)
}

fn produced_by_the_client() -> BTreeSet<Metric> {
    let (seconds, _) = client_seconds();
    seconds
        .iter()
        .flat_map(|s| load::client_figures(s).into_keys())
        .collect()
}

fn produced_by_the_observer() -> BTreeSet<Metric> {
    let rates = rates_of_every_source();
    let replicas = rates.replicas.values().flat_map(|r| r.keys().copied());
    rates.total.keys().copied().chain(replicas).collect()
}

/// What the judge adds to a series of seconds that carries every other producer's figures.
fn produced_by_the_judge() -> BTreeSet<Metric> {
    let plan = parse("owners.toml", PLAN, Profile::Standard).unwrap();
    let (seconds, _) = client_seconds();
    let mut latencies = PhaseLatencies::default();
    let mut samples = Vec::new();
    for (i, phase) in ["baseline", "fault", "recovery"].iter().enumerate() {
        latencies.add(phase, &seconds[0]);
        let mut values: BTreeMap<Metric, f64> = rates_of_every_source().total;
        values.extend(load::client_figures(&seconds[0]));
        values.insert(Metric::OutboxPending, 0.0);
        values.insert(Metric::OutboxDead, 0.0);
        per_request_figures(&mut values);
        samples.push(Sample {
            at_s: i as f64 + 1.0,
            phase: (*phase).into(),
            values,
            replicas: BTreeMap::new(),
        });
    }
    let before: BTreeSet<Metric> = samples.iter().flat_map(|s| s.values.keys().copied()).collect();
    let mut stats = PhaseStats::from_samples(&samples);
    derived_stats(&plan, &samples, &latencies, &mut stats);
    let report = InvariantReport {
        payments_charged_twice: Some(0),
        charges_without_order: Some(0),
        orders_emailed_twice: Some(0),
        emails_without_order: Some(0),
        ..InvariantReport::default()
    };
    let probes = Probes {
        known_us: vec![900, 950, 1000, 1100, 980, 1020],
        unknown_us: vec![100, 110, 90, 120, 105, 95],
        pairs: (0..40).map(|i| (900 + 20 * i, 100 + 3 * i)).collect(),
    };
    let end_of_run = report.figures().into_iter().chain(probes.figures());
    let derived = ["baseline", "fault", "recovery", RUN_PHASE]
        .iter()
        .flat_map(|p| stats.phase(p))
        .map(|(metric, _)| metric)
        .filter(|m| !before.contains(m));
    let per_second = [Metric::StatementsPerRequest, Metric::TuplesReadPerRequest];
    derived
        .chain(end_of_run.map(|(m, _)| m))
        .chain(per_second.into_iter().filter(|m| before.contains(m)))
        .collect()
}

#[test]
fn every_metric_is_produced_by_the_producer_it_declares_and_only_by_it() {
    let client = produced_by_the_client();
    let observer = produced_by_the_observer();
    let judge = produced_by_the_judge();
    let mut wrong = Vec::new();
    for &metric in Metric::ALL {
        let producer = metric.owner().producer;
        let (declared, others): (&BTreeSet<Metric>, Vec<&BTreeSet<Metric>>) = match producer {
            Producer::Client => (&client, vec![&observer]),
            Producer::Judge => (&judge, vec![&client, &observer]),
            _ => (&observer, vec![&client]),
        };
        if !declared.contains(&metric) {
            wrong.push(format!(
                "{metric}: declared as the {producer:?}'s, which does not produce it"
            ));
        }
        if others.iter().any(|set| set.contains(&metric)) {
            wrong.push(format!(
                "{metric}: declared as the {producer:?}'s, produced by another"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
