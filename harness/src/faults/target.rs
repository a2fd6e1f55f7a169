//! Faults on a user's target: a kill, stop or pause of a service's replicas, network faults on the
//! links its proxy carries, and a rolling restart of its balanced entry. Their evidence, as for the
//! reference lab: Docker's word on each container, and what the traffic on the links to the service
//! met while it was down (the proxy's count); for a network fault, the proxy's own evidence; for a
//! rolling restart, each replica's start time changing.

use super::evidence::Observed;
use super::proxy::Evidence;
use super::proxy::client::ProxyClient;
use super::{Cause, ContainerAction, Fault, Seen};
use crate::env::balancer::Rotation;
use crate::env::target::lab::TargetLab;

/// What an injection on a target saw, for the revert to complete.
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// Docker's word on each container after the injection, and whether it shows the fault.
    containers: Vec<(String, bool)>,
    /// The links into the service, their count restarted at the injection.
    links: Vec<String>,
    /// Each entry replica's start time before a rolling restart.
    started: Vec<String>,
}

pub(super) async fn inject(fault: &Fault, lab: &TargetLab, witness: &mut Witness) -> Result<(), Cause> {
    match fault {
        Fault::OnService {
            action,
            service,
            replicas,
        } => {
            for link in lab.links.iter().filter(|l| &l.to == service) {
                let name = lab.link_name(link);
                restart_count(lab, &name).await?;
                witness.links.push(name);
            }
            for replica in 1..=*replicas {
                let container = lab.container_name(service, replica);
                let docker = lab.docker().api();
                match action {
                    ContainerAction::Kill => lab.docker().kill(&container).await?,
                    ContainerAction::Stop => (docker.stop_container(&container, None).await)
                        .map_err(crate::env::docker::DockerError::from)?,
                    ContainerAction::Pause => (docker.pause_container(&container).await)
                        .map_err(crate::env::docker::DockerError::from)?,
                }
                let state = lab.docker().state(&container).await?;
                let shows = match action {
                    ContainerAction::Pause => state.paused,
                    _ => !state.running,
                };
                witness
                    .containers
                    .push((format!("docker: {container} is {state}"), shows));
            }
            Ok(())
        }
        Fault::OnLink { link, fault } => {
            super::add_network_fault(&ProxyClient::of_target(lab).await?, link, fault).await
        }
        // Its steps run while the body does (`during`).
        Fault::RollingRestartOf(_) => {
            witness.started = lab.entry_start_times().await?;
            Ok(())
        }
        Fault::TakeOutOf { replica, .. } => {
            lab.rotate(*replica, Rotation::Out).await?;
            Ok(lab.wait_drained(*replica, super::DRAIN_DEADLINE).await?)
        }
        Fault::StopReplica { service, replica } => {
            let container = lab.container_name(service, *replica);
            (lab.docker().api().stop_container(&container, None).await)
                .map_err(crate::env::docker::DockerError::from)?;
            let state = lab.docker().state(&container).await?;
            witness
                .containers
                .push((format!("docker: {container} is {state}"), !state.running));
            Ok(())
        }
        other => Err(other.not_in("a user's target")),
    }
}

pub(super) async fn revert(fault: &Fault, lab: &TargetLab, witness: &Witness) -> Result<Seen, Cause> {
    match fault {
        Fault::OnService {
            action,
            service,
            replicas,
        } => {
            let observed = observe(lab, witness).await;
            for replica in 1..=*replicas {
                let container = lab.container_name(service, replica);
                let docker = lab.docker().api();
                match action {
                    ContainerAction::Pause => docker.unpause_container(&container).await,
                    _ => docker.start_container(&container, None).await,
                }
                .map_err(crate::env::docker::DockerError::from)?;
            }
            Ok(Seen {
                evidence: None,
                observed: Some(observed),
            })
        }
        Fault::RollingRestartOf(service) => Ok(Seen {
            evidence: None,
            observed: Some(restarted(lab, service, &witness.started).await?),
        }),
        // The deploy's own evidence is the start times; a take-out witnesses nothing of its own.
        Fault::TakeOutOf { replica, .. } => {
            lab.rotate(*replica, Rotation::In).await?;
            lab.wait_balanced(super::RECOVERY_DEADLINE).await?;
            Ok(Seen::default())
        }
        Fault::StopReplica { service, replica } => {
            let container = lab.container_name(service, *replica);
            (lab.docker().api().start_container(&container, None).await)
                .map_err(crate::env::docker::DockerError::from)?;
            Ok(Seen {
                evidence: None,
                observed: Some(observe(lab, witness).await),
            })
        }
        Fault::OnLink { link, fault } => {
            let proxy = ProxyClient::of_target(lab).await?;
            let evidence = super::remove_network_fault(&proxy, link, fault.kind()).await?;
            Ok(Seen {
                observed: Some(Observed::of_network(link, &evidence)),
                evidence: Some(evidence),
            })
        }
        other => Err(other.not_in("a user's target")),
    }
}

/// How many of the entry's replicas started again since `before`: all of them, or the deploy did not
/// happen.
async fn restarted(lab: &TargetLab, service: &str, before: &[String]) -> Result<Observed, Cause> {
    let now = lab.entry_start_times().await?;
    let again = before.iter().zip(&now).filter(|(a, b)| a != b).count();
    Ok(Observed {
        touched: !now.is_empty() && again == now.len(),
        facts: vec![format!(
            "docker: {again} of {} {service} replicas started again",
            now.len()
        )],
    })
}

/// Docker's word on the containers, and what the traffic to the service met while it was down.
async fn observe(lab: &TargetLab, witness: &Witness) -> Observed {
    let mut facts = Vec::new();
    let mut touched = !witness.containers.is_empty();
    for (fact, shows) in &witness.containers {
        facts.push(fact.clone());
        touched &= shows;
    }
    for link in &witness.links {
        match restart_count(lab, link).await {
            Ok(evidence) => {
                let (fact, met) = super::evidence::traffic_met_a_dead_end(link, &evidence);
                facts.push(fact);
                touched &= met;
            }
            Err(error) => {
                let cause = reference_service::error::cause_chain(&error);
                facts.push(format!("could not read the {link} link's traffic: {cause}"));
                touched = false;
            }
        }
    }
    Observed { touched, facts }
}

/// Starts a new count of the link's traffic; answers what the count that just ended saw.
async fn restart_count(lab: &TargetLab, link: &str) -> Result<Evidence, Cause> {
    super::evidence::restart_link_count(&ProxyClient::of_target(lab).await?, link).await
}
