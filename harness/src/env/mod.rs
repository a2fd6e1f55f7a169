//! The lab's topology in containers: one Docker network per run, with Postgres, Redis, the fault proxy
//! and one or more replicas of the reference service on it.
//!
//! The service reaches Postgres and Redis through the proxy's listeners (`proxy:5432`, `proxy:6379`),
//! and the proxy reaches them by container name, resolved per connection, so a restarted Redis is
//! found again without re-wiring. Everything is labelled with the run id and published on 127.0.0.1
//! only. `Lab::shutdown` removes it all; if a run ends another way (error, panic), `Drop` does.

pub mod cleanup;
pub mod docker;
pub mod images;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

use self::docker::{DockerClient, DockerError, ROLE_LABEL, RUN_LABEL};
use self::images::ImageChoice;
use crate::faults::proxy::client::ProxyClient;

const PG_PASSWORD: &str = "fortress";
const SERVICE_PORT: u16 = 8080;
const PROXY_CONTROL_PORT: u16 = 7000;
/// Admin token of the lab's service replicas (they are reachable from this machine only).
pub const ADMIN_TOKEN: &str = "fortress-lab-admin";

/// What to start.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub replicas: u32,
    pub db_pool_size: u32,
    /// The `fortress` binary the service containers run (`fortress service`).
    pub lab_binary: PathBuf,
    pub postgres_image: Option<String>,
    pub redis_image: Option<String>,
    pub ready_deadline: Duration,
}

impl LabSpec {
    /// Defaults, with the currently running executable as the lab binary.
    pub fn with_binary(lab_binary: PathBuf) -> Self {
        Self {
            replicas: 1,
            db_pool_size: 10,
            lab_binary,
            postgres_image: None,
            redis_image: None,
            ready_deadline: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Image(#[from] images::ImageError),
    #[error("failed to start the {role} container: {detail}")]
    Start { role: String, detail: String },
    #[error("{what} was not ready within {deadline:?}: {last}")]
    NotReady {
        what: String,
        deadline: Duration,
        last: String,
    },
    #[error("there is no {0} in this lab (roles: postgres, redis, proxy, service, service-2, ...)")]
    UnknownRole(String),
    #[error("{role} is not running or has no published port: {detail}")]
    NoPort { role: String, detail: String },
}

/// A role in the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    Postgres,
    Redis,
    /// The network fault proxy between the service and its dependencies.
    Proxy,
    /// Replica `n`, from 1.
    Service(u32),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres => f.write_str("postgres"),
            Self::Redis => f.write_str("redis"),
            Self::Proxy => f.write_str("proxy"),
            Self::Service(1) => f.write_str("service"),
            Self::Service(n) => write!(f, "service-{n}"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = EnvError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postgres" => Ok(Self::Postgres),
            "redis" => Ok(Self::Redis),
            "proxy" => Ok(Self::Proxy),
            "service" | "service-1" => Ok(Self::Service(1)),
            other => other
                .strip_prefix("service-")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 1)
                .map(Self::Service)
                .ok_or_else(|| EnvError::UnknownRole(other.to_owned())),
        }
    }
}

/// One running container of the lab.
pub struct Node {
    pub role: Role,
    /// The container's name, which is also its host name on the run's network.
    pub name: String,
    pub container: ContainerAsync<GenericImage>,
    port: u16,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The port published on 127.0.0.1, asked afresh: it changes when a container is stopped and started.
    pub async fn host_port(&self) -> Result<u16, EnvError> {
        self.container
            .get_host_port_ipv4(self.port)
            .await
            .map_err(|e| EnvError::NoPort {
                role: self.role.to_string(),
                detail: e.to_string(),
            })
    }
}

/// A running topology. Dropping it removes every container and the network of its run.
#[derive(Debug)]
pub struct Lab {
    pub run_id: String,
    pub network: String,
    pub docker: DockerClient,
    pub postgres: Node,
    pub redis: Node,
    pub proxy: Node,
    pub services: Vec<Node>,
    pub images: Vec<ImageChoice>,
    /// From the call to `start` until every replica said ready.
    pub ready_in: Duration,
    /// Where that time went: (step, duration), in order.
    pub startup: Vec<(&'static str, Duration)>,
    http: reqwest::Client,
    removed: bool,
}

/// Publishes `port` on 127.0.0.1 only, on a free port the engine picks.
fn loopback_only(port: u16) -> impl Fn(&mut HostConfig) + Send + Sync + 'static {
    move |host: &mut HostConfig| {
        let binding = PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        };
        host.publish_all_ports = Some(false);
        host.port_bindings = Some(
            [(format!("{port}/tcp"), Some(vec![binding]))]
                .into_iter()
                .collect(),
        );
    }
}

/// A container request with what every lab container has: the run's network, a name that is its host
/// name there, the run and role labels, and its port published on 127.0.0.1 only.
fn request(
    image: &ImageChoice,
    port: u16,
    wait: WaitFor,
    run_id: &str,
    role: Role,
) -> ContainerRequest<GenericImage> {
    let (name, tag) = image.image.rsplit_once(':').unwrap_or((&image.image, "latest"));
    GenericImage::new(name, tag)
        .with_exposed_port(ContainerPort::Tcp(port))
        .with_wait_for(wait)
        .with_network(network_name(run_id))
        .with_container_name(container_name(run_id, role))
        .with_label(RUN_LABEL, run_id)
        .with_label(ROLE_LABEL, role.to_string())
        .with_host_config_modifier(loopback_only(port))
        .with_startup_timeout(Duration::from_secs(60))
}

fn network_name(run_id: &str) -> String {
    format!("fortress-{run_id}")
}

fn container_name(run_id: &str, role: Role) -> String {
    format!("fortress-{run_id}-{role}")
}

async fn start_node(
    role: Role,
    port: u16,
    request: ContainerRequest<GenericImage>,
) -> Result<Node, EnvError> {
    let name = request.container_name().clone().unwrap_or_default();
    let container = request.start().await.map_err(|e| EnvError::Start {
        role: role.to_string(),
        detail: e.to_string(),
    })?;
    Ok(Node {
        role,
        name,
        container,
        port,
    })
}

/// Removes the run's containers and network if the start does not get as far as handing out a `Lab`.
struct StartGuard(Option<String>);

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(run_id) = self.0.take()
            && let Err(error) = cleanup::remove_run_blocking(&run_id)
        {
            tracing::warn!(%error, run_id, "could not clean up after a failed start; run `fortress cleanup`");
        }
    }
}

impl Lab {
    /// Starts the topology and waits until every service replica says it is ready. `progress` hears
    /// what is going on (image choices, containers started).
    pub async fn start(spec: &LabSpec, progress: &(dyn Fn(&str) + Sync)) -> Result<Self, EnvError> {
        let started = Instant::now();
        let mut startup = Vec::new();
        let mut step_started = Instant::now();
        let mut step = |name: &'static str| {
            startup.push((name, step_started.elapsed()));
            step_started = Instant::now();
        };
        let docker = DockerClient::connect().await?;
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let postgres_image = images::resolve(
            &docker,
            "postgres",
            images::POSTGRES_DEFAULT,
            spec.postgres_image.as_deref(),
        )
        .await?;
        let redis_image = images::resolve(
            &docker,
            "redis",
            images::REDIS_DEFAULT,
            spec.redis_image.as_deref(),
        )
        .await?;
        step("resolve postgres and redis images");
        let service_image = images::lab_image(&docker, &spec.lab_binary).await?;
        step("lab image (hash the binary, build if new)");
        let images = vec![postgres_image, redis_image, service_image];
        for choice in &images {
            progress(&format!("image {choice}"));
        }

        let network = network_name(&run_id);
        docker.create_network(&network, &run_id).await?;
        let mut guard = StartGuard(Some(run_id.clone()));
        let postgres = request(&images[0], 5432, WaitFor::Nothing, &run_id, Role::Postgres)
            .with_env_var("POSTGRES_PASSWORD", PG_PASSWORD)
            .with_env_var("POSTGRES_DB", "shop")
            // initdb without fsync: a throwaway lab needs no durable bootstrap, and it starts a second
            // sooner. The server itself still syncs as configured.
            .with_env_var("POSTGRES_INITDB_ARGS", "--no-sync")
            .with_cmd([
                "postgres",
                "-c",
                "shared_preload_libraries=pg_stat_statements",
                "-c",
                "max_connections=300",
            ]);
        let redis = request(&images[1], 6379, WaitFor::Nothing, &run_id, Role::Redis);
        let links = [(Role::Postgres, 5432), (Role::Redis, 6379)]
            .map(|(role, port)| format!("{role}=0.0.0.0:{port}={}:{port}", container_name(&run_id, role)));
        let proxy = request(
            &images[2],
            PROXY_CONTROL_PORT,
            WaitFor::Nothing,
            &run_id,
            Role::Proxy,
        )
        .with_cmd([
            "proxy".to_owned(),
            "--control".to_owned(),
            format!("0.0.0.0:{PROXY_CONTROL_PORT}"),
            "--link".to_owned(),
            links[0].clone(),
            "--link".to_owned(),
            links[1].clone(),
        ]);
        let proxy_host = container_name(&run_id, Role::Proxy);
        let database_url = format!("postgres://postgres:{PG_PASSWORD}@{proxy_host}:5432/shop");
        let redis_url = format!("redis://{proxy_host}:6379");
        // Everything starts at once: a replica retries its migrations until Postgres accepts connections.
        let replicas = (1..=spec.replicas.max(1)).map(|n| {
            let role = Role::Service(n);
            let request = request(&images[2], SERVICE_PORT, WaitFor::Nothing, &run_id, role)
                .with_cmd(["service"])
                .with_env_var("LISTEN_ADDR", format!("0.0.0.0:{SERVICE_PORT}"))
                .with_env_var("DATABASE_URL", &database_url)
                .with_env_var("REDIS_URL", &redis_url)
                .with_env_var("ADMIN_TOKEN", ADMIN_TOKEN)
                .with_env_var("DB_POOL_SIZE", spec.db_pool_size.to_string());
            start_node(role, SERVICE_PORT, request)
        });
        let (postgres, redis, proxy, services) = tokio::join!(
            start_node(Role::Postgres, 5432, postgres),
            start_node(Role::Redis, 6379, redis),
            start_node(Role::Proxy, PROXY_CONTROL_PORT, proxy),
            futures::future::join_all(replicas),
        );
        let (postgres, redis, proxy) = (postgres?, redis?, proxy?);
        let services = services.into_iter().collect::<Result<Vec<_>, _>>()?;
        step("create network, start containers");
        progress(&format!(
            "containers started on network {network} in {:.1?}",
            started.elapsed()
        ));

        let mut lab = Self {
            run_id,
            network,
            docker,
            postgres,
            redis,
            proxy,
            services,
            images,
            ready_in: Duration::ZERO,
            startup: Vec::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            removed: false,
        };
        guard.0 = None; // from here on the Lab's own Drop cleans up
        for node in &lab.services {
            lab.wait_ready(node.role, spec.ready_deadline).await?;
        }
        step("service replicas ready (migrations, /readyz)");
        lab.startup = startup;
        lab.ready_in = started.elapsed();
        Ok(lab)
    }

    pub fn node(&self, role: Role) -> Result<&Node, EnvError> {
        match role {
            Role::Postgres => Ok(&self.postgres),
            Role::Redis => Ok(&self.redis),
            Role::Proxy => Ok(&self.proxy),
            Role::Service(n) => self
                .services
                .get(usize::try_from(n).unwrap_or(usize::MAX).wrapping_sub(1))
                .ok_or_else(|| EnvError::UnknownRole(role.to_string())),
        }
    }

    /// The base URL of a service replica on 127.0.0.1.
    pub async fn service_url(&self, replica: u32) -> Result<String, EnvError> {
        let port = self.node(Role::Service(replica))?.host_port().await?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Postgres as seen from this machine (for observation and database faults).
    pub async fn postgres_url(&self) -> Result<String, EnvError> {
        let port = self.postgres.host_port().await?;
        Ok(format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{port}/shop"))
    }

    pub async fn redis_url(&self) -> Result<String, EnvError> {
        Ok(format!("redis://127.0.0.1:{}", self.redis.host_port().await?))
    }

    /// The fault proxy's control API, on 127.0.0.1.
    pub async fn proxy(&self) -> Result<ProxyClient, EnvError> {
        let port = self.proxy.host_port().await?;
        Ok(ProxyClient::new(
            format!("http://127.0.0.1:{port}"),
            self.http.clone(),
        ))
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The readiness document of a replica (`GET /readyz`), whatever its status code.
    pub async fn readiness(&self, replica: u32) -> Result<(u16, serde_json::Value), String> {
        let url = self.service_url(replica).await.map_err(|e| e.to_string())?;
        let response = self
            .http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.json().await.map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    /// Polls `/readyz` of a replica until it says `ready`, or fails at the deadline with the last answer.
    pub async fn wait_ready(&self, role: Role, deadline: Duration) -> Result<(), EnvError> {
        let Role::Service(replica) = role else {
            return Err(EnvError::UnknownRole(role.to_string()));
        };
        let started = Instant::now();
        loop {
            let last = match self.readiness(replica).await {
                Ok((200, body)) if body["status"] == "ready" => return Ok(()),
                Ok((status, body)) => format!("{status} {body}"),
                Err(error) => error,
            };
            if started.elapsed() >= deadline {
                return Err(EnvError::NotReady {
                    what: role.to_string(),
                    deadline,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes every container and the network of this run, and says what it removed.
    pub async fn shutdown(mut self) -> Result<cleanup::Removed, DockerError> {
        self.removed = true;
        cleanup::remove_runs(&self.docker, Some(&self.run_id)).await
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = cleanup::remove_run_blocking(&self.run_id)
        {
            tracing::warn!(%error, run_id = self.run_id, "could not clean up the lab; run `fortress cleanup`");
        }
    }
}
