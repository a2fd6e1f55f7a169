//! An experiment file as written, before validation: the serde shape of `experiments/*.toml`.
//! Fields that validation checks carry their position in the file (`Spanned`), so an error can name
//! the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::claim::Comparison;
use super::definition::Arrangement;
use crate::vocabulary::Start;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) name: Spanned<String>,
    pub(super) story: String,
    #[serde(default)]
    pub(super) topology: Topology,
    #[serde(default)]
    pub(super) seed: Option<Spanned<toml::Table>>,
    pub(super) load: LoadFile,
    #[serde(default)]
    pub(super) profiles: Option<ProfilesFile>,
    pub(super) phases: Spanned<Vec<PhaseFile>>,
    pub(super) variants: Spanned<BTreeMap<String, VariantFile>>,
    #[serde(default)]
    pub(super) predictions: Vec<PredictionFile>,
    #[serde(default)]
    pub(super) abort: Vec<AbortFile>,
    /// How `fortress capacity` searches this experiment's load (`[capacity]`).
    #[serde(default)]
    pub(super) capacity: Option<Spanned<CapacityFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Topology {
    pub(super) replicas: Spanned<u32>,
    pub(super) pool_size: Spanned<u32>,
    /// HAProxy in front of the replicas; by default there is one when there is more than one replica.
    pub(super) balancer: Option<bool>,
    /// Pin each client to a replica with the balancer's cookie.
    pub(super) sticky: Option<Spanned<bool>>,
    /// A mail server (Postfix) the outbox sends confirmations to, through the proxy's `mail` link.
    pub(super) mail: bool,
    /// A payment provider checkouts authorise with, through the proxy's `payments` link.
    pub(super) payments: bool,
    /// The variants side by side (the default without stop conditions) or in turn.
    pub(super) variants: Option<Spanned<Arrangement>>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            replicas: Spanned::new(0..0, 1),
            pool_size: Spanned::new(0..0, 10),
            balancer: None,
            sticky: None,
            mail: false,
            payments: false,
            variants: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoadFile {
    pub(super) rate: Spanned<f64>,
    pub(super) users: Spanned<u32>,
    pub(super) mix: Spanned<BTreeMap<String, u32>>,
    /// When the users begin their scenarios' own requests (staggered unless it says).
    #[serde(default)]
    pub(super) start: Option<Start>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfilesFile {
    pub(super) quick: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PhaseFile {
    pub(super) name: Spanned<String>,
    pub(super) seconds: Spanned<f64>,
    #[serde(default)]
    pub(super) faults: Vec<Spanned<FaultFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum FaultFile {
    Kill {
        target: String,
        count: Option<u32>,
    },
    Stop {
        target: String,
        count: Option<u32>,
    },
    Pause {
        target: String,
        count: Option<u32>,
    },
    Modes {
        modes: toml::Table,
    },
    DropIndex {
        index: String,
    },
    ExpireCache,
    RollingRestart,
    ReplayDeadLetters,
    Latency {
        link: String,
        ms: f64,
        jitter_ms: Option<f64>,
        fraction: Option<f64>,
    },
    Bandwidth {
        link: String,
        bytes_per_second: u64,
        fraction: Option<f64>,
    },
    Blackhole {
        link: String,
        fraction: Option<f64>,
    },
    Reset {
        link: String,
        fraction: Option<f64>,
    },
    Down {
        link: String,
        fraction: Option<f64>,
    },
    HttpStatus {
        link: String,
        status: u16,
        fraction: Option<f64>,
    },
    HttpDelay {
        link: String,
        ms: f64,
        fraction: Option<f64>,
    },
    HttpLostReply {
        link: String,
        status: u16,
        fraction: Option<f64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VariantFile {
    pub(super) modes: Spanned<toml::Table>,
    /// Overrides `topology.sticky` for this variant.
    pub(super) sticky: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PredictionFile {
    pub(super) variant: Spanned<String>,
    pub(super) metric: Spanned<String>,
    pub(super) phase: Spanned<String>,
    pub(super) over: Option<Spanned<String>>,
    pub(super) compare: Spanned<Comparison>,
    pub(super) threshold: Spanned<f64>,
    pub(super) tolerance: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) why: String,
    /// What the run must show for the prediction to be judged at all (`[[predictions.requires]]`):
    /// the power to see what it says is absent.
    #[serde(default)]
    pub(super) requires: Vec<RequirementFile>,
    /// The models this prediction replaced, oldest first (`[[predictions.revised]]`).
    #[serde(default)]
    pub(super) revised: Vec<RevisionFile>,
}

/// A claim the run must bear out before a prediction is judged, written like a prediction's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequirementFile {
    pub(super) metric: Spanned<String>,
    pub(super) phase: Spanned<String>,
    pub(super) over: Option<Spanned<String>>,
    pub(super) compare: Spanned<Comparison>,
    pub(super) threshold: Spanned<f64>,
    pub(super) tolerance: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) why: String,
}

/// A model a prediction replaced: what it said, what refuted it, and why the one after holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevisionFile {
    pub(super) was: Spanned<String>,
    pub(super) refuted_by: Spanned<String>,
    pub(super) because: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AbortFile {
    pub(super) variant: Option<Spanned<String>>,
    pub(super) metric: Spanned<String>,
    pub(super) compare: Spanned<Comparison>,
    pub(super) threshold: Spanned<f64>,
    pub(super) seconds: Option<Spanned<u32>>,
}

/// `[capacity]`: the objective a rate must hold, the phase whose faults are "the fault", and how the
/// search steps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapacityFile {
    pub(super) fault_phase: Spanned<String>,
    pub(super) p99_ms: Spanned<f64>,
    pub(super) error_rate: Option<Spanned<f64>>,
    pub(super) from: Option<Spanned<f64>>,
    pub(super) max_rate: Option<Spanned<f64>>,
    pub(super) resolution: Option<Spanned<f64>>,
    pub(super) step_seconds: Option<Spanned<f64>>,
    pub(super) warmup_seconds: Option<Spanned<f64>>,
    pub(super) repeats: Option<Spanned<u32>>,
    pub(super) service_cpus: Option<Spanned<f64>>,
    /// pgbench runs the checkout's transaction after the searches (a load of checkouts only).
    pub(super) anchor: Option<Spanned<bool>>,
    /// The request group the objective is judged on (every request by default).
    pub(super) group: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) predictions: Vec<CapacityPredictionFile>,
}

/// `[[capacity.predictions]]`: a figure of the search, held against a threshold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapacityPredictionFile {
    pub(super) variant: Spanned<String>,
    pub(super) figure: Spanned<String>,
    pub(super) compare: Spanned<Comparison>,
    pub(super) threshold: Spanned<f64>,
    pub(super) tolerance: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) why: String,
    #[serde(default)]
    pub(super) revised: Vec<RevisionFile>,
}

/// An experiment against a user's target (a file with `target = "compose.yaml"`): the same phases,
/// faults and predictions, with the load as requests, the variants as environment overrides and the
/// invariants and end-of-run figures as SQL on the target's own databases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetExperimentFile {
    pub(super) name: Spanned<String>,
    pub(super) story: String,
    /// The Compose file, relative to this file.
    pub(super) target: Spanned<String>,
    /// Compose override files merged over it for every variant, in order (relative to this file),
    /// before a variant's own.
    #[serde(default)]
    pub(super) compose: Option<Spanned<Vec<String>>>,
    pub(super) load: TargetLoadFile,
    #[serde(default)]
    pub(super) profiles: Option<ProfilesFile>,
    /// Environment overrides for every variant, per service.
    #[serde(default)]
    pub(super) environment: Option<Spanned<Overrides>>,
    pub(super) phases: Spanned<Vec<PhaseFile>>,
    pub(super) variants: Spanned<BTreeMap<String, TargetVariantFile>>,
    #[serde(default)]
    pub(super) invariants: Vec<Spanned<InvariantFile>>,
    /// End-of-run figures (`units_sold`, `oversold_units`...) computed by SQL.
    #[serde(default)]
    pub(super) figures: BTreeMap<String, Spanned<SqlFigureFile>>,
    /// How to find what the requests' answers acknowledged: SQL answering those of the ids in `$1`
    /// (a `text[]`) that the database has.
    #[serde(default)]
    pub(super) acknowledged: Option<Spanned<AcknowledgedFile>>,
    #[serde(default)]
    pub(super) predictions: Vec<PredictionFile>,
    /// Stop conditions on the client's per-second figures.
    #[serde(default)]
    pub(super) abort: Vec<AbortFile>,
}

/// Per service, variables to set (or replace) in its environment.
pub(super) type Overrides = BTreeMap<String, BTreeMap<String, String>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetLoadFile {
    pub(super) rate: Spanned<f64>,
    pub(super) users: Spanned<u32>,
    /// What each user sends once, before its first request: a login whose answer's values
    /// (`capture`) the requests use.
    #[serde(default)]
    pub(super) start: Option<Spanned<RequestFile>>,
    pub(super) requests: Spanned<Vec<Spanned<RequestFile>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestFile {
    pub(super) group: Spanned<String>,
    pub(super) method: Spanned<String>,
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) body: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) weight: Option<Spanned<u32>>,
    pub(super) ok: Spanned<Vec<u16>>,
    #[serde(default)]
    pub(super) expected: Vec<u16>,
    #[serde(default)]
    pub(super) expected_contains: Option<String>,
    /// Which answers acknowledge something the target must keep, and where its id is.
    #[serde(default)]
    pub(super) acknowledges: Option<Spanned<AcknowledgesFile>>,
    /// Values to keep from an ok answer, by name and JSON pointer (`[load.start]` only).
    #[serde(default)]
    pub(super) capture: Option<Spanned<BTreeMap<String, String>>>,
}

/// `acknowledges = { status = 201, id = "/code" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AcknowledgesFile {
    pub(super) status: u16,
    pub(super) id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetVariantFile {
    #[serde(default)]
    pub(super) environment: Option<Spanned<Overrides>>,
    /// Per service, an image present in the local Docker to run instead of the Compose file's.
    #[serde(default)]
    pub(super) images: Option<Spanned<BTreeMap<String, String>>>,
    /// Compose override files merged over the target's, in order (relative to this file).
    #[serde(default)]
    pub(super) compose: Option<Spanned<Vec<String>>>,
}

/// `[[invariants]]`: a query whose rows are the violations, or a request whose answer must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InvariantFile {
    pub(super) name: String,
    /// A query on this database whose rows are the violations...
    #[serde(default)]
    pub(super) database: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) sql: Option<String>,
    /// ...or a request to the entry whose answer must match.
    #[serde(default)]
    pub(super) http: Option<Spanned<HttpCheckFile>>,
    /// The metric (one of `[figures]`) that counts its violations: a variant that predicts them
    /// judges the invariant by that prediction.
    #[serde(default)]
    pub(super) counted_by: Option<Spanned<String>>,
}

/// `http = { path = "/healthz", status = [200], contains = "ok" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpCheckFile {
    #[serde(default)]
    pub(super) method: Option<Spanned<String>>,
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) status: Option<Spanned<Vec<u16>>>,
    #[serde(default)]
    pub(super) contains: Option<String>,
}

/// `[acknowledged]`: a query (`database`, `sql`) or a request per id (`http`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AcknowledgedFile {
    #[serde(default)]
    pub(super) database: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) sql: Option<String>,
    #[serde(default)]
    pub(super) http: Option<Spanned<HttpLookupFile>>,
}

/// `http = { path = "/orders/{{id}}", found = [200], missing = [404] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpLookupFile {
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) found: Option<Spanned<Vec<u16>>>,
    #[serde(default)]
    pub(super) missing: Option<Spanned<Vec<u16>>>,
}

/// `[figures.<metric>]`: a query answering one number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SqlFigureFile {
    pub(super) database: Spanned<String>,
    pub(super) sql: String,
}
