//! A target's lab: its services in containers on a network of the run's own, each reachable there by
//! its Compose name, published on 127.0.0.1 only, labelled with the run and its owner so a killed
//! run's lab is reaped like the reference lab's; and the fault proxy (the lab binary's image) on every
//! link of the Fortress section, with the `from` service's address pointed at it.
//!
//! Services start in `depends_on` order, each once its dependencies meet their condition (started,
//! healthy, completed). The lab is ready when the entry's readiness path answers 2xx; if it never
//! does, the error carries the entry service's own last log lines.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use testcontainers::bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, HealthConfig, HealthStatusEnum,
    HostConfig, NetworkingConfig, PortBinding,
};
use testcontainers::bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};

use super::{Condition, ImageSource, Link, Service, Target, pointed_at};
use crate::env::balancer::{self, Balancing, Rotation, ServerStats, Servers};
use crate::env::cleanup;
use crate::env::docker::{DockerClient, DockerError, ROLE_LABEL, RUN_LABEL};
use crate::env::images::{self, ImageError};
use crate::env::owner::Owner;

/// The proxy's control port inside the lab (never a user's link port in practice; checked).
const PROXY_CONTROL_PORT: u16 = 8474;
/// How often a dependency's condition and the entry's readiness are asked.
const POLL: Duration = Duration::from_millis(250);
/// How many of a service's last log lines an error carries.
const LOG_LINES: &str = "30";

#[derive(Debug, thiserror::Error)]
pub enum TargetLabError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(
        "the image {image} of service {service} is not in the local Docker, and Fortress pulls nothing: \
         build or load it first, or give the service a `build:` context"
    )]
    MissingImage { service: String, image: String },
    #[error("the services' depends_on go round in a circle among: {0}")]
    Cycle(String),
    #[error("two links listen on port {port} ({first} and {second}): give them different ports")]
    PortClash {
        port: u16,
        first: String,
        second: String,
    },
    #[error("{service} did not become {condition} within {deadline:?}; its last log lines:\n{logs}")]
    NotUp {
        service: String,
        condition: &'static str,
        deadline: Duration,
        logs: String,
    },
    #[error(
        "{service} was not ready within {deadline:?}: GET {url} last gave {last}; its last log lines:\n{logs}"
    )]
    NotReady {
        service: String,
        url: String,
        deadline: Duration,
        last: String,
        logs: String,
    },
    #[error(
        "the metrics password is read from {source_name}, which is not set{where_}: set it, or change \
         x-fortress.metrics.basic_auth"
    )]
    NoPassword { source_name: String, where_: String },
    #[error("GET {url} answered {status}: {advice}")]
    MetricsRefused {
        url: String,
        status: u16,
        advice: &'static str,
    },
    #[error("{container} has no published port {port}")]
    NoPort { container: String, port: u16 },
    #[error(transparent)]
    Balancer(#[from] crate::env::EnvError),
}

/// How to start a target's lab.
#[derive(Debug, Clone)]
pub struct TargetLabSpec {
    /// The running fortress binary, which the proxy container runs.
    pub lab_binary: PathBuf,
    /// How long each dependency condition, and the entry's readiness, may take.
    pub deadline: Duration,
    /// Per service, environment variables set on top of the Compose file's (a variant's overrides).
    pub environment: BTreeMap<String, BTreeMap<String, String>>,
}

/// One container of the lab.
#[derive(Debug, Clone)]
pub struct TargetContainer {
    pub service: String,
    pub replica: u32,
    pub name: String,
}

/// A target's lab, running. Dropping it removes every container and the network.
#[derive(Debug)]
pub struct TargetLab {
    pub run_id: String,
    pub network: String,
    pub containers: Vec<TargetContainer>,
    /// `http://127.0.0.1:<port>`: the entry service's first replica.
    pub entry_url: String,
    /// Each database of the section, its URL with the published address filled in.
    pub database_urls: BTreeMap<String, String>,
    /// From the call to `start` until the entry answered ready.
    pub ready_in: Duration,
    /// Each service's image, as run.
    pub images: BTreeMap<String, String>,
    /// The links through the proxy.
    pub links: Vec<Link>,
    /// The entry's own `/metrics`, when the section names it.
    pub metrics: Option<super::Metrics>,
    /// The databases of the section.
    pub databases: Vec<super::Database>,
    /// The metrics page's credentials, when it asks for them.
    metrics_login: Option<MetricsLogin>,
    entry_service: String,
    /// For the balancer's stats page, polled every 100 ms while a deploy waits.
    http: reqwest::Client,
    docker: DockerClient,
    removed: bool,
}

impl TargetLab {
    /// Starts every service of `target` and waits until its entry is ready.
    pub async fn start(
        target: &Target,
        spec: &TargetLabSpec,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Self, TargetLabError> {
        let began = Instant::now();
        let docker = DockerClient::connect().await?;
        cleanup::reap_before_start(&docker, progress).await;
        let order = start_order(target)?;
        let images = resolve_images(&docker, target, progress).await?;
        let proxy_image = match target.links.is_empty() {
            true => None,
            false => Some(images::lab_image(&docker, &spec.lab_binary).await?.image),
        };
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let mut lab = Self {
            network: format!("fortress-{run_id}"),
            run_id,
            containers: Vec::new(),
            entry_url: String::new(),
            database_urls: BTreeMap::new(),
            ready_in: Duration::ZERO,
            links: target.links.clone(),
            images: images.clone(),
            metrics: target.metrics.clone(),
            databases: target.databases.clone(),
            metrics_login: MetricsLogin::read(target, spec)?,
            entry_service: target.entry.service.clone(),
            http: reqwest::Client::new(),
            docker,
            removed: false,
        };
        lab.docker
            .create_network(&lab.network, &lab.run_id, Owner::this())
            .await?;
        let mut started = Vec::new();
        let starter = Starter {
            lab: &lab,
            target,
            owner: Owner::this(),
            environment: &spec.environment,
        };
        if let Some(image) = proxy_image {
            started.push(lab.create_and_start(starter.proxy(&image)?).await?);
        }
        for service in order {
            starter.wait_for_dependencies(service, spec.deadline).await?;
            for replica in 1..=service.replicas {
                let request = starter.replica(service, replica, &images[&service.name]);
                started.push(lab.create_and_start(request).await?);
            }
            progress(&format!(
                "{} started ({} replica(s))",
                service.name, service.replicas
            ));
        }
        if let Some(balancing) = target.entry.balancer {
            let image = balancer_image(&lab.docker).await?;
            started.push(lab.create_and_start(starter.balancer(balancing, &image)).await?);
            progress("balancer started (HAProxy in front of the entry's replicas)");
        }
        lab.containers = started;
        lab.publish_addresses(target).await?;
        lab.wait_ready(target, spec.deadline).await?;
        lab.check_metrics_page().await?;
        lab.ready_in = began.elapsed();
        Ok(lab)
    }

    /// Removes every container and the network of this run, and says what it removed.
    pub async fn shutdown(mut self) -> Result<cleanup::Removed, DockerError> {
        self.removed = true;
        cleanup::remove_runs(&self.docker, Some(&self.run_id)).await
    }

    pub fn container_name(&self, service: &str, replica: u32) -> String {
        format!("fortress-{}-{service}-{replica}", self.run_id)
    }

    fn proxy_name(&self) -> String {
        format!("fortress-{}-proxy", self.run_id)
    }

    fn balancer_name(&self) -> String {
        format!("fortress-{}-balancer", self.run_id)
    }

    /// `db`'s connection URL at its published address now: a container started again may have been
    /// given another port.
    pub async fn database_url(&self, db: &super::Database) -> Result<String, TargetLabError> {
        let port = self
            .host_port(&self.container_name(&db.service, 1), db.port)
            .await?;
        Ok(db.url.replace("{address}", &format!("127.0.0.1:{port}")))
    }

    /// The entry's replicas.
    pub fn entry_replicas(&self) -> u32 {
        let replicas = self.containers.iter().filter(|c| c.service == self.entry_service);
        replicas.count() as u32
    }

    /// The entry's replicas as the balancer sees them now (`None` without a balancer, or when it
    /// does not answer).
    pub async fn balancer_stats(&self) -> Option<Vec<ServerStats>> {
        let port = self
            .host_port(&self.balancer_name(), balancer::STATS_PORT)
            .await
            .ok()?;
        let url = format!("http://127.0.0.1:{port}/stats;csv");
        balancer::stats(&self.http, &url, &self.servers()).await
    }

    /// Takes an entry replica out of the balancer's rotation, or puts it back.
    pub async fn rotate(&self, replica: u32, rotation: Rotation) -> Result<(), TargetLabError> {
        let port = self
            .host_port(&self.balancer_name(), balancer::ADMIN_PORT)
            .await?;
        Ok(balancer::rotate(port, &self.servers(), replica, rotation).await?)
    }

    /// Waits until `replica` is out of rotation with nothing in flight.
    pub async fn wait_drained(&self, replica: u32, deadline: Duration) -> Result<(), TargetLabError> {
        Ok(balancer::wait_drained(|| self.balancer_stats(), replica, deadline).await?)
    }

    /// Waits until every entry replica is in rotation and up.
    pub async fn wait_balanced(&self, deadline: Duration) -> Result<(), TargetLabError> {
        let wanted = self.entry_replicas() as usize;
        Ok(balancer::wait_balanced(|| self.balancer_stats(), wanted, deadline).await?)
    }

    /// Each entry replica's container start time, in replica order (a restarted one has a new one).
    pub async fn entry_start_times(&self) -> Result<Vec<String>, TargetLabError> {
        let mut started = Vec::new();
        for container in self.containers.iter().filter(|c| c.service == self.entry_service) {
            let inspected = (self.docker.api().inspect_container(&container.name, None).await)
                .map_err(DockerError::from)?;
            started.push(inspected.state.and_then(|s| s.started_at).unwrap_or_default());
        }
        Ok(started)
    }

    fn servers(&self) -> Servers {
        Servers::Of(self.entry_service.clone())
    }

    /// Each replica's `/metrics` page at its published address now, in replica order; `None` for a
    /// replica whose port cannot be found (a stopped container has none). Empty without `metrics`.
    pub async fn metrics_urls(&self) -> Vec<Option<String>> {
        let Some(metrics) = &self.metrics else {
            return Vec::new();
        };
        let replicas = (self.containers.iter()).filter(|c| c.service == self.entry_service);
        let urls = replicas.map(|c| async move {
            let port = self.host_port(&c.name, metrics.port).await.ok()?;
            Some(format!("http://127.0.0.1:{port}{}", metrics.path))
        });
        futures::future::join_all(urls).await
    }

    /// A GET of a metrics page, with the page's credentials when it asks for them.
    pub fn metrics_request(&self, http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        let request = http.get(url);
        match &self.metrics_login {
            Some(login) => request.basic_auth(&login.user, Some(&login.password)),
            None => request,
        }
    }

    /// Reads the first replica's metrics page once, so that a page that refuses Fortress fails the
    /// start with what to change, instead of a run without service figures. Any other failure is
    /// the service's own and is left to the run's samples.
    async fn check_metrics_page(&self) -> Result<(), TargetLabError> {
        let Some(Some(url)) = self.metrics_urls().await.into_iter().next() else {
            return Ok(());
        };
        // The lab's client has no timeout of its own: a page that never answers must not hold the start.
        let answer = (self.metrics_request(&self.http, &url))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let status = match answer {
            Ok(answer) => answer.status(),
            Err(error) => {
                tracing::warn!(url, error = %reference_service::error::cause_chain(&error), "the metrics page did not answer");
                return Ok(());
            }
        };
        if status != reqwest::StatusCode::UNAUTHORIZED && status != reqwest::StatusCode::FORBIDDEN {
            return Ok(());
        }
        let advice = match self.metrics_login {
            None => {
                "the page asks for credentials: add `basic_auth: { user: ..., password_in: ... }` to x-fortress.metrics"
            }
            Some(_) => {
                "the page refused the credentials of x-fortress.metrics.basic_auth: check the user and the password's variable"
            }
        };
        Err(TargetLabError::MetricsRefused {
            url,
            status: status.as_u16(),
            advice,
        })
    }

    /// Every service container's alarming lines (errors, warnings, tracebacks), each with the time
    /// Docker logged it: the run keeps them, and a class of 5xx gets those of its seconds. A log
    /// that cannot be read is left out, with a warning: this is evidence, not the run.
    pub async fn worrying_lines(&self) -> Vec<crate::env::logs::WorryingLines> {
        let mut found = Vec::new();
        for container in &self.containers {
            match timestamped_log(&self.docker, &container.name).await {
                Ok(text) => found.push(crate::env::logs::kept(
                    format!("{}-{}", container.service, container.replica),
                    &text,
                    crate::env::logs::any_worrying,
                )),
                Err(error) => tracing::warn!(%error, container = container.name, "could not read its log"),
            }
        }
        found
    }

    /// The proxy's control API, on 127.0.0.1.
    pub async fn proxy_url(&self) -> Result<String, TargetLabError> {
        let port = self.host_port(&self.proxy_name(), PROXY_CONTROL_PORT).await?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    pub fn docker(&self) -> &DockerClient {
        &self.docker
    }

    /// The name the proxy gives `link` (`from-to`).
    pub fn link_name(&self, link: &Link) -> String {
        link_name(link)
    }

    /// Creates and starts one container (labelled: if anything fails later, the run's removal finds
    /// it).
    async fn create_and_start(&self, request: ContainerRequest) -> Result<TargetContainer, TargetLabError> {
        let options = CreateContainerOptionsBuilder::new().name(&request.name).build();
        let api = self.docker.api();
        api.create_container(Some(options), request.body)
            .await
            .map_err(DockerError::from)?;
        api.start_container(&request.name, None)
            .await
            .map_err(DockerError::from)?;
        Ok(TargetContainer {
            service: request.service,
            replica: request.replica,
            name: request.name,
        })
    }

    /// The entry's URL and each database's, on the ports the engine published.
    async fn publish_addresses(&mut self, target: &Target) -> Result<(), TargetLabError> {
        let (front, port) = match target.entry.balancer {
            Some(_) => (self.balancer_name(), balancer::FRONT_PORT),
            None => (self.container_name(&target.entry.service, 1), target.entry.port),
        };
        self.entry_url = format!("http://127.0.0.1:{}", self.host_port(&front, port).await?);
        for db in &target.databases {
            let port = self
                .host_port(&self.container_name(&db.service, 1), db.port)
                .await?;
            let url = db.url.replace("{address}", &format!("127.0.0.1:{port}"));
            self.database_urls.insert(db.name.clone(), url);
        }
        Ok(())
    }

    async fn host_port(&self, container: &str, port: u16) -> Result<u16, TargetLabError> {
        let inspected =
            (self.docker.api().inspect_container(container, None).await).map_err(DockerError::from)?;
        let published = (inspected.network_settings.and_then(|n| n.ports))
            .and_then(|ports| ports.get(&format!("{port}/tcp")).cloned().flatten())
            .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse().ok());
        published.ok_or_else(|| TargetLabError::NoPort {
            container: container.to_owned(),
            port,
        })
    }

    /// Polls the entry's readiness path until it answers 2xx; gives up early if the entry's first
    /// replica exits.
    async fn wait_ready(&self, target: &Target, deadline: Duration) -> Result<(), TargetLabError> {
        let url = format!("{}{}", self.entry_url, target.entry.ready);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build();
        let entry = self.container_name(&target.entry.service, 1);
        let until = Instant::now() + deadline;
        let mut last = "no answer yet".to_owned();
        while Instant::now() < until {
            if let Ok(http) = &http {
                match http.get(&url).send().await {
                    Ok(answer) if answer.status().is_success() => return Ok(()),
                    Ok(answer) => last = format!("HTTP {}", answer.status()),
                    Err(error) => last = reference_service::error::cause_chain(&error),
                }
            }
            if exited(&self.docker, &entry).await {
                last = "the container exited".to_owned();
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        Err(TargetLabError::NotReady {
            service: target.entry.service.clone(),
            url,
            deadline,
            last,
            logs: last_log_lines(&self.docker, &entry).await,
        })
    }
}

/// The metrics page's user and password, read when the lab starts. Its `Debug` shows no password,
/// and nothing writes it anywhere but the request's header (which reqwest marks sensitive).
#[derive(Clone)]
struct MetricsLogin {
    user: String,
    password: String,
}

impl std::fmt::Debug for MetricsLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (f.debug_struct("MetricsLogin"))
            .field("user", &self.user)
            .field("password", &"(not shown)")
            .finish()
    }
}

impl MetricsLogin {
    /// The credentials `target`'s metrics section names, the password read from the entry's
    /// environment (with the variant's overrides) or from Fortress's own.
    fn read(target: &Target, spec: &TargetLabSpec) -> Result<Option<Self>, TargetLabError> {
        let Some(auth) = target.metrics.as_ref().and_then(|m| m.basic_auth.as_ref()) else {
            return Ok(None);
        };
        let entry = &target.entry.service;
        let password = match &auth.password {
            super::PasswordSource::Service(variable) => (spec.environment.get(entry))
                .and_then(|overrides| overrides.get(variable))
                .or_else(|| target.service(entry)?.environment.get(variable))
                .cloned()
                .ok_or_else(|| TargetLabError::NoPassword {
                    source_name: variable.clone(),
                    where_: format!(" in {entry}'s environment"),
                })?,
            super::PasswordSource::Fortress(variable) => {
                std::env::var(variable).map_err(|_| TargetLabError::NoPassword {
                    source_name: variable.clone(),
                    where_: " in Fortress's environment".to_owned(),
                })?
            }
        };
        Ok(Some(Self {
            user: auth.user.clone(),
            password,
        }))
    }
}

impl Drop for TargetLab {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = cleanup::remove_run_blocking(&self.run_id)
        {
            tracing::warn!(%error, run_id = self.run_id, "could not clean up the target's lab; run `fortress cleanup`");
        }
    }
}

/// A container to create: its name, what it is, and Docker's create body.
struct ContainerRequest {
    service: String,
    replica: u32,
    name: String,
    body: ContainerCreateBody,
}

/// What every container of the lab is made with.
struct Starter<'a> {
    lab: &'a TargetLab,
    target: &'a Target,
    owner: Option<Owner>,
    environment: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl Starter<'_> {
    fn labels(&self, role: String) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (RUN_LABEL.to_owned(), self.lab.run_id.clone()),
            (ROLE_LABEL.to_owned(), role),
        ]);
        for (key, value) in self.owner.iter().flat_map(Owner::labels) {
            labels.insert(key.to_owned(), value);
        }
        labels
    }

    /// On the run's network, known there by `alias`; `published` ports on 127.0.0.1 at free ports,
    /// except a `pinned` one (container port, host port), which keeps its host port.
    fn placement(
        &self,
        alias: &str,
        published: &[u16],
        pinned: Option<(u16, u16)>,
    ) -> (HostConfig, NetworkingConfig) {
        let binding = |port: u16| PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(match pinned {
                Some((container, host)) if container == port => host.to_string(),
                _ => String::new(),
            }),
        };
        let host = HostConfig {
            network_mode: Some(self.lab.network.clone()),
            port_bindings: Some(
                published
                    .iter()
                    .map(|p| (format!("{p}/tcp"), Some(vec![binding(*p)])))
                    .collect(),
            ),
            ..Default::default()
        };
        let endpoint = EndpointSettings {
            aliases: Some(vec![alias.to_owned()]),
            ..Default::default()
        };
        let networking = NetworkingConfig {
            endpoints_config: Some(HashMap::from([(self.lab.network.clone(), endpoint)])),
        };
        (host, networking)
    }

    /// `fortress proxy` with one listener per link, on the link's own port.
    fn proxy(&self, image: &str) -> Result<ContainerRequest, TargetLabError> {
        let mut cmd = vec![
            "proxy".to_owned(),
            "--control".to_owned(),
            format!("0.0.0.0:{PROXY_CONTROL_PORT}"),
        ];
        let mut listening: BTreeMap<u16, String> =
            BTreeMap::from([(PROXY_CONTROL_PORT, "the proxy's control".to_owned())]);
        for link in &self.target.links {
            let name = link_name(link);
            if let Some(first) = listening.insert(link.port, name.clone()) {
                return Err(TargetLabError::PortClash {
                    port: link.port,
                    first,
                    second: name,
                });
            }
            let http = if link.http { "=http" } else { "" };
            cmd.extend([
                "--link".to_owned(),
                format!("{name}=0.0.0.0:{}={}:{}{http}", link.port, link.to, link.port),
            ]);
        }
        let (host, networking) = self.placement("fortress-proxy", &[PROXY_CONTROL_PORT], None);
        Ok(ContainerRequest {
            service: "proxy".into(),
            replica: 1,
            name: self.lab.proxy_name(),
            body: ContainerCreateBody {
                image: Some(image.to_owned()),
                cmd: Some(cmd),
                labels: Some(self.labels("proxy".into())),
                exposed_ports: Some(vec![format!("{PROXY_CONTROL_PORT}/tcp")]),
                host_config: Some(host),
                networking_config: Some(networking),
                ..Default::default()
            },
        })
    }

    /// The published ports of a service: its own, the entry's and its databases'.
    fn published(&self, service: &Service) -> Vec<u16> {
        let mut ports: Vec<u16> = service.ports.iter().map(|p| p.container).collect();
        if self.target.entry.service == service.name && self.target.entry.balancer.is_none() {
            ports.push(self.target.entry.port);
        }
        if let Some(metrics) =
            (self.target.metrics.as_ref()).filter(|_| self.target.entry.service == service.name)
        {
            ports.push(metrics.port);
        }
        ports.extend(
            self.target
                .databases
                .iter()
                .filter(|d| d.service == service.name)
                .map(|d| d.port),
        );
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The entry's first replica keeps one host port for the whole run: Docker gives a stopped and
    /// restarted container a new ephemeral port, and the load, started on the entry's address,
    /// would knock on the old one after a stop or kill of the entry is reverted. The port is one the
    /// kernel has just handed out and taken back.
    fn pinned_entry(&self, service: &Service, replica: u32) -> Option<(u16, u16)> {
        let entry = &self.target.entry;
        if service.name != entry.service || replica != 1 || entry.balancer.is_some() {
            return None;
        }
        free_port().map(|port| (entry.port, port))
    }

    /// HAProxy in front of the entry's replicas, health-checking its ready path. Its configuration
    /// comes in the environment and is written where it is read, so any HAProxy image with a shell
    /// serves; its front port is pinned, as an unbalanced entry's is.
    fn balancer(&self, balancing: Balancing, image: &str) -> ContainerRequest {
        let entry = &self.target.entry;
        let replicas = self.target.service(&entry.service).map_or(1, |s| s.replicas);
        let servers: Vec<(String, String)> = (1..=replicas)
            .map(|n| {
                (
                    format!("{}-{n}", entry.service),
                    self.lab.container_name(&entry.service, n),
                )
            })
            .collect();
        let backend = balancer::Backend {
            servers: &servers,
            port: entry.port,
            ready: &entry.ready,
        };
        let config = balancer::config(balancing, &backend);
        let published = [balancer::FRONT_PORT, balancer::STATS_PORT, balancer::ADMIN_PORT];
        let pinned = free_port().map(|port| (balancer::FRONT_PORT, port));
        let (host, networking) = self.placement("fortress-balancer", &published, pinned);
        let script = "printf '%s' \"$FORTRESS_HAPROXY_CFG\" > /tmp/haproxy.cfg && exec haproxy -W -db -f /tmp/haproxy.cfg";
        ContainerRequest {
            service: "balancer".into(),
            replica: 1,
            name: self.lab.balancer_name(),
            body: ContainerCreateBody {
                image: Some(image.to_owned()),
                entrypoint: Some(vec!["sh".into(), "-c".into(), script.into()]),
                env: Some(vec![format!("FORTRESS_HAPROXY_CFG={config}")]),
                labels: Some(self.labels("balancer".into())),
                exposed_ports: Some(published.iter().map(|p| format!("{p}/tcp")).collect()),
                host_config: Some(host),
                networking_config: Some(networking),
                ..Default::default()
            },
        }
    }

    fn replica(&self, service: &Service, replica: u32, image: &str) -> ContainerRequest {
        let mut environment = service.environment.clone();
        if let Some(overrides) = self.environment.get(&service.name) {
            environment.extend(overrides.clone());
        }
        for link in self.target.links.iter().filter(|l| l.from == service.name) {
            if let Some(value) = environment.get_mut(&link.address_in) {
                *value = pointed_at(value, &link.to, &self.lab.proxy_name());
            }
        }
        let published = self.published(service);
        let pinned = self.pinned_entry(service, replica);
        let (host, networking) = self.placement(&service.name, &published, pinned);
        let mut exposed: Vec<String> = published.iter().map(|p| format!("{p}/tcp")).collect();
        exposed.extend(service.expose.iter().map(|p| format!("{p}/tcp")));
        ContainerRequest {
            service: service.name.clone(),
            replica,
            name: self.lab.container_name(&service.name, replica),
            body: ContainerCreateBody {
                image: Some(image.to_owned()),
                cmd: service.command.clone(),
                entrypoint: service.entrypoint.clone(),
                env: Some(environment.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                working_dir: service.working_dir.clone(),
                user: service.user.clone(),
                labels: Some(self.labels(format!("{}-{replica}", service.name))),
                exposed_ports: Some(exposed),
                healthcheck: service.healthcheck.as_ref().map(health_config),
                host_config: Some(host),
                networking_config: Some(networking),
                ..Default::default()
            },
        }
    }

    /// Waits until every dependency of `service` meets its condition (on its first replica).
    async fn wait_for_dependencies(
        &self,
        service: &Service,
        deadline: Duration,
    ) -> Result<(), TargetLabError> {
        for (on, condition) in &service.depends_on {
            let container = self.lab.container_name(on, 1);
            let until = Instant::now() + deadline;
            loop {
                match condition_met(&self.lab.docker, &container, *condition).await {
                    Some(true) => break,
                    Some(false) | None if Instant::now() < until => tokio::time::sleep(POLL).await,
                    _ => {
                        return Err(TargetLabError::NotUp {
                            service: on.clone(),
                            condition: condition_name(*condition),
                            deadline,
                            logs: last_log_lines(&self.lab.docker, &container).await,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn link_name(link: &Link) -> String {
    format!("{}-{}", link.from, link.to)
}

fn condition_name(condition: Condition) -> &'static str {
    match condition {
        Condition::ServiceStarted => "started",
        Condition::ServiceHealthy => "healthy",
        Condition::ServiceCompletedSuccessfully => "completed successfully",
    }
}

/// Whether `container` meets `condition` now: `None` when it never can any more (it exited when it
/// had to run, or exited with an error when it had to complete).
async fn condition_met(docker: &DockerClient, container: &str, condition: Condition) -> Option<bool> {
    let state = docker
        .api()
        .inspect_container(container, None)
        .await
        .ok()?
        .state?;
    let exited = matches!(
        state.status,
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
    );
    match condition {
        Condition::ServiceCompletedSuccessfully if exited => {
            Some(state.exit_code == Some(0)).filter(|ok| *ok)
        }
        Condition::ServiceCompletedSuccessfully => Some(false),
        _ if exited => None,
        Condition::ServiceStarted => Some(state.running == Some(true)),
        Condition::ServiceHealthy => {
            Some(state.health.and_then(|h| h.status) == Some(HealthStatusEnum::HEALTHY))
        }
    }
}

/// Whether `container` has stopped running (it exited, or is gone).
async fn exited(docker: &DockerClient, container: &str) -> bool {
    let state = (docker.api().inspect_container(container, None).await.ok()).and_then(|i| i.state);
    state.is_none_or(|s| {
        matches!(
            s.status,
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
        )
    })
}

fn health_config(check: &super::Healthcheck) -> HealthConfig {
    let nanos = |d: Option<Duration>| d.map(|d| d.as_nanos() as i64);
    HealthConfig {
        test: check.test.clone(),
        interval: nanos(check.interval),
        timeout: nanos(check.timeout),
        retries: check.retries.map(i64::from),
        start_period: nanos(check.start_period),
        ..Default::default()
    }
}

/// The last lines `container` wrote (stdout and stderr), for an error a user can act on.
async fn last_log_lines(docker: &DockerClient, container: &str) -> String {
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail(LOG_LINES)
        .build();
    let mut logs = docker.api().logs(container, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&chunk.to_string());
    }
    if text.trim().is_empty() {
        return "  (none)".to_owned();
    }
    text.lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A port on 127.0.0.1 the kernel has just handed out and taken back, to pin a published port to.
fn free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    listener.local_addr().ok().map(|address| address.port())
}

/// A container's whole log, stdout and stderr, each line after Docker's timestamp.
async fn timestamped_log(docker: &DockerClient, container: &str) -> Result<String, DockerError> {
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .build();
    let mut logs = docker.api().logs(container, Some(options));
    let mut text = String::new();
    while let Some(chunk) = logs.next().await {
        text.push_str(&chunk.map_err(DockerError::from)?.to_string());
    }
    Ok(text)
}

/// Services in an order where each comes after everything it depends on (the file's order where
/// `depends_on` leaves a choice).
fn start_order(target: &Target) -> Result<Vec<&Service>, TargetLabError> {
    let mut order: Vec<&Service> = Vec::new();
    while order.len() < target.services.len() {
        let next = (target.services.iter())
            .filter(|s| !order.iter().any(|o| o.name == s.name))
            .find(|s| {
                s.depends_on
                    .iter()
                    .all(|(on, _)| order.iter().any(|o| &o.name == on))
            });
        match next {
            Some(service) => order.push(service),
            None => {
                let left: Vec<&str> = (target.services.iter())
                    .filter(|s| !order.iter().any(|o| o.name == s.name))
                    .map(|s| s.name.as_str())
                    .collect();
                return Err(TargetLabError::Cycle(left.join(", ")));
            }
        }
    }
    Ok(order)
}

/// The lab's HAProxy image, which `ci/setup` makes.
async fn balancer_image(docker: &DockerClient) -> Result<String, TargetLabError> {
    let image = crate::env::images::BALANCER_DEFAULT;
    match docker.image_exists(image).await? {
        true => Ok(image.to_owned()),
        false => Err(TargetLabError::MissingImage {
            service: "balancer".into(),
            image: image.to_owned(),
        }),
    }
}

/// Each service's image: present in the local Docker, or built from its context now.
async fn resolve_images(
    docker: &DockerClient,
    target: &Target,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<BTreeMap<String, String>, TargetLabError> {
    let base = target.file.parent().unwrap_or(Path::new("."));
    let mut images = BTreeMap::new();
    for service in &target.services {
        let image = match &service.image {
            ImageSource::Present(image) if docker.image_exists(image).await? => image.clone(),
            ImageSource::Present(image) => {
                return Err(TargetLabError::MissingImage {
                    service: service.name.clone(),
                    image: image.clone(),
                });
            }
            ImageSource::Built { build, tag } => {
                let image = tag
                    .clone()
                    .unwrap_or_else(|| format!("fortress-target/{}:latest", service.name));
                progress(&format!("building {image} from {}", build.context));
                let context = base.join(&build.context);
                images::build_for_target(
                    &image,
                    &context,
                    build.dockerfile.as_deref().map(Path::new),
                    &build.args,
                )
                .await?;
                image
            }
        };
        images.insert(service.name.clone(), image);
    }
    Ok(images)
}
