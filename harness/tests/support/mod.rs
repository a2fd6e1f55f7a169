//! What the lab's integration tests share.

use std::path::PathBuf;

use fortress::env::{Lab, LabSpec};

/// Starts a lab with the `fortress` binary cargo built for these tests; without Docker it fails,
/// saying how to get it.
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
