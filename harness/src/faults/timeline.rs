//! The fault timeline: when each fault was injected and reverted, how long each took, and whether it
//! worked. Reports shade fault windows from it; verdicts read it to know what was actually broken.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::evidence::Observed;
use super::proxy::Evidence;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Inject,
    Revert,
}

/// One inject or revert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Which injection of the run this step belongs to: its inject and its revert share the number.
    pub injection: u32,
    /// The fault, as `fortress` names it (`kill redis`, `modes {"locking":"none"}`).
    pub fault: String,
    pub action: Action,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `None` when it worked; the error, with its causes, otherwise.
    pub error: Option<String>,
    /// What the step observed (e.g. the previous modes, the dropped index's definition).
    pub detail: Option<String>,
    /// For a revert of a network fault: what the fault did to traffic while it was active (the proxy's
    /// evidence: connections, bytes, delayed/held chunks, resets).
    pub evidence: Option<Evidence>,
    /// For a revert: what was seen of the fault while it lasted, and whether that shows it touched
    /// the system (`evidence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    /// An operator's step (a replay of dead letters), not a fault: reports mark its instant instead of
    /// shading a fault window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operator_step: bool,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Inject => "inject",
            Self::Revert => "revert",
        })
    }
}

/// What a step saw of its fault: the proxy's evidence of a network fault, and what was seen of any
/// fault while it lasted (both for a revert; nothing for an inject).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub evidence: Option<Evidence>,
    pub observed: Option<Observed>,
}

/// Shared by everything that injects faults during one run; cheap to clone. A listener, if any,
/// hears each step as it is recorded (the run's journal).
#[derive(Clone, Default)]
pub struct FaultTimeline {
    entries: Arc<Mutex<Vec<TimelineEntry>>>,
    listener: Option<Listener>,
}

/// Hears each step of a timeline as it is recorded.
pub type Listener = Arc<dyn Fn(&TimelineEntry) + Send + Sync>;

impl std::fmt::Debug for FaultTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultTimeline")
            .field("entries", &self.entries)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

/// The steps of one injection being recorded: `with_fault` holds it from the inject to the revert.
#[derive(Debug)]
pub struct Recording<'a> {
    timeline: &'a FaultTimeline,
    injection: u32,
    fault: String,
    step_started: DateTime<Utc>,
    operator_step: bool,
}

impl Recording<'_> {
    /// Records the steps as an operator's, not a fault's.
    pub fn as_operator_step(&mut self) {
        self.operator_step = true;
    }

    /// Marks the start of the next step (the revert, after the body ran).
    pub fn start(&mut self, _next: Action) {
        self.step_started = Utc::now();
    }

    /// Records a finished step; `error` is what made it fail, with its causes.
    pub fn done(&self, action: Action, error: Option<String>, detail: Option<String>, seen: Seen) {
        let Seen { evidence, observed } = seen;
        self.timeline.record(TimelineEntry {
            injection: self.injection,
            fault: self.fault.clone(),
            action,
            started_at: self.step_started,
            finished_at: Utc::now(),
            error,
            detail,
            evidence,
            observed,
            operator_step: self.operator_step,
        });
    }
}

impl FaultTimeline {
    /// An empty timeline whose steps `listener` hears as they are recorded.
    pub fn heard_by(listener: Listener) -> Self {
        Self {
            entries: Arc::default(),
            listener: Some(listener),
        }
    }

    /// Starts recording a new injection of `fault`.
    pub fn begin(&self, fault: &impl std::fmt::Display) -> Recording<'_> {
        let entries = self.lock();
        let injection = entries.iter().map(|e| e.injection + 1).max().unwrap_or(1);
        Recording {
            timeline: self,
            injection,
            fault: fault.to_string(),
            step_started: Utc::now(),
            operator_step: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TimelineEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, entry: TimelineEntry) {
        tracing::info!(fault = entry.fault, action = %entry.action, error = entry.error, "fault timeline");
        if let Some(listener) = &self.listener {
            listener(&entry);
        }
        self.lock().push(entry);
    }

    pub fn entries(&self) -> Vec<TimelineEntry> {
        self.lock().clone()
    }

    /// How many steps are recorded: entries from here on are a later part of the run's.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The steps recorded since `mark` (a `len()` taken earlier).
    pub fn since(&self, mark: usize) -> Vec<TimelineEntry> {
        self.lock().get(mark..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// Faults injected and not (successfully) reverted since.
    pub fn still_injected(&self) -> Vec<String> {
        still_injected(&self.entries())
    }
}

/// Of `entries`, the faults whose inject worked and whose revert did not (or never came).
pub fn still_injected(entries: &[TimelineEntry]) -> Vec<String> {
    let reverted = |injection| {
        entries
            .iter()
            .any(|e| e.injection == injection && e.action == Action::Revert && e.error.is_none())
    };
    entries
        .iter()
        .filter(|e| e.action == Action::Inject && e.error.is_none() && !reverted(e.injection))
        .map(|e| e.fault.clone())
        .collect()
}

/// Which of the faults of `entries` left no evidence that they touched the system, said as a
/// sentence (`None` when every one did): what they measured is inconclusive.
pub fn untouched(entries: &[TimelineEntry]) -> Option<String> {
    let untouched: Vec<&str> = (entries.iter())
        .filter(|e| !e.operator_step && e.observed.as_ref().is_some_and(|o| !o.touched))
        .map(|e| e.fault.as_str())
        .collect();
    (!untouched.is_empty()).then(|| format!("no evidence that {} touched the system", untouched.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(injection: u32, fault: &str, action: Action, error: Option<&str>) -> TimelineEntry {
        let now = Utc::now();
        TimelineEntry {
            injection,
            fault: fault.into(),
            action,
            started_at: now,
            finished_at: now,
            error: error.map(Into::into),
            detail: None,
            evidence: None,
            observed: None,
            operator_step: false,
        }
    }

    #[test]
    fn a_fault_is_open_until_its_own_revert_succeeds() {
        let timeline = FaultTimeline::default();
        timeline.record(entry(1, "kill redis", Action::Inject, None));
        timeline.record(entry(2, "pause postgres", Action::Inject, None));
        timeline.record(entry(
            1,
            "kill redis",
            Action::Revert,
            Some("docker: no such container"),
        ));
        assert_eq!(timeline.still_injected(), ["kill redis", "pause postgres"]);
        timeline.record(entry(1, "kill redis", Action::Revert, None));
        assert_eq!(timeline.still_injected(), ["pause postgres"]);
        // The same fault injected again is a new injection: an old revert does not close it.
        timeline.record(entry(3, "kill redis", Action::Inject, None));
        assert_eq!(timeline.still_injected(), ["pause postgres", "kill redis"]);
    }

    #[test]
    fn each_recording_is_a_new_injection_and_steps_since_a_mark_are_that_part_of_the_run() {
        let timeline = FaultTimeline::default();
        let first = timeline.begin(&"kill redis");
        first.done(Action::Inject, None, None, Seen::default());
        first.done(Action::Revert, None, None, Seen::default());
        let mark = timeline.len();
        let second = timeline.begin(&"kill redis");
        second.done(Action::Inject, None, None, Seen::default());
        let since = timeline.since(mark);
        assert_eq!(since.len(), 1);
        assert_eq!((since[0].injection, since[0].action), (2, Action::Inject));
        assert_eq!(timeline.still_injected(), ["kill redis"]);
    }
}
