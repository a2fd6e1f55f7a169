//! The lab's load balancer: HAProxy in front of the service replicas, its configuration written per
//! run, and what its stats page says about each replica.
//!
//! Each replica is a `server` named after its role (`service`, `service-2`, ...) and addressed by its
//! container name, re-resolved through Docker's DNS, so a replica that is killed and started again (with
//! a new address) is found again. Health checks ask `/readyz` every second: two failures in a row take a
//! replica out, two successes put it back, so a dead replica is out within
//! `inter x fall + timeout check` = 2 to 3 s (`TAKEOUT_BOUND`). A request whose connection fails, or
//! whose replica dies before answering (an empty response: the kill resets its connections), is retried
//! on another replica (`retry-on conn-failure empty-response`, `option redispatch 1`). Retrying a
//! checkout is safe only because every checkout carries an `Idempotency-Key`: a retried order that the
//! dead replica had committed is answered from its key, not placed twice.
//!
//! `sticky` adds HAProxy's cookie: the first answer pins a client to the replica that gave it, and a
//! client whose replica is out is sent to another one and pinned there.
//!
//! A deploy takes a replica out by hand first, through HAProxy's runtime API (`set server ... state
//! maint`: no new requests, those in flight finish), and puts it back (`state ready`) once it has
//! been started again; the health checks then let it in.

use std::time::Duration;

use serde::Serialize;

use super::poll::{Look, poll_until};
use super::{EnvError, Lab};
use crate::vocabulary::Role;

/// The port clients reach the replicas through.
pub const FRONT_PORT: u16 = 8080;
/// The port of HAProxy's stats page (`/stats`, and `/stats;csv`).
pub const STATS_PORT: u16 = 8404;
/// The port of HAProxy's runtime API, for taking a replica out and putting it back.
pub const ADMIN_PORT: u16 = 9999;
/// Where the configuration goes in the container (the official image's path).
pub const CONFIG_PATH: &str = "/usr/local/etc/haproxy/haproxy.cfg";
/// The cookie that pins a client to a replica when balancing is sticky.
pub const STICKY_COOKIE: &str = "fortress_replica";
/// Health checks: every `CHECK_INTERVAL`, out after `FALL` failures in a row, back after `RISE` successes.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
pub const FALL: u32 = 2;
pub const RISE: u32 = 2;
/// How long a check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a dead replica stays in: `FALL` checks, the last of which may wait `CHECK_TIMEOUT`.
pub const TAKEOUT_BOUND: Duration = Duration::from_secs(3);

/// How the balancer spreads clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Balancing {
    /// Pin each client to one replica with a cookie (sticky sessions); round robin otherwise.
    pub sticky: bool,
}

/// What the balancer spreads the load over: each replica's server name and host (its container
/// name), the port they all listen on, and the path whose 200 says a replica is ready.
pub struct Backend<'a> {
    pub servers: &'a [(String, String)],
    pub port: u16,
    pub ready: &'a str,
}

/// HAProxy's configuration for the backend's replicas, each at `<container name>:<port>`.
pub fn config(balancing: Balancing, backend: &Backend<'_>) -> String {
    let secs = |d: Duration| format!("{}ms", d.as_millis());
    let mut cfg = format!(
        "global\n    maxconn 4096\n    log stderr format raw local0 notice\n    \
         stats socket ipv4@0.0.0.0:{ADMIN_PORT} level admin\n\n\
         defaults\n    mode http\n    log global\n    option dontlognull\n    timeout connect 1s\n    \
         timeout client 30s\n    timeout server 30s\n    timeout check {check}\n    retries 2\n    \
         option redispatch 1\n    retry-on conn-failure empty-response\n\n\
         resolvers docker\n    nameserver dns 127.0.0.11:53\n    resolve_retries 3\n    timeout resolve 1s\n    \
         timeout retry 1s\n    hold valid 1s\n    hold other 1s\n    hold refused 1s\n    hold nx 1s\n    \
         hold timeout 1s\n    hold obsolete 1s\n\n\
         frontend shop\n    bind :{FRONT_PORT}\n    default_backend service\n\n\
         backend service\n    balance roundrobin\n    option httpchk GET {ready}\n    http-check expect status 200\n",
        check = secs(CHECK_TIMEOUT),
        ready = backend.ready,
    );
    if balancing.sticky {
        cfg.push_str(&format!("    cookie {STICKY_COOKIE} insert indirect nocache\n"));
    }
    cfg.push_str(&format!(
        "    default-server check inter {inter} fall {FALL} rise {RISE} resolvers docker init-addr last,libc,none\n",
        inter = secs(CHECK_INTERVAL),
    ));
    for (name, host) in backend.servers {
        let cookie = if balancing.sticky {
            format!(" cookie {name}")
        } else {
            String::new()
        };
        cfg.push_str(&format!("    server {name} {host}:{}{cookie}\n", backend.port));
    }
    cfg.push_str(&format!(
        "\nfrontend stats\n    bind :{STATS_PORT}\n    stats enable\n    stats uri /stats\n"
    ));
    cfg
}

/// One replica as the balancer's stats page shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerStats {
    pub replica: u32,
    /// Whether the health checks have it in (`UP`, or `NOLB`/`DRAIN`, which still count as alive).
    pub up: bool,
    /// Requests the balancer sent it since the start (`stot`).
    pub requests: f64,
    /// Requests it is answering now (`scur`).
    pub in_flight: f64,
    /// Requests it was sent that were retried on another replica (`wretr` + `wredis`): their
    /// connection failed, or the replica died before answering.
    pub retried: f64,
    /// Taken out by hand (`MAINT`, not `MAINT (resolution)`, which is Docker's DNS not knowing it).
    pub taken_out: bool,
}

/// How the backend's servers are named: the reference lab's replicas by their role (`service`,
/// `service-2`, ...), a user's target's entry replicas `<its Compose name>-<n>` (`web-1`, `web-2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Servers {
    Reference,
    Of(String),
}

impl Servers {
    pub fn name(&self, replica: u32) -> String {
        match self {
            Self::Reference => Role::Service(replica).to_string(),
            Self::Of(service) => format!("{service}-{replica}"),
        }
    }

    /// The replica a server name is, if it is one of these.
    fn replica(&self, name: &str) -> Option<u32> {
        match self {
            Self::Reference => match name.parse().ok()? {
                Role::Service(replica) => Some(replica),
                _ => None,
            },
            Self::Of(service) => name
                .strip_prefix(service.as_str())?
                .strip_prefix('-')?
                .parse()
                .ok(),
        }
    }
}

/// What a deploy tells the balancer about a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// Out: no new requests; those in flight finish.
    Out,
    /// Back in once its health checks have passed the new process: it is marked down as it leaves
    /// maintenance, or HAProxy would trust what it last knew of the old one (marked down while still
    /// in maintenance, it comes out `UP 1/2`, which serves).
    In,
    /// Up now, at a lab's start: the harness has itself seen the replica answer its readiness path
    /// with the 200 the health checks expect, so the balancer need not learn it from `RISE` checks
    /// (its first ones failed while the replica was still starting: 1.4 to 1.8 s of every balanced
    /// lab's start went to that). The checks go on as before, and take it out if it fails them.
    Ready,
}

impl Rotation {
    /// The runtime API's commands, in order.
    fn commands(self, servers: &Servers, replica: u32) -> Vec<String> {
        let server = format!("service/{}", servers.name(replica));
        match self {
            Self::Out => vec![format!("set server {server} state maint")],
            Self::In => vec![
                format!("set server {server} state ready"),
                format!("set server {server} health down"),
            ],
            Self::Ready => vec![format!("set server {server} health up")],
        }
    }
}

/// The service replicas' rows of `/stats;csv`. Rows of other proxies, and rows that do not name a
/// replica, are skipped.
pub fn parse_stats(csv: &str, servers: &Servers) -> Vec<ServerStats> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(status), Some(stot), Some(scur)) = (
        column("pxname"),
        column("svname"),
        column("status"),
        column("stot"),
        column("scur"),
    ) else {
        return Vec::new();
    };
    let (retries, redispatches) = (column("wretr"), column("wredis"));
    let number = |fields: &[&str], i: usize| fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|fields| fields.get(px) == Some(&"service"))
        .filter_map(|fields| {
            let replica = servers.replica(fields.get(sv)?)?;
            let state = fields.get(status).copied().unwrap_or("");
            Some(ServerStats {
                replica,
                up: state.starts_with("UP") || state == "NOLB" || state == "DRAIN",
                requests: number(&fields, stot),
                in_flight: number(&fields, scur),
                retried: [retries, redispatches]
                    .into_iter()
                    .flatten()
                    .map(|i| number(&fields, i))
                    .sum(),
                taken_out: state == "MAINT",
            })
        })
        .collect()
}

impl Lab {
    /// The balancer's stats as CSV, on 127.0.0.1 (`None` without a balancer).
    pub async fn balancer_stats_url(&self) -> Result<Option<String>, EnvError> {
        let Some(balancer) = &self.balancer else {
            return Ok(None);
        };
        let port = balancer.host_port_of(STATS_PORT).await?;
        Ok(Some(format!("http://127.0.0.1:{port}/stats;csv")))
    }

    /// The replicas as the balancer sees them now (`None` without a balancer, or when it does not answer).
    pub async fn balancer_stats(&self) -> Option<Vec<ServerStats>> {
        let url = self.balancer_stats_url().await.ok()??;
        stats(self.http(), &url, &Servers::Reference).await
    }

    /// Takes a replica out of the balancer's rotation, or puts it back, through HAProxy's runtime API.
    /// Without a balancer there is nothing to tell.
    pub async fn rotate(&self, replica: u32, rotation: Rotation) -> Result<(), EnvError> {
        let Some(balancer) = &self.balancer else {
            return Ok(());
        };
        let port = balancer.host_port_of(ADMIN_PORT).await?;
        rotate(port, &Servers::Reference, replica, rotation).await
    }

    /// Polls the balancer's stats until `replica` is out of rotation with no request in flight, or
    /// `deadline` passes.
    pub async fn wait_drained(&self, replica: u32, deadline: Duration) -> Result<(), EnvError> {
        wait_drained(|| self.balancer_stats(), replica, deadline).await
    }

    /// Tells the balancer every replica is up, once the lab has seen each ready (`Rotation::Ready`).
    /// A balancer that does not take it yet is only slower: `wait_balanced` still waits for its checks.
    pub(super) async fn vouch_replicas_ready(&self) {
        for replica in self.replicas() {
            if let Err(error) = self.rotate(replica, Rotation::Ready).await {
                tracing::debug!(replica, %error, "the balancer will find the replica up by its checks");
            }
        }
    }

    /// Polls the balancer's stats until every replica is in, or `deadline` passes.
    pub async fn wait_balanced(&self, deadline: Duration) -> Result<(), EnvError> {
        wait_balanced(|| self.balancer_stats(), self.services.len(), deadline).await
    }
}

/// The servers' rows of the stats page at `url` (`None` when it does not answer).
pub async fn stats(http: &reqwest::Client, url: &str, servers: &Servers) -> Option<Vec<ServerStats>> {
    let response = http.get(url).send().await.ok()?;
    Some(parse_stats(&response.text().await.ok()?, servers))
}

/// Takes `replica` out of rotation, or puts it back, through the runtime API on 127.0.0.1:`port`.
pub async fn rotate(port: u16, servers: &Servers, replica: u32, rotation: Rotation) -> Result<(), EnvError> {
    for command in rotation.commands(servers, replica) {
        let answer = runtime_api(port, &command)
            .await
            .map_err(|source| EnvError::BalancerCommand {
                command: command.clone(),
                source,
            })?;
        if !answer.trim().is_empty() {
            let answer = answer.trim().to_owned();
            return Err(EnvError::BalancerRefused { command, answer });
        }
    }
    Ok(())
}

/// Polls `stats` until `replica` is out of rotation with no request in flight, or `deadline` passes.
pub async fn wait_drained<F, Fut>(stats: F, replica: u32, deadline: Duration) -> Result<(), EnvError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Vec<ServerStats>>>,
{
    let every = Duration::from_millis(100);
    poll_until(Role::Balancer, deadline, every, || async {
        let stats = stats().await.unwrap_or_default();
        let look = match stats.iter().find(|s| s.replica == replica) {
            Some(s) if s.taken_out && s.in_flight == 0.0 => Look::Done(()),
            Some(s) => Look::NotYet(format!(
                "replica {replica} out: {}, {} in flight",
                s.taken_out, s.in_flight
            )),
            None => Look::NotYet(format!("no row for replica {replica}")),
        };
        Ok(look)
    })
    .await
}

/// Polls `stats` until all `wanted` replicas are in, or `deadline` passes.
pub async fn wait_balanced<F, Fut>(stats: F, wanted: usize, deadline: Duration) -> Result<(), EnvError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Vec<ServerStats>>>,
{
    poll_until(Role::Balancer, deadline, Duration::from_millis(200), || async {
        let stats = stats().await;
        let up = stats.as_ref().map_or(0, |s| s.iter().filter(|r| r.up).count());
        Ok(match stats {
            Some(_) if up == wanted => Look::Done(()),
            Some(_) => Look::NotYet(format!("{up} of {wanted} replicas up")),
            None => Look::NotYet("its stats page did not answer".into()),
        })
    })
    .await
}

/// Sends one command to HAProxy's runtime API and answers what it said (nothing, when it worked). The
/// API answers one command per connection and then closes it.
async fn runtime_api(port: u16, command: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sticky_config_names_every_replica_with_its_cookie() {
        let servers = [
            ("service".to_owned(), "fortress-x-service".to_owned()),
            ("service-2".to_owned(), "fortress-x-service-2".to_owned()),
        ];
        let backend = Backend {
            servers: &servers,
            port: 8080,
            ready: "/readyz",
        };
        let cfg = config(Balancing { sticky: true }, &backend);
        assert!(cfg.contains("option httpchk GET /readyz\n"), "{cfg}");
        assert!(
            cfg.contains("server service fortress-x-service:8080 cookie service\n"),
            "{cfg}"
        );
        assert!(cfg.contains("server service-2 fortress-x-service-2:8080 cookie service-2\n"));
        assert!(cfg.contains("cookie fortress_replica insert indirect nocache"));
        assert!(cfg.contains("check inter 1000ms fall 2 rise 2"));
        let plain = config(Balancing::default(), &backend);
        assert!(!plain.contains("cookie"), "{plain}");
        assert!(plain.contains("balance roundrobin"));
    }

    #[test]
    fn stats_rows_become_replicas_and_other_rows_are_skipped() {
        let csv = "# pxname,svname,qcur,scur,stot,wretr,wredis,status,hrsp_5xx\n\
                   shop,FRONTEND,0,3,100,,,OPEN,0\n\
                   service,service,0,2,40,1,2,UP,1\n\
                   service,service-2,0,0,35,0,0,MAINT,0\n\
                   service,service-3,0,1,25,0,0,UP 1/2,2\n\
                   service,BACKEND,0,3,100,1,2,UP,3\n";
        let rows = parse_stats(csv, &Servers::Reference);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(
            rows[0],
            ServerStats {
                replica: 1,
                up: true,
                requests: 40.0,
                in_flight: 2.0,
                retried: 3.0,
                taken_out: false,
            }
        );
        assert!(!rows[1].up && rows[1].taken_out);
        assert!(rows[2].up, "UP 1/2 is still up (going down)");
        assert!(parse_stats("", &Servers::Reference).is_empty());
        let target = "# pxname,svname,scur,stot,status\nservice,web-1,0,9,UP\nservice,web-2,1,8,MAINT\nservice,webx-3,0,1,UP\n";
        let rows = parse_stats(target, &Servers::Of("web".into()));
        let replicas: Vec<(u32, bool)> = rows.iter().map(|r| (r.replica, r.taken_out)).collect();
        assert_eq!(
            replicas,
            [(1, false), (2, true)],
            "a target's servers are <service>-<n>"
        );
    }

    #[test]
    fn a_replica_vouched_ready_is_set_up_and_one_put_back_waits_for_its_checks() {
        let servers = Servers::Of("web".into());
        assert_eq!(
            Rotation::Ready.commands(&servers, 2),
            ["set server service/web-2 health up"]
        );
        assert_eq!(
            Rotation::In.commands(&Servers::Reference, 2),
            [
                "set server service/service-2 state ready",
                "set server service/service-2 health down"
            ]
        );
    }
}
