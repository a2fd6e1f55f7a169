//! Running an experiment against a user's target: for each variant in turn, its lab started from
//! the Compose file with the variant's environment, the file's requests through every phase with
//! the phases' faults (the same `phases::run` as the reference lab's, at `Site::Target`), then the
//! judge: nothing left broken, the file's SQL invariants and end-of-run figures on the target's own
//! databases, the predictions.

mod database;
mod http;

use std::sync::Arc;
use std::time::Duration;

use super::phases::{self, Watched};
use super::{Event, Handover, RunContext, RunError};
use crate::env::images::ImageChoice;
use crate::env::target::lab::{TargetLab, TargetLabError, TargetLabSpec};
use crate::experiment::definition::{
    InvariantCheck, Lookup, Plan, RUN_PHASE, TargetInvariant, TargetPlan, VariantPlan,
};
use crate::experiment::forensics;
use crate::experiment::invariants::{Invariant, InvariantReport};
use crate::experiment::journal::Entry;
use crate::experiment::output::{self, RunHeader, Summary, VariantReport};
use crate::experiment::phase_figures::{caveats, derived_stats};
use crate::experiment::verdict::PhaseStats;
use crate::faults::{Fault, Site};
use crate::load::Turn;
use crate::vocabulary::Metric;

/// How long each dependency condition of the target, and its readiness, may take.
const READY_DEADLINE: Duration = Duration::from_secs(120);
/// How many offending rows an invariant's detail shows.
const ROWS_SHOWN: usize = 5;
/// The invariant every acknowledgement is held to.
const LOST_INVARIANT: &str = "nothing acknowledged is lost";

#[derive(Debug, thiserror::Error)]
pub enum TargetRunError {
    #[error("could not start the target's lab")]
    Lab(#[from] TargetLabError),
    #[error("the target has no database named {0}")]
    NoDatabase(String),
    #[error("{what} on database {database} failed")]
    Query {
        what: String,
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("after the last revert, {0}")]
    NotWhole(String),
    #[error("could not look up every acknowledged id")]
    Lookup(#[from] http::Undetermined),
}

/// Runs the variants of a plan against its target, one after the other, and writes the run folder;
/// answers the summary with its exit code. The handover's lab, if it brings one, is the first
/// variant's. Every lab is removed before it answers.
pub(super) async fn run(
    plan: &Plan,
    target: &TargetPlan,
    variants: &[&VariantPlan],
    ctx: &RunContext<'_>,
    handover: Handover,
) -> Result<Summary, RunError> {
    let first = handover.labs.and_then(|mut labs| labs.target.take());
    let header = RunHeader::of(plan, chrono::Utc::now());
    ctx.journal.write(&Entry::RunStarted {
        header: header.clone(),
    });
    let reports = every_variant(plan, target, variants, ctx, first).await;
    handover.loads_over.cancel();
    super::finish(header, reports, ctx).await
}

/// Each variant in turn on a lab of its own. The next variant's lab starts as soon as a load is
/// over, while that load's variant is judged and its lab removed: a target's start (pretix: ~10 s
/// of Python importing) is most of its run's cost, and after the load it measures nothing.
async fn every_variant(
    plan: &Plan,
    target: &TargetPlan,
    variants: &[&VariantPlan],
    ctx: &RunContext<'_>,
    first: Option<Result<TargetLab, RunError>>,
) -> Result<Vec<VariantReport>, RunError> {
    let turn = match Turn::take(&ctx.stop).await {
        Ok(turn) => Arc::new(turn),
        Err(_) => return discard(first, Err(RunError::Interrupted)).await,
    };
    let mut reports = Vec::new();
    let mut ready = first;
    for (i, variant) in variants.iter().enumerate() {
        if ctx.stop.is_cancelled() {
            return discard(ready, Err(RunError::Interrupted)).await;
        }
        let lab = match ready.take() {
            Some(lab) => lab?,
            None => start_lab(target, variant, &ctx.lab_binary, ctx.progress).await?,
        };
        let watched = phases::run(plan, variant.variant, Site::Target(&lab), ctx, &turn).await;
        let go_on = matches!(&watched, Ok(w) if w.aborted.is_none()) && !ctx.stop.is_cancelled();
        let next = variants.get(i + 1).filter(|_| go_on);
        let (report, started) = tokio::join!(
            judge_and_remove(plan, target, variant, lab, watched, ctx),
            async {
                match next {
                    Some(v) => Some(start_lab(target, v, &ctx.lab_binary, ctx.progress).await),
                    None => None,
                }
            },
        );
        ready = started;
        let report = match report {
            Ok(report) => report,
            Err(error) => return discard(ready, Err(error)).await,
        };
        ctx.journal.write(&Entry::VariantJudged {
            report: Box::new(report.clone()),
        });
        let aborted = report.aborted.is_some();
        reports.push(report);
        if aborted {
            break;
        }
    }
    if ctx.stop.is_cancelled() {
        return discard(ready, Err(RunError::Interrupted)).await;
    }
    discard(ready, Ok(reports)).await
}

/// Removes a lab started for a variant that will not run, and answers `outcome`.
async fn discard<T>(
    lab: Option<Result<TargetLab, RunError>>,
    outcome: Result<T, RunError>,
) -> Result<T, RunError> {
    if let Some(Ok(lab)) = lab {
        remove(lab).await;
    }
    outcome
}

pub(super) async fn remove(lab: TargetLab) {
    if let Err(error) = lab.shutdown().await {
        tracing::warn!(%error, "could not remove the target's lab; run `fortress cleanup`");
    }
}

/// The target's lab for `variant`, its environment set. A start is not abandoned half-way (the
/// lab removes what it started if it fails).
pub(super) async fn start_lab(
    target: &TargetPlan,
    variant: &VariantPlan,
    lab_binary: &std::path::Path,
    progress: &(dyn Fn(Event<'_>) + Sync),
) -> Result<TargetLab, RunError> {
    let v = variant.variant;
    let spec = TargetLabSpec {
        lab_binary: lab_binary.to_owned(),
        deadline: READY_DEADLINE,
        environment: target.environment.get(&v).cloned().unwrap_or_default(),
    };
    progress(Event::Message(format!("{v}: starting the target's lab")));
    let show = |line: &str| progress(Event::Message(format!("  {v}: {line}")));
    let base = target.targets.get(&v).unwrap_or(&target.target);
    let variant_target = match target.images.get(&v) {
        Some(images) => base.with_images(images),
        None => base.clone(),
    };
    let lab = TargetLab::start(&variant_target, &spec, &show)
        .await
        .map_err(TargetRunError::from)?;
    progress(Event::Message(format!(
        "{v}: lab {} ready in {:.1?}",
        lab.run_id, lab.ready_in
    )));
    Ok(lab)
}

/// A variant's load judged (nothing left injected or broken, the invariants, the verdicts), then
/// its lab removed, whatever the judge said.
async fn judge_and_remove(
    plan: &Plan,
    target: &TargetPlan,
    variant: &VariantPlan,
    lab: TargetLab,
    watched: Result<Watched, RunError>,
    ctx: &RunContext<'_>,
) -> Result<VariantReport, RunError> {
    let report = match watched {
        Ok(watched) => judge_variant(plan, target, variant, &lab, watched, ctx).await,
        Err(error) => Err(error),
    };
    remove(lab).await;
    report
}

async fn judge_variant(
    plan: &Plan,
    target: &TargetPlan,
    variant: &VariantPlan,
    lab: &TargetLab,
    watched: Watched,
    ctx: &RunContext<'_>,
) -> Result<VariantReport, RunError> {
    let left = watched.timeline.still_injected();
    if !left.is_empty() {
        return Err(RunError::LeftInjected {
            variant: variant.variant,
            faults: left,
        });
    }
    whole(plan, lab).await.map_err(RunError::from)?;
    judge(plan, target, variant, lab, watched, ctx).await
}

/// Nothing left broken: every container a fault took is running again, unfrozen, and no link of
/// the proxy has a fault.
async fn whole(plan: &Plan, lab: &TargetLab) -> Result<(), TargetRunError> {
    let mut broken = Vec::new();
    for fault in plan.phases.iter().flat_map(|p| &p.faults) {
        if let Fault::OnService {
            service, replicas, ..
        } = fault
        {
            for replica in 1..=*replicas {
                let name = lab.container_name(service, replica);
                match lab.docker().state(&name).await {
                    Ok(state) if state.running && !state.paused => {}
                    Ok(state) => broken.push(format!("{name} is {state}")),
                    Err(error) => broken.push(format!("{name}: {error}")),
                }
            }
        }
    }
    if !lab.links.is_empty() {
        let proxy = crate::faults::proxy::client::ProxyClient::of_target(lab).await?;
        for link in &lab.links {
            let name = lab.link_name(link);
            match proxy.link(&name).await {
                Ok(state) if state.faults.is_empty() => {}
                Ok(state) => broken.push(format!(
                    "the {name} link still has {} fault(s)",
                    state.faults.len()
                )),
                Err(error) => broken.push(format!("the {name} link: {error}")),
            }
        }
    }
    match broken.is_empty() {
        true => Ok(()),
        false => Err(TargetRunError::NotWhole(broken.join("; "))),
    }
}

async fn judge(
    plan: &Plan,
    target: &TargetPlan,
    variant: &VariantPlan,
    lab: &TargetLab,
    watched: Watched,
    ctx: &RunContext<'_>,
) -> Result<VariantReport, RunError> {
    let mut invariants = check_invariants(target, lab).await?;
    let mut stats = stats(plan, target, lab, &watched).await?;
    if let Some(lookup) = &target.acknowledged {
        let acknowledged = watched.recorder.acknowledged_ids();
        let lost = match lookup {
            Lookup::Sql(sql) => database::lost(target, lab, sql, &acknowledged).await?,
            Lookup::Http(get) => (http::lost(&reqwest::Client::new(), &lab.entry_url, get, &acknowledged)
                .await)
                .map_err(TargetRunError::from)?,
        };
        stats.set(RUN_PHASE, Metric::LostAcknowledgedOrders, lost.len() as f64);
        invariants.checks.push(nothing_lost(&acknowledged, &lost));
    }
    let caveats = caveats(plan, &stats, &watched.latencies, &watched.untouched);
    hand_over(plan, target, variant, &mut invariants);
    let verdicts = super::judge::verdicts(plan, variant, &watched, &stats, &caveats);
    if let Err(error) = output::write_series(ctx.folder, variant.variant, &watched.samples) {
        (ctx.progress)(Event::Message(format!(
            "could not write the time series: {error}"
        )));
    }
    let logs = lab.worrying_lines().await;
    let forensics = forensics::keep(
        ctx.folder,
        variant.variant,
        &logs,
        watched.recorder.server_errors(),
        watched.recorder.refused(),
    );
    invariants.units_sold = stats.get(RUN_PHASE, Metric::UnitsSold).unwrap_or(0.0) as i64;
    invariants.oversold_units = stats.get(RUN_PHASE, Metric::OversoldUnits).unwrap_or(0.0) as i64;
    Ok(VariantReport {
        variant: variant.variant,
        modes: variant.modes,
        without: variant.without.clone(),
        run_id: lab.run_id.clone(),
        images: images_run(target, variant, lab),
        ready_in_s: lab.ready_in.as_secs_f64(),
        load_started_at: watched.load_started_at,
        offered_rps: plan.rate,
        achieved_rps: watched.requests_in_phases as f64 / super::judge::seconds_run(plan, &watched),
        requests: watched.load.requests.max(watched.recorder.request_count()),
        verdicts,
        invariants,
        timeline: watched.timeline.entries(),
        lost_orders: Vec::new(),
        aborted: watched.aborted.clone(),
        audit: None,
        forensics,
        phase_stats: stats,
        samples: watched.samples,
    })
}

/// Every figure a prediction can be about: per phase from the seconds, over the run from the
/// client's whole record, and the file's `[figures]`.
async fn stats(
    plan: &Plan,
    target: &TargetPlan,
    lab: &TargetLab,
    watched: &Watched,
) -> Result<PhaseStats, TargetRunError> {
    let mut stats = PhaseStats::from_samples(&watched.samples);
    derived_stats(plan, &watched.samples, &watched.latencies, &mut stats);
    for (metric, value) in database::figures(target, lab).await? {
        stats.set(RUN_PHASE, metric, value);
    }
    let requests = watched.recorder.request_count();
    let errors: u64 = watched.recorder.totals().iter().map(|g| g.errors).sum();
    if requests > 0 {
        stats.set(RUN_PHASE, Metric::ErrorRate, errors as f64 / requests as f64);
    }
    Ok(stats)
}

/// "Nothing acknowledged is lost": held when every acknowledged id was found, else naming the first
/// few missing.
fn nothing_lost(acknowledged: &[String], lost: &[String]) -> Invariant {
    let named = match lost.is_empty() {
        true => String::new(),
        false => format!(": {}", lost[..lost.len().min(ROWS_SHOWN)].join(", ")),
    };
    Invariant {
        name: LOST_INVARIANT.to_owned(),
        held: lost.is_empty(),
        detail: format!(
            "{} acknowledged, {} not found by the lookup{named}",
            acknowledged.len(),
            lost.len()
        ),
        predicted_by: None,
    }
}

/// As on the reference lab: a prediction that allows an invariant to break (`oversold_units > 0`)
/// judges it in its place; the metric that counts an invariant's violations is its `counted_by`, and
/// `lost_acknowledged_orders` for the acknowledgements'.
fn hand_over(plan: &Plan, target: &TargetPlan, variant: &VariantPlan, invariants: &mut InvariantReport) {
    let breakages = (plan.predictions_of(variant.variant)).filter(|p| p.claim.allows_a_breakage());
    for p in breakages {
        for check in &mut invariants.checks {
            let counted_by = match target.invariants.iter().find(|i| i.name == check.name) {
                Some(sql) => sql.counted_by,
                None => (check.name == LOST_INVARIANT).then_some(Metric::LostAcknowledgedOrders),
            };
            if counted_by == Some(p.claim.metric) {
                check.predicted_by = Some(p.claim.to_string());
            }
        }
    }
}

/// Each `[[invariants]]`, after the run: a query on a database, or a request to the entry.
async fn check_invariants(target: &TargetPlan, lab: &TargetLab) -> Result<InvariantReport, TargetRunError> {
    let client = reqwest::Client::new();
    let mut report = InvariantReport::default();
    for TargetInvariant { name, check, .. } in &target.invariants {
        let (held, detail) = match check {
            InvariantCheck::Sql { database, sql } => {
                database::violations(target, lab, name, (database, sql)).await?
            }
            InvariantCheck::Http(check) => http::check(&client, &lab.entry_url, check).await,
        };
        report.checks.push(Invariant {
            name: name.clone(),
            held,
            detail,
            predicted_by: None,
        });
    }
    Ok(report)
}

/// Each service's image, as the variant ran it: from the Compose file, or the variant's own.
fn images_run(target: &TargetPlan, variant: &VariantPlan, lab: &TargetLab) -> Vec<ImageChoice> {
    let own = target.images.get(&variant.variant);
    (lab.images.iter())
        .map(|(service, image)| ImageChoice {
            role: service.clone(),
            image: image.clone(),
            source: match own.is_some_and(|own| own.contains_key(service)) {
                true => "variant".into(),
                false => "compose".into(),
            },
        })
        .collect()
}
