//! The observer against a running lab: the service's and Postgres's counters become rates.

use fortress::env::ADMIN_TOKEN;
use fortress::experiment::metric::Metric;
use fortress::observe::Observer;
use serde_json::json;

use crate::start_lab;

#[tokio::test]
async fn reads_show_up_as_statements_at_postgres_and_as_cache_hits() {
    let lab = start_lab().await;
    let base = lab.service_url(1).await.unwrap();
    let admin = |path: &str, body| {
        lab.http()
            .request(reqwest::Method::PUT, format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let seeded = lab
        .http()
        .post(format!("{base}/admin/seed"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "products": 5, "users": 2, "stock": 10, "orders_per_user": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), 200);
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
        observer.sample(&lab).await.is_empty(),
        "the first sample only sets the baseline"
    );
    assert_eq!(
        admin("/admin/modes", json!({ "cache": "off" }))
            .await
            .unwrap()
            .status(),
        200
    );
    read_many().await;
    let uncached = observer.sample(&lab).await;
    assert!(uncached[&Metric::PgStatementsPerS] > 0.0, "{uncached:?}");
    assert!(uncached[&Metric::DbStatementsPerS] > 0.0, "{uncached:?}");
    assert_eq!(
        uncached[&Metric::CacheHitRatio],
        0.0,
        "cache off: every read bypasses it"
    );

    assert_eq!(
        admin("/admin/modes", json!({ "cache": "aside" }))
            .await
            .unwrap()
            .status(),
        200
    );
    read_many().await;
    let cached = observer.sample(&lab).await;
    assert!(
        cached[&Metric::CacheHitRatio] > 0.9,
        "one miss, then hits: {cached:?}"
    );
    // Postgres publishes transaction counts with a delay of up to a second or so: present, maybe 0 yet.
    assert!(cached.contains_key(&Metric::PgTransactionsPerS), "{cached:?}");
}
