//! `[capacity]`: the objective, the fault phase and the search's steps, each checked with its line.

use toml::Spanned;

use super::{LabShape, Source, checked_tolerance, finite, known_variant, revision_in};
use crate::experiment::definition::{
    CapacityClaim, CapacityPlan, CapacityPrediction, DefinitionError, Objective,
};
use crate::experiment::invariants;
use crate::experiment::schema::{CapacityFile, CapacityPredictionFile};
use crate::load::Group;
use crate::vocabulary::{CapacityFigure, Metric, Scenario, Variant};

/// A step shorter than this after its warm-up judges too few seconds to see a queue grow.
const MEASURED_SECONDS_MIN: f64 = 2.0;

/// The search `[capacity]` describes, its steps shortened by the quick profile's `factor` (never
/// below the warm-up plus two measured seconds).
pub(super) fn plan(
    src: &Source<'_>,
    file: &Spanned<CapacityFile>,
    lab: &LabShape<'_>,
    load_rate: f64,
    factor: f64,
) -> Result<CapacityPlan, DefinitionError> {
    let c = file.get_ref();
    let phase = c.fault_phase.get_ref();
    let Some(fault_phase) = lab.phases.iter().find(|p| &p.name == phase) else {
        let names: Vec<&str> = lab.phases.iter().map(|p| p.name.as_str()).collect();
        let message = format!("no phase {phase:?}; phases: {}", names.join(", "));
        return Err(src.error(&c.fault_phase.span(), "capacity.fault_phase", message));
    };
    if fault_phase.faults.is_empty() {
        let message = format!("phase {phase:?} injects no fault; name a phase that does");
        return Err(src.error(&c.fault_phase.span(), "capacity.fault_phase", message));
    }
    let objective = Objective {
        p99_ms: positive(src, Some(&c.p99_ms), "capacity.p99_ms", 0.0, 60_000.0)?,
        error_rate: between(src, c.error_rate.as_ref(), "capacity.error_rate", 0.01, 0.0, 0.5)?,
        group: c.group.as_ref().map(|g| group(src, g, lab)).transpose()?,
    };
    let from = between(src, c.from.as_ref(), "capacity.from", load_rate, 0.1, 10_000.0)?;
    let ceiling = (from * 16.0).min(10_000.0);
    let max_rate = between(
        src,
        c.max_rate.as_ref(),
        "capacity.max_rate",
        ceiling,
        from,
        10_000.0,
    )?;
    let warmup_seconds = between(
        src,
        c.warmup_seconds.as_ref(),
        "capacity.warmup_seconds",
        3.0,
        0.0,
        60.0,
    )?;
    let step = between(
        src,
        c.step_seconds.as_ref(),
        "capacity.step_seconds",
        10.0,
        1.0,
        300.0,
    )?;
    if step < warmup_seconds + MEASURED_SECONDS_MIN {
        let span = c.step_seconds.as_ref().map_or_else(|| file.span(), Spanned::span);
        let message = format!(
            "at least warmup_seconds + {MEASURED_SECONDS_MIN} ({} s): a step needs seconds to judge after its warm-up",
            warmup_seconds + MEASURED_SECONDS_MIN
        );
        return Err(src.error(&span, "capacity.step_seconds", message));
    }
    let quick = factor < 1.0;
    let repeats = match &c.repeats {
        Some(r) => src.in_range(r, "capacity.repeats", 1..=9)?,
        None if quick => 1,
        None => 3,
    };
    let service_cpus = (c.service_cpus.as_ref())
        .map(|cpus| between(src, Some(cpus), "capacity.service_cpus", 1.0, 0.1, 64.0))
        .transpose()?;
    let anchor = c.anchor.as_ref().map(|a| anchor(src, a, lab)).transpose()?;
    Ok(CapacityPlan {
        fault_phase: phase.clone(),
        faults: fault_phase.faults.clone(),
        objective,
        from,
        max_rate,
        resolution: between(src, c.resolution.as_ref(), "capacity.resolution", 0.1, 0.02, 0.5)?,
        step_seconds: (step * factor).round().max(warmup_seconds + MEASURED_SECONDS_MIN),
        warmup_seconds,
        repeats,
        service_cpus,
        anchor: anchor.unwrap_or(false),
        predictions: (c.predictions.iter())
            .map(|p| prediction(src, p, lab))
            .collect::<Result<_, _>>()?,
    })
}

/// `figure`: a figure of the searches, or a metric counting an invariant's violations that this
/// lab can produce for `variant`.
fn claim(
    src: &Source<'_>,
    figure: &Spanned<String>,
    lab: &LabShape<'_>,
    variant: Variant,
) -> Result<CapacityClaim, DefinitionError> {
    let error = |message: String| src.error(&figure.span(), "capacity.predictions.figure", message);
    let named = figure.get_ref();
    if let Ok(figure) = named.parse::<CapacityFigure>() {
        return Ok(CapacityClaim::Figure(figure));
    }
    let counted: Vec<&str> = (Metric::ALL.iter())
        .filter(|m| invariants::counts_violations(**m))
        .map(|m| m.name())
        .collect();
    let Some(metric) = named
        .parse::<Metric>()
        .ok()
        .filter(|m| invariants::counts_violations(*m))
    else {
        let figures: Vec<&str> = CapacityFigure::ALL.iter().map(|f| f.name()).collect();
        return Err(error(format!(
            "unknown figure {named:?}: a capacity figure ({}) or a count of an invariant's violations ({})",
            figures.join(", "),
            counted.join(", ")
        )));
    };
    match lab.lacks(metric, Some(variant)) {
        Some(why) => Err(error(why)),
        None => Ok(CapacityClaim::Violations(metric)),
    }
}

/// The request group the objective is judged on: a known one, that the load's mix sends.
fn group(src: &Source<'_>, group: &Spanned<String>, lab: &LabShape<'_>) -> Result<Group, DefinitionError> {
    let error = |message: String| src.error(&group.span(), "capacity.group", message);
    let parsed: Group =
        (group.get_ref().parse()).map_err(|e: crate::vocabulary::Unknown| error(e.to_string()))?;
    if !lab.mix.iter().any(|&(s, w)| w > 0 && parsed.sent_by(s)) {
        return Err(error(format!("the load's mix sends no {parsed} requests")));
    }
    Ok(parsed)
}

/// `anchor`: pgbench runs the defended checkout's transaction, so the load must be checkouts only
/// (the capacity it is set against is theirs) and take no payment (pgbench cannot call the provider).
fn anchor(src: &Source<'_>, anchor: &Spanned<bool>, lab: &LabShape<'_>) -> Result<bool, DefinitionError> {
    if !anchor.get_ref() {
        return Ok(false);
    }
    let error = |message: &str| Err(src.error(&anchor.span(), "capacity.anchor", message.to_owned()));
    let others = lab.mix.iter().any(|&(s, w)| w > 0 && s != Scenario::Checkout);
    if others || lab.mix.iter().all(|&(_, w)| w == 0) {
        return error(
            "the anchor sets checkouts against pgbench running the checkout's transaction: the load's mix must be checkout only",
        );
    }
    if lab.payments || lab.target.is_some() {
        return error("the anchor's transaction is the reference checkout's without a payment provider");
    }
    Ok(true)
}

/// A written value in `min..=max`, or `default` when the file leaves it out.
fn between(
    src: &Source<'_>,
    value: Option<&Spanned<f64>>,
    field: &str,
    default: f64,
    min: f64,
    max: f64,
) -> Result<f64, DefinitionError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let got = finite(src, value, field)?;
    if (min..=max).contains(&got) {
        return Ok(got);
    }
    Err(src.error(
        &value.span(),
        field,
        format!("must be {min} to {max} (got {got})"),
    ))
}

/// A written value above `above` and at most `max`.
fn positive(
    src: &Source<'_>,
    value: Option<&Spanned<f64>>,
    field: &str,
    above: f64,
    max: f64,
) -> Result<f64, DefinitionError> {
    let got = between(src, value, field, f64::NAN, above, max)?;
    match value {
        Some(value) if got <= above => {
            Err(src.error(&value.span(), field, format!("must be above {above} (got {got})")))
        }
        _ => Ok(got),
    }
}

fn prediction(
    src: &Source<'_>,
    p: &CapacityPredictionFile,
    lab: &LabShape<'_>,
) -> Result<CapacityPrediction, DefinitionError> {
    let variant = known_variant(src, &p.variant, "capacity.predictions.variant", lab.variants)?;
    let figure = claim(src, &p.figure, lab, variant)?;
    let tolerance = checked_tolerance(
        src,
        &p.compare,
        p.tolerance.as_ref(),
        "capacity.predictions.tolerance",
    )?;
    Ok(CapacityPrediction {
        variant,
        figure,
        compare: *p.compare.get_ref(),
        threshold: finite(src, &p.threshold, "capacity.predictions.threshold")?,
        tolerance,
        why: p.why.trim().to_owned(),
        revisions: (p.revised.iter())
            .map(|r| revision_in(src, r, "capacity.predictions.revised"))
            .collect::<Result<_, _>>()?,
    })
}
