//! The promises that must hold whatever the load and the faults, checked in Postgres at the end of a
//! run: no acknowledged order lost, no unit sold beyond the stock, no negative stock, one outbox event
//! per order and, once the outbox has drained, one email per order.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invariant {
    pub name: String,
    pub held: bool,
    /// What was found, in figures (and the first offending ids when it did not hold).
    pub detail: String,
    /// When the variant predicts this very failure (the vulnerable flash sale predicts oversold units),
    /// the prediction judges it instead, and a violation does not fail the run.
    pub predicted_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvariantReport {
    pub checks: Vec<Invariant>,
    /// Units sold beyond the initial stock, summed over products.
    pub oversold_units: i64,
    /// Units sold by orders placed during the run.
    pub units_sold: i64,
}

impl InvariantReport {
    /// Whether every invariant held, or was violated only where a prediction said it would be.
    pub fn held(&self) -> bool {
        self.checks.iter().all(|c| c.held || c.predicted_by.is_some())
    }

    /// Hands the invariant that `metric` measures over to the prediction `claim`.
    pub fn predicted(&mut self, metric: super::metric::Metric, claim: String) {
        let name = match metric {
            super::metric::Metric::OversoldUnits => "no oversell",
            _ => return,
        };
        for check in self.checks.iter_mut().filter(|c| c.name == name) {
            check.predicted_by = Some(claim.clone());
        }
    }
}

/// What the run knows that the database cannot tell.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// Ids of the orders the client saw acknowledged (201).
    pub acknowledged: Vec<i64>,
    /// The highest order id before the load started (seeded history); later ids are the run's orders.
    pub orders_before_run: i64,
}

fn first_ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(5).map(ToString::to_string).collect();
    let more = if ids.len() > 5 {
        format!(" and {} more", ids.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

/// Checks every invariant, first waiting up to `drain` for the outbox to relay what is pending.
pub async fn check(pg: &PgPool, facts: &RunFacts, drain: Duration) -> Result<InvariantReport, sqlx::Error> {
    let mut checks = Vec::new();

    let mut acknowledged = facts.acknowledged.clone();
    acknowledged.sort_unstable();
    acknowledged.dedup();
    let missing: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM unnest($1::bigint[]) AS a(id) WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = a.id) ORDER BY id",
    )
    .bind(&acknowledged)
    .fetch_all(pg)
    .await?;
    checks.push(Invariant {
        predicted_by: None,
        name: "acknowledged orders persisted".into(),
        held: missing.is_empty(),
        detail: if missing.is_empty() {
            format!(
                "all {} acknowledged orders are in the database",
                acknowledged.len()
            )
        } else {
            format!(
                "{} of {} acknowledged orders are missing: {}",
                missing.len(),
                acknowledged.len(),
                first_ids(&missing)
            )
        },
    });

    let (oversold_units, oversold_products): (i64, Vec<i64>) = sqlx::query_as(
        "SELECT coalesce(sum(sold - initial_stock), 0)::bigint, coalesce(array_agg(product_id ORDER BY product_id), '{}') \
         FROM (SELECT i.product_id, i.initial_stock, coalesce(sum(o.quantity), 0) AS sold \
               FROM inventory i LEFT JOIN orders o ON o.product_id = i.product_id \
               GROUP BY i.product_id, i.initial_stock) per_product \
         WHERE sold > initial_stock",
    )
    .fetch_one(pg)
    .await?;
    checks.push(Invariant {
        predicted_by: None,
        name: "no oversell".into(),
        held: oversold_units == 0,
        detail: if oversold_units == 0 {
            "no product sold more units than its initial stock".into()
        } else {
            format!(
                "{oversold_units} unit(s) oversold, products {}",
                first_ids(&oversold_products)
            )
        },
    });

    let negative: Vec<i64> =
        sqlx::query_scalar("SELECT product_id FROM inventory WHERE quantity < 0 ORDER BY product_id")
            .fetch_all(pg)
            .await?;
    checks.push(Invariant {
        predicted_by: None,
        name: "no negative stock".into(),
        held: negative.is_empty(),
        detail: if negative.is_empty() {
            "every stock level is 0 or more".into()
        } else {
            format!("negative stock on products {}", first_ids(&negative))
        },
    });

    let without_event: Vec<i64> = sqlx::query_scalar(
        "SELECT o.id FROM orders o WHERE (SELECT count(*) FROM outbox e \
         WHERE e.order_id = o.id AND e.event_type = 'order.created') <> 1 ORDER BY o.id",
    )
    .fetch_all(pg)
    .await?;
    checks.push(Invariant {
        predicted_by: None,
        name: "one outbox event per order".into(),
        held: without_event.is_empty(),
        detail: if without_event.is_empty() {
            "every order has exactly one order.created event".into()
        } else {
            format!(
                "{} order(s) without exactly one event: {}",
                without_event.len(),
                first_ids(&without_event)
            )
        },
    });

    let started = Instant::now();
    let pending = loop {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")
            .fetch_one(pg)
            .await?;
        if pending == 0 || started.elapsed() >= drain {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let without_email: Vec<i64> = sqlx::query_scalar(
        "SELECT o.id FROM orders o WHERE (SELECT count(*) FROM emails m WHERE m.order_id = o.id) <> 1 ORDER BY o.id",
    )
    .fetch_all(pg)
    .await?;
    let drained = if pending == 0 {
        format!("outbox drained in {:.1?}", started.elapsed())
    } else {
        format!("{pending} event(s) still pending after {drain:?}")
    };
    checks.push(Invariant {
        predicted_by: None,
        name: "one email per order".into(),
        held: without_email.is_empty(),
        detail: if without_email.is_empty() {
            format!("every order has exactly one email ({drained})")
        } else {
            format!(
                "{} order(s) without exactly one email: {} ({drained})",
                without_email.len(),
                first_ids(&without_email)
            )
        },
    });

    let units_sold: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(quantity), 0)::bigint FROM orders WHERE id > $1")
            .bind(facts.orders_before_run)
            .fetch_one(pg)
            .await?;
    Ok(InvariantReport {
        checks,
        oversold_units,
        units_sold,
    })
}
