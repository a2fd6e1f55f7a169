//! What watching costs: the load generator's throughput with Fortress's own observers (the
//! per-request recorder and the 1 Hz sampler of the service's /metrics and Postgres's statistics)
//! against the same load without them, side by side in one run on one lab.
//!
//! The load is closed-loop (an arrival rate far above what the lab can serve), so throughput is
//! whatever the client, the service and Postgres manage together on this machine; the recorder and
//! the sampler are the only difference between the two arms. After an uncounted warm-up, the arms
//! alternate in ABBA order (observed, bare, bare, observed, ...) so that drift in the machine falls on
//! both. Target: observed / bare >= 0.95.
//!
//! Run: `cargo bench -p harness --bench observer_overhead` (env `BENCH_SECONDS` per arm, default 10;
//! `BENCH_ROUNDS`, default 4: whole ABBA pairs). Needs Docker and the images (`ci/setup`).

use std::path::PathBuf;
use std::time::Duration;

use fortress::env::{Lab, LabSpec};
use fortress::load::{self, LoadSpec, Recorder};
use fortress::observe::Observer;
use fortress::vocabulary::{Scenario, Start};
use reference_service::seed::SeedPlan;
use tokio_util::sync::CancellationToken;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Samples once a second, as the experiment runner does, until `done`.
async fn sample_until(lab: &Lab, recorder: &Recorder, done: &CancellationToken) -> usize {
    let mut observer = Observer::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut samples = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = done.cancelled() => return samples,
        }
        let values = observer.sample(lab).await;
        let seconds = recorder.take_finished();
        // A tick counts when it read the lab's counters or took a finished second from the recorder.
        samples += usize::from(!values.total.is_empty() || !seconds.is_empty());
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 10);
    let rounds = env_number("BENCH_ROUNDS", 4);
    let spec = LabSpec::with_binary(PathBuf::from(env!("CARGO_BIN_EXE_fortress")));
    let lab = Lab::start(&spec, &|line| eprintln!("  {line}"))
        .await
        .expect("the lab did not start: it needs Docker and the images (run ci/setup)");
    let base_url = lab.service_url(1).await.expect("service url");
    let plan = SeedPlan {
        products: 20,
        users: 50,
        stock: 100_000,
        ..SeedPlan::default()
    };
    lab.seed(&plan).await.expect("seed");

    let load = LoadSpec {
        base_url,
        rate: 1_000_000.0, // far above what the lab serves: a closed loop
        users: 32,
        mix: vec![(Scenario::Browse, 70), (Scenario::Availability, 30)],
        start: Start::Staggered,
        duration: Duration::from_secs(seconds),
        products: 20,
        shoppers: 50,
        request_timeout: Duration::from_secs(10),
        sessions: Default::default(),
        script: None,
    };
    let report_dir = std::env::temp_dir().join(format!("fortress-overhead-{}", std::process::id()));
    let report = report_dir.join("goose-report.html");
    println!("closed-loop browse/availability, 32 users, {seconds} s per arm, {rounds} rounds");
    println!(
        "{:>5}  {:>9}  {:>12}  {:>8}  {:>8}",
        "round", "arm", "requests/s", "failed", "samples"
    );
    // A warm-up first (Postgres's buffers, the service's pools, the caches), counted in neither arm.
    let warm_up = LoadSpec {
        duration: Duration::from_secs(3),
        ..load.clone()
    };
    let turn = load::Turn::take(&CancellationToken::new())
        .await
        .expect("no other load runs in this process");
    load::run(
        &warm_up,
        Recorder::off(),
        &report,
        &turn,
        &CancellationToken::new(),
    )
    .await
    .expect("the warm-up load failed");
    let (mut observed_total, mut bare_total) = (0.0, 0.0);
    for round in 1..=rounds {
        // ABBA: the arm that goes first changes every round, so neither always runs on a colder lab.
        let order = if round % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for observed in order {
            let recorder = if observed {
                Recorder::new()
            } else {
                Recorder::off()
            };
            let done = CancellationToken::new();
            let run = async {
                let summary =
                    load::run(&load, recorder.clone(), &report, &turn, &CancellationToken::new()).await;
                done.cancel();
                summary
            };
            let (summary, samples) = if observed {
                tokio::join!(run, sample_until(&lab, &recorder, &done))
            } else {
                (run.await, 0)
            };
            let summary = summary.expect("the load failed");
            let rate = summary.goose_requests as f64 / summary.active.as_secs_f64();
            if observed {
                observed_total += rate;
            } else {
                bare_total += rate;
            }
            let arm = if observed { "observed" } else { "bare" };
            println!(
                "{round:>5}  {arm:>9}  {rate:>12.1}  {:>8}  {samples:>8}",
                summary.goose_failures
            );
        }
    }
    let ratio = observed_total / bare_total;
    println!(
        "\nobserved / bare throughput: {ratio:.3} (mean {:.1} vs {:.1} requests/s; target >= 0.95)",
        observed_total / rounds as f64,
        bare_total / rounds as f64
    );
    let _ = std::fs::remove_dir_all(&report_dir);
    lab.shutdown().await.expect("remove the lab");
}
