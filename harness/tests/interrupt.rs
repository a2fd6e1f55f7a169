//! Stopping `fortress experiment` from outside, through the binary, on a real lab.
//!
//! - Ctrl-C (SIGINT) at evenly spaced instants across a whole run, and at its seams (a phase with
//!   faults starting, the second variant starting, the report being written): every time the run
//!   exits 4, marks its folder interrupted, and leaves no container behind.
//! - SIGTERM mid-fault: the same as Ctrl-C.
//! - SIGKILL mid-fault: the labs stay (nothing can clean up after SIGKILL); the next run removes them
//!   as it starts its own, and says so; `fortress doctor` does the same for a run killed after it.
//!
//! The runs take turns: each one loads the 2-core machine on its own.

mod leftovers;

use leftovers::containers_owned_by;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A short experiment with two variants, three phases and two faults (a network fault and a killed
/// container) in the middle one: every kind of seam in ~25 s.
const SWEEP: &str = r#"
name = "sweep"
story = "Two variants, a faulty middle phase: somewhere to press Ctrl-C."

[seed]
products = 10
users = 20
stock = 100000
orders_per_user = 0

[load]
rate = 40
users = 8
mix = { browse = 1, checkout = 1 }

[[phases]]
name = "before"
seconds = 2

[[phases]]
name = "fault"
seconds = 2
faults = [{ kind = "latency", link = "postgres", ms = 20.0 }, { kind = "kill", target = "redis" }]

[[phases]]
name = "after"
seconds = 2

[variants.vulnerable]
modes = { cache_failure = "fallthrough" }

[variants.defended]
modes = { cache_failure = "breaker" }

[[predictions]]
variant = "defended"
metric = "throughput_rps"
phase = "after"
compare = ">"
threshold = 0.0
"#;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fortress-interrupt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sweep.toml"), SWEEP).unwrap();
    dir
}

/// A `fortress experiment` of the sweep file, its stderr lines arriving on the receiver.
fn start(dir: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["experiment"])
        .arg(dir.join("sweep.toml"))
        .arg("--out")
        .arg(dir.join("runs"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to run fortress");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

/// Waits for a line containing `wanted`; fails the test, with everything seen, if none comes in time.
fn wait_for(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, wanted: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            let found = line.contains(wanted);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!(
        "no {wanted:?} within {within:?}; the run said:\n{}",
        seen.join("\n")
    );
}

fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {}", child.id());
}

/// Waits for the run to end by itself (within two minutes); answers its exit code and what it said.
fn finish(mut child: Child, lines: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        while let Ok(line) = lines.try_recv() {
            seen.push(line);
        }
        if let Some(status) = child.try_wait().unwrap() {
            while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                seen.push(line);
            }
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The newest run's journal has what happened before the signal (phases began), no verdict, and why
/// the run stopped.
fn assert_the_journal_kept_the_run_up_to_the_stop(dir: &Path, when: &str) {
    use fortress::experiment::journal::{self, Entry};
    let newest = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let run = journal::read(&newest.join("journal.ndjson")).unwrap_or_else(|e| panic!("{when}: {e}"));
    assert!(run.summary.is_none(), "{when}: judged");
    assert!(
        run.stopped.as_deref().is_some_and(|r| r.contains("interrupted")),
        "{when}: {:?}",
        run.stopped
    );
    let phases = run
        .entries
        .iter()
        .filter(|e| matches!(e, Entry::PhaseStarted { .. }));
    assert!(phases.count() > 0, "{when}: no phase in the journal");
}

/// One run stopped with `sig` (SIGINT in the sweep): at `after` past its start, or at the line `at_line`.
fn interrupted_run(dir: &Path, sig: &str, after: Option<Duration>, at_line: Option<&str>) -> String {
    let (child, lines) = start(dir);
    let pid = child.id();
    let mut seen = Vec::new();
    if let Some(line) = at_line {
        wait_for(&lines, &mut seen, line, Duration::from_secs(120));
    }
    if let Some(after) = after {
        std::thread::sleep(after);
    }
    signal(&child, &format!("-{sig}"));
    let code = finish(child, &lines, &mut seen);
    let said = seen.join("\n");
    let when = at_line.map_or_else(
        || format!("{:?} after the start", after.unwrap_or_default()),
        |l| format!("at {l:?}"),
    );
    assert_eq!(code, Some(4), "SIG{sig} {when}: exit code; the run said:\n{said}");
    assert!(said.contains("interrupted"), "SIG{sig} {when}: {said}");
    if at_line.is_some() {
        assert_the_journal_kept_the_run_up_to_the_stop(dir, &when);
    }
    let left = containers_owned_by(pid);
    assert!(
        left.is_empty(),
        "SIG{sig} {when}: containers left: {left:?}\n{said}"
    );
    when
}

#[test]
fn ctrl_c_at_any_instant_exits_4_marks_the_run_and_leaves_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("sweep");
    // A whole run first: how long it takes, and that it ends well without a signal.
    let started = Instant::now();
    let (child, lines) = start(&dir);
    let pid = child.id();
    let mut seen = Vec::new();
    assert_eq!(finish(child, &lines, &mut seen), Some(0), "{}", seen.join("\n"));
    let whole = started.elapsed();
    assert!(containers_owned_by(pid).is_empty());

    let mut tried = Vec::new();
    // Spread over the first 80% of the whole run: a run's length varies by a few seconds here, and a
    // signal sent after the run has ended would test nothing. The seams below cover the end. Seven
    // instants, about 3 s apart in a ~25 s run, land in every phase of both variants and in the
    // labs' start; ten cost CI about 20 s more.
    let instants = 7;
    for i in 0..instants {
        let after = whole.mul_f64(0.8 * f64::from(i) / f64::from(instants)) + Duration::from_millis(300);
        tried.push(interrupted_run(&dir, "INT", Some(after), None));
    }
    for seam in [
        "vulnerable: phase fault",
        "vulnerable: phase after",
        "defended: phase before",
        "defended: phase after",
    ] {
        tried.push(interrupted_run(&dir, "INT", None, Some(seam)));
    }
    eprintln!(
        "SIGINT at {} instants, each exit 4, nothing left:\n  {}",
        tried.len(),
        tried.join("\n  ")
    );

    // Every interrupted run's folder says so, and holds no verdict a report would show.
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let marked = runs.iter().filter(|r| r.join("INTERRUPTED").is_file()).count();
    assert_eq!(marked, tried.len(), "{runs:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_mid_fault_is_a_ctrl_c() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("sigterm");
    // What `timeout`, `docker stop` and a cancelled CI job send: the faults are reverted, the lab removed.
    interrupted_run(&dir, "TERM", None, Some("vulnerable: phase fault"));
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        runs.len() == 1 && runs[0].join("INTERRUPTED").is_file(),
        "{runs:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts a run, waits for its fault phase, and kills it with SIGKILL: its labs stay behind.
fn killed_mid_fault(dir: &Path, seen: &mut Vec<String>) -> u32 {
    let (mut child, lines) = start(dir);
    let pid = child.id();
    wait_for(&lines, seen, "vulnerable: phase fault", Duration::from_secs(120));
    signal(&child, "-KILL");
    child.wait().unwrap();
    let left = containers_owned_by(pid);
    assert!(left.len() >= 4, "the killed run's labs are still there: {left:?}");
    pid
}

#[test]
fn a_run_killed_with_sigkill_is_removed_by_the_next_command() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("sigkill");
    let mut seen = Vec::new();
    let first = killed_mid_fault(&dir, &mut seen);

    // The next run removes the first one's labs as it starts its own, and says so; then it is killed too.
    let (mut child, lines) = start(&dir);
    let second = child.id();
    let said = format!("left by fortress (pid {first}), which is gone");
    wait_for(&lines, &mut seen, &said, Duration::from_secs(120));
    wait_for(
        &lines,
        &mut seen,
        "vulnerable: phase fault",
        Duration::from_secs(120),
    );
    assert!(containers_owned_by(first).is_empty(), "{}", seen.join("\n"));
    signal(&child, "-KILL");
    child.wait().unwrap();
    assert!(containers_owned_by(second).len() >= 4);

    // `fortress doctor` removes the second one's.
    let doctor = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .arg("doctor")
        .output()
        .expect("fortress doctor");
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains(&format!("left by fortress (pid {second}), which is gone")),
        "doctor says what it removed:\n{said}"
    );
    assert!(containers_owned_by(second).is_empty(), "{said}");
    std::fs::remove_dir_all(&dir).unwrap();
}
