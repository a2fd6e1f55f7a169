//! Running an experiment: a fresh lab per variant, the variants side by side or in turn, and for
//! each variant three steps: `prepare` (the
//! data set, the variant's modes on every replica), `phases` (the load through every phase, each
//! phase's faults injected and reverted around it, one sample a second) and `judge` (nothing left
//! injected, the invariants, the verdicts, the time series written).

mod judge;
mod phases;
mod prepare;
mod target;

pub use judge::invariants_of;
pub use target::TargetRunError;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::definition::{Arrangement, PhasePlan, Plan, VariantPlan};
use super::journal::{Entry, Journal};
use super::output::{self, RunHeader, Summary, VariantReport};
use crate::env::target::lab::TargetLab;
use crate::env::{AdminError, EnvError, Lab, LabSpec};
use crate::faults::audit::{AuditError, LabAudit};
use crate::faults::{FaultError, Site};
use crate::load::{LoadError, Turn};
use crate::run_folder::RunFolder;
use crate::vocabulary::Variant;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("could not prepare the lab")]
    Prepare(#[from] AdminError),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("the load generator failed")]
    Load(#[from] LoadError),
    #[error("the load generator's task ended abnormally")]
    LoadTask(#[from] tokio::task::JoinError),
    #[error("could not read the lab's database")]
    Database(#[from] sqlx::Error),
    #[error("{variant}: faults still injected at the end of the run: {}", faults.join(", "))]
    LeftInjected { variant: Variant, faults: Vec<String> },
    #[error("{variant}: the lab is not whole after the last revert: {audit}")]
    LabNotWhole { variant: Variant, audit: LabAudit },
    #[error("could not check the lab after the last revert")]
    Audit(#[from] AuditError),
    #[error("interrupted (Ctrl-C); every fault was reverted and the lab removed")]
    Interrupted,
    #[error(transparent)]
    Target(#[from] TargetRunError),
}

/// What the runner tells whoever shows progress.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Message(String),
    Phase {
        variant: Variant,
        phase: &'a PhasePlan,
    },
    Second {
        variant: Variant,
        at_s: f64,
        total_s: f64,
        figures: String,
    },
}

/// What a run needs besides its plan: where the lab binary is, where the run folder is, the stop
/// signal (Ctrl-C cancels it) and who hears the progress.
pub struct RunContext<'a> {
    pub lab_binary: PathBuf,
    pub folder: &'a RunFolder,
    pub stop: CancellationToken,
    pub progress: &'a (dyn Fn(Event<'_>) + Sync),
    /// Where every event of the run is appended as it happens (`journal.ndjson`).
    pub journal: Journal,
}

/// What a caller with runs to make one after another (the gate) hands each run: the labs it started
/// for it ahead of time, a token the run cancels as soon as its last load has ended (or the run
/// ends without one), the moment the next run's labs may start without sharing the cores with a
/// load, and where the run leaves its labs' removals for the caller to await (none: the run awaits
/// them before it answers).
#[derive(Default)]
pub struct Handover {
    pub labs: Option<Labs>,
    pub loads_over: CancellationToken,
    pub removals: Option<Removals>,
}

/// Labs being removed in the background, left by runs for their caller to await when it suits it:
/// the gate awaits a run's once its report is written, before the next run starts, so the removal
/// (1 to 3 s of the engine stopping containers) overlaps the report and no load. Clones share one
/// list.
#[derive(Clone, Default)]
pub struct Removals(Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl Removals {
    fn add(&self, removals: Vec<tokio::task::JoinHandle<()>>) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.extend(removals);
    }

    /// Waits until every lab left here so far is gone.
    pub async fn finish(&self) {
        let removals = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        for removal in removals {
            let _ = removal.await;
        }
    }
}

/// The labs of a run's variants, in the variants' order, each started and prepared, or the reason
/// it did not start.
pub struct Labs {
    started: Vec<Result<ReadyLab, RunError>>,
    /// A user's target's first variant's lab: a target runs its variants in turn, and starts each
    /// next one's lab when the load before it is over.
    target: Option<Result<TargetLab, RunError>>,
}

impl Labs {
    /// Starts a lab per variant and prepares each for its load, all at once, before any load: a
    /// start is mostly waiting on Postgres and a seed is not measured, so the second lab is ready
    /// with the first instead of after it, and two seeds take the two cores together
    /// (missing-index's 200,000 orders: ~4 s each). `out` is where the run folder will be (its disk
    /// is checked). A waiting lab is idle (its outbox worker polls an empty table ten times a
    /// second). A user's target gets its first variant's lab only (the others start in turn).
    pub async fn start(
        plan: &Plan,
        variants: &[&VariantPlan],
        seed: u64,
        lab_binary: &std::path::Path,
        out: &std::path::Path,
        progress: &(dyn Fn(Event<'_>) + Sync),
    ) -> Labs {
        if let Some(target) = &plan.target {
            let first = match variants.first() {
                Some(variant) => Some(target::start_lab(target, variant, lab_binary, progress).await),
                None => None,
            };
            return Labs {
                started: Vec::new(),
                target: first,
            };
        }
        let count = u32::try_from(variants.len()).unwrap_or(u32::MAX);
        if let Err(error) = crate::env::check_room(count, out).await {
            return Labs {
                started: vec![Err(error.into())],
                target: None,
            };
        }
        let mut plan = plan.clone();
        plan.seed.seed = seed;
        let starts = variants
            .iter()
            .map(|v| start_lab(&plan, v.variant, lab_binary, None, progress));
        let started = futures::future::join_all(starts).await;
        let prepares = started.into_iter().zip(variants).map(|(lab, variant)| {
            let plan = &plan;
            async move {
                let lab = lab?;
                let prepared = prepare::prepare(plan, variant, &lab).await;
                Ok(ReadyLab { lab, prepared })
            }
        });
        Labs {
            started: futures::future::join_all(prepares).await,
            target: None,
        }
    }

    /// Removes every lab that started (for a run that will not happen).
    pub async fn remove(self) {
        for ready in self.started.into_iter().flatten() {
            let _ = remove_in_background(ready.lab).await;
        }
        if let Some(Ok(lab)) = self.target {
            target::remove(lab).await;
        }
    }
}

/// A lab started for a variant, and its preparation for the load (a failed one fails the variant).
struct ReadyLab {
    lab: Lab,
    prepared: Result<prepare::Prepared, RunError>,
}

/// Counts the variants' loads down and cancels the handover's token when the last has ended.
struct LoadsOver<'a> {
    left: std::sync::atomic::AtomicUsize,
    token: &'a CancellationToken,
}

impl LoadsOver<'_> {
    fn one_ended(&self) {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) <= 1 {
            self.token.cancel();
        }
    }
}

/// What the variants of one run share while they run: the load generator's turn, and the count of
/// loads still going.
struct Shared<'a> {
    turn: Arc<Turn>,
    loads: LoadsOver<'a>,
}

/// Starts the lab `variant` runs on, sized by `plan`.
async fn start_lab(
    plan: &Plan,
    variant: Variant,
    lab_binary: &std::path::Path,
    service_cpus: Option<f64>,
    progress: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Lab, RunError> {
    let spec = LabSpec {
        replicas: plan.replicas,
        db_pool_size: plan.pool_size,
        mail: plan.mail,
        payments: plan.payments,
        seed: plan.seed.seed,
        balancer: plan
            .variants
            .iter()
            .find(|v| v.variant == variant)
            .and_then(|v| v.balancer),
        service_cpus,
        ..LabSpec::with_binary(lab_binary.to_owned())
    };
    progress(Event::Message(format!("{variant}: starting the lab")));
    let show = |line: &str| progress(Event::Message(format!("  {variant}: {line}")));
    // A start is not abandoned half-way, even for Ctrl-C: a container whose creation is on its way
    // to the engine when the start is dropped could outlive the cleanup. It is removed once started.
    let lab = Lab::start(&spec, &show).await?;
    progress(Event::Message(format!(
        "{variant}: lab {} ready in {:.1?}",
        lab.run_id, lab.ready_in
    )));
    Ok(lab)
}

/// A lab for `variant` of `plan`, started and prepared as a run's is (seeded, the variant's modes
/// on every replica), for a search that drives many loads through one lab (`fortress capacity`).
/// Answers the lab and the highest order id before any load. The caller removes the lab
/// (`Lab::shutdown`), whatever happens. `service_cpus` caps each replica's CPUs.
pub async fn prepared_lab(
    plan: &Plan,
    variant: &VariantPlan,
    lab_binary: &std::path::Path,
    service_cpus: Option<f64>,
    progress: &(dyn Fn(Event<'_>) + Sync),
) -> Result<(Lab, i64), RunError> {
    let lab = start_lab(plan, variant.variant, lab_binary, service_cpus, progress).await?;
    match prepare::prepare(plan, variant, &lab).await {
        Ok(prepared) => Ok((lab, prepared.orders_before_run)),
        Err(error) => {
            let _ = remove_in_background(lab).await;
            Err(error)
        }
    }
}

/// Prepares a lab again for another load (seeded afresh, the variant's modes on every replica, a
/// replica restarted since included); answers the highest order id before that load.
pub async fn prepare_again(plan: &Plan, variant: &VariantPlan, lab: &Lab) -> Result<i64, RunError> {
    Ok(prepare::prepare(plan, variant, lab).await?.orders_before_run)
}

/// One variant on its prepared lab: run the phases, judge.
async fn run_prepared(
    plan: &Plan,
    variant: &VariantPlan,
    lab: &Lab,
    prepared: Result<prepare::Prepared, RunError>,
    ctx: &RunContext<'_>,
    shared: &Shared<'_>,
) -> Result<VariantReport, RunError> {
    let watched = match prepared {
        Ok(prepared) => phases::run(plan, variant.variant, Site::Reference(lab), ctx, &shared.turn)
            .await
            .map(|watched| (prepared, watched)),
        Err(error) => Err(error),
    };
    shared.loads.one_ended();
    let (prepared, watched) = watched?;
    let report = judge::judge(plan, variant, lab, &prepared, watched, ctx).await?;
    ctx.journal.write(&Entry::VariantJudged {
        report: Box::new(report.clone()),
    });
    Ok(report)
}

/// A lab being removed in the background while the next variant runs.
fn remove_in_background(lab: Lab) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = lab.shutdown().await {
            tracing::warn!(%error, "could not remove the lab; run `fortress cleanup`");
        }
    })
}

/// What the variants gave: their reports, the first error, and the labs' removals under way.
#[derive(Default)]
struct Outcome {
    reports: Vec<VariantReport>,
    failure: Option<RunError>,
    removals: Vec<tokio::task::JoinHandle<()>>,
}

impl Outcome {
    fn fail(&mut self, error: RunError) {
        self.failure = self.failure.take().or(Some(error));
    }
}

/// Runs the chosen variants, each on a fresh lab of its own (the handover's, if it brings them),
/// side by side or in turn as the plan says, writes the run folder, and answers the summary with
/// its exit code. Each lab is removed in the background as soon as its variant is done, and every
/// lab is gone before the run answers, unless the handover takes the removals.
pub async fn run(
    plan: &Plan,
    variants: &[&VariantPlan],
    seed: u64,
    ctx: &RunContext<'_>,
    handover: Handover,
) -> Result<Summary, RunError> {
    let mut plan = plan.clone();
    plan.seed.seed = seed;
    if let Some(target) = plan.target.clone() {
        return target::run(&plan, &target, variants, ctx, handover).await;
    }
    let header = RunHeader::of(&plan, chrono::Utc::now());
    ctx.journal.write(&Entry::RunStarted {
        header: header.clone(),
    });
    let labs = match handover.labs {
        Some(labs) => {
            (ctx.progress)(Event::Message(
                "labs started and prepared ahead, during the previous run's judging".into(),
            ));
            labs
        }
        None => {
            Labs::start(
                &plan,
                variants,
                seed,
                &ctx.lab_binary,
                ctx.folder.dir(),
                ctx.progress,
            )
            .await
        }
    };
    let mut outcome = Outcome::default();
    let mut started = Vec::new();
    for lab in labs.started {
        match lab {
            Ok(lab) => started.push(lab),
            Err(error) => outcome.fail(error),
        }
    }
    // After a failure (a lab that did not start), the labs go unused.
    let shared = match Turn::take(&ctx.stop).await {
        Ok(turn) if outcome.failure.is_none() => Some(Shared {
            turn: Arc::new(turn),
            loads: LoadsOver {
                left: variants.len().into(),
                token: &handover.loads_over,
            },
        }),
        Ok(_) => None,
        Err(_) => {
            outcome.fail(RunError::Interrupted);
            None
        }
    };
    let pairs = variants.iter().copied().zip(started);
    match (&shared, plan.arrangement) {
        (None, _) => outcome.removals = pairs.map(|(_, ready)| remove_in_background(ready.lab)).collect(),
        (Some(shared), Arrangement::InTurn) => in_turn(&plan, pairs, ctx, shared, &mut outcome).await,
        (Some(shared), Arrangement::SideBySide) => {
            side_by_side(&plan, pairs, ctx, shared, &mut outcome).await
        }
    }
    drop(shared);
    handover.loads_over.cancel();
    // Every lab is gone before the run answers, whatever happened, or its caller awaits that.
    let removals = std::mem::take(&mut outcome.removals);
    match &handover.removals {
        Some(later) => later.add(removals),
        None => {
            for removal in removals {
                let _ = removal.await;
            }
        }
    }
    // Stopped after the last variant was judged, or while a lab was being removed: still no verdict.
    if outcome.failure.is_none() && ctx.stop.is_cancelled() {
        outcome.fail(RunError::Interrupted);
    }
    let reports = match outcome.failure {
        Some(error) => Err(error),
        None => Ok(outcome.reports),
    };
    finish(header, reports, ctx).await
}

/// The end of every run: a stopped one journalled with its cause; a judged one summarised,
/// journalled and written to `summary.json`.
async fn finish(
    header: RunHeader,
    reports: Result<Vec<VariantReport>, RunError>,
    ctx: &RunContext<'_>,
) -> Result<Summary, RunError> {
    let reports = match reports {
        Ok(reports) => reports,
        Err(error) => {
            ctx.journal.write(&Entry::RunStopped {
                reason: reference_service::error::cause_chain(&error),
            });
            return Err(error);
        }
    };
    let order = reports.iter().map(|r| r.variant).collect();
    let summary = Summary::from_parts(header, reports, docker_version().await);
    ctx.journal.write(&Entry::RunEnded {
        exit_code: summary.exit_code,
        docker_version: summary.docker_version.clone(),
        variants: order,
    });
    if let Err(error) = output::write_summary(ctx.folder, &summary) {
        (ctx.progress)(Event::Message(format!("could not write summary.json: {error}")));
    }
    Ok(summary)
}

/// The variants one after the other. A failure, Ctrl-C or a stop condition stops the run there: the
/// variants after it do not start.
async fn in_turn<'v>(
    plan: &Plan,
    pairs: impl Iterator<Item = (&'v VariantPlan, ReadyLab)>,
    ctx: &RunContext<'_>,
    shared: &Shared<'_>,
    outcome: &mut Outcome,
) {
    let mut aborted = false;
    for (variant, ReadyLab { lab, prepared }) in pairs {
        if outcome.failure.is_none() && ctx.stop.is_cancelled() {
            outcome.fail(RunError::Interrupted);
        }
        if outcome.failure.is_none() && !aborted {
            match run_prepared(plan, variant, &lab, prepared, ctx, shared).await {
                Ok(report) => {
                    aborted = report.aborted.is_some();
                    outcome.reports.push(report);
                }
                Err(error) => outcome.fail(error),
            }
        }
        outcome.removals.push(remove_in_background(lab));
    }
}

/// The variants at the same time, each on its lab, each lab removed as soon as its variant is done.
/// (A plan with stop conditions runs in turn: a stop must keep the variants after it from starting.)
async fn side_by_side<'v>(
    plan: &Plan,
    pairs: impl Iterator<Item = (&'v VariantPlan, ReadyLab)>,
    ctx: &RunContext<'_>,
    shared: &Shared<'_>,
    outcome: &mut Outcome,
) {
    let runs = pairs.map(|(variant, ReadyLab { lab, prepared })| async move {
        let report = run_prepared(plan, variant, &lab, prepared, ctx, shared).await;
        (report, remove_in_background(lab))
    });
    for (report, removal) in futures::future::join_all(runs).await {
        match report {
            Ok(report) => outcome.reports.push(report),
            Err(error) => outcome.fail(error),
        }
        outcome.removals.push(removal);
    }
}

async fn docker_version() -> Option<String> {
    match crate::env::docker::DockerClient::connect().await {
        Ok(docker) => docker.version().await.ok(),
        Err(_) => None,
    }
}
