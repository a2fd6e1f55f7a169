//! The outbox worker: relays `order.created` events, written in the checkout transaction, as
//! confirmation emails: over SMTP to the mail server when the service has one (`SMTP_ADDR`), and
//! always as a row of `emails`, the service's own record of what it sent.
//!
//! One batch is one transaction: claim a few pending events with `FOR UPDATE SKIP LOCKED` (so several
//! workers never take the same event), send their emails at once, mark each. The `emails` row is
//! idempotent per event (`emails.event_id` is unique); the SMTP send cannot be: a batch that sent its
//! emails and then failed to commit (Postgres gone in between) sends them again when its events are
//! claimed again (at least once, with the same `Message-ID`). So a batch is small: the most a failure
//! sends twice is one batch, the emails in flight, whatever the backlog. A failed delivery is retried
//! later with exponential backoff and dead-lettered after `max_attempts`.

use std::time::Duration;

use futures::future::join_all;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::error::cause_chain;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::modes::{EmailSender, ModeSwitch};

/// The longest a failed event waits before its next attempt.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Events claimed in one transaction, whose emails are sent at once (`OUTBOX_BATCH_SIZE`, 4 by
    /// default). A handful: enough conversations at once to hide the mail link's round trips, few
    /// enough that a batch the mail server or Postgres fails mid-way sends at most that many twice.
    pub batch_size: u32,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub idle_poll: Duration,
}

impl OutboxSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            batch_size: config.outbox_batch_size,
            max_attempts: config.outbox_max_attempts,
            retry_base: Duration::from_millis(config.outbox_retry_base_ms),
            idle_poll: Duration::from_millis(config.outbox_poll_ms),
        }
    }

    /// The wait before attempt `attempts + 1`: base x 2^(attempts - 1), capped. Computed rather than
    /// taken from a retry crate because the attempt count lives in the database row, not in memory.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        self.retry_base.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    pub delivered: u32,
    pub retried: u32,
    pub dead: u32,
}

impl Relayed {
    pub fn total(&self) -> u32 {
        self.delivered + self.retried + self.dead
    }
}

#[derive(Debug, Clone)]
pub struct OutboxWorker {
    db: Db,
    modes: ModeSwitch,
    metrics: Metrics,
    settings: OutboxSettings,
    /// The mail server, when the service has one; without, the `emails` row is the whole delivery.
    mailer: Option<Mailer>,
}

#[derive(sqlx::FromRow)]
struct Event {
    id: i64,
    order_id: i64,
    attempts: i32,
    /// The customer's address.
    recipient: String,
}

impl OutboxWorker {
    pub fn new(
        db: Db,
        modes: ModeSwitch,
        metrics: Metrics,
        settings: OutboxSettings,
        mailer: Option<Mailer>,
    ) -> Self {
        Self {
            db,
            modes,
            metrics,
            settings,
            mailer,
        }
    }

    /// Relays batches until `stop` is cancelled. Cancellation is only looked at between batches, so a
    /// batch in progress always commits or rolls back as a whole.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(batch_size = self.settings.batch_size, "outbox worker started");
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            let pause = match self.relay_batch().await {
                Ok(relayed) if relayed.total() >= self.settings.batch_size => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    self.settings.idle_poll
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "outbox batch failed; backing off");
                    self.settings.backoff(failures).max(self.settings.idle_poll)
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("outbox worker stopped");
    }

    /// One step of the worker: claims up to `batch_size` due events and relays them in one transaction.
    pub async fn relay_batch(&self) -> Result<Relayed, sqlx::Error> {
        let modes = self.modes.current();
        let sender = modes.email_sender;
        let mut tx = self.db.begin_as(modes.durability).await?;
        self.db.statement("outbox.claim");
        let events: Vec<Event> = sqlx::query_as(
            "SELECT e.id, e.order_id, e.attempts, u.email AS recipient FROM outbox e \
             JOIN orders o ON o.id = e.order_id JOIN users u ON u.id = o.user_id \
             WHERE e.status = 'pending' AND e.next_attempt_at <= now() \
             ORDER BY e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED",
        )
        .bind(i64::from(self.settings.batch_size))
        .fetch_all(&mut *tx)
        .await?;
        // The batch's emails go out at once: one SMTP conversation is half a dozen round trips, and
        // one after another they capped a backlog's drain at the mail link's round-trip rate (about
        // 40 emails a second on a slow 2-core machine, 2026-12-07), below what the mail server takes.
        // The marks stay in claim order, in this one transaction.
        let sends: Vec<Result<(), String>> =
            join_all(events.iter().map(|event| self.send(sender, event))).await;
        let mut relayed = Relayed::default();
        for (event, sent) in events.iter().zip(sends) {
            let attempts = u32::try_from(event.attempts).unwrap_or(0).saturating_add(1);
            match sent {
                Ok(()) => {
                    self.deliver(&mut tx, event).await?;
                    relayed.delivered += 1;
                }
                Err(reason) if attempts >= self.settings.max_attempts => {
                    self.mark_failed(&mut tx, event, "dead", Duration::ZERO, &reason)
                        .await?;
                    relayed.dead += 1;
                }
                Err(reason) => {
                    let retry_in = self.settings.backoff(attempts);
                    self.mark_failed(&mut tx, event, "pending", retry_in, &reason)
                        .await?;
                    relayed.retried += 1;
                }
            }
        }
        // The commit and its count go together: a worker cancelled while its commit is on the way (an
        // aborted task drops its future) would leave a committed batch uncounted. A spawned task runs
        // on when this future is dropped, so `outbox_relayed_total` always matches what committed.
        let metrics = self.metrics.clone();
        let committed = tokio::spawn(async move {
            tx.commit().await?;
            count(&metrics, relayed);
            Ok(relayed)
        });
        match committed.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down under it: nothing more can be known of the commit.
            Err(_) => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Hands the email to the mail server, if there is one; answers why it could not.
    async fn send(&self, sender: EmailSender, event: &Event) -> Result<(), String> {
        match (sender, &self.mailer) {
            (EmailSender::Down, _) => Err("email sender is down (mode)".to_owned()),
            (EmailSender::Up, None) => Ok(()),
            (EmailSender::Up, Some(mailer)) => {
                let sent = mailer.send_confirmation(event.order_id, &event.recipient).await;
                sent.map_err(|error| {
                    let reason = cause_chain(&error);
                    tracing::warn!(order_id = event.order_id, %reason, "confirmation email not sent");
                    reason
                })
            }
        }
    }

    /// Records the confirmation email (a row in `emails`) and marks the event delivered.
    async fn deliver(&self, conn: &mut PgConnection, event: &Event) -> Result<(), sqlx::Error> {
        self.db.statement("outbox.send_email");
        sqlx::query(
            "INSERT INTO emails (event_id, order_id, recipient, subject) \
             SELECT $1, o.id, u.email, format('Order %s confirmed', o.id) \
             FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = $2 \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.id)
        .bind(event.order_id)
        .execute(&mut *conn)
        .await?;
        self.db.statement("outbox.mark_delivered");
        sqlx::query(
            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = now() WHERE id = $1",
        )
        .bind(event.id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        conn: &mut PgConnection,
        event: &Event,
        status: &str,
        retry_in: Duration,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        self.db.statement("outbox.mark_failed");
        sqlx::query(
            "UPDATE outbox SET status = $2, attempts = attempts + 1, last_error = $4, \
             next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
        )
        .bind(event.id)
        .bind(status)
        .bind(retry_in.as_secs_f64())
        .bind(reason)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// Puts every dead-lettered event back in the queue, due now, with its attempts reset (after the
/// cause is fixed: the mail server is back). Answers how many.
pub async fn replay_dead(db: &Db) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    // First lock every undelivered event. A batch in flight holds its claimed events' locks, so this
    // waits for it, and an event it was about to dead-letter is then seen dead by the UPDATE below
    // (a new snapshot) instead of being missed as pending: replaying right after an outage otherwise
    // left the events of its last failing batch dead (9 of them in a gate run). Holding the locks
    // keeps the worker (`SKIP LOCKED`) off them until the replay commits.
    db.statement("outbox.lock_undelivered");
    sqlx::query("SELECT id FROM outbox WHERE status <> 'delivered' FOR UPDATE")
        .execute(&mut *tx)
        .await?;
    db.statement("outbox.replay_dead");
    let replayed = sqlx::query(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now() WHERE status = 'dead'",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(replayed.rows_affected())
}

/// Counts a committed batch in `outbox_relayed_total`.
fn count(metrics: &Metrics, relayed: Relayed) {
    let counter = &metrics.outbox_relayed;
    counter
        .with_label_values(&["delivered"])
        .inc_by(u64::from(relayed.delivered));
    counter
        .with_label_values(&["retried"])
        .inc_by(u64::from(relayed.retried));
    counter
        .with_label_values(&["dead"])
        .inc_by(u64::from(relayed.dead));
    if relayed.total() > 0 {
        tracing::debug!(?relayed, "outbox batch committed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let settings = OutboxSettings {
            batch_size: 10,
            max_attempts: 5,
            retry_base: Duration::from_millis(500),
            idle_poll: Duration::from_millis(100),
        };
        assert_eq!(settings.backoff(1), Duration::from_millis(500));
        assert_eq!(settings.backoff(2), Duration::from_secs(1));
        assert_eq!(settings.backoff(4), Duration::from_secs(4));
        assert_eq!(settings.backoff(40), MAX_BACKOFF);
    }
}
