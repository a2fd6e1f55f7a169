//! `fortress target FILE` from the command line: a user's Compose file checked, a mistake named by
//! file, line and field with exit code 3 (nothing started), a good file's lab printed.

use std::path::PathBuf;
use std::process::{Command, Output};

const GOOD: &str = r#"services:
  web:
    image: shop/web:dev
    environment: { DATABASE_URL: "postgres://shop:shop@db:5432/shop" }
    ports: ["8080:8000"]
    depends_on: { db: { condition: service_healthy } }
  db:
    image: fortress/postgres:16
x-fortress:
  entry: { service: web, port: 8000, ready: /healthz }
  links: [{ from: web, to: db, port: 5432, address_in: DATABASE_URL }]
  databases:
    shop: { service: db, port: 5432, url: "postgres://shop:shop@{address}/shop" }
"#;

/// Writes `text` to a fresh file and runs `fortress target` on it.
fn target(name: &str, text: &str) -> (PathBuf, Output) {
    let dir = std::env::temp_dir().join(format!("fortress-target-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("compose.yaml");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .arg("target")
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (file, output)
}

#[test]
fn a_good_target_prints_its_lab() {
    let (_, output) = target("good", GOOD);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("2 services"), "{stdout}");
    assert!(stdout.contains("web -> db:5432"), "{stdout}");
    assert!(
        stdout.contains("the file's host port 8080 is not used"),
        "{stdout}"
    );
}

#[test]
fn a_mistake_is_named_by_file_line_and_field_and_nothing_starts() {
    let bad = GOOD.replace(
        "    image: fortress/postgres:16\n",
        "    image: fortress/postgres:16\n    network_mode: host\n",
    );
    let (file, output) = target("bad", &bad);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let located = format!("{}:9: services.db.network_mode:", file.display());
    assert!(stderr.contains(&located), "expected {located:?} in: {stderr}");
}

#[test]
fn a_missing_file_says_which() {
    let output = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["target", "/nonexistent/compose.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/compose.yaml: cannot read it"),
        "{stderr}"
    );
}
