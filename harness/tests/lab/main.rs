//! Integration tests of the lab: real containers on a real Docker engine, observed from outside.
//! Without Docker they fail, saying how to get it (`ci/setup`).

mod balancer;
mod env;
mod faults;
mod mail;
mod observe;
mod payments;
mod pretix;
mod shop;
#[path = "../support/mod.rs"]
mod support;
mod target;
mod timing;

pub use support::start_lab;

use std::time::{Duration, Instant};

use fortress::env::Lab;
use fortress::env::docker::{DockerClient, RUN_LABEL};

/// Polls `condition` until it holds, failing with `what` at the deadline.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the lab has `expected` containers (`what` names them), each labelled with its run and
/// publishing every port on 127.0.0.1 only.
pub async fn assert_loopback_only(lab: &Lab, expected: usize, what: &str) {
    let docker = DockerClient::connect().await.unwrap();
    let containers = docker.labelled_containers(Some(&lab.run_id)).await.unwrap();
    let roles: Vec<&str> = containers.iter().map(|c| c.role.as_str()).collect();
    assert_eq!(containers.len(), expected, "{what}: {roles:?}");
    for container in &containers {
        let inspect = docker.api().inspect_container(&container.id, None).await.unwrap();
        let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
        assert_eq!(labels.get(RUN_LABEL), Some(&lab.run_id));
        let bindings = inspect
            .host_config
            .and_then(|h| h.port_bindings)
            .unwrap_or_default();
        assert!(!bindings.is_empty(), "{} publishes its port", container.name);
        for binding in bindings.values().flatten().flatten() {
            assert_eq!(
                binding.host_ip.as_deref(),
                Some("127.0.0.1"),
                "{} binds {binding:?}",
                container.name
            );
        }
    }
}
