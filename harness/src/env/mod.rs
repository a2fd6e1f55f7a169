//! The lab's topology in containers: one Docker network per run, with Postgres, Redis, the fault proxy,
//! one or more replicas of the reference service and, when asked for, HAProxy in front of them, and a
//! mail server (Postfix) and a payment provider (`fortress provider`) behind them.
//!
//! The service reaches Postgres and Redis through the proxy's listeners (`proxy:5432`, `proxy:6379`),
//! and the proxy reaches them by container name, resolved per connection, so a restarted Redis is
//! found again without re-wiring. Everything is labelled with the run id and published on 127.0.0.1
//! only. `Lab::shutdown` removes it all; if a run ends another way (error, panic), `Drop` does.
//!
//! Clients reach the service through `entry_url`: the balancer's port when there is one (a replica
//! restarted on a new published port stays behind the same front door), else replica 1's.
//!
//! `containers` says what each container is started with, `admin` talks to the replicas' operator
//! routes (readiness, modes, seed), `images` picks and builds images, `cleanup` removes runs by label,
//! `owner` names the process a lab belongs to: a lab whose owner was killed is removed by the next
//! lab to start (and by `fortress doctor`), `logs` keeps the warning and error lines of the service
//! and Postgres for the run folder.
//!
//! `target` is the other kind of lab: a backend Fortress did not write, from its team's Compose file
//! and an `x-fortress` section, started with the same network, labels, loopback-only ports and fault
//! proxy. The reference lab does not go through it yet: its roles (admin routes, seed, modes, the
//! balancer's runtime API) are typed here, and a target knows only Compose names.

pub mod admin;
pub mod balancer;
pub mod cleanup;
mod containers;
pub mod docker;
pub mod images;
pub mod logs;
pub mod mail;
pub mod owner;
pub mod payments;
pub mod pgbench;
pub mod poll;
pub mod resources;
pub mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use testcontainers::core::ExecCommand;
use testcontainers::{ContainerAsync, GenericImage};

pub use self::admin::AdminError;
pub use self::balancer::Balancing;
use self::containers::Topology;
use self::docker::{DockerClient, DockerError};
use self::images::ImageChoice;
use crate::vocabulary::{Link, Role, UnknownRole};

/// The proxy's links of a lab, with or without a mail server and a payment provider.
fn links(mail: bool, payments: bool) -> Vec<Link> {
    Link::ALL
        .iter()
        .copied()
        .filter(|l| match l {
            Link::Mail => mail,
            Link::Payments => payments,
            Link::Postgres | Link::Redis => true,
        })
        .collect()
}

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
    /// The proxy's seed: which connections a fault on a share of them takes.
    pub seed: u64,
    /// HAProxy in front of the replicas, balancing as this says; `None`: clients go to replica 1.
    pub balancer: Option<Balancing>,
    /// A mail server (Postfix) the outbox sends each order's confirmation to, through the proxy's
    /// `mail` link; without one the outbox only records emails in its own table.
    pub mail: bool,
    /// A payment provider (`fortress provider`) checkouts authorise each order with, through the
    /// proxy's `payments` link; without one checkouts take no payment.
    pub payments: bool,
    /// The CPUs each service replica may use (Docker's `--cpus`); `None`: as many as the machine has.
    pub service_cpus: Option<f64>,
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
            seed: 0,
            balancer: None,
            mail: false,
            payments: false,
            service_cpus: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Image(#[from] images::ImageError),
    #[error("could not start the {role} container")]
    Start {
        role: Role,
        #[source]
        source: testcontainers::TestcontainersError,
    },
    #[error("{role} was not ready within {deadline:?}; its last answer: {last}")]
    NotReady {
        role: Role,
        deadline: Duration,
        last: String,
    },
    #[error(transparent)]
    UnknownRole(#[from] UnknownRole),
    #[error("{role} is not running or has no published port")]
    NoPort {
        role: Role,
        #[source]
        source: testcontainers::TestcontainersError,
    },
    #[error("could not send `{command}` to the balancer's runtime API")]
    BalancerCommand {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the balancer refused `{command}`: {answer}")]
    BalancerRefused { command: String, answer: String },
    #[error("could not run a command in the {role} container")]
    Exec {
        role: Role,
        #[source]
        source: testcontainers::TestcontainersError,
    },
    #[error("{role} did not answer as expected")]
    Unreachable {
        role: Role,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not build the lab's HTTP client")]
    HttpClient(#[source] reqwest::Error),
    #[error(transparent)]
    Resources(#[from] resources::ResourceError),
}

/// Checks, before anything starts, that this machine has room for `labs` labs and a run folder
/// under `out` (see `resources`).
pub async fn check_room(labs: u32, out: &std::path::Path) -> Result<(), EnvError> {
    let docker = DockerClient::connect().await?;
    let root = docker.root_dir().await?;
    Ok(resources::check(labs, &root, out)?)
}

/// One running container of the lab.
pub struct Node {
    pub role: Role,
    /// The container's name, which is also its host name on the run's network.
    pub name: String,
    pub container: ContainerAsync<GenericImage>,
    /// The container port clients use (a container may publish others: the balancer its stats page).
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
        self.host_port_of(self.port).await
    }

    /// The port on 127.0.0.1 that `container_port` is published on.
    pub async fn host_port_of(&self, container_port: u16) -> Result<u16, EnvError> {
        self.container
            .get_host_port_ipv4(container_port)
            .await
            .map_err(|source| EnvError::NoPort {
                role: self.role,
                source,
            })
    }
}

/// A running topology. Dropping it removes every container and the network of its run.
pub struct Lab {
    pub run_id: String,
    pub network: String,
    pub docker: DockerClient,
    pub postgres: Node,
    pub redis: Node,
    pub proxy: Node,
    pub services: Vec<Node>,
    pub balancer: Option<Node>,
    pub mail: Option<Node>,
    pub provider: Option<Node>,
    pub images: Vec<ImageChoice>,
    /// From the call to `start` until every replica said ready.
    pub ready_in: Duration,
    /// Where that time went: (step, duration), in order.
    pub startup: Vec<(&'static str, Duration)>,
    /// The replicas' admin token: made for this lab, held in memory, never written to a run folder.
    admin_token: String,
    http: reqwest::Client,
    removed: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("run_id", &self.run_id)
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

/// Times the steps of a start, for `env up`'s account of where its seconds went.
struct Steps {
    started: Instant,
    step_started: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            step_started: now,
            done: Vec::new(),
        }
    }

    fn finished(&mut self, step: &'static str) {
        self.done.push((step, self.step_started.elapsed()));
        self.step_started = Instant::now();
    }
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
        let mut steps = Steps::new();
        let docker = DockerClient::connect().await?;
        cleanup::reap_before_start(&docker, progress).await;
        let images = images::for_lab(&docker, spec).await?;
        steps.finished("images (resolve postgres and redis, hash the binary, build if new)");
        for choice in images.all() {
            progress(&format!("image {choice}"));
        }
        let topology = Topology::new(spec, images, random_token());
        docker
            .create_network(&topology.network, &topology.run_id, topology.owner)
            .await?;
        let mut guard = StartGuard(Some(topology.run_id.clone()));
        let started = topology.start().await?;
        steps.finished("create network, start containers");
        progress(&format!(
            "containers started on network {} in {:.1?}",
            started.network,
            steps.started.elapsed()
        ));
        let mut lab = Self {
            run_id: started.run_id,
            network: started.network,
            docker,
            postgres: started.postgres,
            redis: started.redis,
            proxy: started.proxy,
            services: started.services,
            balancer: started.balancer,
            mail: started.mail,
            provider: started.provider,
            images: started.images,
            ready_in: Duration::ZERO,
            startup: Vec::new(),
            admin_token: started.admin_token,
            http: http_client()?,
            removed: false,
        };
        guard.0 = None; // from here on the Lab's own Drop cleans up
        for replica in lab.replicas() {
            lab.wait_ready(replica, spec.ready_deadline).await?;
        }
        steps.finished("service replicas ready (migrations, /readyz)");
        if lab.balancer.is_some() {
            lab.vouch_replicas_ready().await;
            lab.wait_balanced(spec.ready_deadline).await?;
            steps.finished("balancer sees every replica up");
        }
        if lab.mail.is_some() {
            lab.wait_mail_server(spec.ready_deadline).await?;
            steps.finished("mail server greets");
        }
        if lab.provider.is_some() {
            lab.wait_provider(spec.ready_deadline).await?;
            steps.finished("payment provider answers");
        }
        lab.ready_in = steps.started.elapsed();
        lab.startup = steps.done;
        Ok(lab)
    }

    /// What a shell `script` run in `role`'s container printed on its standard output.
    pub async fn exec_in(&self, role: Role, script: &str) -> Result<String, EnvError> {
        let node = self.node(role)?;
        let command = ExecCommand::new(["sh", "-c", script]);
        let exec_error = |source| EnvError::Exec { role, source };
        let mut exec = node.container.exec(command).await.map_err(exec_error)?;
        let stdout = exec.stdout_to_vec().await.map_err(exec_error)?;
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    pub fn node(&self, role: Role) -> Result<&Node, EnvError> {
        match role {
            Role::Postgres => Ok(&self.postgres),
            Role::Redis => Ok(&self.redis),
            Role::Proxy => Ok(&self.proxy),
            Role::Balancer => self
                .balancer
                .as_ref()
                .ok_or_else(|| UnknownRole(role.to_string()).into()),
            Role::Mail => self
                .mail
                .as_ref()
                .ok_or_else(|| UnknownRole(role.to_string()).into()),
            Role::Provider => self
                .provider
                .as_ref()
                .ok_or_else(|| UnknownRole(role.to_string()).into()),
            Role::Service(n) => self
                .services
                .get(usize::try_from(n).unwrap_or(usize::MAX).wrapping_sub(1))
                .ok_or_else(|| UnknownRole(role.to_string()).into()),
        }
    }

    /// The proxy's links in this lab: Postgres and Redis always, the mail server's and the payment
    /// provider's when it has them.
    pub fn links(&self) -> Vec<Link> {
        links(self.mail.is_some(), self.provider.is_some())
    }

    /// The replica numbers, from 1.
    pub fn replicas(&self) -> std::ops::RangeInclusive<u32> {
        1..=u32::try_from(self.services.len()).unwrap_or(u32::MAX)
    }

    /// The base URL of a service replica on 127.0.0.1.
    pub async fn service_url(&self, replica: u32) -> Result<String, EnvError> {
        let port = self.node(Role::Service(replica))?.host_port().await?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Where clients send their requests, on 127.0.0.1: the balancer, else replica 1.
    pub async fn entry_url(&self) -> Result<String, EnvError> {
        match &self.balancer {
            Some(balancer) => Ok(format!("http://127.0.0.1:{}", balancer.host_port().await?)),
            None => self.service_url(1).await,
        }
    }

    /// Waits until Postgres takes a connection and answers `SELECT 1`, for at most `deadline`: a kill
    /// reverted at a trial's last instant leaves it restarting, and a read made then is reset.
    pub async fn wait_postgres(&self, deadline: Duration) -> Result<(), EnvError> {
        use sqlx::Connection;
        let url = self.postgres_url().await?;
        poll::poll_until(Role::Postgres, deadline, Duration::from_millis(200), || async {
            let answered = match sqlx::PgConnection::connect(&url).await {
                Ok(mut db) => sqlx::query("SELECT 1").execute(&mut db).await.map(drop),
                Err(error) => Err(error),
            };
            Ok(match answered {
                Ok(()) => poll::Look::Done(()),
                Err(error) => poll::Look::NotYet(error.to_string()),
            })
        })
        .await
    }

    /// Postgres as seen from this machine (for observation, invariants and database faults).
    pub async fn postgres_url(&self) -> Result<String, EnvError> {
        let port = self.postgres.host_port().await?;
        Ok(containers::postgres_url("127.0.0.1", port))
    }

    pub async fn redis_url(&self) -> Result<String, EnvError> {
        Ok(format!("redis://127.0.0.1:{}", self.redis.host_port().await?))
    }

    /// The fault proxy's control API, on 127.0.0.1.
    pub async fn proxy_url(&self) -> Result<String, EnvError> {
        Ok(format!("http://127.0.0.1:{}", self.proxy.host_port().await?))
    }

    /// The token the replicas' admin routes take.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// An HTTP client with a 5 s timeout, for short calls into the lab.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
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

fn http_client() -> Result<reqwest::Client, EnvError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(EnvError::HttpClient)
}

/// 128 random bits as hex: the admin token of one lab.
fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
