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
//! Goose keeps process-wide state: the killswitch its stop goes through, and a Ctrl-C handler it
//! installs on its first run, replacing whatever SIGINT handler was there (from then on tokio's
//! `ctrl_c` never fires in this process, and goose exits the process on a second Ctrl-C). So runs in
//! one process take turns, a Ctrl-C that goose catches during a run is passed on by cancelling the
//! caller's `stop`, and between runs a Ctrl-C shows only as `goose::is_killswitch_triggered()`.

mod arrivals;
pub mod recorder;
pub mod sample;
mod scenarios;
mod spec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use goose::GooseAttack;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use recorder::{Acknowledged, Recorder};
pub use sample::{Group, GroupSecond, GroupSummary, RequestOutcome, SecondSample, quantile_ms};
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

/// Goose's stop is process-wide: one run at a time per process.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const STOP_REASON: &str = "fortress: stop requested";

/// Set while the killswitch is pulled by Fortress itself (a run told to stop), so `interrupted` does
/// not take it for a Ctrl-C that goose caught.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Set for good once goose's handler caught a Ctrl-C during a run. The run's `stop` may be a child
/// token that ends only the load; this is how the rest of the process hears of the Ctrl-C.
static CAUGHT_CTRL_C: AtomicBool = AtomicBool::new(false);

/// Runs the load of `spec`, filing every request in `recorder`, and writes goose's HTML report to
/// `report` (its folder is made if need be). Cancelling `stop` ends it early (in-flight requests
/// finish first).
pub async fn run(
    spec: &LoadSpec,
    recorder: Recorder,
    report: &Path,
    stop: &CancellationToken,
) -> Result<LoadSummary, LoadError> {
    spec.check()?;
    let folder = report.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(folder)
        .await
        .map_err(|source| LoadError::ReportDir {
            path: folder.to_owned(),
            source,
        })?;
    let report = report.to_owned();
    let _turn = tokio::select! {
        turn = TURN.lock() => turn,
        () = stop.cancelled() => return Err(LoadError::Interrupted),
    };
    if stop.is_cancelled() {
        return Err(LoadError::Interrupted);
    }
    let ctx = Arc::new(scenarios::Ctx::new(
        recorder.clone(),
        spec.rate,
        spec.products,
        spec.shoppers,
    ));
    let attack = GooseAttack::initialize_with_config(spec.goose_configuration(&report))
        .and_then(|attack| scenarios::register(attack, &spec.mix, &ctx))
        .map_err(Box::new)?;

    let requests_before = recorder.request_count();
    let orders_before = recorder.acknowledged_orders().len();
    let ours = Arc::new(AtomicBool::new(false));
    let done = CancellationToken::new();
    let watcher = tokio::spawn(watch(stop.clone(), done.clone(), Arc::clone(&ours)));
    let started = Instant::now();
    let execute = attack.execute();
    tokio::pin!(execute);
    let deadline = spec.duration + spec.request_timeout + Duration::from_secs(15);
    let outcome = tokio::select! {
        outcome = &mut execute => Ok(outcome),
        () = tokio::time::sleep(deadline) => {
            ours.store(true, Ordering::SeqCst);
            STOPPING.store(true, Ordering::SeqCst);
            goose::trigger_killswitch("fortress: the load overran its deadline");
            tokio::time::timeout(spec.request_timeout + Duration::from_secs(5), &mut execute)
                .await
                .map_err(|_| LoadError::Overran(started.elapsed()))
        }
    };
    let elapsed = started.elapsed();
    done.cancel();
    let _ = watcher.await;
    let stopped_early = ours.load(Ordering::SeqCst) || stop.is_cancelled();
    if ours.load(Ordering::SeqCst) {
        goose::reset_killswitch();
        STOPPING.store(false, Ordering::SeqCst);
    }
    let metrics = outcome?.map_err(Box::new)?;

    let requests = recorder.request_count() - requests_before;
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
        acknowledged_orders: recorder.acknowledged_orders().len() - orders_before,
        groups: recorder.totals().iter().map(GroupSecond::summary).collect(),
        stopped_early,
        report,
    })
}

/// While a run lasts: passes a cancelled `stop` on to goose's killswitch (again and again, as goose
/// clears it when a run starts), and a killswitch goose pulled itself (its Ctrl-C handler) back to
/// `stop`, so the rest of the lab hears about the Ctrl-C.
async fn watch(stop: CancellationToken, done: CancellationToken, ours: Arc<AtomicBool>) {
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if stop.is_cancelled() {
            ours.store(true, Ordering::SeqCst);
            STOPPING.store(true, Ordering::SeqCst);
            goose::trigger_killswitch(STOP_REASON);
        } else if goose::is_killswitch_triggered() && !ours.load(Ordering::SeqCst) {
            tracing::warn!("goose caught a Ctrl-C: stopping the load and the run");
            CAUGHT_CTRL_C.store(true, Ordering::SeqCst);
            stop.cancel();
        }
    }
}

/// Completes when the user presses Ctrl-C, whether or not goose has taken SIGINT over yet (from its
/// first run on, goose's own handler records the press in its killswitch instead of passing it on).
/// A killswitch that Fortress pulled itself to end a run is not a Ctrl-C.
pub async fn interrupted() {
    let tokio_signal = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let killswitch = async {
        while !CAUGHT_CTRL_C.load(Ordering::SeqCst)
            && (!goose::is_killswitch_triggered() || STOPPING.load(Ordering::SeqCst))
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        () = tokio_signal => {}
        () = killswitch => {}
    }
}
