//! The lab by hand: `fortress env up` (start it, print where everything is, keep it until Ctrl-C),
//! `doctor` (can this machine run it), `cleanup` (remove what killed runs left) and `proxy` (the fault
//! proxy the lab's proxy container runs).

use std::path::PathBuf;

use super::print_error;
use crate::cli::{EnvArgs, ProviderArgs, ProxyArgs};
use crate::env::docker::DockerClient;
use crate::env::{Balancing, Lab, LabSpec, cleanup};
use crate::vocabulary::ExitCode;

/// Starts the lab, prints every URL and the admin token, and removes it all on Ctrl-C.
pub async fn env_up(args: &EnvArgs, lab_binary: PathBuf) -> ExitCode {
    let spec = LabSpec {
        replicas: args.replicas,
        db_pool_size: args.pool_size,
        postgres_image: args.postgres_image.clone(),
        redis_image: args.redis_image.clone(),
        balancer: (args.balancer || args.sticky || args.replicas > 1)
            .then_some(Balancing { sticky: args.sticky }),
        mail: args.mail,
        payments: args.payments,
        ..LabSpec::with_binary(lab_binary)
    };
    eprintln!("starting the lab...");
    let started = match crate::env::check_room(1, std::path::Path::new(".")).await {
        Ok(()) => Lab::start(&spec, &|line| eprintln!("  {line}")).await,
        Err(error) => Err(error),
    };
    let lab = match started {
        Ok(lab) => lab,
        Err(error) => {
            eprint!("could not start the lab: ");
            print_error(&error);
            return ExitCode::Environment;
        }
    };
    if let Err(error) = print_lab(&lab).await {
        print_error(&error);
    }
    super::keep_until_interrupted(lab.shutdown()).await
}

async fn print_lab(lab: &Lab) -> Result<(), crate::env::EnvError> {
    println!("lab {} ready in {:.1?}", lab.run_id, lab.ready_in);
    for (step, took) in &lab.startup {
        println!("  {took:>8.1?}  {step}");
    }
    if let Some(stats) = lab.balancer_stats_url().await? {
        println!("  balancer   {}   (stats: {stats})", lab.entry_url().await?);
    }
    for replica in lab.replicas() {
        let name = crate::vocabulary::Role::Service(replica).to_string();
        println!("  {name:<10} {}", lab.service_url(replica).await?);
    }
    println!("  postgres   {}", lab.postgres_url().await?);
    println!("  redis      {}", lab.redis_url().await?);
    if let Some(mail) = &lab.mail {
        let port = mail.host_port().await?;
        println!(
            "  mail       smtp://127.0.0.1:{port}   (mailbox: docker exec {} ls /var/mail/sink/new)",
            mail.name
        );
    }
    if lab.provider.is_some() {
        println!("  provider   {}/v1/ledger", lab.provider_url().await?);
    }
    let links: Vec<String> = lab.links().iter().map(ToString::to_string).collect();
    println!(
        "  proxy      {}/links (links: {})",
        lab.proxy_url().await?,
        links.join(", ")
    );
    println!("  admin token: {}", lab.admin_token());
    Ok(())
}

/// Every check, and whether all passed.
pub async fn doctor() -> ExitCode {
    let checks = crate::doctor::examine().await;
    for check in &checks {
        println!("{check}");
    }
    if checks.iter().all(|c| c.ok) {
        ExitCode::Confirmed
    } else {
        ExitCode::Environment
    }
}

pub async fn cleanup() -> ExitCode {
    let removed = match DockerClient::connect().await {
        Ok(docker) => cleanup::remove_runs(&docker, None).await,
        Err(error) => Err(error),
    };
    match removed {
        Ok(removed) => {
            println!("{removed}");
            ExitCode::Confirmed
        }
        Err(error) => {
            eprint!("could not remove the leftovers: ");
            print_error(&error);
            ExitCode::Environment
        }
    }
}

/// The payment provider stand-in, until Ctrl-C or SIGTERM.
pub async fn provider(args: &ProviderArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "fortress: failed to listen on {} for the provider: {error}",
                args.listen
            );
            return ExitCode::Environment;
        }
    };
    eprintln!(
        "fortress provider: authorisations on http://{}/v1/authorizations",
        args.listen
    );
    let processing = std::time::Duration::from_millis(args.processing_ms);
    match crate::provider::serve(listener, processing, shutdown).await {
        Ok(()) => ExitCode::Confirmed,
        Err(error) => {
            eprintln!("the provider failed: {error}");
            ExitCode::Environment
        }
    }
}

/// The fault proxy, until Ctrl-C or SIGTERM.
pub async fn proxy(args: &ProxyArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> ExitCode {
    let control = match tokio::net::TcpListener::bind(args.control).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "fortress: failed to listen on {} for the control API: {error}",
                args.control
            );
            return ExitCode::Environment;
        }
    };
    match control.local_addr() {
        Ok(addr) => eprintln!("fortress proxy: control API on http://{addr}"),
        Err(error) => eprintln!("fortress proxy: control API bound, address unknown: {error}"),
    }
    match crate::faults::proxy::serve(control, args.links.clone(), args.seed, shutdown).await {
        Ok(()) => ExitCode::Confirmed,
        Err(error) => {
            eprint!("the proxy failed: ");
            print_error(&error);
            ExitCode::Environment
        }
    }
}
