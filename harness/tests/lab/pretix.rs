//! The second backend: pretix, a ticket shop Fortress did not write, started from its Compose file
//! (`examples/pretix/compose.yaml`) through the same target code a user's file takes. Its REST API
//! sells tickets, and the invariant's own SQL (`examples/pretix/sold.sql`) counts them.

use std::path::PathBuf;
use std::time::Duration;

use fortress::env::target::Target;
use fortress::env::target::lab::{TargetLab, TargetLabSpec};

fn example(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pretix")
        .join(file)
}

#[tokio::test]
async fn pretix_starts_from_its_compose_file_and_sells_within_its_quota() {
    let target = Target::load(&example("compose.yaml")).unwrap();
    let spec = TargetLabSpec {
        lab_binary: PathBuf::from(env!("CARGO_BIN_EXE_fortress")),
        deadline: Duration::from_secs(120),
        environment: Default::default(),
    };
    let lab = TargetLab::start(&target, &spec, &|line| eprintln!("{line}"))
        .await
        .unwrap_or_else(|e| panic!("pretix's lab did not start (its images come from ci/setup): {e}"));
    let token = &target.service("setup").unwrap().environment["FORTRESS_API_TOKEN"];
    let http = reqwest::Client::new();
    let orders = format!("{}/api/v1/organizers/fortress/events/rush/orders/", lab.entry_url);
    for n in 0..3 {
        let answer = http
            .post(&orders)
            .header("Authorization", format!("Token {token}"))
            .json(&serde_json::json!({ "email": format!("buyer{n}@example.com"), "positions": [{ "item": 1 }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            201,
            "order {n}: {}",
            answer.text().await.unwrap_or_default()
        );
    }

    let db = sqlx::PgPool::connect(&lab.database_urls["pretix"]).await.unwrap();
    let sold_sql = std::fs::read_to_string(example("sold.sql")).unwrap();
    let (_, size, sold): (i64, Option<i32>, i64) = sqlx::query_as(&sold_sql).fetch_one(&db).await.unwrap();
    assert_eq!(
        (size, sold),
        (Some(100), 3),
        "three tickets sold of the quota's 100"
    );
    db.close().await;
    lab.shutdown().await.unwrap();
}
