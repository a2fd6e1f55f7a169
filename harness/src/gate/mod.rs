//! The CI gate: a suite of experiments (quick profile) whose every prediction and invariant becomes a
//! test case, plus key figures held against a committed baseline, so that a pull request that breaks a
//! defence, or makes the system degrade more under the same fault, fails.

pub mod baseline;
pub mod suite;

use std::collections::BTreeMap;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::experiment::output::{Summary, VariantReport};
use baseline::Baseline;
use suite::{Figure, Gate, Worse};

/// What a case holds the run to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseKind {
    Prediction,
    Invariant,
    /// A figure against the baseline.
    Figure,
    /// A stop condition of the experiment file tripped: the run stopped early, which always fails.
    StopCondition,
}

/// One test case of the gate.
#[derive(Debug, Clone)]
pub struct Case {
    pub experiment: String,
    pub kind: CaseKind,
    pub name: String,
    /// `None`: skipped (no baseline to hold the figure against).
    pub passed: Option<bool>,
    /// What was observed, and against what.
    pub message: String,
}

/// The figure as measured in a run: `metric in phase`, over `metric in over` when set.
pub fn measure(figure: &Figure, summary: &Summary) -> Option<f64> {
    let variant: &VariantReport = summary.variants.iter().find(|v| v.variant == figure.variant)?;
    let value = variant.phase_stats.get(&figure.phase, figure.metric)?;
    match &figure.over {
        None => Some(value),
        Some(over) => {
            let base = variant.phase_stats.get(over, figure.metric)?;
            (base != 0.0).then(|| value / base)
        }
    }
    .filter(|v| v.is_finite())
}

/// Every prediction, every invariant and every figure of one experiment's run, judged.
pub fn judge(gate: &Gate, summary: &Summary, baseline: Option<&Baseline>) -> Vec<Case> {
    let experiment = gate.plan.name.clone();
    let mut cases = Vec::new();
    for variant in &summary.variants {
        if let Some(abort) = &variant.aborted {
            cases.push(Case {
                experiment: experiment.clone(),
                kind: CaseKind::StopCondition,
                name: format!("{}: stop condition", variant.variant),
                passed: Some(false),
                message: format!("the run stopped early: {abort}"),
            });
        }
        for v in &variant.verdicts {
            let observed = v.observed.map_or_else(|| "nothing".into(), |o| format!("{o:.4}"));
            cases.push(Case {
                experiment: experiment.clone(),
                kind: CaseKind::Prediction,
                name: format!("{}: predicts {}", variant.variant, v.claim),
                passed: Some(v.outcome.confirmed()),
                message: format!("{}: observed {observed} ({})", v.outcome, v.why),
            });
        }
        // An invariant handed to a prediction is judged by that prediction's case; as a case of its
        // own it would always pass.
        let unpredicted = variant
            .invariants
            .checks
            .iter()
            .filter(|c| c.predicted_by.is_none());
        for check in unpredicted {
            cases.push(Case {
                experiment: experiment.clone(),
                kind: CaseKind::Invariant,
                name: format!("{}: invariant {}", variant.variant, check.name),
                passed: Some(check.passed()),
                message: format!("{check}: {}", check.detail),
            });
        }
    }
    for figure in &gate.figures {
        cases.push(judge_figure(&experiment, figure, summary, baseline));
    }
    cases
}

fn judge_figure(experiment: &str, figure: &Figure, summary: &Summary, baseline: Option<&Baseline>) -> Case {
    let name = format!("{}: figure {}", figure.variant, figure.name);
    let case = |passed, message| Case {
        experiment: experiment.to_owned(),
        kind: CaseKind::Figure,
        name: name.clone(),
        passed,
        message,
    };
    let Some(value) = measure(figure, summary) else {
        return case(
            Some(false),
            format!("not measured in this run ({})", describe(figure)),
        );
    };
    let Some(base) = baseline.and_then(|b| b.figures.get(&figure.name)) else {
        return case(
            None,
            format!("{value:.4}; no baseline to compare with (write one: fortress gate --update-baseline)"),
        );
    };
    let (limit, regressed) = match figure.worse {
        Worse::Higher => {
            let limit = base * (1.0 + figure.tolerance) + figure.slack;
            (limit, value > limit)
        }
        Worse::Lower => {
            let limit = base * (1.0 - figure.tolerance) - figure.slack;
            (limit, value < limit)
        }
    };
    let word = if regressed {
        "REGRESSED"
    } else {
        "within tolerance"
    };
    case(
        Some(!regressed),
        format!(
            "{word}: {value:.4} against baseline {base:.4} ({}; {} is worse, limit {limit:.4}, tolerance {:.0}%)",
            describe(figure),
            figure.worse,
            figure.tolerance * 100.0
        ),
    )
}

fn describe(figure: &Figure) -> String {
    match &figure.over {
        Some(over) => format!("{} in {} / {}", figure.metric, figure.phase, over),
        None => format!("{} in {}", figure.metric, figure.phase),
    }
}

/// The figures of a run, as a baseline stores them.
pub fn figures_of(gate: &Gate, summary: &Summary) -> BTreeMap<String, f64> {
    gate.figures
        .iter()
        .filter_map(|f| Some((f.name.clone(), measure(f, summary)?)))
        .collect()
}

/// The cases as JUnit XML: one test suite per experiment, one test case per prediction, invariant and
/// figure, with what was observed in the message.
pub fn junit(cases: &[Case]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("fortress-gate");
    let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
    for case in cases {
        let status = match case.passed {
            Some(true) => TestCaseStatus::success(),
            Some(false) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(case.message.clone());
                status
            }
            None => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(case.message.clone());
                status
            }
        };
        let mut test_case = TestCase::new(case.name.clone(), status);
        test_case.set_classname(format!("fortress.{}", case.experiment));
        if case.passed == Some(true) {
            test_case.set_system_out(case.message.clone());
        }
        suites
            .entry(&case.experiment)
            .or_insert_with(|| TestSuite::new(case.experiment.clone()))
            .add_test_case(test_case);
    }
    report.add_test_suites(suites.into_values());
    report.to_string()
}
