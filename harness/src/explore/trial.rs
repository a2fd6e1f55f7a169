//! One trial: the lab seeded afresh, a short load at the experiment's rate, the schedule's faults
//! injected together inside it and reverted (on error and Ctrl-C too), then the invariants over the
//! orders it acknowledged and the objective over its seconds. What it shows is its `Class`.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::ExploreError;
use super::schedule::Schedule;
use crate::capacity::{StepFigures, StepVerdict, Window, start_deadline, unix_now};
use crate::env::Lab;
use crate::experiment::definition::{Objective, Plan, VariantPlan};
use crate::experiment::invariants::{InvariantReport, RunFacts};
use crate::experiment::runner;
use crate::faults::{self, Action, FaultError, FaultTimeline, TimelineEntry};
use crate::load::{self, LoadSpec, Recorder, Turn};
use crate::vocabulary::Class;
use reference_service::error::cause_chain;

/// A request is given up on after this long: longer than any fault window of a trial, so a request
/// a fault held is seen answering late, not cut off.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the judge waits for Postgres after the faults are reverted: a kill reverted at the
/// trial's last instant leaves it restarting (it came back within seconds in every trial seen).
/// Not part of the kill's revert, whose timing crash-after-ack depends on.
const POSTGRES_BACK: Duration = Duration::from_secs(60);

/// What one trial of a schedule showed.
#[derive(Debug, Clone, Serialize)]
pub struct TrialReport {
    pub schedule: Schedule,
    pub class: Class,
    /// Why it is in its class: the invariants violated, the objective's breach, the fault untouched.
    pub why: String,
    /// The invariants violated, by name.
    pub violated: Vec<String>,
    /// `None` when nothing completed.
    pub figures: Option<StepFigures>,
    pub timeline: Vec<TimelineEntry>,
    /// How long the trial took, seeding and judging included.
    pub took_s: f64,
    /// The bytes each link the lineage pruned carried upstream in this trial (single faults and
    /// the trial without faults: what the lineage grows from).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pruned_links: Vec<(crate::vocabulary::Link, u64)>,
}

/// What every trial of one exploration shares.
pub struct Trials<'a> {
    pub plan: &'a Plan,
    pub variant: &'a VariantPlan,
    pub lab: &'a Lab,
    pub turn: &'a Turn,
    pub stop: CancellationToken,
    pub goose_report: std::path::PathBuf,
    pub objective: Objective,
    /// How long each trial's load runs once every user is logged in, in seconds.
    pub seconds: f64,
}

impl Trials<'_> {
    /// Runs `schedule` once and classes what it did.
    pub async fn run(&self, schedule: &Schedule) -> Result<TrialReport, ExploreError> {
        let began = Instant::now();
        if self.lab.provider.is_some() {
            self.lab.close_books().await?;
        }
        if self.lab.mail.is_some() {
            self.lab.empty_mailbox().await?;
        }
        let orders_before_run = runner::prepare_again(self.plan, self.variant, self.lab).await?;
        let recorder = Recorder::new();
        let timeline = FaultTimeline::default();
        let end = CancellationToken::new();
        // Read again each trial: a replica killed by an earlier one came back on another host port.
        let spec = self.load_spec(self.lab.entry_url().await?);
        let (ran, clocked) = {
            let load = load::run(&spec, recorder.clone(), &self.goose_report, self.turn, &end);
            let clock = self.clock(&recorder, schedule, &timeline, &end);
            tokio::join!(load, clock)
        };
        if self.stop.is_cancelled() {
            return Err(ExploreError::Interrupted);
        }
        ran?;
        let (window, faulted) = clocked;
        let left = timeline.still_injected();
        if !left.is_empty() {
            return Err(ExploreError::LeftInjected(left.join(", ")));
        }
        let refused = refused(&faulted);
        if refused.is_none() {
            faulted?;
        }
        let facts = RunFacts {
            acknowledged: recorder.acknowledged_orders(),
            orders_before_run,
        };
        self.lab.wait_postgres(POSTGRES_BACK).await?;
        let invariants = runner::invariants_of(self.lab, &facts).await?;
        let figures = StepFigures::of(self.plan.rate, &recorder.take_all(), window, self.objective.group);
        let (class, why) = match refused {
            Some(why) => (Class::NotInjected, why),
            None => class_of(
                &invariants,
                figures.as_ref(),
                &timeline.entries(),
                &self.objective,
            ),
        };
        Ok(TrialReport {
            schedule: schedule.clone(),
            class,
            why,
            violated: violated(&invariants),
            figures,
            timeline: timeline.entries(),
            took_s: began.elapsed().as_secs_f64(),
            pruned_links: Vec::new(),
        })
    }

    fn load_spec(&self, base_url: String) -> LoadSpec {
        LoadSpec {
            base_url,
            rate: self.plan.rate,
            users: self.plan.users,
            mix: self.plan.mix.clone(),
            start: self.plan.start,
            // An upper bound: the trial's clock closes the schedule (a slow revert makes it later).
            duration: start_deadline(self.plan.rate, self.plan.users)
                + Duration::from_secs_f64(self.seconds + 60.0),
            products: self.plan.seed.products,
            shoppers: self.plan.seed.users,
            request_timeout: REQUEST_TIMEOUT,
            sessions: Default::default(),
            script: None,
        }
    }

    /// From when every user is logged in: the faults at their instants until their window ends (a
    /// staggered schedule's second fault inside the first's scope, so both are reverted), the load
    /// for `seconds` (or until the faults are reverted, if later); then the schedule closes. Answers
    /// the window judged and how the faults went.
    async fn clock(
        &self,
        recorder: &Recorder,
        schedule: &Schedule,
        timeline: &FaultTimeline,
        end: &CancellationToken,
    ) -> (Window, Result<(), FaultError>) {
        let deadline = Instant::now() + start_deadline(self.plan.rate, self.plan.users);
        while recorder.users_started() < self.plan.users as usize
            && Instant::now() < deadline
            && !self.stop.is_cancelled()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = unix_now();
        let faulted = async {
            self.wait(schedule.at_s).await;
            let (first, joining) = schedule.waves();
            let joined = async {
                self.wait(schedule.lead_s).await;
                let rest = self.wait(schedule.seconds - schedule.lead_s);
                faults::around_faults(self.lab, timeline, &self.stop, joining, rest).await
            };
            faults::around_faults(self.lab, timeline, &self.stop, first, joined).await?
        };
        let (faulted, ()) = tokio::join!(faulted, self.wait(self.seconds));
        end.cancel();
        let window = Window {
            judged_from: started.ceil() as i64,
            closed_in: unix_now().floor() as i64,
        };
        (window, faulted)
    }

    /// Sleeps `seconds`, or less on Ctrl-C.
    async fn wait(&self, seconds: f64) {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {}
            () = self.stop.cancelled() => {}
        }
    }
}

/// Why the lab refused one of the faults, when it did and every revert went through (the trial
/// already checked that nothing is left injected): the schedule could not be tried, and the search
/// goes on. Any other fault error ends the search.
fn refused(faulted: &Result<(), FaultError>) -> Option<String> {
    match faulted {
        Err(
            refused @ FaultError::Failed {
                action: Action::Inject,
                ..
            },
        ) => Some(cause_chain(refused)),
        _ => None,
    }
}

fn violated(invariants: &InvariantReport) -> Vec<String> {
    (invariants.checks.iter())
        .filter(|c| !c.held)
        .map(|c| c.name.clone())
        .collect()
}

/// Broken when an invariant was violated (whatever else), untouched when a fault left no evidence,
/// degraded when the objective broke, harmless otherwise; with why.
pub fn class_of(
    invariants: &InvariantReport,
    figures: Option<&StepFigures>,
    timeline: &[TimelineEntry],
    objective: &Objective,
) -> (Class, String) {
    let broken: Vec<String> = (invariants.checks.iter())
        .filter(|c| !c.held)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if !broken.is_empty() {
        return (Class::Broken, broken.join("; "));
    }
    if let Some(untouched) = faults::timeline::untouched(timeline) {
        return (Class::Untouched, untouched);
    }
    match figures.map(|f| f.judge(objective)) {
        None => (Class::Degraded, "no request completed".into()),
        Some(StepVerdict::Held) => (Class::Harmless, format!("within {objective}")),
        Some(StepVerdict::Broke { why } | StepVerdict::GeneratorBound { why }) => (Class::Degraded, why),
    }
}
