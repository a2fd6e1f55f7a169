//! Integration tests of the lab: real containers on a real Docker engine, observed from outside.
//! Without Docker they fail, saying how to get it (`ci/setup`).

mod balancer;
mod env;
mod faults;
mod observe;
#[path = "../support/mod.rs"]
mod support;
mod timing;

pub use support::start_lab;

use std::time::{Duration, Instant};

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
