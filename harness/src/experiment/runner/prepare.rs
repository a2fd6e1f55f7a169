//! Before the load: the experiment's data set, seeded once (the replicas share the database), the
//! variant's modes on every replica, and what the database holds before the run.

use sqlx::PgPool;

use super::RunError;
use crate::env::Lab;
use crate::experiment::definition::{Plan, VariantPlan};
use crate::experiment::invariants;

/// A lab ready for the load, and what the judge will need to know of its state before it.
pub(super) struct Prepared {
    /// A pool of the harness's own (through 127.0.0.1, not the proxy) for the invariants.
    pub pg: PgPool,
    /// The highest order id before the load: later ids are the run's orders.
    pub orders_before_run: i64,
}

pub(super) async fn prepare(plan: &Plan, variant: &VariantPlan, lab: &Lab) -> Result<Prepared, RunError> {
    lab.seed(&plan.seed).await?;
    for replica in lab.replicas() {
        lab.set_modes(replica, &variant.modes).await?;
    }
    let pg = PgPool::connect(&lab.postgres_url().await?).await?;
    let orders_before_run = invariants::last_order_id(&pg).await?;
    Ok(Prepared {
        pg,
        orders_before_run,
    })
}
