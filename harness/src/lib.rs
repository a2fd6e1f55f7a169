//! Fortress's lab: it starts the reference checkout service and its dependencies in containers, breaks
//! them on purpose, and puts them back.
//!
//! Data flows down this list and never back up: `cli` (the command line), `env` (the topology in
//! containers, images, cleanup), `faults` (inject/revert pairs on a timeline), `experiment` (definitions,
//! predictions and their judgement), `load` (goose drives a plan's mix at a target rate; every request
//! recorded per second and endpoint group), `observe` (the service's and Postgres's counters as
//! rates, once a second), `report` (a run folder drawn into charts and an HTML page), `gate` (a suite of experiments
//! judged for CI against committed baselines), `doctor` (can
//! this machine run the lab).

pub mod cli;
pub mod commands;
pub mod doctor;
pub mod env;
pub mod experiment;
pub mod faults;
pub mod gate;
pub mod load;
pub mod observe;
pub mod report;
pub mod saved_json;
