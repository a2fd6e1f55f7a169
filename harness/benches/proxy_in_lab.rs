//! The fault proxy as the experiments run it: in its container on a lab's network, built as the lab
//! binary is built, measured with the databases' own benchmark tools, direct against through it, side
//! by side in one run.
//!
//! A lab starts (Postgres, Redis, the proxy, one replica). Two client containers join its network,
//! one from the lab's Postgres image (pgbench) and one from its Redis image (redis-benchmark), so a
//! direct connection crosses the Docker bridge as the service's would, and a proxied one crosses it to
//! the proxy and on. Each figure alternates its arms in ABBA order so that drift falls on both:
//! - pgbench select-only (`-S -M prepared`), one client: the round trip the proxy adds, in µs
//!   (target: < 50);
//! - pgbench select-only, 16 clients: proxied TPS over direct (target: >= 0.85);
//! - redis-benchmark GET and SET, 50 clients: proxied requests/s over direct (target: >= 0.85);
//! - pgbench select-only, one client, through the proxy with a 1 ms latency fault against without:
//!   the latency added, in ms (target: 1 within 5%).
//!
//! Figures go to `target/bench/proxy_in_lab.json`. Missing a target is reported, not an error.
//!
//! Run: `cargo build && cargo bench -p harness --bench proxy_in_lab` (env `BENCH_SECONDS` per arm,
//! default 5; `BENCH_ROUNDS`, default 2: whole ABBA pairs; `BENCH_LAB_BINARY`: the binary the lab
//! runs, default `target/debug/fortress` as `cargo run` builds it, or `release` for this bench's own
//! optimised build). Needs Docker and the images (`ci/setup`).

use std::path::PathBuf;
use std::process::Command;

use fortress::env::balancer::CONFIG_PATH;
use fortress::env::docker::RUN_LABEL;
use fortress::env::images::BALANCER_DEFAULT;
use fortress::env::{Lab, LabSpec};
use fortress::faults::proxy::NetworkFault;
use fortress::faults::proxy::client::ProxyClient;
use fortress::vocabulary::Link;
use serde_json::json;

const PG_PASSWORD: &str = "fortress";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The binary the lab's containers run: the dev build experiments use, unless asked otherwise.
fn lab_binary() -> PathBuf {
    match std::env::var("BENCH_LAB_BINARY").as_deref() {
        Ok("release") => PathBuf::from(env!("CARGO_BIN_EXE_fortress")),
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            let dev = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/fortress"));
            assert!(
                dev.exists(),
                "{} is missing: run `cargo build` first (or set BENCH_LAB_BINARY=release)",
                dev.display()
            );
            dev
        }
    }
}

/// Runs `docker` with `args`, panicking with its stderr if it fails; returns its stdout.
fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("could not run docker");
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A container on the lab's network that runs the benchmark tools, removed with the lab (its run
/// label) or after ten minutes at most.
struct Client {
    name: String,
}

impl Client {
    /// Starts `image` (with its arguments) as `fortress-<run>-bench-<role>` on the lab's network,
    /// labelled with the run; `options` go to `docker run` before the image.
    fn run(lab: &Lab, role: &str, options: &[&str], image: &[&str]) -> Self {
        let name = format!("fortress-{}-bench-{role}", lab.run_id);
        let run_label = format!("{RUN_LABEL}={}", lab.run_id);
        let mut args = vec!["run", "-d", "--rm", "--network", &lab.network, "--name", &name];
        args.extend(["--label", &run_label]);
        args.extend_from_slice(options);
        args.extend_from_slice(image);
        docker(&args);
        Self { name }
    }

    /// A client container from `image` that waits for `exec`s.
    fn start(lab: &Lab, role: &str, image: &str) -> Self {
        let password = format!("PGPASSWORD={PG_PASSWORD}");
        let options = ["--env", &password, "--entrypoint", "sleep"];
        Self::run(lab, role, &options, &[image, "600"])
    }

    fn exec(&self, command: &[&str]) -> String {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(command);
        docker(&args)
    }
}

/// What one pgbench run reports.
#[derive(Debug, Clone, Copy)]
struct PgBench {
    latency_ms: f64,
    tps: f64,
}

/// The number after `label` on the line that starts with it (`latency average = 0.123 ms`).
fn figure_after(output: &str, label: &str) -> f64 {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` in pgbench's output:\n{output}"))
}

fn pgbench(client: &Client, host: &str, clients: u32, seconds: u64) -> PgBench {
    let (clients, seconds) = (clients.to_string(), seconds.to_string());
    let output = client.exec(&[
        "pgbench", "-S", "-M", "prepared", "-n", "-c", &clients, "-j", "2", "-T", &seconds, "-h", host, "-p",
        "5432", "-U", "postgres", "shop",
    ]);
    PgBench {
        latency_ms: figure_after(&output, "latency average = "),
        tps: figure_after(&output, "tps = "),
    }
}

/// redis-benchmark's GET and SET requests/s, summed.
fn redis_benchmark(client: &Client, host: &str, requests: u64) -> f64 {
    let requests = requests.to_string();
    let output = client.exec(&[
        "redis-benchmark",
        "-h",
        host,
        "-p",
        "6379",
        "-c",
        "50",
        "-n",
        &requests,
        "-t",
        "get,set",
        "--csv",
    ]);
    // "test","rps",...: one line per test after the header.
    output
        .lines()
        .skip(1)
        .map(|line| {
            let field = line.split(',').nth(1).expect("a csv line with an rps field");
            field.trim_matches('"').parse::<f64>().expect("rps is a number")
        })
        .sum()
}

/// The ways to reach a database: straight, through Fortress's proxy, through HAProxy in TCP mode (the
/// reference: what a mature proxy costs on the same machine and network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Fortress,
    HaProxy,
}

const PATHS: [Path; 3] = [Path::Direct, Path::Fortress, Path::HaProxy];

/// Runs `measure` on every path, `rounds` times in an order that turns and reverses each round (so
/// drift falls on all of them); returns each path's median, in `PATHS` order.
fn by_path(rounds: u64, mut measure: impl FnMut(Path) -> f64) -> [f64; 3] {
    let mut values: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds * 2 {
        let mut order = PATHS;
        order.rotate_left(round as usize % PATHS.len());
        if round % 2 == 1 {
            order.reverse();
        }
        for path in order {
            values[path as usize].push(measure(path));
        }
    }
    values.map(median)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets the target"
    } else {
        "MISSES the target"
    }
}

/// HAProxy in TCP mode on the lab's network, forwarding 5432 and 6379 as the proxy does.
fn start_haproxy(lab: &Lab) -> Client {
    let config = format!(
        "global\n  maxconn 2000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 5m\n  \
         timeout server 5m\nlisten postgres\n  bind :5432\n  server postgres {}:5432\n\
         listen redis\n  bind :6379\n  server redis {}:6379\n",
        lab.postgres.name, lab.redis.name
    );
    let file = std::env::temp_dir().join(format!("fortress-bench-haproxy-{}.cfg", lab.run_id));
    std::fs::write(&file, config).expect("write the HAProxy config");
    let mount = format!("{}:{CONFIG_PATH}:ro", file.display());
    Client::run(lab, "haproxy", &["-v", &mount], &[BALANCER_DEFAULT])
}

/// Where each path reaches a database, by host name on the lab's network.
struct Hosts<'a> {
    direct: &'a str,
    fortress: &'a str,
    haproxy: &'a str,
}

impl Hosts<'_> {
    fn of(&self, path: Path) -> &str {
        match path {
            Path::Direct => self.direct,
            Path::Fortress => self.fortress,
            Path::HaProxy => self.haproxy,
        }
    }
}

/// pgbench with one client through each path, then again through Fortress's proxy with a 1 ms
/// latency fault: (latency per path in ms, the latency the fault added in ms).
async fn single_client(
    lab: &Lab,
    client: &Client,
    hosts: &Hosts<'_>,
    seconds: u64,
    rounds: u64,
) -> ([f64; 3], f64) {
    let latency = by_path(rounds, |path| {
        pgbench(client, hosts.of(path), 1, seconds).latency_ms
    });
    let proxy_api = ProxyClient::of(lab).await.expect("the proxy's control API");
    let fault = NetworkFault::Latency {
        ms: 1.0,
        jitter_ms: 0.0,
    };
    let (mut clean, mut faulted) = (Vec::new(), Vec::new());
    for round in 0..rounds * 2 {
        for with_fault in if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            if with_fault {
                proxy_api
                    .set(Link::Postgres, std::slice::from_ref(&fault))
                    .await
                    .expect("set the latency");
            }
            let ms = pgbench(client, hosts.fortress, 1, seconds).latency_ms;
            if with_fault {
                proxy_api.clear(Link::Postgres).await.expect("clear the latency");
                faulted.push(ms);
            } else {
                clean.push(ms);
            }
        }
    }
    (latency, median(faulted) - median(clean))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 5);
    let rounds = env_number("BENCH_ROUNDS", 2);
    let binary = lab_binary();
    println!("lab binary: {}", binary.display());
    let lab = Lab::start(&LabSpec::with_binary(binary.clone()), &|line| {
        eprintln!("  {line}")
    })
    .await
    .expect("the lab did not start: it needs Docker and the images (run ci/setup)");
    let image = |role: &str| {
        let choice = lab.images.iter().find(|c| c.role == role);
        choice
            .unwrap_or_else(|| panic!("the lab has no {role} image"))
            .image
            .clone()
    };
    let pg_client = Client::start(&lab, "pgbench", &image("postgres"));
    let redis_client = Client::start(&lab, "redis-benchmark", &image("redis"));
    let haproxy = start_haproxy(&lab);
    let pg = Hosts {
        direct: &lab.postgres.name,
        fortress: &lab.proxy.name,
        haproxy: &haproxy.name,
    };
    let redis = Hosts {
        direct: &lab.redis.name,
        ..pg
    };
    pg_client.exec(&[
        "pgbench", "-i", "-s", "10", "-q", "-h", pg.direct, "-U", "postgres", "shop",
    ]);
    // A warm-up through every path, counted in none.
    for path in PATHS {
        pgbench(&pg_client, pg.of(path), 4, 2);
    }

    println!(
        "{seconds} s per arm, {rounds} rounds of each order, medians; direct | Fortress's proxy | HAProxy (tcp)"
    );
    let (latency, fault_added_ms) = single_client(&lab, &pg_client, &pg, seconds, rounds).await;
    let added_us = latency.map(|ms| (ms - latency[0]) * 1000.0);
    println!(
        "pgbench -S, 1 client: {:.3} | {:.3} | {:.3} ms; added {:.0} | {:.0} µs: {}",
        latency[0],
        latency[1],
        latency[2],
        added_us[1],
        added_us[2],
        verdict(added_us[1] < 50.0)
    );
    println!(
        "1 ms latency fault, pgbench -S, 1 client: adds {fault_added_ms:.3} ms: {}",
        verdict((fault_added_ms - 1.0).abs() <= 0.05)
    );
    let tps = by_path(rounds, |path| pgbench(&pg_client, pg.of(path), 16, seconds).tps);
    let pg_ratio = tps.map(|t| t / tps[0]);
    println!(
        "pgbench -S, 16 clients: {:.0} | {:.0} | {:.0} TPS; ratio {:.2} | {:.2}: {}",
        tps[0],
        tps[1],
        tps[2],
        pg_ratio[1],
        pg_ratio[2],
        verdict(pg_ratio[1] >= 0.85)
    );
    let requests = 20_000 * seconds;
    let rps = by_path(rounds, |path| {
        redis_benchmark(&redis_client, redis.of(path), requests)
    });
    let redis_ratio = rps.map(|r| r / rps[0]);
    println!(
        "redis-benchmark GET+SET, 50 clients: {:.0} | {:.0} | {:.0} /s; ratio {:.2} | {:.2}: {}",
        rps[0],
        rps[1],
        rps[2],
        redis_ratio[1],
        redis_ratio[2],
        verdict(redis_ratio[1] >= 0.85)
    );

    let figures = json!({
        "lab_binary": binary,
        "seconds_per_arm": seconds,
        "rounds": rounds,
        "paths": ["direct", "fortress", "haproxy"],
        "pgbench_1_client_ms": latency,
        "added_us": added_us,
        "latency_fault_1ms_added_ms": fault_added_ms,
        "pgbench_16_clients_tps": tps,
        "pgbench_16_clients_ratio": pg_ratio,
        "redis_benchmark_50_clients_rps": rps,
        "redis_benchmark_50_clients_ratio": redis_ratio,
    });
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench"));
    std::fs::create_dir_all(&out).expect("create target/bench");
    let path = out.join("proxy_in_lab.json");
    std::fs::write(&path, serde_json::to_string_pretty(&figures).expect("json")).expect("write");
    println!("figures: {}", path.display());
    lab.shutdown().await.expect("remove the lab");
}
