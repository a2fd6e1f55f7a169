//! What each `fortress` subcommand does and prints, so that `main.rs` only parses and dispatches.
//! Each answers the process's exit code; an error is printed with its causes.

pub mod capacity;
pub mod catalog;
pub mod experiment;
pub mod gate;
pub mod lab;
pub mod report;

/// Prints `error` and every cause under it on one line: `fortress: could not start the lab: could
/// not start the postgres container: ...`.
pub fn print_error(error: &(dyn std::error::Error + 'static)) {
    eprintln!("fortress: {}", reference_service::error::cause_chain(error));
}
