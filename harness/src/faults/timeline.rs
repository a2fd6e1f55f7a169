//! The fault timeline: when each fault was injected and reverted, how long each took, and whether it
//! worked. Reports shade fault windows from it; verdicts read it to know what was actually broken.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Inject,
    Revert,
}

/// One inject or revert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The fault, as `fortress` names it (`kill redis`, `modes {"locking":"none"}`).
    pub fault: String,
    pub action: Action,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `None` when it worked; the error otherwise.
    pub error: Option<String>,
    /// What the step observed (e.g. the previous modes, the dropped index's definition).
    pub detail: Option<String>,
    /// For a revert of a network fault: what the fault did to traffic while it was active (the proxy's
    /// evidence: connections, bytes, delayed/held chunks, resets).
    pub evidence: Option<serde_json::Value>,
}

/// Shared by everything that injects faults during one run; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FaultTimeline(Arc<Mutex<Vec<TimelineEntry>>>);

impl FaultTimeline {
    pub fn record(&self, entry: TimelineEntry) {
        tracing::info!(fault = entry.fault, action = ?entry.action, error = entry.error, "fault timeline");
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    pub fn entries(&self) -> Vec<TimelineEntry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Faults injected and not (successfully) reverted since.
    pub fn still_injected(&self) -> Vec<String> {
        let mut open: Vec<String> = Vec::new();
        for entry in self.entries() {
            match (entry.action, &entry.error) {
                (Action::Inject, None) => open.push(entry.fault),
                (Action::Revert, None) => {
                    if let Some(i) = open.iter().position(|f| *f == entry.fault) {
                        open.remove(i);
                    }
                }
                _ => {}
            }
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fault: &str, action: Action, error: Option<&str>) -> TimelineEntry {
        let now = Utc::now();
        TimelineEntry {
            fault: fault.into(),
            action,
            started_at: now,
            finished_at: now,
            error: error.map(Into::into),
            detail: None,
            evidence: None,
        }
    }

    #[test]
    fn a_fault_is_open_until_a_successful_revert() {
        let timeline = FaultTimeline::default();
        timeline.record(entry("kill redis", Action::Inject, None));
        timeline.record(entry("pause postgres", Action::Inject, None));
        timeline.record(entry(
            "kill redis",
            Action::Revert,
            Some("docker: no such container"),
        ));
        assert_eq!(timeline.still_injected(), ["kill redis", "pause postgres"]);
        timeline.record(entry("kill redis", Action::Revert, None));
        assert_eq!(timeline.still_injected(), ["pause postgres"]);
    }
}
