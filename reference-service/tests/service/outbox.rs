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

/// The most SMTP conversations a test mail server saw open at once, and how many messages it took.
#[derive(Default)]
struct Conversations {
    open: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    accepted: std::sync::atomic::AtomicUsize,
    held: std::sync::atomic::AtomicBool,
}

/// A mail server for one test: enough SMTP for lettre's client (greeting, EHLO, MAIL, RCPT, DATA,
/// QUIT). It holds the first message's 250 until a second conversation is open, for 1 s at most (the
/// client gives up after 2), so a client that sends one email at a time is seen as one (and only
/// slowed), and one that overlaps them is seen overlapping, whatever the machine's speed.
async fn mail_server(listener: tokio::net::TcpListener, seen: std::sync::Arc<Conversations>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(converse(stream, seen.clone()));
    }
}

/// One SMTP conversation of `mail_server`, counted open from its greeting to its end.
async fn converse(stream: tokio::net::TcpStream, seen: std::sync::Arc<Conversations>) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let now_open = seen.open.fetch_add(1, SeqCst) + 1;
    seen.peak.fetch_max(now_open, SeqCst);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 test ESMTP\r\n").await;
    let mut in_data = false;
    while let Ok(Some(line)) = lines.next_line().await {
        let reply: &[u8] = match (in_data, line.as_str()) {
            (true, ".") => {
                in_data = false;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                let first = !seen.held.swap(true, SeqCst);
                while first && seen.peak.load(SeqCst) < 2 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen.accepted.fetch_add(1, SeqCst);
                b"250 queued\r\n"
            }
            (true, _) => continue,
            (false, "DATA") => {
                in_data = true;
                b"354 go on\r\n"
            }
            (false, "QUIT") => b"221 bye\r\n",
            (false, _) => b"250 ok\r\n",
        };
        if write.write_all(reply).await.is_err() || reply.starts_with(b"221") {
            break;
        }
    }
    seen.open.fetch_sub(1, SeqCst);
}

#[tokio::test]
async fn a_batch_holds_several_smtp_conversations_at_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(Conversations::default());
    let server = tokio::spawn(mail_server(listener, seen.clone()));
    let lab = Lab::start().await;
    let service = lab
        .service(|config| {
            config.outbox_worker = false;
            config.smtp_addr = Some(addr.to_string());
        })
        .await;
    place_orders(&service).await;

    // One batch at a time, to the end: each relays its emails before it commits.
    let worker = service.state.outbox_worker();
    let mut delivered = 0;
    while delivered < ORDERS as u32 {
        let relayed = worker.relay_batch().await.unwrap();
        assert_eq!((relayed.retried, relayed.dead), (0, 0), "{relayed:?}");
        assert!(
            relayed.delivered > 0,
            "a batch with nothing to send before all were sent"
        );
        delivered += relayed.delivered;
    }
    server.abort();
    assert_eq!(
        seen.accepted.load(SeqCst),
        ORDERS as usize,
        "one message per order"
    );
    assert_eq!(lab.scalar("SELECT count(*) FROM emails").await, ORDERS);
    let peak = seen.peak.load(SeqCst);
    assert!(
        peak >= 2,
        "a backlog's emails were sent one conversation at a time (at most {peak} open at once): \
         its drain is capped at the mail link's round-trip rate"
    );
    assert!(peak <= 4, "at most 4 conversations at once, {peak} were open");
}
