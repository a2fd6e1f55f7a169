//! Reports: a run folder (`summary.json` and the time series) rendered into `report.html`, one
//! self-contained page with its charts embedded, and the charts as PNG files beside it.
//!
//! Everything here reads only what a run wrote, so `fortress report <run-dir>` re-renders any run.

pub mod charts;
pub mod compare;
mod html;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::experiment::metric::Metric;
use crate::experiment::output::{SUMMARY_SCHEMA, Summary};
use crate::experiment::verdict::Sample;
use crate::faults::Action;
use crate::saved_json::{self, Unreadable};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{}: not a run folder (it has no summary.json); `fortress experiment` writes run folders under reports/",
        path.display()
    )]
    NotARun { path: PathBuf },
    #[error("{}: cannot read it: {source}", path.display())]
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
    #[error("failed to draw {chart}: {message}")]
    Chart { chart: String, message: String },
    #[error("{}: cannot write it: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// A fault, active from `start_s` to `end_s` (seconds since the load of its variant started).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub variant: String,
    pub fault: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// A run folder, read back.
#[derive(Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub summary: Summary,
    samples: BTreeMap<String, Vec<Sample>>,
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
    /// Reads `dir/summary.json` and every variant's `timeseries-<variant>.json`.
    pub fn load(dir: &Path) -> Result<Self, ReportError> {
        let path = dir.join("summary.json");
        if !path.is_file() {
            return Err(ReportError::NotARun { path: dir.to_owned() });
        }
        let summary: Summary =
            saved_json::parse_versioned(&read(&path)?, SUMMARY_SCHEMA).map_err(|e| refused(&path, e))?;
        let mut samples = BTreeMap::new();
        for variant in &summary.variants {
            let path = dir.join(format!("timeseries-{}.json", variant.variant));
            let series: Vec<Sample> = saved_json::parse(&read(&path)?).map_err(|e| refused(&path, e))?;
            samples.insert(variant.variant.clone(), series);
        }
        Ok(Self {
            dir: dir.to_owned(),
            summary,
            samples,
        })
    }

    pub fn samples(&self, variant: &str) -> &[Sample] {
        self.samples.get(variant).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether any second of any variant measured `metric`.
    pub fn has_series(&self, metric: Metric) -> bool {
        self.samples
            .values()
            .flatten()
            .any(|s| s.values.contains_key(&metric))
    }

    /// Whether any variant has an end-of-run figure of `metric` (oversold units, units sold).
    pub fn has_end_of_run(&self, metric: Metric) -> bool {
        self.summary.variants.iter().any(|v| {
            v.phase_stats
                .get(crate::experiment::definition::RUN_PHASE, metric)
                .is_some()
        }) && !self.has_series(metric)
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

    /// Every fault window of every variant: from the inject's end to the revert's start.
    pub fn fault_windows(&self) -> Vec<Window> {
        let mut windows = Vec::new();
        for variant in &self.summary.variants {
            let since = |t: DateTime<Utc>| (t - variant.load_started_at).as_seconds_f64();
            let mut open: Vec<(&str, f64)> = Vec::new();
            for entry in &variant.timeline {
                match entry.action {
                    Action::Inject => open.push((&entry.fault, since(entry.finished_at))),
                    Action::Revert => {
                        if let Some(i) = open.iter().position(|(f, _)| *f == entry.fault) {
                            let (fault, start_s) = open.remove(i);
                            windows.push(Window {
                                variant: variant.variant.clone(),
                                fault: fault.to_owned(),
                                start_s,
                                end_s: since(entry.started_at),
                            });
                        }
                    }
                }
            }
        }
        windows
    }
}

/// What `render` wrote.
#[derive(Debug)]
pub struct Rendered {
    pub html: PathBuf,
    pub headline: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// Draws the charts of the run in `dir` and writes `dir/report.html`.
pub fn render(dir: &Path) -> Result<Rendered, ReportError> {
    let run = Run::load(dir)?;
    let headline_spec = charts::headline(&run);
    let headline = charts::draw(&run, &headline_spec, dir)?;
    let mut drawn = Vec::new();
    for spec in charts::standard()
        .into_iter()
        .filter(|c| charts::has_data(&run, c))
    {
        let path = charts::draw(&run, &spec, dir)?;
        drawn.push((spec, path));
    }
    let page = html::page(&run, (&headline_spec, &headline), &drawn)?;
    let html_path = dir.join("report.html");
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
