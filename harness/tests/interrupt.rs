//! Ctrl-C in the middle of `fortress experiment`, through the binary, during the second variant's
//! fault: by then goose's killswitch has been pulled and reset once (the first variant's load ended
//! through it), and goose's own SIGINT handler is the one that catches the press. The run must still
//! stop, revert the fault, remove both labs and exit 4.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn lines_until(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, wanted: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            eprintln!("| {line}");
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

#[test]
fn ctrl_c_in_the_second_variants_fault_reverts_removes_the_labs_and_exits_4() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = std::env::temp_dir().join(format!("fortress-interrupt-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["experiment", "cache-outage", "--profile", "quick", "--out"])
        .arg(&out)
        .current_dir(workspace)
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
    let mut seen = Vec::new();
    lines_until(
        &lines,
        &mut seen,
        "defended: phase fault",
        Duration::from_secs(180),
    );
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 60 s after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        eprintln!("| {line}");
        seen.push(line);
    }
    let said = seen.join("\n");
    assert_eq!(status.code(), Some(4), "exit code after Ctrl-C:\n{said}");
    assert!(
        said.contains("every fault was reverted and the lab removed"),
        "{said}"
    );

    let labs: Vec<&str> = seen
        .iter()
        .filter_map(|l| l.split_once(": lab ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(labs.len(), 2, "both labs were reported ready:\n{said}");
    for run_id in labs {
        let left = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=fortress.run={run_id}")])
            .output()
            .expect("docker ps");
        assert!(
            String::from_utf8_lossy(&left.stdout).trim().is_empty(),
            "containers of lab {run_id} are left"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
