//! Experiments: a failure mode stated in advance, as a file of phases, faults, variants and predictions,
//! and the judgement of each prediction against what was measured.
//!
//! `definition` (the schema, validated into a `Plan`; errors name file, line and field), `metric` (the
//! vocabulary), `catalog` (the built-ins), `runner` (a lab per variant: load, faults, one sample a
//! second), `phase_figures` (those seconds turned into per-phase figures and caveats), `invariants`
//! (the end-of-run checks), `verdict` (confirmed, refuted or inconclusive) and `output` (the run folder).

pub mod catalog;
pub mod definition;
pub mod invariants;
pub mod metric;
pub mod output;
mod phase_figures;
pub mod runner;
mod schema;
pub mod verdict;
