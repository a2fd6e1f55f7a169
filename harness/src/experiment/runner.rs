//! Running one variant of an experiment: a fresh lab, the variant's modes, the load through every
//! phase, each phase's faults injected and reverted around it, one sample a second, then the
//! invariants and the verdicts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use super::definition::{PhasePlan, Plan, RUN_PHASE, VariantPlan};
use super::invariants::{self, RunFacts};
use super::metric::Metric;
use super::output::{self, Summary, VariantReport};
use super::phase_figures::{caveats, derived_stats};
use super::verdict::{self, PhaseStats, Sample};
use crate::env::{ADMIN_TOKEN, EnvError, Lab, LabSpec};
use crate::faults::{self, Fault, FaultError, FaultTimeline};
use crate::load::{self, Group, LoadSpec, Recorder, quantile_ms};
use crate::observe::Observer;

/// How long the outbox gets to drain before the email invariant is judged.
const DRAIN: Duration = Duration::from_secs(15);
/// How long an interrupted run waits for the load's users to stop (in-flight requests finish first).
const LOAD_STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("the service refused {what}: {detail}")]
    Service { what: &'static str, detail: String },
    #[error("the load generator failed: {0}")]
    Load(String),
    #[error("checking the invariants failed: {0}")]
    Invariants(#[from] sqlx::Error),
    #[error("interrupted (Ctrl-C); every fault was reverted and the lab removed")]
    Interrupted,
}

/// What the runner tells whoever shows progress.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Message(String),
    Phase {
        variant: &'a str,
        phase: &'a PhasePlan,
    },
    Second {
        variant: &'a str,
        at_s: f64,
        total_s: f64,
        figures: String,
    },
}

pub struct RunContext<'a> {
    pub lab_binary: PathBuf,
    pub out_dir: &'a Path,
    pub stop: CancellationToken,
    pub progress: &'a (dyn Fn(Event<'_>) + Sync),
}

async fn admin(lab: &Lab, path: &str, body: &serde_json::Value, what: &'static str) -> Result<(), RunError> {
    let url = format!("{}{path}", lab.service_url(1).await?);
    let request = if path == "/admin/modes" {
        lab.http().put(url)
    } else {
        lab.http().post(url)
    };
    let response = request
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(RunError::Service {
            what,
            detail: format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
        }),
        Err(e) => Err(RunError::Service {
            what,
            detail: e.to_string(),
        }),
    }
}

/// A lab being removed in the background while the next variant runs.
type Removal = tokio::task::JoinHandle<()>;

fn remove_in_background(lab: Lab) -> Removal {
    tokio::spawn(async move {
        if let Err(error) = lab.shutdown().await {
            tracing::warn!(%error, "could not remove the lab; run `fortress cleanup`");
        }
    })
}

/// Starts the lab `variant` runs on, sized by `plan`.
async fn start_lab(plan: &Plan, variant: &VariantPlan, ctx: &RunContext<'_>) -> Result<Lab, RunError> {
    let progress = ctx.progress;
    let spec = LabSpec {
        replicas: plan.replicas,
        db_pool_size: plan.pool_size,
        ..LabSpec::with_binary(ctx.lab_binary.clone())
    };
    progress(Event::Message(format!("{}: starting the lab", variant.name)));
    let show = |line: &str| progress(Event::Message(format!("  {}: {line}", variant.name)));
    let lab = tokio::select! {
        lab = Lab::start(&spec, &show) => lab?,
        () = ctx.stop.cancelled() => return Err(RunError::Interrupted),
    };
    progress(Event::Message(format!(
        "{}: lab {} ready in {:.1?}",
        variant.name, lab.run_id, lab.ready_in
    )));
    Ok(lab)
}

async fn drive(
    plan: &Plan,
    variant: &VariantPlan,
    lab: &Lab,
    ctx: &RunContext<'_>,
) -> Result<VariantReport, RunError> {
    admin(
        lab,
        "/admin/seed",
        &serde_json::to_value(&plan.seed).unwrap_or_default(),
        "the seed plan",
    )
    .await?;
    admin(lab, "/admin/modes", &variant.modes, "the variant's modes").await?;
    let pg = sqlx::PgPool::connect(&lab.postgres_url().await?).await?;
    let orders_before_run: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM orders")
        .fetch_one(&pg)
        .await?;

    let recorder = Recorder::new();
    let total = plan.run_seconds();
    let load_spec = LoadSpec::from_plan(
        plan,
        &lab.service_url(1).await?,
        Duration::from_secs_f64(total.ceil() + 1.0),
    );
    let report_dir = ctx.out_dir.join(format!("goose-{}", variant.name));
    let _ = std::fs::create_dir_all(&report_dir);
    let load_recorder = recorder.clone();
    // Ends the load when the last phase does (goose's own end is only whole seconds after its start).
    let load_stop = ctx.stop.child_token();
    let mut load = {
        let load_stop = load_stop.clone();
        tokio::spawn(async move { load::run(&load_spec, load_recorder, &report_dir, &load_stop).await })
    };

    // The phases start when the load does (goose starts its users first; a run in the same process
    // may still hold goose's turn).
    let waiting = Instant::now();
    while recorder.request_count() == 0 {
        if load.is_finished() || waiting.elapsed() > Duration::from_secs(60) || ctx.stop.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let timeline = FaultTimeline::default();
    let mut observer = Observer::new();
    observer.sample(lab).await;
    let mut clock = Clock::start();
    let requests_before_phases = recorder.request_count();
    let load_started_at = chrono::Utc::now();
    let mut samples = Vec::new();
    let mut phase_histograms: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for phase in &plan.phases {
        (ctx.progress)(Event::Phase {
            variant: &variant.name,
            phase,
        });
        clock.phase_end += Duration::from_secs_f64(phase.seconds);
        let watch = watch_phase(
            lab,
            &mut observer,
            &recorder,
            phase,
            &mut clock,
            total,
            &variant.name,
            ctx,
            &mut samples,
            &mut phase_histograms,
        );
        let watched = with_faults(lab, &timeline, &ctx.stop, &phase.faults, watch).await;
        if watched.is_err() || ctx.stop.is_cancelled() {
            // The load stops before the lab goes, or its users keep firing at removed containers.
            load_stop.cancel();
            if tokio::time::timeout(LOAD_STOP_GRACE, &mut load).await.is_err() {
                load.abort();
            }
            return match watched {
                Ok(()) | Err(FaultError::Interrupted) => Err(RunError::Interrupted),
                Err(error) => Err(error.into()),
            };
        }
    }
    let requests_in_phases = recorder.request_count() - requests_before_phases;
    load_stop.cancel();
    let summary = load
        .await
        .map_err(|e| RunError::Load(e.to_string()))?
        .map_err(|e| RunError::Load(e.to_string()))?;
    let facts = RunFacts {
        acknowledged: recorder.acknowledged_orders(),
        orders_before_run,
    };
    let mut invariants = invariants::check(&pg, &facts, DRAIN).await?;

    let mut stats = PhaseStats::from_samples(&samples);
    derived_stats(plan, &samples, &phase_histograms, &mut stats);
    stats.set(RUN_PHASE, Metric::OversoldUnits, invariants.oversold_units as f64);
    stats.set(RUN_PHASE, Metric::UnitsSold, invariants.units_sold as f64);
    let requests = recorder.request_count();
    let errors: u64 = recorder.totals().iter().map(|g| g.errors).sum();
    if requests > 0 {
        stats.set(RUN_PHASE, Metric::ErrorRate, errors as f64 / requests as f64);
    }
    let caveats = caveats(plan, &stats, &timeline);
    let predictions: Vec<_> = plan
        .predictions
        .iter()
        .filter(|p| p.variant == variant.name)
        .collect();
    for p in &predictions {
        invariants.predicted(p.metric, p.claim());
    }
    let verdicts = predictions
        .iter()
        .map(|p| verdict::judge(p, &stats, &caveats))
        .collect();
    if let Err(error) = output::write_series(ctx.out_dir, &variant.name, &samples) {
        (ctx.progress)(Event::Message(format!(
            "could not write the time series: {error}"
        )));
    }
    Ok(VariantReport {
        variant: variant.name.clone(),
        modes: variant.modes.clone(),
        run_id: lab.run_id.clone(),
        images: lab.images.clone(),
        ready_in_s: lab.ready_in.as_secs_f64(),
        load_started_at,
        offered_rps: plan.rate,
        achieved_rps: requests_in_phases as f64 / total,
        requests: summary.requests.max(requests),
        verdicts,
        invariants,
        timeline: timeline.entries(),
        phase_stats: stats,
        samples,
    })
}

/// Injects every fault of a phase (in order), runs `body`, reverts them all (in reverse order).
async fn with_faults<T>(
    lab: &Lab,
    timeline: &FaultTimeline,
    stop: &CancellationToken,
    faults: &[Fault],
    body: impl Future<Output = T>,
) -> Result<T, FaultError> {
    match faults {
        [] => Ok(body.await),
        [first, rest @ ..] => {
            let inner = Box::pin(with_faults(lab, timeline, stop, rest, body));
            faults::with_fault(lab, timeline, stop, first, inner).await?
        }
    }
}

/// The run's timetable, fixed when the load starts: phases end at their planned offsets, and samples
/// are taken every whole second after the start, so a slow sample or a slow fault injection never
/// stretches the run.
struct Clock {
    started: Instant,
    /// Where the current phase ends.
    phase_end: Instant,
    next_sample: Instant,
}

impl Clock {
    fn start() -> Self {
        let started = Instant::now();
        Self {
            started,
            phase_end: started,
            next_sample: started + Duration::from_secs(1),
        }
    }

    /// Waits for the next sample of the current phase; `false` once the phase is over (at its end).
    /// A sample due within a few milliseconds of the phase's end still belongs to it.
    async fn next_sample_in_phase(&mut self) -> bool {
        if self.next_sample > self.phase_end + Duration::from_millis(10) {
            tokio::time::sleep_until(self.phase_end.into()).await;
            return false;
        }
        tokio::time::sleep_until(self.next_sample.into()).await;
        // A sample that took longer than a second skips the seconds it missed rather than bunching.
        while self.next_sample <= Instant::now() {
            self.next_sample += Duration::from_secs(1);
        }
        true
    }
}

#[allow(clippy::too_many_arguments)]
async fn watch_phase(
    lab: &Lab,
    observer: &mut Observer,
    recorder: &Recorder,
    phase: &PhasePlan,
    clock: &mut Clock,
    total: f64,
    variant: &str,
    ctx: &RunContext<'_>,
    samples: &mut Vec<Sample>,
    histograms: &mut BTreeMap<String, Histogram<u64>>,
) {
    loop {
        tokio::select! {
            in_phase = clock.next_sample_in_phase() => if !in_phase { return },
            () = ctx.stop.cancelled() => return,
        }
        let mut values = observer.sample(lab).await;
        for second in recorder.take_finished() {
            let count = second.count() as f64;
            values.insert(Metric::ThroughputRps, count);
            if count > 0.0 {
                values.insert(Metric::ErrorRate, second.errors() as f64 / count);
                let latency = second.latency_us(&Group::ALL);
                values.insert(Metric::P50Ms, quantile_ms(&latency, 0.50));
                values.insert(Metric::P95Ms, quantile_ms(&latency, 0.95));
                values.insert(Metric::P99Ms, quantile_ms(&latency, 0.99));
                match histograms.get_mut(&phase.name) {
                    Some(merged) => {
                        let _ = merged.add(&latency);
                    }
                    None => {
                        histograms.insert(phase.name.clone(), latency);
                    }
                }
            }
        }
        if let (Some(statements), Some(requests)) = (
            values.get(&Metric::PgStatementsPerS),
            values.get(&Metric::ThroughputRps),
        ) && *requests > 0.0
        {
            values.insert(Metric::StatementsPerRequest, statements / requests);
        }
        let at_s = clock.started.elapsed().as_secs_f64();
        let figures = format!(
            "{:.0} req/s, p95 {:.0} ms, pg {:.0} stmt/s",
            values.get(&Metric::ThroughputRps).unwrap_or(&0.0),
            values.get(&Metric::P95Ms).unwrap_or(&0.0),
            values.get(&Metric::PgStatementsPerS).unwrap_or(&0.0)
        );
        (ctx.progress)(Event::Second {
            variant,
            at_s,
            total_s: total,
            figures,
        });
        samples.push(Sample {
            at_s,
            phase: phase.name.clone(),
            values,
        });
    }
}

/// Runs the chosen variants one after the other, each on a fresh lab of its own, writes the run
/// folder, and answers the summary with its exit code.
///
/// Every lab starts at once, before any load: most of a start is Postgres's initdb, which leaves
/// the other core free, so the second lab is ready with the first instead of after the first variant
/// (about 2.5 s saved). A waiting lab is idle (its outbox worker polls an empty table ten times a
/// second); each lab is removed in the background as soon as its variant is done.
pub async fn run(
    plan: &Plan,
    variants: &[&VariantPlan],
    seed: u64,
    ctx: &RunContext<'_>,
) -> Result<Summary, RunError> {
    let started_at = chrono::Utc::now();
    let mut reports = Vec::new();
    let mut removals = Vec::new();
    let mut failure = None;
    let mut plan = plan.clone();
    plan.seed.seed = seed;
    let mut labs = Vec::new();
    for lab in futures::future::join_all(variants.iter().map(|v| start_lab(&plan, v, ctx))).await {
        match lab {
            Ok(lab) => labs.push(lab),
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    // After a failure (a lab that did not start, a variant that failed), the labs left go unused.
    for (variant, lab) in variants.iter().zip(labs) {
        if failure.is_none() {
            match drive(&plan, variant, &lab, ctx).await {
                Ok(report) => reports.push(report),
                Err(error) => failure = Some(error),
            }
        }
        removals.push(remove_in_background(lab));
    }
    // Every lab is gone before the run answers, whatever happened.
    for removal in removals {
        let _ = removal.await;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let verdicts: Vec<_> = reports.iter().flat_map(|r| r.verdicts.iter().cloned()).collect();
    let held = reports.iter().all(|r| r.invariants.held());
    let docker_version = match crate::env::docker::DockerClient::connect().await {
        Ok(docker) => docker.version().await.ok(),
        Err(_) => None,
    };
    let summary = Summary {
        experiment: plan.name.clone(),
        story: plan.story.clone(),
        source: plan.source.clone(),
        profile: format!("{:?}", plan.profile).to_lowercase(),
        seed,
        started_at,
        schema: output::SUMMARY_SCHEMA,
        fortress_version: env!("CARGO_PKG_VERSION").into(),
        git_revision: output::git_revision(),
        docker_version,
        machine: output::Machine::this(),
        exit_code: verdict::exit_code(&verdicts, held),
        phases: plan
            .phases
            .iter()
            .map(|p| output::PhaseOutline {
                name: p.name.clone(),
                seconds: p.seconds,
                faults: p.faults.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        variants: reports,
    };
    if let Err(error) = output::write_summary(ctx.out_dir, &summary) {
        (ctx.progress)(Event::Message(format!("could not write summary.json: {error}")));
    }
    Ok(summary)
}
