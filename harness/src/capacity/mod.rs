//! Capacity under fault (`fortress capacity`): per variant, the highest arrival rate that holds the
//! experiment's objective, steady and again with its fault injected, and what share of its capacity
//! the service keeps when the fault strikes.
//!
//! Each variant gets one lab, prepared as a run's, and its searches run on it one step after another,
//! never side by side (a second load would take the cores the capacity is measured on). The fault is
//! injected once around the whole search under fault and reverted after it (on error and Ctrl-C
//! too), and its evidence decides whether that search measured anything. The invariants are checked
//! once the variant's searches are over, over every order any step acknowledged.

mod anchor;
pub mod journal;
mod knee;
mod page;
mod search;
mod step;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use anchor::Anchor;
use journal::{CapacityEvent, CapacityJournal};
pub use search::{Found, Search};
pub use step::{StepFigures, StepVerdict, Trial, Window, start_deadline, unix_now};

use crate::env::{EnvError, Lab, logs};
use crate::experiment::claim::Comparison;
use crate::experiment::definition::{
    CapacityClaim, CapacityPlan, CapacityPrediction, Plan, Profile, VariantPlan,
};
use crate::experiment::invariants::{InvariantReport, RunFacts};
use crate::experiment::runner::{self, Event, RunError};
use crate::faults::audit::{self, AuditError};
use crate::faults::{self, FaultError, FaultTimeline, TimelineEntry};
use crate::gate::{Case, CaseKind};
use crate::load::{LoadError, Turn};
use crate::run_folder::RunFolder;
use crate::vocabulary::{CapacityFigure, Condition, ExitCode, Outcome, Variant};

/// A rate whose step came this close to the objective's edge (1 = at it) is near the knee, and is
/// tried again until the majority of `capacity.repeats` agree.
const KNEE: std::ops::RangeInclusive<f64> = 0.6..=1.6;
/// A service that stopped answering: its last lines told in the error, and kept in the run folder.
const LAST_LINES_TOLD: usize = 15;
const LAST_LINES_KEPT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error(
        "{0} has no [capacity] section: add one (fault_phase and p99_ms at least; experiments/db-latency.toml has an example)"
    )]
    NoSection(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the load generator failed")]
    Load(#[from] LoadError),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("could not check the lab after the fault's revert")]
    Audit(#[from] AuditError),
    #[error("{variant}: the lab is not whole after the fault's revert: {audit}")]
    LabNotWhole {
        variant: Variant,
        audit: audit::LabAudit,
    },
    #[error(
        "{variant}: the service stopped answering, so no later step could measure it; how its replicas stand and what they said last:\n{words}"
    )]
    ServiceGone {
        variant: Variant,
        #[source]
        cause: step::StepError,
        words: String,
    },
    #[error("interrupted (Ctrl-C); every fault was reverted and the lab removed")]
    Interrupted,
}

/// What a capacity run needs besides its plan.
pub struct CapacityContext<'a> {
    pub lab_binary: PathBuf,
    pub folder: &'a RunFolder,
    pub stop: CancellationToken,
    pub progress: &'a (dyn Fn(Event<'_>) + Sync),
    pub goal: SearchGoal,
}

/// How far a search goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchGoal {
    /// To the knee, within the file's resolution: what `fortress capacity` reports.
    Knee,
    /// Only until every prediction is decided: a gate judges claims, and a claim such as
    /// "kept >= 0.5" is often settled by bounds (a capacity under fault of 1,200/s or more against
    /// a steady one below 2,400/s). The steady search stops at its first bracket, the search under
    /// fault starts where the steady one held and stops once the claims are decided over both, and
    /// the steady one goes on only if they are not.
    Verdicts,
}

/// One search: its condition, where it found the knee, and every step it took.
#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub condition: Condition,
    pub found: Found,
    pub capacity: f64,
    /// Why `capacity` is a bound rather than the knee, when it is.
    pub caveat: Option<String>,
    /// Set when the fault's evidence shows it never touched the system: the search measured nothing.
    pub untouched: Option<String>,
    pub trials: Vec<Trial>,
}

impl SearchReport {
    fn of(condition: Condition, found: Found, trials: Vec<Trial>) -> Self {
        Self {
            condition,
            found,
            capacity: found.capacity(),
            caveat: found.caveat(),
            untouched: None,
            trials,
        }
    }
}

/// A capacity prediction's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityVerdict {
    pub variant: Variant,
    pub claim: String,
    pub why: String,
    pub observed: Option<f64>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One variant's searches, figures, verdicts and invariants.
#[derive(Debug, Clone, Serialize)]
pub struct VariantCapacity {
    pub variant: Variant,
    pub searches: Vec<SearchReport>,
    pub figures: BTreeMap<CapacityFigure, f64>,
    pub verdicts: Vec<CapacityVerdict>,
    pub invariants: InvariantReport,
    pub timeline: Vec<TimelineEntry>,
    /// pgbench's rate for the checkout on this variant's Postgres, when the file asks for it.
    pub anchor: Option<Anchor>,
}

/// Everything a capacity run found (`capacity.json`).
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    pub experiment: String,
    pub profile: Profile,
    pub seed: u64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub plan: CapacityPlan,
    pub variants: Vec<VariantCapacity>,
}

/// Searches each of `variants` in turn, each on a lab of its own (removed whatever happens), under
/// each of `conditions`, writes `capacity.json` and the knee charts, and answers the findings.
pub async fn run(
    plan: &Plan,
    variants: &[&VariantPlan],
    conditions: &[Condition],
    ctx: &CapacityContext<'_>,
) -> Result<CapacityReport, CapacityError> {
    let capacity = (plan.capacity.as_ref()).ok_or_else(|| CapacityError::NoSection(plan.source.clone()))?;
    let journal = CapacityJournal::create(&ctx.folder.capacity_journal());
    journal.write(&CapacityEvent::CapacityStarted {
        experiment: &plan.name,
        profile: plan.profile,
        seed: plan.seed.seed,
        plan: capacity,
    });
    let searched = every_variant(plan, capacity, variants, conditions, ctx, &journal).await;
    match &searched {
        Ok(report) => journal.write(&CapacityEvent::CapacityEnded {
            exit_code: report.exit_code(),
        }),
        Err(error) => journal.write(&CapacityEvent::CapacityStopped {
            reason: reference_service::error::cause_chain(error),
        }),
    }
    let report = searched?;
    write(ctx.folder, &report);
    Ok(report)
}

/// Each variant's searches in turn, on a lab of its own.
async fn every_variant(
    plan: &Plan,
    capacity: &CapacityPlan,
    variants: &[&VariantPlan],
    conditions: &[Condition],
    ctx: &CapacityContext<'_>,
    journal: &CapacityJournal,
) -> Result<CapacityReport, CapacityError> {
    let turn = Turn::take(&ctx.stop)
        .await
        .map_err(|_| CapacityError::Interrupted)?;
    let mut report = CapacityReport {
        experiment: plan.name.clone(),
        profile: plan.profile,
        seed: plan.seed.seed,
        started_at: chrono::Utc::now(),
        plan: capacity.clone(),
        variants: Vec::new(),
    };
    for variant in variants {
        let (lab, orders_before_run) = runner::prepared_lab(
            plan,
            variant,
            &ctx.lab_binary,
            capacity.service_cpus,
            ctx.progress,
        )
        .await?;
        let searched = VariantSearch {
            plan,
            capacity,
            variant: variant.variant,
            lab: &lab,
            ctx,
            turn: &turn,
            journal,
        }
        .run(conditions, orders_before_run)
        .await;
        if let Err(error) = lab.shutdown().await {
            tracing::warn!(%error, "could not remove the lab; run `fortress cleanup`");
        }
        report.variants.push(searched?);
        if ctx.stop.is_cancelled() {
            return Err(CapacityError::Interrupted);
        }
    }
    Ok(report)
}

impl CapacityReport {
    /// Refuted when a prediction was refuted or an invariant broken, inconclusive when a
    /// prediction could not be judged, else confirmed.
    pub fn exit_code(&self) -> ExitCode {
        let outcomes = self.variants.iter().flat_map(|v| &v.verdicts).map(|v| &v.outcome);
        let broken = self
            .variants
            .iter()
            .flat_map(|v| &v.invariants.checks)
            .any(|c| !c.passed());
        let mut code = if broken {
            ExitCode::Refuted
        } else {
            ExitCode::Confirmed
        };
        for outcome in outcomes {
            code = match (code, outcome) {
                (ExitCode::Refuted, _) | (_, Outcome::Refuted) => ExitCode::Refuted,
                (_, Outcome::Inconclusive { .. } | Outcome::Aborted { .. }) => ExitCode::Inconclusive,
                (code, Outcome::Confirmed) => code,
            };
        }
        code
    }
}

/// Writes `capacity.json`, a knee chart per variant and `report.html`; a file that cannot be
/// written is said, and the findings are still answered.
fn write(folder: &RunFolder, report: &CapacityReport) {
    let json = serde_json::to_vec_pretty(report).map(|json| std::fs::write(folder.capacity(), json));
    if !matches!(json, Ok(Ok(()))) {
        eprintln!("fortress: could not write {}", folder.capacity().display());
    }
    for variant in &report.variants {
        let path = folder.knee_chart(variant.variant);
        if let Err(error) = knee::draw(&path, variant, &report.plan.objective) {
            eprintln!("fortress: could not draw {}: {error}", path.display());
        }
    }
    let written = page::page(report, folder).map(|page| std::fs::write(folder.report(), page));
    if !matches!(written, Ok(Ok(()))) {
        eprintln!("fortress: could not write {}", folder.report().display());
    }
}

/// What one variant's searches share.
struct VariantSearch<'a> {
    plan: &'a Plan,
    capacity: &'a CapacityPlan,
    variant: Variant,
    lab: &'a Lab,
    ctx: &'a CapacityContext<'a>,
    turn: &'a Turn,
    journal: &'a CapacityJournal,
}

impl VariantSearch<'_> {
    /// The searches, then the invariants and the verdicts.
    async fn run(
        &self,
        conditions: &[Condition],
        orders_before_run: i64,
    ) -> Result<VariantCapacity, CapacityError> {
        let mut stepper = step::Stepper {
            plan: self.plan,
            objective: self.capacity.objective,
            step_seconds: self.capacity.step_seconds,
            warmup_seconds: self.capacity.warmup_seconds,
            base_url: self.lab.entry_url().await?,
            lab: self.lab,
            turn: self.turn,
            goose_report: self.ctx.folder.goose_report(self.variant),
            acknowledged: Vec::new(),
            sessions: Default::default(),
            stop: self.ctx.stop.clone(),
        };
        let (searches, timeline) = self.searches(&mut stepper, conditions).await?;
        let facts = RunFacts {
            acknowledged: std::mem::take(&mut stepper.acknowledged),
            orders_before_run,
        };
        let mut invariants = runner::invariants_of(self.lab, &facts).await?;
        let figures = figures(&searches);
        let anchor = self.anchor(figures.get(&CapacityFigure::Capacity).copied()).await;
        let found = Findings {
            searches: &searches,
            figures: &figures,
            invariants: &invariants,
        };
        let verdicts = verdicts(self.capacity, self.variant, &found);
        hand_over_predicted(self.capacity, self.variant, &mut invariants);
        Ok(VariantCapacity {
            variant: self.variant,
            verdicts,
            searches,
            figures,
            invariants,
            timeline: timeline.entries(),
            anchor,
        })
    }

    /// The searches `conditions` ask for, and the fault's timeline. To the knee each, the steady
    /// one first; for the gate (`SearchGoal::Verdicts`) only as far as the claims need: the steady
    /// search to its first bracket, the one under fault until they are decided over both, and the
    /// steady one on again, after the fault's revert (the lab audited whole), only if they are not.
    async fn searches(
        &self,
        stepper: &mut step::Stepper<'_>,
        conditions: &[Condition],
    ) -> Result<(Vec<SearchReport>, FaultTimeline), CapacityError> {
        let started = Instant::now();
        let gate = self.ctx.goal == SearchGoal::Verdicts;
        let runs = |condition| conditions.contains(&condition);
        let mut steady = Walk::new(Condition::Steady, self.capacity, self.capacity.from);
        if runs(Condition::Steady) {
            let bracketed = |s: &Search| gate && runs(Condition::Fault) && s.bracketed();
            self.advance(stepper, &mut steady, started, bracketed).await?;
            if steady.found.is_some() {
                self.said(&steady);
                self.ended(&steady.so_far());
            }
        }
        let mut searches = Vec::new();
        let timeline = FaultTimeline::default();
        if runs(Condition::Fault) {
            let prior: Vec<SearchReport> = runs(Condition::Steady)
                .then(|| steady.so_far())
                .into_iter()
                .collect();
            // A knee search under the fault starts low, as the steady one did; the gate's starts
            // where the steady search held, the rate that decides a claim on what is kept soonest.
            let held = steady.search.so_far().capacity();
            let from = match (held > 0.0, gate) {
                (false, _) => self.capacity.from,
                (true, true) => held,
                (true, false) => held.min(self.capacity.from),
            };
            let mut fault = Walk::new(Condition::Fault, self.capacity, from);
            let settled =
                |s: &Search| gate && decided(self.capacity, self.variant, &prior, Condition::Fault, s);
            let search = self.advance(stepper, &mut fault, started, settled);
            let (lab, stop) = (self.lab, &self.ctx.stop);
            faults::around_faults(lab, &timeline, stop, &self.capacity.faults, search).await??;
            self.said(&fault);
            let mut faulted = fault.into_report();
            faulted.untouched = faults::timeline::untouched(&timeline.entries());
            self.ended(&faulted);
            self.whole(&timeline).await?;
            searches.push(faulted);
        }
        if runs(Condition::Steady) {
            let faulted = searches.clone();
            let settled =
                |s: &Search| gate && decided(self.capacity, self.variant, &faulted, Condition::Steady, s);
            if steady.found.is_none() {
                if !settled(&steady.search) {
                    self.advance(stepper, &mut steady, started, settled).await?;
                }
                self.said(&steady);
                self.ended(&steady.so_far());
            }
            searches.insert(0, steady.into_report());
        }
        Ok((searches, timeline))
    }

    /// The anchor, when the file asks for one, journaled and said.
    async fn anchor(&self, steady: Option<f64>) -> Option<Anchor> {
        if !self.capacity.anchor {
            return None;
        }
        let modes = (self.plan.variants.iter())
            .find(|v| v.variant == self.variant)
            .map(|v| &v.modes);
        let anchor = match modes.and_then(anchor::unlike_the_script) {
            Some(why) => Anchor::Skipped { why },
            None => {
                (self.ctx.progress)(Event::Message(format!(
                    "{}: pgbench runs the checkout's transaction on the lab's Postgres",
                    self.variant
                )));
                Anchor::measure(self.lab, self.plan, self.capacity, steady).await
            }
        };
        (self.ctx.progress)(Event::Message(format!("{}: {}", self.variant, anchor.text())));
        self.journal.write(&CapacityEvent::Anchored {
            variant: self.variant,
            anchor: &anchor,
        });
        Some(anchor)
    }

    /// Nothing left injected after the fault's revert, and the proxy and Docker agree.
    async fn whole(&self, timeline: &FaultTimeline) -> Result<(), CapacityError> {
        let left = timeline.still_injected();
        if !left.is_empty() {
            return Err(RunError::LeftInjected {
                variant: self.variant,
                faults: left,
            }
            .into());
        }
        let audit = audit::audit(self.lab).await?;
        if !audit.whole() {
            return Err(CapacityError::LabNotWhole {
                variant: self.variant,
                audit,
            });
        }
        Ok(())
    }

    /// Steps `walk` on until its search finds the knee or `enough` says it has gone far enough
    /// (`Walk::found` stays `None` then: it can go on later).
    async fn advance(
        &self,
        stepper: &mut step::Stepper<'_>,
        walk: &mut Walk,
        started: Instant,
        enough: impl Fn(&Search) -> bool,
    ) -> Result<(), CapacityError> {
        while walk.found.is_none() && !enough(&walk.search) {
            let rate = match walk.search.next() {
                Ok(rate) => rate,
                Err(found) => {
                    walk.found = Some(found);
                    break;
                }
            };
            match self
                .rate(stepper, walk.condition, rate, started, &mut walk.trials)
                .await?
            {
                Some(held) => walk.search.record(rate, held),
                None => walk.search.generator_bound(rate),
            }
        }
        Ok(())
    }

    /// Where a search ended, journaled.
    fn ended(&self, search: &SearchReport) {
        self.journal
            .write(&CapacityEvent::search_ended(self.variant, search));
    }

    /// Where a search ended, said.
    fn said(&self, walk: &Walk) {
        (self.ctx.progress)(Event::Message(format!(
            "{}/{}: capacity {}",
            self.variant,
            walk.condition,
            walk.so_far().found
        )));
    }

    /// Tries `rate` until it is decided: once when its step is far from the objective's edge, else
    /// until the majority of the repeats agree. `None`: the generator could not offer it.
    async fn rate(
        &self,
        stepper: &mut step::Stepper<'_>,
        condition: Condition,
        rate: f64,
        started: Instant,
        trials: &mut Vec<Trial>,
    ) -> Result<Option<bool>, CapacityError> {
        let objective = &self.capacity.objective;
        let mut outcomes = Vec::new();
        loop {
            let at_s = started.elapsed().as_secs_f64();
            let figures = stepper.step(rate).await;
            // A Ctrl-C between steps stops the next load before it starts: that is the interruption,
            // not a failure of the generator.
            if self.ctx.stop.is_cancelled() {
                return Err(CapacityError::Interrupted);
            }
            let figures = match figures {
                Ok(figures) => figures,
                Err(step::StepError::Load(error)) => return Err(error.into()),
                Err(silent) => return Err(self.gone(silent).await),
            };
            let (verdict, margin) = match &figures {
                Some(f) => (f.judge(objective), f.margin(objective)),
                None => (
                    StepVerdict::Broke {
                        why: "nothing completed after the warm-up".into(),
                    },
                    f64::INFINITY,
                ),
            };
            self.show(condition, rate, figures.as_ref(), &verdict);
            let held = verdict == StepVerdict::Held;
            let bound = matches!(verdict, StepVerdict::GeneratorBound { .. });
            let trial = Trial {
                condition,
                rate,
                figures,
                verdict,
                at_s,
            };
            self.journal.write(&CapacityEvent::Step {
                variant: self.variant,
                trial: &trial,
            });
            trials.push(trial);
            if bound {
                return Ok(None);
            }
            outcomes.push(held);
            if !KNEE.contains(&margin) {
                return Ok(Some(held));
            }
            if let Some(decided) = search::decided(&outcomes, self.capacity.repeats) {
                return Ok(Some(decided));
            }
        }
    }

    /// The error of a service that stopped answering: how its replicas stand and their last lines
    /// (`LAST_LINES_TOLD` of each in the error, `LAST_LINES_KEPT` in the run folder).
    async fn gone(&self, cause: step::StepError) -> CapacityError {
        let mut words = String::new();
        for replica in logs::last_words(self.lab, LAST_LINES_KEPT).await {
            let file = self
                .ctx
                .folder
                .log(self.variant, &format!("{}-last", replica.role));
            let text = format!(
                "{} ({})\n{}\n",
                replica.role,
                replica.state,
                replica.lines.join("\n")
            );
            let kept = (file.parent())
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&file, text));
            let whereabouts = match kept {
                Ok(()) => format!("kept in {}", file.display()),
                Err(error) => format!("not kept: {error}"),
            };
            words += &format!("  {} ({}; {whereabouts}):\n", replica.role, replica.state);
            for line in &replica.lines[replica.lines.len().saturating_sub(LAST_LINES_TOLD)..] {
                words += &format!("    {line}\n");
            }
        }
        CapacityError::ServiceGone {
            variant: self.variant,
            cause,
            words,
        }
    }

    fn show(&self, condition: Condition, rate: f64, figures: Option<&StepFigures>, verdict: &StepVerdict) {
        let seen = figures.map_or_else(
            || "nothing completed".to_owned(),
            |f| {
                format!(
                    "p99 {:.0} ms (service {:.0} ms), errors {:.1}%, {:.1} done/s",
                    f.p99_ms,
                    f.service_p99_ms,
                    f.error_rate * 100.0,
                    f.achieved_rps
                )
            },
        );
        let outcome = match verdict {
            StepVerdict::Held => "held".to_owned(),
            StepVerdict::Broke { why } => format!("BROKE: {why}"),
            StepVerdict::GeneratorBound { why } => format!("GENERATOR-BOUND: {why}"),
        };
        (self.ctx.progress)(Event::Message(format!(
            "{}/{condition} {rate:>7.1}/s: {seen}: {outcome}",
            self.variant
        )));
    }
}

/// The figures the searches give: each capacity, and their ratio when both ran.
fn figures(searches: &[SearchReport]) -> BTreeMap<CapacityFigure, f64> {
    let of = |condition| {
        searches
            .iter()
            .find(|s| s.condition == condition)
            .map(|s| s.capacity)
    };
    let mut figures = BTreeMap::new();
    if let Some(steady) = of(Condition::Steady) {
        figures.insert(CapacityFigure::Capacity, steady);
    }
    if let Some(faulted) = of(Condition::Fault) {
        figures.insert(CapacityFigure::CapacityUnderFault, faulted);
    }
    if let (Some(steady), Some(faulted)) = (of(Condition::Steady), of(Condition::Fault))
        && steady > 0.0
    {
        figures.insert(CapacityFigure::CapacityKept, faulted / steady);
    }
    figures
}

/// Where a figure lies, from the ranges the searches vouch for (`Found::range`): capacity kept is
/// 0 when nothing held under the fault, whatever the steady capacity, and only bounded when the
/// steady search hit the ceiling or the generator's limit. `None` when a search it needs did not run
/// or there is nothing to divide by.
fn range_of(figure: CapacityFigure, searches: &[SearchReport]) -> Option<(f64, f64)> {
    let of = |condition| Some(searches.iter().find(|s| s.condition == condition)?.found.range());
    match figure {
        CapacityFigure::Capacity => of(Condition::Steady),
        CapacityFigure::CapacityUnderFault => of(Condition::Fault),
        CapacityFigure::CapacityKept => {
            let ((s_lo, s_hi), (f_lo, f_hi)) = (of(Condition::Steady)?, of(Condition::Fault)?);
            if f_hi == 0.0 && s_hi > 0.0 {
                return Some((0.0, 0.0));
            }
            (s_lo > 0.0).then(|| (f_lo / s_hi, f_hi / s_lo))
        }
    }
}

/// What one variant's searches found, for its predictions to be judged against.
struct Findings<'a> {
    searches: &'a [SearchReport],
    figures: &'a BTreeMap<CapacityFigure, f64>,
    invariants: &'a InvariantReport,
}

impl Findings<'_> {
    /// The figure or count `claim` names, as found.
    fn observed(&self, claim: CapacityClaim) -> Option<f64> {
        match claim {
            CapacityClaim::Figure(figure) => self.figures.get(&figure).copied(),
            CapacityClaim::Violations(metric) => (self.invariants.figures().into_iter())
                .find(|(m, _)| *m == metric)
                .map(|(_, count)| count),
        }
    }
}

/// Each prediction about `variant`: a figure judged over the range it lies in, a count of
/// violations over every step's orders.
fn verdicts(capacity: &CapacityPlan, variant: Variant, found: &Findings<'_>) -> Vec<CapacityVerdict> {
    let verdict = |p: &CapacityPrediction| CapacityVerdict {
        variant,
        claim: p.to_string(),
        why: p.why.clone(),
        observed: found.observed(p.figure),
        outcome: match p.figure {
            CapacityClaim::Figure(figure) => judged(p, figure, found.searches),
            CapacityClaim::Violations(_) if found.searches.is_empty() => {
                inconclusive("no search ran: no order was placed to count".to_owned())
            }
            CapacityClaim::Violations(_) => match found.observed(p.figure) {
                Some(count) if p.holds(count) => Outcome::Confirmed,
                Some(_) => Outcome::Refuted,
                None => inconclusive(format!("no {} was counted", p.figure)),
            },
        },
    };
    (capacity.predictions.iter())
        .filter(|p| p.variant == variant)
        .map(verdict)
        .collect()
}

/// Hands each invariant whose violation `variant` predicts over to its prediction: the prediction
/// judges it, and its violation alone does not fail the run. A prediction that it holds (`== 0`)
/// leaves it an invariant.
fn hand_over_predicted(capacity: &CapacityPlan, variant: Variant, invariants: &mut InvariantReport) {
    for p in capacity.predictions.iter().filter(|p| p.variant == variant) {
        if let CapacityClaim::Violations(metric) = p.figure
            && p.allows_a_breakage()
        {
            invariants.predicted(metric, p.to_string());
        }
    }
}

/// A figure's prediction, judged over the range the figure lies in: confirmed when the whole range
/// bears it out, refuted when none of it does, inconclusive otherwise (a bound that straddles the
/// threshold), and inconclusive when a search it needs did not run or ran under a fault that
/// touched nothing.
fn judged(p: &CapacityPrediction, figure: CapacityFigure, searches: &[SearchReport]) -> Outcome {
    let needed = figure.needs().iter().map(|&condition| {
        let search = searches.iter().find(|s| s.condition == condition);
        (condition, search)
    });
    let mut bounds = Vec::new();
    for (condition, search) in needed {
        match search {
            None => return inconclusive(format!("the {condition} search did not run")),
            Some(s) if s.untouched.is_some() => return inconclusive(s.untouched.clone().unwrap_or_default()),
            Some(s) => bounds.extend(s.caveat.clone().filter(|_| !s.found.conclusive())),
        }
    }
    let Some((lo, hi)) = range_of(figure, searches) else {
        return inconclusive(format!("no {figure}: no steady capacity to divide by"));
    };
    let straddles = p.compare == Comparison::Within && lo < p.threshold && hi > p.threshold;
    match (p.holds(lo), p.holds(hi)) {
        (true, true) => Outcome::Confirmed,
        (false, false) if !straddles => Outcome::Refuted,
        _ => inconclusive(bounds.join("; ")),
    }
}

/// Whether every prediction of `variant` on a figure the search under `condition` gives is decided
/// by the searches before it (`prior`) and that search where it stands. False when there is none: a
/// search nothing is predicted on goes to its knee.
fn decided(
    capacity: &CapacityPlan,
    variant: Variant,
    prior: &[SearchReport],
    condition: Condition,
    search: &Search,
) -> bool {
    let provisional = SearchReport::of(condition, search.so_far(), Vec::new());
    let searches: Vec<SearchReport> = prior.iter().cloned().chain([provisional]).collect();
    let mut claims = (capacity.predictions.iter())
        .filter(|p| p.variant == variant)
        .filter_map(|p| match p.figure {
            CapacityClaim::Figure(f) if f.needs().contains(&condition) => Some((p, f)),
            _ => None,
        })
        .peekable();
    claims.peek().is_some()
        && claims.all(|(p, f)| matches!(judged(p, f, &searches), Outcome::Confirmed | Outcome::Refuted))
}

/// One search under way: its condition, where it stands, the steps it took, and the knee once
/// found. The gate's steady search is walked in two legs, either side of the search under fault.
struct Walk {
    condition: Condition,
    search: Search,
    trials: Vec<Trial>,
    found: Option<Found>,
}

impl Walk {
    fn new(condition: Condition, capacity: &CapacityPlan, from: f64) -> Self {
        Self {
            condition,
            search: Search::new(from, capacity.max_rate, capacity.resolution),
            trials: Vec::new(),
            found: None,
        }
    }

    /// Where it stands, as a report to judge the other search's claims against.
    fn so_far(&self) -> SearchReport {
        let found = self.found.unwrap_or_else(|| self.search.so_far());
        SearchReport::of(self.condition, found, Vec::new())
    }

    fn into_report(self) -> SearchReport {
        let found = self.found.unwrap_or_else(|| self.search.so_far());
        SearchReport::of(self.condition, found, self.trials)
    }
}

fn inconclusive(reason: String) -> Outcome {
    Outcome::Inconclusive { reason }
}

/// Every capacity prediction and invariant of a gated search, as the gate's test cases.
pub fn gate_cases(report: &CapacityReport) -> Vec<Case> {
    let experiment = format!("{} capacity", report.experiment);
    let mut cases = Vec::new();
    for variant in &report.variants {
        // A figure from a search that stopped short of its knee is a bound: say which.
        let bounds: String = (variant.searches.iter())
            .filter(|s| !s.found.conclusive())
            .filter_map(|s| s.caveat.as_ref().map(|c| format!(" ({}: {c})", s.condition)))
            .collect();
        for verdict in &variant.verdicts {
            let observed = verdict
                .observed
                .map_or_else(|| "-".to_owned(), |o| format!("{o:.3}{bounds}"));
            cases.push(Case {
                experiment: experiment.clone(),
                kind: CaseKind::Prediction,
                name: format!("{}: {}", variant.variant, verdict.claim),
                passed: Some(verdict.outcome.confirmed()),
                message: format!("{}, observed {observed}", verdict.outcome),
            });
        }
        // An invariant handed to a prediction is judged by that prediction's case.
        for check in (variant.invariants.checks.iter()).filter(|c| c.predicted_by.is_none()) {
            cases.push(Case {
                experiment: experiment.clone(),
                kind: CaseKind::Invariant,
                name: format!("{}: invariant {}", variant.variant, check.name),
                passed: Some(check.passed()),
                message: format!("{check}: {}", check.detail),
            });
        }
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::definition::Objective;
    use crate::vocabulary::Metric;

    fn search(condition: Condition, found: Found) -> SearchReport {
        SearchReport::of(condition, found, Vec::new())
    }

    fn plan(compare: Comparison, threshold: f64) -> CapacityPlan {
        CapacityPlan {
            fault_phase: "fault".into(),
            faults: Vec::new(),
            objective: Objective {
                p99_ms: 100.0,
                error_rate: 0.01,
                group: None,
            },
            from: 100.0,
            max_rate: 1600.0,
            resolution: 0.1,
            step_seconds: 5.0,
            warmup_seconds: 3.0,
            repeats: 1,
            service_cpus: None,
            anchor: false,
            predictions: vec![CapacityPrediction {
                variant: Variant::Vulnerable,
                figure: CapacityClaim::Figure(CapacityFigure::CapacityKept),
                compare,
                threshold,
                tolerance: None,
                why: String::new(),
                revisions: Vec::new(),
            }],
        }
    }

    fn outcome(searches: &[SearchReport], compare: Comparison, threshold: f64) -> Outcome {
        let found = Findings {
            searches,
            figures: &figures(searches),
            invariants: &InvariantReport::default(),
        };
        let judged = verdicts(&plan(compare, threshold), Variant::Vulnerable, &found);
        judged[0].outcome.clone()
    }

    /// A fault under which no rate holds is a capacity of 0, judged; a ceiling, the generator's
    /// limit, a fault that touched nothing or a search not run leave the figure unjudged.
    #[test]
    fn only_a_knee_found_or_nothing_holding_is_judged() {
        let steady = search(
            Condition::Steady,
            Found::Between {
                held: 400.0,
                broke: 420.0,
            },
        );
        let dead = search(Condition::Fault, Found::Below { broke: 1.5 });
        assert_eq!(
            outcome(&[steady.clone(), dead.clone()], Comparison::AtMost, 0.05),
            Outcome::Confirmed
        );
        assert_eq!(
            outcome(&[steady.clone(), dead.clone()], Comparison::AtLeast, 0.5),
            Outcome::Refuted
        );
        let half = search(
            Condition::Fault,
            Found::Between {
                held: 200.0,
                broke: 210.0,
            },
        );
        assert_eq!(
            outcome(&[steady.clone(), half.clone()], Comparison::AtLeast, 0.5),
            Outcome::Confirmed
        );
        let ceiling = search(Condition::Steady, Found::AtLeast { held: 1600.0 });
        let bound = search(
            Condition::Steady,
            Found::GeneratorBound {
                held: 300.0,
                at: 330.0,
            },
        );
        // The generator's limit at 300/s: kept is 200/300 or less, which may or may not be half.
        let judged = outcome(&[bound, half.clone()], Comparison::AtLeast, 0.5);
        assert!(
            matches!(judged, Outcome::Inconclusive { ref reason } if reason.contains("load generator")),
            "{judged}"
        );
        // The ceiling at 1600/s: kept is 200/1600 or less, never half.
        let judged = outcome(&[ceiling.clone(), half.clone()], Comparison::AtLeast, 0.5);
        assert_eq!(judged, Outcome::Refuted);
        // Nothing held under the fault: nothing kept, however far the steady capacity goes; and a
        // bound that bears a claim out whatever lies beyond it.
        let kept = outcome(&[ceiling.clone(), dead], Comparison::AtMost, 0.05);
        assert_eq!(kept, Outcome::Confirmed);
        assert_eq!(
            outcome(&[ceiling, half.clone()], Comparison::AtMost, 0.2),
            Outcome::Confirmed
        );
        let mut untouched = half.clone();
        untouched.untouched = Some("no evidence that kill redis touched the system".into());
        let judged = outcome(&[steady.clone(), untouched], Comparison::AtLeast, 0.5);
        assert!(matches!(judged, Outcome::Inconclusive { ref reason } if reason.contains("no evidence")));
        let judged = outcome(&[half], Comparison::AtLeast, 0.5);
        assert!(
            matches!(judged, Outcome::Inconclusive { ref reason } if reason.contains("steady search did not run"))
        );
    }

    /// `decided` for the vulnerable variant, the one these plans predict on.
    fn decided_on_vulnerable(
        capacity: &CapacityPlan,
        prior: &[SearchReport],
        condition: Condition,
        search: &Search,
    ) -> bool {
        decided(capacity, Variant::Vulnerable, prior, condition, search)
    }

    /// The gate's search under fault stops as soon as the claims are decided over both brackets,
    /// confirmed or refuted, and never when nothing is predicted on it.
    #[test]
    fn the_gates_search_under_fault_stops_once_its_claims_are_decided() {
        let steady = [search(
            Condition::Steady,
            Found::Between {
                held: 1800.0,
                broke: 1950.0,
            },
        )];
        let half = plan(Comparison::AtLeast, 0.5);
        let mut fault = Search::new(600.0, 10_000.0, 0.1);
        assert!(!decided_on_vulnerable(&half, &steady, Condition::Fault, &fault));
        fault.record(600.0, true);
        // 600/1950 = 0.31 or more: not yet half.
        assert!(!decided_on_vulnerable(&half, &steady, Condition::Fault, &fault));
        fault.record(1200.0, true);
        // 1200/1950 = 0.62 or more: half, whatever the knee under fault.
        assert!(decided_on_vulnerable(&half, &steady, Condition::Fault, &fault));
        let kept = [steady[0].clone(), search(Condition::Fault, fault.so_far())];
        assert_eq!(outcome(&kept, Comparison::AtLeast, 0.5), Outcome::Confirmed);
        assert!(
            !kept[1].found.conclusive() && kept[1].caveat.as_ref().unwrap().contains("at least 1200.0/s")
        );

        let mut dead = Search::new(600.0, 10_000.0, 0.1);
        dead.record(600.0, false);
        // Below 600/1800 = 0.33: refuted, at the first rate.
        assert!(decided_on_vulnerable(&half, &steady, Condition::Fault, &dead));
        assert!(
            !decided(&half, Variant::Defended, &steady, Condition::Fault, &fault),
            "nothing predicted on the defended"
        );
    }

    /// The gate's steady search stops at its first bracket; the claim is decided against it when
    /// the bounds suffice, and the steady search goes on only when they do not.
    #[test]
    fn the_gates_steady_search_goes_past_its_bracket_only_when_the_claims_need_it() {
        let half = plan(Comparison::AtLeast, 0.5);
        let mut steady = Search::new(600.0, 10_000.0, 0.1);
        for (rate, held) in [(600.0, true), (1200.0, true)] {
            assert!(!steady.bracketed());
            steady.record(rate, held);
        }
        steady.record(2400.0, false);
        assert!(steady.bracketed());
        let bracket = [search(Condition::Steady, steady.so_far())];
        // 1,200/s under the fault against a steady knee below 2,400/s: half, decided.
        let mut fault = Search::new(600.0, 10_000.0, 0.1);
        fault.record(600.0, true);
        assert!(!decided_on_vulnerable(&half, &bracket, Condition::Fault, &fault));
        fault.record(1200.0, true);
        assert!(decided_on_vulnerable(&half, &bracket, Condition::Fault, &fault));
        // 600/s under the fault (1,200 broke): 600/2400 to 600/1200, undecided until the steady
        // search narrows its bracket (1,800/s held: a third at most, refuted).
        let faulted = [search(
            Condition::Fault,
            Found::Between {
                held: 600.0,
                broke: 1200.0,
            },
        )];
        assert!(!decided_on_vulnerable(
            &half,
            &faulted,
            Condition::Steady,
            &steady
        ));
        steady.record(1800.0, true);
        assert!(decided_on_vulnerable(&half, &faulted, Condition::Steady, &steady));
        let kept = [search(Condition::Steady, steady.so_far()), faulted[0].clone()];
        assert_eq!(outcome(&kept, Comparison::AtLeast, 0.5), Outcome::Refuted);
    }

    /// A predicted violation is judged by its count, and its invariant no longer fails the run; an
    /// unpredicted one still does.
    #[test]
    fn a_predicted_violation_is_judged_by_its_count() {
        use crate::experiment::invariants::Invariant;

        let mut capacity = plan(Comparison::AtLeast, 1.0);
        capacity.predictions[0].figure = CapacityClaim::Violations(Metric::ChargesWithoutOrder);
        let broken = |name: &str| Invariant {
            name: name.into(),
            held: false,
            detail: String::new(),
            predicted_by: None,
        };
        let mut invariants = InvariantReport {
            checks: vec![
                broken("no charge without an order"),
                broken("no payment charged twice"),
            ],
            charges_without_order: Some(3),
            ..InvariantReport::default()
        };
        let faulted = [search(Condition::Fault, Found::Below { broke: 1.5 })];
        let found = Findings {
            searches: &faulted,
            figures: &BTreeMap::new(),
            invariants: &invariants,
        };
        let judged = verdicts(&capacity, Variant::Vulnerable, &found);
        assert_eq!(
            (judged[0].observed, &judged[0].outcome),
            (Some(3.0), &Outcome::Confirmed)
        );
        let unsearched = Findings {
            searches: &[],
            ..found
        };
        let judged = verdicts(&capacity, Variant::Vulnerable, &unsearched);
        assert!(
            matches!(judged[0].outcome, Outcome::Inconclusive { .. }),
            "{judged:?}"
        );
        hand_over_predicted(&capacity, Variant::Vulnerable, &mut invariants);
        let passed: Vec<bool> = invariants.checks.iter().map(|c| c.passed()).collect();
        assert_eq!(passed, [true, false]);
    }
}
