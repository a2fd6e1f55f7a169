//! The outbox: one email per order, however the worker is interrupted.

use std::time::Duration;

use futures::future::join_all;
use reference_service::seed::SeedPlan;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::lab::{Lab, Service, wait_until};

const ORDERS: i64 = 40;

async fn place_orders(service: &Service) {
    service
        .seed(SeedPlan {
            products: 4,
            users: ORDERS as u32,
            stock: 100,
            orders_per_user: 0,
            seed: 9,
            ..SeedPlan::default()
        })
        .await;
    let tokens: Vec<String> = (1..=ORDERS).map(|user| service.token(user)).collect();
    let replies = join_all(
        tokens
            .iter()
            .enumerate()
            .map(|(i, token)| service.checkout(token, 1 + i as i64 % 4, 1, None)),
    )
    .await;
    assert!(replies.iter().all(|(status, _)| *status == 201), "{replies:?}");
}

/// One product, one user and that user's one order, whose event the worker has not relayed yet.
async fn place_one_order(service: &Service, seed: u64) {
    service
        .seed(SeedPlan {
            products: 1,
            users: 1,
            stock: 5,
            orders_per_user: 0,
            seed,
            ..SeedPlan::default()
        })
        .await;
    let (status, _) = service.checkout(&service.token(1), 1, 1, None).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn every_order_gets_exactly_one_email_across_interrupted_workers() {
    let lab = Lab::start().await;
    // No worker in the service: the test drives (and interrupts) its own.
    let service = lab
        .service(|config| {
            config.outbox_worker = false;
            config.outbox_batch_size = 3;
        })
        .await;
    place_orders(&service).await;
    assert_eq!(
        lab.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")
            .await,
        ORDERS
    );

    // A worker that dies mid-batch: it claimed events and wrote emails, then its transaction never
    // committed. Meanwhile a healthy worker must skip the locked events rather than send them too.
    let mut crashed = lab.pg.begin().await.unwrap();
    let claimed: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM outbox WHERE status = 'pending' ORDER BY id LIMIT 5 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *crashed)
    .await
    .unwrap();
    for id in &claimed {
        sqlx::query("INSERT INTO emails (event_id, order_id, recipient, subject) SELECT id, order_id, 'x', 'x' FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&mut *crashed)
            .await
            .unwrap();
    }
    let worker = service.state.outbox_worker();
    let relayed = worker.relay_batch().await.unwrap();
    assert_eq!(relayed.delivered, 3);
    let locked_and_sent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE id = ANY($1) AND status = 'delivered'")
            .bind(&claimed)
            .fetch_one(&lab.pg)
            .await
            .unwrap();
    assert_eq!(
        locked_and_sent, 0,
        "SKIP LOCKED: events held by another worker are not taken"
    );
    drop(crashed); // the crash: rolled back

    // Workers stopped at arbitrary points, mid-batch included (aborting drops the open transaction).
    for round in 0..6 {
        let stop = CancellationToken::new();
        let task = tokio::spawn(service.state.outbox_worker().run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(5 + round * 7)).await;
        task.abort();
        let _ = task.await;
    }
    // And a clean stop between batches, then a last worker that drains the rest.
    let stop = CancellationToken::new();
    let task = tokio::spawn(service.state.outbox_worker().run(stop.clone()));
    wait_until("the outbox is drained", Duration::from_secs(30), || async {
        lab.scalar("SELECT count(*) FROM outbox WHERE status <> 'delivered'")
            .await
            == 0
    })
    .await;
    stop.cancel();
    task.await.unwrap();

    assert_eq!(lab.scalar("SELECT count(*) FROM emails").await, ORDERS);
    assert_eq!(
        lab.scalar("SELECT count(DISTINCT order_id) FROM emails").await,
        ORDERS,
        "one email per order"
    );
    let (status, _) = service.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        service
            .metric("fortress_outbox_relayed_total{result=\"delivered\"}")
            .await,
        ORDERS as f64
    );
}

#[tokio::test]
async fn failed_deliveries_back_off_dead_letter_and_can_be_replayed() {
    let lab = Lab::start().await;
    let service = lab
        .service(|config| {
            config.outbox_worker = false;
            config.outbox_max_attempts = 2;
            config.outbox_retry_base_ms = 1;
        })
        .await;
    place_one_order(&service, 1).await;
    service.set_modes(json!({ "email_sender": "down" })).await;

    let worker = service.state.outbox_worker();
    let first = worker.relay_batch().await.unwrap();
    assert_eq!(first.retried, 1);
    assert_eq!(
        lab.scalar("SELECT count(*) FROM outbox WHERE status = 'pending' AND attempts = 1")
            .await,
        1
    );
    wait_until(
        "the retry is due and dead-letters",
        Duration::from_secs(5),
        || async {
            worker.relay_batch().await.unwrap();
            lab.scalar("SELECT count(*) FROM outbox WHERE status = 'dead'")
                .await
                == 1
        },
    )
    .await;
    assert_eq!(lab.scalar("SELECT count(*) FROM emails").await, 0);
    assert_eq!(lab.scalar("SELECT attempts::bigint FROM outbox").await, 2);

    // The sender is back: the operator replays the dead letters and the next batch delivers them.
    service.set_modes(json!({ "email_sender": "up" })).await;
    let (status, body) = service
        .admin(reqwest::Method::POST, "/admin/outbox/replay", json!({}))
        .await;
    assert_eq!((status, body), (200, json!({ "replayed": 1 })));
    assert_eq!(worker.relay_batch().await.unwrap().delivered, 1);
    assert_eq!(lab.scalar("SELECT count(*) FROM emails").await, 1);
    let (_, again) = service
        .admin(reqwest::Method::POST, "/admin/outbox/replay", json!({}))
        .await;
    assert_eq!(again, json!({ "replayed": 0 }));
}

#[tokio::test]
async fn a_replay_waits_for_the_batch_in_flight_and_replays_what_it_dead_letters() {
    let lab = Lab::start().await;
    let service = lab.service(|config| config.outbox_worker = false).await;
    place_one_order(&service, 2).await;

    // A batch in flight, as the worker's last failing one at the end of an outage: it has claimed the
    // event and marked it dead, and has not committed yet when the operator replays.
    let mut batch = lab.pg.begin().await.unwrap();
    sqlx::query("SELECT id FROM outbox WHERE status = 'pending' FOR UPDATE")
        .execute(&mut *batch)
        .await
        .unwrap();
    sqlx::query("UPDATE outbox SET status = 'dead', attempts = attempts + 1")
        .execute(&mut *batch)
        .await
        .unwrap();
    let replay = service.admin(reqwest::Method::POST, "/admin/outbox/replay", json!({}));
    let lab_ref = &lab;
    let batch_commits = async move {
        wait_until(
            "the replay waits for the batch's lock",
            Duration::from_secs(10),
            || async {
                lab_ref
                    .scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                    .await
                    == 1
            },
        )
        .await;
        batch.commit().await.unwrap();
    };
    let ((status, body), ()) = tokio::join!(replay, batch_commits);

    // The event the batch dead-lettered is replayed, not missed as still pending.
    assert_eq!((status, body), (200, json!({ "replayed": 1 })));
    assert_eq!(
        lab.scalar("SELECT count(*) FROM outbox WHERE status = 'pending' AND attempts = 0")
            .await,
        1
    );
    let worker = service.state.outbox_worker();
    assert_eq!(worker.relay_batch().await.unwrap().delivered, 1);
}
