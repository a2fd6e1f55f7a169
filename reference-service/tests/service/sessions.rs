//! Each session mode, with two replicas of the service on one Postgres and one Redis: who can check a
//! session, and what a request whose session cannot be checked gets (a 401 saying why, never a 500).

use std::time::Duration;

use reference_service::seed::{SEED_PASSWORD, SeedPlan};
use serde_json::{Value, json};

use crate::lab::{Lab, Reply, Service, wait_until};

/// Logs user 1 in on `service`; answers the login's body and its `Set-Cookie` header.
async fn login(service: &Service) -> (Value, Option<String>) {
    let response = service
        .http
        .post(service.url("/auth/login"))
        .json(&json!({ "email": "user1@fortress.test", "password": SEED_PASSWORD }))
        .send()
        .await
        .expect("POST /auth/login");
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.json().await.unwrap(), cookie)
}

/// The order history, asked with a session cookie.
async fn history_with_cookie(service: &Service, session: &str) -> Reply {
    let response = service
        .http
        .get(service.url("/users/me/orders"))
        .header("Cookie", format!("theme=dark; fortress_session={session}"))
        .send()
        .await
        .expect("GET /users/me/orders");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn two_replicas(lab: &Lab, sessions: &str) -> (Service, Service) {
    let a = lab.service(|_| {}).await;
    let b = lab.service(|_| {}).await;
    a.seed(SeedPlan {
        products: 2,
        users: 1,
        stock: 10,
        orders_per_user: 1,
        seed: 3,
        ..SeedPlan::default()
    })
    .await;
    for service in [&a, &b] {
        service.set_modes(json!({ "sessions": sessions })).await;
    }
    (a, b)
}

fn code(reply: &Reply) -> &str {
    reply.1["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_jwt_is_checked_by_any_replica() {
    let lab = Lab::start().await;
    let (a, b) = two_replicas(&lab, "jwt").await;
    let (body, cookie) = login(&a).await;
    assert!(cookie.is_none(), "jwt sessions set no cookie");
    let token = body["token"].as_str().expect("a token");
    assert_eq!(b.get_as(token, "/users/me/orders").await.0, 200);
    let forged = b.get_as("not.a.token", "/users/me/orders").await;
    assert_eq!((forged.0, code(&forged)), (401, "invalid_token"), "{forged:?}");
    // A session cookie means nothing in jwt mode.
    let stray = history_with_cookie(&b, "0123456789abcdef").await;
    assert_eq!((stray.0, code(&stray)), (401, "session_unknown"), "{stray:?}");
}

#[tokio::test]
async fn a_session_in_memory_is_known_only_to_the_replica_that_made_it() {
    let lab = Lab::start().await;
    let (a, b) = two_replicas(&lab, "memory").await;
    let (body, cookie) = login(&a).await;
    let session = body["session"].as_str().expect("a session id");
    let cookie = cookie.expect("a session cookie");
    assert!(
        cookie.starts_with(&format!("fortress_session={session};")) && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert_eq!(history_with_cookie(&a, session).await.0, 200);
    let elsewhere = history_with_cookie(&b, session).await;
    assert_eq!(
        (elsewhere.0, code(&elsewhere)),
        (401, "session_unknown"),
        "{elsewhere:?}"
    );
    let guessed = history_with_cookie(&a, "not-a-session").await;
    assert_eq!(
        (guessed.0, code(&guessed)),
        (401, "session_unknown"),
        "{guessed:?}"
    );
}

#[tokio::test]
async fn a_session_in_redis_is_known_to_every_replica_until_redis_goes_down() {
    let lab = Lab::start().await;
    let (a, b) = two_replicas(&lab, "redis").await;
    let (body, cookie) = login(&a).await;
    let session = body["session"].as_str().expect("a session id").to_owned();
    assert!(cookie.is_some(), "a session cookie");
    assert_eq!(history_with_cookie(&b, &session).await.0, 200);

    lab.redis.stop().await.expect("stop redis");
    wait_until(
        "a lookup says the store is unavailable",
        Duration::from_secs(10),
        || async {
            let reply = history_with_cookie(&b, &session).await;
            assert!(reply.0 < 500, "never a 5xx for a session lookup: {reply:?}");
            reply.0 == 401 && code(&reply) == "session_store_unavailable"
        },
    )
    .await;
    let refused = a
        .http
        .post(a.url("/auth/login"))
        .json(&json!({ "email": "user1@fortress.test", "password": SEED_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        503,
        "a login whose session cannot be stored is a 503"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_store_unavailable", "{body}");
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_a_dead_store_fails_open_or_closed_as_asked() {
    let lab = Lab::start().await;
    let (a, b) = two_replicas(&lab, "jwt").await;
    for service in [&a, &b] {
        service.set_modes(json!({ "revocation": "fail_open" })).await;
    }
    let (body, _) = login(&a).await;
    let revoked = body["token"].as_str().expect("a token").to_owned();
    let (body, _) = login(&a).await;
    let kept = body["token"].as_str().expect("a token").to_owned();
    // Never checked before Redis goes: no remembered answer to lean on.
    let (body, _) = login(&a).await;
    let fresh = body["token"].as_str().expect("a token").to_owned();
    let logout = a
        .http
        .post(a.url("/auth/logout"))
        .bearer_auth(&revoked)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let refused = b.get_as(&revoked, "/users/me/orders").await;
    assert_eq!((refused.0, code(&refused)), (401, "token_revoked"), "{refused:?}");
    assert_eq!(b.get_as(&kept, "/users/me/orders").await.0, 200);

    lab.redis.stop().await.expect("stop redis");
    // Fail open: a token that was never revoked still works (and Redis is asked again each time, as
    // an unanswered check is not remembered).
    for _ in 0..5 {
        let reply = b.get_as(&fresh, "/users/me/orders").await;
        assert_eq!(reply.0, 200, "fail open with Redis down: {reply:?}");
    }
    // Fail closed: the same token is refused while the list cannot be read.
    b.set_modes(json!({ "revocation": "fail_closed" })).await;
    let reply = b.get_as(&fresh, "/users/me/orders").await;
    assert_eq!(
        (reply.0, code(&reply)),
        (401, "session_store_unavailable"),
        "{reply:?}"
    );
}
