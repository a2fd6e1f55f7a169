//! The `fortress` command line (clap definitions only; `main.rs` dispatches).

use clap::{Args, Parser, Subcommand};

use crate::vocabulary::{ExitCode, Variant};

const EXAMPLES: &str = "\
Examples:
  fortress doctor                 check Docker, images and ports, and say how to fix what is missing
  fortress env up                 start Postgres, Redis and the service; print URLs; Ctrl-C removes it all
  fortress env up --replicas 3    three service replicas behind HAProxy (round robin)
  fortress env up --replicas 3 --sticky   the same, each client pinned to a replica by a cookie
  fortress cleanup                remove containers and networks left by runs that were killed
  fortress experiment cache-outage                      both variants, standard profile
  fortress experiment flash-sale --variant defended --profile quick
  fortress experiment cache-outage --variant defended --without cache_failure --profile quick
                                  the defended variant with its defence switched off: its predictions
                                  should be refuted, or the defence is not what holds them
  fortress experiment cache-outage --prometheus http://127.0.0.1:9090/api/v1/write
                                  then write its figures and fault windows to Prometheus (remote write)
  fortress experiment cache-outage --live 127.0.0.1:8089
                                  watch it at http://127.0.0.1:8089/ while it runs
  fortress capacity db-latency --variant defended --condition fault --profile quick
                                  the highest checkout rate the defended variant holds with Postgres
                                  20 ms away (its [capacity] objective), and its knee chart
  fortress capacity cache-outage  both variants, steady and under the fault: capacity kept
  fortress explore crash-after-ack --without durability --profile quick
                                  search the lab's faults for one that breaks an invariant of the
                                  defended variant with its durability switched off; each schedule
                                  found is shrunk and written as found-<n>.toml, which replays it
  fortress list                   the built-in experiments
  fortress plan cache-outage      check an experiment and print its phases, faults and predictions
  fortress plan my-experiment.toml --profile quick
  fortress report reports/cache-outage-20261125T172705Z
                                  draw that run's charts and report.html again from its saved data
  fortress gate --junit reports/gate.xml
                                  the CI gate: ci/gates.toml's experiments, quick profile, against ci/baselines/
  fortress gate --update-baseline after an intended change: rewrite ci/baselines/ from this run
  fortress compare reports/cache-outage-20261125T172705Z reports/cache-outage-20261126T090000Z
                                  the key figures of two runs side by side, with their change
  fortress proxy --link redis=127.0.0.1:16379=127.0.0.1:6379
                                  a fault proxy in front of a local Redis; control API on 127.0.0.1:7000
  fortress provider --listen 127.0.0.1:9000
                                  the payment provider stand-in; its ledger at http://127.0.0.1:9000/v1/ledger

First time on this machine: ci/setup (installs Docker if needed and builds the images offline).";

/// Fortress: a chaos and load-testing lab around a reference checkout backend.
#[derive(Debug, Parser)]
#[command(name = "fortress", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The lab environment (Postgres, Redis, service replicas in containers).
    #[command(subcommand)]
    Env(EnvCommand),
    /// Check that this machine can run the lab, and say how to fix what it cannot.
    Doctor,
    /// Remove every container and network left behind by earlier runs (found by their labels).
    Cleanup,
    /// Run an experiment: load it, break it, watch it, and judge its predictions.
    #[command(after_help = ExitCode::help())]
    Experiment(ExperimentArgs),
    /// Find the highest arrival rate each variant holds within the experiment's [capacity]
    /// objective, steady and with its fault injected; judge its capacity predictions.
    #[command(after_help = ExitCode::help())]
    Capacity(CapacityArgs),
    /// Search the lab's fault space (each link and container the load uses) for the schedules that
    /// break an invariant or the objective; shrink each one that breaks an invariant to a minimal
    /// schedule, written as an experiment file that replays it.
    #[command(after_help = ExitCode::help())]
    Explore(ExploreArgs),
    /// List the built-in experiments: name, story, faults, duration.
    List,
    /// Check an experiment (built-in name or .toml path) and print its plan: phases, faults, variants,
    /// predictions. Errors name the file, line and field.
    Plan(PlanArgs),
    /// Check a target: the Compose file of a backend Fortress did not write, with its `x-fortress`
    /// section, and print what its lab would be. Errors name the file, line and field.
    Target(TargetArgs),
    /// Draw a run folder's charts and `report.html` again from its saved data.
    #[command(after_help = ExitCode::help())]
    Report(ReportArgs),
    /// Run the CI gate: each experiment of the suite in the quick profile, every prediction and invariant
    /// a test case, and key figures held against the committed baselines.
    #[command(after_help = ExitCode::help())]
    Gate(GateArgs),
    /// The key figures of two runs side by side with their change (b against a), as text and as a page.
    #[command(after_help = ExitCode::help())]
    Compare(CompareArgs),
    /// Run the network fault proxy (what the lab's proxy container executes).
    Proxy(ProxyArgs),
    /// Run the payment provider stand-in (what the lab's provider container executes): authorisations
    /// over HTTP, idempotency keys, and a ledger at `GET /v1/ledger`.
    Provider(ProviderArgs),
    /// Run the reference service (what the lab's service containers execute).
    #[command(hide = true)]
    Service(Box<reference_service::Config>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VariantChoice {
    Vulnerable,
    Defended,
    Both,
}

impl VariantChoice {
    pub fn includes(self, variant: Variant) -> bool {
        match self {
            Self::Both => true,
            Self::Vulnerable => variant == Variant::Vulnerable,
            Self::Defended => variant == Variant::Defended,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExperimentArgs {
    /// A built-in experiment (see `fortress list`) or the path of an experiment file.
    pub experiment: String,
    /// Which variant(s) to run; `both` runs the vulnerable one first.
    #[arg(long, value_enum, default_value_t = VariantChoice::Both)]
    pub variant: VariantChoice,
    #[arg(long, value_enum, default_value_t = crate::experiment::definition::Profile::Standard)]
    pub profile: crate::experiment::definition::Profile,
    /// Seed of the data set (names, prices, order history).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where run folders are written.
    #[arg(long, default_value = "reports")]
    pub out: std::path::PathBuf,
    /// Switch a defence of the defended variant off: one of the service's modes it sets, given the
    /// vulnerable variant's value for it, or `mode=value` (repeatable; needs --variant defended).
    #[arg(long, value_name = "MODE[=VALUE]")]
    pub without: Vec<crate::experiment::without::Without>,
    /// After the run, write every second's figures and each fault's window to this Prometheus
    /// remote-write receiver (a Prometheus started with --web.enable-remote-write-receiver takes
    /// them at /api/v1/write), labelled with the experiment, variant, run and phase.
    #[arg(long, value_name = "URL", value_parser = remote_write_url)]
    pub prometheus: Option<String>,
    /// While the run goes, serve a page at this address (e.g. 127.0.0.1:8089) showing each variant's
    /// phase, the faults active and the last second's figures.
    #[arg(long, value_name = "ADDR")]
    pub live: Option<std::net::SocketAddr>,
}

/// An http(s) URL, checked before any lab starts.
fn remote_write_url(text: &str) -> Result<String, String> {
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(text.to_owned()),
        Ok(url) => Err(format!(
            "{} URLs cannot take a remote write; give http://HOST:PORT/api/v1/write",
            url.scheme()
        )),
        Err(error) => Err(format!("{error}; give http://HOST:PORT/api/v1/write")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConditionChoice {
    Steady,
    Fault,
    Both,
}

impl ConditionChoice {
    pub fn conditions(self) -> &'static [crate::vocabulary::Condition] {
        use crate::vocabulary::Condition;
        match self {
            Self::Steady => &[Condition::Steady],
            Self::Fault => &[Condition::Fault],
            Self::Both => Condition::ALL,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CapacityArgs {
    /// A built-in experiment with a [capacity] section, or the path of such a file.
    pub experiment: String,
    /// Which variant(s) to search; `both` searches the vulnerable one first.
    #[arg(long, value_enum, default_value_t = VariantChoice::Both)]
    pub variant: VariantChoice,
    /// Which searches: steady, under the fault, or both (capacity kept needs both).
    #[arg(long, value_enum, default_value_t = ConditionChoice::Both)]
    pub condition: ConditionChoice,
    /// Quick: each step shortened by the file's profiles.quick factor, and no repeats near the knee.
    #[arg(long, value_enum, default_value_t = crate::experiment::definition::Profile::Standard)]
    pub profile: crate::experiment::definition::Profile,
    /// Seed of the data set.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where run folders are written.
    #[arg(long, default_value = "reports")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ExploreArgs {
    /// An experiment whose topology, seed and load to explore (its phases and predictions are not
    /// used), built-in or the path of a file.
    pub experiment: String,
    /// The variant whose lab is explored.
    #[arg(long, default_value_t = Variant::Defended)]
    pub variant: Variant,
    /// Switch a defence of the defended variant off first: a seeded bug explore should find
    /// (`mode` takes the vulnerable variant's value, or give `mode=value`; repeatable).
    #[arg(long, value_name = "MODE[=VALUE]")]
    pub without: Vec<crate::experiment::without::Without>,
    /// Quick: trials of 6 s (a 2 s fault window) and a 5 minute budget; standard: 10 s (4 s) and 15.
    #[arg(long, value_enum, default_value_t = crate::experiment::definition::Profile::Standard)]
    pub profile: crate::experiment::definition::Profile,
    /// Stop starting trials after this many seconds (default: the profile's budget).
    #[arg(long, value_name = "SECONDS")]
    pub budget: Option<u64>,
    /// After the single faults, try every pair of faults on two different targets.
    #[arg(long)]
    pub pairs: bool,
    /// When a trial's faults start, in seconds into its load; repeat for more instants, each tried
    /// after every schedule was tried at the one before (default: the profile's, quick 2, 0.5 and
    /// 4; standard 3, 0.5 and 6).
    #[arg(long = "at", value_name = "SECONDS")]
    pub instants: Vec<f64>,
    /// Write what breaks as found without shrinking it first.
    #[arg(long)]
    pub no_shrink: bool,
    /// Seed of the data set.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where run folders are written.
    #[arg(long, default_value = "reports")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// A built-in experiment (see `fortress list`) or the path of an experiment file.
    pub experiment: String,
    #[arg(long, value_enum, default_value_t = crate::experiment::definition::Profile::Standard)]
    pub profile: crate::experiment::definition::Profile,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  fortress target compose.yaml        # check it, print its lab\n  fortress target compose.yaml --up   # start its lab until Ctrl-C\n\nThe file's format: docs/your-own-service.md"
)]
pub struct TargetArgs {
    /// The Compose file (docker-compose.yml, compose.yaml) with an `x-fortress:` section.
    pub file: std::path::PathBuf,
    /// Start the lab it describes (its own network, 127.0.0.1-only ports, links through the fault
    /// proxy), print its addresses, and keep it until Ctrl-C removes it.
    #[arg(long)]
    pub up: bool,
    /// With --up: how long each dependency condition, and the entry's readiness, may take.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub deadline: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A run folder written by `fortress experiment` (e.g. reports/cache-outage-20261125T172705Z).
    pub run_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// The suite: which experiments to run and which figures to hold against the baseline.
    #[arg(long, default_value = "ci/gates.toml")]
    pub suite: std::path::PathBuf,
    /// Write the results as JUnit XML here (one test case per prediction, invariant and figure).
    #[arg(long)]
    pub junit: Option<std::path::PathBuf>,
    /// Folder of the baselines (one <experiment>.json each).
    #[arg(long, default_value = "ci/baselines")]
    pub baseline: std::path::PathBuf,
    /// Write the baselines from this run (only from runs whose predictions and invariants all pass).
    #[arg(long)]
    pub update_baseline: bool,
    /// Seed of the data set.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where run folders are written.
    #[arg(long, default_value = "reports")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The earlier run folder.
    pub run_a: std::path::PathBuf,
    /// The later run folder; changes are b against a.
    pub run_b: std::path::PathBuf,
    /// Where to write the comparison page [default: compare-<a>-vs-<b>.html beside run b].
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Start the topology, print every URL and the admin token, and keep it until Ctrl-C.
    Up(EnvArgs),
}

#[derive(Debug, Clone, Args)]
pub struct EnvArgs {
    /// Number of service replicas.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub replicas: u32,
    /// Postgres connection pool size of each replica.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub pool_size: u32,
    /// Put HAProxy in front of the replicas (the default with more than one replica).
    #[arg(long)]
    pub balancer: bool,
    /// Pin each client to one replica with the balancer's cookie (implies --balancer).
    #[arg(long)]
    pub sticky: bool,
    /// Add a mail server (Postfix) the service sends each order's confirmation to, through the proxy.
    #[arg(long)]
    pub mail: bool,
    /// Add a payment provider (`fortress provider`) each checkout authorises its payment with,
    /// through the proxy's `payments` link.
    #[arg(long)]
    pub payments: bool,
    /// Postgres image to use instead of fortress/postgres:15.
    #[arg(long)]
    pub postgres_image: Option<String>,
    /// Redis image to use instead of fortress/redis:7.
    #[arg(long)]
    pub redis_image: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Address of the control API (`GET /links`, `PUT|DELETE /links/{name}`).
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub control: std::net::SocketAddr,
    /// A link to forward: NAME=LISTEN_ADDR=UPSTREAM_HOST:PORT (repeat for more links), e.g.
    /// `--link redis=127.0.0.1:16379=127.0.0.1:6379`.
    #[arg(long = "link", required = true)]
    pub links: Vec<crate::faults::proxy::LinkSpec>,
    /// Picks the connections a fault on a share of them takes (`"fraction": 0.25`): the same seed
    /// takes the same connections, by their order on the link.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ProviderArgs {
    /// Where to listen for authorisations (`POST /v1/authorizations`) and ledger reads.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// How long the provider takes to decide on each authorisation, in milliseconds (a real one
    /// answers in tens of milliseconds).
    #[arg(long, default_value_t = 20)]
    pub processing_ms: u64,
}
