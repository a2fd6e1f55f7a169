//! Authorising an order's payment with the payment provider (`PAYMENTS_URL`), over HTTP, before the
//! order is confirmed.
//!
//! `payments = naive` is the call people write first: no deadline, retried at once on any failure,
//! no idempotency key, made by a checkout that already holds its database connection and row lock.
//! `payments = guarded` is the call made before the order's transaction, through a bulkhead (a few
//! calls in flight, the rest refused at once), a circuit breaker, a deadline on each attempt, and
//! retries with jittered exponential backoff that a retry budget keeps to a small share of the calls;
//! every attempt carries the same idempotency key, so the provider charges a payment once however
//! many times it is asked. A guarded call that gives up without knowing whether the provider acted (an
//! answer lost or late) cancels by its reference, so nobody is charged for an order never placed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::breaker::{Call, CircuitBreaker};
use crate::metrics::Metrics;
use crate::modes::Modes;

/// How many times the naive call tries: once, then twice more at once.
const NAIVE_ATTEMPTS: u32 = 3;
/// The guarded call's limits: chosen for a provider that answers in tens of milliseconds.
const DEADLINE: Duration = Duration::from_millis(500);
const BULKHEAD_PERMITS: usize = 8;
/// How long a guarded call waits for a turn before it is refused: a full bulkhead means the provider
/// is slow, and a customer is better told at once.
const BULKHEAD_WAIT: Duration = Duration::from_millis(20);
const GUARDED_ATTEMPTS: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_CAP: Duration = Duration::from_millis(400);
/// Consecutive failed attempts that open the breaker: a provider that fails every call, not one that
/// fails half of them. At 5, a provider answering half its requests with 503 (5 failures in a row
/// come once in 32 attempts) kept the breaker open most of the time: 78% of checkouts refused where
/// the provider would have taken half (measured in retry-storm).
const BREAKER_FAILURES: u32 = 20;
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(2);
/// The retry budget: each first attempt earns a tenth of a retry, up to ten saved; a retry spends one.
const BUDGET_PER_CALL: f64 = 0.1;
const BUDGET_MAX: f64 = 10.0;
/// How long a cancel of an unknown outcome may take: it is not in the customer's way, and a lost one
/// is a charge for nothing.
const CANCEL_DEADLINE: Duration = Duration::from_secs(5);
/// What a client is told to wait before trying again, in seconds.
pub const RETRY_AFTER_S: u64 = 1;

/// A payment to authorise: the shop's reference for it (one per checkout) and the amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub order_ref: String,
    pub amount_cents: i64,
}

/// The provider's answer to an authorisation it granted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Authorized {
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("the payment provider declined the payment ({status}): {body}")]
    Declined { status: u16, body: String },
    #[error("the payment provider answered {0}")]
    Failed(u16),
    #[error("the payment provider could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("the payment provider did not answer within {DEADLINE:?}")]
    Timeout,
    #[error("too many payments in flight")]
    Busy,
    #[error("payments paused: the provider keeps failing")]
    CircuitOpen,
}

impl PaymentError {
    /// Whether trying again might succeed: the provider failed, rather than said no.
    fn is_transient(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Unreachable(_) | Self::Timeout)
    }

    /// Whether the provider may have acted though its answer did not say so: the deadline passed, a
    /// gateway answered for it (502, 504), or the connection broke once the request was sent.
    fn outcome_unknown(&self) -> bool {
        match self {
            Self::Timeout => true,
            Self::Failed(status) => matches!(status, 502 | 504),
            Self::Unreachable(error) => !error.is_connect(),
            _ => false,
        }
    }
}

/// Which parts of the guarded call are on: each can be switched off alone (the `payment_*` modes),
/// to show what that part holds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guards {
    pub deadline: bool,
    pub bulkhead: bool,
    pub breaker: bool,
    pub retry_budget: bool,
    pub idempotency_key: bool,
    pub cancel: bool,
}

impl Guards {
    /// Every part on.
    pub const ALL: Self = Self {
        deadline: true,
        bulkhead: true,
        breaker: true,
        retry_budget: true,
        idempotency_key: true,
        cancel: true,
    };

    pub fn of(modes: &Modes) -> Self {
        Self {
            deadline: modes.payment_deadline.is_on(),
            bulkhead: modes.payment_bulkhead.is_on(),
            breaker: modes.payment_breaker.is_on(),
            retry_budget: modes.payment_retry_budget.is_on(),
            idempotency_key: modes.payment_idempotency_key.is_on(),
            cancel: modes.payment_cancel.is_on(),
        }
    }
}

/// Retries earned by calls: a token bucket that lets a failing provider get at most about a tenth
/// more requests than there are payments, instead of a multiple of them.
#[derive(Debug)]
struct RetryBudget(Mutex<f64>);

impl RetryBudget {
    fn lock(&self) -> std::sync::MutexGuard<'_, f64> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn earn(&self) {
        let mut tokens = self.lock();
        *tokens = (*tokens + BUDGET_PER_CALL).min(BUDGET_MAX);
    }

    fn spend(&self) -> bool {
        let mut tokens = self.lock();
        let spent = *tokens >= 1.0;
        if spent {
            *tokens -= 1.0;
        }
        spent
    }
}

/// The client of the payment provider, shared by every checkout of the service.
#[derive(Debug, Clone)]
pub struct PaymentClient {
    url: String,
    http: reqwest::Client,
    bulkhead: Arc<Semaphore>,
    breaker: Arc<CircuitBreaker>,
    budget: Arc<RetryBudget>,
    metrics: Metrics,
}

impl PaymentClient {
    pub fn new(url: &str, metrics: Metrics) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            // No timeout of its own: the naive call has none, the guarded one sets its deadline.
            http: reqwest::Client::new(),
            bulkhead: Arc::new(Semaphore::new(BULKHEAD_PERMITS)),
            breaker: Arc::new(CircuitBreaker::new(BREAKER_FAILURES, BREAKER_COOL_DOWN)),
            budget: Arc::new(RetryBudget(Mutex::new(BUDGET_MAX))),
            metrics,
        }
    }

    /// The naive call: tried up to three times, each as soon as the last failed, with no deadline
    /// and no idempotency key.
    pub async fn authorize_naive(&self, payment: &Payment) -> Result<Authorized, PaymentError> {
        let mut attempt = 1;
        loop {
            match self.send(payment, None).await {
                Err(error) if error.is_transient() && attempt < NAIVE_ATTEMPTS => attempt += 1,
                outcome => return outcome,
            }
        }
    }

    /// The guarded call: refused at once when the bulkhead is full or the breaker open; otherwise
    /// attempts with a deadline each, retried after a jittered backoff while the budget allows. Each
    /// of those parts is on unless `guards` switches it off.
    pub async fn authorize_guarded(
        &self,
        payment: &Payment,
        guards: Guards,
    ) -> Result<Authorized, PaymentError> {
        let _turn = match guards.bulkhead {
            true => Some(self.turn().await?),
            false => None,
        };
        let mut call = self.admit(guards)?;
        self.budget.earn();
        let key = guards.idempotency_key.then_some(payment.order_ref.as_str());
        let mut attempt = 1;
        let mut unknown = false;
        loop {
            match self.attempt(payment, key, guards).await {
                Err(error) if error.is_transient() => {
                    if let Some(call) = call {
                        call.failed();
                    }
                    unknown |= error.outcome_unknown();
                    let Some(next) = self.retry(attempt, guards) else {
                        if unknown && guards.cancel {
                            self.cancel_by_reference(&payment.order_ref);
                        }
                        return Err(error);
                    };
                    call = next;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                outcome => {
                    if let Some(call) = call {
                        call.succeeded();
                    }
                    return outcome;
                }
            }
        }
    }

    /// A turn in the bulkhead, waited for `BULKHEAD_WAIT` at most.
    async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, PaymentError> {
        let turn = tokio::time::timeout(BULKHEAD_WAIT, self.bulkhead.acquire())
            .await
            .map_err(|_| self.count(PaymentError::Busy))?;
        Ok(turn.expect("the bulkhead is never closed"))
    }

    /// The breaker's leave for a first attempt (`None` with the breaker off), or a refusal.
    fn admit(&self, guards: Guards) -> Result<Option<Call<'_>>, PaymentError> {
        if !guards.breaker {
            return Ok(None);
        }
        match self.breaker.allow() {
            Some(call) => Ok(Some(call)),
            None => Err(self.count(PaymentError::CircuitOpen)),
        }
    }

    /// Whether attempt `attempt + 1` may go, and the breaker's leave for it: within the attempts, with
    /// a retry from the budget (when it is on) and the breaker's leave (when it is on).
    #[allow(clippy::option_option)]
    fn retry(&self, attempt: u32, guards: Guards) -> Option<Option<Call<'_>>> {
        if attempt >= GUARDED_ATTEMPTS || (guards.retry_budget && !self.budget.spend()) {
            return None;
        }
        match guards.breaker {
            true => self.breaker.allow().map(Some),
            false => Some(None),
        }
    }

    /// One attempt, given `DEADLINE` when the deadline is on.
    async fn attempt(
        &self,
        payment: &Payment,
        key: Option<&str>,
        guards: Guards,
    ) -> Result<Authorized, PaymentError> {
        if !guards.deadline {
            return self.send(payment, key).await;
        }
        match tokio::time::timeout(DEADLINE, self.send(payment, key)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.count(PaymentError::Timeout)),
        }
    }

    /// Releases an authorisation whose order could not be placed, so the customer is not charged for
    /// nothing, with the guarded deadline. A void that fails (the provider slow, the service short of
    /// CPU) is not the end of it: the release is handed to the cancel by reference, which is tried
    /// again until `CANCEL_DEADLINE`.
    pub async fn void(&self, authorization: &Authorized, order_ref: &str) {
        let url = format!("{}/v1/authorizations/{}/void", self.url, authorization.id);
        let voided = self.http.post(url).timeout(DEADLINE).send().await;
        match voided.map(|r| r.status()) {
            Ok(status) if status.is_success() => {}
            Ok(status) => {
                tracing::warn!(id = authorization.id, %status, "void refused; cancelling by reference");
                self.cancel_by_reference(order_ref);
            }
            Err(error) => {
                tracing::warn!(id = authorization.id, %error, "void failed; cancelling by reference");
                self.cancel_by_reference(order_ref);
            }
        }
    }

    /// Voids, in the background, whatever the provider may have authorised for `payment` (a "technical
    /// cancel" by the shop's reference): the call gave up without an answer it could trust. A cancel by
    /// reference can be repeated safely, so one that fails is tried again after a backoff until
    /// `CANCEL_DEADLINE`, however quickly each attempt fails: capped at five attempts, a link that reset
    /// every connection for two seconds used them up in half a second and left the authorisation
    /// standing for an order never placed (`fortress explore double-charge`, 2026-12-07). One that
    /// still fails at the deadline is logged for someone to reconcile by hand.
    fn cancel_by_reference(&self, order_ref: &str) {
        let client = self.clone();
        let order_ref = order_ref.to_owned();
        let in_flight = self.metrics.count_payment_in_flight();
        tokio::spawn(async move {
            let _counted = in_flight;
            let started = tokio::time::Instant::now();
            let mut attempt = 1;
            loop {
                let left = CANCEL_DEADLINE.saturating_sub(started.elapsed());
                let Err(error) = client.send_cancel(&order_ref, left).await else {
                    return tracing::info!(order_ref, attempt, "payment of unknown outcome cancelled");
                };
                let pause = backoff(attempt);
                if started.elapsed() + pause >= CANCEL_DEADLINE {
                    return tracing::error!(order_ref, attempt, %error, "payment of unknown outcome not cancelled");
                }
                tracing::warn!(order_ref, attempt, %error, "cancel failed; trying again");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
        });
    }

    /// One cancel-by-reference request, given `deadline` to answer.
    async fn send_cancel(&self, order_ref: &str, deadline: Duration) -> Result<(), String> {
        let response = (self.http)
            .post(format!("{}/v1/authorizations/cancel-by-reference", self.url))
            .timeout(deadline)
            .json(&serde_json::json!({ "order_ref": order_ref }))
            .send()
            .await
            .map_err(|error| error.to_string())?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("the provider answered {status}")),
        }
    }

    /// One authorisation request, with `key` as its idempotency key if given.
    async fn send(&self, payment: &Payment, key: Option<&str>) -> Result<Authorized, PaymentError> {
        let mut request = self
            .http
            .post(format!("{}/v1/authorizations", self.url))
            .json(payment);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let outcome = async {
            let response = request.send().await.map_err(PaymentError::Unreachable)?;
            let status = response.status();
            if status.is_success() {
                return response.json().await.map_err(PaymentError::Unreachable);
            }
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                let body = response.text().await.unwrap_or_default();
                return Err(PaymentError::Declined {
                    status: status.as_u16(),
                    body,
                });
            }
            Err(PaymentError::Failed(status.as_u16()))
        };
        match outcome.await {
            Ok(authorized) => {
                self.metrics.payments.with_label_values(&["authorized"]).inc();
                Ok(authorized)
            }
            Err(error) => Err(self.count(error)),
        }
    }

    /// Counts a failed attempt by what went wrong.
    fn count(&self, error: PaymentError) -> PaymentError {
        let outcome = match &error {
            PaymentError::Declined { .. } => "declined",
            PaymentError::Failed(_) => "failed",
            PaymentError::Unreachable(_) => "unreachable",
            PaymentError::Timeout => "timeout",
            PaymentError::Busy => "busy",
            PaymentError::CircuitOpen => "circuit_open",
        };
        self.metrics.payments.with_label_values(&[outcome]).inc();
        error
    }
}

/// The wait before retry `attempt`: "full jitter", a random time up to base x 2^(attempt - 1)
/// (capped), so that callers who failed together do not come back together.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_lets_a_tenth_of_the_calls_retry_after_its_savings() {
        let budget = RetryBudget(Mutex::new(BUDGET_MAX));
        let mut retries = 0;
        for _ in 0..100 {
            budget.earn();
            if budget.spend() {
                retries += 1;
            }
        }
        // Ten saved, then one for every ten calls.
        assert!((19..=20).contains(&retries), "{retries} retries for 100 calls");
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_cap() {
        for attempt in 1..6 {
            let ceiling = BACKOFF_BASE * 2u32.pow(attempt - 1);
            let wait = backoff(attempt);
            assert!(wait <= ceiling.min(BACKOFF_CAP), "attempt {attempt}: {wait:?}");
        }
    }

    /// A client of `provider`, served on a port of its own, and the client's metrics.
    async fn client_of(provider: axum::Router) -> (PaymentClient, Metrics) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, provider).await });
        let metrics = Metrics::new();
        (PaymentClient::new(&url, metrics.clone()), metrics)
    }

    /// A provider that never answers an authorisation in time and refuses the first cancel: the guarded
    /// call gives up not knowing whether it was charged, and its cancel is tried until one goes through.
    #[tokio::test]
    async fn a_cancel_that_fails_is_tried_again_until_the_provider_takes_it() {
        use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

        let cancels = Arc::new(AtomicU32::new(0));
        let counted = cancels.clone();
        let slow = || async {
            tokio::time::sleep(DEADLINE * 4).await;
            StatusCode::OK
        };
        let refuse_first = move || {
            let n = counted.fetch_add(1, SeqCst) + 1;
            async move {
                match n {
                    1 => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::OK,
                }
            }
        };
        let provider = axum::Router::new()
            .route("/v1/authorizations", axum::routing::post(slow))
            .route(
                "/v1/authorizations/cancel-by-reference",
                axum::routing::post(refuse_first),
            );
        let (client, metrics) = client_of(provider).await;
        let payment = Payment {
            order_ref: "order-1".into(),
            amount_cents: 100,
        };
        let error = client.authorize_guarded(&payment, Guards::ALL).await.unwrap_err();
        assert!(matches!(error, PaymentError::Timeout), "{error}");
        assert_eq!(
            metrics.payments_in_flight.get(),
            1,
            "the cancel is counted in flight"
        );
        let started = std::time::Instant::now();
        while cancels.load(SeqCst) < 2 || metrics.payments_in_flight.get() > 0 {
            assert!(
                started.elapsed() < CANCEL_DEADLINE,
                "{} cancel(s) within {CANCEL_DEADLINE:?}, {} in flight",
                cancels.load(SeqCst),
                metrics.payments_in_flight.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A provider whose cancels fail at once for a while (a link resetting every connection): the
    /// cancel is tried until its deadline, not for a number of attempts that fast failures use up.
    #[tokio::test]
    async fn a_cancel_is_tried_until_its_deadline_however_fast_its_attempts_fail() {
        use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

        const REFUSED: u32 = 8;
        let cancels = Arc::new(AtomicU32::new(0));
        let counted = cancels.clone();
        let refuse_at_first = move || {
            let n = counted.fetch_add(1, SeqCst) + 1;
            async move {
                match n {
                    n if n <= REFUSED => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::OK,
                }
            }
        };
        let provider = axum::Router::new().route(
            "/v1/authorizations/cancel-by-reference",
            axum::routing::post(refuse_at_first),
        );
        let (client, metrics) = client_of(provider).await;
        client.cancel_by_reference("order-1");
        let started = std::time::Instant::now();
        while metrics.payments_in_flight.get() > 0 {
            assert!(started.elapsed() < CANCEL_DEADLINE * 2, "the cancel ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            cancels.load(SeqCst),
            REFUSED + 1,
            "tried until the provider took it"
        );
    }

    /// A void the provider refuses is handed to the cancel by reference, which is tried until the
    /// provider takes it: a release is never left to a single request.
    #[tokio::test]
    async fn a_void_that_fails_is_cancelled_by_reference() {
        use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

        let cancels = Arc::new(AtomicU32::new(0));
        let counted = cancels.clone();
        let cancel = move || {
            counted.fetch_add(1, SeqCst);
            async { StatusCode::OK }
        };
        let provider = axum::Router::new()
            .route(
                "/v1/authorizations/{id}/void",
                axum::routing::post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .route(
                "/v1/authorizations/cancel-by-reference",
                axum::routing::post(cancel),
            );
        let (client, metrics) = client_of(provider).await;
        let authorized = Authorized { id: "auth-1".into() };
        client.void(&authorized, "order-1").await;
        let started = std::time::Instant::now();
        while cancels.load(SeqCst) < 1 || metrics.payments_in_flight.get() > 0 {
            assert!(
                started.elapsed() < CANCEL_DEADLINE,
                "{} cancel(s) within {CANCEL_DEADLINE:?}",
                cancels.load(SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What a provider saw: authorisation requests, those with an idempotency key, cancels.
    #[derive(Debug, Default)]
    struct Seen {
        requests: std::sync::atomic::AtomicU32,
        keyed: std::sync::atomic::AtomicU32,
        cancels: std::sync::atomic::AtomicU32,
    }

    /// A provider that answers every authorisation `status` after `delay`, and counts what it sees.
    async fn provider(status: StatusCode, delay: Duration) -> (PaymentClient, Arc<Seen>) {
        use std::sync::atomic::Ordering::SeqCst;
        let seen = Arc::new(Seen::default());
        let (on_authorize, on_cancel) = (seen.clone(), seen.clone());
        let authorize = move |headers: axum::http::HeaderMap| {
            on_authorize.requests.fetch_add(1, SeqCst);
            if headers.contains_key("idempotency-key") {
                on_authorize.keyed.fetch_add(1, SeqCst);
            }
            async move {
                tokio::time::sleep(delay).await;
                (status, axum::Json(serde_json::json!({ "id": "auth-1" })))
            }
        };
        let cancel = move || {
            on_cancel.cancels.fetch_add(1, SeqCst);
            async { StatusCode::OK }
        };
        let provider = axum::Router::new()
            .route("/v1/authorizations", axum::routing::post(authorize))
            .route(
                "/v1/authorizations/cancel-by-reference",
                axum::routing::post(cancel),
            );
        (client_of(provider).await.0, seen)
    }

    fn payment(n: u32) -> Payment {
        Payment {
            order_ref: format!("order-{n}"),
            amount_cents: 100,
        }
    }

    /// Ten payments against a provider that answers 503 to all: the requests it got.
    async fn requests_for_ten_failing(guards: Guards) -> u32 {
        let (client, seen) = provider(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
        for n in 0..10 {
            assert!(client.authorize_guarded(&payment(n), guards).await.is_err());
        }
        seen.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn the_budget_and_the_breaker_each_hold_back_retries_to_a_failing_provider() {
        let no_breaker = Guards {
            breaker: false,
            ..Guards::ALL
        };
        // 3 attempts each; the budget's 10 saved (full, so the first call's tenth is lost) and 0.9
        // earned allow 10 retries of the 20 wanted.
        assert_eq!(requests_for_ten_failing(no_breaker).await, 20);
        let neither = Guards {
            retry_budget: false,
            ..no_breaker
        };
        assert_eq!(requests_for_ten_failing(neither).await, 30);
        let no_budget = Guards {
            retry_budget: false,
            ..Guards::ALL
        };
        // The breaker opens after 20 failed attempts in a row: the last 3 calls are refused unsent.
        assert_eq!(requests_for_ten_failing(no_budget).await, 20);
    }

    #[tokio::test]
    async fn without_the_key_a_payment_is_asked_for_with_nothing_to_tell_a_retry_from_a_new_charge() {
        use std::sync::atomic::Ordering::SeqCst;
        for (guards, keyed) in [
            (Guards::ALL, 1),
            (
                Guards {
                    idempotency_key: false,
                    ..Guards::ALL
                },
                0,
            ),
        ] {
            let (client, seen) = provider(StatusCode::OK, Duration::ZERO).await;
            client.authorize_guarded(&payment(1), guards).await.unwrap();
            assert_eq!(seen.keyed.load(SeqCst), keyed, "{guards:?}");
        }
    }

    #[tokio::test]
    async fn without_the_deadline_a_slow_provider_is_waited_for_and_without_the_cancel_it_stands() {
        use std::sync::atomic::Ordering::SeqCst;
        let slow = DEADLINE * 2;
        let no_deadline = Guards {
            deadline: false,
            ..Guards::ALL
        };
        let (client, seen) = provider(StatusCode::OK, slow).await;
        client.authorize_guarded(&payment(1), no_deadline).await.unwrap();
        assert_eq!(seen.requests.load(SeqCst), 1);

        let no_cancel = Guards {
            cancel: false,
            retry_budget: false,
            ..Guards::ALL
        };
        let (client, seen) = provider(StatusCode::OK, slow).await;
        let error = client
            .authorize_guarded(&payment(1), no_cancel)
            .await
            .unwrap_err();
        assert!(matches!(error, PaymentError::Timeout), "{error}");
        tokio::time::sleep(slow).await;
        assert_eq!(seen.requests.load(SeqCst), 3, "three attempts, each given up");
        assert_eq!(seen.cancels.load(SeqCst), 0, "and no cancel");
    }

    #[tokio::test]
    async fn without_the_bulkhead_every_caller_waits_on_a_slow_provider() {
        for (guards, busy) in [
            (Guards::ALL, 2),
            (
                Guards {
                    bulkhead: false,
                    ..Guards::ALL
                },
                0,
            ),
        ] {
            let (client, _) = provider(StatusCode::OK, DEADLINE / 2).await;
            let calls = (0..BULKHEAD_PERMITS as u32 + 2).map(|n| {
                let client = client.clone();
                tokio::spawn(async move { client.authorize_guarded(&payment(n), guards).await })
            });
            let mut refused = 0;
            for call in calls.collect::<Vec<_>>() {
                refused += u32::from(matches!(call.await.unwrap(), Err(PaymentError::Busy)));
            }
            assert_eq!(refused, busy, "{guards:?}");
        }
    }
}
