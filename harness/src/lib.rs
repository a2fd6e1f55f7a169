//! Fortress's lab: it starts the reference checkout service and its dependencies in containers, drives
//! load at it, breaks it on purpose, watches it, and judges what was predicted.
//!
//! The modules are layers, listed here from the top. Each may use the ones below it and never one
//! above it; `tests/layering.rs` reads this list and the sources, and fails on an import that runs
//! upwards.
//!
//! - `commands`: what each subcommand does and prints (`main.rs` parses and dispatches to it)
//! - `cli`: the command line's clap definitions
//! - `doctor`: can this machine run the lab
//! - `explore`: searches the lab's fault space for what breaks an invariant, shrinks it to a replay
//! - `capacity`: searches for the highest arrival rate each variant holds, steady and under its fault
//! - `export`: a run's figures and fault windows written to the tools teams watch (Prometheus)
//! - `report`: a run folder drawn into charts and `report.html`; two runs compared
//! - `gate`: a suite of experiments judged for CI against committed baselines
//! - `experiment`: definitions, the runner (prepare, phases, judge), invariants, verdicts
//! - `load`: goose at a paced arrival rate, every request in our recorder
//! - `observe`: every replica's, Postgres's and Redis's counters as rates, once a second
//! - `faults`: every fault's inject and revert, the timeline, the network fault proxy
//! - `env`: the topology in containers, images, the replicas' admin routes, cleanup; a user's Compose target
//! - `provider`: the payment provider stand-in the lab runs (authorisations over HTTP, their ledger)
//! - `interrupt`: Ctrl-C, owned by Fortress (goose never gets it)
//! - `run_folder`: where each file of a run goes
//! - `saved_json`: reading Fortress's own JSON files back
//! - `exposition`: the Prometheus text format (a sample line, a series selector), read from any
//!   service's `/metrics`
//! - `vocabulary`: the closed sets every layer speaks (variant, role and link, metric, scenario,
//!   outcome, exit code)
//!
//! Where things happen: a fault is injected and reverted in `faults::with_fault`, and its evidence
//! read in `faults::evidence`; a metric is produced by the producer its declaration in
//! `vocabulary::metric` names (`load::client_figures`, `observe`, `experiment::phase_figures`); a
//! verdict is decided in `experiment::verdict`; a file of the run folder is named in `run_folder`.

pub mod capacity;
pub mod cli;
pub mod commands;
pub mod doctor;
pub mod env;
pub mod experiment;
pub mod explore;
pub mod export;
pub mod exposition;
pub mod faults;
pub mod gate;
pub mod interrupt;
pub mod load;
pub mod observe;
pub mod provider;
pub mod report;
pub mod run_folder;
pub mod saved_json;
pub mod vocabulary;
