//! Watching the system while it is loaded and broken: once a second, the service's counters,
//! Postgres's and Redis's, turned into rates (statements/s, cache hit ratio, orders/s...) for the time series.
//!
//! A source that cannot be read in a second (the service restarting, Postgres stopped) leaves its
//! metrics out of that second rather than failing the run; counters that went backwards (a restarted
//! process) are skipped for one sample.

pub mod cache;
pub mod database;
pub mod service;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use self::cache::{CacheCounters, CacheProbe};
use self::database::{DatabaseCounters, DatabaseProbe};
use self::service::ServiceCounters;
use crate::env::Lab;
use crate::experiment::metric::Metric;

/// How long one source may take to answer before the second goes without it.
const READ_DEADLINE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    service: Option<ServiceCounters>,
    database: Option<DatabaseCounters>,
    cache: Option<CacheCounters>,
}

#[derive(Debug)]
pub struct Observer {
    database: Option<DatabaseProbe>,
    cache: Option<CacheProbe>,
    last: Option<Reading>,
}

impl Observer {
    pub fn new() -> Self {
        Self {
            database: None,
            cache: None,
            last: None,
        }
    }

    async fn read_service(lab: &Lab) -> Option<ServiceCounters> {
        let read = async {
            let url = lab.service_url(1).await.ok()?;
            let text = lab
                .http()
                .get(format!("{url}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            Some(service::parse(&text))
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

    /// Reads every source (at once: a hung source costs the second at most one deadline) and answers
    /// the rates since the previous call (nothing on the first call).
    pub async fn sample(&mut self, lab: &Lab) -> BTreeMap<Metric, f64> {
        let (service, database, cache) = tokio::join!(
            Self::read_service(lab),
            Self::read_database(&mut self.database, lab),
            Self::read_cache(&mut self.cache, lab),
        );
        let reading = Reading {
            at: Instant::now(),
            service,
            database,
            cache,
        };
        let rates = self.last.map(|last| rates(&last, &reading)).unwrap_or_default();
        self.last = Some(reading);
        rates
    }
}

impl Default for Observer {
    fn default() -> Self {
        Self::new()
    }
}

fn rates(before: &Reading, now: &Reading) -> BTreeMap<Metric, f64> {
    let seconds = now.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let mut out = BTreeMap::new();
    let delta = |a: f64, b: f64| (b >= a).then_some(b - a);
    if let (Some(a), Some(b)) = (before.service, now.service) {
        let d = |f: fn(&ServiceCounters) -> f64| delta(f(&a), f(&b));
        let per_second = |out: &mut BTreeMap<Metric, f64>, metric, value: Option<f64>| {
            if let Some(v) = value {
                out.insert(metric, v / seconds);
            }
        };
        per_second(&mut out, Metric::DbStatementsPerS, d(|c| c.statements));
        per_second(&mut out, Metric::CacheErrorsPerS, d(|c| c.cache_errors));
        per_second(&mut out, Metric::OrdersPerS, d(|c| c.orders_created));
        per_second(&mut out, Metric::SoldOutPerS, d(|c| c.orders_sold_out));
        let reads = [
            d(|c| c.cache_hits),
            d(|c| c.cache_misses),
            d(|c| c.cache_errors),
            d(|c| c.cache_bypassed),
        ];
        if let [Some(hits), Some(misses), Some(errors), Some(bypassed)] = reads
            && hits + misses + errors + bypassed > 0.0
        {
            out.insert(Metric::CacheHitRatio, hits / (hits + misses + errors + bypassed));
        }
        if let (Some(fives), Some(all)) = (d(|c| c.responses_5xx), d(|c| c.responses))
            && all > 0.0
        {
            out.insert(Metric::Http5xxRate, fives / all);
        }
    }
    if let (Some(a), Some(b)) = (before.database, now.database) {
        if let Some(v) = delta(a.statements, b.statements) {
            out.insert(Metric::PgStatementsPerS, v / seconds);
        }
        if let Some(v) = delta(a.transactions, b.transactions) {
            out.insert(Metric::PgTransactionsPerS, v / seconds);
        }
        if let Some(v) = delta(a.rows, b.rows) {
            out.insert(Metric::PgRowsPerS, v / seconds);
        }
    }
    // A Redis that was restarted starts its counters again: the backwards delta is skipped.
    if let (Some(a), Some(b)) = (before.cache, now.cache) {
        for (metric, value) in [
            (Metric::RedisCommandsPerS, delta(a.commands, b.commands)),
            (Metric::RedisHitsPerS, delta(a.hits, b.hits)),
            (Metric::RedisMissesPerS, delta(a.misses, b.misses)),
        ] {
            if let Some(v) = value {
                out.insert(metric, v / seconds);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at: Instant, hits: f64, misses: f64, statements: f64, pg: f64) -> Reading {
        let service = ServiceCounters {
            cache_hits: hits,
            cache_misses: misses,
            statements,
            ..Default::default()
        };
        Reading {
            at,
            service: Some(service),
            database: Some(DatabaseCounters {
                statements: pg,
                rows: 0.0,
                transactions: 0.0,
            }),
            cache: None,
        }
    }

    #[test]
    fn rates_are_deltas_over_elapsed_time_and_restarts_are_skipped() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let r = rates(
            &reading(t0, 100.0, 10.0, 50.0, 80.0),
            &reading(t1, 190.0, 20.0, 70.0, 120.0),
        );
        assert_eq!(r[&Metric::CacheHitRatio], 0.9);
        assert_eq!(r[&Metric::DbStatementsPerS], 10.0);
        assert_eq!(r[&Metric::PgStatementsPerS], 20.0);
        // The service restarted: its counters start again from zero.
        let r = rates(
            &reading(t0, 100.0, 10.0, 50.0, 80.0),
            &reading(t1, 3.0, 1.0, 2.0, 120.0),
        );
        assert!(!r.contains_key(&Metric::DbStatementsPerS) && !r.contains_key(&Metric::CacheHitRatio));
        assert_eq!(r[&Metric::PgStatementsPerS], 20.0);
    }
}
