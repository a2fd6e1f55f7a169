//! What each `fortress` subcommand does and prints, so that `main.rs` only parses and dispatches.

pub mod catalog;
pub mod experiment;
pub mod gate;
pub mod report;
