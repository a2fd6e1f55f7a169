//! Exploration (`fortress explore`): instead of running the faults a person wrote down, search the
//! lab's fault space for the schedules that break an invariant, and shrink each one found to a
//! minimal schedule written out as an experiment that replays it.
//!
//! On one lab of the chosen variant (seeded afresh before every trial):
//! 1. **Lineage.** A trial without faults measures which proxied links the load's traffic went
//!    through. Faults on the others, and on the containers behind them, are pruned: they cannot
//!    touch what the load does. If the lab is not harmless without a fault, nothing can be blamed on
//!    one, and the search stops there.
//! 2. **Singles**, then (with `pairs`) **pairs** on two targets, each a short trial with the faults
//!    injected together over one window, classed broken, degraded, untouched or harmless; all of
//!    them at one instant of the load, then all again at each of the next.
//!    **The lineage grows** as they run: a link the trial without faults left unused that a single
//!    fault's trial sent traffic through (a cache miss's query, a fallback) is a dependency that
//!    fault opens, so each of the link's faults is tried paired with each single that opened it,
//!    slow ones first (`queue`). Traffic is the link's bytes, and on the Postgres link also each
//!    statement's runs (`pg_stat_statements`): a few refill queries hide in a link's background
//!    bytes, not in the count of their own statement.
//! 3. **Shrink.** Each broken schedule is cut down (a fault fewer, a shorter window, a later start)
//!    while it still breaks, and written as `found-<n>.toml`.
//!
//! A wall-time budget bounds the whole search; what it did not reach is reported as not tried. Once
//! a schedule has broken, the search keeps back the time its confirmations need.

mod page;
mod queue;
mod replay;
mod schedule;
mod space;
mod trial;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use replay::{Replay, ReplayError};
pub use schedule::{Schedule, Shrink};
use space::{Grown, StatementCalls, revealed_pairs, runs_between, statements_opened};
pub use space::{Lineage, pairs, singles};
pub use trial::{TrialReport, Trials};

use crate::env::{EnvError, Lab};
use crate::experiment::definition::{Objective, Plan, Profile, VariantPlan};
use crate::experiment::invariants;
use crate::experiment::runner::{self, Event, RunError};
use crate::faults::proxy::client::{ProxyClient, ProxyError};
use crate::faults::{Fault, FaultError};
use crate::load::{LoadError, Turn};
use crate::observe::database::DatabaseProbe;
use crate::run_folder::RunFolder;
use crate::vocabulary::{Class, Link, Metric, Role, Variant};
use queue::Queue;

#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the load generator failed")]
    Load(#[from] LoadError),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("could not read the proxy's links for the lineage")]
    Proxy(#[from] ProxyError),
    #[error("could not read Postgres's index scans for the lineage")]
    Database(#[from] sqlx::Error),
    #[error("faults still injected after a trial: {0}")]
    LeftInjected(String),
    #[error("could not write the schedule found as an experiment")]
    Replay(#[from] ReplayError),
    #[error("interrupted (Ctrl-C); every fault was reverted and the lab removed")]
    Interrupted,
}

/// How an exploration searches.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Each trial's load, once every user is logged in, in seconds.
    pub trial_seconds: f64,
    /// When a schedule's faults are injected, and for how long, in seconds into the load.
    pub at_s: f64,
    pub fault_seconds: f64,
    /// The instants every schedule is tried at again, in this order, once each has been tried at
    /// `at_s`: a fault harmless mid-load may break as the load starts (pools and caches cold) or as
    /// it ends (its revert racing the last requests).
    pub again_at_s: Vec<f64>,
    /// The search stops starting trials after this long.
    #[serde(serialize_with = "seconds")]
    pub budget: Duration,
    /// Try pairs of faults on two targets after the singles.
    pub pairs: bool,
    /// Shrink what breaks before writing it out.
    pub shrink: bool,
    pub objective: Objective,
    /// The schedules' faults to try instead of the space's singles (and pairs), when given.
    #[serde(skip)]
    pub candidates: Option<Vec<Vec<Fault>>>,
}

/// An instant whose fault window does not fit in a trial's load.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "a fault at {at} s for {window} s does not fit the trial's {trial} s of load after a first second of it: give instants from 1 to {last} s"
)]
pub struct InstantOutside {
    pub at: f64,
    pub window: f64,
    pub trial: f64,
    pub last: f64,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Settings {
    /// Every instant a schedule is tried at, in order: `at_s`, then `again_at_s`.
    pub fn instants(&self) -> Vec<f64> {
        std::iter::once(self.at_s)
            .chain(self.again_at_s.iter().copied())
            .collect()
    }

    /// Sets the instants (the first is `at_s`), each checked to leave its fault window inside a
    /// trial's load.
    pub fn set_instants(&mut self, instants: &[f64]) -> Result<(), InstantOutside> {
        let last = self.trial_seconds - self.fault_seconds;
        if let Some(&at) = (instants.iter()).find(|&&at| !(1.0..=last).contains(&at)) {
            return Err(InstantOutside {
                at,
                window: self.fault_seconds,
                trial: self.trial_seconds,
                last,
            });
        }
        if let Some((&first, rest)) = instants.split_first() {
            self.at_s = first;
            self.again_at_s = rest.to_vec();
        }
        Ok(())
    }

    /// The defaults of a profile: standard trials of 10 s with a 4 s window from 3 s, then from
    /// 1 s and from 6 s; quick ones of 6 s with 2 s from 2 s, then from 1 s and from 4 s. (Not
    /// earlier than 1 s: a replay's phase before the fault must hold a whole second of load to show
    /// it was offered.) The
    /// objective is the experiment's `[capacity]` one, else p99 1 s and 1% errors.
    pub fn of(plan: &Plan, profile: Profile) -> Self {
        let quick = profile == Profile::Quick;
        Self {
            trial_seconds: if quick { 6.0 } else { 10.0 },
            at_s: if quick { 2.0 } else { 3.0 },
            fault_seconds: if quick { 2.0 } else { 4.0 },
            again_at_s: if quick { vec![1.0, 4.0] } else { vec![1.0, 6.0] },
            budget: Duration::from_secs(if quick { 300 } else { 900 }),
            pairs: false,
            shrink: true,
            objective: plan.capacity.as_ref().map_or(
                Objective {
                    p99_ms: 1000.0,
                    error_rate: 0.01,
                    group: None,
                },
                |c| c.objective,
            ),
            candidates: None,
        }
    }
}

/// Trials of a finding's smallest schedule that must break it again before it is written out.
pub const CONFIRMATIONS: usize = 2;

/// How long the links' idle traffic is measured before the trial without faults.
const IDLE: Duration = Duration::from_secs(3);

/// A schedule that broke an invariant, shrunk, and the experiment file that replays it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The schedule as first found, and the smallest one that still broke.
    pub found: Schedule,
    pub smallest: Schedule,
    pub violated: Vec<String>,
    /// Trials the shrinking took.
    pub shrink_trials: usize,
    /// Of `CONFIRMATIONS` more trials of the smallest schedule, how many broke it again. Only a
    /// finding every one reproduced is written out: a race that breaks now and then without the
    /// fault's help would otherwise pass for the fault's doing.
    pub reproduced: usize,
    /// How many of those trials ran: fewer than `CONFIRMATIONS` when the budget ran out first, and
    /// then the finding is neither confirmed nor refuted.
    pub confirmations: usize,
    /// The experiment file written for it, when every confirmation reproduced it and a metric
    /// counts what it broke.
    pub file: Option<PathBuf>,
}

/// Everything an exploration did (`explore.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ExploreReport {
    pub experiment: String,
    pub variant: Variant,
    pub seed: u64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub settings: Settings,
    pub lineage: Lineage,
    /// Single faults in the lab's whole space, and after the lineage's pruning.
    pub space_unpruned: usize,
    pub space_pruned: usize,
    /// The trial without faults, then every trial of the search, in order.
    pub trials: Vec<TrialReport>,
    /// Schedules the budget left untried.
    pub not_tried: usize,
    pub findings: Vec<Finding>,
    pub took_s: f64,
    /// Ctrl-C ended the search: what it holds is what was done until then.
    pub interrupted: bool,
}

impl ExploreReport {
    /// How many trials came out in `class`, the shrinking's included.
    pub fn count(&self, class: Class) -> usize {
        self.trials.iter().filter(|t| t.class == class).count()
    }

    /// The findings every confirmation reproduced.
    pub fn reproduced(&self) -> impl Iterator<Item = &Finding> {
        (self.findings.iter()).filter(|f| f.reproduced == CONFIRMATIONS)
    }

    /// The findings whose confirmations the budget cut short: neither confirmed nor refuted.
    pub fn unconfirmed(&self) -> impl Iterator<Item = &Finding> {
        (self.findings.iter()).filter(|f| f.confirmations < CONFIRMATIONS)
    }
}

/// What an exploration needs besides its plan.
pub struct ExploreContext<'a> {
    pub lab_binary: PathBuf,
    /// The source experiment, as its file names it, and its text (for the replay files).
    pub source: (&'a str, &'a str),
    pub folder: &'a RunFolder,
    pub stop: CancellationToken,
    pub progress: &'a (dyn Fn(Event<'_>) + Sync),
}

/// Explores `variant` of `plan` on a lab of its own (removed whatever happens), writes
/// `explore.json`, `report.html` and a `found-<n>.toml` per finding, and answers what it did (on Ctrl-C after the
/// trial without faults: what it did until then, `interrupted`).
pub async fn run(
    plan: &Plan,
    variant: &VariantPlan,
    settings: &Settings,
    ctx: &ExploreContext<'_>,
) -> Result<ExploreReport, ExploreError> {
    let turn = Turn::take(&ctx.stop)
        .await
        .map_err(|_| ExploreError::Interrupted)?;
    let (lab, _) = runner::prepared_lab(plan, variant, &ctx.lab_binary, None, ctx.progress).await?;
    let explored = explore(plan, variant, settings, ctx, &lab, &turn).await;
    if let Err(error) = lab.shutdown().await {
        tracing::warn!(%error, "could not remove the lab; run `fortress cleanup`");
    }
    let report = explored?;
    let json = serde_json::to_vec_pretty(&report).map(|json| std::fs::write(ctx.folder.explore(), json));
    if !matches!(json, Ok(Ok(()))) {
        eprintln!("fortress: could not write {}", ctx.folder.explore().display());
    }
    if let Err(error) = std::fs::write(ctx.folder.report(), page::page(&report)) {
        eprintln!(
            "fortress: could not write {}: {error}",
            ctx.folder.report().display()
        );
    }
    Ok(report)
}

async fn explore(
    plan: &Plan,
    variant: &VariantPlan,
    settings: &Settings,
    ctx: &ExploreContext<'_>,
    lab: &Lab,
    turn: &Turn,
) -> Result<ExploreReport, ExploreError> {
    let trials = Trials {
        plan,
        variant,
        lab,
        turn,
        stop: ctx.stop.clone(),
        goose_report: ctx.folder.goose_report(variant.variant),
        objective: settings.objective,
        seconds: settings.trial_seconds,
    };
    let mut search = Search {
        trials,
        settings,
        ctx,
        proxy: ProxyClient::of(lab).await?,
        idle_per_s: Vec::new(),
        database_url: lab.postgres_url().await?,
        quiet_statements: StatementCalls::new(),
        started: Instant::now(),
        done: Vec::new(),
        started_trials: 0,
    };
    let (lineage, baseline) = search.lineage(lab).await?;
    let mut report = ExploreReport {
        experiment: plan.name.clone(),
        variant: variant.variant,
        seed: plan.seed.seed,
        started_at: chrono::Utc::now(),
        settings: settings.clone(),
        space_unpruned: singles(&lineage.everything(), &settings.objective).len(),
        space_pruned: singles(&lineage, &settings.objective).len(),
        lineage,
        trials: Vec::new(),
        not_tried: 0,
        findings: Vec::new(),
        took_s: 0.0,
        interrupted: false,
    };
    if baseline.class == Class::Harmless {
        // On Ctrl-C the trials so far are kept and written: a long search is not lost whole.
        let searched = match search.candidates(&mut report.lineage).await {
            Ok(not_tried) => {
                report.not_tried = not_tried;
                search.findings(plan, variant).await
            }
            Err(error) => Err(error),
        };
        match searched {
            Ok(findings) => report.findings = findings,
            Err(ExploreError::Interrupted) => {}
            Err(error) => return Err(error),
        }
        report.interrupted = ctx.stop.is_cancelled();
    } else {
        search.say(format!(
            "without any fault the lab is already {}: {}; nothing can be blamed on a fault",
            baseline.class, baseline.why
        ));
    }
    report.trials = std::iter::once(baseline).chain(search.done).collect();
    report.took_s = search.started.elapsed().as_secs_f64();
    Ok(report)
}

/// The search's state: its trials so far, and what bounds it.
struct Search<'a> {
    trials: Trials<'a>,
    settings: &'a Settings,
    ctx: &'a ExploreContext<'a>,
    proxy: ProxyClient,
    /// Each link's bytes sent upstream per second with no load, measured before the lineage.
    idle_per_s: Vec<(Link, f64)>,
    /// Where the lab's Postgres is read from (its published port, not the proxy).
    database_url: String,
    /// How often each statement ran in the trial without faults.
    quiet_statements: StatementCalls,
    started: Instant,
    /// Every trial after the one without faults, in order.
    done: Vec<TrialReport>,
    /// Trials started: the one without faults is number 0.
    started_trials: usize,
}

impl Search<'_> {
    fn say(&self, text: String) {
        (self.ctx.progress)(Event::Message(text));
    }

    fn over_budget(&self) -> bool {
        self.over(Duration::ZERO)
    }

    /// Whether the budget, less `kept` for what must still run after this, is spent (or Ctrl-C came).
    fn over(&self, kept: Duration) -> bool {
        self.started.elapsed() + kept >= self.settings.budget || self.ctx.stop.is_cancelled()
    }

    /// The time to keep back for confirming `findings` broken schedules, at the trials' mean length.
    fn kept_for(&self, findings: usize) -> Duration {
        kept_for_confirming(self.done.iter().map(|t| t.took_s), findings)
    }

    fn broken_so_far(&self) -> usize {
        self.done.iter().filter(|t| t.class == Class::Broken).count()
    }

    async fn trial(&mut self, schedule: &Schedule) -> Result<TrialReport, ExploreError> {
        let n = self.started_trials;
        self.started_trials += 1;
        let report = self.trials.run(schedule).await?;
        self.say(format!(
            "trial {n:>3} ({:>4.0} s): {}: {} ({})",
            self.started.elapsed().as_secs_f64(),
            schedule,
            report.class,
            report.why
        ));
        Ok(report)
    }

    /// The trial without faults, and the lineage: each link's bytes over it, against the same
    /// link's bytes over an idle stretch as long just before it, and the indexes it scanned (its
    /// preparation's queries included).
    async fn lineage(&mut self, lab: &Lab) -> Result<(Lineage, TrialReport), ExploreError> {
        let idle = self.bytes_over(lab, IDLE).await?;
        self.idle_per_s = (idle.iter())
            .map(|(link, bytes)| (*link, *bytes as f64 / IDLE.as_secs_f64()))
            .collect();
        let mut database = DatabaseProbe::connect(&self.database_url).await?;
        let scans_before = database.index_scans().await?;
        let statements_before = database.statement_calls().await?;
        let links = lab.links();
        self.clear(&links).await?;
        let none = Schedule::new(Vec::new(), self.settings.at_s, self.settings.fault_seconds);
        let mut baseline = self.trial(&none).await?;
        let traffic = self.traffic(&links, baseline.took_s).await?;
        let scans_after = database.index_scans().await?;
        self.quiet_statements = runs_between(&statements_before, &database.statement_calls().await?);
        let lineage = Lineage::of(&traffic, entry_of(lab)).with_indexes(&scans_before, &scans_after);
        baseline.pruned_links = (traffic.iter())
            .filter(|t| lineage.unused.contains(&t.link))
            .map(|t| (t.link, t.with_load))
            .collect();
        let unused: Vec<String> = (lineage.unused.iter().map(ToString::to_string))
            .chain(
                lineage
                    .indexes_unused
                    .iter()
                    .map(|index| format!("index {index}")),
            )
            .collect();
        self.say(format!(
            "lineage: the load used {} link(s) and scanned {} index(es); pruned: {}",
            lineage.used.len(),
            lineage.indexes.len(),
            if unused.is_empty() {
                "nothing".into()
            } else {
                unused.join(", ")
            }
        ));
        Ok((lineage, baseline))
    }

    /// Each link's bytes sent upstream over `idle` with no load.
    async fn bytes_over(&self, lab: &Lab, idle: Duration) -> Result<Vec<(Link, u64)>, ExploreError> {
        let links = lab.links();
        self.clear(&links).await?;
        tokio::select! {
            () = tokio::time::sleep(idle) => {}
            () = self.ctx.stop.cancelled() => return Err(ExploreError::Interrupted),
        }
        let mut bytes = Vec::new();
        for link in links {
            bytes.push((link, self.proxy.link(link).await?.evidence.bytes_to_upstream));
        }
        Ok(bytes)
    }

    /// Clears `links` (none is faulted): their byte counts start again from 0.
    async fn clear(&self, links: &[Link]) -> Result<(), ExploreError> {
        for link in links {
            self.proxy.clear(link).await?;
        }
        Ok(())
    }

    /// Each of `links`' bytes sent upstream since it was cleared, against its idle traffic over
    /// `seconds`.
    async fn traffic(&self, links: &[Link], seconds: f64) -> Result<Vec<space::Traffic>, ExploreError> {
        let mut traffic = Vec::new();
        for &link in links {
            let with_load = self.proxy.link(link).await?.evidence.bytes_to_upstream;
            let per_s = (self.idle_per_s.iter())
                .find(|(l, _)| *l == link)
                .map_or(0.0, |(_, b)| *b);
            traffic.push(space::Traffic {
                link,
                with_load,
                idle: (per_s * seconds) as u64,
            });
        }
        Ok(traffic)
    }

    /// Every single fault of the pruned space, the pairs the lineage grows as they run, then the
    /// space's pairs if asked, while the budget lasts; answers how many were left untried.
    async fn candidates(&mut self, lineage: &mut Lineage) -> Result<usize, ExploreError> {
        let mut queue = self.queue(lineage);
        // Explicit candidates are exactly what is tried: the lineage does not grow them.
        let growing = self.settings.candidates.is_none();
        while let Some(schedule) = queue.next() {
            let broken = self.broken_so_far();
            if self.over(self.kept_for(broken)) {
                let left = (std::iter::once(schedule.faults.as_slice()).chain(queue.waiting()))
                    .filter(|faults| !self.says_nothing_new(faults))
                    .count();
                if !self.ctx.stop.is_cancelled() {
                    let kept = match broken {
                        0 => String::new(),
                        n => format!(" (the rest kept for confirming {n} broken schedule(s))"),
                    };
                    self.say(format!(
                        "budget spent: {left} of {} schedules left untried{kept}",
                        self.done.len() + left
                    ));
                }
                return Ok(left);
            }
            if self.says_nothing_new(&schedule.faults) {
                continue;
            }
            // A single fault's trial is watched on every link the lineage left unused: each fault
            // that sends traffic down one opens it (a failed cache and a flushed one alike), and its
            // pairs with that link's faults are its own. A pair's is not (a triple is not tried).
            let watched = match growing && schedule.faults.len() == 1 {
                true => lineage.unused.clone(),
                false => Vec::new(),
            };
            let (report, opened) = self.watched_trial(&schedule, &watched).await?;
            self.grow(lineage, &mut queue, opened);
            self.done.push(report);
        }
        Ok(0)
    }

    /// Runs `schedule` with the byte counts of `watched` (links the lineage left unused) cleared
    /// before and read after; answers its report and the links it opened (`grown`), the Postgres
    /// link also by its statements (`grow_by_statements`).
    async fn watched_trial(
        &mut self,
        schedule: &Schedule,
        watched: &[Link],
    ) -> Result<(TrialReport, Vec<Grown>), ExploreError> {
        self.clear(watched).await?;
        let statements = match watched.contains(&Link::Postgres) {
            true => self.statement_calls().await,
            false => None,
        };
        let mut report = self.trial(schedule).await?;
        let traffic = self.traffic(watched, report.took_s).await?;
        report.pruned_links = traffic.iter().map(|t| (t.link, t.with_load)).collect();
        let mut opened = grown(&traffic, &report);
        if let Some(before) = statements {
            self.grow_by_statements(&before, &traffic, &report, &mut opened)
                .await;
        }
        Ok((report, opened))
    }

    /// Adds each link `opened` to the lineage, and its pairs with the fault that opened it to
    /// `queue`, unless the same fault opened it already (at an earlier instant).
    fn grow(&self, lineage: &mut Lineage, queue: &mut Queue, opened: Vec<Grown>) {
        for grown in opened {
            if lineage.opened(grown.link, &grown.by.faults) {
                continue;
            }
            let pairs = revealed_pairs(&grown.by.faults, grown.link, &self.settings.objective);
            let statements = match grown.statements.len() {
                0 => String::new(),
                n => format!(" ({n} statement(s) ran at least twice as often as without a fault)"),
            };
            self.say(format!(
                "lineage grew: the {} link carried {} bytes under {}{statements}, unused without a fault; {} pair(s) of it with that fault queued",
                grown.link,
                grown.bytes,
                grown.by,
                pairs.len()
            ));
            queue.grow(pairs);
            lineage.grown.push(grown);
        }
    }

    /// How often each statement has run so far, or `None` (said) when Postgres cannot be read: the
    /// statements are one more sign of a link opened, not a reason to stop the search.
    async fn statement_calls(&self) -> Option<StatementCalls> {
        let read = async {
            let mut database = DatabaseProbe::connect_plain(&self.database_url).await?;
            database.statement_calls().await
        };
        match read.await {
            Ok(calls) => Some(calls),
            Err(error) => {
                self.say(format!("could not read the statements Postgres ran: {error}"));
                None
            }
        }
    }

    /// Grows `opened` by the Postgres link when `report`'s single fault ran some statement at least
    /// twice as often as the trial without faults (`space::statements_opened`), though its bytes
    /// did not stand out: per-statement lineage, read from Postgres after the trial.
    async fn grow_by_statements(
        &self,
        before: &StatementCalls,
        traffic: &[space::Traffic],
        report: &TrialReport,
        opened: &mut Vec<Grown>,
    ) {
        let Some(after) = self.statement_calls().await else {
            return;
        };
        let statements = statements_opened(&self.quiet_statements, &runs_between(before, &after));
        if statements.is_empty() {
            return;
        }
        if let Some(grown) = opened.iter_mut().find(|g| g.link == Link::Postgres) {
            grown.statements = statements;
            return;
        }
        let bytes = (traffic.iter().find(|t| t.link == Link::Postgres)).map_or(0, |t| t.with_load);
        opened.push(Grown {
            link: Link::Postgres,
            by: report.schedule.clone(),
            bytes,
            statements,
        });
    }

    /// The space's singles and pairs (or the settings' explicit candidates) at each instant.
    fn queue(&self, lineage: &Lineage) -> Queue {
        let (instants, seconds) = (self.settings.instants(), self.settings.fault_seconds);
        if let Some(candidates) = &self.settings.candidates {
            return Queue::new(candidates.clone(), Vec::new(), instants, seconds);
        }
        let singles = singles(lineage, &self.settings.objective);
        let pairs = if self.settings.pairs {
            pairs(&singles)
        } else {
            Vec::new()
        };
        let singles = singles.into_iter().map(|fault| vec![fault]).collect();
        Queue::new(singles, pairs, instants, seconds)
    }

    /// A pair whose single already breaks, or faults that broke at an earlier instant: a trial of
    /// them would tell nothing new.
    fn says_nothing_new(&self, faults: &[Fault]) -> bool {
        (faults.len() > 1 && self.breaks_alone(faults)) || self.broke(faults)
    }

    fn breaks_alone(&self, faults: &[Fault]) -> bool {
        (self.done.iter())
            .filter(|t| t.class == Class::Broken && t.schedule.faults.len() == 1)
            .any(|t| faults.contains(&t.schedule.faults[0]))
    }

    /// Whether these very faults already broke an invariant, at whatever instant.
    fn broke(&self, faults: &[Fault]) -> bool {
        (self.done.iter()).any(|t| t.class == Class::Broken && t.schedule.faults == faults)
    }

    /// Each broken schedule, shrunk while the budget lasts and written out.
    async fn findings(&mut self, plan: &Plan, variant: &VariantPlan) -> Result<Vec<Finding>, ExploreError> {
        let broken: Vec<TrialReport> = (self.done.iter())
            .filter(|t| t.class == Class::Broken)
            .cloned()
            .collect();
        let mut findings = Vec::new();
        let count = broken.len();
        for (n, trial) in broken.into_iter().enumerate() {
            let (smallest, violated, shrink_trials) = self.shrink(&trial, count - n).await?;
            let (reproduced, confirmations) = self.reproduce(&smallest, &violated).await?;
            let file = match reproduced == CONFIRMATIONS {
                true => self.write(plan, variant, findings.len() + 1, &smallest, &violated)?,
                false => None,
            };
            findings.push(Finding {
                found: trial.schedule,
                smallest,
                violated,
                shrink_trials,
                reproduced,
                confirmations,
                file,
            });
        }
        Ok(findings)
    }

    /// Of `CONFIRMATIONS` more trials of `schedule`, how many broke one of `violated` again, and
    /// how many ran before the budget ran out.
    async fn reproduce(
        &mut self,
        schedule: &Schedule,
        violated: &[String],
    ) -> Result<(usize, usize), ExploreError> {
        let (mut reproduced, mut ran) = (0, 0);
        while ran < CONFIRMATIONS && !self.over_budget() {
            let report = self.trial(schedule).await?;
            reproduced += usize::from(report.violated.iter().any(|v| violated.contains(v)));
            ran += 1;
            self.done.push(report);
        }
        Ok((reproduced, ran))
    }

    /// The smallest schedule that still breaks an invariant `trial` broke, what it broke, and how
    /// many trials that took; it stops short of the confirmations of this and the `unconfirmed - 1`
    /// findings after it.
    async fn shrink(
        &mut self,
        trial: &TrialReport,
        unconfirmed: usize,
    ) -> Result<(Schedule, Vec<String>, usize), ExploreError> {
        let mut shrink = Shrink::new(trial.schedule.clone(), self.settings.trial_seconds);
        let mut violated = trial.violated.clone();
        while self.settings.shrink && !self.over(self.kept_for(unconfirmed)) {
            let Some(next) = shrink.next().cloned() else { break };
            let report = self.trial(&next).await?;
            let still = report.violated.iter().any(|v| trial.violated.contains(v));
            if still {
                violated = report.violated.clone();
            }
            shrink.record(still);
            self.done.push(report);
        }
        Ok((shrink.smallest().clone(), violated, shrink.tried))
    }

    /// Writes `found-<n>.toml` for `schedule`; `None` when no violation it saw has a metric to
    /// predict it with.
    fn write(
        &self,
        plan: &Plan,
        variant: &VariantPlan,
        n: usize,
        schedule: &Schedule,
        violated: &[String],
    ) -> Result<Option<PathBuf>, ReplayError> {
        let mut metrics: Vec<Metric> = violated.iter().filter_map(|v| invariants::metric_of(v)).collect();
        metrics.dedup();
        if metrics.is_empty() {
            return Ok(None);
        }
        let why = format!("explore found {schedule} to break: {}", violated.join(", "));
        let switched_off = if variant.without.is_empty() {
            String::new()
        } else {
            format!(", with {} switched off", variant.without.join(", "))
        };
        let replay = Replay {
            source: self.ctx.source,
            name: format!("{}-found-{n}", plan.name),
            story: format!(
                "Found by `fortress explore {}` on its {} variant{switched_off} (seed {}): {why}.",
                plan.name, variant.variant, plan.seed.seed
            ),
            variant,
            schedule,
            trial_seconds: self.settings.trial_seconds,
            seed: plan.seed.seed,
            predictions: metrics.into_iter().map(|m| (m, why.clone())).collect(),
        };
        let path = self.ctx.folder.found(n);
        std::fs::write(&path, replay.text()?).map_err(|source| ReplayError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(Some(path))
    }
}

/// The time to keep back for `findings` broken schedules' confirmations: `CONFIRMATIONS` trials each,
/// at the mean length of the trials so far (`took_s`). A finding the budget leaves neither confirmed
/// nor refuted says less than the last schedules of the space would have: email-outage's defended
/// search of 2026-12-07 broke at its fourth trial, spent the rest of its 300 s on the space, and
/// ended with the break undecided.
fn kept_for_confirming(took_s: impl Iterator<Item = f64>, findings: usize) -> Duration {
    let (sum, n) = took_s.fold((0.0, 0usize), |(sum, n), took| (sum + took, n + 1));
    let mean = if n == 0 { 0.0 } else { sum / n as f64 };
    Duration::from_secs_f64(mean * (CONFIRMATIONS * findings) as f64)
}

/// The links `trial` sent traffic down (`Traffic::used`), each as grown by its schedule.
fn grown(traffic: &[space::Traffic], trial: &TrialReport) -> Vec<Grown> {
    (traffic.iter())
        .filter(|t| t.used())
        .map(|t| Grown {
            link: t.link,
            by: trial.schedule.clone(),
            bytes: t.with_load,
            statements: Vec::new(),
        })
        .collect()
}

/// The containers the load enters the lab by: the balancer when there is one, and every replica.
fn entry_of(lab: &Lab) -> Vec<Role> {
    let mut entry: Vec<Role> = lab.replicas().map(Role::Service).collect();
    if lab.balancer.is_some() {
        entry.push(Role::Balancer);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            trial_seconds: 6.0,
            at_s: 2.0,
            fault_seconds: 2.0,
            again_at_s: vec![1.0, 4.0],
            budget: Duration::from_secs(300),
            pairs: false,
            shrink: true,
            objective: Objective {
                p99_ms: 1000.0,
                error_rate: 0.01,
                group: None,
            },
            candidates: None,
        }
    }

    #[test]
    fn an_instant_whose_window_outlasts_the_load_is_refused() {
        let mut chosen = settings();
        chosen.set_instants(&[1.0, 3.5]).unwrap();
        assert_eq!(chosen.instants(), [1.0, 3.5]);
        let refused = chosen.set_instants(&[1.0, 4.5]).unwrap_err();
        assert_eq!(refused.last, 4.0);
        assert!(refused.to_string().contains("from 1 to 4 s"), "{refused}");
        assert!(
            chosen.set_instants(&[0.5]).is_err(),
            "a replay needs a whole second before it"
        );
        assert_eq!(chosen.instants(), [1.0, 3.5], "a refused set changes nothing");
    }

    #[test]
    fn a_search_keeps_back_two_trials_per_broken_schedule_at_the_trials_mean_length() {
        let took = [7.0, 8.0, 9.0];
        assert_eq!(kept_for_confirming(took.into_iter(), 0), Duration::ZERO);
        assert_eq!(kept_for_confirming(took.into_iter(), 1), Duration::from_secs(16));
        assert_eq!(kept_for_confirming(took.into_iter(), 3), Duration::from_secs(48));
        assert_eq!(kept_for_confirming(std::iter::empty(), 2), Duration::ZERO);
    }
}
