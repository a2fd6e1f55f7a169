//! A capacity run's journal, `capacity-journal.ndjson`: one JSON object a line, appended as each
//! step is judged, so a search stopped by Ctrl-C (or a machine that dies mid-search) keeps every step
//! it took, and a tool outside Fortress can follow the search as it goes (`tail -f ... | jq`).
//!
//! Every line has `schema` ([`CAPACITY_JOURNAL_SCHEMA`]), `at` (UTC, when it was written) and
//! `event`, then the event's own fields:
//!
//! | `event` | fields | written |
//! |---|---|---|
//! | `capacity_started` | `experiment`, `profile`, `seed`, `plan` (the objective and the search's bounds) | once, first |
//! | `step` | `variant`, `trial`: its condition, rate, figures, verdict and `at_s` | as each step is judged |
//! | `search_ended` | `variant`, `condition`, `found`, `capacity`, `caveat`, `untouched` | as each search ends |
//! | `anchored` | `variant`, `anchor`: pgbench's rate for the checkout and the steady capacity's share of it | after a variant's searches, when `anchor = true` |
//! | `capacity_ended` | `exit_code` | once, last, when the run was judged |
//! | `capacity_stopped` | `reason` | once, last, when it was not (Ctrl-C, a lab that failed) |

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use super::{SearchReport, Trial};
use crate::experiment::definition::{CapacityPlan, Profile};
use crate::vocabulary::{Condition, ExitCode, Variant};

/// The version of the journal's lines; bumped when an event's fields change meaning.
pub const CAPACITY_JOURNAL_SCHEMA: u32 = 1;

/// One event of a capacity run.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CapacityEvent<'a> {
    CapacityStarted {
        experiment: &'a str,
        profile: Profile,
        seed: u64,
        plan: &'a CapacityPlan,
    },
    Step {
        variant: Variant,
        trial: &'a Trial,
    },
    SearchEnded {
        variant: Variant,
        condition: Condition,
        found: &'a super::Found,
        capacity: f64,
        caveat: &'a Option<String>,
        untouched: &'a Option<String>,
    },
    Anchored {
        variant: Variant,
        anchor: &'a super::Anchor,
    },
    CapacityEnded {
        exit_code: ExitCode,
    },
    CapacityStopped {
        reason: String,
    },
}

impl<'a> CapacityEvent<'a> {
    /// The end of one search, without its steps (each has its own line already).
    pub fn search_ended(variant: Variant, search: &'a SearchReport) -> Self {
        Self::SearchEnded {
            variant,
            condition: search.condition,
            found: &search.found,
            capacity: search.capacity,
            caveat: &search.caveat,
            untouched: &search.untouched,
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    schema: u32,
    at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    event: &'a CapacityEvent<'a>,
}

/// The journal file, written a line at a time. One that cannot be created or written is said once
/// and then left alone: the journal is a record of the run, not the run.
pub struct CapacityJournal {
    file: Mutex<Option<std::fs::File>>,
}

impl CapacityJournal {
    pub fn create(path: &Path) -> Self {
        let file = std::fs::File::create(path)
            .inspect_err(|error| eprintln!("fortress: could not create {}: {error}", path.display()))
            .ok();
        Self {
            file: Mutex::new(file),
        }
    }

    /// Appends `event` as one line, flushed at once.
    pub fn write(&self, event: &CapacityEvent<'_>) {
        let line = Line {
            schema: CAPACITY_JOURNAL_SCHEMA,
            at: chrono::Utc::now(),
            event,
        };
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(open) = file.as_mut() else { return };
        let written = serde_json::to_vec(&line).map(|mut bytes| {
            bytes.push(b'\n');
            open.write_all(&bytes).and_then(|()| open.flush())
        });
        if !matches!(written, Ok(Ok(()))) {
            eprintln!("fortress: could not write the capacity journal; it stops here");
            *file = None;
        }
    }
}
