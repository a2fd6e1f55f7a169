//! The end-of-run invariants, on a real Postgres prepared with known violations: each must be caught.

use std::time::Duration;

use fortress::env::mail::Mailbox;
use fortress::experiment::invariants::{self, InvariantReport, RunFacts};
use fortress::vocabulary::Metric;
use reference_service::Config;
use reference_service::db::Db;
use reference_service::metrics::Metrics;
use reference_service::seed::{SeedPlan, seed};
use sqlx::PgPool;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

async fn postgres() -> (ContainerAsync<GenericImage>, PgPool, Db) {
    let container = GenericImage::new("fortress/postgres", "15")
        .with_exposed_port(ContainerPort::Tcp(5432))
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        .with_env_var("POSTGRES_PASSWORD", "x")
        .with_env_var("POSTGRES_DB", "shop")
        .with_label("fortress.test", "invariants")
        .with_host_config_modifier(|host: &mut HostConfig| {
            let binding = PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            };
            host.port_bindings = Some(
                [("5432/tcp".to_owned(), Some(vec![binding]))]
                    .into_iter()
                    .collect(),
            );
        })
        .start()
        .await
        .unwrap_or_else(|e| panic!("could not start Postgres: {e} (these tests need Docker: run ci/setup)"));
    let port = container.get_host_port_ipv4(5432).await.unwrap();
    let url = format!("postgres://postgres:x@127.0.0.1:{port}/shop");
    let db = Db::connect_lazy(&Config::for_urls(&url, "redis://127.0.0.1:1"), Metrics::new()).unwrap();
    db.migrate(Duration::from_secs(30)).await.unwrap();
    seed(
        &db,
        &SeedPlan {
            products: 3,
            users: 3,
            stock: 2,
            orders_per_user: 1,
            seed: 1,
            ..SeedPlan::default()
        },
    )
    .await
    .unwrap();
    let pg = PgPool::connect(&url).await.unwrap();
    (container, pg, db)
}

fn broken(report: &InvariantReport) -> Vec<&str> {
    report
        .checks
        .iter()
        .filter(|c| !c.held)
        .map(|c| c.name.as_str())
        .collect()
}

async fn exec(pg: &PgPool, sql: &str) {
    sqlx::query(sql)
        .execute(pg)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn a_clean_database_holds_and_each_known_violation_is_caught() {
    let (_container, pg, _db) = postgres().await;
    let before = invariants::last_order_id(&pg).await.unwrap();
    let facts = RunFacts {
        acknowledged: vec![1, 2, 3],
        orders_before_run: before,
    };
    let clean = invariants::check(&pg, &facts, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(clean.held(), "{:#?}", clean.checks);
    assert_eq!((clean.oversold_units, clean.units_sold), (0, 0));

    // An acknowledged order that never reached the database.
    let lost = RunFacts {
        acknowledged: vec![1, 424242],
        orders_before_run: before,
    };
    let report = invariants::check(&pg, &lost, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(broken(&report), ["acknowledged orders persisted"]);
    assert!(
        report.checks[0].detail.contains("424242"),
        "{}",
        report.checks[0].detail
    );

    // Three more units of product 1 than it ever had, each with its event and email (a lost update).
    let initial: i64 = sqlx::query_scalar("SELECT initial_stock::bigint FROM inventory WHERE product_id = 1")
        .fetch_one(&pg)
        .await
        .unwrap();
    let sold: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(quantity), 0)::bigint FROM orders WHERE product_id = 1")
            .fetch_one(&pg)
            .await
            .unwrap();
    for _ in 0..(initial - sold + 3) {
        exec(&pg, "WITH o AS (INSERT INTO orders (user_id, product_id, quantity, total_cents) VALUES (1, 1, 1, 100) RETURNING id), \
                   e AS (INSERT INTO outbox (event_type, order_id, payload, status) SELECT 'order.created', id, '{}', 'delivered' FROM o RETURNING id, order_id) \
                   INSERT INTO emails (event_id, order_id, recipient, subject) SELECT id, order_id, 'x', 'x' FROM e").await;
    }
    let report = invariants::check(&pg, &facts, Duration::from_millis(200))
        .await
        .unwrap();
    // The orders took no stock: stock and orders no longer match either.
    assert_eq!(broken(&report), ["no oversell", "stock matches orders"]);
    assert_eq!(report.oversold_units, 3);
    assert_eq!(report.units_sold, initial - sold + 3);
    assert_eq!(
        report.stock_mismatch_units,
        initial - sold + 3,
        "every one of those orders"
    );

    // Stock taken with no order for it (a write that lost its order).
    exec(
        &pg,
        "UPDATE inventory SET quantity = quantity - 2 WHERE product_id = 2",
    )
    .await;
    // An order written without its event (a dual write that lost its second half).
    exec(
        &pg,
        "INSERT INTO orders (user_id, product_id, quantity, total_cents) VALUES (2, 3, 1, 100)",
    )
    .await;
    let report = invariants::check(&pg, &facts, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(
        broken(&report),
        [
            "no oversell",
            "stock matches orders",
            "one outbox event per order",
            "one email per order"
        ]
    );
    let off = report
        .checks
        .iter()
        .find(|c| c.name == "stock matches orders")
        .unwrap();
    assert!(
        off.detail.contains("1, 2, 3"),
        "products 1, 2 and 3 are out of step: {}",
        off.detail
    );
    // Product 3 has stock to spare: its order that took none (a lost update on a product that is
    // not sold out) oversells nothing, and only the mismatch counts it.
    assert_eq!(report.oversold_units, 3);
    assert_eq!(report.stock_mismatch_units, initial - sold + 3 + 2 + 1);
    assert_eq!(
        invariants::metric_of("stock matches orders"),
        Some(fortress::vocabulary::Metric::StockMismatchUnits),
        "what a replay of it predicts"
    );

    // An event stuck in pending: the check waits for the drain, then says what is still pending.
    exec(&pg, "INSERT INTO outbox (event_type, order_id, payload) SELECT 'order.created', max(id), '{}' FROM orders").await;
    let report = invariants::check(&pg, &facts, Duration::from_millis(300))
        .await
        .unwrap();
    let email = report
        .checks
        .iter()
        .find(|c| c.name == "one email per order")
        .unwrap();
    assert!(email.detail.contains("still pending"), "{}", email.detail);
}

#[tokio::test]
async fn the_mailbox_is_checked_against_the_orders_each_way_and_a_bound_judges_its_breakage() {
    let (_container, pg, _db) = postgres().await;
    let before = invariants::last_order_id(&pg).await.unwrap();
    for _ in 0..3 {
        exec(
            &pg,
            "INSERT INTO orders (user_id, product_id, quantity, total_cents) VALUES (1, 1, 1, 100)",
        )
        .await;
    }
    let facts = RunFacts {
        acknowledged: vec![],
        orders_before_run: before,
    };
    // The run's first order emailed once, its second twice, its third never; one email for an order
    // that was rolled back (an id the database never kept), and one for the seeded history (not the
    // run's: ignored).
    let mailbox = Mailbox {
        per_order: [(before, 1), (before + 1, 1), (before + 2, 2), (before + 10, 1)].into(),
        queued: 0,
        cut_off: 1,
    };
    let mut report = InvariantReport::default();
    invariants::emails_match_orders(&pg, &facts, &mailbox, &mut report)
        .await
        .unwrap();
    assert_eq!(
        broken(&report),
        [
            "every order emailed at the mail server",
            "no order emailed twice at the mail server",
            "no email for an order not placed"
        ]
    );
    let detail = |name: &str| &report.checks.iter().find(|c| c.name == name).unwrap().detail;
    assert!(
        detail("every order emailed at the mail server").contains(&(before + 3).to_string()),
        "{report:#?}"
    );
    assert!(detail("no email for an order not placed").contains(&(before + 10).to_string()));
    assert!(
        detail("no order emailed twice at the mail server").contains("1 delivery(ies) cut off"),
        "{report:#?}"
    );
    assert_eq!(
        (report.orders_emailed_twice, report.emails_without_order),
        (Some(1), Some(1))
    );

    // A prediction that bounds the emails for no order judges that check instead; the others stand.
    report.predicted(
        Metric::EmailsWithoutOrder,
        "emails_without_order in run <= 20".into(),
    );
    let failing: Vec<&str> = (report.checks.iter())
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failing,
        [
            "every order emailed at the mail server",
            "no order emailed twice at the mail server"
        ]
    );
}
