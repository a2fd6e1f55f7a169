//! Graceful shutdown: a checkout in flight when SIGTERM arrives still completes and is answered.

use std::time::Duration;

use reference_service::seed::SeedPlan;
use serde_json::json;

use crate::lab::{Lab, wait_until};

#[tokio::test]
async fn shutdown_drains_an_in_flight_checkout() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    service
        .seed(SeedPlan {
            products: 1,
            users: 1,
            stock: 3,
            orders_per_user: 0,
            seed: 1,
            ..SeedPlan::default()
        })
        .await;
    // A slow checkout: the race window holds it between its read and its write for a second.
    service
        .set_modes(json!({ "locking": "none", "race_window_ms": 1000 }))
        .await;

    let request = service
        .http
        .post(service.url("/orders"))
        .bearer_auth(service.token(1))
        .json(&json!({ "product_id": 1, "quantity": 1 }))
        .send();
    let in_flight = tokio::spawn(request);
    wait_until(
        "the checkout has read the stock",
        Duration::from_secs(10),
        || async {
            service
                .metric("fortress_db_statements_total{query=\"checkout.read_inventory\"}")
                .await
                >= 1.0
        },
    )
    .await;

    let url = service.url("/healthz");
    let http = service.http.clone();
    service.shutdown().await;
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 201);
    assert_eq!(lab.scalar("SELECT count(*) FROM orders").await, 1);
    assert!(
        http.get(url).send().await.is_err(),
        "no new connections after shutdown"
    );
}
