//! The shop as a test's customer sees it: a lab started from a spec, user 1 logged in, orders placed
//! through the lab's front door, and what the database holds.

use std::path::PathBuf;

use fortress::env::{Lab, LabSpec};
use reference_service::seed::{SEED_PASSWORD, SeedPlan};
use serde_json::{Value, json};

/// The default lab with this build's `fortress` as the lab binary.
pub fn spec() -> LabSpec {
    LabSpec::with_binary(PathBuf::from(env!("CARGO_BIN_EXE_fortress")))
}

/// Starts `spec`, failing with what to do when it cannot.
pub async fn start(spec: LabSpec) -> Lab {
    Lab::start(&spec, &|line| eprintln!("{line}"))
        .await
        .unwrap_or_else(|e| {
            panic!("could not start the lab: {e}\n(the lab needs Docker and the images: run ci/setup)")
        })
}

/// Logs user 1 in; answers the bearer token.
pub async fn login(lab: &Lab) -> String {
    let url = format!("{}/auth/login", lab.entry_url().await.unwrap());
    let body = json!({ "email": "user1@fortress.test", "password": SEED_PASSWORD });
    let answer: Value = lab
        .http()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["token"].as_str().expect("a token").to_owned()
}

/// Buys one unit of product 1; answers the status and the body.
pub async fn try_order(lab: &Lab, token: &str) -> (u16, Value) {
    let url = format!("{}/orders", lab.entry_url().await.unwrap());
    let response = lab
        .http()
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "product_id": 1, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Buys one unit of product 1; answers the order's id.
pub async fn order(lab: &Lab, token: &str) -> i64 {
    let (status, body) = try_order(lab, token).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

pub async fn seed(lab: &Lab) {
    let plan = SeedPlan {
        products: 2,
        users: 1,
        stock: 10,
        orders_per_user: 1,
        seed: 7,
        ..SeedPlan::default()
    };
    lab.seed(&plan).await.unwrap();
}

/// Orders in the database.
pub async fn orders(lab: &Lab) -> i64 {
    let pg = sqlx::PgPool::connect(&lab.postgres_url().await.unwrap())
        .await
        .unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pg)
        .await
        .unwrap();
    pg.close().await;
    n
}
