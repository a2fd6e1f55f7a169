//! An experiment file (`experiments/*.toml`), parsed into a validated `Plan`.
//!
//! Every mistake in a file is reported as `file:line: field: what is wrong and what is allowed`, before
//! any container starts. The schema, by example, is `experiments/cache-outage.toml`.

use reference_service::seed::SeedPlan;
use serde::Serialize;

mod validate;

pub use validate::parse;

use super::metric::{Comparison, Metric};
use crate::faults::Fault;

/// A mistake in an experiment file, located.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct DefinitionError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// What the virtual users do; weights in `load.mix` say how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Product list and product pages.
    Browse,
    /// Stock levels of products.
    Availability,
    /// Log in, then buy.
    Checkout,
    /// The user's order history.
    History,
}

impl Scenario {
    const NAMES: &'static str = "browse, availability, checkout, history";

    fn parse(s: &str) -> Option<Self> {
        match s {
            "browse" => Some(Self::Browse),
            "availability" => Some(Self::Availability),
            "checkout" => Some(Self::Checkout),
            "history" => Some(Self::History),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Phases shortened by the file's `profiles.quick` factor (CI), to whole seconds (at least 1), so
    /// that phase boundaries fall on the once-a-second samples.
    Quick,
    /// Phases as written.
    Standard,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    pub story: String,
    /// Where the definition came from (a path, or `built-in`).
    pub source: String,
    pub profile: Profile,
    pub replicas: u32,
    pub pool_size: u32,
    pub seed: SeedPlan,
    pub rate: f64,
    pub users: u32,
    pub mix: Vec<(Scenario, u32)>,
    pub phases: Vec<PhasePlan>,
    pub variants: Vec<VariantPlan>,
    pub predictions: Vec<PredictionPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhasePlan {
    pub name: String,
    pub seconds: f64,
    #[serde(serialize_with = "faults_as_text")]
    pub faults: Vec<Fault>,
}

impl PhasePlan {
    /// The phase's faults as one line of text (`kill redis, latency 20ms on the postgres link`).
    pub fn faults_text(&self) -> String {
        let faults: Vec<String> = self.faults.iter().map(ToString::to_string).collect();
        faults.join(", ")
    }
}

fn faults_as_text<S: serde::Serializer>(faults: &[Fault], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(faults.iter().map(ToString::to_string))
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantPlan {
    pub name: String,
    /// The `PUT /admin/modes` body that makes this variant.
    pub modes: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct PredictionPlan {
    pub variant: String,
    pub metric: Metric,
    pub phase: String,
    /// When set, the prediction is about `metric in phase / metric in over`.
    pub over: Option<String>,
    pub compare: Comparison,
    pub threshold: f64,
    /// For `within`: the allowed distance from the threshold, as a fraction of it.
    pub tolerance: Option<f64>,
    pub why: String,
}

impl PredictionPlan {
    pub fn claim(&self) -> String {
        super::metric::claim(
            self.metric,
            &self.phase,
            self.over.as_deref(),
            self.compare,
            self.threshold,
            self.tolerance,
        )
    }
}

impl Plan {
    pub fn run_seconds(&self) -> f64 {
        self.phases.iter().map(|p| p.seconds).sum()
    }
}

/// The whole-run pseudo-phase, for end-of-run figures such as `oversold_units`.
pub const RUN_PHASE: &str = "run";
