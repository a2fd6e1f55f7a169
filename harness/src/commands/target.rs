//! `fortress target FILE`: a user's Compose file checked, and the lab it describes printed.

use crate::cli::TargetArgs;
use crate::env::target::{Condition, ImageSource, Service, Target};
use crate::vocabulary::ExitCode;

use super::print_error;

pub fn check(args: &TargetArgs) -> ExitCode {
    let target = match Target::load(&args.file) {
        Ok(target) => target,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
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
    ExitCode::Confirmed
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
