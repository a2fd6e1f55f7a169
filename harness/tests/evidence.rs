//! Evidence for every fault, through the binary on a real lab: a fault that touched nothing gives no
//! verdict. The mail server paused while nothing sends mail (the load only browses) has nothing to
//! show for itself, so the prediction about its phase is inconclusive and says why; Redis paused under
//! the same load is seen by the proxy (bytes sent into the frozen process), and its phase is judged.

use std::process::Command;

use serde_json::Value;

const INERT: &str = r#"
name = "inert-fault"
story = "A pause of a container nothing talks to proves nothing; a pause of one the reads go through does."

[topology]
mail = true

[seed]
products = 10
users = 20
stock = 1000
orders_per_user = 0

[load]
rate = 30
users = 8
mix = { browse = 1 }

[[phases]]
name = "quiet"
seconds = 4
faults = [{ kind = "pause", target = "mail" }]

[[phases]]
name = "frozen"
seconds = 4
faults = [{ kind = "pause", target = "redis" }]

[variants.defended]
modes = { cache_failure = "breaker" }

[[predictions]]
variant = "defended"
metric = "throughput_rps"
phase = "quiet"
compare = ">"
threshold = 0.0

[[predictions]]
variant = "defended"
metric = "throughput_rps"
phase = "frozen"
compare = ">"
threshold = 0.0
"#;

#[test]
fn a_fault_that_touched_nothing_gives_no_verdict_and_one_that_did_is_judged() {
    let dir = std::env::temp_dir().join(format!("fortress-evidence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("inert-fault.toml");
    std::fs::write(&file, INERT).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["experiment", file.to_str().unwrap(), "--out"])
        .arg(dir.join("runs"))
        .output()
        .expect("failed to run fortress");
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(
        output.status.code(),
        Some(4),
        "the lab did not start (it needs Docker and the images: run ci/setup):\n{said}"
    );
    let folder = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap()).unwrap();
    let run = &summary["variants"][0];
    let verdicts = run["verdicts"].as_array().unwrap();
    let of = |phase: &str| verdicts.iter().find(|v| v["phase"] == phase).unwrap();
    let quiet = of("quiet");
    assert_eq!(quiet["outcome"], "inconclusive", "{quiet}\n{said}");
    let reason = quiet["reason"].as_str().unwrap();
    assert!(
        reason.contains("never touched") && reason.contains("pause mail"),
        "{reason}"
    );
    let frozen = of("frozen");
    assert_eq!(frozen["outcome"], "confirmed", "{frozen}\n{said}");
    assert_eq!(
        output.status.code(),
        Some(2),
        "an inconclusive verdict exits 2:\n{said}"
    );

    let reverts: Vec<&Value> = (run["timeline"].as_array().unwrap().iter())
        .filter(|e| e["action"] == "revert")
        .collect();
    let seen = |fault: &str| {
        let revert = reverts.iter().find(|e| e["fault"] == fault).unwrap();
        revert["observed"].clone()
    };
    let mail = seen("pause mail");
    assert_eq!(mail["touched"], false, "{mail}");
    let redis = seen("pause redis");
    assert_eq!(redis["touched"], true, "{redis}");
    let facts = redis["facts"].to_string();
    assert!(
        facts.contains("is paused") && facts.contains("redis link"),
        "{facts}"
    );
    let report = std::fs::read_to_string(folder.join("report.html")).unwrap();
    assert!(
        report.contains("NO EVIDENCE it touched the system"),
        "the report says so"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
