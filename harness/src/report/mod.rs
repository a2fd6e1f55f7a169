//! Reports: a run folder (`summary.json` and the time series) rendered into `report.html`, one
//! self-contained page with its charts embedded, and the charts as PNG files beside it.
//!
//! Everything here reads only what a run wrote, so `fortress report <run-dir>` re-renders any run.

pub mod charts;
pub mod compare;
mod html;

pub use html::{STYLE, embedded, escape, figure};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::experiment::definition::RUN_PHASE;
use crate::experiment::journal::{self, JournalError};
use crate::experiment::output::{SUMMARY_SCHEMA, Summary};
use crate::experiment::timing::Probes;
use crate::experiment::verdict::Sample;
use crate::faults::Action;
use crate::run_folder::RunFolder;
use crate::saved_json::{self, Unreadable};
use crate::vocabulary::{Metric, Variant};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{}: not a run folder (it has no summary.json and no journal.ndjson); `fortress experiment` writes run folders under reports/",
        path.display()
    )]
    NotARun { path: PathBuf },
    #[error("{}: this run was interrupted (Ctrl-C) before its verdicts: {note}; run the experiment again", path.display())]
    Interrupted { path: PathBuf, note: String },
    #[error("{}: cannot read it", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message} (half-written? the run may have been killed; run the experiment again)", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{}: written in summary schema {found}, and this fortress reads schema {expected}; run the experiment again to get a current one",
        path.display()
    )]
    Schema {
        path: PathBuf,
        found: String,
        expected: u32,
    },
    #[error("the run's journal cannot be read")]
    Journal(#[from] JournalError),
    #[error("{}: the journal ends before any verdict: {reason}; run the experiment again", path.display())]
    Unjudged { path: PathBuf, reason: String },
    #[error("failed to draw {}", path.display())]
    Chart {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: cannot write it", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// A fault, active from `start_s` to `end_s` (seconds since the load of its variant started).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub variant: Variant,
    pub fault: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// A run folder, read back.
#[derive(Debug)]
pub struct Run {
    pub folder: RunFolder,
    pub summary: Summary,
    samples: BTreeMap<Variant, Vec<Sample>>,
    /// The timing attacker's probes, of the variants whose load sent any.
    probes: BTreeMap<Variant, Probes>,
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_owned(),
        source,
    })
}

fn refused(path: &Path, why: Unreadable) -> ReportError {
    let path = path.to_owned();
    match why {
        Unreadable::Malformed {
            line,
            column,
            message,
        } => ReportError::Malformed {
            path,
            line,
            column,
            message,
        },
        Unreadable::Schema { found } => ReportError::Schema {
            path,
            found,
            expected: SUMMARY_SCHEMA,
        },
    }
}

impl Run {
    /// Reads `summary.json` of the folder `dir` and every variant's time series.
    pub fn load(dir: &Path) -> Result<Self, ReportError> {
        let folder = RunFolder::at(dir);
        let path = folder.summary();
        if let Ok(note) = std::fs::read_to_string(folder.interrupted()) {
            return Err(ReportError::Interrupted {
                path: dir.to_owned(),
                note: note.trim().to_owned(),
            });
        }
        if !path.is_file() {
            if folder.journal().is_file() {
                return Self::from_journal(folder);
            }
            return Err(ReportError::NotARun { path: dir.to_owned() });
        }
        let summary: Summary =
            saved_json::parse_versioned(&read(&path)?, SUMMARY_SCHEMA).map_err(|e| refused(&path, e))?;
        let mut samples = BTreeMap::new();
        let mut probes = BTreeMap::new();
        for variant in &summary.variants {
            let path = folder.series_json(variant.variant);
            let series: Vec<Sample> = saved_json::parse(&read(&path)?).map_err(|e| refused(&path, e))?;
            samples.insert(variant.variant, series);
            let path = folder.probes(variant.variant);
            if path.is_file() {
                let probed: Probes = saved_json::parse(&read(&path)?).map_err(|e| refused(&path, e))?;
                probes.insert(variant.variant, probed);
            }
        }
        Ok(Self {
            folder,
            summary,
            samples,
            probes,
        })
    }

    /// The run as its journal alone tells it (a folder without its summary.json).
    fn from_journal(folder: RunFolder) -> Result<Self, ReportError> {
        let path = folder.journal();
        let run = journal::read(&path)?;
        let Some(summary) = run.summary else {
            let reason = run
                .stopped
                .unwrap_or_else(|| "it stops mid-run (was the run killed?)".into());
            return Err(ReportError::Unjudged { path, reason });
        };
        Ok(Self {
            folder,
            summary,
            samples: run.samples,
            probes: run.probes,
        })
    }

    pub fn samples(&self, variant: Variant) -> &[Sample] {
        self.samples.get(&variant).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether any second of any variant measured `metric`.
    pub fn has_series(&self, metric: Metric) -> bool {
        self.samples
            .values()
            .flatten()
            .any(|s| s.values.contains_key(&metric))
    }

    /// Whether any second of any variant measured `metric` above 0.
    pub fn has_nonzero(&self, metric: Metric) -> bool {
        self.samples
            .values()
            .flatten()
            .any(|s| s.values.get(&metric).is_some_and(|v| *v > 0.0))
    }

    /// The timing attacker's probes of `variant`, if its load sent any.
    pub fn probes(&self, variant: Variant) -> Option<&Probes> {
        self.probes.get(&variant)
    }

    pub fn has_probes(&self) -> bool {
        !self.probes.is_empty()
    }

    /// Whether any second of any variant measured `metric` per replica.
    pub fn has_replica_series(&self, metric: Metric) -> bool {
        self.samples
            .values()
            .flatten()
            .any(|s| s.replicas.values().any(|v| v.contains_key(&metric)))
    }

    /// Whether any variant has an end-of-run figure of `metric` (oversold units, units sold).
    pub fn has_end_of_run(&self, metric: Metric) -> bool {
        self.summary
            .variants
            .iter()
            .any(|v| v.phase_stats.get(RUN_PHASE, metric).is_some())
            && !self.has_series(metric)
    }

    /// The longest variant's time series, in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples
            .values()
            .flatten()
            .map(|s| s.at_s)
            .fold(0.0, f64::max)
    }

    /// Each phase as (name, start, end) in seconds, from the first variant's samples (each sample
    /// closes one second of its phase).
    pub fn phase_spans(&self) -> Vec<(String, f64, f64)> {
        let Some(series) = self.samples.values().find(|s| !s.is_empty()) else {
            return Vec::new();
        };
        let mut spans: Vec<(String, f64, f64)> = Vec::new();
        for sample in series {
            match spans.last_mut() {
                Some((name, _, end)) if *name == sample.phase => *end = sample.at_s,
                _ => {
                    let start = spans.last().map_or(0.0, |s| s.2);
                    spans.push((sample.phase.clone(), start, sample.at_s));
                }
            }
        }
        spans
    }

    /// Every fault window of every variant: from the inject's end to its revert's start. An
    /// operator's step is not one (`operator_steps`).
    pub fn fault_windows(&self) -> Vec<Window> {
        let mut windows = Vec::new();
        for variant in &self.summary.variants {
            let since = |t: DateTime<Utc>| (t - variant.load_started_at).as_seconds_f64();
            let steps = &variant.timeline;
            let injects = steps
                .iter()
                .filter(|e| e.action == Action::Inject && !e.operator_step);
            for inject in injects {
                let revert = steps
                    .iter()
                    .find(|e| e.injection == inject.injection && e.action == Action::Revert);
                if let Some(revert) = revert {
                    windows.push(Window {
                        variant: variant.variant,
                        fault: inject.fault.clone(),
                        start_s: since(inject.finished_at),
                        end_s: since(revert.started_at),
                    });
                }
            }
        }
        windows
    }
}

impl Run {
    /// Every operator's step of every variant, at the instant it was done (seconds since its load
    /// started).
    pub fn operator_steps(&self) -> Vec<Window> {
        let mut steps = Vec::new();
        for variant in &self.summary.variants {
            let since = |t: DateTime<Utc>| (t - variant.load_started_at).as_seconds_f64();
            let done = variant.timeline.iter();
            for step in done.filter(|e| e.action == Action::Inject && e.operator_step) {
                steps.push(Window {
                    variant: variant.variant,
                    fault: step.fault.clone(),
                    start_s: since(step.finished_at),
                    end_s: since(step.finished_at),
                });
            }
        }
        steps
    }
}

/// What `render` wrote.
#[derive(Debug)]
pub struct Rendered {
    pub html: PathBuf,
    pub headline: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// Draws the charts of the run in `dir` and writes its `report.html`.
pub fn render(dir: &Path) -> Result<Rendered, ReportError> {
    let run = Run::load(dir)?;
    let headline_spec = charts::headline(&run);
    let headline = charts::draw(&run, &headline_spec)?;
    let mut drawn = Vec::new();
    for spec in charts::standard(&run)
        .into_iter()
        .filter(|c| charts::has_data(&run, c))
    {
        let path = charts::draw(&run, &spec)?;
        drawn.push((spec, path));
    }
    let page = html::page(&run, (&headline_spec, &headline), &drawn)?;
    let html_path = run.folder.report();
    std::fs::write(&html_path, page).map_err(|source| ReportError::Write {
        path: html_path.clone(),
        source,
    })?;
    Ok(Rendered {
        html: html_path,
        headline,
        charts: drawn.into_iter().map(|(_, p)| p).collect(),
    })
}
