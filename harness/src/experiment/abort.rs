//! Stop conditions: what an experiment file says must not go on (`error_rate > 0.5 for 3 s`), watched
//! every second of the run. When one trips, the run stops there: the phase's faults are reverted at
//! once, the load stops, no later phase or variant runs, and every verdict of the variant is
//! `aborted` with the reason. They are the experiment's safety net (AWS FIS's stop conditions, k6's
//! `abortOnFail`), not a prediction: a run that trips one fails, in the gate too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::claim::Comparison;
use crate::vocabulary::{Metric, Variant};

/// One stop condition, as validated from an `[[abort]]` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbortCondition {
    /// The variant it watches; every variant when `None`.
    pub variant: Option<Variant>,
    pub metric: Metric,
    pub compare: Comparison,
    pub threshold: f64,
    /// Consecutive measured seconds it must hold for before it trips.
    pub seconds: u32,
}

/// As a reader would write it: `error_rate > 0.5 for 3 s`, `oversold_units > 0 for 1 s in defended`.
impl std::fmt::Display for AbortCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} for {} s",
            self.metric,
            self.compare.symbol(),
            self.threshold,
            self.seconds
        )?;
        match self.variant {
            Some(variant) => write!(f, " in {variant}"),
            None => Ok(()),
        }
    }
}

/// Whether a stop condition can watch `metric`: it must be measured every second (the end-of-run
/// figures and per-phase peaks are not), or be `oversold_units`, which a tripwire that needs it has
/// counted live each second.
pub fn watchable(metric: Metric) -> bool {
    metric == Metric::OversoldUnits || metric.every_second()
}

/// A tripped stop condition: where and when the run stopped, and why. Saved in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Abort {
    pub condition: String,
    pub variant: Variant,
    pub phase: String,
    /// The second of the time series it tripped at.
    pub at_s: f64,
    /// The metric's value in that second.
    pub observed: f64,
}

/// `error_rate > 0.5 for 3 s tripped at 12 s (phase fault): observed 0.93`.
impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tripped at {:.0} s (phase {}): observed {}",
            self.condition,
            self.at_s,
            self.phase,
            (self.observed * 1000.0).round() / 1000.0
        )
    }
}

/// The stop conditions of one variant, with how many seconds in a row each has held.
#[derive(Debug, Clone)]
pub struct Tripwire {
    conditions: Vec<AbortCondition>,
    streaks: Vec<u32>,
}

impl Tripwire {
    pub fn new(conditions: &[AbortCondition], variant: Variant) -> Self {
        let conditions: Vec<AbortCondition> = conditions
            .iter()
            .filter(|c| c.variant.is_none_or(|v| v == variant))
            .cloned()
            .collect();
        Self {
            streaks: vec![0; conditions.len()],
            conditions,
        }
    }

    /// Whether a condition watches `metric` (the runner only counts oversold units live if one does).
    pub fn watches(&self, metric: Metric) -> bool {
        self.conditions.iter().any(|c| c.metric == metric)
    }

    /// One second's figures: the first condition that has now held for its seconds, with the value
    /// that tripped it. A second without a measurement of the metric (no request completed) neither
    /// counts nor breaks the streak: a service too slow to answer at all must not reset it.
    pub fn second(&mut self, values: &BTreeMap<Metric, f64>) -> Option<(&AbortCondition, f64)> {
        let mut tripped = None;
        for (condition, streak) in self.conditions.iter().zip(&mut self.streaks) {
            let Some(&value) = values.get(&condition.metric) else {
                continue;
            };
            if condition.compare.holds(value, condition.threshold, 0.0) {
                *streak += 1;
            } else {
                *streak = 0;
            }
            if tripped.is_none() && *streak >= condition.seconds {
                tripped = Some((condition, value));
            }
        }
        tripped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_above_half_for_3s(variant: Option<Variant>) -> AbortCondition {
        AbortCondition {
            variant,
            metric: Metric::ErrorRate,
            compare: Comparison::Greater,
            threshold: 0.5,
            seconds: 3,
        }
    }

    #[test]
    fn trips_after_its_seconds_in_a_row_and_a_good_second_starts_again() {
        let mut wire = Tripwire::new(&[errors_above_half_for_3s(None)], Variant::Defended);
        let second = |rate: f64| BTreeMap::from([(Metric::ErrorRate, rate)]);
        assert!(wire.second(&second(0.9)).is_none());
        assert!(wire.second(&second(0.9)).is_none());
        assert!(
            wire.second(&second(0.1)).is_none(),
            "a good second resets the streak"
        );
        assert!(wire.second(&second(0.9)).is_none());
        assert!(
            wire.second(&BTreeMap::new()).is_none(),
            "no measurement: no count"
        );
        assert!(wire.second(&second(0.6)).is_none());
        let (condition, value) = wire.second(&second(0.7)).expect("three seconds in a row");
        assert_eq!(
            (condition.to_string(), value),
            ("error_rate > 0.5 for 3 s".into(), 0.7)
        );
    }

    #[test]
    fn a_condition_for_one_variant_does_not_watch_the_other() {
        let only_defended = [errors_above_half_for_3s(Some(Variant::Defended))];
        let mut wire = Tripwire::new(&only_defended, Variant::Vulnerable);
        assert!(!wire.watches(Metric::ErrorRate));
        let bad = BTreeMap::from([(Metric::ErrorRate, 1.0)]);
        assert!((0..10).all(|_| wire.second(&bad).is_none()));
        assert_eq!(
            only_defended[0].to_string(),
            "error_rate > 0.5 for 3 s in defended"
        );
    }

    #[test]
    fn end_of_run_figures_cannot_be_watched_live() {
        assert!(watchable(Metric::P99Ms) && watchable(Metric::OversoldUnits));
        assert!(!watchable(Metric::LostAcknowledgedOrders) && !watchable(Metric::PgStatementsPeak));
    }
}
