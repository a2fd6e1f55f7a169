//! Capacity under fault, checked against a model before any story: db-latency's checkout with
//! Postgres 20 ms away holds a connection for nine round trips (180 ms), and 4 connections serve at
//! most 4 / 0.180 s = 22.2 checkouts/s whatever is offered (Little's law). The search, through the
//! binary on a real lab, must find that knee within 10%, with the fault's evidence on its timeline,
//! the invariants held over every step's orders, and the knee chart drawn.

use std::process::Command;

use serde_json::Value;

const MODEL: f64 = 22.2;

#[test]
fn the_search_finds_littles_law_under_the_fault() {
    let out = std::env::temp_dir().join(format!("fortress-capacity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args([
            "capacity",
            "db-latency",
            "--variant",
            "defended",
            "--condition",
            "fault",
        ])
        .args(["--profile", "quick", "--out"])
        .arg(&out)
        .output()
        .expect("failed to run fortress");
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{said}");
    let folder = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .expect("a run folder")
        .unwrap()
        .path();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("capacity.json")).unwrap()).unwrap();
    let variant = &report["variants"][0];
    let search = &variant["searches"][0];
    assert_eq!(search["condition"], "fault", "{said}");
    assert_eq!(search["found"]["bound"], "between", "a knee, not a bound: {said}");
    let capacity = search["capacity"].as_f64().unwrap();
    assert!(
        (capacity - MODEL).abs() <= 0.1 * MODEL,
        "capacity under the fault {capacity}/s, the model {MODEL}/s:\n{said}"
    );
    let broke = search["found"]["broke"].as_f64().unwrap();
    assert!(
        broke > capacity && broke <= capacity * 1.1 + 1e-9,
        "bracket {capacity} to {broke}"
    );
    let timeline = variant["timeline"].as_array().unwrap();
    let revert = timeline
        .iter()
        .find(|e| e["action"] == "revert")
        .expect("the fault reverted");
    assert_eq!(
        revert["observed"]["touched"], true,
        "the fault's evidence: {revert}"
    );
    assert_eq!(variant["verdicts"][0]["outcome"], "confirmed", "{said}");
    assert!(
        (variant["invariants"]["checks"].as_array().unwrap())
            .iter()
            .all(|c| c["held"] == true),
        "{said}"
    );
    assert!(folder.join("knee-defended.png").is_file());
    std::fs::remove_dir_all(&out).unwrap();
}
