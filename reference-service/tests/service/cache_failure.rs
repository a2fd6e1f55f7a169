//! Redis dies or hangs under the product reads: the naive fall-through against the guarded cache.

use std::time::{Duration, Instant};

use reference_service::seed::SeedPlan;
use serde_json::json;

use crate::lab::{Lab, Service, wait_until};

const READS: usize = 30;
/// The `SELECT ... FROM products WHERE id = $1` of `GET /products/{id}`, as pg_stat_statements shows it.
const PRODUCT_BY_ID: &str = "SELECT id, sku, name, size, price_cents FROM products WHERE id = $1";

async fn seeded(lab: &Lab, cache_failure: &str) -> Service {
    let service = lab.service(|config| config.redis_timeout_ms = 50).await;
    service
        .seed(SeedPlan {
            products: 5,
            users: 1,
            stock: 10,
            orders_per_user: 0,
            seed: 5,
            ..SeedPlan::default()
        })
        .await;
    service.set_modes(json!({ "cache_failure": cache_failure })).await;
    let (status, _) = service.get("/products/1").await;
    assert_eq!(status, 200);
    service
}

/// Reads product 1 `READS` times, asserting each is a 200, and returns the slowest latency.
async fn read_product_repeatedly(service: &Service) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..READS {
        let started = Instant::now();
        let (status, body) = service.get("/products/1").await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], 1);
    }
    slowest
}

async fn stop_redis_and_wait_for_degraded(lab: &Lab, service: &Service) {
    lab.redis.stop().await.expect("stop redis");
    wait_until("/readyz reports redis down", Duration::from_secs(10), || async {
        let (status, body) = service.get("/readyz").await;
        status == 200 && body["status"] == "degraded" && body["dependencies"]["redis"] == "down"
    })
    .await;
}

#[tokio::test]
async fn breaker_serves_reads_with_redis_stopped_and_skips_redis() {
    let lab = Lab::start().await;
    let service = seeded(&lab, "breaker").await;
    stop_redis_and_wait_for_degraded(&lab, &service).await;
    lab.reset_statements().await;
    let errors_before = service
        .metric("fortress_cache_requests_total{outcome=\"error\"}")
        .await;

    read_product_repeatedly(&service).await;

    let (_, ready) = service.get("/readyz").await;
    assert_eq!(ready["cache_breaker"], "open", "{ready}");
    assert_eq!(service.metric("fortress_cache_breaker_state").await, 2.0);
    let bypassed = service
        .metric("fortress_cache_requests_total{outcome=\"bypass\"}")
        .await;
    let errors = service
        .metric("fortress_cache_requests_total{outcome=\"error\"}")
        .await
        - errors_before;
    assert!(
        bypassed >= (READS - 6) as f64,
        "most reads skip Redis: bypassed {bypassed}, errors {errors}"
    );
    let db_reads = lab.statements_since_reset(&[PRODUCT_BY_ID]).await;
    assert!(
        db_reads <= 3,
        "the local single-flight cache bounds database reads: {db_reads} for {READS} requests"
    );
}

#[tokio::test]
async fn fallthrough_serves_reads_with_redis_stopped_but_every_read_hits_postgres() {
    let lab = Lab::start().await;
    let service = seeded(&lab, "fallthrough").await;
    stop_redis_and_wait_for_degraded(&lab, &service).await;
    lab.reset_statements().await;

    read_product_repeatedly(&service).await;

    let db_reads = lab.statements_since_reset(&[PRODUCT_BY_ID]).await;
    assert_eq!(db_reads, READS as i64, "every read falls through to Postgres");
    assert!(
        service
            .metric("fortress_cache_requests_total{outcome=\"error\"}")
            .await
            >= READS as f64
    );
}

#[tokio::test]
async fn breaker_bounds_request_time_when_redis_hangs() {
    let lab = Lab::start().await;
    let service = seeded(&lab, "breaker").await;
    lab.redis.pause().await.expect("pause redis");

    let slowest = read_product_repeatedly(&service).await;
    lab.redis.unpause().await.expect("unpause redis");

    // The deadline is 50 ms; the database read is a millisecond. The bound leaves room for a noisy
    // machine while staying far below the client library's own 500 ms response timeout.
    assert!(
        slowest < Duration::from_millis(400),
        "slowest read while Redis hung: {slowest:?}"
    );
    assert!(
        service
            .metric("fortress_cache_requests_total{outcome=\"error\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn readyz_says_unavailable_when_postgres_is_down() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    let (status, body) = service.get("/readyz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "{body}");
    lab.postgres.stop().await.expect("stop postgres");
    wait_until("/readyz answers 503", Duration::from_secs(15), || async {
        let (status, body) = service.get("/readyz").await;
        status == 503 && body["dependencies"]["postgres"] == "down"
    })
    .await;
    let (status, body) = service.get("/products/1/availability").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "database_unavailable");
}
