//! Experiments: a failure mode stated in advance, as a file of phases, faults, variants and predictions,
//! and the judgement of each prediction against what was measured.
//!
//! Built so far: the schema and its validation (`definition`), the vocabulary (`metric`), the built-in
//! catalogue (`catalog`), the end-of-run checks (`invariants`) and the judgement (`verdict`). The
//! runner that drives load and samples the system is the next step (see the README's status).

pub mod catalog;
pub mod definition;
pub mod invariants;
pub mod metric;
pub mod output;
pub mod runner;
mod schema;
pub mod verdict;
