//! After the load: make sure nothing is left broken, check the invariants, reduce the seconds to
//! per-phase figures, judge every prediction of the variant, and write its time series.

use std::time::Duration;

use super::phases::Watched;
use super::prepare::Prepared;
use super::{Event, RunContext, RunError};
use crate::env::Lab;
use crate::experiment::definition::{Plan, RUN_PHASE, VariantPlan};
use crate::experiment::forensics;
use crate::experiment::invariants::{self, InvariantReport, RunFacts};
use crate::experiment::journal::Entry;
use crate::experiment::output::{self, LostOrder, VariantReport};
use crate::experiment::phase_figures::{caveats, derived_stats};
use crate::experiment::timing::Probes;
use crate::experiment::verdict::{self, Caveats, PhaseStats, Verdict};
use crate::faults::audit::{self, LabAudit};
use crate::load::{Acknowledged, Group};
use crate::observe::Observer;
use crate::vocabulary::Metric;

/// How long the outbox gets to drain before the email invariant is judged.
const DRAIN: Duration = Duration::from_secs(15);
/// How long the service's payments in flight get to end before any invariant is read: a release is
/// retried for up to 5 s, and a checkout whose client gave up may still wait for a connection.
const PAYMENTS_SETTLE: Duration = Duration::from_secs(15);

pub(super) async fn judge(
    plan: &Plan,
    variant: &VariantPlan,
    lab: &Lab,
    prepared: &Prepared,
    watched: Watched,
    ctx: &RunContext<'_>,
) -> Result<VariantReport, RunError> {
    let audit = lab_is_whole(variant, lab, &watched).await?;
    let mut invariants = check_invariants(lab, prepared, &watched).await?;
    let mut stats = stats(plan, &watched, &invariants);
    timing_figures(variant, &watched, &mut stats, ctx);
    let caveats = caveats(plan, &stats, &watched.latencies, &watched.untouched);
    // A prediction that allows the invariant to break judges it in its place: one that it breaks
    // (oversold units > 0), or one that bounds how far (emails for no order <= 20). One that it holds
    // (== 0) leaves it to be judged as an invariant too.
    for p in plan
        .predictions_of(variant.variant)
        .filter(|p| p.claim.allows_a_breakage())
    {
        invariants.predicted(p.claim.metric, p.claim.to_string());
    }
    let verdicts = verdicts(plan, variant, &watched, &stats, &caveats);
    if let Err(error) = output::write_series(ctx.folder, variant.variant, &watched.samples) {
        (ctx.progress)(Event::Message(format!(
            "could not write the time series: {error}"
        )));
    }
    let lost_orders = lost_orders(&watched, &invariants);
    let logs = crate::env::logs::worrying_lines(lab).await;
    let forensics = forensics::keep(
        ctx.folder,
        variant.variant,
        &logs,
        watched.recorder.server_errors(),
        watched.recorder.refused(),
    );
    Ok(VariantReport {
        variant: variant.variant,
        modes: variant.modes,
        without: variant.without.clone(),
        run_id: lab.run_id.clone(),
        images: lab.images.clone(),
        ready_in_s: lab.ready_in.as_secs_f64(),
        load_started_at: watched.load_started_at,
        offered_rps: plan.rate,
        achieved_rps: watched.requests_in_phases as f64 / seconds_run(plan, &watched),
        requests: watched.load.requests.max(watched.recorder.request_count()),
        verdicts,
        invariants,
        timeline: watched.timeline.entries(),
        lost_orders,
        aborted: watched.aborted,
        audit: Some(audit),
        forensics,
        phase_stats: stats,
        samples: watched.samples,
    })
}

/// Every prediction of the variant judged; all of them `aborted` when a stop condition ended the run.
pub(super) fn verdicts(
    plan: &Plan,
    variant: &VariantPlan,
    watched: &Watched,
    stats: &PhaseStats,
    caveats: &Caveats,
) -> Vec<Verdict> {
    plan.predictions_of(variant.variant)
        .map(|p| match &watched.aborted {
            Some(abort) => verdict::aborted(p, abort),
            None => verdict::judge(p, stats, caveats),
        })
        .collect()
}

/// Nothing left broken: the timeline has a revert for every injection, and the proxy and Docker agree.
async fn lab_is_whole(variant: &VariantPlan, lab: &Lab, watched: &Watched) -> Result<LabAudit, RunError> {
    let left = watched.timeline.still_injected();
    if !left.is_empty() {
        return Err(RunError::LeftInjected {
            variant: variant.variant,
            faults: left,
        });
    }
    let audit = audit::audit(lab).await?;
    if !audit.whole() {
        return Err(RunError::LabNotWhole {
            variant: variant.variant,
            audit,
        });
    }
    Ok(audit)
}

/// The invariants, on a connection asked for afresh: Postgres may have been restarted on another
/// published port.
async fn check_invariants(
    lab: &Lab,
    prepared: &Prepared,
    watched: &Watched,
) -> Result<InvariantReport, RunError> {
    let facts = RunFacts {
        acknowledged: watched.recorder.acknowledged_orders(),
        orders_before_run: prepared.orders_before_run,
    };
    invariants_of(lab, &facts).await
}

/// Every invariant the lab can check (the database's, the mail server's and the provider's ledger
/// when it has them), given what the client saw.
pub async fn invariants_of(lab: &Lab, facts: &RunFacts) -> Result<InvariantReport, RunError> {
    if lab.provider.is_some() {
        payments_at_rest(lab, PAYMENTS_SETTLE).await;
    }
    let pg = sqlx::PgPool::connect(&lab.postgres_url().await?).await?;
    let mut report = invariants::check(&pg, facts, DRAIN).await?;
    if lab.mail.is_some() {
        let mailbox = lab.settled_mailbox(DRAIN).await?;
        invariants::emails_match_orders(&pg, facts, &mailbox, &mut report).await?;
    }
    if lab.provider.is_some() {
        let ledger = lab.ledger().await?;
        invariants::payments_match_orders(&pg, facts, &ledger, &mut report).await?;
    }
    pg.close().await;
    Ok(report)
}

/// Waits, up to `deadline`, until no replica has a guarded checkout or a payment release still
/// running. A checkout whose client gave up runs on (its money must end in an order or a release),
/// and invariants read meanwhile would count its authorisation as a charge for no order. A replica
/// that cannot be read (busy, or restarting) is read again until the deadline.
async fn payments_at_rest(lab: &Lab, deadline: Duration) {
    let started = std::time::Instant::now();
    loop {
        let in_flight = Observer::payments_in_flight(lab).await;
        if in_flight == Some(0.0) {
            return;
        }
        if started.elapsed() >= deadline {
            let in_flight = in_flight.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
            return tracing::warn!(
                in_flight,
                "payments still in flight; reading the invariants anyway"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long the phases ran: all of them, or up to the second a stop condition tripped.
pub(super) fn seconds_run(plan: &Plan, watched: &Watched) -> f64 {
    watched
        .aborted
        .as_ref()
        .map_or_else(|| plan.run_seconds(), |abort| abort.at_s.max(1.0))
}

/// The history of each lost order: when it was sent and acknowledged.
fn lost_orders(watched: &Watched, invariants: &InvariantReport) -> Vec<LostOrder> {
    let acknowledged: std::collections::BTreeMap<i64, Acknowledged> = watched
        .recorder
        .acknowledgements()
        .into_iter()
        .map(|a| (a.order_id, a))
        .collect();
    invariants
        .lost_orders
        .iter()
        .filter_map(|id| {
            let a = acknowledged.get(id)?;
            Some(LostOrder {
                id: *id,
                sent_at: chrono::DateTime::from_timestamp_micros(a.sent_us)?,
                acknowledged_at: chrono::DateTime::from_timestamp_micros(a.acknowledged_us)?,
            })
        })
        .collect()
}

/// What the timing attacker learns from the probes, if the load sent any; the probes are saved.
fn timing_figures(variant: &VariantPlan, watched: &Watched, stats: &mut PhaseStats, ctx: &RunContext<'_>) {
    let probes = Probes {
        known_us: watched.recorder.each_service_us(Group::ProbeKnown),
        unknown_us: watched.recorder.each_service_us(Group::ProbeUnknown),
        pairs: watched.recorder.probe_pairs(),
    };
    if !probes.usable() {
        return;
    }
    for (metric, value) in probes.figures() {
        stats.set(RUN_PHASE, metric, value);
    }
    ctx.journal.write(&Entry::Probes {
        variant: variant.variant,
        probes: probes.clone(),
    });
    if let Err(error) = output::write_probes(ctx.folder, variant.variant, &probes) {
        (ctx.progress)(Event::Message(format!(
            "could not write the timing probes: {error}"
        )));
    }
}

/// Every figure a prediction can be about: per phase, and over the whole run.
fn stats(plan: &Plan, watched: &Watched, invariants: &InvariantReport) -> PhaseStats {
    let mut stats = PhaseStats::from_samples(&watched.samples);
    derived_stats(plan, &watched.samples, &watched.latencies, &mut stats);
    for (metric, value) in invariants.figures() {
        stats.set(RUN_PHASE, metric, value);
    }
    let requests = watched.recorder.request_count();
    let errors: u64 = watched.recorder.totals().iter().map(|g| g.errors).sum();
    if requests > 0 {
        stats.set(RUN_PHASE, Metric::ErrorRate, errors as f64 / requests as f64);
    }
    stats
}
