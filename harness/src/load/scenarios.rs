//! What the virtual users do, as goose scenarios: browse, availability, checkout and history, each
//! request classified (ok, expected, error), filed in the `Recorder` and told to goose the same way.
//!
//! Checkout and history users log in once at start (`user{N}@fortress.test`, N from the user's index)
//! and keep what a browser keeps: the bearer token the login answers (`sessions = jwt`), and every
//! cookie (the session cookie of `sessions = redis | memory`, the balancer's sticky cookie) in the
//! user's own cookie store. A failed login is retried on the user's next iteration; a user whose
//! session the service stops knowing (401 `session_unknown`...) is logged out, and stays so: it does
//! not log in again, so the share of logged-out answers shows how many users a fault logged out. Product ids are drawn
//! uniformly from the seeded range. Every request, the login too, first waits for its slot in the
//! run's `Arrivals`; with `start = together` no user sends its scenario's own requests until every
//! user is past its login (`Crowd`). Latency runs from the slot the request was due in to the end of its body; service
//! time from the instant it left (both filed by `Recorder`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use goose::goose::{
    GooseMethod, GooseRequest, GooseUser, Scenario as GooseScenario, Transaction, TransactionError,
    TransactionResult,
};
use goose::{GooseAttack, GooseError};
use rand::Rng;
use reference_service::seed::SEED_PASSWORD;
use serde_json::{Value, json};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::LoadSpec;
use super::arrivals::Arrivals;
use super::recorder::Recorder;
use super::sample::{Group, RequestOutcome, RequestTiming};
use super::script::{Captured, Method, Script, ScriptedRequest};
use super::sessions::SessionBook;
use crate::vocabulary::{Scenario, Start};

/// What every transaction needs to know.
#[derive(Debug)]
pub(super) struct Ctx {
    pub recorder: Recorder,
    /// Seeded products: ids `1..=products`.
    pub products: u32,
    /// Seeded users: `user1` to `user{shoppers}`.
    pub shoppers: u32,
    /// Paces every request of the run.
    pub arrivals: Arrivals,
    /// Tokens of shoppers logged in by an earlier load sharing the book.
    sessions: SessionBook,
    /// When this run's first request started and its last one completed.
    pub window: Mutex<Option<(Instant, Instant)>>,
    /// Per user (goose's index), when its last request ended: from then on it was free to send.
    free_since: Mutex<HashMap<usize, Instant>>,
    /// Closes the schedule: no request is due after it, and the users idle until goose's run ends.
    end: CancellationToken,
    /// With `Start::Together`: the users gathered before any sends its scenario's own requests.
    crowd: Option<Arc<Crowd>>,
}

impl Ctx {
    pub fn new(recorder: Recorder, spec: &LoadSpec, end: CancellationToken) -> Self {
        Self {
            recorder,
            products: spec.products,
            shoppers: spec.shoppers,
            arrivals: Arrivals::new(spec.rate),
            sessions: spec.sessions.clone(),
            window: Mutex::new(None),
            free_since: Mutex::new(HashMap::new()),
            end,
            crowd: (spec.start == Start::Together).then(|| Arc::new(Crowd::new(spec.users as usize))),
        }
    }

    fn note(&self, started: Instant, completed: Instant) {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let (first, last) = window.get_or_insert((started, completed));
        *first = (*first).min(started);
        *last = (*last).max(completed);
    }

    /// When `user` was last free: the end of its previous request, if it sent one.
    fn free_since(&self, user: usize) -> Option<Instant> {
        let free = self.free_since.lock().unwrap_or_else(|p| p.into_inner());
        free.get(&user).copied()
    }

    fn freed(&self, user: usize, at: Instant) {
        let mut free = self.free_since.lock().unwrap_or_else(|p| p.into_inner());
        free.insert(user, at);
    }

    /// From this run's first request start to its last completion.
    pub fn active(&self) -> Option<Duration> {
        let window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.map(|(first, last)| last.saturating_duration_since(first))
    }
}

/// The users that have reached their scenario's own requests (`Start::Together`): none goes on
/// until all have, so the first request after the logins finds the whole crowd ready, as at a sale's
/// opening, instead of the first logged-in users buying one by one between the others' logins.
#[derive(Debug)]
struct Crowd {
    size: usize,
    arrived: Mutex<HashSet<usize>>,
    complete: Notify,
}

impl Crowd {
    fn new(size: usize) -> Self {
        Self {
            size,
            arrived: Mutex::new(HashSet::new()),
            complete: Notify::new(),
        }
    }

    /// Notes `user` as arrived and waits until every user has, or the schedule closes. At once for a
    /// user once the crowd is complete.
    async fn gather(&self, user: usize, end: &CancellationToken) {
        // Registered before the user is counted in, so the last arrival's wake-up cannot be missed.
        let complete = self.complete.notified();
        tokio::pin!(complete);
        complete.as_mut().enable();
        let all_here = {
            let mut arrived = self.arrived.lock().unwrap_or_else(|p| p.into_inner());
            arrived.insert(user);
            arrived.len() >= self.size
        };
        if all_here {
            self.complete.notify_waiters();
            return;
        }
        tokio::select! {
            () = complete => {}
            () = end.cancelled() => {}
        }
    }
}

/// What a logged-in user sends to be known, kept in goose's per-user session data.
#[derive(Debug, Clone)]
enum Session {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// The session cookie, which the user's cookie store sends by itself.
    Cookie,
}

type Step = for<'r> fn(
    &'r mut GooseUser,
    Arc<Ctx>,
) -> std::pin::Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

/// How long a user whose schedule is closed waits before goose may ask it again (or end it).
const IDLE: Duration = Duration::from_millis(50);

/// A goose transaction running `step` while the schedule is open. A `main` one (not the login of
/// the start) notes its user as started.
fn transaction(name: &str, ctx: &Arc<Ctx>, step: Step, main: bool) -> Transaction {
    let ctx = Arc::clone(ctx);
    Transaction::new(Arc::new(move |user| {
        if main {
            ctx.recorder.user_started(user.weighted_users_index);
        }
        if ctx.end.is_cancelled() {
            return Box::pin(async {
                tokio::time::sleep(IDLE).await;
                Ok(())
            });
        }
        match (&ctx.crowd, main) {
            (Some(crowd), true) => {
                let (crowd, ctx) = (Arc::clone(crowd), Arc::clone(&ctx));
                Box::pin(async move {
                    crowd.gather(user.weighted_users_index, &ctx.end).await;
                    step(user, ctx).await
                })
            }
            _ => step(user, Arc::clone(&ctx)),
        }
    }))
    .set_name(name)
}

/// Registers one goose scenario per scenario of the mix with a weight above 0.
pub(super) fn register(
    mut attack: GooseAttack,
    mix: &[(Scenario, u32)],
    ctx: &Arc<Ctx>,
) -> Result<GooseAttack, GooseError> {
    for &(scenario, weight) in mix.iter().filter(|(_, w)| *w > 0) {
        let step: Step = match scenario {
            Scenario::Browse => |u, c| Box::pin(async move { browse(u, &c).await }),
            Scenario::Availability => |u, c| Box::pin(async move { availability(u, &c).await }),
            Scenario::Checkout => |u, c| Box::pin(async move { checkout(u, &c).await }),
            Scenario::History => |u, c| Box::pin(async move { history(u, &c).await }),
            Scenario::LoginProbe => |u, c| Box::pin(async move { login_probe(u, &c).await }),
        };
        let name = scenario.name();
        let mut goose_scenario = GooseScenario::new(name).set_weight(weight as usize)?;
        if scenario.logs_in() {
            let login: Step = |u, c| Box::pin(async move { ensure_session(u, &c).await.map(|_| ()) });
            goose_scenario =
                goose_scenario.register_transaction(transaction("login", ctx, login, false).set_on_start());
        }
        attack =
            attack.register_scenario(goose_scenario.register_transaction(transaction(name, ctx, step, true)));
    }
    Ok(attack)
}

/// Registers one goose scenario per request of the script, weighted as it says; with a start
/// request, each user sends it first (goose's on-start transaction).
pub(super) fn register_script(
    mut attack: GooseAttack,
    script: &Arc<Script>,
    ctx: &Arc<Ctx>,
) -> Result<GooseAttack, GooseError> {
    for (index, request) in script.requests.iter().enumerate() {
        let mut scenario = GooseScenario::new(&request.name).set_weight(request.weight.max(1) as usize)?;
        if let Some(start) = &script.start {
            let first = script_transaction(&start.name, script, ctx, ScriptStep::Start).set_on_start();
            scenario = scenario.register_transaction(first);
        }
        let own = script_transaction(&request.name, script, ctx, ScriptStep::Request(index));
        attack = attack.register_scenario(scenario.register_transaction(own));
    }
    Ok(attack)
}

/// What a scripted transaction sends: the start request, or the script's request `index`.
#[derive(Debug, Clone, Copy)]
enum ScriptStep {
    Start,
    Request(usize),
}

/// A goose transaction running `step` while the schedule is open; a request (not the start) notes
/// its user as started.
fn script_transaction(name: &str, script: &Arc<Script>, ctx: &Arc<Ctx>, step: ScriptStep) -> Transaction {
    let (script, ctx) = (Arc::clone(script), Arc::clone(ctx));
    Transaction::new(Arc::new(move |user| {
        if let ScriptStep::Request(_) = step {
            ctx.recorder.user_started(user.weighted_users_index);
        }
        if ctx.end.is_cancelled() {
            return Box::pin(async {
                tokio::time::sleep(IDLE).await;
                Ok(())
            });
        }
        let (script, ctx) = (Arc::clone(&script), Arc::clone(&ctx));
        Box::pin(async move {
            match step {
                ScriptStep::Start => started(user, &ctx, &script).await.map(|_| ()),
                ScriptStep::Request(index) => scripted(user, &ctx, &script, index).await,
            }
        })
    }))
    .set_name(name)
}

/// What this user captured from the start request, sending it first if it has not yet (its first
/// try, or again after a failed one). `None` while it fails; each try is recorded like any request.
async fn started(
    user: &mut GooseUser,
    ctx: &Ctx,
    script: &Script,
) -> Result<Option<Captured>, Box<TransactionError>> {
    let Some(start) = &script.start else {
        return Ok(Some(Captured::new()));
    };
    if let Some(captured) = user.get_session_data::<Captured>() {
        return Ok(Some(captured.clone()));
    }
    let answer = send_scripted(user, ctx, script, start, &Captured::new()).await?;
    let captured = match answer.outcome {
        RequestOutcome::Ok => start.captured_from(&answer.body),
        _ => None,
    };
    if let Some(captured) = &captured {
        user.set_session_data(captured.clone());
    }
    Ok(captured)
}

/// Request `index` of the script, once the user has its start request's values (a user whose
/// start failed tries it again in this slot instead).
async fn scripted(user: &mut GooseUser, ctx: &Ctx, script: &Script, index: usize) -> TransactionResult {
    let Some(captured) = started(user, ctx, script).await? else {
        return Ok(());
    };
    send_scripted(user, ctx, script, &script.requests[index], &captured).await?;
    Ok(())
}

/// Sends `request`, its templates filled in for this user, this request and what the user
/// captured; files the id an acknowledging answer carries.
async fn send_scripted(
    user: &mut GooseUser,
    ctx: &Ctx,
    script: &Script,
    request: &ScriptedRequest,
    captured: &Captured,
) -> Result<Answer, Box<TransactionError>> {
    let values = script.next_values(user.weighted_users_index, captured);
    let path = request.path.render(&values);
    let method = match request.method {
        Method::Get => GooseMethod::Get,
        Method::Post => GooseMethod::Post,
        Method::Put => GooseMethod::Put,
        Method::Patch => GooseMethod::Patch,
        Method::Delete => GooseMethod::Delete,
    };
    let mut builder = user.get_request_builder(&method, &path)?;
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.render(&values));
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.render(&values));
    }
    let goose_request = GooseRequest::builder()
        .method(method)
        .path(path.as_str())
        .name(request.name.as_str())
        .set_request_builder(builder)
        .build();
    let answer = send(user, ctx, request.group, goose_request, |status, body| {
        request.classify(status, body)
    })
    .await?;
    let acknowledged = (request.acknowledges.as_ref())
        .zip(answer.status)
        .and_then(|(ack, status)| ack.id_in(status, &answer.body));
    if let Some(id) = acknowledged {
        ctx.recorder.acknowledge_id(id);
    }
    Ok(answer)
}

/// What a request answered, once classified and recorded.
struct Answer {
    outcome: RequestOutcome,
    /// The HTTP status, when an answer came.
    status: Option<u16>,
    body: Vec<u8>,
    /// When it was due, left and ended.
    timing: RequestTiming,
}

/// Sends `request`, reads the whole answer, classifies it with `classify(status, body)`, records it
/// and makes goose's success/failure agree. Fails only when goose refuses to send (the run is over).
async fn send(
    user: &mut GooseUser,
    ctx: &Ctx,
    group: Group,
    request: GooseRequest<'_>,
    classify: impl Fn(u16, &[u8]) -> RequestOutcome,
) -> Result<Answer, Box<TransactionError>> {
    let Some(slot) = ctx.arrivals.take_slot(&ctx.end).await else {
        return Err(Box::new(TransactionError::Custom("the schedule closed".into())));
    };
    if slot.n == 0 {
        ctx.recorder.schedule(slot.due, ctx.arrivals.rate());
    }
    // A user's first request: free from when it came for its slot.
    let free = ctx.free_since(user.weighted_users_index).unwrap_or(slot.claimed);
    let sending = ctx.recorder.sending(slot.due, free);
    let mut goose = user.request(request).await?;
    let mut answered = None;
    let (outcome, body, problem) = match goose.response {
        Ok(response) => {
            let status = response.status().as_u16();
            answered = Some(status);
            let request_id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match response.bytes().await {
                Ok(body) => {
                    let outcome = classify(status, &body);
                    if status >= 400 && !matches!(outcome, RequestOutcome::Ok | RequestOutcome::Expected) {
                        let code = error_code_of(&body);
                        ctx.recorder
                            .error_answer(status, code.as_deref(), request_id.as_deref());
                    }
                    (outcome, body.to_vec(), "unexpected answer")
                }
                Err(_) => (RequestOutcome::Error, Vec::new(), "body not read"),
            }
        }
        Err(_) => (RequestOutcome::Error, Vec::new(), "no answer"),
    };
    let timing = sending.done(group, outcome);
    ctx.note(timing.sent, timing.completed);
    ctx.freed(user.weighted_users_index, timing.completed);
    match outcome {
        RequestOutcome::Ok | RequestOutcome::Expected if !goose.request.success => {
            user.set_success(&mut goose.request)?
        }
        RequestOutcome::Error if goose.request.success => {
            // `set_failure` answers an error meant to end the transaction; the user carries on instead.
            let _ = user.set_failure(problem, &mut goose.request, None, None);
        }
        _ => {}
    }
    Ok(Answer {
        outcome,
        status: answered,
        body,
        timing,
    })
}

fn ok_if_200(status: u16, _body: &[u8]) -> RequestOutcome {
    if status == 200 {
        RequestOutcome::Ok
    } else {
        RequestOutcome::Error
    }
}

/// The `error.code` of a JSON error body (`{"error": {"code": "sold_out", ...}}`).
fn error_code_of(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value["error"]["code"].as_str().map(str::to_owned)
}

/// What a login answered: a bearer token, or a session (whose cookie came with the answer).
fn session_of(body: &[u8]) -> Option<Session> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if let Some(token) = value["token"].as_str() {
        return Some(Session::Bearer(token.to_owned()));
    }
    value["session"].as_str().map(|_| Session::Cookie)
}

/// A logged-in user's request answered as if the user had never logged in: any 401, however the
/// service words it (`session_unknown`, `invalid_token`, `missing_token`...). The user sent the session
/// it was given; a service that no longer takes it has logged the user out.
fn logged_out(status: u16) -> bool {
    status == 401
}

fn order_id_of(body: &[u8]) -> Option<i64> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value["id"].as_i64()
}

fn login_outcome(status: u16, body: &[u8]) -> RequestOutcome {
    if status == 200 && session_of(body).is_some() {
        RequestOutcome::Ok
    } else {
        RequestOutcome::Error
    }
}

/// 200 for a logged-in user's read; a 401 for its session is a logout.
fn history_outcome(status: u16, _body: &[u8]) -> RequestOutcome {
    match status {
        200 => RequestOutcome::Ok,
        _ if logged_out(status) => RequestOutcome::LoggedOut,
        _ => RequestOutcome::Error,
    }
}

/// 201 with an order id, or 409 `sold_out`; a 401 for the session is a logout; anything else is an
/// error.
fn checkout_outcome(status: u16, body: &[u8]) -> RequestOutcome {
    match status {
        201 if order_id_of(body).is_some() => RequestOutcome::Ok,
        409 if serde_json::from_slice::<Value>(body).is_ok_and(|v| v["error"]["code"] == "sold_out") => {
            RequestOutcome::Expected
        }
        _ if logged_out(status) => RequestOutcome::LoggedOut,
        _ => RequestOutcome::Error,
    }
}

fn random_product(ctx: &Ctx) -> u32 {
    rand::rng().random_range(1..=ctx.products.max(1))
}

fn get<'a>(path: &'a str, name: &'static str) -> GooseRequest<'a> {
    GooseRequest::builder().path(path).name(name).build()
}

/// The user's session, logging in first if it has none. `None` when the login failed (recorded).
async fn ensure_session(user: &mut GooseUser, ctx: &Ctx) -> Result<Option<Session>, Box<TransactionError>> {
    if let Some(session) = user.get_session_data::<Session>() {
        return Ok(Some(session.clone()));
    }
    let n = user.weighted_users_index % ctx.shoppers.max(1) as usize + 1;
    if let Some(token) = ctx.sessions.token(n) {
        let session = Session::Bearer(token);
        user.set_session_data(session.clone());
        return Ok(Some(session));
    }
    let body = json!({ "email": format!("user{n}@fortress.test"), "password": SEED_PASSWORD });
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/auth/login")?
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/auth/login")
        .name("POST /auth/login")
        .set_request_builder(builder)
        .build();
    let answer = send(user, ctx, Group::Login, request, login_outcome).await?;
    let session = session_of(&answer.body);
    if let Some(session) = &session {
        if let Session::Bearer(token) = session {
            ctx.sessions.keep(n, token);
        }
        user.set_session_data(session.clone());
    }
    Ok(session)
}

async fn browse(user: &mut GooseUser, ctx: &Ctx) -> TransactionResult {
    let list = get("/products?limit=20", "GET /products");
    send(user, ctx, Group::Browse, list, ok_if_200).await?;
    let path = format!("/products/{}", random_product(ctx));
    send(
        user,
        ctx,
        Group::Browse,
        get(&path, "GET /products/{id}"),
        ok_if_200,
    )
    .await?;
    Ok(())
}

async fn availability(user: &mut GooseUser, ctx: &Ctx) -> TransactionResult {
    let path = format!("/products/{}/availability", random_product(ctx));
    let request = get(&path, "GET /products/{id}/availability");
    send(user, ctx, Group::Availability, request, ok_if_200).await?;
    Ok(())
}

async fn checkout(user: &mut GooseUser, ctx: &Ctx) -> TransactionResult {
    let Some(session) = ensure_session(user, ctx).await? else {
        return Ok(());
    };
    let body = json!({ "product_id": random_product(ctx), "quantity": 1 });
    let mut builder = user.get_request_builder(&GooseMethod::Post, "/orders")?;
    if let Session::Bearer(token) = &session {
        builder = builder.bearer_auth(token);
    }
    let builder = builder
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/orders")
        .name("POST /orders")
        .set_request_builder(builder)
        .build();
    let answer = send(user, ctx, Group::Checkout, request, checkout_outcome).await?;
    if answer.outcome == RequestOutcome::Ok
        && let Some(id) = order_id_of(&answer.body)
    {
        ctx.recorder.acknowledge(id, &answer.timing);
    }
    Ok(())
}

async fn history(user: &mut GooseUser, ctx: &Ctx) -> TransactionResult {
    let Some(session) = ensure_session(user, ctx).await? else {
        return Ok(());
    };
    let mut builder = user.get_request_builder(&GooseMethod::Get, "/users/me/orders")?;
    if let Session::Bearer(token) = &session {
        builder = builder.bearer_auth(token);
    }
    let request = GooseRequest::builder()
        .path("/users/me/orders")
        .name("GET /users/me/orders")
        .set_request_builder(builder)
        .build();
    send(user, ctx, Group::History, request, history_outcome).await?;
    Ok(())
}

/// The wrong password every probe sends.
const PROBE_PASSWORD: &str = "not-the-password";

/// 401 `invalid_credentials`: the answer a wrong password should get.
fn probe_outcome(status: u16, body: &[u8]) -> RequestOutcome {
    let refused =
        serde_json::from_slice::<Value>(body).is_ok_and(|v| v["error"]["code"] == "invalid_credentials");
    if status == 401 && refused {
        RequestOutcome::Expected
    } else {
        RequestOutcome::Error
    }
}

/// One wrong-password login for `email`, filed under `group`: when it was answered as a wrong
/// password should be, its timing.
async fn probe(
    user: &mut GooseUser,
    ctx: &Ctx,
    group: Group,
    email: String,
) -> Result<Option<RequestTiming>, Box<TransactionError>> {
    let body = json!({ "email": email, "password": PROBE_PASSWORD });
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/auth/login")?
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/auth/login")
        .name(group.name())
        .set_request_builder(builder)
        .build();
    let answer = send(user, ctx, group, request, probe_outcome).await?;
    Ok((answer.outcome == RequestOutcome::Expected).then_some(answer.timing))
}

/// The timing attacker: a wrong password for a seeded email and for one nobody has, one right after
/// the other, in an order drawn at random for every pair. So whatever slows the machine for a moment
/// slows both kinds alike, neither kind is more often the first of a pair, and the pair is filed as
/// one: the rank test compares the two answers of each pair (`experiment::timing`).
async fn login_probe(user: &mut GooseUser, ctx: &Ctx) -> TransactionResult {
    let (n, known_first) = {
        let mut rng = rand::rng();
        (rng.random_range(1..=ctx.shoppers.max(1)), rng.random_bool(0.5))
    };
    let known = (Group::ProbeKnown, format!("user{n}@fortress.test"));
    let unknown = (Group::ProbeUnknown, format!("nobody{n}@fortress.test"));
    let (first, second) = if known_first {
        (known, unknown)
    } else {
        (unknown, known)
    };
    let first = probe(user, ctx, first.0, first.1).await?;
    let second = probe(user, ctx, second.0, second.1).await?;
    if let (Some(first), Some(second)) = (first, second) {
        let (known, unknown) = if known_first {
            (first, second)
        } else {
            (second, first)
        };
        ctx.recorder.probe_pair(&known, &unknown);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_answers_are_classified() {
        assert_eq!(
            checkout_outcome(201, br#"{"id":12,"user_id":1}"#),
            RequestOutcome::Ok
        );
        assert_eq!(checkout_outcome(201, b"{}"), RequestOutcome::Error);
        let sold_out = br#"{"error":{"code":"sold_out","message":"gone"}}"#;
        assert_eq!(checkout_outcome(409, sold_out), RequestOutcome::Expected);
        let other = br#"{"error":{"code":"conflict","message":"?"}}"#;
        assert_eq!(checkout_outcome(409, other), RequestOutcome::Error);
        assert_eq!(checkout_outcome(503, b""), RequestOutcome::Error);
        let unknown = br#"{"error":{"code":"session_unknown","message":"log in again"}}"#;
        assert_eq!(checkout_outcome(401, unknown), RequestOutcome::LoggedOut);
        assert_eq!(history_outcome(401, unknown), RequestOutcome::LoggedOut);
        // However the service words it: the session the user sent is no longer taken.
        let missing = br#"{"error":{"code":"missing_token","message":"log in"}}"#;
        assert_eq!(history_outcome(401, missing), RequestOutcome::LoggedOut);
        assert_eq!(checkout_outcome(401, b""), RequestOutcome::LoggedOut);
        assert_eq!(
            login_outcome(200, br#"{"session":"s","user_id":1}"#),
            RequestOutcome::Ok
        );
        assert_eq!(
            login_outcome(200, br#"{"token":"t","user_id":1}"#),
            RequestOutcome::Ok
        );
        assert_eq!(login_outcome(401, b"{}"), RequestOutcome::Error);
        assert_eq!(ok_if_200(404, b""), RequestOutcome::Error);
        let refused = br#"{"error":{"code":"invalid_credentials","message":"wrong email or password"}}"#;
        assert_eq!(probe_outcome(401, refused), RequestOutcome::Expected);
        assert_eq!(probe_outcome(200, br#"{"token":"t"}"#), RequestOutcome::Error);
    }

    /// Whether `task` is still waiting after the runtime has had every chance to run it.
    async fn still_waiting(task: &tokio::task::JoinHandle<()>) -> bool {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        !task.is_finished()
    }

    #[tokio::test]
    async fn a_crowd_goes_on_when_its_last_user_arrives_or_the_schedule_closes() {
        let (crowd, end) = (Arc::new(Crowd::new(3)), CancellationToken::new());
        let gather = |user: usize| {
            let (crowd, end) = (Arc::clone(&crowd), end.clone());
            tokio::spawn(async move { crowd.gather(user, &end).await })
        };
        let (first, second) = (gather(0), gather(1));
        // The same user again (its next request) does not complete the crowd.
        let again = gather(1);
        for task in [&first, &second, &again] {
            assert!(
                still_waiting(task).await,
                "two of three users are here: nobody goes on"
            );
        }
        gather(2).await.unwrap();
        for task in [first, second, again] {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .unwrap()
                .unwrap();
        }
        // Once complete, a user's next request goes on at once.
        crowd.gather(0, &end).await;
        let (lonely, end) = (Arc::new(Crowd::new(2)), CancellationToken::new());
        let waiting = {
            let end = end.clone();
            tokio::spawn(async move { lonely.gather(0, &end).await })
        };
        assert!(still_waiting(&waiting).await);
        end.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
