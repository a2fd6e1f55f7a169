//! `ci/gates.toml`: which experiments the gate runs, and which figures of each it holds against the
//! baseline. Figures are ratios within a run or counts, never absolute times: a noisy 2-core runner
//! moves absolute latencies by more than any regression worth catching.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::experiment::catalog;
use crate::experiment::definition::{Plan, Profile, RUN_PHASE};
use crate::experiment::metric::Metric;

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{}: cannot read the gate suite: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
}

/// Which way a figure gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    Higher,
    Lower,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    gate: Vec<GateFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFile {
    experiment: Spanned<String>,
    variants: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    figure: Vec<FigureFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FigureFile {
    name: String,
    variant: Spanned<String>,
    metric: Spanned<String>,
    phase: Spanned<String>,
    over: Option<Spanned<String>>,
    worse: Worse,
    tolerance: Spanned<f64>,
}

/// A figure the gate compares with the baseline: `metric in phase` (over `metric in over`) of one
/// variant, failing when it moves the `worse` way by more than `tolerance` (a fraction).
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub variant: String,
    pub metric: Metric,
    pub phase: String,
    pub over: Option<String>,
    pub worse: Worse,
    pub tolerance: f64,
}

#[derive(Debug, Clone)]
pub struct Gate {
    pub plan: Plan,
    /// The variants to run, vulnerable first (all of the plan's unless the suite names some).
    pub variants: Vec<String>,
    pub figures: Vec<Figure>,
}

/// Reads and checks a suite: every experiment must load (in the quick profile), and every figure must
/// name a variant, metric and phase that experiment has.
pub fn load(path: &Path) -> Result<Vec<Gate>, SuiteError> {
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
        path: path.to_owned(),
        source,
    })?;
    let line = |span: Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
    let invalid = |span: Range<usize>, field: &str, message: String| SuiteError::Invalid {
        path: path.to_owned(),
        line: line(span),
        field: field.to_owned(),
        message,
    };
    let file: SuiteFile = toml::from_str(&text).map_err(|e| {
        invalid(
            e.span().unwrap_or(0..0),
            "suite",
            e.message().to_owned()
                + " (expected [[gate]] tables with `experiment` and optional [[gate.figure]])",
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut gates = Vec::new();
    for (g, gate) in file.gate.iter().enumerate() {
        let name = gate.experiment.get_ref();
        // A path is read relative to the suite's folder; a bare name is a built-in experiment.
        let reference = if name.contains('/') || name.ends_with(".toml") {
            base.join(name).to_string_lossy().into_owned()
        } else {
            name.clone()
        };
        let plan = catalog::load(&reference, Profile::Quick).map_err(|e| {
            invalid(
                gate.experiment.span(),
                &format!("gate[{g}].experiment"),
                e.to_string(),
            )
        })?;
        let mut variants: Vec<String> = plan.variants.iter().map(|v| v.name.clone()).collect();
        if let Some(chosen) = &gate.variants {
            if let Some(unknown) = chosen.get_ref().iter().find(|c| !variants.contains(c)) {
                return Err(invalid(
                    chosen.span(),
                    &format!("gate[{g}].variants"),
                    format!(
                        "{} has no variant {unknown:?}; it has: {}",
                        plan.name,
                        variants.join(", ")
                    ),
                ));
            }
            variants.retain(|v| chosen.get_ref().contains(v));
        }
        variants.sort_by_key(|v| v != "vulnerable");
        let mut figures = Vec::new();
        for (f, figure) in gate.figure.iter().enumerate() {
            let field = |name: &str| format!("gate[{g}].figure[{f}].{name}");
            let variant = figure.variant.get_ref();
            if !variants.contains(variant) {
                return Err(invalid(
                    figure.variant.span(),
                    &field("variant"),
                    format!(
                        "the gate runs no variant {variant:?} of {}; it runs: {}",
                        plan.name,
                        variants.join(", ")
                    ),
                ));
            }
            let metric: Metric = figure
                .metric
                .get_ref()
                .parse()
                .map_err(|e: String| invalid(figure.metric.span(), &field("metric"), e))?;
            for (phase, what) in
                std::iter::once((&figure.phase, "phase")).chain(figure.over.iter().map(|o| (o, "over")))
            {
                if phase.get_ref() != RUN_PHASE && !plan.phases.iter().any(|p| p.name == *phase.get_ref()) {
                    let known: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
                    return Err(invalid(
                        phase.span(),
                        &field(what),
                        format!(
                            "{} has no phase {:?}; it has: {}",
                            plan.name,
                            phase.get_ref(),
                            known.join(", ")
                        ),
                    ));
                }
            }
            let tolerance = *figure.tolerance.get_ref();
            if !(tolerance > 0.0 && tolerance.is_finite()) {
                return Err(invalid(
                    figure.tolerance.span(),
                    &field("tolerance"),
                    format!("must be a fraction above 0, such as 0.5 for 50% (got {tolerance})"),
                ));
            }
            figures.push(Figure {
                name: figure.name.clone(),
                variant: variant.clone(),
                metric,
                phase: figure.phase.get_ref().clone(),
                over: figure.over.as_ref().map(|o| o.get_ref().clone()),
                worse: figure.worse,
                tolerance,
            });
        }
        gates.push(Gate {
            plan,
            variants,
            figures,
        });
    }
    Ok(gates)
}
