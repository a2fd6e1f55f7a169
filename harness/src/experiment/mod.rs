//! Experiments: a failure mode stated in advance, as a file of phases, faults, variants and predictions,
//! and the judgement of each prediction against what was measured.
//!
//! `definition` (the schema, validated into a `Plan`; errors name file, line and field), `claim` (how
//! a prediction is written), `abort` (stop conditions, watched every second), `catalog` (the built-ins), `runner` (a lab per variant: prepare, run the
//! phases with their faults and one sample a second, judge), `phase_figures` (those seconds turned
//! into per-phase figures and caveats), `invariants` (the end-of-run checks), `timing` (the timing
//! attacker's classifier and test), `forensics` (each class of 5xx answers with its log lines),
//! `verdict` (confirmed, refuted or inconclusive), `output` (what a run writes in its folder),
//! `journal` (every event of a run, a line each, as it happens) and
//! `without` (the defended variant with a defence switched off).

pub mod abort;
pub mod catalog;
pub mod claim;
pub mod definition;
pub mod forensics;
pub mod invariants;
pub mod journal;
pub mod output;
#[cfg(test)]
mod owners;
mod phase_figures;
pub mod runner;
mod schema;
pub mod timing;
pub mod verdict;
pub mod without;
