//! Capacity under fault, checked against a model before any story: db-latency's checkout with
//! Postgres 20 ms away holds a connection for nine round trips (180 ms), and 4 connections serve at
//! most 4 / 0.180 s = 22.2 checkouts/s whatever is offered (Little's law). The search, through the
//! binary on a real lab, must find that knee within 10%, with the fault's evidence on its timeline,
//! the invariants held over every step's orders, and the knee chart drawn; then pgbench anchors it,
//! running the checkout's transaction on the same Postgres.

mod leftovers;

use leftovers::containers_owned_by;
use std::process::Command;

use serde_json::Value;

const MODEL: f64 = 22.2;

/// The searches take turns: each one loads the 2-core machine on its own.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_search_finds_littles_law_under_the_fault() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
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
    // The anchor: pgbench ran the checkout's transaction on the lab's own Postgres once the search
    // was over, with the pool's 5 clients and without the fault; no steady search to share it with.
    let anchor = &variant["anchor"];
    assert_eq!(anchor["outcome"], "measured", "{anchor}\n{said}");
    assert_eq!(anchor["clients"], 5, "{anchor}");
    assert!(anchor["transactions"].as_u64().unwrap() > 0, "{anchor}");
    assert_eq!(anchor["failed"], 0, "{anchor}");
    assert!(anchor["tps"].as_f64().unwrap() > capacity, "{anchor}");
    assert!(anchor["share"].is_null(), "{anchor}");
    // The journal has every step as it was judged, the search's end, and the run's.
    let journal = journal_events(&folder);
    let steps = journal.iter().filter(|e| e["event"] == "step").count();
    assert_eq!(steps, search["trials"].as_array().unwrap().len(), "{journal:?}");
    assert_eq!(journal[0]["event"], "capacity_started");
    let ended = journal
        .iter()
        .find(|e| e["event"] == "search_ended")
        .expect("the search's end");
    assert_eq!(ended["capacity"], search["capacity"]);
    assert_eq!(journal[journal.len() - 2]["event"], "anchored", "{journal:?}");
    assert_eq!(journal.last().unwrap()["event"], "capacity_ended");
    assert_eq!(journal.last().unwrap()["exit_code"], 0);
    std::fs::remove_dir_all(&out).unwrap();
}

/// The lines of a capacity run's journal, each a JSON object.
fn journal_events(folder: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(folder.join("capacity-journal.ndjson")).expect("the journal");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Ctrl-C in the middle of the search under fault: the fault is reverted, the lab removed, the run
/// exits 4 and its folder is marked interrupted, with no findings.
#[test]
fn ctrl_c_mid_search_reverts_the_fault_and_leaves_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let out = std::env::temp_dir().join(format!("fortress-capacity-stop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress"))
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
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to run fortress");
    let pid = child.id();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The first step under the fault is over: the fault is injected and the next step is starting.
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !said.iter().any(|l: &String| l.starts_with("defended/fault")) {
        assert!(
            Instant::now() < deadline,
            "no step under the fault:\n{}",
            said.join("\n")
        );
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            said.push(line);
        }
    }
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        said.extend(lines.try_iter());
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", said.join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    };
    said.extend(lines.recv_timeout(Duration::from_secs(1)));
    said.extend(lines.try_iter());
    let said = said.join("\n");
    assert_eq!(status.code(), Some(4), "{said}");
    assert!(said.contains("interrupted (Ctrl-C)"), "{said}");
    let folder = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .expect("a run folder")
        .unwrap()
        .path();
    assert!(folder.join("INTERRUPTED").is_file(), "{said}");
    assert!(
        !folder.join("capacity.json").exists(),
        "no findings from an interrupted run"
    );
    // The steps taken before the stop are in the journal, and so is the stop.
    let journal = journal_events(&folder);
    assert!(journal.iter().any(|e| e["event"] == "step"), "{journal:?}");
    let last = journal.last().unwrap();
    assert_eq!(last["event"], "capacity_stopped", "{journal:?}");
    assert!(last["reason"].as_str().unwrap().contains("interrupted"), "{last}");
    let left = containers_owned_by(pid);
    assert!(left.is_empty(), "containers left behind {left:?}:\n{said}");
    std::fs::remove_dir_all(&out).unwrap();
}
