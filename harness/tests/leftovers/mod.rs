//! What a `fortress` process left behind: the tests that run it check that nothing is.

use std::process::Command;

/// Containers whose labels name `pid` as their owner.
pub fn containers_owned_by(pid: u32) -> Vec<String> {
    let output = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=fortress.owner.pid={pid}"),
        ])
        .output()
        .expect("docker ps (the tests need Docker: run ci/setup)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
