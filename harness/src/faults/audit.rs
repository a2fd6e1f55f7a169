//! After the faults: the lab as its own parts report it, not as the timeline remembers it. The proxy
//! says whether a fault is still on any link, and Docker whether every container of the lab is
//! running. A run whose lab is not whole at its end fails, even if every revert said it was done.

use serde::{Deserialize, Serialize};

use super::proxy::client::{ProxyClient, ProxyError};
use crate::env::Lab;
use crate::env::docker::DockerError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("could not ask the proxy about its links")]
    Proxy(#[from] ProxyError),
    #[error("could not ask Docker about the lab's containers")]
    Docker(#[from] DockerError),
}

/// What the proxy and Docker said, at one instant after the last revert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabAudit {
    /// Links with no fault on them at the proxy.
    pub clean_links: Vec<String>,
    /// Links the proxy still applies a fault to, with the faults.
    pub faulty_links: Vec<String>,
    /// Containers of the lab Docker reports running.
    pub running: Vec<String>,
    /// Containers that are not, with their state.
    pub not_running: Vec<String>,
}

impl LabAudit {
    pub fn whole(&self) -> bool {
        self.faulty_links.is_empty() && self.not_running.is_empty()
    }
}

/// `proxy: postgres, redis links clean; Docker: 4 of 4 containers running`.
impl std::fmt::Display for LabAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let containers = self.running.len() + self.not_running.len();
        if self.faulty_links.is_empty() {
            write!(f, "proxy: {} links clean", self.clean_links.join(", "))?;
        } else {
            write!(f, "proxy: faults still on {}", self.faulty_links.join("; "))?;
        }
        write!(
            f,
            "; Docker: {} of {containers} containers running",
            self.running.len()
        )?;
        if !self.not_running.is_empty() {
            write!(f, " (not: {})", self.not_running.join(", "))?;
        }
        Ok(())
    }
}

/// Asks the lab's proxy about every link and Docker about every container of the lab.
pub async fn audit(lab: &Lab) -> Result<LabAudit, AuditError> {
    let mut audit = LabAudit::default();
    let proxy = ProxyClient::of(lab).await?;
    for link in lab.links() {
        let state = proxy.link(link).await?;
        if state.faults.is_empty() {
            audit.clean_links.push(link.to_string());
        } else {
            let faults: Vec<String> = state.faults.iter().map(ToString::to_string).collect();
            audit.faulty_links.push(format!("{link}: {}", faults.join(", ")));
        }
    }
    for container in lab.docker.labelled_containers(Some(&lab.run_id)).await? {
        if container.state == "running" {
            audit.running.push(container.role);
        } else {
            audit
                .not_running
                .push(format!("{} ({})", container.role, container.state));
        }
    }
    audit.running.sort();
    audit.not_running.sort();
    Ok(audit)
}
