//! Baselines: the gate's figures of one experiment as a known-good run measured them, one JSON file per
//! experiment under `ci/baselines/`, committed, and rewritten only by `fortress gate --update-baseline`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::saved_json::{self, Unreadable};

/// The version of the baseline layout; files of another version are refused by name.
pub const BASELINE_SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{}: cannot read it", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{}: baseline schema {found}, and this fortress reads schema {expected}; write a new one with `fortress gate --update-baseline`",
        path.display()
    )]
    Schema {
        path: PathBuf,
        found: String,
        expected: u32,
    },
    #[error("{}: cannot write it", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub schema: u32,
    pub experiment: String,
    pub profile: String,
    /// The commit the baseline run was built from.
    pub revision: Option<String>,
    pub written_at: chrono::DateTime<chrono::Utc>,
    pub figures: BTreeMap<String, f64>,
}

pub fn path(dir: &Path, experiment: &str) -> PathBuf {
    dir.join(format!("{experiment}.json"))
}

/// The baseline of `experiment` in `dir`, or `None` when there is none yet.
pub fn read(dir: &Path, experiment: &str) -> Result<Option<Baseline>, BaselineError> {
    let path = path(dir, experiment);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(BaselineError::Read { path, source }),
    };
    saved_json::parse_versioned(&text, BASELINE_SCHEMA)
        .map(Some)
        .map_err(|why| match why {
            Unreadable::Malformed {
                line,
                column,
                message,
            } => BaselineError::Malformed {
                path,
                line,
                column,
                message,
            },
            Unreadable::Schema { found } => BaselineError::Schema {
                path,
                found,
                expected: BASELINE_SCHEMA,
            },
        })
}

pub fn write(dir: &Path, baseline: &Baseline) -> Result<PathBuf, BaselineError> {
    let path = path(dir, &baseline.experiment);
    let write_error = |source| BaselineError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let mut json =
        serde_json::to_string_pretty(baseline).map_err(|e| write_error(std::io::Error::other(e)))?;
    json.push('\n');
    std::fs::write(&path, json).map_err(write_error)?;
    Ok(path)
}
