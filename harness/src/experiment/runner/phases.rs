//! The load through every phase: the load generator starts, each phase's faults are injected and
//! reverted around it, and once a second the client's record and the lab's counters become one
//! `Sample` of the time series. The timetable is fixed when the load starts, so a slow sample or a
//! slow injection never stretches the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Event, RunContext, RunError};
use crate::env::Lab;
use crate::experiment::abort::{Abort, Tripwire};
use crate::experiment::definition::{PhasePlan, Plan};
use crate::experiment::invariants;
use crate::experiment::journal::Entry;
use crate::experiment::phase_figures::{PhaseLatencies, per_request_figures};
use crate::experiment::verdict::Sample;
use crate::faults::{self, FaultError, FaultTimeline, Site, TimelineEntry};
use crate::load::{self, LoadSpec, LoadSummary, Recorder, Turn};
use crate::observe::{Observer, Rates};
use crate::vocabulary::{Metric, Variant};

/// How long an interrupted run waits for the load's users to stop (in-flight requests finish first).
const LOAD_STOP_GRACE: Duration = Duration::from_secs(3);
/// How long the load may take to send its first request.
const LOAD_START_DEADLINE: Duration = Duration::from_secs(60);
/// A request without an answer by then is an error (a timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What watching the phases gave the judge.
pub(super) struct Watched {
    pub samples: Vec<Sample>,
    /// Per phase, the client's latencies of all its seconds, merged.
    pub latencies: PhaseLatencies,
    /// Per phase, the faults the proxy's evidence says never touched traffic.
    pub untouched: BTreeMap<String, Vec<String>>,
    pub timeline: FaultTimeline,
    pub recorder: Recorder,
    /// Requests completed inside the phases (not before the first or after the last).
    pub requests_in_phases: u64,
    pub load_started_at: chrono::DateTime<chrono::Utc>,
    pub load: LoadSummary,
    /// The stop condition that ended the run early, if one tripped.
    pub aborted: Option<Abort>,
}

/// The run's timetable, fixed when the load starts: phases end at their planned offsets, and samples
/// are taken every whole second after the start.
///
/// It starts on a boundary of the recorder's seconds, so each sample takes the second that just
/// ended and phases (with their faults) begin and end on those boundaries. Started anywhere else, a
/// phase's first sample would hold up to a second of the phase before it: a kill's first second
/// read as 0 to 0.95 of the users logged out depending only on where in a second the run began.
///
/// The sample due at a phase's end reads the lab before the next phase's faults, but they wait for
/// it [`READ_HEAD_START`] at most: before 2026-12-06 they waited for the whole reading, and a
/// metrics page behind a queue (500 ms, its read deadline) started pretix's Redis outage half a
/// second late while the outage's first second was still judged as the outage's (5 orders of it
/// answered 201). Read after the injection instead, it counted the first milliseconds of a cache
/// stampede into the second before it (a peak of 19 misses, not 20).
struct Clock {
    started: Instant,
    /// Where the current phase ends.
    phase_end: Instant,
    next_sample: Instant,
}

impl Clock {
    /// Waits for the recorder's next second and starts there (less than a second of load that
    /// belongs to no phase).
    async fn start_with(recorder: &Recorder) -> (Self, chrono::DateTime<chrono::Utc>) {
        let (started, at) = recorder.next_second();
        tokio::time::sleep_until(started.into()).await;
        (Self::start_at(started), at)
    }

    fn start_at(started: Instant) -> Self {
        Self {
            started,
            phase_end: started,
            next_sample: started + Duration::from_secs(1),
        }
    }

    /// Waits for the next sample of the current phase; `false` once the phase is over (at its end).
    /// The sample due as the phase ends is not taken here but as the next phase starts
    /// ([`Clock::sample_due_at_phase_end`]): reading the lab can take up to its 500 ms deadline
    /// (a paused Redis, a slow metrics page), and the next phase's faults must not wait for all of it.
    async fn next_sample_in_phase(&mut self) -> bool {
        if self.next_sample + PHASE_EDGE >= self.phase_end {
            tokio::time::sleep_until(self.phase_end.into()).await;
            return false;
        }
        tokio::time::sleep_until(self.next_sample.into()).await;
        true
    }

    /// Whether a sample falls due as the current phase ends (within a few milliseconds of it): the
    /// last second of the phase, read as the next phase starts.
    fn sample_due_at_phase_end(&self) -> bool {
        self.next_sample <= self.phase_end + PHASE_EDGE
    }

    /// Moves past the sample just taken. A sample that took longer than a second skips the
    /// seconds it missed rather than bunching.
    fn sampled(&mut self) {
        while self.next_sample <= Instant::now() {
            self.next_sample += Duration::from_secs(1);
        }
    }
}

/// How long the next phase's faults wait for the reading due as a phase ends: a reading of the
/// reference lab takes about 10 ms, and it must be taken before the faults act (a cache stampede's
/// first misses counted into the second before it otherwise); one slower than this (a paused Redis,
/// a metrics page behind a queue: up to its 500 ms deadline) goes on beside the injection.
const READ_HEAD_START: Duration = Duration::from_millis(100);

/// How close to a phase's end a sample is still the phase's last.
const PHASE_EDGE: Duration = Duration::from_millis(10);

/// The load generator running in the background, and how to stop it.
struct LoadRun {
    task: tokio::task::JoinHandle<Result<LoadSummary, load::LoadError>>,
    /// Closes the load's schedule when the last phase ends (goose's own end is only whole seconds
    /// after its start); the other variant's load, side by side, carries on.
    end: CancellationToken,
    turn: Arc<Turn>,
}

impl LoadRun {
    fn start(spec: LoadSpec, recorder: Recorder, report: std::path::PathBuf, turn: &Arc<Turn>) -> Self {
        let end = CancellationToken::new();
        let task = {
            let (end, turn) = (end.clone(), Arc::clone(turn));
            tokio::spawn(async move { load::run(&spec, recorder, &report, &turn, &end).await })
        };
        Self {
            task,
            end,
            turn: Arc::clone(turn),
        }
    }

    /// Waits until the load's first request has completed: the phases start when the load does (goose
    /// starts its users first).
    async fn started(&self, recorder: &Recorder, stop: &CancellationToken) {
        let waiting = Instant::now();
        while recorder.request_count() == 0
            && !self.task.is_finished()
            && waiting.elapsed() < LOAD_START_DEADLINE
            && !stop.is_cancelled()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Result<LoadSummary, RunError> {
        self.end.cancel();
        Ok(self.task.await??)
    }

    /// Stops the load before the lab goes, or its users keep firing at removed containers. The
    /// run is failing: every load under its turn stops with it.
    async fn abandon(mut self) {
        self.end.cancel();
        self.turn.halt();
        if tokio::time::timeout(LOAD_STOP_GRACE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// What travels with the watching from one second to the next.
struct Watch<'a> {
    site: Site<'a>,
    ctx: &'a RunContext<'a>,
    variant: Variant,
    total_s: f64,
    /// Shared so that the reading due at a phase's end can run beside the next phase's injection.
    observer: Arc<tokio::sync::Mutex<Observer>>,
    recorder: Recorder,
    clock: Clock,
    /// The wall-clock time of the timetable's start (`at_s` 0).
    started_at: chrono::DateTime<chrono::Utc>,
    samples: Vec<Sample>,
    latencies: PhaseLatencies,
    untouched: BTreeMap<String, Vec<String>>,
    tripwire: Tripwire,
    /// A connection for the live count of oversold units, when a stop condition watches it.
    live_db: Option<sqlx::PgPool>,
    aborted: Option<Abort>,
}

impl<'a> Watch<'a> {
    /// Ready to watch: the first reading only sets the counters' baseline (and connects the probes);
    /// the timetable starts after it.
    async fn new(
        plan: &Plan,
        variant: Variant,
        site: Site<'a>,
        ctx: &'a RunContext<'a>,
        recorder: Recorder,
    ) -> Result<Self, RunError> {
        let mut observer = Observer::new();
        let mut live_db = None;
        let tripwire = Tripwire::new(&plan.aborts, variant);
        if let Site::Reference(lab) = site {
            observer.sample(lab).await;
            if tripwire.watches(Metric::OversoldUnits) {
                live_db = Some(live_database(lab).await?);
            }
        }
        let (clock, started_at) = Clock::start_with(&recorder).await;
        Ok(Self {
            site,
            ctx,
            variant,
            total_s: plan.run_seconds(),
            observer: Arc::new(tokio::sync::Mutex::new(observer)),
            recorder,
            clock,
            started_at,
            samples: Vec::new(),
            latencies: PhaseLatencies::default(),
            untouched: BTreeMap::new(),
            tripwire,
            live_db,
            aborted: None,
        })
    }

    /// Every phase in turn, each with its faults injected and reverted around it, until the last
    /// ends or a stop condition trips (its phase's faults are reverted as the watch returns, and no
    /// later phase starts). An error or Ctrl-C ends it with an error.
    async fn every_phase(&mut self, plan: &Plan, timeline: &FaultTimeline) -> Result<(), RunError> {
        let (ctx, variant) = (self.ctx, self.variant);
        let mut ended: Option<&PhasePlan> = None;
        for phase in &plan.phases {
            // The phase before's last second, read before this phase's faults (or beside them, when slow).
            let last_second = ended.take().filter(|_| self.clock.sample_due_at_phase_end());
            (ctx.progress)(Event::Phase { variant, phase });
            ctx.journal.write(&Entry::PhaseStarted {
                variant,
                phase: phase.name.clone(),
                at_s: self.clock.started.elapsed().as_secs_f64(),
            });
            self.clock.phase_end += Duration::from_secs_f64(phase.seconds);
            let mark = timeline.len();
            let watched = self.faulted_phase(phase, last_second, timeline).await;
            self.note_untouched(phase, &timeline.since(mark));
            self.note_overrun(phase);
            match watched {
                Ok(()) if ctx.stop.is_cancelled() => return Err(RunError::Interrupted),
                Ok(()) => {}
                Err(FaultError::Interrupted) => return Err(RunError::Interrupted),
                Err(error) => return Err(error.into()),
            }
            if let Some(abort) = &self.aborted {
                (ctx.progress)(Event::Message(format!(
                    "{variant}: ABORTED: {abort}; faults reverted, the load stops"
                )));
                return Ok(());
            }
            ended = Some(phase);
        }
        // The last phase's last second, once its faults are reverted.
        if let Some(last) = ended.filter(|_| self.clock.sample_due_at_phase_end()) {
            let rates = self.read_lab().await;
            self.file_sample(last, rates).await;
        }
        Ok(())
    }

    /// One phase with its faults around it. The phase before's `last_second`, when one is due, is
    /// read first, and the faults wait for that reading [`READ_HEAD_START`] at most.
    async fn faulted_phase(
        &mut self,
        phase: &PhasePlan,
        last_second: Option<&PhasePlan>,
        timeline: &FaultTimeline,
    ) -> Result<(), FaultError> {
        let (site, ctx) = (self.site, self.ctx);
        let (reading, read) = tokio::sync::oneshot::channel();
        let boundary = last_second.map(|before| (before, read));
        let observer = Arc::clone(&self.observer);
        let mut read_lab = std::pin::pin!(read_at_edge(observer, site, boundary.is_some(), reading));
        let read_first = tokio::time::timeout(READ_HEAD_START, &mut read_lab).await.is_ok();
        let rest_of_reading = async {
            if !read_first {
                read_lab.await
            }
        };
        let body = self.phase(phase, boundary);
        let faulted = faults::around_faults_at(site, timeline, &ctx.stop, &phase.faults, body);
        tokio::join!(rest_of_reading, faulted).1
    }

    /// Samples once a second until the phase ends, the run is stopped, or a stop condition trips;
    /// first the phase before's last second, when one is due (`boundary`: that phase, and the
    /// reading of the lab taken as this phase's faults went in).
    async fn phase(&mut self, phase: &PhasePlan, boundary: Option<(&PhasePlan, Reading)>) {
        if let Some((before, reading)) = boundary {
            let rates = reading.await.unwrap_or_default();
            if self.file_sample(before, rates).await {
                return;
            }
        }
        loop {
            tokio::select! {
                in_phase = self.clock.next_sample_in_phase() => if !in_phase { return },
                () = self.ctx.stop.cancelled() => return,
            }
            let rates = self.read_lab().await;
            if self.file_sample(phase, rates).await {
                return;
            }
        }
    }

    async fn read_lab(&self) -> Rates {
        read_lab(&mut *self.observer.lock().await, self.site).await
    }

    /// Files the second that just ended under `phase`, with the lab's `rates`, and says whether it
    /// trips a stop condition.
    async fn file_sample(&mut self, phase: &PhasePlan, mut rates: Rates) -> bool {
        self.count_oversold(&mut rates).await;
        self.clock.sampled();
        self.second(phase, rates);
        self.tripped(phase)
    }

    /// The units sold beyond stock so far, if a stop condition watches them. A second the database
    /// does not answer (it may be the fault) has no measurement.
    async fn count_oversold(&mut self, rates: &mut Rates) {
        let Some(pg) = &self.live_db else { return };
        match invariants::oversold_units(pg).await {
            Ok(units) => {
                rates.total.insert(Metric::OversoldUnits, units as f64);
            }
            Err(error) => tracing::debug!(%error, "no live count of oversold units this second"),
        }
    }

    /// Whether the second just filed trips a stop condition; if so, the abort is noted.
    fn tripped(&mut self, phase: &PhasePlan) -> bool {
        let Some(sample) = self.samples.last() else {
            return false;
        };
        let Some((condition, observed)) = self.tripwire.second(&sample.values) else {
            return false;
        };
        let abort = Abort {
            condition: condition.to_string(),
            variant: self.variant,
            phase: phase.name.clone(),
            at_s: sample.at_s,
            observed,
        };
        self.ctx.journal.write(&Entry::Aborted { abort: abort.clone() });
        self.aborted = Some(abort);
        true
    }

    /// One second: the client's figures beside the lab's, filed as a sample.
    fn second(&mut self, phase: &PhasePlan, rates: Rates) {
        let mut values = rates.total;
        let finished = self.recorder.take_finished();
        for second in &finished {
            self.latencies.add(&phase.name, second);
        }
        values.extend(load::client_figures_of(&finished).unwrap_or_default());
        per_request_figures(&mut values);
        self.report_progress(&values);
        let replicas = match self.site {
            Site::Reference(lab) if lab.services.len() > 1 => rates.replicas,
            _ => BTreeMap::new(),
        };
        let sample = Sample {
            at_s: self.clock.started.elapsed().as_secs_f64(),
            phase: phase.name.clone(),
            values,
            replicas,
        };
        self.ctx.journal.write(&Entry::Second {
            variant: self.variant,
            sample: sample.clone(),
        });
        self.samples.push(sample);
    }

    fn report_progress(&self, values: &BTreeMap<Metric, f64>) {
        let get = |metric| values.get(&metric).copied().unwrap_or(0.0);
        (self.ctx.progress)(Event::Second {
            variant: self.variant,
            at_s: self.clock.started.elapsed().as_secs_f64(),
            total_s: self.total_s,
            figures: format!(
                "{:.0} req/s, p95 {:.0} ms, pg {:.0} stmt/s",
                get(Metric::ThroughputRps),
                get(Metric::P95Ms),
                get(Metric::PgStatementsPerS)
            ),
        });
    }

    /// Says so when the phase's faults outlasted it (a rolling restart slower than the phase): the
    /// next phase starts that much late and is that much shorter.
    fn note_overrun(&self, phase: &PhasePlan) {
        let over = Instant::now().saturating_duration_since(self.clock.phase_end);
        if over > Duration::from_secs(1) {
            (self.ctx.progress)(Event::Message(format!(
                "{}: the faults of phase {:?} outlasted it by {:.1} s; the next phase is that much shorter (make this one longer)",
                self.variant,
                phase.name,
                over.as_secs_f64()
            )));
        }
    }

    /// Notes the faults of the phase whose evidence shows they never touched the system (an
    /// operator's step is not a fault).
    fn note_untouched(&mut self, phase: &PhasePlan, steps: &[TimelineEntry]) {
        let untouched: Vec<String> = steps
            .iter()
            .filter(|e| !e.operator_step && e.observed.as_ref().is_some_and(|o| !o.touched))
            .map(|e| e.fault.clone())
            .collect();
        if !untouched.is_empty() {
            self.untouched.insert(phase.name.clone(), untouched);
        }
    }
}

/// The lab's rates since the previous reading. A user's target: its entry's own counters, when its
/// Compose file maps them.
async fn read_lab(observer: &mut Observer, site: Site<'_>) -> Rates {
    match site {
        Site::Reference(lab) => observer.sample(lab).await,
        Site::Target(lab) => observer.sample_target(lab).await,
    }
}

/// The reading of the lab due at a phase's end, handed to the next phase's body.
type Reading = tokio::sync::oneshot::Receiver<Rates>;

/// Reads the lab (when `due`) and sends the rates to whoever files the second: the reading due as a
/// phase ends, which the next phase's faults wait for only [`READ_HEAD_START`].
async fn read_at_edge(
    observer: Arc<tokio::sync::Mutex<Observer>>,
    site: Site<'_>,
    due: bool,
    reading: tokio::sync::oneshot::Sender<Rates>,
) {
    if due {
        let rates = read_lab(&mut *observer.lock().await, site).await;
        let _ = reading.send(rates);
    }
}

/// Runs the load through every phase of `plan`, with each phase's faults, sampling once a second.
pub(super) async fn run(
    plan: &Plan,
    variant: Variant,
    site: Site<'_>,
    ctx: &RunContext<'_>,
    turn: &Arc<Turn>,
) -> Result<Watched, RunError> {
    let recorder = Recorder::new();
    let report = ctx.folder.goose_report(variant);
    let load = LoadRun::start(load_spec(plan, site).await?, recorder.clone(), report, turn);
    load.started(&recorder, &ctx.stop).await;
    let mut watch = Watch::new(plan, variant, site, ctx, recorder.clone()).await?;
    let requests_before_phases = recorder.request_count();
    let load_started_at = watch.started_at;
    let journal = ctx.journal.clone();
    let timeline = FaultTimeline::heard_by(Arc::new(move |step| {
        journal.write(&Entry::Fault {
            variant,
            step: step.clone(),
        });
    }));
    if let Err(error) = watch.every_phase(plan, &timeline).await {
        load.abandon().await;
        return Err(error);
    }
    if let Some(pg) = watch.live_db.take() {
        pg.close().await;
    }
    let requests_in_phases = recorder.request_count() - requests_before_phases;
    Ok(Watched {
        load: load.finish().await?,
        samples: watch.samples,
        latencies: watch.latencies,
        untouched: watch.untouched,
        timeline,
        recorder,
        requests_in_phases,
        load_started_at,
        aborted: watch.aborted,
    })
}

/// The load of `plan` at `site`: the mix of scenarios on the reference lab, the file's requests on
/// a user's target; through every phase and a second more (the schedule closes when the last ends).
async fn load_spec(plan: &Plan, site: Site<'_>) -> Result<LoadSpec, RunError> {
    let (base_url, script) = match site {
        Site::Reference(lab) => (lab.entry_url().await?, None),
        Site::Target(lab) => (
            lab.entry_url.clone(),
            plan.target.as_ref().map(|t| Arc::new(t.script.clone())),
        ),
    };
    Ok(LoadSpec {
        base_url,
        rate: plan.rate,
        users: plan.users,
        mix: plan.mix.clone(),
        start: plan.start,
        duration: Duration::from_secs_f64(plan.run_seconds().ceil() + 1.0),
        products: plan.seed.products,
        shoppers: plan.seed.users,
        request_timeout: REQUEST_TIMEOUT,
        sessions: Default::default(),
        script,
    })
}

/// One connection to the lab's Postgres for live checks, on its published port.
async fn live_database(lab: &Lab) -> Result<sqlx::PgPool, RunError> {
    let options = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(1));
    Ok(options.connect(&lab.postgres_url().await?).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A phase of 2 s sampled at 1 s and 2 s: the first sample is the phase's, the one due at its end
    /// is left for the next phase's start, and is then due. (Real time: about 3 s.)
    #[tokio::test]
    async fn the_sample_due_at_a_phase_end_waits_for_the_next_phases_faults() {
        let mut clock = Clock::start_at(Instant::now());
        clock.phase_end += Duration::from_secs(2);
        assert!(
            clock.next_sample_in_phase().await,
            "the sample at 1 s is the phase's"
        );
        clock.sampled();
        assert!(
            !clock.next_sample_in_phase().await,
            "the phase ends without its last sample"
        );
        assert!(Instant::now() >= clock.phase_end, "at its end");
        assert!(clock.sample_due_at_phase_end(), "which is then due");
        clock.sampled();
        clock.phase_end += Duration::from_millis(2500);
        assert!(
            clock.next_sample_in_phase().await,
            "the next phase samples at 3 s"
        );
    }

    /// A phase that ends between two samples leaves none due at its end: the next sample is the
    /// next phase's.
    #[tokio::test]
    async fn a_phase_ending_between_samples_leaves_none_due() {
        let mut clock = Clock::start_at(Instant::now());
        clock.phase_end += Duration::from_millis(1500);
        assert!(clock.next_sample_in_phase().await);
        clock.sampled();
        assert!(!clock.next_sample_in_phase().await);
        assert!(!clock.sample_due_at_phase_end());
    }
}
