//! What a run leaves behind in its run folder: `summary.json` (verdicts with predicted and observed
//! values, invariants, the fault timeline with its evidence, images, versions, seed, git revision)
//! and, per variant, the time series as CSV and JSON beside goose's own report.

use std::collections::BTreeSet;
use std::io::Write;

use reference_service::modes::ModesPatch;
use serde::{Deserialize, Serialize};

use super::abort::Abort;
use super::definition::{Plan, Profile};
use super::forensics::Forensics;
use super::invariants::InvariantReport;
use super::timing::Probes;
use super::verdict::{PhaseStats, Sample, Verdict};
use crate::env::images::ImageChoice;
use crate::faults::TimelineEntry;
use crate::faults::audit::LabAudit;
use crate::run_folder::RunFolder;
use crate::vocabulary::{ExitCode, Metric, Variant};

/// The version of `summary.json`'s layout; a reader refuses files of another version by name.
/// 2: timeline entries carry their injection number.
pub const SUMMARY_SCHEMA: u32 = 2;

/// One variant's run, as it is written and judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantReport {
    pub variant: Variant,
    pub modes: ModesPatch,
    /// The defences switched off for this run (`--without`), as `mode = value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<String>,
    pub run_id: String,
    pub images: Vec<ImageChoice>,
    pub ready_in_s: f64,
    /// When the load (and `at_s` 0 of the time series) started: fault windows are placed from it.
    pub load_started_at: chrono::DateTime<chrono::Utc>,
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub requests: u64,
    pub verdicts: Vec<Verdict>,
    pub invariants: InvariantReport,
    pub timeline: Vec<TimelineEntry>,
    /// The history of every acknowledged order the database lost: when the client saw it
    /// acknowledged, to set against the fault timeline.
    #[serde(default)]
    pub lost_orders: Vec<LostOrder>,
    /// The stop condition that ended the run early, if one tripped (no later variant ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Abort>,
    /// The lab after the last revert, as the proxy and Docker report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<LabAudit>,
    /// The 5xx answers by code with their log lines, and the warning and error lines kept.
    #[serde(default)]
    pub forensics: Forensics,
    pub phase_stats: PhaseStats,
    /// Written beside the summary as `timeseries-<variant>.json`.
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// An order the client saw acknowledged (201) and the database does not have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LostOrder {
    pub id: i64,
    /// When the checkout was sent, and when its 201 was read.
    pub sent_at: chrono::DateTime<chrono::Utc>,
    pub acknowledged_at: chrono::DateTime<chrono::Utc>,
}

/// A phase as it was planned: reports label the phases and say which faults each one held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseOutline {
    pub name: String,
    pub seconds: f64,
    pub faults: Vec<String>,
}

/// The machine a run ran on: figures from a 2-core laptop and a 64-core runner do not compare.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Self {
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .unwrap_or(0.0);
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| format!("{} {}", std::env::consts::OS, k.trim()))
                .unwrap_or_else(|_| std::env::consts::OS.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub schema: u32,
    pub experiment: String,
    pub story: String,
    pub source: String,
    pub profile: Profile,
    pub seed: u64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub fortress_version: String,
    pub git_revision: Option<String>,
    pub docker_version: Option<String>,
    pub machine: Machine,
    pub exit_code: ExitCode,
    pub phases: Vec<PhaseOutline>,
    pub variants: Vec<VariantReport>,
}

/// What is known of a run as it starts: the summary's fields that do not wait for a verdict (the
/// journal's first line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunHeader {
    pub experiment: String,
    pub story: String,
    pub source: String,
    pub profile: Profile,
    pub seed: u64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub fortress_version: String,
    pub git_revision: Option<String>,
    pub machine: Machine,
    pub phases: Vec<PhaseOutline>,
}

impl RunHeader {
    /// `plan` (its seed the run's) starting now on this machine, from this checkout.
    pub fn of(plan: &Plan, started_at: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            experiment: plan.name.clone(),
            story: plan.story.clone(),
            source: plan.source.clone(),
            profile: plan.profile,
            seed: plan.seed.seed,
            started_at,
            fortress_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: git_revision(),
            machine: Machine::this(),
            phases: plan
                .phases
                .iter()
                .map(|p| PhaseOutline {
                    name: p.name.clone(),
                    seconds: p.seconds,
                    faults: p.faults.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }
}

impl Summary {
    /// The run judged: its header, each variant's report, and the Docker it ran on. The exit code
    /// follows from the verdicts and invariants.
    pub fn from_parts(
        header: RunHeader,
        variants: Vec<VariantReport>,
        docker_version: Option<String>,
    ) -> Self {
        let verdicts: Vec<_> = variants.iter().flat_map(|r| r.verdicts.iter().cloned()).collect();
        let held = variants.iter().all(|r| r.invariants.held());
        Self {
            schema: SUMMARY_SCHEMA,
            experiment: header.experiment,
            story: header.story,
            source: header.source,
            profile: header.profile,
            seed: header.seed,
            started_at: header.started_at,
            fortress_version: header.fortress_version,
            git_revision: header.git_revision,
            docker_version,
            machine: header.machine,
            exit_code: super::verdict::exit_code(&verdicts, held),
            phases: header.phases,
            variants,
        }
    }
}

/// The commit the lab was built from, if this is a git checkout.
pub fn git_revision() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `timing-<variant>.json`: every probe's latency.
pub fn write_probes(folder: &RunFolder, variant: Variant, probes: &Probes) -> std::io::Result<()> {
    let json = serde_json::to_vec(probes).map_err(std::io::Error::other)?;
    std::fs::write(folder.probes(variant), json)
}

pub fn write_summary(folder: &RunFolder, summary: &Summary) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    std::fs::write(folder.summary(), json)
}

/// One column per metric, then one per metric and replica (`service_rps@service-2`) when there are
/// several.
fn columns(samples: &[Sample]) -> (Vec<Metric>, Vec<(u32, Metric)>) {
    let metrics: BTreeSet<Metric> = samples.iter().flat_map(|s| s.values.keys().copied()).collect();
    let per_replica: BTreeSet<(u32, Metric)> = samples
        .iter()
        .flat_map(|s| {
            s.replicas
                .iter()
                .flat_map(|(r, v)| v.keys().map(move |m| (*r, *m)))
        })
        .collect();
    (metrics.into_iter().collect(), per_replica.into_iter().collect())
}

/// `timeseries-<variant>.csv` (one row per second, one column per metric) and `.json`.
pub fn write_series(folder: &RunFolder, variant: Variant, samples: &[Sample]) -> std::io::Result<()> {
    let (metrics, per_replica) = columns(samples);
    let mut csv = std::io::BufWriter::new(std::fs::File::create(folder.series_csv(variant))?);
    let header: Vec<String> = metrics
        .iter()
        .map(ToString::to_string)
        .chain(
            per_replica
                .iter()
                .map(|(r, m)| format!("{m}@{}", crate::vocabulary::Role::Service(*r))),
        )
        .collect();
    writeln!(csv, "at_s,phase,{}", header.join(","))?;
    let cell = |value: Option<&f64>| value.map(|v| format!("{v:.4}")).unwrap_or_default();
    for sample in samples {
        let cells: Vec<String> = metrics
            .iter()
            .map(|m| cell(sample.values.get(m)))
            .chain(
                per_replica
                    .iter()
                    .map(|(r, m)| cell(sample.replicas.get(r).and_then(|v| v.get(m)))),
            )
            .collect();
        writeln!(csv, "{:.1},{},{}", sample.at_s, sample.phase, cells.join(","))?;
    }
    csv.flush()?;
    let json = serde_json::to_vec(samples).map_err(std::io::Error::other)?;
    std::fs::write(folder.series_json(variant), json)
}
