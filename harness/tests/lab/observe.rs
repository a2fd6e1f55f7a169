//! The observer against a running lab: the service's and Postgres's counters become rates.

use fortress::observe::Observer;
use fortress::vocabulary::Metric;
use reference_service::modes::{CacheMode, ModesPatch};
use reference_service::seed::SeedPlan;

use crate::start_lab;

#[tokio::test]
async fn reads_show_up_as_statements_at_postgres_and_as_cache_hits() {
    let lab = start_lab().await;
    let base = lab.service_url(1).await.unwrap();
    let plan = SeedPlan {
        products: 5,
        users: 2,
        stock: 10,
        orders_per_user: 1,
        seed: 42,
        ..SeedPlan::default()
    };
    lab.seed(&plan).await.unwrap();
    let cache = |mode| ModesPatch {
        cache: Some(mode),
        ..ModesPatch::default()
    };
    let read_many = || async {
        for _ in 0..30 {
            assert_eq!(
                lab.http()
                    .get(format!("{base}/products/1"))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                200
            );
        }
    };

    let mut observer = Observer::new();
    assert!(
        observer.sample(&lab).await.total.is_empty(),
        "the first sample only sets the baseline"
    );
    lab.set_modes(1, &cache(CacheMode::Off)).await.unwrap();
    read_many().await;
    let uncached = observer.sample(&lab).await.total;
    assert!(uncached[&Metric::PgStatementsPerS] > 0.0, "{uncached:?}");
    assert!(uncached[&Metric::DbStatementsPerS] > 0.0, "{uncached:?}");
    assert_eq!(
        uncached[&Metric::CacheHitRatio],
        0.0,
        "cache off: every read bypasses it"
    );

    lab.set_modes(1, &cache(CacheMode::Aside)).await.unwrap();
    read_many().await;
    let cached = observer.sample(&lab).await.total;
    assert!(
        cached[&Metric::CacheHitRatio] > 0.9,
        "one miss, then hits: {cached:?}"
    );
    // Postgres publishes transaction counts with a delay of up to a second or so: present, maybe 0 yet.
    assert!(cached.contains_key(&Metric::PgTransactionsPerS), "{cached:?}");
}
