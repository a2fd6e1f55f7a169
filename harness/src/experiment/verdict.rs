//! Judging each prediction against what was observed: confirmed, refuted, or inconclusive with the
//! reason (the fault never touched traffic, the offered load was not reached, nothing was measured).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::abort::Abort;
use super::claim::Claim;
use super::definition::{PredictionPlan, RUN_PHASE};
use crate::vocabulary::{ExitCode, Metric, Outcome, Variant};

/// One second of observation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub at_s: f64,
    pub phase: String,
    /// A metric missing from a second was not measured in it (JSON writes NaN as null; reading
    /// drops it again).
    #[serde(deserialize_with = "measured_only")]
    pub values: BTreeMap<Metric, f64>,
    /// With more than one replica: each replica's own figures (by replica number, from 1) of the
    /// metrics the service counts itself; `values` holds their sum.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replicas: BTreeMap<u32, BTreeMap<Metric, f64>>,
}

fn measured_only<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<Metric, f64>, D::Error> {
    let raw: BTreeMap<Metric, Option<f64>> = BTreeMap::deserialize(d)?;
    Ok(raw.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

/// Each metric reduced to one figure per phase (the mean of its samples, unless the runner set a
/// better figure, such as a percentile over the phase's merged histogram).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseStats(#[serde(deserialize_with = "null_as_never")] BTreeMap<String, BTreeMap<Metric, f64>>);

/// The only non-finite figure a phase holds is "never" (infinity, e.g. the cache never recovered),
/// which JSON writes as null.
fn null_as_never<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, BTreeMap<Metric, f64>>, D::Error> {
    let raw: BTreeMap<String, BTreeMap<Metric, Option<f64>>> = BTreeMap::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(phase, figures)| {
            let figures = figures
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or(f64::INFINITY)))
                .collect();
            (phase, figures)
        })
        .collect())
}

impl PhaseStats {
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut sums: BTreeMap<(String, Metric), (f64, u32)> = BTreeMap::new();
        for sample in samples {
            for (metric, value) in &sample.values {
                if value.is_finite() {
                    let entry = sums.entry((sample.phase.clone(), *metric)).or_default();
                    entry.0 += value;
                    entry.1 += 1;
                }
            }
        }
        let mut stats = Self::default();
        for ((phase, metric), (sum, n)) in sums {
            stats.set(&phase, metric, sum / f64::from(n));
        }
        stats
    }

    pub fn set(&mut self, phase: &str, metric: Metric, value: f64) {
        self.0.entry(phase.to_owned()).or_default().insert(metric, value);
    }

    /// Every figure of one phase.
    pub fn phase(&self, phase: &str) -> Vec<(Metric, f64)> {
        self.0
            .get(phase)
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    pub fn get(&self, phase: &str, metric: Metric) -> Option<f64> {
        self.0.get(phase).and_then(|m| m.get(&metric)).copied()
    }
}

/// What can make a phase unfit to judge.
#[derive(Debug, Clone, Default)]
pub struct Caveats {
    /// Per phase, the faults that never touched traffic (the proxy's or the runner's evidence).
    pub untouched_faults: BTreeMap<String, Vec<String>>,
    /// Per phase, (offered, achieved) requests per second when achieved fell short of offered.
    pub load_shortfall: BTreeMap<String, (f64, f64)>,
    /// Per phase, why the load generator (not the service) kept the load from being offered.
    pub generator: BTreeMap<String, String>,
}

/// The share of the offered rate below which a phase's load counts as not reached.
pub const MIN_ACHIEVED_SHARE: f64 = 0.8;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub variant: Variant,
    #[serde(flatten)]
    pub claim: Claim,
    pub observed: Option<f64>,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub why: String,
}

/// What makes `phase` unfit to judge. For the whole run (`run`): a fault of any phase without
/// evidence, or the generator over the whole run (not one phase's shortfall: a short warmup does not
/// make a whole-run count unfit).
fn caveat(caveats: &Caveats, phase: &str) -> Option<String> {
    if phase == RUN_PHASE {
        let untouched: Vec<&str> = caveats
            .untouched_faults
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        if !untouched.is_empty() {
            return Some(format!(
                "a fault never touched the system: {}",
                untouched.join(", ")
            ));
        }
    }
    if let Some(faults) = caveats.untouched_faults.get(phase).filter(|f| !f.is_empty()) {
        return Some(format!(
            "in {phase}, the fault never touched traffic: {}",
            faults.join(", ")
        ));
    }
    if let Some(reason) = caveats.generator.get(phase) {
        return Some(reason.clone());
    }
    caveats.load_shortfall.get(phase).map(|(offered, achieved)| {
        format!("in {phase}, the offered load was not reached ({achieved:.1} of {offered:.1} requests/s)")
    })
}

pub fn judge(prediction: &PredictionPlan, stats: &PhaseStats, caveats: &Caveats) -> Verdict {
    let judged =
        could_see(prediction, stats, caveats).and_then(|()| observe(&prediction.claim, stats, caveats));
    let (observed, outcome) = match judged {
        Ok(observed) if prediction.claim.holds(observed) => (Some(observed), Outcome::Confirmed),
        Ok(observed) => (Some(observed), Outcome::Refuted),
        Err(unjudged) => (
            None,
            Outcome::Inconclusive {
                reason: unjudged.to_string(),
            },
        ),
    };
    Verdict {
        variant: prediction.variant,
        claim: prediction.claim.clone(),
        observed,
        outcome,
        why: prediction.why.clone(),
    }
}

/// The verdict on a prediction of a run a stop condition ended: not judged, whatever was measured.
pub fn aborted(prediction: &PredictionPlan, abort: &Abort) -> Verdict {
    Verdict {
        variant: prediction.variant,
        claim: prediction.claim.clone(),
        observed: None,
        outcome: Outcome::Aborted {
            reason: abort.to_string(),
        },
        why: prediction.why.clone(),
    }
}

/// Whether the run had the power to show what the prediction is about: each of its requirements
/// borne out, and, for a claim of absence (`== 0`, `<= 2`: it holds when nothing happens), traffic
/// in its phase that could have shown the thing it says is absent.
fn could_see(prediction: &PredictionPlan, stats: &PhaseStats, caveats: &Caveats) -> Result<(), Unjudged> {
    for requirement in &prediction.requires {
        let observed = observe(&requirement.claim, stats, caveats)?;
        if !requirement.claim.holds(observed) {
            return Err(Unjudged::NoPower(format!(
                "the run could not have shown it: {} is {observed:.3} ({})",
                requirement.claim, requirement.why
            )));
        }
    }
    let claim = &prediction.claim;
    let quiet = stats.get(&claim.phase, Metric::ThroughputRps) == Some(0.0);
    if claim.holds(0.0) && quiet {
        return Err(Unjudged::NoPower(format!(
            "nothing completed in {}: a claim that something is absent there shows nothing",
            claim.phase
        )));
    }
    Ok(())
}

/// Why a claim has no figure to be judged on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum Unjudged {
    /// The run could not have shown the effect the claim is about.
    #[error("{0}")]
    NoPower(String),
    /// The phase is unfit to judge (a fault that never touched traffic, a short load).
    #[error("{0}")]
    Caveat(String),
    #[error("no measurement of {metric} in {phase}")]
    Unmeasured { metric: Metric, phase: String },
    #[error("{metric} in {phase} is {base}: the ratio is undefined")]
    NoBase {
        metric: Metric,
        phase: String,
        base: f64,
    },
}

/// The figure a claim is about, or why there is none to judge.
fn observe(claim: &Claim, stats: &PhaseStats, caveats: &Caveats) -> Result<f64, Unjudged> {
    let phases = std::iter::once(&claim.phase).chain(claim.over.as_ref());
    if let Some(reason) = phases.filter_map(|p| caveat(caveats, p)).next() {
        return Err(Unjudged::Caveat(reason));
    }
    let measured = |phase: &str| {
        stats
            .get(phase, claim.metric)
            .ok_or_else(|| Unjudged::Unmeasured {
                metric: claim.metric,
                phase: phase.to_owned(),
            })
    };
    let value = measured(&claim.phase)?;
    match &claim.over {
        None => Ok(value),
        Some(over) => match measured(over)? {
            base if base > 0.0 => Ok(value / base),
            base => Err(Unjudged::NoBase {
                metric: claim.metric,
                phase: over.clone(),
                base,
            }),
        },
    }
}

/// The process exit code for a judged run: aborted when a stop condition stopped it, confirmed when
/// every prediction is and every invariant held, refuted when a prediction was or an invariant broke,
/// inconclusive otherwise.
pub fn exit_code(verdicts: &[Verdict], invariants_held: bool) -> ExitCode {
    if verdicts
        .iter()
        .any(|v| matches!(v.outcome, Outcome::Aborted { .. }))
    {
        ExitCode::Aborted
    } else if !invariants_held || verdicts.iter().any(|v| v.outcome == Outcome::Refuted) {
        ExitCode::Refuted
    } else if verdicts.iter().all(|v| v.outcome.confirmed()) {
        ExitCode::Confirmed
    } else {
        ExitCode::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::claim::Comparison;

    fn series(phases: &[(&str, f64, usize)]) -> Vec<Sample> {
        let mut samples = Vec::new();
        for (phase, statements, seconds) in phases {
            for i in 0..*seconds {
                // A little noise around the level, as a real series has.
                let wobble = if i % 2 == 0 { 0.95 } else { 1.05 };
                let values = BTreeMap::from([(Metric::PgStatementsPerS, statements * wobble)]);
                samples.push(Sample {
                    at_s: samples.len() as f64,
                    phase: (*phase).into(),
                    values,
                    replicas: BTreeMap::new(),
                });
            }
        }
        samples
    }

    fn prediction(over: Option<&str>, compare: Comparison, threshold: f64) -> PredictionPlan {
        PredictionPlan {
            variant: Variant::Vulnerable,
            claim: Claim {
                metric: Metric::PgStatementsPerS,
                phase: "fault".into(),
                over: over.map(Into::into),
                compare,
                threshold,
                tolerance: None,
            },
            why: "the cache is gone, so every read is a query".into(),
            requires: Vec::new(),
            revisions: Vec::new(),
        }
    }

    #[test]
    fn a_database_load_jump_confirms_and_a_flat_one_refutes() {
        let jump = PhaseStats::from_samples(&series(&[("baseline", 20.0, 10), ("fault", 300.0, 10)]));
        let verdict = judge(
            &prediction(Some("baseline"), Comparison::AtLeast, 3.0),
            &jump,
            &Caveats::default(),
        );
        assert_eq!(verdict.outcome, Outcome::Confirmed);
        assert!((verdict.observed.unwrap() - 15.0).abs() < 0.01, "{verdict:?}");
        assert_eq!(
            verdict.claim.to_string(),
            "pg_statements_per_s in fault / baseline >= 3"
        );

        let flat = PhaseStats::from_samples(&series(&[("baseline", 20.0, 10), ("fault", 22.0, 10)]));
        let verdict = judge(
            &prediction(Some("baseline"), Comparison::AtLeast, 3.0),
            &flat,
            &Caveats::default(),
        );
        assert_eq!(verdict.outcome, Outcome::Refuted);
        assert_eq!(exit_code(&[verdict], true), ExitCode::Refuted);
    }

    #[test]
    fn untouched_faults_missing_data_and_short_load_are_inconclusive() {
        let stats = PhaseStats::from_samples(&series(&[("baseline", 20.0, 10), ("fault", 300.0, 10)]));
        let mut caveats = Caveats::default();
        caveats
            .untouched_faults
            .insert("fault".into(), vec!["latency 20ms on the postgres link".into()]);
        let verdict = judge(
            &prediction(Some("baseline"), Comparison::AtLeast, 3.0),
            &stats,
            &caveats,
        );
        assert!(
            matches!(&verdict.outcome, Outcome::Inconclusive { reason } if reason.contains("never touched traffic"))
        );
        assert_eq!(exit_code(&[verdict], true), ExitCode::Inconclusive);

        let short = Caveats {
            load_shortfall: BTreeMap::from([("fault".into(), (100.0, 40.0))]),
            ..Caveats::default()
        };
        let verdict = judge(&prediction(None, Comparison::Less, 1000.0), &stats, &short);
        assert!(
            matches!(&verdict.outcome, Outcome::Inconclusive { reason } if reason.contains("40.0 of 100.0"))
        );

        let no_baseline = PhaseStats::from_samples(&series(&[("baseline", 0.0, 5), ("fault", 300.0, 5)]));
        let verdict = judge(
            &prediction(Some("baseline"), Comparison::AtLeast, 3.0),
            &no_baseline,
            &Caveats::default(),
        );
        assert!(matches!(&verdict.outcome, Outcome::Inconclusive { reason } if reason.contains("undefined")));

        let nothing = PhaseStats::default();
        let verdict = judge(
            &prediction(None, Comparison::Less, 1.0),
            &nothing,
            &Caveats::default(),
        );
        assert!(
            matches!(&verdict.outcome, Outcome::Inconclusive { reason } if reason.contains("no measurement"))
        );
    }

    #[test]
    fn a_claim_is_judged_only_when_the_run_could_have_shown_it() {
        use crate::experiment::definition::Requirement;
        let stats = PhaseStats::from_samples(&series(&[("baseline", 20.0, 5), ("fault", 5.0, 5)]));
        let mut absent = prediction(None, Comparison::AtMost, 10.0);
        absent.requires.push(Requirement {
            claim: Claim {
                metric: Metric::PgStatementsPerS,
                phase: "baseline".into(),
                over: None,
                compare: Comparison::AtLeast,
                threshold: 50.0,
                tolerance: None,
            },
            why: "a quiet database shows nothing".into(),
        });
        let verdict = judge(&absent, &stats, &Caveats::default());
        assert!(
            matches!(&verdict.outcome, Outcome::Inconclusive { reason } if reason.contains("could not have shown it") && reason.contains("baseline >= 50 is 19.8")),
            "{verdict:?}"
        );
        absent.requires[0].claim.threshold = 10.0;
        assert_eq!(
            judge(&absent, &stats, &Caveats::default()).outcome,
            Outcome::Confirmed
        );

        // Nothing completed in the phase: "at most 10" of anything there proves nothing.
        let mut quiet = stats.clone();
        quiet.set("fault", Metric::ThroughputRps, 0.0);
        let verdict = judge(
            &prediction(None, Comparison::AtMost, 10.0),
            &quiet,
            &Caveats::default(),
        );
        assert!(
            matches!(&verdict.outcome, Outcome::Inconclusive { reason } if reason.contains("nothing completed in fault")),
            "{verdict:?}"
        );
    }

    #[test]
    fn an_invariant_violation_fails_the_run_even_when_predictions_hold() {
        let stats = PhaseStats::from_samples(&series(&[("fault", 5.0, 3)]));
        let verdict = judge(
            &prediction(None, Comparison::Less, 10.0),
            &stats,
            &Caveats::default(),
        );
        assert_eq!(verdict.outcome, Outcome::Confirmed);
        assert_eq!(
            exit_code(std::slice::from_ref(&verdict), true),
            ExitCode::Confirmed
        );
        assert_eq!(exit_code(&[verdict], false), ExitCode::Refuted);
    }
}
