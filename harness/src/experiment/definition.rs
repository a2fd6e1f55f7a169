//! An experiment file (`experiments/*.toml`), parsed into a validated `Plan`.
//!
//! Every mistake in a file is reported as `file:line: field: what is wrong and what is allowed`, before
//! any container starts. The schema, by example, is `experiments/cache-outage.toml`.

use reference_service::modes::ModesPatch;
use reference_service::seed::SeedPlan;
use serde::{Deserialize, Serialize};

mod validate;

pub use validate::parse;

use super::abort::AbortCondition;
use super::claim::Claim;
use crate::env::Balancing;
use crate::faults::Fault;
use crate::vocabulary::{CapacityFigure, Condition, Metric, Scenario, Start, Variant};

/// A mistake in an experiment file, located.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct DefinitionError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Phases shortened by the file's `profiles.quick` factor (CI), to whole seconds (at least 1), so
    /// that phase boundaries fall on the once-a-second samples.
    Quick,
    /// Phases as written.
    Standard,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Quick => "quick",
            Self::Standard => "standard",
        })
    }
}

/// How an experiment's variants share the machine (`topology.variants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrangement {
    /// Each variant on its own lab, at the same time: the same machine noise at the same instant, and
    /// half the wall time.
    #[default]
    SideBySide,
    /// One variant after the other: for stories that need the cores to themselves (a timing
    /// measurement, a CPU-bound scan), where the other variant's load would be in the figures.
    InTurn,
}

impl std::fmt::Display for Arrangement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SideBySide => "side by side",
            Self::InTurn => "in turn",
        })
    }
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
    /// Whether the lab has a mail server (`topology.mail`).
    pub mail: bool,
    /// Whether the lab has a payment provider (`topology.payments`).
    pub payments: bool,
    /// Whether the variants run side by side or in turn (`topology.variants`).
    pub arrangement: Arrangement,
    pub seed: SeedPlan,
    pub rate: f64,
    pub users: u32,
    pub mix: Vec<(Scenario, u32)>,
    /// When the users begin their scenarios' own requests (`load.start`).
    pub start: Start,
    pub phases: Vec<PhasePlan>,
    /// Vulnerable first.
    pub variants: Vec<VariantPlan>,
    pub predictions: Vec<PredictionPlan>,
    /// Stop conditions (`[[abort]]`): when one trips, the run stops there.
    pub aborts: Vec<AbortCondition>,
    /// How `fortress capacity` searches this experiment's load (`[capacity]`), if it says.
    pub capacity: Option<CapacityPlan>,
    /// A user's target, when the experiment runs against one (`target = "compose.yaml"`) instead of
    /// the reference lab: then the seed, the mix and the modes above are unused.
    #[serde(skip)]
    pub target: Option<std::sync::Arc<TargetPlan>>,
}

/// What an experiment against a user's target has in place of the reference lab's seed, mix and
/// modes: the Compose file, the load as requests, each variant's environment, and the invariants and
/// end-of-run figures as SQL on the target's own databases.
#[derive(Debug, Clone)]
pub struct TargetPlan {
    pub target: crate::env::target::Target,
    pub script: crate::load::Script,
    /// Per variant, per service, the environment set on top of the Compose file's (the file's
    /// shared `[environment]` and the variant's own, merged).
    pub environment: std::collections::BTreeMap<Variant, Overrides>,
    /// Per variant, per service, the image run instead of the Compose file's.
    pub images: std::collections::BTreeMap<Variant, std::collections::BTreeMap<String, String>>,
    /// Per variant with override files (`compose = [...]`), the Compose file they make merged.
    pub targets: std::collections::BTreeMap<Variant, crate::env::target::Target>,
    pub invariants: Vec<TargetInvariant>,
    pub figures: Vec<SqlFigure>,
    /// How to find what the answers acknowledged (`[acknowledged]`), when a request acknowledges.
    pub acknowledged: Option<Lookup>,
}

/// How the acknowledged ids are found after the run: one query for all of them, or a request each.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Sql(SqlLookup),
    Http(HttpLookup),
}

/// A query on a target's database answering which of the ids bound to `$1` (a `text[]`) it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlLookup {
    pub database: String,
    pub sql: String,
}

/// A GET on the target's entry per acknowledged id (`{{id}}` in its path): a status of `found`
/// means the target has it, one of `missing` that it lost it; anything else, asked again, leaves it
/// unknown and the run unjudged.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLookup {
    pub path: crate::load::script::Template,
    pub headers: Vec<(String, crate::load::script::Template)>,
    pub found: Vec<u16>,
    pub missing: Vec<u16>,
}

/// An invariant of a user's target, checked after the run: its `counted_by` figure, when a
/// variant predicts violations, judges it in its place.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInvariant {
    pub name: String,
    pub check: InvariantCheck,
    pub counted_by: Option<crate::vocabulary::Metric>,
}

/// How a target's invariant is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum InvariantCheck {
    /// A query on one of its databases whose rows are the violations.
    Sql { database: String, sql: String },
    /// A request to its entry, whose answer must have one of the statuses (and the text).
    Http(HttpCheck),
}

/// A request to the target's entry after the run: it holds when the answer's status is one of
/// `status` and its body contains `contains`, if given.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub method: crate::load::script::Method,
    pub path: crate::load::script::Template,
    pub headers: Vec<(String, crate::load::script::Template)>,
    pub status: Vec<u16>,
    pub contains: Option<String>,
}

/// Per service, environment variables.
pub type Overrides = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// A query on a target's database answering one end-of-run figure.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFigure {
    pub metric: crate::vocabulary::Metric,
    pub database: String,
    pub sql: String,
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
    pub variant: Variant,
    /// What makes this variant: the modes set on every replica before the load starts.
    pub modes: ModesPatch,
    /// HAProxy in front of the replicas, and how it balances; `None`: the load goes to replica 1.
    pub balancer: Option<Balancing>,
    /// The defences switched off for this run (`--without`), as `mode = value`; empty as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PredictionPlan {
    pub variant: Variant,
    #[serde(flatten)]
    pub claim: Claim,
    pub why: String,
    /// What the run must show before the claim is judged; unmet, the verdict is inconclusive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Requirement>,
    /// The models the claim replaced, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<Revision>,
}

/// A claim the run must bear out for a prediction to be judged: the power to see the effect the
/// prediction says is absent (`timing_detectable_ms in run <= 5` before "no leak").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requirement {
    #[serde(flatten)]
    pub claim: Claim,
    pub why: String,
}

/// A model a prediction replaced after a run refuted it: the file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revision {
    /// The claim as it was written then.
    pub was: String,
    /// The observation that refuted it.
    pub refuted_by: String,
    /// Why the model after it holds.
    pub because: String,
}

impl Plan {
    pub fn run_seconds(&self) -> f64 {
        self.phases.iter().map(|p| p.seconds).sum()
    }

    /// The predictions about one variant.
    pub fn predictions_of(&self, variant: Variant) -> impl Iterator<Item = &PredictionPlan> {
        self.predictions.iter().filter(move |p| p.variant == variant)
    }
}

/// The whole-run pseudo-phase, for end-of-run figures such as `oversold_units`.
pub const RUN_PHASE: &str = "run";

/// How `fortress capacity` searches an experiment (`[capacity]`): per variant, the highest arrival
/// rate that holds the objective, steady and again with the fault phase's faults injected.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityPlan {
    /// The phase whose faults are "the fault" (`fault_phase`).
    pub fault_phase: String,
    #[serde(serialize_with = "faults_as_text")]
    pub faults: Vec<Fault>,
    pub objective: Objective,
    /// The first rate tried (requests/s): the file's `from`, or its load's rate.
    pub from: f64,
    /// No rate above it is tried: a search that holds there says capacity is at least this.
    pub max_rate: f64,
    /// The search ends when the bracket around the knee is this narrow (0.1: within 10%).
    pub resolution: f64,
    /// How long each rate is held, and how much of its start is not judged (the queue settling).
    pub step_seconds: f64,
    pub warmup_seconds: f64,
    /// How many times a rate near the knee is tried: the majority decides.
    pub repeats: u32,
    /// The CPUs each service replica may use during the search (Docker's `--cpus`), when the file
    /// caps them: a knee the service reaches before the load generator beside it runs out of cores.
    pub service_cpus: Option<f64>,
    /// Whether each variant's searches end with pgbench running the checkout's transaction on the
    /// lab's Postgres (`anchor`), to set the steady capacity against what the database allows.
    pub anchor: bool,
    pub predictions: Vec<CapacityPrediction>,
}

impl CapacityPlan {
    /// How the search steps, in a line: `steps of 5 s (3 s warm-up) from 150/s up to 2400/s, ...`.
    pub fn steps_text(&self) -> String {
        let cpus = (self.service_cpus).map_or_else(String::new, |cpus| format!(", {cpus} CPUs a replica"));
        format!(
            "steps of {} s ({} s warm-up not judged) from {}/s up to {}/s, bracket within {:.0}%, repeats near the knee: {}{cpus}",
            self.step_seconds,
            self.warmup_seconds,
            self.from,
            self.max_rate,
            self.resolution * 100.0,
            self.repeats
        )
    }
}

/// What a rate must hold in the steady part of its step, from the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Objective {
    /// p99 latency from the intended send, at or under this.
    pub p99_ms: f64,
    /// Errors (5xx, timeouts, refused) over requests, at or under this.
    pub error_rate: f64,
    /// The request group both are judged on (`browse`: the pages a slow checkout must not slow);
    /// `None`: every request.
    pub group: Option<crate::load::Group>,
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p99 <= {} ms from the intended send, errors <= {}%",
            self.p99_ms,
            self.error_rate * 100.0
        )?;
        match self.group {
            Some(group) => write!(f, ", of the {group} requests"),
            None => Ok(()),
        }
    }
}

/// What a capacity prediction claims (its `figure`): a figure the searches find, or how many times
/// an invariant broke over every step's orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CapacityClaim {
    Figure(CapacityFigure),
    /// A metric that counts an invariant's violations (`charges_without_order`): the variant is
    /// predicted to break that invariant under load it cannot carry, and the prediction judges it.
    Violations(Metric),
}

impl CapacityClaim {
    /// The searches the claim needs: a figure's own; a count of violations none (it counts the
    /// orders of whichever searches ran).
    pub fn needs(self) -> &'static [Condition] {
        match self {
            Self::Figure(figure) => figure.needs(),
            Self::Violations(_) => &[],
        }
    }
}

impl std::fmt::Display for CapacityClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Figure(figure) => figure.fmt(f),
            Self::Violations(metric) => metric.fmt(f),
        }
    }
}

/// A figure of a capacity search, predicted before the run.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityPrediction {
    pub variant: Variant,
    /// What it claims, named `figure` as in the file: a figure of the searches or a count.
    pub figure: CapacityClaim,
    pub compare: super::claim::Comparison,
    pub threshold: f64,
    pub tolerance: Option<f64>,
    pub why: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<Revision>,
}

impl CapacityPrediction {
    pub fn holds(&self, observed: f64) -> bool {
        (self.compare).holds(observed, self.threshold, self.tolerance.unwrap_or(0.0))
    }

    /// Whether a count of violations this claims may be above 0 (`>= 1`, `<= 20`): the prediction
    /// then judges the invariant in its place. One that says it holds (`== 0`) leaves it an invariant.
    pub fn allows_a_breakage(&self) -> bool {
        !self.holds(0.0) || self.holds(1.0)
    }
}

/// `capacity_kept >= 0.5`, `capacity_under_fault within 10% of 22.2`.
impl std::fmt::Display for CapacityPrediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tolerance {
            Some(t) => write!(
                f,
                "{} within {:.0}% of {}",
                self.figure,
                t * 100.0,
                self.threshold
            ),
            None => write!(f, "{} {} {}", self.figure, self.compare.symbol(), self.threshold),
        }
    }
}
