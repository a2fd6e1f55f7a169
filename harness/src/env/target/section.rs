//! The Fortress section of a Compose file (`x-fortress:`), as written: where the load goes in, which
//! links to put through the fault proxy, and which databases the invariants may read.
//!
//! ```yaml
//! x-fortress:
//!   entry: { service: web, port: 8000, ready: /healthz }   # balancer: true puts HAProxy in front
//!   links:
//!     - { from: web, to: db, port: 5432, address_in: DATABASE_URL }   # http: true for HTTP faults
//!   databases:
//!     shop: { service: db, port: 5432, url: "postgres://shop:shop@{address}/shop" }
//!   metrics:                                                # the entry's own /metrics, if it has one
//!     path: /metrics
//!     counters: { responses: http_requests_total, responses_5xx: 'http_requests_total{code=~"5.."}' }
//!     basic_auth: { user: metrics, password_in: METRICS_PASSWORD }   # when the page asks for them
//! ```

use marked_yaml::Spanned;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSection {
    pub entry: RawEntry,
    #[serde(default)]
    pub links: Vec<RawLink>,
    #[serde(default)]
    pub databases: std::collections::BTreeMap<String, RawDatabase>,
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
}

/// The service and port the load goes to, and the path that answers 2xx once it is ready.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    pub service: Spanned<String>,
    pub port: Spanned<u16>,
    pub ready: Spanned<String>,
    /// HAProxy in front of the entry's replicas (`deploy.replicas` or `scale`), health-checking
    /// `ready`.
    #[serde(default)]
    pub balancer: Option<Spanned<bool>>,
    /// With the balancer: each client pinned to one replica by a cookie.
    #[serde(default)]
    pub sticky: Option<Spanned<bool>>,
}

/// A dependency reached by a service, to be put through the fault proxy: `from`'s variable
/// `address_in` names `to` (as a host, `to:port` or inside a URL), and Fortress rewrites that address
/// to the proxy's listener for the link.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub port: Spanned<u16>,
    pub address_in: Spanned<String>,
    /// The link carries HTTP/1.1, so HTTP faults (a status answered, a delay, a lost reply) apply.
    #[serde(default)]
    pub http: Option<Spanned<bool>>,
}

/// A Postgres database the invariants may query: `url` with `{address}` where the host and port go
/// (Fortress fills in the published 127.0.0.1 port).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub service: Spanned<String>,
    pub port: Spanned<u16>,
    pub url: Spanned<String>,
}

/// The entry service's own Prometheus page, read on each replica once a second: which series each
/// of Fortress's service counters is summed from (a PromQL series selector).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub path: Spanned<String>,
    /// The entry's port unless given.
    #[serde(default)]
    pub port: Option<Spanned<u16>>,
    pub counters: std::collections::BTreeMap<String, Spanned<String>>,
    /// The page asks for HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<RawBasicAuth>,
}

/// The user the metrics page is read as, and where its password is kept: never in this section,
/// so the section can be shown, copied and committed without it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    pub user: Spanned<String>,
    /// A variable of the entry service's `environment`: the password as the service is given it.
    #[serde(default)]
    pub password_in: Option<Spanned<String>>,
    /// A variable of Fortress's own environment, for a password the Compose file does not hold
    /// (baked into the image's configuration, say).
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
}
