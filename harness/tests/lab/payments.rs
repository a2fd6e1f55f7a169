//! The lab's payment provider and the HTTP faults on its link: each order is paid once at the
//! provider (counted in its own ledger), an `http_status` fault answers for the provider, an
//! `http_delay` fault holds requests, an `http_lost_reply` fault loses the provider's answers (it
//! authorised, the shop never hears it), each mode of the service meets them as it should, and the
//! control API refuses what makes no sense with a 4xx that says why.

use std::time::{Duration, Instant};

use fortress::env::{Lab, LabSpec};
use fortress::faults::proxy::{Evidence, NetworkFault, ScopedFault};
use fortress::faults::{Fault, FaultTimeline, with_fault};
use fortress::vocabulary::Link;
use reference_service::modes::{ModesPatch, Payments};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::shop::{self, login, order, orders, seed};

async fn start_with_payments() -> Lab {
    shop::start(LabSpec {
        payments: true,
        ..shop::spec()
    })
    .await
}

/// Buys one unit of product 1; answers the status, the `Retry-After` header and the body.
async fn checkout(lab: &Lab, token: &str) -> (u16, Option<String>, Value) {
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
    let retry_after = (response.headers().get("retry-after")).map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

/// Runs `body` with `fault` on the payments link; answers what `body` answered and the proxy's
/// evidence of the fault.
async fn on_payments_link<T>(lab: &Lab, fault: NetworkFault, body: impl Future<Output = T>) -> (T, Evidence) {
    let timeline = FaultTimeline::default();
    let stop = CancellationToken::new();
    let fault = Fault::Network {
        link: Link::Payments,
        fault: ScopedFault::from(fault),
    };
    let answer = with_fault(lab, &timeline, &stop, &fault, body).await.unwrap();
    let evidence = (timeline.entries().into_iter().rev())
        .find_map(|e| e.evidence)
        .expect("the revert kept the proxy's evidence");
    (answer, evidence)
}

async fn set_payments(lab: &Lab, payments: Payments) {
    let patch = ModesPatch {
        payments: Some(payments),
        ..ModesPatch::default()
    };
    lab.set_modes(1, &patch).await.unwrap();
}

#[tokio::test]
async fn each_order_is_paid_once_and_http_faults_answer_for_the_provider_or_hold_its_requests() {
    let lab = start_with_payments().await;
    crate::assert_loopback_only(&lab, 5, "postgres, redis, proxy, service, provider").await;
    seed(&lab).await;
    let token = login(&lab).await;

    // Guarded (the default): one authorisation, with the order's reference as its idempotency key.
    order(&lab, &token).await;
    let ledger = lab.ledger().await.unwrap();
    assert_eq!(ledger.requests, 1, "{ledger:?}");
    assert_eq!(ledger.authorizations.len(), 1, "{ledger:?}");
    let authorization = &ledger.authorizations[0];
    assert_eq!(
        authorization.idempotency_key.as_deref(),
        Some(authorization.order_ref.as_str())
    );

    // 503 from the proxy: the provider never hears of it, the checkout answers 503 and Retry-After,
    // and no order is placed.
    let before = orders(&lab).await;
    let unavailable = NetworkFault::HttpStatus { status: 503 };
    let ((status, retry_after, body), evidence) =
        on_payments_link(&lab, unavailable.clone(), checkout(&lab, &token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "payment_unavailable", "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        (1..=3).contains(&evidence.http_answered) && evidence.http_answered == evidence.http_requests,
        "guarded: a first attempt and at most two retries, all answered by the fault: {evidence:?}"
    );
    assert_eq!(orders(&lab).await, before);
    assert_eq!(
        lab.ledger().await.unwrap().requests,
        1,
        "the provider heard nothing"
    );

    // Naive: the same 503s, tried three times at once.
    set_payments(&lab, Payments::Naive).await;
    let ((status, _, body), evidence) = on_payments_link(&lab, unavailable, checkout(&lab, &token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (evidence.http_requests, evidence.http_answered),
        (3, 3),
        "{evidence:?}"
    );

    // Held 1.5 s: naive waits it out and is paid.
    let held = NetworkFault::HttpDelay { ms: 1500.0 };
    let started = Instant::now();
    let (_, evidence) = on_payments_link(&lab, held.clone(), order(&lab, &token)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(evidence.http_delayed, 1, "{evidence:?}");
    assert_eq!(lab.ledger().await.unwrap().authorizations.len(), 2);

    // Guarded: gives up at its deadline, and what it gave up on never reaches the provider.
    set_payments(&lab, Payments::Guarded).await;
    let ((status, _, body), _) = on_payments_link(&lab, held, checkout(&lab, &token)).await;
    assert_eq!(status, 503, "{body}");
    tokio::time::sleep(Duration::from_millis(1600)).await; // longer than the hold: nothing comes late
    let ledger = lab.ledger().await.unwrap();
    assert_eq!(
        ledger.authorizations.len(),
        2,
        "nobody charged for nothing: {ledger:?}"
    );
    lab.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lost_reply_charges_a_naive_checkout_again_and_a_guarded_one_cancels_what_it_never_heard() {
    let lab = start_with_payments().await;
    seed(&lab).await;
    let token = login(&lab).await;
    let lost = NetworkFault::HttpLostReply { status: 504 };
    let before = orders(&lab).await;

    // Naive: three tries without a key, each authorised by the provider and each answer lost.
    set_payments(&lab, Payments::Naive).await;
    let ((status, _, body), evidence) = on_payments_link(&lab, lost.clone(), checkout(&lab, &token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (evidence.http_requests, evidence.http_lost_replies),
        (3, 3),
        "{evidence:?}"
    );
    let ledger = lab.ledger().await.unwrap();
    let charged: Vec<u32> = ledger.per_order().into_values().collect();
    assert_eq!(charged, [3], "no order, and charged three times: {ledger:?}");

    // Guarded: every try carries the order's key (one authorisation, the rest replays); having heard
    // no answer it can trust, it cancels by reference in the background.
    set_payments(&lab, Payments::Guarded).await;
    let ((status, retry_after, body), evidence) = on_payments_link(&lab, lost, checkout(&lab, &token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(evidence.http_lost_replies >= 3, "{evidence:?}");
    crate::wait_until(
        "the guarded payment's authorisation is cancelled",
        Duration::from_secs(10),
        || async {
            let ledger = lab.ledger().await.unwrap();
            let guarded: Vec<_> = (ledger.authorizations.iter())
                .filter(|a| a.idempotency_key.is_some())
                .collect();
            guarded.len() == 1 && guarded[0].voided && ledger.replays == 2
        },
    )
    .await;
    assert_eq!(orders(&lab).await, before, "no order placed");
    lab.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_control_api_refuses_bad_http_faults_with_a_4xx_that_says_why() {
    let lab = start_with_payments().await;
    let proxy = lab.proxy_url().await.unwrap();
    let put = |link: &'static str, fault: Value| {
        let url = format!("{proxy}/links/{link}");
        let request = lab.http().put(url).json(&json!({ "faults": [fault] }));
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    for (link, fault, says) in [
        (
            "payments",
            json!({ "kind": "http_status", "status": 503, "fraction": 1.5 }),
            "between 0 and 1",
        ),
        (
            "payments",
            json!({ "kind": "http_status", "status": 299 }),
            "known HTTP status",
        ),
        (
            "payments",
            json!({ "kind": "http_delay", "ms": -1 }),
            "between 0 and",
        ),
        (
            "payments",
            json!({ "kind": "http_lost_reply", "status": 42 }),
            "http_lost_reply status must be a known HTTP status",
        ),
        (
            "postgres",
            json!({ "kind": "http_status", "status": 503 }),
            "carries raw TCP",
        ),
    ] {
        let (status, body) = put(link, fault.clone()).await;
        assert_eq!(status, 422, "{fault} on {link}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{fault} on {link}: {message}");
    }
    let (status, body) = put(
        "payments",
        json!({ "kind": "http_status", "status": 503, "fraction": 0.5 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["link"]["faults"][0]["fraction"], 0.5, "{body}");
    lab.shutdown().await.unwrap();
}

/// A guarded checkout whose client gives up after the provider authorised but before the order is
/// written still ends in an order or a void: the money never stands for nothing. Postgres is 100 ms
/// away, so the order's writes take most of a second after the authorisation, and the client leaves
/// as soon as the provider's ledger shows it. Found by `fortress capacity slow-payments`, where
/// clients timing out on an overloaded service left hundreds of authorisations without an order.
#[tokio::test]
async fn a_guarded_checkout_abandoned_by_its_client_still_ends_in_an_order_or_a_void() {
    let lab = start_with_payments().await;
    seed(&lab).await;
    let token = login(&lab).await;
    let before = orders(&lab).await;
    let url = format!("{}/orders", lab.entry_url().await.unwrap());
    let checkout = lab
        .http()
        .post(url)
        .bearer_auth(&token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "product_id": 1, "quantity": 1 }))
        .send();
    let far = Fault::Network {
        link: Link::Postgres,
        fault: NetworkFault::Latency {
            ms: 100.0,
            jitter_ms: 0.0,
        }
        .into(),
    };
    let (timeline, stop) = (FaultTimeline::default(), CancellationToken::new());
    with_fault(&lab, &timeline, &stop, &far, async {
        let client = tokio::spawn(checkout);
        crate::wait_until(
            "the provider authorised the checkout",
            Duration::from_secs(10),
            || async { lab.ledger().await.unwrap().authorizations.len() == 1 },
        )
        .await;
        client.abort();
        assert!(
            client.await.is_err_and(|e| e.is_cancelled()),
            "the client left first"
        );
        // The checkout goes on in the service after its client left: keep Postgres far meanwhile.
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await
    .unwrap();
    crate::wait_until(
        "the authorisation ends in an order or a void",
        Duration::from_secs(10),
        || async {
            let ledger = lab.ledger().await.unwrap();
            let standing = ledger.authorizations.iter().filter(|a| !a.voided).count() as i64;
            standing == orders(&lab).await - before
        },
    )
    .await;
    lab.shutdown().await.unwrap();
}
