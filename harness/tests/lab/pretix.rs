//! The second backend: pretix, a ticket shop Fortress did not write, started from its Compose file
//! (`examples/pretix/compose.yaml`) through the same target code a user's file takes. Its REST API
//! sells tickets, and the invariant's own SQL (`examples/pretix/sold.sql`) counts them; its own metrics
//! page (`examples/pretix/metrics.yaml`) is read with its login.

use std::path::PathBuf;
use std::time::Duration;

use fortress::env::target::Target;
use fortress::env::target::lab::{TargetLab, TargetLabError, TargetLabSpec};

fn example(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pretix")
        .join(file)
}

fn spec(environment: &[(&str, &str, &str)]) -> TargetLabSpec {
    let mut overrides = std::collections::BTreeMap::<String, std::collections::BTreeMap<_, _>>::new();
    for (service, name, value) in environment {
        (overrides.entry(service.to_string()).or_default()).insert(name.to_string(), value.to_string());
    }
    TargetLabSpec {
        lab_binary: PathBuf::from(env!("CARGO_BIN_EXE_fortress")),
        deadline: Duration::from_secs(120),
        environment: overrides,
    }
}

/// With `metrics.yaml` over it, pretix's metrics page is on and asks for a user and passphrase
/// (`PRETIX_METRICS_*`). Fortress reads the passphrase where the Compose file gives it to pretix, a
/// variant's override included (this lab's passphrase is not the file's), and reads the page with
/// it; a user the page does not know stops the lab's start with what to change, instead of a run
/// without service figures.
#[tokio::test]
async fn pretix_starts_from_its_compose_file_sells_within_its_quota_and_counts_it_behind_a_login() {
    let target = Target::load_merged(&example("compose.yaml"), &[example("metrics.yaml")]).unwrap();
    let passphrase = ("web", "PRETIX_METRICS_PASSPHRASE", "another-lab-passphrase");
    let mut stranger = target.clone();
    let auth = stranger.metrics.as_mut().and_then(|m| m.basic_auth.as_mut());
    auth.expect("the example reads pretix's metrics with a login")
        .user = "nobody".into();
    let progress = |line: &str| eprintln!("{line}");
    let (overridden, plain) = (spec(&[passphrase]), spec(&[]));
    let (lab, refused) = tokio::join!(
        TargetLab::start(&target, &overridden, &progress),
        TargetLab::start(&stranger, &plain, &progress),
    );
    let lab =
        lab.unwrap_or_else(|e| panic!("pretix's lab did not start (its images come from ci/setup): {e}"));
    match refused {
        Err(TargetLabError::MetricsRefused {
            status: 401, advice, ..
        }) => {
            assert!(advice.contains("refused the credentials"), "{advice}")
        }
        other => panic!("a user pretix does not know must stop the start, got {other:?}"),
    }
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

    let url = lab
        .metrics_urls()
        .await
        .remove(0)
        .expect("the entry's metrics page");
    let page = lab.metrics_request(&http, &url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let lines = fortress::exposition::lines(&page);
    let count = |series: &str| (series.parse::<fortress::exposition::Selector>().unwrap()).sum(&lines);
    let orders = r#"pretix_view_requests_total{url_name="api-v1:order-list",status_code="201"}"#;
    assert_eq!(
        count(orders),
        3.0,
        "pretix counted the three orders it took:\n{page}"
    );
    assert_eq!(count(r#"pretix_model_instances{model="pretixbase.order"}"#), 3.0);
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "the page is not open to anyone");
    lab.shutdown().await.unwrap();
}
