//! The story's race: fifty buyers, one pair, the same moment.

use futures::future::join_all;
use reference_service::seed::SeedPlan;
use serde_json::json;

use crate::lab::{Lab, Service};

const BUYERS: i64 = 50;

/// Sends one checkout per buyer, all at once, and returns the statuses.
async fn rush(service: &Service) -> Vec<u16> {
    service
        .seed(SeedPlan {
            products: 1,
            users: BUYERS as u32,
            stock: 1,
            orders_per_user: 0,
            seed: 1,
            ..SeedPlan::default()
        })
        .await;
    let tokens: Vec<String> = (1..=BUYERS).map(|user| service.token(user)).collect();
    let replies = join_all(tokens.iter().map(|token| service.checkout(token, 1, 1, None))).await;
    replies.into_iter().map(|(status, _)| status).collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn row_lock_sells_the_last_pair_exactly_once() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    let statuses = rush(&service).await;
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 409), 49, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s < 500), "no 5xx: {statuses:?}");
    assert_eq!(lab.scalar("SELECT count(*) FROM orders").await, 1);
    assert_eq!(lab.scalar("SELECT quantity::bigint FROM inventory").await, 0);
}

#[tokio::test]
async fn no_lock_with_a_race_window_oversells() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    service
        .set_modes(json!({ "locking": "none", "race_window_ms": 200 }))
        .await;
    let statuses = rush(&service).await;
    let orders = lab.scalar("SELECT count(*) FROM orders").await;
    assert!(
        orders > 1,
        "the lost update should sell the one pair more than once; orders = {orders}"
    );
    assert_eq!(count(&statuses, 201) as i64, orders, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s < 500),
        "even the naive mode answers without 5xx: {statuses:?}"
    );
    let oversold = lab.scalar("SELECT sum(quantity)::bigint - 1 FROM orders").await;
    assert!(oversold > 0, "oversold units: {oversold}");
}
