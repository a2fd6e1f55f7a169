//! Parsing an experiment file and checking every field, each mistake located by line and field.

use std::ops::Range;

use reference_service::modes::{Modes, ModesPatch};
use reference_service::seed::SeedPlan;
use toml::Spanned;

use super::{DefinitionError, PhasePlan, Plan, PredictionPlan, Profile, RUN_PHASE, Scenario, VariantPlan};
use crate::env::Role;
use crate::experiment::metric::{Comparison, Metric};
use crate::experiment::schema::{FaultFile, File};
use crate::faults::Fault;
use crate::faults::proxy::NetworkFault;

const VARIANTS: [&str; 2] = ["vulnerable", "defended"];

struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())].matches('\n').count() + 1
    }

    fn error(&self, span: &Range<usize>, field: &str, message: impl Into<String>) -> DefinitionError {
        DefinitionError {
            file: self.file.into(),
            line: self.line(span),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The key written at the start of the line a parse error points to (toml's own messages name the
    /// expected type, not always the key).
    fn key_at(&self, span: &Range<usize>) -> String {
        let start = self.text[..span.start.min(self.text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = self.text[start..].lines().next().unwrap_or("");
        line.split_once('=')
            .map_or_else(|| line.trim().to_owned(), |(key, _)| key.trim().to_owned())
    }
}

/// Parses and validates an experiment file. `file` names it in errors.
pub fn parse(file: &str, text: &str, profile: Profile) -> Result<Plan, DefinitionError> {
    let src = Source { file, text };
    let parsed: File = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        DefinitionError {
            file: file.into(),
            line: src.line(&span),
            field: src.key_at(&span),
            message: e.message().trim().to_owned(),
        }
    })?;
    validate(&src, parsed, profile)
}

fn validate(src: &Source<'_>, file: File, profile: Profile) -> Result<Plan, DefinitionError> {
    let name = file.name.get_ref();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(src.error(
            &file.name.span(),
            "name",
            "use lower-case letters, digits and dashes",
        ));
    }
    let in_range = |value: &Spanned<u32>, field: &str, range: std::ops::RangeInclusive<u32>| {
        if range.contains(value.get_ref()) {
            Ok(*value.get_ref())
        } else {
            Err(src.error(
                &value.span(),
                field,
                format!(
                    "must be {} to {} (got {})",
                    range.start(),
                    range.end(),
                    value.get_ref()
                ),
            ))
        }
    };
    let replicas = in_range(&file.topology.replicas, "topology.replicas", 1..=8)?;
    let pool_size = in_range(&file.topology.pool_size, "topology.pool_size", 1..=200)?;
    let users = in_range(&file.load.users, "load.users", 1..=2000)?;

    let seed = match &file.seed {
        None => SeedPlan::default(),
        Some(table) => {
            let plan: SeedPlan = table
                .get_ref()
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| src.error(&table.span(), "seed", e.message().trim()))?;
            plan.validate()
                .map_err(|e| src.error(&table.span(), "seed", e.to_string()))?;
            plan
        }
    };

    let rate = *file.load.rate.get_ref();
    if !(rate > 0.0 && rate <= 10_000.0) {
        return Err(src.error(
            &file.load.rate.span(),
            "load.rate",
            format!("requests per second, above 0 and at most 10000 (got {rate})"),
        ));
    }
    let mut mix = Vec::new();
    for (key, weight) in file.load.mix.get_ref() {
        let scenario = Scenario::parse(key).ok_or_else(|| {
            src.error(
                &file.load.mix.span(),
                "load.mix",
                format!("unknown scenario {key:?}; scenarios: {}", Scenario::NAMES),
            )
        })?;
        mix.push((scenario, *weight));
    }
    if mix.iter().map(|(_, w)| w).sum::<u32>() == 0 {
        return Err(src.error(
            &file.load.mix.span(),
            "load.mix",
            "at least one scenario needs a weight above 0",
        ));
    }

    let factor = match (profile, &file.profiles) {
        (Profile::Standard, _) => 1.0,
        (Profile::Quick, None) => 0.5,
        (Profile::Quick, Some(profiles)) => {
            let quick = *profiles.quick.get_ref();
            if !(quick > 0.0 && quick <= 1.0) {
                return Err(src.error(
                    &profiles.quick.span(),
                    "profiles.quick",
                    format!("a fraction of the standard durations, above 0 and at most 1 (got {quick})"),
                ));
            }
            quick
        }
    };

    let mut phases = Vec::new();
    for phase in file.phases.get_ref() {
        let name = phase.name.get_ref().clone();
        if name == RUN_PHASE || phases.iter().any(|p: &PhasePlan| p.name == name) {
            return Err(src.error(
                &phase.name.span(),
                "phases.name",
                format!("phase names must be unique and not {RUN_PHASE:?} (got {name:?})"),
            ));
        }
        let seconds = *phase.seconds.get_ref();
        if !(seconds > 0.0 && seconds <= 600.0) {
            return Err(src.error(
                &phase.seconds.span(),
                "phases.seconds",
                format!("above 0 and at most 600 (got {seconds})"),
            ));
        }
        let faults = phase
            .faults
            .iter()
            .map(|f| to_fault(src, f))
            .collect::<Result<Vec<_>, _>>()?;
        let seconds = match profile {
            Profile::Standard => seconds,
            Profile::Quick => (seconds * factor).round().max(1.0).min(seconds),
        };
        phases.push(PhasePlan {
            name,
            seconds,
            faults,
        });
    }
    if phases.is_empty() {
        return Err(src.error(
            &file.phases.span(),
            "phases",
            "an experiment needs at least one phase",
        ));
    }
    let total: f64 = file.phases.get_ref().iter().map(|p| *p.seconds.get_ref()).sum();
    if total > 1800.0 {
        return Err(src.error(
            &file.phases.span(),
            "phases",
            format!("the phases add up to {total} s; at most 1800 s"),
        ));
    }

    let mut variants = Vec::new();
    for (name, variant) in file.variants.get_ref() {
        if !VARIANTS.contains(&name.as_str()) {
            return Err(src.error(
                &file.variants.span(),
                "variants",
                format!("unknown variant {name:?}; variants: vulnerable, defended"),
            ));
        }
        let modes = checked_modes(src, &variant.modes, "variants.modes")?;
        variants.push(VariantPlan {
            name: name.clone(),
            modes,
        });
    }
    if variants.is_empty() {
        return Err(src.error(
            &file.variants.span(),
            "variants",
            "define vulnerable, defended or both",
        ));
    }

    let mut predictions = Vec::new();
    for p in file.predictions {
        let variant = p.variant.get_ref();
        if !variants.iter().any(|v| &v.name == variant) {
            return Err(src.error(
                &p.variant.span(),
                "predictions.variant",
                format!("no variant {variant:?} in this file"),
            ));
        }
        let metric: Metric = p
            .metric
            .get_ref()
            .parse()
            .map_err(|e: String| src.error(&p.metric.span(), "predictions.metric", e))?;
        let known_phase = |phase: &Spanned<String>, field: &str| {
            let name = phase.get_ref();
            if name == RUN_PHASE || phases.iter().any(|p| &p.name == name) {
                Ok(name.clone())
            } else {
                let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
                Err(src.error(
                    &phase.span(),
                    field,
                    format!(
                        "no phase {name:?}; phases: {}, or {RUN_PHASE:?}",
                        names.join(", ")
                    ),
                ))
            }
        };
        let phase = known_phase(&p.phase, "predictions.phase")?;
        let over = p
            .over
            .as_ref()
            .map(|o| known_phase(o, "predictions.over"))
            .transpose()?;
        let threshold = *p.threshold.get_ref();
        if !threshold.is_finite() {
            return Err(src.error(
                &p.threshold.span(),
                "predictions.threshold",
                "must be a finite number",
            ));
        }
        let compare = *p.compare.get_ref();
        let tolerance = match (&p.tolerance, compare) {
            (Some(t), Comparison::Within) if *t.get_ref() > 0.0 && *t.get_ref() <= 1.0 => Some(*t.get_ref()),
            (Some(t), Comparison::Within) => {
                return Err(src.error(
                    &t.span(),
                    "predictions.tolerance",
                    "a fraction above 0 and at most 1 (0.3 = 30%)",
                ));
            }
            (None, Comparison::Within) => {
                return Err(src.error(
                    &p.compare.span(),
                    "predictions.tolerance",
                    "compare = \"within\" needs a tolerance (0.3 = 30%)",
                ));
            }
            (Some(t), _) => {
                return Err(src.error(
                    &t.span(),
                    "predictions.tolerance",
                    "only compare = \"within\" takes a tolerance",
                ));
            }
            (None, _) => None,
        };
        predictions.push(PredictionPlan {
            variant: variant.clone(),
            metric,
            phase,
            over,
            compare,
            threshold,
            tolerance,
            why: p.why,
        });
    }

    Ok(Plan {
        name: file.name.into_inner(),
        story: file.story.trim().to_owned(),
        source: src.file.to_owned(),
        profile,
        replicas,
        pool_size,
        seed,
        rate,
        users,
        mix,
        phases,
        variants,
        predictions,
    })
}

/// Checks a modes table against what the service accepts, and turns it into the admin API's JSON.
fn checked_modes(
    src: &Source<'_>,
    table: &Spanned<toml::Table>,
    field: &str,
) -> Result<serde_json::Value, DefinitionError> {
    let json =
        serde_json::to_value(table.get_ref()).map_err(|e| src.error(&table.span(), field, e.to_string()))?;
    let patch: ModesPatch =
        serde_json::from_value(json.clone()).map_err(|e| src.error(&table.span(), field, e.to_string()))?;
    patch
        .apply(&mut Modes::default())
        .map_err(|e| src.error(&table.span(), field, e))?;
    Ok(json)
}

fn to_fault(src: &Source<'_>, fault: &Spanned<FaultFile>) -> Result<Fault, DefinitionError> {
    let span = fault.span();
    let role = |target: &str| {
        target
            .parse::<Role>()
            .map_err(|e| src.error(&span, "phases.faults.target", e.to_string()))
    };
    let link = |link: &str| match link {
        "postgres" => Ok(Role::Postgres),
        "redis" => Ok(Role::Redis),
        other => Err(src.error(
            &span,
            "phases.faults.link",
            format!("unknown link {other:?}; links: postgres, redis"),
        )),
    };
    let network = |name: &str, fault: NetworkFault| {
        fault
            .validate()
            .map_err(|e| src.error(&span, "phases.faults", e))?;
        Ok(Fault::Network {
            link: link(name)?,
            fault,
        })
    };
    match fault.get_ref() {
        FaultFile::Kill { target } => Ok(Fault::Kill(role(target)?)),
        FaultFile::Stop { target } => Ok(Fault::Stop(role(target)?)),
        FaultFile::Pause { target } => Ok(Fault::Pause(role(target)?)),
        FaultFile::Modes { modes } => Ok(Fault::Modes(checked_modes(
            src,
            &Spanned::new(span.clone(), modes.clone()),
            "phases.faults.modes",
        )?)),
        FaultFile::DropIndex { index } => Ok(Fault::DropIndex(index.clone())),
        FaultFile::Latency { link, ms, jitter_ms } => network(
            link,
            NetworkFault::Latency {
                ms: *ms,
                jitter_ms: jitter_ms.unwrap_or(0.0),
            },
        ),
        FaultFile::Bandwidth {
            link,
            bytes_per_second,
        } => network(
            link,
            NetworkFault::Bandwidth {
                bytes_per_second: *bytes_per_second,
            },
        ),
        FaultFile::Blackhole { link } => network(link, NetworkFault::Blackhole),
        FaultFile::Reset { link } => network(link, NetworkFault::Reset),
        FaultFile::Down { link } => network(link, NetworkFault::Down),
    }
}
