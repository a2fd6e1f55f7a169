//! `reference-service`: parses the configuration, sets up logging, serves until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use reference_service::Config;
use tracing_subscriber::EnvFilter;

const EXAMPLES: &str = "\
Examples:
  # Against Postgres and Redis on this machine (migrations run at start):
  DATABASE_URL=postgres://postgres:secret@127.0.0.1:5432/shop REDIS_URL=redis://127.0.0.1:6379 reference-service

  # Seed products, users and stock, then switch to the naive locking:
  curl -X POST -H 'Authorization: Bearer fortress-admin' -H 'Content-Type: application/json' \\
       -d '{\"products\":10,\"users\":50,\"stock\":1}' http://127.0.0.1:8080/admin/seed
  curl -X PUT -H 'Authorization: Bearer fortress-admin' -H 'Content-Type: application/json' \\
       -d '{\"locking\":\"none\",\"race_window_ms\":20}' http://127.0.0.1:8080/admin/modes";

/// The checkout service Fortress breaks: products, stock and orders on Postgres, a Redis cache, an
/// outbox worker, and runtime modes that swap in the naive code people really write.
#[derive(Debug, Parser)]
#[command(name = "reference-service", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "pretty" {
        builder.init();
    } else {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.config.log_format);
    match reference_service::serve(cli.config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let chain = reference_service::error::cause_chain(&error);
            tracing::error!(error = %chain, "reference-service failed");
            eprintln!("reference-service: {chain}");
            ExitCode::FAILURE
        }
    }
}
