//! A defended variant with one defence switched off: the run that shows a defence earns its credit.
//! A defence here is one of the service's modes the defended variant sets; switched off, it takes the
//! value the vulnerable variant gives it (the naive code of the same story), or the value asked for
//! (`--without revocation=fail_closed`). The defended predictions are then judged as written: the ones
//! the defence holds up should be refuted.

use std::str::FromStr;

use reference_service::modes::{Modes, ModesPatch, PARTS, part_of};
use serde_json::{Map, Value};

use super::definition::Plan;
use crate::vocabulary::Variant;

/// One defence to switch off: a mode, and the value to give it instead (the vulnerable variant's
/// when none is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Without {
    pub mode: String,
    pub value: Option<String>,
}

impl FromStr for Without {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (mode, value) = match text.split_once('=') {
            Some((mode, value)) => (mode.trim(), Some(value.trim().to_owned())),
            None => (text.trim(), None),
        };
        if mode.is_empty() || value.as_deref() == Some("") {
            return Err(format!(
                "{text:?}: write a mode (`cache_failure`), or a mode and a value (`revocation=fail_closed`)"
            ));
        }
        Ok(Self {
            mode: mode.to_owned(),
            value,
        })
    }
}

/// Why a defence cannot be switched off in this plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WithoutError {
    #[error("{experiment} has no defended variant to switch a defence off in")]
    NoDefended { experiment: String },
    #[error("{mode:?} is not a mode of the service; modes: {known}")]
    UnknownMode { mode: String, known: String },
    #[error(
        "the defended variant of {experiment} does not set {mode} (it sets: {set}): nothing to switch off"
    )]
    NotADefence {
        experiment: String,
        mode: String,
        set: String,
    },
    #[error(
        "the vulnerable variant of {experiment} does not say what {mode} is without its defence: give the value (--without {mode}=...)"
    )]
    NoNaiveValue { experiment: String, mode: String },
    #[error("{mode}={value} is not a value the service takes: {why}")]
    BadValue {
        mode: String,
        value: String,
        why: String,
    },
    #[error("{mode} is already {value} in the defended variant: that switches nothing off")]
    NothingOff { mode: String, value: String },
}

/// `plan` with each defence of `without` switched off in its defended variant; the variant keeps a
/// record of what was switched off (`VariantPlan::without`).
pub fn switch_off(plan: &Plan, without: &[Without]) -> Result<Plan, WithoutError> {
    let mut plan = plan.clone();
    let experiment = plan.name.clone();
    let naive = (plan.variants.iter())
        .find(|v| v.variant == Variant::Vulnerable)
        .map(|v| as_map(&v.modes));
    let defended = (plan.variants.iter_mut())
        .find(|v| v.variant == Variant::Defended)
        .ok_or_else(|| WithoutError::NoDefended {
            experiment: experiment.clone(),
        })?;
    let mut modes = as_map(&defended.modes);
    for w in without {
        let value = value_without(&experiment, w, &modes, naive.as_ref())?;
        let shown = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        modes.insert(w.mode.clone(), value);
        defended.without.push(format!("{} = {shown}", w.mode));
    }
    defended.modes = serde_json::from_value(Value::Object(modes)).map_err(|e| WithoutError::BadValue {
        mode: without
            .iter()
            .map(|w| w.mode.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        value: "together".into(),
        why: e.to_string(),
    })?;
    Ok(plan)
}

/// The value `w` gives its mode, checked: a mode of the service, set by the defended variant (`set`),
/// a value the service takes that is not the one it has (or the switch would switch nothing off).
fn value_without(
    experiment: &str,
    w: &Without,
    set: &Map<String, Value>,
    naive: Option<&Map<String, Value>>,
) -> Result<Value, WithoutError> {
    let known = as_map(&ModesPatch::from(Modes::default()));
    if !known.contains_key(&w.mode) {
        let names: Vec<&str> = known.keys().map(String::as_str).collect();
        return Err(WithoutError::UnknownMode {
            mode: w.mode.clone(),
            known: names.join(", "),
        });
    }
    // A part of a bundled defence the defended variant uses (`payment_breaker` of `payments =
    // guarded`) is on there without being named, and `off` without it.
    let part =
        part_of(&w.mode).filter(|(parent, value)| set.get(*parent).and_then(Value::as_str) == Some(value));
    let defended = match (set.get(&w.mode), part) {
        (Some(defended), _) => defended.clone(),
        (None, Some(_)) => Value::from("on"),
        (None, None) => return Err(not_a_defence(experiment, &w.mode, set)),
    };
    let value = match (&w.value, naive.and_then(|n| n.get(&w.mode))) {
        // A number for a number mode (`race_window_ms=50`), a name for the others.
        (Some(value), _) => value
            .parse::<u64>()
            .map_or_else(|_| Value::String(value.clone()), Value::from),
        (None, Some(naive)) => naive.clone(),
        (None, None) if part.is_some() => Value::from("off"),
        (None, None) => {
            return Err(WithoutError::NoNaiveValue {
                experiment: experiment.to_owned(),
                mode: w.mode.clone(),
            });
        }
    };
    let shown = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    if value == defended {
        return Err(WithoutError::NothingOff {
            mode: w.mode.clone(),
            value: shown,
        });
    }
    let alone = serde_json::json!({ &w.mode: &value });
    serde_json::from_value::<ModesPatch>(alone).map_err(|error| WithoutError::BadValue {
        mode: w.mode.clone(),
        value: shown,
        why: error.to_string(),
    })?;
    Ok(value)
}

/// The error for a mode the defended variant neither sets nor uses a part of; it lists what it sets,
/// parts included.
fn not_a_defence(experiment: &str, mode: &str, set: &Map<String, Value>) -> WithoutError {
    let mut names: Vec<&str> = set.keys().map(String::as_str).collect();
    for (part, (parent, value)) in PARTS {
        if set.get(*parent).and_then(Value::as_str) == Some(value) {
            names.push(part);
        }
    }
    WithoutError::NotADefence {
        experiment: experiment.to_owned(),
        mode: mode.to_owned(),
        set: if names.is_empty() {
            "nothing".into()
        } else {
            names.join(", ")
        },
    }
}

/// The modes a patch sets, by name.
fn as_map(patch: &ModesPatch) -> Map<String, Value> {
    match serde_json::to_value(patch) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::catalog;
    use crate::experiment::definition::Profile;
    use reference_service::modes::{CacheFailure, Guard, Payments, Revocation};

    fn without(text: &str) -> Without {
        text.parse().unwrap()
    }

    #[test]
    fn a_defence_switched_off_takes_the_naive_value_and_says_so() {
        let plan = catalog::load("cache-outage", Profile::Quick).unwrap();
        let off = switch_off(&plan, &[without("cache_failure")]).unwrap();
        let defended = off
            .variants
            .iter()
            .find(|v| v.variant == Variant::Defended)
            .unwrap();
        assert_eq!(defended.modes.cache_failure, Some(CacheFailure::Fallthrough));
        assert_eq!(defended.without, ["cache_failure = fallthrough"]);

        let plan = catalog::load("session-store-outage", Profile::Quick).unwrap();
        let off = switch_off(&plan, &[without("revocation=fail_closed")]).unwrap();
        let defended = off
            .variants
            .iter()
            .find(|v| v.variant == Variant::Defended)
            .unwrap();
        assert_eq!(defended.modes.revocation, Some(Revocation::FailClosed));
    }

    #[test]
    fn a_part_of_a_bundled_defence_is_switched_off_alone() {
        let plan = catalog::load("slow-payments", Profile::Quick).unwrap();
        let off = switch_off(&plan, &[without("payment_breaker")]).unwrap();
        let defended = (off.variants.iter())
            .find(|v| v.variant == Variant::Defended)
            .unwrap();
        assert_eq!(defended.modes.payment_breaker, Some(Guard::Off));
        assert_eq!(defended.modes.payment_deadline, None, "the other parts stay on");
        assert_eq!(defended.modes.payments, Some(Payments::Guarded));
        assert_eq!(defended.without, ["payment_breaker = off"]);

        let error = |name: &str, w: &str| {
            let plan = catalog::load(name, Profile::Quick).unwrap();
            switch_off(&plan, &[without(w)]).unwrap_err().to_string()
        };
        let on = error("slow-payments", "payment_breaker=on");
        assert!(on.contains("already on in the defended variant"), "{on}");
        let elsewhere = error("cache-outage", "payment_breaker");
        assert!(
            elsewhere.contains(
                "does not set payment_breaker (it sets: cache_failure, cache_deadline, cache_breaker, cache_local)"
            ),
            "{elsewhere}"
        );
        let listed = error("slow-payments", "locking");
        assert!(listed.contains("payment_deadline, payment_bulkhead"), "{listed}");
    }

    #[test]
    fn what_cannot_be_switched_off_says_why() {
        let plan = catalog::load("cache-outage", Profile::Quick).unwrap();
        let error = |w: &str| switch_off(&plan, &[without(w)]).unwrap_err().to_string();
        assert!(
            error("turbo").contains("not a mode of the service; modes: "),
            "{}",
            error("turbo")
        );
        assert!(error("locking").contains("does not set locking (it sets: cache_failure, cache_deadline"));
        assert!(error("cache_failure=pray").contains("cache_failure=pray is not a value the service takes"));
        let plan = catalog::load("session-store-outage", Profile::Quick).unwrap();
        let naive = switch_off(&plan, &[without("revocation")])
            .unwrap_err()
            .to_string();
        assert!(
            naive.contains("give the value (--without revocation=...)"),
            "{naive}"
        );
        assert!("=x".parse::<Without>().is_err() && "locking=".parse::<Without>().is_err());
        let same = error("cache_failure=breaker");
        assert!(same.contains("already breaker in the defended variant"), "{same}");
        assert!(error("cache_failure=null").contains("not a value the service takes"));
    }
}
