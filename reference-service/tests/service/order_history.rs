//! The N+1 query, counted where it happens: in Postgres's own statement statistics.

use reference_service::seed::SeedPlan;
use serde_json::json;

use crate::lab::Lab;

const ORDERS: u32 = 7;

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
        })
        .await;
    let token = service.token(2);

    let mut histories = Vec::new();
    for (mode, expected) in [("n_plus_one", i64::from(ORDERS) + 1), ("join", 1)] {
        service.set_modes(json!({ "order_history": mode })).await;
        let (status, warm) = service.get_as(&token, "/users/me/orders").await;
        assert_eq!(status, 200, "{warm}");
        lab.reset_statements().await;
        let (status, body) = service.get_as(&token, "/users/me/orders").await;
        assert_eq!(status, 200);
        assert_eq!(body["orders"].as_array().unwrap().len(), ORDERS as usize);
        histories.push(body);
        let statements = lab.statements_since_reset("%").await;
        assert_eq!(
            statements, expected,
            "{mode}: statements seen by pg_stat_statements"
        );
        assert!(mode != "join" || statements <= 2);
    }
    assert_eq!(histories[0], histories[1], "both modes return the same history");
}
