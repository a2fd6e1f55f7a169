//! The payment provider the lab stands in for: nobody can run a real one here, so this small HTTP
//! server authorises payments the way providers' APIs do (an `Idempotency-Key` makes a repeated
//! request answer the first one's result instead of charging again) and keeps a ledger of every
//! request and every authorisation, which the harness reads to count lost and double charges.
//!
//! It is `fortress provider`, run by the lab in a container of its own and reached by the service
//! through the fault proxy's `payments` link; the harness reads `GET /v1/ledger` on its port published
//! on 127.0.0.1.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The header a client names a request with, so that a retry of it is not a second charge.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer that repeats an earlier request's result.
pub const REPLAYED: &str = "idempotent-replayed";

/// What a client asks to authorise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRequest {
    /// The merchant's reference for the payment (the shop's order reference).
    pub order_ref: String,
    pub amount_cents: i64,
}

/// One authorisation the provider granted: money set aside on the customer's card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub id: String,
    pub order_ref: String,
    pub amount_cents: i64,
    pub idempotency_key: Option<String>,
    /// Released by the merchant (its order could not be placed): nobody is charged for it.
    #[serde(default)]
    pub voided: bool,
}

/// Everything the provider was asked and granted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Authorisation requests that reached it, whatever their answer.
    pub requests: u64,
    /// Requests answered with an earlier request's result (same idempotency key).
    pub replays: u64,
    pub authorizations: Vec<Authorization>,
}

impl Ledger {
    /// How many authorisations still stand for each order reference: 2 is a customer charged twice.
    pub fn per_order(&self) -> BTreeMap<&str, u32> {
        let mut per_order = BTreeMap::new();
        for authorization in self.authorizations.iter().filter(|a| !a.voided) {
            *per_order.entry(authorization.order_ref.as_str()).or_default() += 1;
        }
        per_order
    }
}

/// The ledger's counts, cheap to read once a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerCounts {
    pub requests: u64,
    pub authorized: u64,
    pub voided: u64,
}

#[derive(Debug, Default)]
struct Book {
    ledger: Ledger,
    by_key: HashMap<String, usize>,
    /// References the merchant cancelled: a request for one that arrives after the cancel (it was
    /// still on its way) is refused, so a cancel cannot be overtaken.
    cancelled: HashSet<String>,
}

/// The provider's state: its book, and how long it takes to decide on a request.
#[derive(Debug, Clone)]
struct Provider {
    book: Arc<Mutex<Book>>,
    processing: Duration,
}

/// Serves the provider on `listener` until `shutdown` completes. `processing` is how long each
/// authorisation takes (a real provider's answer takes tens of milliseconds).
pub async fn serve(
    listener: tokio::net::TcpListener,
    processing: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(processing))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(processing: Duration) -> Router {
    let provider = Provider {
        book: Arc::default(),
        processing,
    };
    Router::new()
        .route("/v1/authorizations", post(authorize))
        .route("/v1/authorizations/{id}/void", post(void))
        .route(
            "/v1/authorizations/cancel-by-reference",
            post(cancel_by_reference),
        )
        .route("/v1/ledger", get(ledger).delete(close_books))
        .route("/v1/ledger/counts", get(counts))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(provider)
}

fn refuse(status: StatusCode, error: &str, message: String) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

/// `POST /v1/authorizations`: 201 and the new authorisation; 200 and the first one's for a repeated
/// idempotency key; 409 for a key reused with another request or a cancelled reference; 400 for a
/// body that is not one.
async fn authorize(
    State(provider): State<Provider>,
    headers: HeaderMap,
    body: Result<Json<AuthorizationRequest>, JsonRejection>,
) -> Response {
    provider.book.lock().expect("the book's lock").ledger.requests += 1;
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return refuse(StatusCode::BAD_REQUEST, "bad_request", rejection.body_text()),
    };
    if request.amount_cents <= 0 {
        let message = format!("amount_cents must be above 0 (got {})", request.amount_cents);
        return refuse(StatusCode::BAD_REQUEST, "bad_amount", message);
    }
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    tokio::time::sleep(provider.processing).await;
    let mut book = provider.book.lock().expect("the book's lock");
    if book.cancelled.contains(&request.order_ref) {
        let message = format!("{} was cancelled by the merchant", request.order_ref);
        return refuse(StatusCode::CONFLICT, "reference_cancelled", message);
    }
    if let Some(earlier) = key.as_ref().and_then(|k| book.by_key.get(k)).copied() {
        let earlier = book.ledger.authorizations[earlier].clone();
        if earlier.order_ref != request.order_ref || earlier.amount_cents != request.amount_cents {
            let message = "this idempotency key was used for another payment".to_owned();
            return refuse(StatusCode::CONFLICT, "idempotency_key_reused", message);
        }
        book.ledger.replays += 1;
        return (StatusCode::OK, [(REPLAYED, "true")], Json(earlier)).into_response();
    }
    let authorization = Authorization {
        id: format!("auth_{}", book.ledger.authorizations.len() + 1),
        order_ref: request.order_ref,
        amount_cents: request.amount_cents,
        idempotency_key: key.clone(),
        voided: false,
    };
    if let Some(key) = key {
        let index = book.ledger.authorizations.len();
        book.by_key.insert(key, index);
    }
    book.ledger.authorizations.push(authorization.clone());
    (StatusCode::CREATED, Json(authorization)).into_response()
}

/// `POST /v1/authorizations/{id}/void`: releases an authorisation; 404 for an unknown id.
async fn void(State(provider): State<Provider>, Path(id): Path<String>) -> Response {
    let mut book = provider.book.lock().expect("the book's lock");
    match book.ledger.authorizations.iter_mut().find(|a| a.id == id) {
        Some(authorization) => {
            authorization.voided = true;
            (StatusCode::OK, Json(authorization.clone())).into_response()
        }
        None => refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no authorisation {id}"),
        ),
    }
}

/// What a merchant names to cancel by its own reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub order_ref: String,
}

/// `POST /v1/authorizations/cancel-by-reference`: voids every standing authorisation of the
/// merchant's reference, for a merchant that never heard whether its request was granted (a
/// "technical cancel"), and refuses any later request for it; 200 and how many were voided, 0 when
/// there was none; 400 for a body that is not one.
async fn cancel_by_reference(
    State(provider): State<Provider>,
    body: Result<Json<CancelRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return refuse(StatusCode::BAD_REQUEST, "bad_request", rejection.body_text()),
    };
    let mut book = provider.book.lock().expect("the book's lock");
    book.cancelled.insert(request.order_ref.clone());
    let mut voided = 0;
    for authorization in
        (book.ledger.authorizations.iter_mut()).filter(|a| a.order_ref == request.order_ref && !a.voided)
    {
        authorization.voided = true;
        voided += 1;
    }
    let answer = json!({ "order_ref": request.order_ref, "voided": voided });
    (StatusCode::OK, Json(answer)).into_response()
}

/// `GET /v1/ledger/counts`: how many requests, authorisations and voids, without the list.
async fn counts(State(provider): State<Provider>) -> Json<LedgerCounts> {
    let book = provider.book.lock().expect("the book's lock");
    let ledger = &book.ledger;
    Json(LedgerCounts {
        requests: ledger.requests,
        authorized: ledger.authorizations.len() as u64,
        voided: ledger.authorizations.iter().filter(|a| a.voided).count() as u64,
    })
}

/// `GET /v1/ledger`: every request counted and every authorisation granted.
async fn ledger(State(provider): State<Provider>) -> Json<Ledger> {
    Json(provider.book.lock().expect("the book's lock").ledger.clone())
}

/// `DELETE /v1/ledger`: closes the books. Every authorisation, key and count is forgotten, as at
/// the provider's start; 204.
async fn close_books(State(provider): State<Provider>) -> StatusCode {
    *provider.book.lock().expect("the book's lock") = Book::default();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn started() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, Duration::ZERO, std::future::pending()));
        url
    }

    #[tokio::test]
    async fn a_repeated_key_answers_the_first_authorisation_and_the_ledger_counts_every_request() {
        let url = started().await;
        let http = reqwest::Client::new();
        let authorize = |key: Option<&str>, order: &str, amount: i64| {
            let mut request = http
                .post(format!("{url}/v1/authorizations"))
                .json(&json!({ "order_ref": order, "amount_cents": amount }));
            if let Some(key) = key {
                request = request.header(IDEMPOTENCY_KEY, key);
            }
            request.send()
        };
        let first = authorize(Some("k1"), "order-1", 9900).await.unwrap();
        assert_eq!(first.status(), 201);
        let again = authorize(Some("k1"), "order-1", 9900).await.unwrap();
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()[REPLAYED], "true");
        let reused = authorize(Some("k1"), "order-2", 9900).await.unwrap();
        assert_eq!(reused.status(), 409);
        assert_eq!(authorize(None, "order-3", 5000).await.unwrap().status(), 201);
        assert_eq!(authorize(None, "order-3", 5000).await.unwrap().status(), 201);
        let stranded: Authorization = authorize(None, "order-5", 100)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let void = |id: &str| http.post(format!("{url}/v1/authorizations/{id}/void")).send();
        assert_eq!(void(&stranded.id).await.unwrap().status(), 200);
        assert_eq!(void("auth_999").await.unwrap().status(), 404);
        let bad = authorize(None, "order-4", 0).await.unwrap();
        assert_eq!(bad.status(), 400);
        let body: serde_json::Value = bad.json().await.unwrap();
        assert_eq!(body["error"], "bad_amount");
        let not_json = http
            .post(format!("{url}/v1/authorizations"))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(not_json.status(), 400);

        let ledger: Ledger = http
            .get(format!("{url}/v1/ledger"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ledger.requests, 8);
        let counts: LedgerCounts = http
            .get(format!("{url}/v1/ledger/counts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            counts,
            LedgerCounts {
                requests: 8,
                authorized: 4,
                voided: 1
            }
        );
        assert_eq!(ledger.replays, 1);
        assert_eq!(
            ledger.per_order(),
            BTreeMap::from([("order-1", 1), ("order-3", 2)]),
            "without a key, the same order is charged twice; a voided one is not charged"
        );
        // Closed books forget everything, keys included.
        let closed = http.delete(format!("{url}/v1/ledger")).send().await.unwrap();
        assert_eq!(closed.status(), 204);
        let counts: LedgerCounts = reqwest::get(format!("{url}/v1/ledger/counts"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(counts, LedgerCounts::default());
        assert_eq!(
            authorize(Some("k1"), "order-2", 9900).await.unwrap().status(),
            201
        );
    }

    #[tokio::test]
    async fn a_cancel_by_reference_voids_every_standing_authorisation_of_the_reference() {
        let url = started().await;
        let http = reqwest::Client::new();
        for order in ["order-1", "order-1", "order-2"] {
            let granted = http
                .post(format!("{url}/v1/authorizations"))
                .json(&json!({ "order_ref": order, "amount_cents": 100 }))
                .send()
                .await
                .unwrap();
            assert_eq!(granted.status(), 201);
        }
        let cancel = |body: serde_json::Value| {
            http.post(format!("{url}/v1/authorizations/cancel-by-reference"))
                .json(&body)
                .send()
        };
        let cancelled = cancel(json!({ "order_ref": "order-1" })).await.unwrap();
        assert_eq!(cancelled.status(), 200);
        let body: serde_json::Value = cancelled.json().await.unwrap();
        assert_eq!(body["voided"], 2, "{body}");
        let again: serde_json::Value = (cancel(json!({ "order_ref": "order-1" })).await.unwrap())
            .json()
            .await
            .unwrap();
        assert_eq!(again["voided"], 0, "nothing left to void: {again}");
        let late = http
            .post(format!("{url}/v1/authorizations"))
            .header(IDEMPOTENCY_KEY, "order-1")
            .json(&json!({ "order_ref": "order-1", "amount_cents": 100 }))
            .send()
            .await
            .unwrap();
        assert_eq!(late.status(), 409, "a request overtaken by its cancel is refused");
        let unknown_field = cancel(json!({ "order": "order-1" })).await.unwrap();
        assert_eq!(unknown_field.status(), 400);
        let ledger: Ledger = (http.get(format!("{url}/v1/ledger")).send().await.unwrap())
            .json()
            .await
            .unwrap();
        assert_eq!(ledger.per_order(), BTreeMap::from([("order-2", 1)]));
    }
}
