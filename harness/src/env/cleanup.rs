//! Removing what a run left behind, by label: on the way out of every run, and on demand
//! (`fortress cleanup`) for runs that were killed before they could clean up after themselves.

use std::collections::BTreeMap;

use super::docker::{DockerClient, DockerError, Labelled};
use super::owner::Owner;

/// What a cleanup removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub containers: Vec<Labelled>,
    pub networks: Vec<String>,
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.containers.is_empty() && self.networks.is_empty() {
            return write!(
                f,
                "nothing to remove: no container or network labelled by a Fortress run"
            );
        }
        for c in &self.containers {
            writeln!(
                f,
                "removed container {} (run {}, role {}, was {})",
                c.name, c.run, c.role, c.state
            )?;
        }
        for n in &self.networks {
            writeln!(f, "removed network {n}")?;
        }
        write!(
            f,
            "{} container(s), {} network(s) removed",
            self.containers.len(),
            self.networks.len()
        )
    }
}

/// Removes the containers, then the networks, of one run (`Some(id)`) or of every run (`None`).
pub async fn remove_runs(docker: &DockerClient, run: Option<&str>) -> Result<Removed, DockerError> {
    let mut removed = Removed::default();
    // All at once: each removal is the engine stopping a container, ~0.3 s, mostly waiting.
    let containers = docker.labelled_containers(run).await?;
    let removals = containers.iter().map(|c| docker.remove_container(&c.id));
    let results = futures::future::join_all(removals).await;
    for (container, result) in containers.into_iter().zip(results) {
        result?;
        removed.containers.push(container);
    }
    for network in docker.labelled_networks(run).await? {
        docker.remove_network(&network.name).await?;
        removed.networks.push(network.name);
    }
    Ok(removed)
}

/// A lab removed because the process that started it is gone.
#[derive(Debug)]
pub struct Orphan {
    pub run: String,
    pub owner: Owner,
    pub removed: Removed,
}

impl std::fmt::Display for Orphan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed lab {} ({} container(s), {} network(s)) left by {}, which is gone",
            self.run,
            self.removed.containers.len(),
            self.removed.networks.len(),
            self.owner
        )
    }
}

/// Before a lab starts: removes the labs earlier runs left behind, saying each. Housekeeping: one
/// that cannot be removed now is said and does not stop the new lab (`fortress cleanup` removes it
/// later).
pub async fn reap_before_start(docker: &DockerClient, progress: &(dyn Fn(&str) + Sync)) {
    match remove_orphans(docker).await {
        Ok(reaped) => {
            reaped
                .removed
                .iter()
                .for_each(|orphan| progress(&orphan.to_string()));
            reaped.stuck.iter().for_each(|stuck| progress(&stuck.to_string()));
        }
        Err(error) => progress(&format!(
            "could not look for labs earlier runs left behind ({error}); `fortress cleanup` will"
        )),
    }
}

/// What a reap did: the labs it removed, and those it could not, each with why.
#[derive(Debug, Default)]
pub struct Reaped {
    pub removed: Vec<Orphan>,
    pub stuck: Vec<Stuck>,
}

/// A lab left behind that could not be removed (a network the engine keeps a stale endpoint of).
#[derive(Debug)]
pub struct Stuck {
    pub run: String,
    pub error: DockerError,
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "could not remove lab {}, left by a run that is gone ({}); `fortress cleanup` will try again (a network that stays may need the Docker engine restarted)",
            self.run, self.error
        )
    }
}

/// Removes every lab whose owner (the labels' process) no longer runs: what a `fortress` killed with
/// SIGKILL left behind. Labs without an owner label are left to `fortress cleanup`. Fails only when
/// the labs cannot be listed; one that cannot be removed is `stuck`, and does not keep the others.
pub async fn remove_orphans(docker: &DockerClient) -> Result<Reaped, DockerError> {
    // A run starts its labs at once, and each start reaps: one at a time, or two would remove the
    // same containers together and the second would fail on a removal already in progress.
    static REAPING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = REAPING.lock().await;
    let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
    for container in docker.labelled_containers(None).await? {
        if let Some(owner) = container.owner {
            owners.insert(container.run, owner);
        }
    }
    for network in docker.labelled_networks(None).await? {
        if let Some(owner) = network.owner {
            owners.insert(network.run, owner);
        }
    }
    let mut reaped = Reaped::default();
    for (run, owner) in owners.into_iter().filter(|(_, owner)| !owner.is_alive()) {
        match remove_runs(docker, Some(&run)).await {
            Ok(removed) => reaped.removed.push(Orphan { run, owner, removed }),
            Err(error) => reaped.stuck.push(Stuck { run, error }),
        }
    }
    Ok(reaped)
}

/// Why a cleanup from synchronous code could not run.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("could not start a runtime for the cleanup")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("the cleanup thread panicked")]
    Panicked,
}

/// The same, from synchronous code that may be unwinding (a `Drop`): runs on a thread of its own with
/// its own runtime, so it works inside or outside an async context.
pub fn remove_run_blocking(run: &str) -> Result<Removed, CleanupError> {
    let run = run.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CleanupError::Runtime)?;
        runtime.block_on(async {
            let docker = DockerClient::connect().await?;
            Ok(remove_runs(&docker, Some(&run)).await?)
        })
    })
    .join()
    .map_err(|_| CleanupError::Panicked)?
}
