//! The Docker engine as the lab uses it directly: a reachable daemon (or a message saying how to get
//! one), and the few calls testcontainers does not make for us (SIGKILL, finding things by label).

use std::collections::HashMap;

use super::owner::Owner;

use testcontainers::bollard::Docker;
use testcontainers::bollard::models::NetworkCreateRequest;
use testcontainers::bollard::query_parameters::{
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptions,
};

/// Every container and network the lab creates carries this label (value: the run id).
pub const RUN_LABEL: &str = "fortress.run";
/// The role of a container in the topology (`postgres`, `redis`, `service-1`, ...).
pub const ROLE_LABEL: &str = "fortress.role";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "Docker is not reachable. Install and start it: on Debian/Ubuntu run `ci/setup` as root \
         (it installs docker.io and starts dockerd); elsewhere see https://docs.docker.com/engine/install/"
    )]
    Unreachable(#[source] testcontainers::bollard::errors::Error),
    #[error("the Docker engine refused a request")]
    Api(#[from] testcontainers::bollard::errors::Error),
}

/// A container found by label.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub id: String,
    pub name: String,
    pub run: String,
    pub role: String,
    pub state: String,
    /// The process that started its lab, if the labels say.
    pub owner: Option<Owner>,
}

/// A network found by label.
#[derive(Debug, Clone)]
pub struct LabelledNetwork {
    pub name: String,
    pub run: String,
    pub owner: Option<Owner>,
}

/// A container's state, as `docker inspect` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    pub paused: bool,
    pub exit_code: Option<i64>,
    /// When its process last started (RFC 3339, Docker's own clock).
    pub started_at: String,
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.paused, self.running, self.exit_code) {
            (true, _, _) => f.write_str("paused"),
            (false, true, _) => f.write_str("running"),
            (false, false, Some(code)) => write!(f, "exited (code {code})"),
            (false, false, None) => f.write_str("not running"),
        }
    }
}

/// How long a network refused for its active endpoints is asked again: the engine releases a
/// removed container's endpoint asynchronously, within a second. (A network the engine keeps a
/// stale endpoint of, seen in CI, is refused for good: not worth more of every lab start.)
const ENDPOINTS_RELEASED: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct DockerClient {
    docker: Docker,
}

impl DockerClient {
    /// Connects to the local daemon and checks that it answers.
    pub async fn connect() -> Result<Self, DockerError> {
        let docker = Docker::connect_with_local_defaults().map_err(DockerError::Unreachable)?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(DockerError::Unreachable)?;
        docker.ping().await.map_err(DockerError::Unreachable)?;
        Ok(Self { docker })
    }

    pub fn api(&self) -> &Docker {
        &self.docker
    }

    /// The engine's version, for the record of a run.
    pub async fn version(&self) -> Result<String, DockerError> {
        Ok(self
            .docker
            .version()
            .await?
            .version
            .unwrap_or_else(|| "unknown".into()))
    }

    /// Where the engine keeps images and containers (`docker info`'s DockerRootDir).
    pub async fn root_dir(&self) -> Result<std::path::PathBuf, DockerError> {
        let root = self.docker.info().await?.docker_root_dir;
        Ok(root.unwrap_or_else(|| "/var/lib/docker".into()).into())
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(testcontainers::bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// A label of a local image, if the image and the label exist.
    pub async fn image_label(&self, image: &str, label: &str) -> Result<Option<String>, DockerError> {
        if !self.image_exists(image).await? {
            return Ok(None);
        }
        let inspect = self.docker.inspect_image(image).await?;
        Ok(inspect
            .config
            .and_then(|c| c.labels)
            .and_then(|labels| labels.get(label).cloned()))
    }

    /// What Docker says a container is doing now.
    pub async fn state(&self, container: &str) -> Result<ContainerState, DockerError> {
        let inspect = self.docker.inspect_container(container, None).await?;
        let state = inspect.state.unwrap_or_default();
        Ok(ContainerState {
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            exit_code: state.exit_code,
            started_at: state.started_at.unwrap_or_default(),
        })
    }

    /// Sends SIGKILL: the process dies without any chance to clean up, as in a crash or an OOM kill.
    pub async fn kill(&self, container: &str) -> Result<(), DockerError> {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        self.docker.kill_container(container, Some(options)).await?;
        Ok(())
    }

    /// A network labelled with its run and, when known, the process that owns the run.
    pub async fn create_network(
        &self,
        name: &str,
        run_id: &str,
        owner: Option<Owner>,
    ) -> Result<(), DockerError> {
        let mut labels = HashMap::from([(RUN_LABEL.to_owned(), run_id.to_owned())]);
        for (key, value) in owner.iter().flat_map(Owner::labels) {
            labels.insert(key.to_owned(), value);
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker.create_network(request).await?;
        Ok(())
    }

    /// Containers carrying the run label; `run` narrows to one run.
    pub async fn labelled_containers(&self, run: Option<&str>) -> Result<Vec<Labelled>, DockerError> {
        let label = run.map_or_else(|| RUN_LABEL.to_owned(), |run| format!("{RUN_LABEL}={run}"));
        let filters = HashMap::from([("label", vec![label])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self.docker.list_containers(Some(options)).await?;
        Ok(containers
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                Labelled {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.first().cloned())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .into(),
                    run: labels.get(RUN_LABEL).cloned().unwrap_or_default(),
                    role: labels.get(ROLE_LABEL).cloned().unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    owner: Owner::from_labels(&labels),
                }
            })
            .collect())
    }

    /// Networks carrying the run label; `run` narrows to one run.
    pub async fn labelled_networks(&self, run: Option<&str>) -> Result<Vec<LabelledNetwork>, DockerError> {
        let label = run.map_or_else(|| RUN_LABEL.to_owned(), |run| format!("{RUN_LABEL}={run}"));
        let filters = HashMap::from([("label", vec![label])]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let networks = self.docker.list_networks(Some(options)).await?;
        Ok(networks
            .into_iter()
            .map(|n| {
                let labels = n.labels.unwrap_or_default();
                LabelledNetwork {
                    name: n.name.unwrap_or_default(),
                    run: labels.get(RUN_LABEL).cloned().unwrap_or_default(),
                    owner: Owner::from_labels(&labels),
                }
            })
            .collect())
    }

    /// Removes a container (running or not) and its anonymous volumes; a container already gone is fine.
    pub async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(testcontainers::bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Removes the `repository:*` images other than `keep`; images in use by a container stay.
    pub async fn prune_tags(&self, repository: &str, keep: &str) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([("reference", vec![repository.to_owned()])]);
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let mut removed = Vec::new();
        for image in self.docker.list_images(Some(options)).await? {
            for tag in image.repo_tags.iter().filter(|t| t.as_str() != keep) {
                if self
                    .docker
                    .remove_image(tag, None::<RemoveImageOptions>, None)
                    .await
                    .is_ok()
                {
                    removed.push(tag.clone());
                }
            }
        }
        Ok(removed)
    }

    /// Removes a network; one already gone is fine. The engine releases a removed container's
    /// endpoint a moment after the removal returns, so a network refused for its active endpoints
    /// is asked again until `ENDPOINTS_RELEASED` has passed.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        let started = std::time::Instant::now();
        loop {
            match self.docker.remove_network(name).await {
                Ok(())
                | Err(testcontainers::bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                }) => return Ok(()),
                Err(testcontainers::bollard::errors::Error::DockerResponseServerError {
                    status_code: 403,
                    message,
                }) if message.contains("active endpoints") && started.elapsed() < ENDPOINTS_RELEASED => {
                    tracing::debug!(name, message, "the network still has endpoints; asking again");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}
