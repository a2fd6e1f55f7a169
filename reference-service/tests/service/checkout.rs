//! Checkout as a shopper sees it: login, buy, buy again with the same key, run out.

use reference_service::seed::{SEED_PASSWORD, SeedPlan};
use serde_json::json;

use crate::lab::Lab;

fn plan(products: u32, users: u32, stock: u32) -> SeedPlan {
    SeedPlan {
        products,
        users,
        stock,
        orders_per_user: 0,
        seed: 7,
        ..SeedPlan::default()
    }
}

#[tokio::test]
async fn happy_path_login_buy_and_read_back() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    service.seed(plan(3, 2, 5)).await;

    let login = service
        .http
        .post(service.url("/auth/login"))
        .json(&json!({ "email": "user1@fortress.test", "password": SEED_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(service.get("/products/2/availability").await.1["available"], 5);
    let response = service
        .http
        .post(service.url("/orders"))
        .bearer_auth(&token)
        .header("x-request-id", "req-happy-path")
        .json(&json!({ "product_id": 2, "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["x-request-id"],
        "req-happy-path",
        "the request id is echoed"
    );
    let order: serde_json::Value = response.json().await.unwrap();
    assert_eq!(order["quantity"], 2);
    assert_eq!(order["product_id"], 2);

    let (status, fetched) = service.get_as(&token, &format!("/orders/{}", order["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, order);
    let (_, availability) = service.get("/products/2/availability").await;
    assert_eq!(
        availability["available"], 3,
        "the cached availability was refreshed after commit"
    );

    assert_eq!(
        lab.scalar("SELECT quantity::bigint FROM inventory WHERE product_id = 2")
            .await,
        3
    );
    assert_eq!(
        lab.scalar("SELECT count(*) FROM outbox WHERE event_type = 'order.created'")
            .await,
        1
    );
    let stored_request_id: String = sqlx::query_scalar("SELECT request_id FROM orders")
        .fetch_one(&lab.pg)
        .await
        .unwrap();
    assert_eq!(stored_request_id, "req-happy-path");

    let (status, other_users_view) = service
        .get_as(&service.token(2), &format!("/orders/{}", order["id"]))
        .await;
    assert_eq!(
        status, 404,
        "another user's order is not found: {other_users_view}"
    );

    let generated = service.http.get(service.url("/healthz")).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(
        id.len(),
        36,
        "a request without an id gets a generated UUID, got {id}"
    );
}

#[tokio::test]
async fn idempotent_retry_returns_the_same_order_and_sells_once() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    service.seed(plan(1, 2, 5)).await;
    let token = service.token(1);

    let (first_status, first) = service.checkout(&token, 1, 1, Some("key-123")).await;
    let (second_status, second) = service.checkout(&token, 1, 1, Some("key-123")).await;
    assert_eq!((first_status, second_status), (201, 201));
    assert_eq!(first["id"], second["id"], "the retry returns the original order");
    assert_eq!(lab.scalar("SELECT count(*) FROM orders").await, 1);
    assert_eq!(
        lab.scalar("SELECT quantity::bigint FROM inventory").await,
        4,
        "sold once"
    );

    let (status, body) = service.checkout(&token, 1, 2, Some("key-123")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_conflict");

    let (status, _) = service.checkout(&service.token(2), 1, 1, Some("key-123")).await;
    assert_eq!(status, 201, "keys are scoped to their user");
    assert_eq!(lab.scalar("SELECT count(*) FROM orders").await, 2);
}

#[tokio::test]
async fn the_last_pair_sells_once_then_sold_out() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    service.seed(plan(1, 2, 1)).await;

    let (status, _) = service.checkout(&service.token(1), 1, 1, None).await;
    assert_eq!(status, 201);
    let (status, body) = service.checkout(&service.token(2), 1, 1, None).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "sold_out");
    assert_eq!(lab.scalar("SELECT quantity::bigint FROM inventory").await, 0);
    assert_eq!(
        service.metric("fortress_orders_total{result=\"sold_out\"}").await,
        1.0
    );
    assert_eq!(
        service.metric("fortress_orders_total{result=\"created\"}").await,
        1.0
    );
}
