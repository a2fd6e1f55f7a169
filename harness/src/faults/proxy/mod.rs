//! The network fault proxy: one TCP listener per link (service -> postgres, service -> redis), a
//! control API to set and clear faults on each, and evidence of what every fault did to real traffic.
//!
//! It runs as `fortress proxy` in a container on the run's network; the service reaches its
//! dependencies through it. Why not the `fault-engine` crate: its latency delays only the first
//! read/write of a connection after activation (pooled connections would see it once), its per-operation
//! jitter stacks delays on a bulk reply, it resolves the upstream once at start (a restarted container
//! with a new address is lost), and it has no "link down". The figures are in the issue notes; the
//! delay line here adds the latency once per reply on connections that are already open.

mod control;
mod link;
mod network_fault;
mod pump;

pub mod client;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use link::{Evidence, LinkReport, LinkSpec};
pub use network_fault::NetworkFault;

/// Starts every link and serves the control API on `control` until `shutdown` completes.
pub async fn serve(
    control: TcpListener,
    links: Vec<LinkSpec>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut started = BTreeMap::new();
    for spec in links {
        let name = spec.name.clone();
        let link = link::Link::start(spec).await?;
        tracing::info!(link = name, listen = %link.spec.listen, upstream = link.spec.upstream, "link up");
        started.insert(name, link);
    }
    let app = control::router(Arc::new(started));
    axum::serve(control, app).with_graceful_shutdown(shutdown).await
}
