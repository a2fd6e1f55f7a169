//! A run folder (`reports/<experiment>-<UTC timestamp>/`): the one place its file names are written.
//! The runner, the load generator and the report ask it for paths, so a rename here renames the file
//! and every link to it at once.
//!
//! ```text
//! summary.json                    verdicts, invariants, fault timeline, environment (reports/README.md)
//! journal.ndjson                  every event of the run, a line each, as it happened
//! INTERRUPTED                     instead of verdicts, when Ctrl-C stopped the run
//! report.html, chart-*.png        the page and its charts
//! timeseries-<variant>.csv|.json  one row per second
//! timing-<variant>.json           the timing attacker's probes, when the load sent any
//! logs-<variant>/<role>.log       the warning and error lines of each service replica and Postgres
//! goose-<variant>/goose-report.html
//! capacity.json, knee-<variant>.png  a capacity search (`fortress capacity`, with its report.html):
//!                                 every step, the knees
//! ```

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::vocabulary::Variant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    /// Creates `<root>/<experiment>-<started, UTC>`.
    pub fn create(root: &Path, experiment: &str, started: DateTime<Utc>) -> std::io::Result<Self> {
        let dir = root.join(format!("{experiment}-{}", started.format("%Y%m%dT%H%M%SZ")));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// An existing run folder (nothing is checked until a file is read).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder's name, `cache-outage-20261125T172705Z`.
    pub fn name(&self) -> String {
        self.dir.file_name().map_or_else(
            || self.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    pub fn summary(&self) -> PathBuf {
        self.dir.join("summary.json")
    }

    /// `experiment::journal`'s file.
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.ndjson")
    }

    pub fn report(&self) -> PathBuf {
        self.dir.join("report.html")
    }

    /// Written instead of verdicts by a run stopped with Ctrl-C.
    pub fn interrupted(&self) -> PathBuf {
        self.dir.join("INTERRUPTED")
    }

    /// A chart's PNG, `chart-<slug>.png`.
    pub fn chart(&self, slug: &str) -> PathBuf {
        self.dir.join(format!("chart-{slug}.png"))
    }

    pub fn series_csv(&self, variant: Variant) -> PathBuf {
        self.dir.join(format!("timeseries-{variant}.csv"))
    }

    pub fn series_json(&self, variant: Variant) -> PathBuf {
        self.dir.join(format!("timeseries-{variant}.json"))
    }

    /// The warning and error lines a container of a variant's lab logged (`logs-defended/postgres.log`).
    pub fn log(&self, variant: Variant, role: &str) -> PathBuf {
        self.dir
            .join(format!("logs-{variant}"))
            .join(format!("{role}.log"))
    }

    /// The timing attacker's probes of a variant: every latency, known and unknown emails.
    pub fn probes(&self, variant: Variant) -> PathBuf {
        self.dir.join(format!("timing-{variant}.json"))
    }

    /// Goose's own HTML report of a variant's load.
    pub fn goose_report(&self, variant: Variant) -> PathBuf {
        self.dir
            .join(format!("goose-{variant}"))
            .join("goose-report.html")
    }

    /// A capacity search's findings: every step of every search, the capacities and the verdicts.
    pub fn capacity(&self) -> PathBuf {
        self.dir.join("capacity.json")
    }

    /// A capacity run's journal: each step as it was judged (`capacity::journal`).
    pub fn capacity_journal(&self) -> PathBuf {
        self.dir.join("capacity-journal.ndjson")
    }

    /// A capacity search's knee chart of a variant: latency and errors against the offered rate.
    pub fn knee_chart(&self, variant: Variant) -> PathBuf {
        self.dir.join(format!("knee-{variant}.png"))
    }

    /// What `fortress explore` searched and found: every trial, its class, the minimal schedules.
    pub fn explore(&self) -> PathBuf {
        self.dir.join("explore.json")
    }

    /// The `n`th schedule explore found to break an invariant, as an experiment file that replays it.
    pub fn found(&self, n: usize) -> PathBuf {
        self.dir.join(format!("found-{n}.toml"))
    }

    /// A file of this folder as a link from `report.html` (a path relative to the folder).
    pub fn link(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_once_and_linked_relative_to_the_folder() {
        let started = DateTime::parse_from_rfc3339("2026-11-25T17:27:05Z")
            .unwrap()
            .to_utc();
        let root = std::env::temp_dir().join(format!("fortress-run-folder-{}", std::process::id()));
        let folder = RunFolder::create(&root, "cache-outage", started).unwrap();
        assert_eq!(folder.name(), "cache-outage-20261125T172705Z");
        assert!(folder.dir().is_dir());
        assert_eq!(
            folder.link(&folder.goose_report(Variant::Defended)),
            "goose-defended/goose-report.html"
        );
        assert_eq!(
            folder.link(&folder.series_csv(Variant::Vulnerable)),
            "timeseries-vulnerable.csv"
        );
        assert_eq!(folder.link(&folder.summary()), "summary.json");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
