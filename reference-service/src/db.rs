//! The Postgres pool, its migrations, and the statement counter every query reports to.
//!
//! Queries name themselves (`metrics.statement("checkout.lock_inventory")`) so `/metrics` shows database
//! statements by query name, the service-side view an experiment sets beside `pg_stat_statements`.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::modes::Durability;

/// The schema, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The pool, wrapped so that every acquisition is measured (time waited, callers waiting).
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    metrics: Metrics,
}

impl Db {
    /// Builds the pool without connecting: the service starts even while Postgres is still coming up,
    /// and answers 503 until it is reachable.
    pub fn connect_lazy(config: &Config, metrics: Metrics) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(config.db_pool_size)
            // No ping before every acquire: it costs a round trip per transaction (measured: the
            // checkout benchmark and the latency fault both see it). A dead connection fails its first
            // statement instead, the request gets a 503, and the pool discards the connection.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_millis(config.db_acquire_timeout_ms))
            .connect_lazy(&config.database_url)?;
        Ok(Self { pool, metrics })
    }

    /// Counts one statement about to run, by the name of its query.
    pub fn statement(&self, query: &'static str) {
        self.metrics.statement(query);
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations, retrying until `deadline` while Postgres is not reachable yet.
    pub async fn migrate(&self, deadline: Duration) -> Result<(), sqlx::migrate::MigrateError> {
        let started = Instant::now();
        loop {
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(sqlx::migrate::MigrateError::Execute(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)))
                    if started.elapsed() < deadline =>
                {
                    tracing::info!("postgres not reachable yet; retrying migrations");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.measured(self.pool.acquire()).await
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.measured(self.pool.begin()).await
    }

    /// A transaction whose COMMIT waits for the WAL flush, or, with `AsyncCommit`, does not (the
    /// setting a team would make for the whole database: every transaction of the service takes it).
    pub async fn begin_as(
        &self,
        durability: Durability,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        if durability == Durability::AsyncCommit {
            self.statement("db.async_commit");
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    async fn measured<T>(
        &self,
        acquire: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        let _waiting = Waiting::on(&self.metrics.db_pool_waiting);
        let started = Instant::now();
        let result = acquire.await;
        self.metrics
            .db_pool_acquire
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Publishes the pool's size and idle count (called when `/metrics` is scraped).
    pub fn publish_pool_gauges(&self) {
        let size = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX);
        let gauge = &self.metrics.db_pool_connections;
        gauge.with_label_values(&["idle"]).set(idle);
        gauge.with_label_values(&["in_use"]).set(size - idle);
    }
}

/// One caller waiting for a connection, counted on the gauge for as long as it lives: a request that
/// is cancelled mid-wait (its client gave up) drops it, and the gauge goes down all the same.
struct Waiting<'a>(&'a prometheus::IntGauge);

impl<'a> Waiting<'a> {
    fn on(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_cancelled_half_way_leaves_the_waiting_gauge_where_it_was() {
        let config = Config::for_urls("postgres://nobody@127.0.0.1:1/none", "redis://127.0.0.1:1");
        let db = Db::connect_lazy(&config, Metrics::new()).unwrap();
        // A caller that gives up while it waits (its client went away): the wait is dropped mid-way.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            db.measured(std::future::pending::<Result<(), sqlx::Error>>()),
        )
        .await;
        assert!(gave_up.is_err(), "the wait was cut short");
        assert_eq!(db.metrics.db_pool_waiting.get(), 0);
    }
}
