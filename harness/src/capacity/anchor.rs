//! The anchor (`[capacity] anchor = true`): the service's steady checkout capacity set against what
//! its own Postgres gives pgbench running the same transaction
//! (`reference_service::checkout::PGBENCH_TRANSACTION`), with as many clients as the service pools
//! connections, for as long as a step. The share says how much of what the database allows the
//! service delivers under its objective; the rest is the service's own cost (HTTP, the pool, the
//! proxy on the link, the objective's latency bound).
//!
//! It runs once a variant's searches and invariants are done, on the same lab: its orders then count
//! in no invariant, and no step shares the cores with it.

use serde::Serialize;

use reference_service::modes::{Durability, EmailDelivery, Locking, ModesPatch};

use crate::env::Lab;
use crate::env::pgbench::{PgbenchFigures, PgbenchRun};
use crate::experiment::definition::{CapacityPlan, Plan};

/// What the anchor measured, or why it could not.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Anchor {
    Measured {
        tool: &'static str,
        clients: u32,
        seconds: u32,
        #[serde(flatten)]
        figures: PgbenchFigures,
        /// The steady capacity over pgbench's rate; `None` when no steady search ran.
        share: Option<f64>,
    },
    Failed {
        why: String,
    },
    /// The variant's checkout is not the transaction pgbench runs: no anchor to set it against.
    Skipped {
        why: String,
    },
}

/// Why a variant's checkout is not `PGBENCH_TRANSACTION` (the defended one: row lock, outbox,
/// synchronous commit), when it is not.
pub fn unlike_the_script(modes: &ModesPatch) -> Option<String> {
    let mut unlike = Vec::new();
    if modes.locking == Some(Locking::None) {
        unlike.push("locking = none (no row lock: a read, then a write)");
    }
    if modes.email_delivery == Some(EmailDelivery::Inline) {
        unlike.push("email_delivery = inline (a mail server inside the transaction)");
    }
    if modes.durability == Some(Durability::AsyncCommit) {
        unlike.push("durability = async_commit (a commit without its flush)");
    }
    (!unlike.is_empty()).then(|| {
        format!(
            "this variant's checkout is not the transaction pgbench runs: {}",
            unlike.join(", ")
        )
    })
}

impl Anchor {
    /// Runs pgbench in `lab`'s Postgres and sets `steady` (the steady capacity, when searched)
    /// against its rate. The caller checks first that the variant's checkout is the script's
    /// (`unlike_the_script`).
    pub async fn measure(lab: &Lab, plan: &Plan, capacity: &CapacityPlan, steady: Option<f64>) -> Self {
        let clients = plan.pool_size * plan.replicas;
        // Whole seconds, as long as a step: pgbench's -T takes no fractions.
        let seconds = capacity.step_seconds.round().max(1.0) as u32;
        let run = PgbenchRun {
            script: reference_service::checkout::PGBENCH_TRANSACTION,
            clients,
            seconds,
            variables: vec![
                ("products", u64::from(plan.seed.products.max(1))),
                ("users", u64::from(plan.seed.users.max(1))),
            ],
        };
        match lab.pgbench(&run).await {
            Ok(figures) => Self::Measured {
                tool: "pgbench",
                clients,
                seconds,
                share: steady.filter(|_| figures.tps > 0.0).map(|c| c / figures.tps),
                figures,
            },
            Err(error) => Self::Failed {
                why: reference_service::error::cause_chain(&error),
            },
        }
    }

    /// The anchor in a line, for the console and the page.
    pub fn text(&self) -> String {
        match self {
            Self::Measured {
                clients,
                seconds,
                figures,
                share,
                ..
            } => {
                let share = share.map_or_else(
                    || "no steady search to set against it".to_owned(),
                    |s| format!("the steady capacity is {s:.2} of it"),
                );
                format!(
                    "pgbench, the checkout's transaction on the lab's Postgres, {clients} clients for {seconds} s: \
                     {:.0} transactions/s ({} done, {} failed); {share}",
                    figures.tps, figures.transactions, figures.failed
                )
            }
            Self::Failed { why } => format!("pgbench could not run: {why}"),
            Self::Skipped { why } => format!("not anchored: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_defended_checkout_is_anchored() {
        assert_eq!(unlike_the_script(&ModesPatch::default()), None);
        let defended = ModesPatch {
            locking: Some(Locking::RowLock),
            email_delivery: Some(EmailDelivery::Outbox),
            ..ModesPatch::default()
        };
        assert_eq!(unlike_the_script(&defended), None);
        let naive = ModesPatch {
            locking: Some(Locking::None),
            durability: Some(Durability::AsyncCommit),
            ..ModesPatch::default()
        };
        let why = unlike_the_script(&naive).expect("not the script's transaction");
        assert!(
            why.contains("locking = none") && why.contains("async_commit"),
            "{why}"
        );
    }
}
