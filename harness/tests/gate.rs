//! The CI gate end to end, through the `fortress` binary on a real lab: the committed suite passes
//! against the committed baselines (every built-in experiment in it runs in the quick profile, both
//! variants), its JUnit names every case, and every report it wrote opens whole in a browser. Then the
//! gate bites: with the defended variant's circuit breaker removed, it fails and names the broken
//! prediction and the regressed figure.
//!
//! The runs take turns: each one loads the 2-core machine on its own.

mod browser;
mod leftovers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fortress-gate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `fortress gate ...` from the workspace root; fails the test when the lab could not start, or
/// when a lab of the run is still there once it has ended (each run's labs are removed while its
/// report is written, and the gate waits for that before it goes on).
fn gate(args: &[&str]) -> (Output, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .arg("gate")
        .args(args)
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to run fortress");
    let pid = child.id();
    let output = child.wait_with_output().expect("fortress gate did not end");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_ne!(
        output.status.code(),
        Some(4),
        "the lab did not start (it needs Docker and the images: run ci/setup)"
    );
    let left = leftovers::containers_owned_by(pid);
    assert!(left.is_empty(), "the gate left containers behind: {left:?}");
    (output, stdout)
}

fn run_folders(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("summary.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn the_committed_suite_passes_against_its_baselines_and_every_report_opens() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = scratch("suite");
    let junit = out.join("gate.xml");
    let (output, stdout) = gate(&["--junit", junit.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "the gate failed:\n{stdout}");
    assert!(
        stdout.contains(" 0 failed, 0 skipped"),
        "every figure has a committed baseline: {stdout}"
    );

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuites name=\"fortress-gate\""), "{xml}");
    assert!(xml.contains("failures=\"0\""), "{xml}");
    for expected in [
        "defended: predicts pg_statements_per_s in fault / baseline &lt;= 2",
        "vulnerable: invariant no oversell",
        "defended: figure defended statements per history request",
        "defended: predicts orders_per_s in far within 30% of 22.2",
        "defended: predicts timing_accuracy in run &lt;= 0.6",
        "defended: predicts lost_acknowledged_orders in run == 0",
        "vulnerable: invariant stock matches orders",
    ] {
        assert!(xml.contains(expected), "the JUnit lacks {expected:?}");
    }
    let cases = xml.matches("<testcase ").count();
    assert!(cases >= 50, "{cases} test cases");

    let runs = run_folders(&out);
    let suite = std::fs::read_to_string(workspace().join("ci/gates.toml")).unwrap();
    let experiments = suite.lines().filter(|l| l.trim() == "[[gate]]").count();
    assert!(experiments >= 6, "{experiments} experiments in ci/gates.toml");
    assert_eq!(
        runs.len(),
        experiments,
        "one run folder per experiment of the suite: {runs:?}"
    );
    for run in &runs {
        let name = run.file_name().unwrap().to_string_lossy().into_owned();
        let experiment = name.rsplit_once('-').unwrap().0.to_owned();
        browser::assert_page_is_whole(&run.join("report.html"), &experiment);
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_gate_fails_and_names_the_prediction_when_the_breaker_is_removed() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("bites");
    let definition = std::fs::read_to_string(workspace().join("experiments/cache-outage.toml")).unwrap();
    let defended = "[variants.defended]\nmodes = { cache_failure = \"breaker\" }";
    assert!(definition.contains(defended));
    let broken = definition.replace(
        defended,
        "[variants.defended]\nmodes = { cache_failure = \"fallthrough\" }",
    );
    std::fs::write(dir.join("cache-outage-without-breaker.toml"), broken).unwrap();
    let suite = dir.join("gates.toml");
    let committed = std::fs::read_to_string(workspace().join("ci/gates.toml")).unwrap();
    let figures = committed
        .split("[[gate]]")
        .find(|g| g.contains("experiment = \"cache-outage\""))
        .unwrap()
        .replace(
            "experiment = \"cache-outage\"",
            "experiment = \"cache-outage-without-breaker.toml\"\nvariants = [\"defended\"]",
        );
    std::fs::write(&suite, format!("[[gate]]{figures}")).unwrap();
    let out = dir.join("runs");
    let junit = dir.join("gate.xml");

    let (output, stdout) = gate(&[
        "--suite",
        suite.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "the gate should fail:\n{stdout}");
    assert!(
        stdout.contains(
            "FAILED cache-outage / defended: predicts pg_statements_per_s in fault / baseline <= 2: REFUTED"
        ),
        "the failure names the broken prediction:\n{stdout}"
    );
    assert!(
        stdout.contains(
            "FAILED cache-outage / defended: figure defended Postgres load in the outage: REGRESSED"
        ),
        "the failure names the regressed figure:\n{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure message=\"REFUTED: observed"), "{xml}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad suites and baselines stop the gate before anything runs, with exit code 3 and the file named.
#[test]
fn a_bad_suite_or_baseline_is_refused_naming_the_file() {
    let dir = scratch("bad-input");
    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "[[gate]]\nexperiment = \"cache-outrage\"\n").unwrap();
    let (output, _) = gate(&["--suite", unknown.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("unknown.toml:2: gate[0].experiment"), "{stderr}");
    assert!(
        stderr.contains("cache-outage"),
        "the known experiments are listed: {stderr}"
    );

    let bad_phase = dir.join("bad-phase.toml");
    std::fs::write(
        &bad_phase,
        "[[gate]]\nexperiment = \"n-plus-one\"\n[[gate.figure]]\nname = \"x\"\nvariant = \"defended\"\n\
         metric = \"statements_per_request\"\nphase = \"nowhere\"\nworse = \"higher\"\ntolerance = 0.5\n",
    )
    .unwrap();
    let (output, _) = gate(&["--suite", bad_phase.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("bad-phase.toml:7: gate[0].figure[0].phase"),
        "{stderr}"
    );

    let bad_slack = dir.join("bad-slack.toml");
    std::fs::write(
        &bad_slack,
        "[[gate]]\nexperiment = \"n-plus-one\"\n[[gate.figure]]\nname = \"x\"\nvariant = \"defended\"\n\
         metric = \"statements_per_request\"\nphase = \"near\"\nworse = \"higher\"\ntolerance = 0.5\nslack = -1.0\n",
    )
    .unwrap();
    let (output, _) = gate(&["--suite", bad_slack.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("bad-slack.toml:10: gate[0].figure[0].slack") && stderr.contains("0 or more"),
        "{stderr}"
    );

    for (name, suite, says) in [
        (
            "no-capacity.toml",
            "[[capacity]]\nexperiment = \"flash-sale\"\n",
            "no-capacity.toml:2: capacity[0].experiment: flash-sale has no [capacity] section",
        ),
        (
            "half-capacity.toml",
            "[[capacity]]\nexperiment = \"cache-outage\"\ncondition = \"fault\"\n",
            "half-capacity.toml:3: capacity[0].condition: capacity_kept <= 0.05 needs the steady and fault searches",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, suite).unwrap();
        let (output, _) = gate(&["--suite", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }

    let baselines = dir.join("baselines");
    std::fs::create_dir_all(&baselines).unwrap();
    std::fs::write(
        baselines.join("cache-outage.json"),
        r#"{"experiment": "cache-outage", "figures": {}}"#,
    )
    .unwrap();
    let (output, _) = gate(&["--baseline", baselines.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cache-outage.json: baseline schema none") && stderr.contains("--update-baseline"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
