//! Integration tests of the lab: real containers on a real Docker engine, observed from outside.
//! Without Docker they fail, saying how to get it (`ci/setup`).

mod env;
mod faults;
mod observe;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fortress::env::{Lab, LabSpec};

/// Starts a lab with the `fortress` binary cargo built for these tests.
pub async fn start_lab() -> Lab {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let spec = LabSpec::with_binary(PathBuf::from(env!("CARGO_BIN_EXE_fortress")));
    Lab::start(&spec, &|line| eprintln!("{line}"))
        .await
        .unwrap_or_else(|e| {
            panic!("could not start the lab: {e}\n(the lab needs Docker and the images: run ci/setup)")
        })
}

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
