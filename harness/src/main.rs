//! `fortress`: parses the command line, sets up logging, runs the command, maps the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use fortress::cli::{Cli, Command, EnvCommand, TargetArgs};
use fortress::commands;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Service(config) = cli.command {
        return serve(*config).await;
    }
    tracing_subscriber::fmt()
        // testcontainers logs an ERROR for every container it finds already removed by our own cleanup;
        // goose warns of every request that failed, which the recorder files and counts already.
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,testcontainers=off,goose=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A command that runs a lab owns Ctrl-C: a press stops it, and only after every fault is reverted
    // and the lab removed does the process end (goose never installs its own handler).
    if matches!(
        cli.command,
        Command::Env(_)
            | Command::Experiment(_)
            | Command::Gate(_)
            | Command::Capacity(_)
            | Command::Explore(_)
            | Command::Target(TargetArgs { up: true, .. })
    ) && let Err(error) = fortress::interrupt::install()
    {
        eprintln!("fortress: cannot take Ctrl-C: {error}");
        return fortress::vocabulary::ExitCode::Environment.into();
    }
    if matches!(
        cli.command,
        Command::List
            | Command::Plan(_)
            | Command::Target(TargetArgs { up: false, .. })
            | Command::Report(_)
            | Command::Compare(_)
    ) {
        end_quietly_when_the_reader_does();
    }
    // The lab's service, proxy and provider containers run this very binary.
    let lab_binary = match std::env::current_exe() {
        Ok(path) => path,
        Err(error) => {
            eprintln!("fortress: cannot find the running fortress executable: {error}");
            return fortress::vocabulary::ExitCode::Environment.into();
        }
    };
    let code = match &cli.command {
        Command::Env(EnvCommand::Up(args)) => commands::lab::env_up(args, lab_binary).await,
        Command::Doctor => commands::lab::doctor().await,
        Command::Cleanup => commands::lab::cleanup().await,
        Command::Proxy(args) => commands::lab::proxy(args, termination()).await,
        Command::Provider(args) => commands::lab::provider(args, termination()).await,
        Command::Experiment(args) => commands::experiment::run(args, lab_binary).await,
        Command::Gate(args) => commands::gate::run(args, lab_binary).await,
        Command::Capacity(args) => commands::capacity::run(args, lab_binary).await,
        Command::Explore(args) => commands::explore::run(args, lab_binary).await,
        Command::List => commands::catalog::list(),
        Command::Plan(args) => commands::catalog::plan(args),
        Command::Target(args) => commands::target::run(args, lab_binary).await,
        Command::Report(args) => commands::report::report(args),
        Command::Compare(args) => commands::report::compare(args),
        Command::Service(_) => unreachable!("handled above"),
    };
    code.into()
}

/// `fortress plan x | head`: a command that only prints ends when its reader stops reading, as `cat`
/// does, instead of panicking on the closed pipe. Commands that run a lab keep SIGPIPE ignored, so a
/// closed pipe can never cut a fault's inverse short.
fn end_quietly_when_the_reader_does() {
    sigpipe::reset();
}

/// The reference service, as the lab's service containers run it (JSON logs on stderr).
async fn serve(config: reference_service::Config) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .json()
        .with_current_span(true)
        .with_writer(std::io::stderr)
        .init();
    match reference_service::serve(config, termination()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "fortress service: {}",
                reference_service::error::cause_chain(&error)
            );
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn termination() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { term.as_mut()?.recv().await } => {}
    }
}
