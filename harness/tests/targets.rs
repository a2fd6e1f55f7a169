//! `fortress target FILE` from the command line: a user's Compose file checked, a mistake named by
//! file, line and field with exit code 3 (nothing started), a good file's lab printed.

mod leftovers;

use leftovers::containers_owned_by;
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
    healthcheck: { test: ["CMD", "pg_isready"] }
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

/// A target of two images ci/setup makes (Prometheus answers `/-/ready`; Redis behind a link), for
/// stopping `fortress target --up` from outside.
const SMALL: &str = r#"services:
  web:
    image: fortress/prometheus:2.42
    environment: { CACHE_ADDR: "cache:6379" }
    depends_on: [cache]
  cache:
    image: fortress/redis:7
x-fortress:
  entry: { service: web, port: 9090, ready: /-/ready }
  links: [{ from: web, to: cache, port: 6379, address_in: CACHE_ADDR }]
"#;

/// `fortress target --up` on `SMALL`, its stdout lines arriving on the receiver.
fn up(dir: &std::path::Path) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), SMALL).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["target", "--up"])
        .arg(dir.join("compose.yaml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

fn wait_for_ready(lines: &std::sync::mpsc::Receiver<String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(100)) {
            if line.contains("Ctrl-C stops the lab") {
                return;
            }
            seen.push(line);
        }
    }
    panic!("the target's lab never said it was ready:\n{}", seen.join("\n"));
}

fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

#[test]
fn ctrl_c_removes_a_targets_lab_and_sigkill_leaves_it_to_the_next_command() {
    let dir = std::env::temp_dir().join(format!("fortress-target-signals-{}", std::process::id()));

    // Ctrl-C once it is up: everything removed, exit 0.
    let (mut child, lines) = up(&dir);
    wait_for_ready(&lines);
    let pid = child.id();
    assert_eq!(containers_owned_by(pid).len(), 3, "proxy, web and cache");
    signal(pid, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        containers_owned_by(pid).is_empty(),
        "Ctrl-C left containers behind"
    );

    // SIGKILL: nothing can clean up, but the labels name the dead owner, and `fortress doctor` (as
    // any command that starts a lab) removes what it left.
    let (mut child, lines) = up(&dir);
    wait_for_ready(&lines);
    let pid = child.id();
    signal(pid, "-KILL");
    child.wait().unwrap();
    assert_eq!(
        containers_owned_by(pid).len(),
        3,
        "a killed owner's lab stays until someone reaps it"
    );
    let doctor = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .arg("doctor")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains(&format!("left by fortress (pid {pid}), which is gone")),
        "{said}"
    );
    assert!(containers_owned_by(pid).is_empty(), "{said}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C in the middle of an experiment against a target: the phase's fault is reverted (the
/// journal has its revert), every container of the lab is removed, and the exit code says so.
#[test]
fn ctrl_c_in_a_target_experiments_fault_reverts_it_and_removes_the_lab() {
    use std::io::BufRead;
    let out = std::env::temp_dir().join(format!("fortress-target-interrupt-{}", std::process::id()));
    let experiment = format!(
        "{}/../examples/pretix/redis-outage.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["experiment", &experiment, "--profile", "quick", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("phase outage")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the outage never began:\n{}",
            seen.join("\n")
        );
        if let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(100)) {
            seen.push(line);
        }
    }
    // Into the outage: the fault is injected at the phase's start.
    std::thread::sleep(std::time::Duration::from_secs(1));
    signal(pid, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(4), "Ctrl-C: exit 4");
    assert!(
        containers_owned_by(pid).is_empty(),
        "Ctrl-C left containers behind"
    );
    let run = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
    let journal = std::fs::read_to_string(run.join("journal.ndjson")).unwrap();
    let steps: Vec<&str> = (journal.lines())
        .filter(|l| l.contains("down on the web-redis link"))
        .collect();
    assert!(
        steps.iter().any(|l| l.contains("\"inject\"")) && steps.iter().any(|l| l.contains("\"revert\"")),
        "the fault's inject and revert are in the journal: {steps:?}"
    );
    assert!(
        journal.contains("interrupted"),
        "the journal says the run was stopped"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// The top of an experiment file against `compose`: its name and story, and 20 GETs of `/-/ready`
/// a second from 4 users (every entry of these tests answers it).
fn experiment_head(name: &str, story: &str, compose: &std::path::Path) -> String {
    format!(
        r#"name = "{name}"
story = "{story}"
target = "{}"

[load]
rate = 20
users = 4

[[load.requests]]
group = "browse"
method = "GET"
path = "/-/ready"
ok = [200]
"#,
        compose.display()
    )
}

/// A finished `fortress experiment` run: its exit code, what it said on stderr, its summary.
struct Ran {
    code: Option<i32>,
    said: String,
    summary: serde_json::Value,
}

/// Runs the experiment file `experiment` into a `runs` folder beside it.
fn run_experiment(experiment: &std::path::Path) -> Ran {
    let out = experiment.with_file_name("runs");
    let run = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .arg("experiment")
        .arg(experiment)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stderr).into_owned();
    let folder = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
    let summary = std::fs::read_to_string(folder.join("summary.json"))
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or_else(|e| panic!("no summary.json: {e}\n{said}"));
    Ran {
        code: run.status.code(),
        said,
        summary,
    }
}

/// An experiment on `SMALL` whose second phase stops the entry service, with a stop condition on
/// the error rate: it must trip there, before the phase's 20 s are over.
fn stopped_entry_experiment(compose: &std::path::Path) -> String {
    format!(
        r#"{}

[[phases]]
name = "steady"
seconds = 4

[[phases]]
name = "outage"
seconds = 20
faults = [{{ kind = "stop", target = "web" }}]

[variants.vulnerable]
[variants.defended]

[[predictions]]
variant = "vulnerable"
metric = "error_rate"
phase = "steady"
compare = "<="
threshold = 0.05
why = "nothing is broken yet"

[[abort]]
metric = "error_rate"
compare = ">"
threshold = 0.5
seconds = 2
"#,
        experiment_head(
            "stop-condition-on-a-target",
            "The entry service stops under load; the stop condition ends the run.",
            compose
        )
    )
}

/// A stop condition that trips on a target: the fault is reverted at once, the later variant never
/// starts, every verdict is `aborted`, nothing of the lab is left, and the exit code is 5.
#[test]
fn a_stop_condition_on_a_target_reverts_its_fault_and_no_later_variant_runs() {
    let dir = std::env::temp_dir().join(format!("fortress-target-abort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), SMALL).unwrap();
    let experiment = dir.join("experiment.toml");
    std::fs::write(&experiment, stopped_entry_experiment(&dir.join("compose.yaml"))).unwrap();
    let out = dir.join("runs");
    let child = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .arg("experiment")
        .arg(&experiment)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let run = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(5),
        "a tripped stop condition: exit 5\n{said}"
    );
    assert!(containers_owned_by(pid).is_empty(), "the lab was left behind");
    let folder = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
    let journal = std::fs::read_to_string(folder.join("journal.ndjson")).unwrap();
    let stop: Vec<&str> = journal.lines().filter(|l| l.contains("stop web")).collect();
    assert!(
        stop.iter().any(|l| l.contains("\"inject\"")) && stop.iter().any(|l| l.contains("\"revert\"")),
        "the stop of web is injected and reverted: {stop:?}\n{said}"
    );
    let tripped = journal
        .lines()
        .find(|l| l.contains("\"aborted\""))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        tripped.contains("error_rate > 0.5 for 2 s") && tripped.contains("outage"),
        "{tripped}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap()).unwrap();
    let variants = summary["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 1, "the defended variant never ran: {summary}");
    assert!(
        (variants[0]["verdicts"].as_array().unwrap())
            .iter()
            .all(|v| v["outcome"] == "aborted"),
        "{summary}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A readiness URL that never answers 200: the start fails within `--deadline`, with the entry
/// service's own last log lines, and removes what it started.
#[test]
fn a_target_that_never_gets_ready_fails_with_its_own_log_lines_and_leaves_nothing() {
    let dir = std::env::temp_dir().join(format!("fortress-target-unready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("compose.yaml");
    std::fs::write(&file, SMALL.replace("ready: /-/ready", "ready: /-/never")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(["target", "--up", "--deadline", "8s"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{said}");
    assert!(
        said.contains("web was not ready within 8s: GET http://127.0.0.1:"),
        "{said}"
    );
    assert!(said.contains("/-/never last gave HTTP 404"), "{said}");
    // Prometheus's own words, from its container's log.
    assert!(
        said.contains("its last log lines:") && said.contains("Server is ready to receive web requests"),
        "{said}"
    );
    assert!(
        containers_owned_by(pid).is_empty(),
        "a failed start left containers behind"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `SMALL` under load while its entry is stopped and started again, judged with HTTP invariants:
/// the load finds the entry at the same address after the restart, and an HTTP check holds or
/// fails on what the entry answers after the run.
#[test]
fn a_restarted_entry_is_found_again_and_http_invariants_judge_its_answers() {
    // The variant runs its own image of the entry (a release after a change: here the same
    // Prometheus under a tag of this test's own), and the summary says which image it ran.
    let tag = format!("fortress-test/prometheus:variant-{}", std::process::id());
    let tagged = Command::new("docker")
        .args(["tag", "fortress/prometheus:2.42", &tag])
        .status()
        .expect("docker tag (the tests need Docker: run ci/setup)");
    assert!(tagged.success(), "docker tag {tag}");
    let dir = std::env::temp_dir().join(format!("fortress-target-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), SMALL).unwrap();
    let experiment = dir.join("experiment.toml");
    let text = format!(
        r#"{}

[[phases]]
name = "steady"
seconds = 2

[[phases]]
name = "outage"
seconds = 3
faults = [{{ kind = "stop", target = "web" }}]

[[phases]]
name = "recovery"
seconds = 2

[[phases]]
name = "after"
seconds = 4

[variants.vulnerable]
images = {{ web = "{tag}" }}

[[invariants]]
name = "ready again"
http = {{ path = "/-/ready", contains = "Ready" }}

[[invariants]]
name = "a page nobody serves"
http = {{ path = "/-/never" }}

[[predictions]]
variant = "vulnerable"
metric = "error_rate"
phase = "after"
compare = "<="
threshold = 0.05
why = "the entry is back at the address the load knows"
"#,
        experiment_head(
            "restarted-entry",
            "The entry service is stopped for 3 s under load, then started again.",
            &dir.join("compose.yaml")
        )
    );
    std::fs::write(&experiment, text).unwrap();
    let ran = run_experiment(&experiment);
    let _ = Command::new("docker").args(["rmi", &tag]).output();
    let (said, variant) = (&ran.said, &ran.summary["variants"][0]);
    let image = |service: &str| {
        let images = variant["images"].as_array().unwrap();
        images.iter().find(|c| c["role"] == service).unwrap().clone()
    };
    assert_eq!(
        (image("web")["image"].as_str(), image("web")["source"].as_str()),
        (Some(tag.as_str()), Some("variant"))
    );
    assert_eq!(image("cache")["source"], "compose");
    assert_eq!(
        variant["verdicts"][0]["outcome"], "confirmed",
        "{variant}\n{said}"
    );
    let checks = variant["invariants"]["checks"].as_array().unwrap();
    let check = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(check("ready again")["held"], true, "{checks:?}");
    let never = check("a page nobody serves");
    assert_eq!(never["held"], false, "{checks:?}");
    assert_eq!(never["detail"], "GET /-/never answered 404, not one of [200]");
    assert_eq!(ran.code, Some(1), "a broken invariant refutes the run\n{said}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `SMALL` with its entry's own `/metrics` mapped: Prometheus counts what it answered by handler
/// and code, so the target's service rates (answers a second, the 5xx share) come from its own
/// counters, and a prediction may judge them.
#[test]
fn a_targets_own_metrics_give_its_service_rates() {
    let dir = std::env::temp_dir().join(format!("fortress-target-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = r#"  metrics:
    path: /metrics
    counters:
      responses: 'prometheus_http_requests_total{handler="/-/ready"}'
      responses_5xx: 'prometheus_http_requests_total{code=~"5.."}'
"#;
    std::fs::write(dir.join("compose.yaml"), format!("{SMALL}{metrics}")).unwrap();
    let experiment = dir.join("experiment.toml");
    let text = format!(
        r#"{}

[[phases]]
name = "steady"
seconds = 4

[variants.vulnerable]

[[predictions]]
variant = "vulnerable"
metric = "service_rps"
phase = "steady"
compare = ">="
threshold = 12.0
why = "the entry's own count of the 20 a second it is sent"

[[predictions]]
variant = "vulnerable"
metric = "http_5xx_rate"
phase = "steady"
compare = "=="
threshold = 0.0
why = "nothing is broken"
"#,
        experiment_head(
            "own-metrics",
            "The entry's own counters, read from its /metrics.",
            &dir.join("compose.yaml")
        )
    );
    std::fs::write(&experiment, text).unwrap();
    let ran = run_experiment(&experiment);
    let (said, variant) = (&ran.said, &ran.summary["variants"][0]);
    let outcomes: Vec<&str> = (variant["verdicts"].as_array().unwrap())
        .iter()
        .map(|v| v["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["confirmed", "confirmed"], "{variant}\n{said}");
    let answered = variant["phase_stats"]["steady"]["service_rps"].as_f64().unwrap();
    assert!(
        (15.0..=25.0).contains(&answered),
        "20 a second sent, {answered} counted"
    );
    assert_eq!(ran.code, Some(0), "{said}");
    let folder = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(folder.join("chart-service-requests.png").exists(), "its chart");
    let series = std::fs::read_to_string(folder.join("timeseries-vulnerable.csv")).unwrap();
    let header = series.lines().next().unwrap();
    assert!(
        header.contains("service_rps") && !header.contains("db_statements_per_s"),
        "a counter not mapped is not measured, not 0: {header}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `SMALL` with two replicas of its entry behind the lab's HAProxy: one replica killed under load
/// costs a few requests at most (the balancer retries a failed connection on the other replica and
/// takes the dead one out within 3 s), and none once it is started again; a rolling restart, each
/// replica drained before it stops, costs none.
#[test]
fn a_balancer_in_front_of_a_targets_replicas_rides_out_one_killed_and_a_deploy() {
    let dir = std::env::temp_dir().join(format!("fortress-target-balanced-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let balanced = SMALL
        .replace(
            "    depends_on: [cache]\n",
            "    depends_on: [cache]\n    deploy: { replicas: 2 }\n",
        )
        .replace("ready: /-/ready }", "ready: /-/ready, balancer: true }");
    assert!(
        balanced.contains("balancer: true") && balanced.contains("replicas: 2"),
        "{balanced}"
    );
    std::fs::write(dir.join("compose.yaml"), balanced).unwrap();
    let experiment = dir.join("experiment.toml");
    let text = format!(
        r#"{}

[[phases]]
name = "steady"
seconds = 3

[[phases]]
name = "crash"
seconds = 5
faults = [{{ kind = "kill", target = "web", count = 1 }}]

[[phases]]
name = "after"
seconds = 3

[[phases]]
name = "deploy"
seconds = 10
faults = [{{ kind = "rolling_restart" }}]

[variants.defended]

[[predictions]]
variant = "defended"
metric = "error_rate"
phase = "deploy"
compare = "<="
threshold = 0.01
why = "each replica is taken out of the balancer and drained before it stops, and let back in once its checks pass"

[[predictions]]
variant = "defended"
metric = "error_rate"
phase = "crash"
compare = "<="
threshold = 0.1
why = "a request whose connection the dead replica refuses or resets is retried on the other one"

[[predictions]]
variant = "defended"
metric = "error_rate"
phase = "after"
compare = "<="
threshold = 0.02
why = "the killed replica is started again and health-checked back in"
"#,
        experiment_head(
            "a-replica-dies",
            "One of two replicas of the entry is killed under load, behind the balancer.",
            &dir.join("compose.yaml")
        )
    );
    std::fs::write(&experiment, text).unwrap();
    let ran = run_experiment(&experiment);
    let (said, summary) = (&ran.said, &ran.summary);
    assert_eq!(ran.code, Some(0), "{said}");
    assert!(said.contains("balancer started"), "{said}");
    let timeline = summary["variants"][0]["timeline"].to_string();
    assert!(timeline.contains("kill web"), "{timeline}");
    for step in [
        "take web-1 out of the balancer",
        "stop web-1",
        "take web-2 out of the balancer",
        "stop web-2",
        "docker: 2 of 2 web replicas started again",
    ] {
        assert!(timeline.contains(step), "the deploy's {step:?}: {timeline}");
    }
    let outcomes = summary["variants"][0]["verdicts"].to_string();
    assert!(!outcomes.contains("inconclusive"), "{outcomes}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A target whose entry (HAProxy, configured from its environment) calls an HTTP dependency
/// (Prometheus) on a link marked `http: true`: the lab's proxy reads its requests, so an HTTP fault
/// answers half of them 503 itself, and the error rate and the proxy's evidence show it.
const HTTP_CHAIN: &str = r#"services:
  web:
    image: fortress/haproxy:2.6
    entrypoint:
      - sh
      - -c
      - printf 'defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\nfrontend shop\n  bind :8080\n  default_backend api\nbackend api\n  server api %s\n' "$API" > /tmp/web.cfg && exec haproxy -db -f /tmp/web.cfg
    environment: { API: "api:9090" }
    depends_on: [api]
  api:
    image: fortress/prometheus:2.42
x-fortress:
  entry: { service: web, port: 8080, ready: /-/ready }
  links: [{ from: web, to: api, port: 9090, address_in: API, http: true }]
"#;

#[test]
fn an_http_fault_on_a_targets_http_link_answers_its_share_of_requests() {
    let dir = std::env::temp_dir().join(format!("fortress-target-http-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), HTTP_CHAIN).unwrap();
    let experiment = dir.join("experiment.toml");
    let text = format!(
        r#"{}

[[phases]]
name = "steady"
seconds = 3

[[phases]]
name = "fault"
seconds = 5
faults = [{{ kind = "http_status", link = "web-api", status = 503, fraction = 0.5 }}]

[variants.vulnerable]

[[predictions]]
variant = "vulnerable"
metric = "error_rate"
phase = "fault"
compare = ">="
threshold = 0.2
why = "the proxy answers 503 on half the connections it takes; HAProxy passes the 503 on"

[[predictions]]
variant = "vulnerable"
metric = "error_rate"
phase = "steady"
compare = "<="
threshold = 0.02
why = "nothing is broken yet"
"#,
        experiment_head(
            "http-link",
            "Half the calls from the entry to its HTTP dependency are answered 503 by the fault.",
            &dir.join("compose.yaml")
        )
    );
    std::fs::write(&experiment, text).unwrap();
    let ran = run_experiment(&experiment);
    let (said, summary) = (&ran.said, &ran.summary);
    assert_eq!(ran.code, Some(0), "{said}");
    let timeline = &summary["variants"][0]["timeline"];
    let revert = (timeline.as_array().unwrap().iter())
        .find(|e| e["action"] == "revert")
        .unwrap_or_else(|| panic!("{timeline}"));
    assert!(
        revert["evidence"]["http_answered"].as_u64().unwrap() > 0,
        "{revert}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
