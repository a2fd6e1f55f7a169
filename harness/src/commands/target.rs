//! `fortress target FILE`: a user's Compose file checked, and the lab it describes printed; with
//! `--up`, started until Ctrl-C.

use std::path::PathBuf;

use crate::cli::TargetArgs;
use crate::env::target::lab::{TargetLab, TargetLabSpec};
use crate::env::target::{Condition, ImageSource, Service, Target};
use crate::vocabulary::ExitCode;

use super::print_error;

pub async fn run(args: &TargetArgs, lab_binary: PathBuf) -> ExitCode {
    let target = match Target::load(&args.file) {
        Ok(target) => target,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    print_target(&target);
    if !args.up {
        return ExitCode::Confirmed;
    }
    let spec = TargetLabSpec {
        lab_binary,
        deadline: args.deadline,
        environment: Default::default(),
    };
    up(&target, &spec).await
}

/// Starts the lab, prints where everything is, and removes it on Ctrl-C (a press during the start
/// drops the lab half made, which removes what was started).
async fn up(target: &Target, spec: &TargetLabSpec) -> ExitCode {
    eprintln!("\nstarting the target's lab...");
    let started = tokio::select! {
        started = TargetLab::start(target, spec, &|line| eprintln!("  {line}")) => started,
        () = crate::interrupt::wait() => {
            eprintln!("interrupted: the containers started so far are removed");
            return ExitCode::Environment;
        }
    };
    let lab = match started {
        Ok(lab) => lab,
        Err(error) => {
            let chain = reference_service::error::cause_chain(&error);
            eprintln!("fortress: could not start the target's lab: {chain}");
            return ExitCode::Environment;
        }
    };
    println!("lab {} ready in {:.1?}", lab.run_id, lab.ready_in);
    println!("  entry      {}", lab.entry_url);
    for (name, url) in &lab.database_urls {
        println!("  database   {name}: {}", without_password(url));
    }
    for container in &lab.containers {
        println!("  container  {}", container.name);
    }
    super::keep_until_interrupted(lab.shutdown()).await
}

/// `url` with its password (if any) shown as `***`: the terminal is often shared or recorded.
fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// What the file describes: services, entry, links and databases.
fn print_target(target: &Target) {
    println!("{}: {} services\n", target.file.display(), target.services.len());
    for service in &target.services {
        println!("  {}", describe(service));
    }
    let entry = &target.entry;
    println!(
        "\nload goes to {}:{} (published on 127.0.0.1 at a free port), ready once GET {} answers 2xx",
        entry.service, entry.port, entry.ready
    );
    if target.links.is_empty() {
        println!("no links through the fault proxy: only container faults (kill, stop, pause) apply");
    } else {
        println!("links through the fault proxy:");
        for link in &target.links {
            println!(
                "  {} -> {}:{} (the address in {}'s {})",
                link.from, link.to, link.port, link.from, link.address_in
            );
        }
    }
    for db in &target.databases {
        println!(
            "database {:?} for invariants: {}:{}",
            db.name, db.service, db.port
        );
    }
    if let Some(metrics) = &target.metrics {
        let login = (metrics.basic_auth.as_ref())
            .map(|auth| format!(" as {} (password from {})", auth.user, auth.password))
            .unwrap_or_default();
        println!(
            "service counters from GET {} on {}:{}{login}:",
            metrics.path, entry.service, metrics.port
        );
        for (counter, selector) in &metrics.counters {
            println!("  {counter} = {selector}");
        }
    }
}

/// One line: where the image comes from, replicas, ports, and what the service waits for.
fn describe(service: &Service) -> String {
    let mut parts = vec![match &service.image {
        ImageSource::Present(image) => format!("image {image}"),
        ImageSource::Built { build, tag } => {
            let tag = tag.as_ref().map(|t| format!(", tagged {t}")).unwrap_or_default();
            format!("built from {}{tag}", build.context)
        }
    }];
    if service.replicas > 1 {
        parts.push(format!("{} replicas", service.replicas));
    }
    for port in &service.ports {
        let asked = port
            .host_asked
            .map(|h| format!(" (the file's host port {h} is not used: each run picks its own)"))
            .unwrap_or_default();
        parts.push(format!("port {}{asked}", port.container));
    }
    if !service.depends_on.is_empty() {
        let after: Vec<String> = (service.depends_on.iter())
            .map(|(on, condition)| match condition {
                Condition::ServiceStarted => format!("{on} started"),
                Condition::ServiceHealthy => format!("{on} healthy"),
                Condition::ServiceCompletedSuccessfully => format!("{on} done"),
            })
            .collect();
        parts.push(format!("after {}", after.join(", ")));
    }
    format!("{}: {}", service.name, parts.join(", "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_printed_database_url_hides_its_password() {
        assert_eq!(
            super::without_password("postgres://pretix:secret@127.0.0.1:5432/pretix"),
            "postgres://pretix:***@127.0.0.1:5432/pretix"
        );
        assert_eq!(
            super::without_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
