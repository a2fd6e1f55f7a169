//! How a prediction is written: an observation held against a threshold, and the claim as a reader
//! would write it (`p95_ms in fault / baseline >= 3`).

use serde::{Deserialize, Serialize};

use crate::vocabulary::Metric;

/// How an observation is held against a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "==")]
    Equal,
    /// Within `tolerance` (a fraction) of the threshold, either side: for figures predicted from a model.
    #[serde(rename = "within")]
    Within,
}

impl Comparison {
    /// Whether `observed` satisfies the comparison; `tolerance` only matters for `Within`.
    pub fn holds(self, observed: f64, threshold: f64, tolerance: f64) -> bool {
        match self {
            Self::Within => (observed - threshold).abs() <= tolerance * threshold.abs(),
            Self::Less => observed < threshold,
            Self::AtMost => observed <= threshold,
            Self::Greater => observed > threshold,
            Self::AtLeast => observed >= threshold,
            Self::Equal => (observed - threshold).abs() <= f64::EPSILON.max(threshold.abs() * 1e-9),
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Self::Less => "<",
            Self::AtMost => "<=",
            Self::Greater => ">",
            Self::AtLeast => ">=",
            Self::Equal => "==",
            Self::Within => "within",
        }
    }
}

/// What a prediction says will be observed: `metric in phase` (over `metric in over`), compared with
/// `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub metric: Metric,
    pub phase: String,
    /// When set, the claim is about `metric in phase / metric in over`.
    pub over: Option<String>,
    pub compare: Comparison,
    pub threshold: f64,
    /// For `within`: the allowed distance from the threshold, as a fraction of it.
    pub tolerance: Option<f64>,
}

impl Claim {
    /// Whether `observed` bears the claim out.
    pub fn holds(&self, observed: f64) -> bool {
        self.compare
            .holds(observed, self.threshold, self.tolerance.unwrap_or(0.0))
    }

    /// Whether a count of things gone wrong can bear the claim out with something gone wrong: it
    /// says the thing breaks (`> 0`) or bounds how often (`<= 20`), rather than that it never does
    /// (`== 0`). Such a claim judges the invariant that counts them in its place.
    pub fn allows_a_breakage(&self) -> bool {
        !self.holds(0.0) || self.holds(1.0)
    }
}

/// As a reader would write it: `p95_ms in fault / baseline >= 3`, `orders_per_s in far within 30% of 22.2`.
impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            metric,
            phase,
            threshold,
            ..
        } = self;
        let over = self.over.as_ref().map(|o| format!(" / {o}")).unwrap_or_default();
        match (self.compare, self.tolerance) {
            (Comparison::Within, Some(t)) => write!(
                f,
                "{metric} in {phase}{over} within {:.0}% of {threshold}",
                t * 100.0
            ),
            (compare, _) => write!(f, "{metric} in {phase}{over} {} {threshold}", compare.symbol()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_hold_as_written() {
        assert!(Comparison::AtLeast.holds(3.0, 3.0, 0.0));
        assert!(!Comparison::Less.holds(3.0, 3.0, 0.0));
        assert!(Comparison::Equal.holds(5.0, 5.0, 0.0));
        assert!(!Comparison::Equal.holds(5.0, 5.1, 0.0));
        assert!(Comparison::Within.holds(25.0, 28.6, 0.3));
        assert!(!Comparison::Within.holds(18.0, 28.6, 0.3));
    }

    #[test]
    fn claims_read_as_a_reader_writes_them() {
        let claim = Claim {
            metric: Metric::OrdersPerS,
            phase: "far".into(),
            over: None,
            compare: Comparison::Within,
            threshold: 22.2,
            tolerance: Some(0.3),
        };
        assert_eq!(claim.to_string(), "orders_per_s in far within 30% of 22.2");
        assert!(claim.holds(25.0) && !claim.holds(12.0));
        let ratio = Claim {
            metric: Metric::P95Ms,
            phase: "fault".into(),
            over: Some("baseline".into()),
            compare: Comparison::AtLeast,
            threshold: 3.0,
            tolerance: None,
        };
        assert_eq!(ratio.to_string(), "p95_ms in fault / baseline >= 3");
    }

    #[test]
    fn a_claim_that_breaks_or_bounds_the_breakage_allows_one_and_never_does_not() {
        let claim = |compare, threshold| Claim {
            metric: Metric::EmailsWithoutOrder,
            phase: "run".into(),
            over: None,
            compare,
            threshold,
            tolerance: None,
        };
        assert!(claim(Comparison::Greater, 0.0).allows_a_breakage());
        assert!(claim(Comparison::AtLeast, 8.0).allows_a_breakage());
        assert!(claim(Comparison::AtMost, 20.0).allows_a_breakage());
        assert!(!claim(Comparison::Equal, 0.0).allows_a_breakage());
        assert!(!claim(Comparison::Less, 1.0).allows_a_breakage());
    }
}
