//! What each `fortress` subcommand does and prints, so that `main.rs` only parses and dispatches.
//! Each answers the process's exit code; an error is printed with its causes.

pub mod capacity;
pub mod catalog;
pub mod experiment;
pub mod explore;
pub mod gate;
pub mod lab;
pub mod report;
pub mod target;

use std::time::Duration;

use crate::env::cleanup::Removed;
use crate::env::docker::DockerError;
use crate::vocabulary::ExitCode;

/// How long removing a lab may take before the user is told to run `fortress cleanup`.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(60);

/// Keeps a started lab until Ctrl-C, then removes it (`shutdown`) and says what it removed.
async fn keep_until_interrupted(shutdown: impl Future<Output = Result<Removed, DockerError>>) -> ExitCode {
    println!("Ctrl-C stops the lab and removes its containers.");
    crate::interrupt::wait().await;
    match tokio::time::timeout(SHUTDOWN_DEADLINE, shutdown).await {
        Ok(Ok(removed)) => {
            println!("{removed}");
            ExitCode::Confirmed
        }
        Ok(Err(error)) => {
            print_error(&error);
            ExitCode::Environment
        }
        Err(_) => {
            eprintln!(
                "fortress: removing the lab took longer than {SHUTDOWN_DEADLINE:?}; run `fortress cleanup`"
            );
            ExitCode::Environment
        }
    }
}

/// Prints `error` and every cause under it on one line: `fortress: could not start the lab: could
/// not start the postgres container: ...`.
pub fn print_error(error: &(dyn std::error::Error + 'static)) {
    eprintln!("fortress: {}", reference_service::error::cause_chain(error));
}

/// A stop signal that Ctrl-C (or SIGTERM, SIGHUP) cancels, and the task that listens for it (abort
/// it once the run is over).
pub fn stop_on_interrupt() -> (tokio_util::sync::CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::interrupt::wait().await;
            stop.cancel();
        })
    };
    (stop, watcher)
}
