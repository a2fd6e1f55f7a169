//! `fortress`: parses the command line, sets up logging, runs the command, maps the result to an exit code.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fortress::cli::{Cli, Command, EnvArgs, EnvCommand, ProxyArgs};
use fortress::env::{Lab, LabSpec, cleanup, docker::DockerClient};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Service(config) = cli.command {
        return serve(*config).await;
    }
    tracing_subscriber::fmt()
        // testcontainers logs an ERROR for every container it finds already removed by our own cleanup.
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,testcontainers=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Env(EnvCommand::Up(args)) => env_up(args).await,
        Command::Doctor => doctor().await,
        Command::Cleanup => cleanup().await,
        Command::Proxy(args) => proxy(args).await,
        Command::Experiment(args) => experiment(&args).await,
        Command::Gate(args) => gate(&args).await,
        Command::List => Ok(ExitCode::from(fortress::commands::catalog::list())),
        Command::Plan(args) => Ok(ExitCode::from(fortress::commands::catalog::plan(&args))),
        Command::Report(args) => Ok(ExitCode::from(fortress::commands::report::report(&args))),
        Command::Compare(args) => Ok(ExitCode::from(fortress::commands::report::compare(&args))),
        Command::Service(_) => unreachable!("handled above"),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fortress: {error:#}");
            ExitCode::from(4)
        }
    }
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

async fn proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let control = tokio::net::TcpListener::bind(args.control)
        .await
        .with_context(|| format!("failed to listen on {} for the control API", args.control))?;
    eprintln!("fortress proxy: control API on http://{}", control.local_addr()?);
    fortress::faults::proxy::serve(control, args.links, termination())
        .await
        .context("failed to run the proxy")?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn termination() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { term.as_mut()?.recv().await } => {}
    }
}

async fn env_up(args: EnvArgs) -> anyhow::Result<ExitCode> {
    let binary = std::env::current_exe().context("failed to find the fortress executable")?;
    let spec = LabSpec {
        replicas: args.replicas,
        db_pool_size: args.pool_size,
        postgres_image: args.postgres_image,
        redis_image: args.redis_image,
        ..LabSpec::with_binary(binary)
    };
    eprintln!("starting the lab...");
    let lab = Lab::start(&spec, &|line| eprintln!("  {line}"))
        .await
        .context("failed to start the lab")?;
    println!("lab {} ready in {:.1?}", lab.run_id, lab.ready_in);
    for (step, took) in &lab.startup {
        println!("  {took:>8.1?}  {step}");
    }
    for replica in 1..=args.replicas {
        println!("  service-{replica}  {}", lab.service_url(replica).await?);
    }
    println!("  postgres   {}", lab.postgres_url().await?);
    println!("  redis      {}", lab.redis_url().await?);
    println!(
        "  proxy      http://127.0.0.1:{}/links (links: postgres, redis)",
        lab.proxy.host_port().await?
    );
    println!("  admin token: {}", fortress::env::ADMIN_TOKEN);
    println!("Ctrl-C stops the lab and removes its containers.");
    tokio::signal::ctrl_c()
        .await
        .context("failed to wait for Ctrl-C")?;
    eprintln!("\nstopping...");
    let removed = tokio::time::timeout(Duration::from_secs(60), lab.shutdown())
        .await
        .context("cleanup took longer than a minute; run `fortress cleanup`")??;
    println!("{removed}");
    Ok(ExitCode::SUCCESS)
}

async fn experiment(args: &fortress::cli::ExperimentArgs) -> anyhow::Result<ExitCode> {
    let binary = std::env::current_exe().context("failed to find the fortress executable")?;
    Ok(ExitCode::from(
        fortress::commands::experiment::run(args, binary).await,
    ))
}

async fn gate(args: &fortress::cli::GateArgs) -> anyhow::Result<ExitCode> {
    let binary = std::env::current_exe().context("failed to find the fortress executable")?;
    Ok(ExitCode::from(fortress::commands::gate::run(args, binary).await))
}

async fn doctor() -> anyhow::Result<ExitCode> {
    let checks = fortress::doctor::examine().await;
    for check in &checks {
        println!("{check}");
    }
    Ok(if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    })
}

async fn cleanup() -> anyhow::Result<ExitCode> {
    let docker = DockerClient::connect().await?;
    let removed = cleanup::remove_runs(&docker, None)
        .await
        .context("failed to remove leftovers")?;
    println!("{removed}");
    Ok(ExitCode::SUCCESS)
}
