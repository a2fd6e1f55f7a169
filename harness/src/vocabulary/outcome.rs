//! How a prediction came out.

use serde::{Deserialize, Serialize};

/// The verdict on one prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// What was predicted happened.
    Confirmed,
    /// It did not.
    Refuted,
    /// It could not be judged (the fault never touched traffic, the load fell short, nothing was
    /// measured): `reason` says which.
    Inconclusive { reason: String },
    /// The run was stopped by a stop condition before the prediction could be judged: `reason` says
    /// which condition tripped, when and where.
    Aborted { reason: String },
}

impl Outcome {
    /// `confirmed`, `refuted`, `inconclusive` or `aborted`: the outcome's name in files and page styles.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Refuted => "refuted",
            Self::Inconclusive { .. } => "inconclusive",
            Self::Aborted { .. } => "aborted",
        }
    }

    pub fn confirmed(&self) -> bool {
        *self == Self::Confirmed
    }
}

/// As every report shows it: the word, in capitals when it failed, with the reason it could not be
/// judged (`confirmed`, `REFUTED`, `INCONCLUSIVE: no measurement of p95_ms in fault`).
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Confirmed => f.write_str("confirmed"),
            Self::Refuted => f.write_str("REFUTED"),
            Self::Inconclusive { reason } => write!(f, "INCONCLUSIVE: {reason}"),
            Self::Aborted { reason } => write!(f, "ABORTED: {reason}"),
        }
    }
}
