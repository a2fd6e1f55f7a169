//! A run written to a real Prometheus by remote write (`fortress experiment --prometheus URL`), then
//! read back with PromQL: the phase's p95 is the run's own figure, and the fault's window is where
//! the run's timeline put it. The Prometheus is the lab's image (ci/setup builds it from Debian's
//! package), published on 127.0.0.1 only. And a run watched while it goes (`--live ADDR`): headless
//! Chromium shows the fault phase and the active fault on the page.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Browsing with 20 ms added to Redis for 3 s: one variant, short, so the export is what is tested.
const EXPORTED: &str = r#"
name = "exported"
story = "Browsing, with 20 ms added to Redis for three seconds; the run is then written to Prometheus."

[seed]
products = 10
users = 20
stock = 1000
orders_per_user = 0

[load]
rate = 20
users = 4
mix = { browse = 1 }

[[phases]]
name = "before"
seconds = 3

[[phases]]
name = "fault"
seconds = 3
faults = [{ kind = "latency", link = "redis", ms = 20.0 }]

[[phases]]
name = "after"
seconds = 2

[variants.defended]
modes = { cache_failure = "breaker" }

[[predictions]]
variant = "defended"
metric = "throughput_rps"
phase = "after"
compare = ">"
threshold = 0.0
"#;

/// A Prometheus container, removed when dropped.
struct Prometheus {
    id: String,
    port: u16,
}

impl Prometheus {
    fn start() -> Self {
        let output = Command::new("docker")
            .args([
                "run",
                "-d",
                "-p",
                "127.0.0.1::9090",
                "--label",
                "fortress.test=export",
            ])
            .arg("fortress/prometheus:2.42")
            .output()
            .expect("docker run (the tests need Docker and the images: run ci/setup)");
        assert!(
            output.status.success(),
            "cannot start fortress/prometheus:2.42 (run ci/setup): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let port = Command::new("docker")
            .args(["port", &id, "9090/tcp"])
            .output()
            .unwrap();
        let port = String::from_utf8_lossy(&port.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:").map(str::to_owned))
            .and_then(|p| p.trim().parse().ok())
            .expect("a port published on 127.0.0.1");
        Self { id, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Polls `/-/ready` for up to 30 s.
    async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = http.get(self.url("/-/ready")).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "Prometheus was not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An instant PromQL query's result vector (or matrix, for a range selector).
    async fn query(&self, http: &reqwest::Client, promql: &str) -> Vec<Value> {
        let url = reqwest::Url::parse_with_params(&self.url("/api/v1/query"), [("query", promql)]).unwrap();
        let answer: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"].as_array().unwrap().clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", "-v", &self.id]).output();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fortress-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("exported.toml"), EXPORTED).unwrap();
    dir
}

fn run_folder(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .next()
        .expect("a run folder")
        .unwrap()
        .path()
}

/// A sample's value, from Prometheus's `[timestamp, "value"]`.
fn value_of(sample: &Value) -> f64 {
    sample[1].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_run_written_to_prometheus_reads_back_its_figures_and_fault_windows() {
    let prometheus = Prometheus::start();
    let http = reqwest::Client::new();
    prometheus.ready(&http).await;
    let dir = scratch("prometheus");
    let output = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .arg("experiment")
        .arg(dir.join("exported.toml"))
        .args(["--out"])
        .arg(dir.join("runs"))
        .args(["--prometheus", &prometheus.url("/api/v1/write")])
        .output()
        .unwrap();
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("prometheus: "), "{said}");
    let folder = run_folder(&dir);
    let run = folder.file_name().unwrap().to_string_lossy().into_owned();
    let series: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(folder.join("timeseries-defended.json")).unwrap())
            .unwrap();

    // The fault phase's worst p95, as the run saw it and as Prometheus returns it.
    let fault_p95: Vec<f64> = series
        .iter()
        .filter(|s| s["phase"] == "fault")
        .filter_map(|s| s["values"]["p95_ms"].as_f64())
        .collect();
    let selector = format!("fortress_p95_ms{{run=\"{run}\",variant=\"defended\",phase=\"fault\"}}");
    let max = prometheus
        .query(&http, &format!("max_over_time({selector}[1h])"))
        .await;
    assert_eq!(max.len(), 1, "{max:?}\n{said}");
    let expected = fault_p95.iter().copied().fold(f64::MIN, f64::max);
    assert!(
        (value_of(&max[0]["value"]) - expected).abs() < 1e-9,
        "{max:?} against {expected}"
    );
    let count = prometheus
        .query(&http, &format!("count_over_time({selector}[1h])"))
        .await;
    assert_eq!(value_of(&count[0]["value"]), fault_p95.len() as f64);

    // The fault's window: 1 from the inject's end to the revert's start, then 0.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap()).unwrap();
    let timeline = summary["variants"][0]["timeline"].as_array().unwrap();
    let at = |action: &str, field: &str| {
        let step = timeline.iter().find(|s| s["action"] == action).unwrap();
        chrono::DateTime::parse_from_rfc3339(step[field].as_str().unwrap())
            .unwrap()
            .timestamp_millis() as f64
            / 1000.0
    };
    let windows = prometheus
        .query(&http, &format!("fortress_fault_active{{run=\"{run}\"}}[1h]"))
        .await;
    assert_eq!(windows.len(), 1, "{windows:?}");
    let inject = timeline.iter().find(|s| s["action"] == "inject").unwrap();
    assert_eq!(windows[0]["metric"]["fault"], inject["fault"], "{windows:?}");
    let samples = windows[0]["values"].as_array().unwrap();
    let first = samples.first().unwrap();
    let last = samples.last().unwrap();
    assert_eq!(value_of(first), 1.0);
    assert!((first[0].as_f64().unwrap() - at("inject", "finished_at")).abs() < 0.002);
    assert_eq!(value_of(last), 0.0);
    assert!((last[0].as_f64().unwrap() - at("revert", "started_at")).abs() < 0.002);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A receiver URL that cannot take a write is refused before any lab starts.
#[test]
fn a_url_that_is_not_http_is_refused_before_the_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args([
            "experiment",
            "cache-outage",
            "--prometheus",
            "ftp://127.0.0.1/write",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("give http://HOST:PORT/api/v1/write"), "{said}");
}

/// A free port on 127.0.0.1 (taken and let go: another process could take it meanwhile, rarely).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The page at `url` as headless Chromium leaves it after running its scripts for a few seconds.
fn rendered(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("fortress-live-chromium-{}", std::process::id()));
    let output = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=4000", "--dump-dom", url])
        .output()
        .expect("chromium (ci/setup installs Debian's)");
    let _ = std::fs::remove_dir_all(profile);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_live_view_shows_the_phase_and_the_active_fault_while_the_run_goes() {
    let dir = scratch("live");
    let file = EXPORTED.replace("seconds = 3\nfaults", "seconds = 10\nfaults");
    assert_ne!(file, EXPORTED, "a fault phase long enough to look at");
    std::fs::write(dir.join("exported.toml"), file).unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
        .arg("experiment")
        .arg(dir.join("exported.toml"))
        .arg("--out")
        .arg(dir.join("runs"))
        .args(["--live", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let now = loop {
        let answer = http.get(format!("{url}/live.json")).send().await;
        if let Ok(answer) = answer
            && let Ok(now) = answer.json::<Value>().await
            && now["variants"]["defended"]["phase"] == "fault"
            && now["variants"]["defended"]["faults"]
                .as_object()
                .is_some_and(|f| !f.is_empty())
        {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the live view never showed the fault phase"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(now["experiment"], "exported");
    assert!(
        now["variants"]["defended"]["figures"]["throughput_rps"].is_number(),
        "{now}"
    );
    let page = tokio::task::spawn_blocking(move || rendered(&format!("{url}/")))
        .await
        .unwrap();
    assert!(page.contains("phase fault at"), "{page}");
    assert!(
        page.contains("faults active: latency 20ms on the redis link"),
        "{page}"
    );
    assert!(page.contains("throughput_rps"), "{page}");
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
