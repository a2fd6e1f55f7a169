//! The N+1 query, counted where it happens: in Postgres's own statement statistics.

use std::time::{Duration, Instant};

use reference_service::seed::SeedPlan;
use serde_json::json;
use sqlx::Connection;

use crate::lab::{Lab, Service};

const ORDERS: u32 = 7;

/// What either history reads: orders (a join or a list) and products (one by one, or joined).
const HISTORY_STATEMENTS: &[&str] = &["%FROM orders%", "%FROM products%"];

#[tokio::test]
async fn n_plus_one_runs_one_statement_per_order_and_join_runs_one() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    service
        .seed(SeedPlan {
            products: 20,
            users: 3,
            stock: 10,
            orders_per_user: ORDERS,
            seed: 3,
            ..SeedPlan::default()
        })
        .await;
    let token = service.token(2);

    let mut histories = Vec::new();
    for (mode, expected) in [("n_plus_one", i64::from(ORDERS) + 1), ("join", 1)] {
        // Unbounded: the bounded history adds its own transaction and timeout to the count.
        service
            .set_modes(json!({ "order_history": mode, "history_guard": "unbounded" }))
            .await;
        let (status, warm) = service.get_as(&token, "/users/me/orders").await;
        assert_eq!(status, 200, "{warm}");
        lab.reset_statements().await;
        let (status, body) = service.get_as(&token, "/users/me/orders").await;
        assert_eq!(status, 200);
        assert_eq!(body["orders"].as_array().unwrap().len(), ORDERS as usize);
        histories.push(body);
        // Only what reads orders and products: the outbox relay and session lookups run meanwhile.
        let statements = lab.statements_since_reset(HISTORY_STATEMENTS).await;
        assert_eq!(
            statements, expected,
            "{mode}: statements seen by pg_stat_statements"
        );
        assert!(mode != "join" || statements <= 2);
    }
    assert_eq!(histories[0], histories[1], "both modes return the same history");
}

/// One history read: its status, error code (if any) and how long it took.
async fn timed_history(service: &Service, token: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let (status, body) = service.get_as(token, "/users/me/orders").await;
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code, started.elapsed())
}

#[tokio::test]
async fn a_history_query_gone_slow_is_bounded_by_the_bulkhead_and_the_timeout() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    service
        .seed(SeedPlan {
            products: 5,
            users: 3,
            stock: 10,
            orders_per_user: 2,
            seed: 4,
            ..SeedPlan::default()
        })
        .await;
    let token = service.token(1);
    assert_eq!(timed_history(&service, &token).await.0, 200);

    // Another transaction holds the orders table: every history query waits on it, as on a scan.
    let mut blocker = sqlx::PgConnection::connect(&lab.database_url).await.unwrap();
    let mut held = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();

    // Bounded (the default): one query takes the turn and is cancelled at 250 ms; the others wait
    // 100 ms for a turn and are turned away. Every caller has its answer within ~400 ms.
    let reads = (0..4).map(|_| timed_history(&service, &token));
    let answers = futures::future::join_all(reads).await;
    let codes: Vec<&str> = answers.iter().map(|(_, code, _)| code.as_str()).collect();
    assert!(answers.iter().all(|(status, _, _)| *status == 503), "{answers:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == "history_timeout").count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == "history_busy").count(),
        3,
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(_, _, took)| *took < Duration::from_millis(600)),
        "{answers:?}"
    );

    // Unbounded: the query waits as long as the table is held.
    service.set_modes(json!({ "history_guard": "unbounded" })).await;
    let read = tokio::spawn({
        let (url, token, http) = (
            service.url("/users/me/orders"),
            token.clone(),
            service.http.clone(),
        );
        async move {
            let started = Instant::now();
            let status = http.get(url).bearer_auth(token).send().await.unwrap().status();
            (status.as_u16(), started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    held.rollback().await.unwrap();
    let (status, took) = read.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_millis(800),
        "it waited for the table: {took:?}"
    );
}
