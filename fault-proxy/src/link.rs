//! One link of the proxy: a listener, the connections it forwards to its upstream, the faults active
//! on it, and the evidence of what those faults did to real traffic.
//!
//! Faults change at runtime and apply to connections that are already open (a pool's connections live
//! for the whole run). The upstream host name is resolved for every new connection, so an upstream
//! container that restarts with a new address is found again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::http::{self, HttpLayer};
use super::network_fault::{FaultKind, FaultSet};
use super::pump::{self, End, Tap};
use super::workers::Workers;

/// How long the proxy waits for its upstream to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The in-memory pipe between an HTTP link's byte pump and its HTTP side.
const HTTP_PIPE: usize = 64 * 1024;

/// `name=listen=upstream`, e.g. `postgres=0.0.0.0:5432=fortress-ab12-postgres:5432`, and `=http` at
/// the end for a link that carries HTTP/1.1 (where HTTP faults apply too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: String,
    pub http: bool,
}

/// A `--link` that is not `NAME=LISTEN_ADDR=UPSTREAM_HOST:PORT[=http]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a link is NAME=LISTEN_ADDR=UPSTREAM_HOST:PORT[=http], e.g. redis=0.0.0.0:6379=redis:6379 (got {0:?})"
)]
pub struct BadLinkSpec(String);

impl std::str::FromStr for LinkSpec {
    type Err = BadLinkSpec;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || BadLinkSpec(s.to_owned());
        let parts: Vec<&str> = s.split('=').collect();
        let (name, listen, upstream, http) = match parts[..] {
            [name, listen, upstream] => (name, listen, upstream, false),
            [name, listen, upstream, "http"] => (name, listen, upstream, true),
            _ => return Err(usage()),
        };
        let listen = listen.parse().map_err(|_| usage())?;
        if name.is_empty() || !upstream.contains(':') {
            return Err(usage());
        }
        Ok(Self {
            name: name.into(),
            listen,
            upstream: upstream.into(),
            http,
        })
    }
}

/// What the faults of one activation did, counted on real traffic.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub upstream_unreachable: AtomicU64,
    pub bytes_to_upstream: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub delayed_chunks: AtomicU64,
    pub added_delay_us: AtomicU64,
    pub throttled_chunks: AtomicU64,
    pub held_chunks: AtomicU64,
    pub resets: AtomicU64,
    pub closed_by_down: AtomicU64,
    /// HTTP requests that came through (HTTP links), answered by an `http_status` fault instead of
    /// the upstream, held by an `http_delay` fault, and passed on with their reply replaced by an
    /// `http_lost_reply` fault.
    pub http_requests: AtomicU64,
    pub http_answered: AtomicU64,
    pub http_delayed: AtomicU64,
    pub http_lost_replies: AtomicU64,
    /// Connections that carried traffic during the activation.
    pub connections_seen: AtomicU64,
    /// Connections a fault acted on during the activation: the blast radius, counted.
    pub connections_touched: AtomicU64,
}

/// A snapshot of `Counters`, as the control API reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Evidence {
    pub connections: u64,
    pub upstream_unreachable: u64,
    pub bytes_to_upstream: u64,
    pub bytes_to_client: u64,
    pub delayed_chunks: u64,
    pub mean_added_delay_ms: f64,
    pub throttled_chunks: u64,
    pub held_chunks: u64,
    pub resets: u64,
    pub closed_by_down: u64,
    #[serde(default)]
    pub http_requests: u64,
    #[serde(default)]
    pub http_answered: u64,
    #[serde(default)]
    pub http_delayed: u64,
    #[serde(default)]
    pub http_lost_replies: u64,
    #[serde(default)]
    pub connections_seen: u64,
    #[serde(default)]
    pub connections_touched: u64,
}

impl Evidence {
    /// Whether any fault acted on any byte or connection (otherwise a verdict cannot blame the fault).
    pub fn touched_traffic(&self) -> bool {
        let chunks = self.delayed_chunks + self.throttled_chunks + self.held_chunks;
        let connections = self.resets + self.closed_by_down;
        let requests = self.http_answered + self.http_delayed + self.http_lost_replies;
        chunks + connections + requests > 0
    }
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Evidence {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let delayed = get(&self.delayed_chunks);
        Evidence {
            connections: get(&self.connections),
            upstream_unreachable: get(&self.upstream_unreachable),
            bytes_to_upstream: get(&self.bytes_to_upstream),
            bytes_to_client: get(&self.bytes_to_client),
            delayed_chunks: delayed,
            mean_added_delay_ms: if delayed == 0 {
                0.0
            } else {
                get(&self.added_delay_us) as f64 / delayed as f64 / 1000.0
            },
            throttled_chunks: get(&self.throttled_chunks),
            held_chunks: get(&self.held_chunks),
            resets: get(&self.resets),
            closed_by_down: get(&self.closed_by_down),
            http_requests: get(&self.http_requests),
            http_answered: get(&self.http_answered),
            http_delayed: get(&self.http_delayed),
            http_lost_replies: get(&self.http_lost_replies),
            connections_seen: get(&self.connections_seen),
            connections_touched: get(&self.connections_touched),
        }
    }
}

/// The faults in force and the counters they report to. Replaced, never mutated, on every change.
#[derive(Debug, Default)]
pub struct Active {
    /// Which activation of the link this is (from 1), so a connection is counted once in each.
    pub id: u64,
    pub faults: FaultSet,
    pub since: DateTime<Utc>,
    pub counters: Counters,
}

/// The state of a link as the control API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: String,
    pub faults: Vec<super::ScopedFault>,
    pub since: DateTime<Utc>,
    /// What the faults listed here did since `since`.
    pub evidence: Evidence,
    /// HTTP links: every request the link has carried since the proxy started, whatever the faults
    /// (the evidence counts only since the last change), so a rate over a fault's start is whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_requests_total: Option<u64>,
}

#[derive(Debug)]
pub struct Link {
    pub spec: LinkSpec,
    active: watch::Sender<Arc<Active>>,
    /// Picks which connections a fault on a share of them takes (`ScopedFault`).
    seed: u64,
    /// Connections accepted so far: the next one's number.
    accepted: AtomicU64,
    activations: AtomicU64,
    /// The HTTP side of an HTTP link, behind the byte pump of each connection.
    http: Option<Arc<HttpLayer>>,
    /// The threads its connections live on (shared by every link).
    workers: Arc<Workers>,
}

impl Link {
    /// Binds the listener (so a bad address fails at start) and starts forwarding.
    pub async fn start(spec: LinkSpec, seed: u64, workers: Arc<Workers>) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(spec.listen).await?;
        let spec = LinkSpec {
            listen: listener.local_addr()?,
            ..spec
        };
        let (active, _) = watch::channel(Arc::new(Active {
            id: 1,
            since: Utc::now(),
            ..Active::default()
        }));
        let http = spec.http.then(|| {
            Arc::new(HttpLayer {
                upstream: spec.upstream.clone(),
                active: active.subscribe(),
                seed,
                connect_timeout: UPSTREAM_CONNECT_TIMEOUT,
                requests: AtomicU64::new(0),
            })
        });
        let link = Arc::new(Self {
            spec,
            active,
            seed,
            accepted: AtomicU64::new(0),
            activations: AtomicU64::new(1),
            http,
            workers,
        });
        tokio::spawn(Arc::clone(&link).accept_loop(listener));
        Ok(link)
    }

    /// Replaces the faults; answers the report of the activation that just ended (its evidence).
    pub fn set_faults(&self, faults: FaultSet) -> LinkReport {
        let next = Arc::new(Active {
            id: self.activations.fetch_add(1, Ordering::Relaxed) + 1,
            faults,
            since: Utc::now(),
            counters: Counters::default(),
        });
        let previous = self.active.send_replace(next);
        self.report_of(&previous)
    }

    pub fn report(&self) -> LinkReport {
        self.report_of(&self.active.borrow())
    }

    fn report_of(&self, active: &Active) -> LinkReport {
        LinkReport {
            name: self.spec.name.clone(),
            listen: self.spec.listen,
            upstream: self.spec.upstream.clone(),
            faults: active.faults.to_list(),
            since: active.since,
            evidence: active.counters.snapshot(),
            http_requests_total: (self.http.as_ref()).map(|h| h.requests.load(Ordering::Relaxed)),
        }
    }

    /// Accepts while the link is up; while it is down for every connection the listener is closed, so
    /// connections are refused (down for a share of them, the chosen ones are reset once accepted).
    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut changes = self.active.subscribe();
        let mut listener = Some(listener);
        loop {
            let down = {
                let faults = &changes.borrow_and_update().faults;
                faults.down && faults.fraction(FaultKind::Down) >= 1.0
            };
            match (&listener, down) {
                (Some(_), true) => listener = None,
                (None, false) => match TcpListener::bind(self.spec.listen).await {
                    Ok(bound) => listener = Some(bound),
                    Err(error) => {
                        tracing::error!(%error, link = self.spec.name, "cannot listen again after link down");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
                _ => {}
            }
            let Some(open) = &listener else {
                if changes.changed().await.is_err() {
                    return;
                }
                continue;
            };
            tokio::select! {
                accepted = open.accept() => match accepted {
                    Ok((client, _)) => {
                        let number = self.accepted.fetch_add(1, Ordering::Relaxed);
                        let tap = Arc::new(Tap::new(number, self.seed));
                        self.hand_over(client, tap);
                    }
                    Err(error) => tracing::warn!(%error, link = self.spec.name, "accept failed"),
                },
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }
}

impl Link {
    /// Gives an accepted connection to the next connection thread, which forwards it.
    fn hand_over(self: &Arc<Self>, client: TcpStream, tap: Arc<Tap>) {
        // Off this runtime's reactor and onto the thread's: a std stream carries no registration.
        let client = match client.into_std() {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, link = self.spec.name, "cannot hand a connection over");
                return;
            }
        };
        let link = Arc::clone(self);
        self.workers
            .run(Box::new(move || match TcpStream::from_std(client) {
                Ok(client) => {
                    tokio::spawn(link.forward(client, tap));
                }
                Err(error) => tracing::warn!(%error, link = link.spec.name, "cannot take a connection over"),
            }));
    }

    /// Forwards one client connection to a fresh upstream connection (an HTTP link: to its HTTP
    /// side) until either side closes, or a fault (reset, down) ends it with a RST on both sides.
    async fn forward(self: Arc<Self>, mut client: TcpStream, tap: Arc<Tap>) {
        let active = self.active.subscribe();
        let current = Arc::clone(&active.borrow());
        Counters::add(&current.counters.connections, 1);
        if current.faults.down && tap.takes(&current, FaultKind::Down) {
            Counters::add(&current.counters.closed_by_down, 1);
            tap.touched(&current);
            let _ = client.set_zero_linger();
            return;
        }
        let _ = client.set_nodelay(true);
        if let Some(http) = &self.http {
            let (near, far) = tokio::io::duplex(HTTP_PIPE);
            tokio::spawn(http::serve(far, Arc::clone(http)));
            let (near_read, near_write) = tokio::io::split(near);
            let (client_read, client_write) = client.split();
            let end = pump::both_ways(client_read, client_write, near_read, near_write, active, tap).await;
            if end == End::Reset {
                let _ = client.set_zero_linger();
            }
            return;
        }
        let connected =
            tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(&self.spec.upstream)).await;
        let Ok(Ok(mut server)) = connected else {
            Counters::add(&current.counters.upstream_unreachable, 1);
            let _ = client.set_zero_linger();
            return;
        };
        let _ = server.set_nodelay(true);
        let end = {
            let (client_read, client_write) = client.split();
            let (server_read, server_write) = server.split();
            pump::both_ways(client_read, client_write, server_read, server_write, active, tap).await
        };
        if end == End::Reset {
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_specs_parse_and_bad_ones_show_the_format() {
        let spec: LinkSpec = "redis=0.0.0.0:6379=fortress-x-redis:6379".parse().unwrap();
        assert_eq!(spec.name, "redis");
        assert_eq!(spec.upstream, "fortress-x-redis:6379");
        let error = "redis=6379".parse::<LinkSpec>().unwrap_err();
        assert!(
            error.to_string().contains("NAME=LISTEN_ADDR=UPSTREAM_HOST:PORT"),
            "{error}"
        );
        assert!("r=0.0.0.0:1=nohostport".parse::<LinkSpec>().is_err());
    }
}
