//! The run's journal, `journal.ndjson`: one JSON object a line, appended as the run goes, so a run
//! stopped by Ctrl-C keeps everything up to the stop, and a tool outside Fortress (jq, a log shipper,
//! a notebook) can follow or replay it. The run is rebuilt from it alone ([`read`]): the summary, each
//! variant's seconds and the timing attacker's probes.
//!
//! Every line has `schema` (this file's [`JOURNAL_SCHEMA`]), `at` (UTC, when it was written) and
//! `event`, then the event's own fields:
//!
//! | `event` | fields | written |
//! |---|---|---|
//! | `run_started` | `header`: the experiment, story, source, profile, seed, start, versions, machine, phases | once, first |
//! | `phase_started` | `variant`, `phase`, `at_s` (seconds since the variant's load started) | as each phase starts |
//! | `fault` | `variant`, `step`: an inject or revert with its timing, error, detail and evidence | as each step ends |
//! | `second` | `variant`, `sample`: that second's figures (`timeseries-<variant>.json`'s rows) | every second |
//! | `probes` | `variant`, `probes`: the timing attacker's latencies and pairs | after the load, when it probed |
//! | `aborted` | `abort`: the stop condition, its variant, phase, second and value | the second it trips |
//! | `variant_judged` | `report`: verdicts, invariants, timeline, forensics (`summary.json`'s variant) | as each variant is judged |
//! | `run_ended` | `exit_code`, `docker_version`, `variants` (the summary's order) | once, last, when the run was judged |
//! | `run_stopped` | `reason` | once, last, when it was not (Ctrl-C, a lab that failed) |
//!
//! A reader meeting another `schema` refuses the file by name; one meeting an `event` it does not
//! know refuses it too (a newer Fortress wrote it).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::abort::Abort;
use super::output::{RunHeader, Summary, VariantReport};
use super::timing::Probes;
use super::verdict::Sample;
use crate::faults::TimelineEntry;
use crate::vocabulary::{ExitCode, Variant};

/// The version of the journal's lines; bumped when an event's fields change meaning.
pub const JOURNAL_SCHEMA: u32 = 1;

/// One event of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    RunStarted {
        header: RunHeader,
    },
    PhaseStarted {
        variant: Variant,
        phase: String,
        at_s: f64,
    },
    Fault {
        variant: Variant,
        step: TimelineEntry,
    },
    Second {
        variant: Variant,
        sample: Sample,
    },
    Probes {
        variant: Variant,
        probes: Probes,
    },
    /// A stop condition tripped: its variant's faults are reverted and its load stops.
    Aborted {
        abort: Abort,
    },
    VariantJudged {
        report: Box<VariantReport>,
    },
    RunEnded {
        exit_code: ExitCode,
        docker_version: Option<String>,
        /// The judged variants in the summary's order (they may be judged in another).
        variants: Vec<Variant>,
    },
    RunStopped {
        reason: String,
    },
}

/// Why a journal could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path}, line {line}: written in journal schema {found}; this fortress reads schema {JOURNAL_SCHEMA}"
    )]
    Schema {
        path: PathBuf,
        line: usize,
        found: String,
    },
    #[error("{path}: {what}")]
    Incomplete { path: PathBuf, what: &'static str },
}

/// The writing end, shared by everything that reports on the run (a clone writes to the same file).
/// A journal that cannot be written says so once and lets the run go on: it is a record of the run,
/// not a part of it. A tap, if any, hears every event too (the live view).
#[derive(Clone, Default)]
pub struct Journal {
    file: Arc<Mutex<Option<std::fs::File>>>,
    tap: Option<Tap>,
}

/// Hears every event of a journal as it is written.
pub type Tap = Arc<dyn Fn(&Entry) + Send + Sync>;

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("file", &self.file)
            .field("tap", &self.tap.is_some())
            .finish()
    }
}

impl Journal {
    /// Creates (or empties) `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(Self {
            file: Arc::new(Mutex::new(Some(file))),
            tap: None,
        })
    }

    /// The same journal, its events heard by `tap` as well.
    pub fn tapped(self, tap: Tap) -> Self {
        Self {
            tap: Some(tap),
            ..self
        }
    }

    /// A journal that writes nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Appends `entry` as one line, written through at once.
    pub fn write(&self, entry: &Entry) {
        if let Some(tap) = &self.tap {
            tap(entry);
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(out) = file.as_mut() else {
            return;
        };
        let written = line_of(entry).and_then(|mut line| {
            line.push('\n');
            out.write_all(line.as_bytes()).map_err(|e| e.to_string())
        });
        if let Err(error) = written {
            tracing::warn!(%error, "the run's journal could not be written; the run goes on without it");
            *file = None;
        }
    }
}

/// `{"at": ..., "event": "second", "schema": 1, "variant": ..., "sample": ...}`.
fn line_of(entry: &Entry) -> Result<String, String> {
    let Value::Object(tagged) = serde_json::to_value(entry).map_err(|e| e.to_string())? else {
        return Err("an event is not an object".into());
    };
    let Some((event, Value::Object(fields))) = tagged.into_iter().next() else {
        return Err("an event has no fields".into());
    };
    let mut line = Map::new();
    line.insert("schema".into(), JOURNAL_SCHEMA.into());
    line.insert("at".into(), chrono::Utc::now().to_rfc3339().into());
    line.insert("event".into(), event.into());
    line.extend(fields);
    serde_json::to_string(&line).map_err(|e| e.to_string())
}

/// What is wrong with one line.
enum BadLine {
    Malformed(String),
    /// Another schema: what the line says it is.
    Schema(String),
}

/// One line back as its event.
fn entry_of(text: &str) -> Result<Entry, BadLine> {
    let malformed = |e: serde_json::Error| BadLine::Malformed(e.to_string());
    let Value::Object(mut line) = serde_json::from_str(text).map_err(malformed)? else {
        return Err(BadLine::Malformed("not a JSON object".into()));
    };
    match line.remove("schema") {
        Some(found) if found.as_u64() == Some(u64::from(JOURNAL_SCHEMA)) => {}
        found => {
            return Err(BadLine::Schema(
                found.map_or_else(|| "none".into(), |f| f.to_string()),
            ));
        }
    }
    line.remove("at");
    let Some(Value::String(event)) = line.remove("event") else {
        return Err(BadLine::Malformed("no \"event\"".into()));
    };
    let tagged = Value::Object(Map::from_iter([(event, Value::Object(line))]));
    serde_json::from_value(tagged).map_err(malformed)
}

/// A run as its journal tells it.
#[derive(Debug, Clone)]
pub struct JournaledRun {
    /// The summary `summary.json` holds; `None` for a run that was stopped before it was judged.
    pub summary: Option<Summary>,
    /// Why the run was stopped, if it was.
    pub stopped: Option<String>,
    pub samples: BTreeMap<Variant, Vec<Sample>>,
    pub probes: BTreeMap<Variant, Probes>,
    /// Every event, in order.
    pub entries: Vec<Entry>,
}

/// Reads `path` back: every line must be an event of this schema.
pub fn read(path: &Path) -> Result<JournaledRun, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut entries = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = entry_of(&line).map_err(|bad| match bad {
            BadLine::Schema(found) => JournalError::Schema {
                path: path.to_owned(),
                line: n + 1,
                found,
            },
            BadLine::Malformed(message) => JournalError::Malformed {
                path: path.to_owned(),
                line: n + 1,
                message,
            },
        })?;
        entries.push(entry);
    }
    assemble(path, entries)
}

/// The run out of its events: the header, the judged variants and the end make the summary.
fn assemble(path: &Path, entries: Vec<Entry>) -> Result<JournaledRun, JournalError> {
    let (mut header, mut reports, mut ended, mut stopped) = (None, Vec::new(), None, None);
    let (mut samples, mut probes) = (BTreeMap::<_, Vec<_>>::new(), BTreeMap::new());
    for entry in &entries {
        match entry {
            Entry::RunStarted { header: h } => header = Some(h.clone()),
            Entry::Second { variant, sample } => samples.entry(*variant).or_default().push(sample.clone()),
            Entry::Probes { variant, probes: p } => {
                probes.insert(*variant, p.clone());
            }
            Entry::VariantJudged { report } => reports.push((**report).clone()),
            Entry::RunEnded {
                docker_version,
                variants,
                ..
            } => ended = Some((docker_version.clone(), variants.clone())),
            Entry::RunStopped { reason } => stopped = Some(reason.clone()),
            Entry::PhaseStarted { .. } | Entry::Fault { .. } | Entry::Aborted { .. } => {}
        }
    }
    let header = header.ok_or_else(|| JournalError::Incomplete {
        path: path.to_owned(),
        what: "no run_started line: not a run's journal, or its first line was lost",
    })?;
    let summary = ended.map(|(docker_version, order)| {
        reports.sort_by_key(|r| order.iter().position(|v| *v == r.variant));
        for report in &mut reports {
            report.samples = samples.get(&report.variant).cloned().unwrap_or_default();
        }
        Summary::from_parts(header, reports, docker_version)
    });
    Ok(JournaledRun {
        summary,
        stopped,
        samples,
        probes,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::Metric;

    /// `entries` journaled in a scratch file named for the test.
    fn written(test: &str, entries: &[Entry]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("fortress-journal-{test}-{}.ndjson", std::process::id()));
        let journal = Journal::create(&path).unwrap();
        for entry in entries {
            journal.write(entry);
        }
        path
    }

    fn second() -> Sample {
        Sample {
            at_s: 1.0,
            phase: "baseline".into(),
            values: BTreeMap::from([(Metric::ThroughputRps, 99.5)]),
            // Replica numbers are JSON object keys: they come back as numbers.
            replicas: BTreeMap::from([(2, BTreeMap::from([(Metric::ThroughputRps, 50.0)]))]),
        }
    }

    #[test]
    fn each_line_is_one_flat_event_and_reads_back() {
        let stopped = Entry::RunStopped {
            reason: "interrupted".into(),
        };
        let sample = Entry::Second {
            variant: Variant::Defended,
            sample: second(),
        };
        let path = written("flat", &[sample, stopped]);
        let text = std::fs::read_to_string(&path).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["schema"], 1);
        assert_eq!(first["event"], "second");
        assert_eq!(first["variant"], "defended");
        assert_eq!(first["sample"]["replicas"]["2"]["throughput_rps"], 50.0);
        assert!(first["at"].as_str().is_some());
        let entries: Vec<Entry> = text.lines().filter_map(|l| entry_of(l).ok()).collect();
        assert_eq!(entries.len(), 2);
        let Entry::Second { sample, .. } = &entries[0] else {
            panic!("{entries:?}")
        };
        assert_eq!(sample.replicas[&2][&Metric::ThroughputRps], 50.0);
        assert!(matches!(&entries[1], Entry::RunStopped { reason } if reason == "interrupted"));
        // Without its first line, it is not a run's journal.
        assert!(matches!(read(&path), Err(JournalError::Incomplete { .. })));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn another_schema_or_an_unknown_event_is_refused_with_its_line() {
        let path = written("refused", &[Entry::RunStopped { reason: "x".into() }]);
        let line = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{line}{}", line.replace("\"schema\":1", "\"schema\":7")),
        )
        .unwrap();
        let error = read(&path).unwrap_err();
        assert!(
            matches!(&error, JournalError::Schema { line: 2, found, .. } if found == "7"),
            "{error}"
        );
        std::fs::write(&path, line.replace("run_stopped", "run_paused")).unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 1") && error.contains("run_paused"),
            "{error}"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_journal_that_cannot_be_written_lets_the_run_go_on() {
        Journal::none().write(&Entry::RunStopped { reason: "x".into() });
    }
}
