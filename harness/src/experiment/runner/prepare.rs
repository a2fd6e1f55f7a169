//! Before the load: the experiment's data set, seeded once (the replicas share the database), the
//! variant's modes on every replica, and what the database holds before the run.

use sqlx::PgPool;

use super::RunError;
use crate::env::Lab;
use crate::experiment::definition::{Plan, VariantPlan};
use crate::experiment::invariants;

/// A lab ready for the load, and what the judge will need to know of its state before it.
pub(super) struct Prepared {
    /// The highest order id before the load: later ids are the run's orders.
    pub orders_before_run: i64,
}

pub(super) async fn prepare(plan: &Plan, variant: &VariantPlan, lab: &Lab) -> Result<Prepared, RunError> {
    lab.seed(&plan.seed).await?;
    for replica in lab.replicas() {
        lab.set_modes(replica, &variant.modes).await?;
    }
    // A connection of its own, for now only: a restarted Postgres is published on another port.
    let pg = PgPool::connect(&lab.postgres_url().await?).await?;
    let orders_before_run = invariants::last_order_id(&pg).await?;
    pg.close().await;
    Ok(Prepared { orders_before_run })
}
