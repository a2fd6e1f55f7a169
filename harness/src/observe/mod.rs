//! Watching the system while it is loaded and broken: once a second, every service replica's counters,
//! Postgres's and Redis's, turned into rates (statements/s, cache hit ratio, orders/s...) for the time
//! series: per replica, and summed over the replicas. With a balancer, also which replicas its health
//! checks have in and how many requests it sent each; with a mail server, what it delivered, counted in
//! its own mailbox, and the outbox's backlog in Postgres; with a payment provider, the requests it got
//! and the authorisations it granted, from its own ledger. On a user's target, the same service
//! rates from its entry replicas' own `/metrics`, by the series its Compose file maps to each counter,
//! and its databases' transactions and rows read (`target_produces` says which metrics).
//!
//! A source that cannot be read in a second (a replica restarting, Postgres stopped) leaves its
//! metrics out of that second rather than failing the run; counters that went backwards (a restarted
//! process) are skipped for one sample.

pub mod cache;
pub mod database;
pub mod service;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use self::cache::{CacheCounters, CacheProbe};
use self::database::{Activity, DatabaseCounters, DatabaseProbe};
use self::service::{CounterMap, ServiceCounters};
use crate::env::Lab;
use crate::env::balancer::ServerStats;
use crate::env::target::lab::TargetLab;
use crate::faults::proxy::client::ProxyClient;
use crate::provider::LedgerCounts;
use crate::vocabulary::{Counter, Link, Metric, Producer};

/// How long one source may take to answer before the second goes without it.
const READ_DEADLINE: Duration = Duration::from_millis(500);

/// The figures of one second.
pub type Figures = BTreeMap<Metric, f64>;

/// What one sample saw: the whole lab's rates, and each replica's own (by replica number, from 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub total: Figures,
    pub replicas: BTreeMap<u32, Figures>,
}

#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    /// Per replica, from 1 (index 0).
    services: Vec<Option<ServiceCounters>>,
    database: Option<DatabaseCounters>,
    cache: Option<CacheCounters>,
    /// The balancer's view of each replica, when the lab has a balancer and it answered.
    balancer: Option<Vec<ServerStats>>,
    /// Messages in the mail server's mailbox, when the lab has one and it answered.
    mailbox: Option<f64>,
    /// The payment provider's ledger counts, when the lab has one and it answered.
    ledger: Option<LedgerCounts>,
    /// The proxy's count of every request the payments link has carried.
    payment_requests: Option<u64>,
    /// A target's databases' activity, summed, when every one of them answered.
    activity: Option<Activity>,
}

#[derive(Debug, Default)]
pub struct Observer {
    database: Option<DatabaseProbe>,
    cache: Option<CacheProbe>,
    last: Option<Reading>,
    /// For a target's `/metrics` (the reference lab's replicas are asked through `Lab::http`).
    http: reqwest::Client,
    /// A probe per database of a target, connected at its first reading.
    target_databases: Vec<Option<DatabaseProbe>>,
}

/// The Postgres figures a target's databases give: what every Postgres counts.
const TARGET_POSTGRES: [Metric; 2] = [Metric::PgTransactionsPerS, Metric::PgTuplesReadPerS];

/// Whether a user's target produces `metric` from its own sources: service rates from the counters
/// its Compose file maps (`mapped`), Postgres activity when it names a database. The client's and the
/// judge's figures are the experiment's to decide.
pub fn target_produces(metric: Metric, mapped: &[Counter], databases: bool) -> bool {
    match metric.owner().producer {
        Producer::Service => {
            let feeding = Counter::feeding(metric);
            !feeding.is_empty() && feeding.iter().all(|c| mapped.contains(c))
        }
        Producer::Postgres => databases && TARGET_POSTGRES.contains(&metric),
        _ => false,
    }
}

impl Observer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The guarded checkouts and payment releases still running in the replicas
    /// (`fortress_payments_in_flight`, summed), or `None` when a replica could not be read.
    pub async fn payments_in_flight(lab: &Lab) -> Option<f64> {
        Self::gauges_summed(lab, &[service::PAYMENTS_IN_FLIGHT]).await
    }

    /// The work the replicas still do for clients that may be gone: payments on their own tasks and
    /// password checks on the blocking pool (summed), or `None` when a replica could not be read.
    /// A step of load started while this is above 0 is judged on the last one's leftovers.
    pub async fn detached_work(lab: &Lab) -> Option<f64> {
        let gauges = [service::PAYMENTS_IN_FLIGHT, service::PASSWORD_CHECKS_IN_FLIGHT];
        Self::gauges_summed(lab, &gauges).await
    }

    /// The gauges `names`, summed over every replica, or `None` when a replica could not be read
    /// or lacks one of them.
    async fn gauges_summed(lab: &Lab, names: &[&str]) -> Option<f64> {
        let read = |replica| async move {
            let url = lab.service_url(replica).await.ok()?;
            let response = lab.http().get(format!("{url}/metrics")).send().await.ok()?;
            let text = response.text().await.ok()?;
            names
                .iter()
                .map(|name| service::gauge(&text, name))
                .sum::<Option<f64>>()
        };
        let read = futures::future::join_all(lab.replicas().map(read));
        let each = tokio::time::timeout(READ_DEADLINE, read).await.ok()?;
        each.into_iter().sum()
    }

    async fn read_service(lab: &Lab, replica: u32) -> Option<ServiceCounters> {
        let read = async {
            let url = lab.service_url(replica).await.ok()?;
            let response = lab.http().get(format!("{url}/metrics")).send().await.ok()?;
            Some(service::parse(&response.text().await.ok()?))
        };
        tokio::time::timeout(READ_DEADLINE, read).await.ok().flatten()
    }

    async fn read_database(slot: &mut Option<DatabaseProbe>, lab: &Lab) -> Option<DatabaseCounters> {
        if slot.is_none() {
            let url = lab.postgres_url().await.ok()?;
            *slot = tokio::time::timeout(READ_DEADLINE, DatabaseProbe::connect(&url))
                .await
                .ok()?
                .ok();
        }
        let probe = slot.as_mut()?;
        match tokio::time::timeout(READ_DEADLINE, probe.read()).await {
            Ok(Ok(counters)) => Some(counters),
            _ => {
                *slot = None; // reconnect next second
                None
            }
        }
    }

    async fn read_cache(slot: &mut Option<CacheProbe>, lab: &Lab) -> Option<CacheCounters> {
        if slot.is_none() {
            let url = lab.redis_url().await.ok()?;
            *slot = tokio::time::timeout(READ_DEADLINE, CacheProbe::connect(&url, READ_DEADLINE))
                .await
                .ok()?
                .ok();
        }
        let probe = slot.as_mut()?;
        match tokio::time::timeout(READ_DEADLINE, probe.read()).await {
            Ok(Ok(counters)) => counters,
            _ => {
                *slot = None; // Redis is down or restarted: reconnect next second
                None
            }
        }
    }

    /// The proxy's count of requests on the payments link (labs with a provider).
    async fn read_payment_requests(lab: &Lab) -> Option<u64> {
        lab.provider.as_ref()?;
        let read = async {
            let state = ProxyClient::of(lab).await.ok()?.link(Link::Payments).await.ok()?;
            state.http_requests_total
        };
        tokio::time::timeout(READ_DEADLINE, read).await.ok().flatten()
    }

    /// Reads every source (at once: a hung source costs the second at most one deadline) and answers
    /// the rates since the previous call (nothing on the first call).
    pub async fn sample(&mut self, lab: &Lab) -> Rates {
        let services = futures::future::join_all(lab.replicas().map(|r| Self::read_service(lab, r)));
        let balancer = async {
            tokio::time::timeout(READ_DEADLINE, lab.balancer_stats())
                .await
                .ok()
                .flatten()
        };
        let mailbox = async {
            let count = tokio::time::timeout(READ_DEADLINE, lab.mailbox_size());
            count.await.ok()?.ok().map(f64::from)
        };
        let ledger = async {
            let counts = tokio::time::timeout(READ_DEADLINE, lab.ledger_counts());
            counts.await.ok()?.ok()
        };
        let (services, database, cache, balancer, mailbox, (ledger, payment_requests)) = tokio::join!(
            services,
            Self::read_database(&mut self.database, lab),
            Self::read_cache(&mut self.cache, lab),
            balancer,
            mailbox,
            async { tokio::join!(ledger, Self::read_payment_requests(lab)) },
        );
        let reading = Reading {
            at: Instant::now(),
            services,
            database,
            cache,
            balancer,
            mailbox,
            ledger,
            payment_requests,
            activity: None,
        };
        self.advance(reading)
    }

    /// A user's target's rates: its entry replicas' counters, from their own `/metrics` by the
    /// series the Compose file maps (nothing when it names no `metrics`).
    pub async fn sample_target(&mut self, lab: &TargetLab) -> Rates {
        let mapped: Vec<Counter> = (lab.metrics.iter())
            .flat_map(|m| m.counters.iter().map(|(counter, _)| *counter))
            .collect();
        let (services, activity) = tokio::join!(
            Self::read_target_services(&self.http, lab),
            Self::read_target_databases(&mut self.target_databases, lab),
        );
        let mut reading = Reading::of_services(services);
        reading.activity = activity;
        let mut rates = self.advance(reading);
        // A metric the target has no source for would read 0: it was not measured.
        let databases = !lab.databases.is_empty();
        let produced = |metric: &Metric, _: &mut f64| target_produces(*metric, &mapped, databases);
        rates.total.retain(produced);
        for figures in rates.replicas.values_mut() {
            figures.retain(produced);
        }
        rates
    }

    /// Each entry replica's counters, by the series the target maps (none without `metrics`).
    async fn read_target_services(http: &reqwest::Client, lab: &TargetLab) -> Vec<Option<ServiceCounters>> {
        let Some(metrics) = &lab.metrics else {
            return Vec::new();
        };
        let map = CounterMap::new(metrics.counters.clone());
        let urls = lab.metrics_urls().await;
        let services = urls.iter().map(|url| async {
            let read = async {
                let response = lab.metrics_request(http, url.as_deref()?).send().await.ok()?;
                Some(map.read(&response.error_for_status().ok()?.text().await.ok()?))
            };
            tokio::time::timeout(READ_DEADLINE, read).await.ok().flatten()
        });
        futures::future::join_all(services).await
    }

    /// The target's databases' activity, summed; `None` when one of them did not answer (its
    /// probe reconnects the next second).
    async fn read_target_databases(
        probes: &mut Vec<Option<DatabaseProbe>>,
        lab: &TargetLab,
    ) -> Option<Activity> {
        probes.resize_with(lab.databases.len(), || None);
        let mut total = Activity::default();
        for (slot, db) in probes.iter_mut().zip(&lab.databases) {
            if slot.is_none() {
                let url = lab.database_url(db).await.ok()?;
                *slot = tokio::time::timeout(READ_DEADLINE, DatabaseProbe::connect_plain(&url))
                    .await
                    .ok()?
                    .ok();
            }
            match tokio::time::timeout(READ_DEADLINE, slot.as_mut()?.read_activity()).await {
                Ok(Ok(activity)) => total = total + activity,
                _ => {
                    *slot = None;
                    return None;
                }
            }
        }
        (!probes.is_empty()).then_some(total)
    }

    /// The rates since the previous reading (nothing on the first), keeping `reading` for the next.
    fn advance(&mut self, reading: Reading) -> Rates {
        let rates = self
            .last
            .as_ref()
            .map(|last| rates(last, &reading))
            .unwrap_or_default();
        self.last = Some(reading);
        rates
    }
}

impl Reading {
    /// A reading of the service replicas' counters alone (a target has no other source yet).
    fn of_services(services: Vec<Option<ServiceCounters>>) -> Self {
        Self {
            at: Instant::now(),
            services,
            database: None,
            cache: None,
            balancer: None,
            mailbox: None,
            ledger: None,
            payment_requests: None,
            activity: None,
        }
    }
}

fn rates(before: &Reading, now: &Reading) -> Rates {
    let seconds = now.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let mut rates = Rates::default();
    let mut summed: Option<ServiceCounters> = None;
    for (replica, (a, b)) in (1..).zip(before.services.iter().zip(&now.services)) {
        if let (Some(a), Some(b)) = (a, b)
            && let Some(delta) = b.since(a)
        {
            rates.replicas.insert(replica, service_rates(&delta, seconds));
            summed = Some(summed.map_or(delta, |s| s + delta));
        }
    }
    if let Some(delta) = summed {
        rates.total = service_rates(&delta, seconds);
    }
    let delta = |a: f64, b: f64| (b >= a).then_some(b - a);
    let mut per_second = |metric, value: Option<f64>| {
        if let Some(v) = value {
            rates.total.insert(metric, v / seconds);
        }
    };
    if let (Some(a), Some(b)) = (before.mailbox, now.mailbox) {
        per_second(Metric::MailDeliveredPerS, delta(a, b));
    }
    if let (Some(a), Some(b)) = (before.payment_requests, now.payment_requests) {
        per_second(Metric::PaymentRequestsPerS, delta(a as f64, b as f64));
    }
    if let (Some(a), Some(b)) = (before.ledger, now.ledger) {
        let count = |n: u64| n as f64;
        per_second(
            Metric::ProviderRequestsPerS,
            delta(count(a.requests), count(b.requests)),
        );
        per_second(
            Metric::ProviderAuthorizedPerS,
            delta(count(a.authorized), count(b.authorized)),
        );
    }
    if let (Some(a), Some(b)) = (before.activity, now.activity) {
        per_second(Metric::PgTransactionsPerS, delta(a.transactions, b.transactions));
        per_second(Metric::PgTuplesReadPerS, delta(a.tuples_read, b.tuples_read));
    }
    if let (Some(a), Some(b)) = (before.database, now.database) {
        per_second(Metric::PgStatementsPerS, delta(a.statements, b.statements));
        per_second(Metric::PgTransactionsPerS, delta(a.transactions, b.transactions));
        per_second(Metric::PgRowsPerS, delta(a.rows, b.rows));
        per_second(Metric::PgTuplesReadPerS, delta(a.tuples_read, b.tuples_read));
    }
    // A Redis that was restarted starts its counters again: the backwards delta is skipped.
    if let (Some(a), Some(b)) = (before.cache, now.cache) {
        per_second(Metric::RedisCommandsPerS, delta(a.commands, b.commands));
        per_second(Metric::RedisHitsPerS, delta(a.hits, b.hits));
        per_second(Metric::RedisMissesPerS, delta(a.misses, b.misses));
    }
    if let Some(database) = now.database {
        rates.total.insert(Metric::OutboxPending, database.outbox_pending);
        rates.total.insert(Metric::OutboxDead, database.outbox_dead);
    }
    if let Some(servers) = &now.balancer {
        balancer_rates(before.balancer.as_deref(), servers, seconds, &mut rates);
    }
    rates
}

/// Which replicas the balancer has in (now), and the requests it sent each and had to retry (since
/// `before`).
fn balancer_rates(before: Option<&[ServerStats]>, now: &[ServerStats], seconds: f64, rates: &mut Rates) {
    let mut up = 0.0;
    let (mut sent, mut retried) = (0.0, 0.0);
    for server in now {
        let figures = rates.replicas.entry(server.replica).or_default();
        figures.insert(Metric::ReplicasUp, f64::from(u8::from(server.up)));
        up += f64::from(u8::from(server.up));
        let earlier = before.and_then(|b| b.iter().find(|s| s.replica == server.replica));
        // Counters restart with HAProxy only; a smaller value is a reading to skip, not a negative rate.
        if let Some(earlier) = earlier
            && server.requests >= earlier.requests
            && server.retried >= earlier.retried
        {
            let rps = (server.requests - earlier.requests) / seconds;
            let retries = (server.retried - earlier.retried) / seconds;
            figures.insert(Metric::BalancerRps, rps);
            figures.insert(Metric::BalancerRetriesPerS, retries);
            sent += rps;
            retried += retries;
        }
    }
    rates.total.insert(Metric::ReplicasUp, up);
    if before.is_some() {
        rates.total.insert(Metric::BalancerRps, sent);
        rates.total.insert(Metric::BalancerRetriesPerS, retried);
    }
}

/// The service's own figures from what its counters did in `seconds`.
fn service_rates(delta: &ServiceCounters, seconds: f64) -> Figures {
    let mut out = Figures::new();
    out.insert(Metric::ServiceRps, delta.responses / seconds);
    out.insert(Metric::DbStatementsPerS, delta.statements / seconds);
    out.insert(Metric::CacheErrorsPerS, delta.cache_errors / seconds);
    out.insert(Metric::CacheMissesPerS, delta.cache_misses / seconds);
    out.insert(Metric::OrdersPerS, delta.orders_created / seconds);
    out.insert(Metric::SoldOutPerS, delta.orders_sold_out / seconds);
    let reads = delta.cache_hits + delta.cache_misses + delta.cache_errors + delta.cache_bypassed;
    if reads > 0.0 {
        out.insert(Metric::CacheHitRatio, delta.cache_hits / reads);
    }
    if delta.responses > 0.0 {
        out.insert(Metric::Http5xxRate, delta.responses_5xx / delta.responses);
    }
    out
}

/// The rates of two readings in which every source answered, one second apart: every metric the
/// observer produces, for the test that each metric's declared producer produces it.
#[cfg(test)]
pub(crate) fn rates_of_every_source() -> Rates {
    let reading = |at: Instant, n: f64| Reading {
        at,
        services: vec![
            Some(ServiceCounters {
                statements: 10.0 * n,
                cache_hits: 8.0 * n,
                cache_misses: 2.0 * n,
                responses: 10.0 * n,
                responses_5xx: n,
                ..Default::default()
            });
            2
        ],
        database: Some(DatabaseCounters {
            statements: 20.0 * n,
            ..Default::default()
        }),
        cache: Some(CacheCounters {
            commands: 30.0 * n,
            hits: 8.0 * n,
            misses: 2.0 * n,
        }),
        balancer: Some(vec![ServerStats {
            replica: 1,
            up: true,
            requests: 10.0 * n,
            in_flight: 0.0,
            retried: n,
            taken_out: false,
        }]),
        mailbox: Some(5.0 * n),
        ledger: Some(LedgerCounts {
            requests: 4 * n as u64,
            authorized: 3 * n as u64,
            voided: 0,
        }),
        payment_requests: Some(4 * n as u64),
        activity: None,
    };
    let t0 = Instant::now();
    rates(&reading(t0, 1.0), &reading(t0 + Duration::from_secs(1), 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a target's plan lets a prediction judge (`Counter::feeding`) is what `service_rates`
    /// computes: each service metric appears from the counters it names alone.
    #[test]
    fn each_service_metric_comes_from_the_counters_it_names() {
        let service = Metric::ALL
            .iter()
            .filter(|m| m.owner().producer == Producer::Service);
        for &metric in service {
            let feeding = Counter::feeding(metric);
            assert!(!feeding.is_empty(), "{metric} names no counter");
            let mut delta = ServiceCounters::default();
            for &counter in feeding {
                *delta.get_mut(counter) = 10.0;
            }
            assert!(
                service_rates(&delta, 1.0).contains_key(&metric),
                "{metric} is not computed from {feeding:?}"
            );
        }
    }

    fn reading(at: Instant, replicas: &[(f64, f64, f64)], pg: f64) -> Reading {
        let services = replicas
            .iter()
            .map(|&(hits, misses, statements)| {
                Some(ServiceCounters {
                    cache_hits: hits,
                    cache_misses: misses,
                    statements,
                    ..Default::default()
                })
            })
            .collect();
        Reading {
            at,
            services,
            database: Some(DatabaseCounters {
                statements: pg,
                rows: 0.0,
                transactions: 0.0,
                tuples_read: 0.0,
                ..Default::default()
            }),
            cache: None,
            balancer: None,
            mailbox: None,
            ledger: None,
            payment_requests: None,
            activity: None,
        }
    }

    #[test]
    fn rates_are_deltas_over_elapsed_time_and_restarts_are_skipped() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let r = rates(
            &reading(t0, &[(100.0, 10.0, 50.0)], 80.0),
            &reading(t1, &[(190.0, 20.0, 70.0)], 120.0),
        );
        assert_eq!(r.total[&Metric::CacheHitRatio], 0.9);
        assert_eq!(r.total[&Metric::DbStatementsPerS], 10.0);
        assert_eq!(r.total[&Metric::PgStatementsPerS], 20.0);
        // The service restarted: its counters start again from zero.
        let r = rates(
            &reading(t0, &[(100.0, 10.0, 50.0)], 80.0),
            &reading(t1, &[(3.0, 1.0, 2.0)], 120.0),
        );
        assert!(
            !r.total.contains_key(&Metric::DbStatementsPerS) && !r.total.contains_key(&Metric::CacheHitRatio)
        );
        assert_eq!(r.total[&Metric::PgStatementsPerS], 20.0);
    }

    #[test]
    fn replicas_are_summed_from_their_counters_not_their_ratios() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        // Replica 1 hits every read (10 of 10), replica 2 misses most (10 of 90).
        let r = rates(
            &reading(t0, &[(0.0, 0.0, 0.0), (0.0, 0.0, 0.0)], 0.0),
            &reading(t1, &[(10.0, 0.0, 4.0), (10.0, 80.0, 6.0)], 0.0),
        );
        assert_eq!(r.replicas[&1][&Metric::CacheHitRatio], 1.0);
        assert_eq!(r.replicas[&2][&Metric::DbStatementsPerS], 6.0);
        assert_eq!(
            r.total[&Metric::CacheHitRatio],
            0.2,
            "20 hits of 100 reads, not the mean of 1 and 1/9"
        );
        assert_eq!(r.total[&Metric::DbStatementsPerS], 10.0);
        // A replica that could not be read (killed) leaves the sum to the others.
        let mut later = reading(t1, &[(10.0, 0.0, 4.0), (0.0, 0.0, 0.0)], 0.0);
        later.services[1] = None;
        let r = rates(&reading(t0, &[(0.0, 0.0, 0.0), (0.0, 0.0, 0.0)], 0.0), &later);
        assert_eq!(r.total[&Metric::DbStatementsPerS], 4.0);
        assert!(!r.replicas.contains_key(&2));
    }

    #[test]
    fn payment_requests_are_a_rate_of_the_links_lifetime_count() {
        let t0 = Instant::now();
        let mut before = reading(t0, &[], 0.0);
        before.payment_requests = Some(40);
        let mut now = reading(t0 + Duration::from_secs(2), &[], 0.0);
        now.payment_requests = Some(100);
        assert_eq!(rates(&before, &now).total[&Metric::PaymentRequestsPerS], 30.0);
        // A restarted proxy counts from zero again: no rate is made up.
        now.payment_requests = Some(7);
        assert!(
            !rates(&before, &now)
                .total
                .contains_key(&Metric::PaymentRequestsPerS)
        );
    }

    #[test]
    fn the_balancer_says_which_replicas_are_in_and_what_each_was_sent_and_retried() {
        let t0 = Instant::now();
        let server = |replica, up, requests| ServerStats {
            replica,
            up,
            requests,
            in_flight: 0.0,
            retried: requests / 20.0,
            taken_out: false,
        };
        let mut before = reading(t0, &[], 0.0);
        before.balancer = Some(vec![server(1, true, 100.0), server(2, true, 100.0)]);
        let mut now = reading(t0 + Duration::from_secs(2), &[], 0.0);
        now.balancer = Some(vec![server(1, true, 160.0), server(2, false, 120.0)]);
        let r = rates(&before, &now);
        assert_eq!(r.total[&Metric::ReplicasUp], 1.0);
        assert_eq!(r.replicas[&2][&Metric::ReplicasUp], 0.0);
        assert_eq!(r.replicas[&1][&Metric::BalancerRps], 30.0);
        assert_eq!(r.total[&Metric::BalancerRps], 40.0);
        // Retried: 5 -> 8 and 5 -> 6 in 2 s.
        assert_eq!(r.replicas[&1][&Metric::BalancerRetriesPerS], 1.5);
        assert_eq!(r.total[&Metric::BalancerRetriesPerS], 2.0);
    }
}
