//! A target's lab from its Compose file: here the reference service described the way a user's
//! Compose file would describe it (the lab binary's image running `service`, Postgres with a
//! healthcheck, Redis), started through the same code a user's target takes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fortress::env::docker::DockerClient;
use fortress::env::images;
use fortress::env::target::Target;
use fortress::env::target::lab::{TargetLab, TargetLabError, TargetLabSpec};
use fortress::observe::Observer;
use fortress::vocabulary::Metric;

/// The reference service as a Compose file, on the lab image `lab_image`.
fn compose(lab_image: &str, ready: &str) -> String {
    format!(
        r#"services:
  shop:
    image: {lab_image}
    command: ["service"]
    environment:
      LISTEN_ADDR: 0.0.0.0:8080
      DATABASE_URL: postgres://postgres:fortress@db:5432/shop
      REDIS_URL: redis://cache:6379
      ADMIN_TOKEN: target-test-token
    depends_on:
      db: {{ condition: service_healthy }}
      cache: {{ condition: service_started }}
  db:
    image: {postgres}
    environment: {{ POSTGRES_PASSWORD: fortress, POSTGRES_DB: shop }}
    healthcheck:
      test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "postgres"]
      interval: 500ms
      retries: 60
  cache:
    image: {redis}
x-fortress:
  entry: {{ service: shop, port: 8080, ready: {ready} }}
  links:
    - {{ from: shop, to: db, port: 5432, address_in: DATABASE_URL }}
    - {{ from: shop, to: cache, port: 6379, address_in: REDIS_URL }}
  databases:
    shop: {{ service: db, port: 5432, url: "postgres://postgres:fortress@{{address}}/shop" }}
  metrics:
    path: /metrics
    counters: {{ responses: fortress_http_requests_total, statements: fortress_db_statements_total }}
"#,
        postgres = images::POSTGRES_DEFAULT,
        redis = images::REDIS_DEFAULT,
    )
}

fn lab_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fortress"))
}

async fn target(ready: &str) -> Target {
    let docker = DockerClient::connect()
        .await
        .expect("the lab needs Docker: run ci/setup");
    let lab_image = images::lab_image(&docker, &lab_binary()).await.unwrap().image;
    Target::parse(Path::new("compose.yaml"), &compose(&lab_image, ready)).unwrap()
}

fn spec(deadline: Duration) -> TargetLabSpec {
    TargetLabSpec {
        lab_binary: lab_binary(),
        deadline,
        environment: Default::default(),
    }
}

#[tokio::test]
async fn a_compose_target_starts_behind_the_proxy_and_leaves_nothing() {
    let target = target("/readyz").await;
    let lab = TargetLab::start(&target, &spec(Duration::from_secs(60)), &|line| {
        eprintln!("{line}")
    })
    .await
    .unwrap_or_else(|e| panic!("the target's lab did not start: {e}"));
    let http = reqwest::Client::new();
    let products = http
        .get(format!("{}/products", lab.entry_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        products.status(),
        200,
        "the service answers through its published port"
    );

    // Its Postgres and Redis traffic went through the proxy's links.
    let proxy = lab
        .containers
        .iter()
        .find(|c| c.service == "proxy")
        .expect("a proxy container");
    let docker = DockerClient::connect().await.unwrap();
    let inspected = docker.api().inspect_container(&proxy.name, None).await.unwrap();
    let control = (inspected.network_settings.and_then(|n| n.ports).unwrap())["8474/tcp"]
        .clone()
        .unwrap()[0]
        .host_port
        .clone()
        .unwrap();
    let links: serde_json::Value = http
        .get(format!("http://127.0.0.1:{control}/links"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for name in ["shop-db", "shop-cache"] {
        let link = links.as_array().unwrap().iter().find(|l| l["name"] == name);
        let connections = link.map_or(0, |l| l["evidence"]["connections"].as_u64().unwrap_or(0));
        assert!(
            connections > 0,
            "{name} carried the service's connections: {links}"
        );
    }

    // Observed as a user's target: the service's rates from its own /metrics by the counters the
    // file maps (the 5xx share is not mapped, so not measured), and its database's activity.
    let mut observer = Observer::new();
    observer.sample_target(&lab).await;
    for _ in 0..20 {
        let url = format!("{}/products", lab.entry_url);
        assert_eq!(http.get(url).send().await.unwrap().status(), 200);
    }
    let rates = observer.sample_target(&lab).await;
    let figure = |metric| rates.total.get(&metric).copied();
    assert!(figure(Metric::ServiceRps) > Some(0.0), "{rates:?}");
    assert!(
        figure(Metric::DbStatementsPerS).is_some(),
        "mapped, so measured: {rates:?}"
    );
    assert!(figure(Metric::PgTuplesReadPerS).is_some(), "{rates:?}");
    assert_eq!(figure(Metric::Http5xxRate), None, "not mapped: {rates:?}");
    assert_eq!(
        figure(Metric::PgStatementsPerS),
        None,
        "a target's Postgres gives no statements"
    );
    // Postgres's backends publish their transaction counts at most once a second (when idle, or
    // at their next transaction after the interval), so the requests' show within a few readings.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut transactions = figure(Metric::PgTransactionsPerS).unwrap_or(0.0);
    while transactions == 0.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let later = observer.sample_target(&lab).await;
        transactions = later
            .total
            .get(&Metric::PgTransactionsPerS)
            .copied()
            .unwrap_or(0.0);
    }
    assert!(
        transactions > 0.0,
        "no transactions seen in Postgres's statistics within 15 s"
    );

    // The invariants' database answers on its published address.
    let db = sqlx::PgPool::connect(&lab.database_urls["shop"]).await.unwrap();
    let (products,): (i64,) = sqlx::query_as("SELECT count(*) FROM products")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(products >= 0);
    db.close().await;

    let run_id = lab.run_id.clone();
    lab.shutdown().await.unwrap();
    assert!(
        docker
            .labelled_containers(Some(&run_id))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(docker.labelled_networks(Some(&run_id)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_target_that_never_gets_ready_fails_with_its_own_log_lines() {
    let target = target("/no-such-path").await;
    let error = TargetLab::start(&target, &spec(Duration::from_secs(10)), &|_| {})
        .await
        .expect_err("a readiness path that answers 404 is never ready");
    let TargetLabError::NotReady { last, logs, .. } = &error else {
        panic!("expected NotReady, got {error}");
    };
    assert!(last.contains("404"), "{error}");
    assert!(logs.contains("listening"), "the service's own lines: {error}");
}
