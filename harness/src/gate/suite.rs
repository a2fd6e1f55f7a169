//! `ci/gates.toml`: which experiments the gate runs, and which figures of each it holds against the
//! baseline. Figures are ratios within a run or counts, never absolute times: a noisy 2-core runner
//! moves absolute latencies by more than any regression worth catching.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::experiment::catalog;
use crate::experiment::definition::{Plan, Profile, RUN_PHASE};
use crate::vocabulary::{Condition, Metric, Unknown, Variant};

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{}: cannot read the gate suite", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
}

crate::vocabulary::closed_set! {
    /// Which way a figure gets worse.
    pub enum Worse, "direction" {
        Higher = "higher": "a rise is a regression",
        Lower = "lower": "a fall is a regression",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    #[serde(default)]
    gate: Vec<GateFile>,
    #[serde(default)]
    capacity: Vec<CapacityGateFile>,
}

/// `[[capacity]]`: a capacity search the gate runs (quick profile); each of the file's capacity
/// predictions about the variants run, and each invariant, is a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityGateFile {
    experiment: Spanned<String>,
    variants: Option<Spanned<Vec<String>>>,
    /// One search (`steady` or `fault`); both when left out.
    condition: Option<Spanned<String>>,
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
    slack: Option<Spanned<f64>>,
}

/// A figure the gate compares with the baseline: `metric in phase` (over `metric in over`) of one
/// variant, failing when it moves the `worse` way by more than `tolerance` (a fraction of the
/// baseline) plus `slack` (an amount in the metric's own unit: what lets a figure whose baseline is
/// nothing, such as a share of users logged out, move by a request or two without failing).
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub variant: Variant,
    pub metric: Metric,
    pub phase: String,
    pub over: Option<String>,
    pub worse: Worse,
    pub tolerance: f64,
    pub slack: f64,
}

/// What the gate runs: experiments, then capacity searches.
#[derive(Debug, Clone)]
pub struct Suite {
    pub gates: Vec<Gate>,
    pub capacity: Vec<CapacityGate>,
}

/// A capacity search of the suite: its plan (with a `[capacity]` section), variants and searches.
#[derive(Debug, Clone)]
pub struct CapacityGate {
    pub plan: Plan,
    pub variants: Vec<Variant>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
pub struct Gate {
    pub plan: Plan,
    /// The variants to run, vulnerable first (all of the plan's unless the suite names some).
    pub variants: Vec<Variant>,
    pub figures: Vec<Figure>,
}

/// A suite file's text, for locating its mistakes.
struct SuiteSource<'a> {
    path: &'a Path,
    text: &'a str,
}

impl SuiteSource<'_> {
    fn invalid(&self, span: Range<usize>, field: &str, message: String) -> SuiteError {
        SuiteError::Invalid {
            path: self.path.to_owned(),
            line: self.text[..span.start.min(self.text.len())].matches('\n').count() + 1,
            field: field.to_owned(),
            message,
        }
    }
}

/// Reads and checks a suite: every experiment must load (in the quick profile), every figure must
/// name a variant, metric and phase that experiment has, and every capacity search an experiment
/// with a `[capacity]` section whose predictions its searches can judge.
pub fn load(path: &Path) -> Result<Suite, SuiteError> {
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
        path: path.to_owned(),
        source,
    })?;
    let src = SuiteSource { path, text: &text };
    let file: SuiteFile = toml::from_str(&text).map_err(|e| {
        let message = e.message().to_owned()
            + " (expected [[gate]] tables with `experiment` and optional [[gate.figure]], and [[capacity]] tables)";
        src.invalid(e.span().unwrap_or(0..0), "suite", message)
    })?;
    let gates = (file.gate.iter().enumerate())
        .map(|(g, gate)| self::gate(&src, g, gate))
        .collect::<Result<_, _>>()?;
    let capacity = (file.capacity.iter().enumerate())
        .map(|(c, capacity)| self::capacity(&src, c, capacity))
        .collect::<Result<_, _>>()?;
    Ok(Suite { gates, capacity })
}

/// The experiment a suite names: a path relative to the suite's folder, or a built-in's name.
fn experiment(src: &SuiteSource<'_>, named: &Spanned<String>, field: &str) -> Result<Plan, SuiteError> {
    let name = named.get_ref();
    let reference = if name.contains('/') || name.ends_with(".toml") {
        let base = src.path.parent().unwrap_or(Path::new("."));
        base.join(name).to_string_lossy().into_owned()
    } else {
        name.clone()
    };
    catalog::load(&reference, Profile::Quick).map_err(|e| src.invalid(named.span(), field, e.to_string()))
}

fn capacity(src: &SuiteSource<'_>, c: usize, file: &CapacityGateFile) -> Result<CapacityGate, SuiteError> {
    let at = format!("capacity[{c}]");
    let plan = experiment(src, &file.experiment, &format!("{at}.experiment"))?;
    let Some(searched) = &plan.capacity else {
        let message = format!("{} has no [capacity] section", plan.name);
        return Err(src.invalid(file.experiment.span(), &format!("{at}.experiment"), message));
    };
    let variants = variants(src, &at, &plan, file.variants.as_ref())?;
    let conditions =
        match &file.condition {
            None => Condition::ALL.to_vec(),
            Some(named) => vec![named.get_ref().parse().map_err(|e: Unknown| {
                src.invalid(named.span(), &format!("{at}.condition"), e.to_string())
            })?],
        };
    let unjudged = (searched.predictions.iter())
        .filter(|p| variants.contains(&p.variant))
        .find(|p| !p.figure.needs().iter().all(|n| conditions.contains(n)));
    if let (Some(p), Some(named)) = (unjudged, &file.condition) {
        let needs: Vec<&str> = p.figure.needs().iter().map(|n| n.name()).collect();
        let message = format!(
            "{p} needs the {} searches; leave condition out to run both",
            needs.join(" and ")
        );
        return Err(src.invalid(named.span(), &format!("{at}.condition"), message));
    }
    Ok(CapacityGate {
        plan,
        variants,
        conditions,
    })
}

fn gate(src: &SuiteSource<'_>, g: usize, gate: &GateFile) -> Result<Gate, SuiteError> {
    let plan = experiment(src, &gate.experiment, &format!("gate[{g}].experiment"))?;
    let variants = variants(src, &format!("gate[{g}]"), &plan, gate.variants.as_ref())?;
    let figures = gate
        .figure
        .iter()
        .enumerate()
        .map(|(f, figure)| self::figure(src, &format!("gate[{g}].figure[{f}]"), &plan, &variants, figure))
        .collect::<Result<_, _>>()?;
    Ok(Gate {
        plan,
        variants,
        figures,
    })
}

/// The variants the gate runs: the plan's, or those the suite chose; vulnerable first.
fn variants(
    src: &SuiteSource<'_>,
    at: &str,
    plan: &Plan,
    chosen: Option<&Spanned<Vec<String>>>,
) -> Result<Vec<Variant>, SuiteError> {
    let mut variants: Vec<Variant> = plan.variants.iter().map(|v| v.variant).collect();
    let Some(chosen) = chosen else {
        return Ok(variants);
    };
    let names: Vec<&str> = variants.iter().map(|v| v.name()).collect();
    if let Some(unknown) = chosen.get_ref().iter().find(|c| !names.contains(&c.as_str())) {
        let message = format!(
            "{} has no variant {unknown:?}; it has: {}",
            plan.name,
            names.join(", ")
        );
        return Err(src.invalid(chosen.span(), &format!("{at}.variants"), message));
    }
    variants.retain(|v| chosen.get_ref().iter().any(|c| c == v.name()));
    Ok(variants)
}

fn figure(
    src: &SuiteSource<'_>,
    at: &str,
    plan: &Plan,
    variants: &[Variant],
    figure: &FigureFile,
) -> Result<Figure, SuiteError> {
    let field = |name: &str| format!("{at}.{name}");
    let named = figure.variant.get_ref();
    let Some(variant) = variants.iter().copied().find(|v| v.name() == named) else {
        let runs: Vec<&str> = variants.iter().map(|v| v.name()).collect();
        let message = format!(
            "the gate runs no variant {named:?} of {}; it runs: {}",
            plan.name,
            runs.join(", ")
        );
        return Err(src.invalid(figure.variant.span(), &field("variant"), message));
    };
    let metric: Metric = figure
        .metric
        .get_ref()
        .parse()
        .map_err(|e: Unknown| src.invalid(figure.metric.span(), &field("metric"), e.to_string()))?;
    for (phase, what) in
        std::iter::once((&figure.phase, "phase")).chain(figure.over.iter().map(|o| (o, "over")))
    {
        if phase.get_ref() != RUN_PHASE && !plan.phases.iter().any(|p| p.name == *phase.get_ref()) {
            let known: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
            let message = format!(
                "{} has no phase {:?}; it has: {}",
                plan.name,
                phase.get_ref(),
                known.join(", ")
            );
            return Err(src.invalid(phase.span(), &field(what), message));
        }
    }
    let tolerance = *figure.tolerance.get_ref();
    if !(tolerance > 0.0 && tolerance.is_finite()) {
        let message = format!("must be a fraction above 0, such as 0.5 for 50% (got {tolerance})");
        return Err(src.invalid(figure.tolerance.span(), &field("tolerance"), message));
    }
    let slack = figure
        .slack
        .as_ref()
        .map_or(Ok(0.0), |slack| match *slack.get_ref() {
            s if s >= 0.0 && s.is_finite() => Ok(s),
            s => {
                let message = format!("an amount of the metric, 0 or more (got {s})");
                Err(src.invalid(slack.span(), &field("slack"), message))
            }
        })?;
    Ok(Figure {
        name: figure.name.clone(),
        variant,
        metric,
        phase: figure.phase.get_ref().clone(),
        over: figure.over.as_ref().map(|o| o.get_ref().clone()),
        worse: figure.worse,
        tolerance,
        slack,
    })
}
