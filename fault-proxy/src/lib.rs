//! The network fault proxy: one TCP listener per link (service -> postgres, service -> redis), a
//! control API to set and clear faults on each, and evidence of what every fault did to real traffic.
//! A link that carries HTTP/1.1 (service -> payment provider) also takes HTTP faults (`http`).
//!
//! It runs as `fortress proxy` in a container on the run's network; the service reaches its
//! dependencies through it. It is a crate of its own, apart from the host-side harness, because it
//! runs inside the lab and sits on the path of every request an experiment measures: the workspace
//! builds it optimised even in dev builds (`Cargo.toml`), and `harness/benches/proxy_in_lab.rs`
//! measures what it adds. Each connection lives on one thread, a single-threaded runtime per core
//! (`workers`), so its wake-ups stay on one core.
//!
//! Why not the `fault-engine` crate, which was the first choice: measured here (figures in the issue
//! notes), its latency delays only the first round trip of a connection after activation (a pool's
//! connections see it once), its per-operation jitter stacks ~128 delays on a 1 MiB reply, its bandwidth
//! limit tops out near 0.9 MB/s, it sets no TCP_NODELAY (40 ms stalls on bulk replies), and it has no
//! "link down". Wrapping cannot fix what happens inside its streams; the delay line here adds the
//! latency once per reply, on connections that are already open.

mod control;
mod fine_timer;
mod http;
mod link;
mod network_fault;
mod pump;
mod workers;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use link::{BadLinkSpec, Evidence, LinkReport, LinkSpec};
pub use network_fault::{FaultKind, InvalidFault, NetworkFault, ScopedFault};

/// Starts every link and serves the control API on `control` until `shutdown` completes. `seed`
/// picks the connections a fault on a share of them takes.
pub async fn serve(
    control: TcpListener,
    links: Vec<LinkSpec>,
    seed: u64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut started = BTreeMap::new();
    let workers = Arc::new(workers::Workers::per_core()?);
    for spec in links {
        let name = spec.name.clone();
        let link = link::Link::start(spec, seed, Arc::clone(&workers)).await?;
        tracing::info!(link = name, listen = %link.spec.listen, upstream = link.spec.upstream, "link up");
        started.insert(name, link);
    }
    let app = control::router(Arc::new(started));
    axum::serve(control, app).with_graceful_shutdown(shutdown).await
}
