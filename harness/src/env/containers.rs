//! What each container of a lab is started with: its image, name, labels, command, environment, and
//! its ports published on 127.0.0.1.

use std::time::Duration;

use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerRequest, GenericImage, ImageExt};

use super::balancer::{self, Balancing};
use super::docker::{ROLE_LABEL, RUN_LABEL};
use super::images::{ImageChoice, LabImages};
use super::owner::Owner;
use super::{EnvError, LabSpec, Node};
use crate::vocabulary::{Link, Role};

const PG_PASSWORD: &str = "fortress";
const SERVICE_PORT: u16 = 8080;
const PROXY_CONTROL_PORT: u16 = 7000;

/// The port a dependency listens on, in its container and on the proxy.
fn port_of(link: Link) -> u16 {
    match link {
        Link::Postgres => 5432,
        Link::Redis => 6379,
        Link::Mail => 25,
        Link::Payments => 9000,
    }
}

/// The shop database's URL on `host:port`.
pub(super) fn postgres_url(host: &str, port: u16) -> String {
    format!("postgres://postgres:{PG_PASSWORD}@{host}:{port}/shop")
}

/// A lab about to start: its run id, network, images and admin token.
pub(super) struct Topology {
    pub run_id: String,
    pub network: String,
    images: LabImages,
    admin_token: String,
    /// This process, named on every container so a later command can tell if it was killed.
    pub owner: Option<Owner>,
    replicas: u32,
    db_pool_size: u32,
    seed: u64,
    balancing: Option<Balancing>,
    mail: bool,
    payments: bool,
    service_cpus: Option<f64>,
}

/// Every container of a lab, started.
pub(super) struct Started {
    pub run_id: String,
    pub network: String,
    pub postgres: Node,
    pub redis: Node,
    pub proxy: Node,
    pub services: Vec<Node>,
    pub balancer: Option<Node>,
    pub mail: Option<Node>,
    pub provider: Option<Node>,
    pub images: Vec<ImageChoice>,
    pub admin_token: String,
}

impl Topology {
    pub fn new(spec: &LabSpec, images: LabImages, admin_token: String) -> Self {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        Self {
            network: format!("fortress-{run_id}"),
            run_id,
            images,
            admin_token,
            owner: Owner::this(),
            replicas: spec.replicas.max(1),
            db_pool_size: spec.db_pool_size,
            seed: spec.seed,
            balancing: spec.balancer,
            mail: spec.mail,
            payments: spec.payments,
            service_cpus: spec.service_cpus,
        }
    }

    fn container_name(&self, role: Role) -> String {
        format!("fortress-{}-{role}", self.run_id)
    }

    /// What every lab container has: the run's network, a name that is its host name there, the run
    /// and role labels, and its ports published on 127.0.0.1 only.
    fn request(&self, image: &ImageChoice, role: Role, ports: &[u16]) -> ContainerRequest<GenericImage> {
        self.limited_request(image, role, ports, None)
    }

    /// `request`, with the container's CPUs capped at `cpus` (Docker's `--cpus`) when given.
    fn limited_request(
        &self,
        image: &ImageChoice,
        role: Role,
        ports: &[u16],
        cpus: Option<f64>,
    ) -> ContainerRequest<GenericImage> {
        let (name, tag) = image.image.rsplit_once(':').unwrap_or((&image.image, "latest"));
        let mut image = GenericImage::new(name, tag);
        for &port in ports {
            image = image.with_exposed_port(ContainerPort::Tcp(port));
        }
        let mut request = image
            .with_wait_for(WaitFor::Nothing)
            .with_network(self.network.clone())
            .with_container_name(self.container_name(role))
            .with_label(RUN_LABEL, self.run_id.clone())
            .with_label(ROLE_LABEL, role.to_string())
            .with_host_config_modifier(host_config(ports.to_vec(), cpus))
            .with_startup_timeout(Duration::from_secs(60));
        for (key, value) in self.owner.iter().flat_map(Owner::labels) {
            request = request.with_label(key, value);
        }
        request
    }

    fn postgres(&self) -> ContainerRequest<GenericImage> {
        self.request(&self.images.postgres, Role::Postgres, &[port_of(Link::Postgres)])
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
            ])
    }

    fn redis(&self) -> ContainerRequest<GenericImage> {
        self.request(&self.images.redis, Role::Redis, &[port_of(Link::Redis)])
    }

    /// `fortress proxy` with one link per dependency: `postgres=0.0.0.0:5432=<postgres container>:5432`.
    fn proxy(&self) -> ContainerRequest<GenericImage> {
        let mut cmd = vec![
            "proxy".to_owned(),
            "--control".to_owned(),
            format!("0.0.0.0:{PROXY_CONTROL_PORT}"),
            "--seed".to_owned(),
            self.seed.to_string(),
        ];
        for link in super::links(self.mail, self.payments) {
            let port = port_of(link);
            let upstream = self.container_name(link.role());
            let http = if link.carries_http() { "=http" } else { "" };
            cmd.extend([
                "--link".to_owned(),
                format!("{link}=0.0.0.0:{port}={upstream}:{port}{http}"),
            ]);
        }
        self.request(&self.images.lab, Role::Proxy, &[PROXY_CONTROL_PORT])
            .with_cmd(cmd)
    }

    /// Postfix, taking mail for any address on port 25.
    fn mail(&self, image: &ImageChoice) -> ContainerRequest<GenericImage> {
        self.request(image, Role::Mail, &[port_of(Link::Mail)])
    }

    /// `fortress provider`, the payment provider stand-in, on the lab binary's image.
    fn provider(&self) -> ContainerRequest<GenericImage> {
        let port = port_of(Link::Payments);
        self.request(&self.images.lab, Role::Provider, &[port]).with_cmd([
            "provider".to_owned(),
            "--listen".to_owned(),
            format!("0.0.0.0:{port}"),
        ])
    }

    /// `fortress service`, reaching Postgres, Redis, the mail server and the payment provider (those it
    /// has) through the proxy.
    fn replica(&self, n: u32) -> ContainerRequest<GenericImage> {
        let proxy = self.container_name(Role::Proxy);
        let mut request = self.limited_request(
            &self.images.lab,
            Role::Service(n),
            &[SERVICE_PORT],
            self.service_cpus,
        );
        if self.mail {
            request = request.with_env_var("SMTP_ADDR", format!("{proxy}:{}", port_of(Link::Mail)));
        }
        if self.payments {
            let url = format!("http://{proxy}:{}", port_of(Link::Payments));
            request = request.with_env_var("PAYMENTS_URL", url);
        }
        request
            .with_cmd(["service"])
            .with_env_var("LISTEN_ADDR", format!("0.0.0.0:{SERVICE_PORT}"))
            .with_env_var("DATABASE_URL", postgres_url(&proxy, port_of(Link::Postgres)))
            .with_env_var("REDIS_URL", format!("redis://{proxy}:{}", port_of(Link::Redis)))
            .with_env_var("ADMIN_TOKEN", self.admin_token.clone())
            .with_env_var("DB_POOL_SIZE", self.db_pool_size.to_string())
    }

    /// HAProxy with this run's configuration, balancing over every replica by container name.
    fn balancer(&self, balancing: Balancing, image: &ImageChoice) -> ContainerRequest<GenericImage> {
        let servers: Vec<(String, String)> = (1..=self.replicas)
            .map(|n| {
                (
                    Role::Service(n).to_string(),
                    self.container_name(Role::Service(n)),
                )
            })
            .collect();
        let backend = balancer::Backend {
            servers: &servers,
            port: SERVICE_PORT,
            ready: "/readyz",
        };
        let config = balancer::config(balancing, &backend);
        self.request(
            image,
            Role::Balancer,
            &[balancer::FRONT_PORT, balancer::STATS_PORT, balancer::ADMIN_PORT],
        )
        .with_copy_to(balancer::CONFIG_PATH, config.into_bytes())
    }

    /// Starts every container at once: a replica retries its migrations until Postgres accepts
    /// connections, the proxy resolves its upstreams per connection, and the balancer health-checks
    /// the replicas until they answer.
    pub async fn start(self) -> Result<Started, EnvError> {
        let replicas =
            (1..=self.replicas).map(|n| start_node(Role::Service(n), SERVICE_PORT, self.replica(n)));
        let balancer = async {
            match (self.balancing, &self.images.balancer) {
                (Some(balancing), Some(image)) => Some(
                    start_node(
                        Role::Balancer,
                        balancer::FRONT_PORT,
                        self.balancer(balancing, image),
                    )
                    .await,
                ),
                _ => None,
            }
        };
        let mail = async {
            match &self.images.mail {
                Some(image) => Some(start_node(Role::Mail, port_of(Link::Mail), self.mail(image)).await),
                None => None,
            }
        };
        let provider = async {
            match self.payments {
                true => Some(start_node(Role::Provider, port_of(Link::Payments), self.provider()).await),
                false => None,
            }
        };
        let (postgres, redis, proxy, services, balancer, mail, provider) = tokio::join!(
            start_node(Role::Postgres, port_of(Link::Postgres), self.postgres()),
            start_node(Role::Redis, port_of(Link::Redis), self.redis()),
            start_node(Role::Proxy, PROXY_CONTROL_PORT, self.proxy()),
            futures::future::join_all(replicas),
            balancer,
            mail,
            provider,
        );
        Ok(Started {
            postgres: postgres?,
            redis: redis?,
            proxy: proxy?,
            services: services.into_iter().collect::<Result<Vec<_>, _>>()?,
            balancer: balancer.transpose()?,
            mail: mail.transpose()?,
            provider: provider.transpose()?,
            images: self.images.all().cloned().collect(),
            run_id: self.run_id,
            network: self.network,
            admin_token: self.admin_token,
        })
    }
}

/// Publishes `ports` on 127.0.0.1 only, each on a free port the engine picks, and caps the CPUs
/// when `cpus` says so.
fn host_config(ports: Vec<u16>, cpus: Option<f64>) -> impl Fn(&mut HostConfig) + Send + Sync + 'static {
    move |host: &mut HostConfig| {
        host.nano_cpus = cpus.map(|cpus| (cpus * 1e9) as i64);
        let binding = || PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        };
        host.publish_all_ports = Some(false);
        host.port_bindings = Some(
            ports
                .iter()
                .map(|port| (format!("{port}/tcp"), Some(vec![binding()])))
                .collect(),
        );
    }
}

async fn start_node(
    role: Role,
    port: u16,
    request: ContainerRequest<GenericImage>,
) -> Result<Node, EnvError> {
    let name = request
        .container_name()
        .clone()
        .unwrap_or_else(|| role.to_string());
    let container = request
        .start()
        .await
        .map_err(|source| EnvError::Start { role, source })?;
    Ok(Node {
        role,
        name,
        container,
        port,
    })
}
