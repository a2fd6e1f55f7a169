//! The load generator: goose, configured in code, drives an experiment's mix of scenarios at a target
//! arrival rate against a service replica on 127.0.0.1, while `Recorder` files every request per
//! second and per endpoint group for the rest of the lab to read as the load runs.
//!
//! Pacing: `Arrivals` lets `rate` requests a second leave across all users, on an absolute schedule,
//! and `users` virtual users wait on it, so as long as there are more users than `rate x latency`, a
//! stall in the service shows as latency at the same arrival rate, not as fewer requests. The run is bounded:
//! `duration` (whole seconds, as goose counts them) after the users have started, then in-flight
//! requests finish within `request_timeout`; past a hard deadline the run is stopped and reported.
//!
//! A load ends in one of two ways. Its `end` closes its arrival schedule: no request is due after
//! it, its users idle until goose's run time is up, and other loads in the process carry on (the
//! variants of an experiment run side by side in one process). A `stop` (Ctrl-C) goes through goose's
//! killswitch, which is process-wide: every load under the same `Turn` shares that stop, and loads
//! with different stops take turns. Goose also installs a Ctrl-C handler on its first run, unless one
//! is there already: the `fortress` binary takes SIGINT first (`crate::interrupt`), and a Ctrl-C
//! reaches the load as a cancelled `stop`, which is passed on to the killswitch.

mod arrivals;
mod figures;
pub mod host_tcp;
pub mod recorder;
pub mod sample;
mod scenarios;
pub mod script;
mod sessions;
mod spec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::GooseAttack;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use figures::{client_figures, client_figures_of, group_p95};
pub use recorder::{Acknowledged, Recorder, Sending, ServerErrors};
pub use sample::{
    Group, GroupSecond, GroupSummary, RequestOutcome, RequestTiming, ScheduleSecond, SecondSample,
    quantile_ms,
};
pub use script::Script;
pub use sessions::SessionBook;
pub use spec::LoadSpec;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load: {0}")]
    InvalidSpec(String),
    #[error("could not prepare the folder of goose's report {path}")]
    ReportDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("goose failed")]
    Goose(#[from] Box<goose::GooseError>),
    #[error("stopped before the load started")]
    Interrupted,
    #[error("the load did not end within {0:?} of its start, even when told to stop")]
    Overran(Duration),
}

/// What a run did, from the client's side.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    /// Requests per second the schedule offered.
    pub offered_rate: f64,
    /// Requests recorded during this run, per second of `active`.
    pub achieved_rate: f64,
    /// From this run's first request leaving to its last answer.
    pub active: Duration,
    /// From handing the load to goose until it returned.
    pub elapsed: Duration,
    /// Requests the recorder filed during this run.
    pub requests: u64,
    /// Requests goose counted, and those it counted as failed.
    pub goose_requests: u64,
    pub goose_failures: u64,
    /// Orders acknowledged (201) during this run.
    pub acknowledged_orders: usize,
    /// Per group, everything the recorder holds (this run's, if the recorder is this run's alone).
    pub groups: Vec<GroupSummary>,
    /// Cancelled through `stop` (or Ctrl-C) before the duration was up.
    pub stopped_early: bool,
    /// Goose's HTML report.
    pub report: PathBuf,
}

/// Goose's stop is process-wide: one `Turn` at a time per process.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The right to run loads in this process, with the one `stop` goose's process-wide killswitch
/// answers to. Loads under one turn may run at the same time (an experiment's variants side by
/// side); a Ctrl-C stops them all, which is what it means anyway.
#[derive(Debug)]
pub struct Turn {
    _held: tokio::sync::MutexGuard<'static, ()>,
    stop: CancellationToken,
    /// Loads under this turn whose schedule is still open.
    open: std::sync::atomic::AtomicUsize,
}

impl Turn {
    /// Waits for the process's turn (another run may hold it), unless `stop` is cancelled first.
    pub async fn take(stop: &CancellationToken) -> Result<Self, LoadError> {
        let held = tokio::select! {
            held = TURN.lock() => held,
            () = stop.cancelled() => return Err(LoadError::Interrupted),
        };
        if stop.is_cancelled() {
            return Err(LoadError::Interrupted);
        }
        Ok(Self {
            _held: held,
            stop: stop.clone(),
            open: 0.into(),
        })
    }

    /// A load's schedule opens: while any is open, goose's process-wide stop stays untouched.
    fn open_schedule(&self) -> OpenSchedule<'_> {
        self.open.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        OpenSchedule { turn: self }
    }

    /// Stops every load under this turn at once (in-flight requests finish first): a run that
    /// failed does not leave users firing at a lab being removed.
    pub fn halt(&self) {
        goose::trigger_killswitch("fortress: the run failed");
    }
}

/// An open schedule of a load under a turn. Closing the last one ends every goose run under the
/// turn at once (in-flight requests finish first): nothing is due any more, and goose would
/// otherwise idle on to its run time, a whole second after the start at best (~1 s of every run).
struct OpenSchedule<'a> {
    turn: &'a Turn,
}

impl Drop for OpenSchedule<'_> {
    fn drop(&mut self) {
        if self.turn.open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            goose::trigger_killswitch(SCHEDULES_CLOSED);
        }
    }
}

const SCHEDULES_CLOSED: &str = "fortress: every load's schedule is closed";

impl Drop for Turn {
    /// Whoever pulled the killswitch, the next turn starts with it clear.
    fn drop(&mut self) {
        goose::reset_killswitch();
    }
}

const STOP_REASON: &str = "fortress: stop requested";

/// Runs the load of `spec` under `turn`, filing every request in `recorder`, and writes goose's HTML
/// report to `report` (its folder is made if need be). Cancelling `end` closes the schedule (no
/// request leaves after it; goose ends at its run time); cancelling the turn's stop ends the run at
/// once (in-flight requests finish first).
pub async fn run(
    spec: &LoadSpec,
    recorder: Recorder,
    report: &Path,
    turn: &Turn,
    end: &CancellationToken,
) -> Result<LoadSummary, LoadError> {
    let stop = &turn.stop;
    spec.check()?;
    let folder = report.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(folder)
        .await
        .map_err(|source| LoadError::ReportDir {
            path: folder.to_owned(),
            source,
        })?;
    if stop.is_cancelled() {
        return Err(LoadError::Interrupted);
    }
    let ctx = Arc::new(scenarios::Ctx::new(recorder.clone(), spec, end.clone()));
    let attack = GooseAttack::initialize_with_config(spec.goose_configuration(report))
        .and_then(|attack| match &spec.script {
            Some(script) => scenarios::register_script(attack, script, &ctx),
            None => scenarios::register(attack, &spec.mix, &ctx),
        })
        .map_err(Box::new)?;
    let before = (recorder.request_count(), recorder.acknowledged_orders().len());
    let started = Instant::now();
    let (metrics, stopped_early) = execute(attack, spec, turn, end).await?;
    let elapsed = started.elapsed();
    let requests = recorder.request_count() - before.0;
    let goose_requests: usize = metrics
        .requests
        .values()
        .map(|r| r.success_count + r.fail_count)
        .sum();
    let goose_failures: usize = metrics.requests.values().map(|r| r.fail_count).sum();
    Ok(LoadSummary {
        offered_rate: spec.rate,
        achieved_rate: ctx
            .active()
            .map_or(0.0, |active| requests as f64 / active.as_secs_f64().max(1e-3)),
        active: ctx.active().unwrap_or_default(),
        elapsed,
        requests,
        goose_requests: goose_requests as u64,
        goose_failures: goose_failures as u64,
        acknowledged_orders: recorder.acknowledged_orders().len() - before.1,
        groups: recorder.totals().iter().map(GroupSecond::summary).collect(),
        stopped_early,
        report: report.to_owned(),
    })
}

/// Runs the attack to its end, or to `stop`, or to a hard deadline; answers goose's metrics and
/// whether it was stopped before its time.
async fn execute(
    attack: GooseAttack,
    spec: &LoadSpec,
    turn: &Turn,
    end: &CancellationToken,
) -> Result<(goose::metrics::GooseMetrics, bool), LoadError> {
    let stop = &turn.stop;
    let done = CancellationToken::new();
    let watcher = tokio::spawn(watch(stop.clone(), done.clone()));
    let started = Instant::now();
    let mut schedule = Some(turn.open_schedule());
    let execute = attack.execute();
    let deadline = tokio::time::sleep(spec.duration + spec.request_timeout + Duration::from_secs(15));
    tokio::pin!(execute, deadline);
    let outcome = loop {
        tokio::select! {
            outcome = &mut execute => break Ok(outcome),
            () = end.cancelled(), if schedule.is_some() => schedule = None,
            () = &mut deadline => {
                goose::trigger_killswitch("fortress: the load overran its deadline");
                break tokio::time::timeout(spec.request_timeout + Duration::from_secs(5), &mut execute)
                    .await
                    .map_err(|_| LoadError::Overran(started.elapsed()));
            }
        }
    };
    // The turn clears the killswitch when it is released (other loads under it may still be running).
    // Pulled after this load's schedule closed, it ended a load that had nothing left to send. Read
    // before this load's own schedule closes below, which may pull it for the others.
    let stopped_early = goose::is_killswitch_triggered() && !end.is_cancelled();
    drop(schedule);
    done.cancel();
    let _ = watcher.await;
    Ok((outcome?.map_err(Box::new)?, stopped_early || stop.is_cancelled()))
}

/// While a run lasts: passes a cancelled `stop` on to goose's killswitch (again and again, as goose
/// clears it when a run starts).
async fn watch(stop: CancellationToken, done: CancellationToken) {
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if stop.is_cancelled() {
            goose::trigger_killswitch(STOP_REASON);
        }
    }
}
