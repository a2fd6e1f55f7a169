//! Bad input, table-driven: every malformed request gets a 4xx with `{"error":{"code","message"}}`.

use reference_service::auth::TokenKeys;
use reference_service::seed::SeedPlan;
use reqwest::Method;
use serde_json::Value;

use crate::lab::{ADMIN_TOKEN, Lab, Service};

enum Auth {
    None,
    Shopper,
    Admin,
    Raw(&'static str),
    Token(String),
}

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    auth: Auth,
    content_type: Option<&'static str>,
    body: Option<String>,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, method: Method, path: &'static str, status: u16, code: &'static str) -> Case {
    Case {
        name,
        method,
        path,
        auth: Auth::None,
        content_type: None,
        body: None,
        status,
        code,
    }
}

impl Case {
    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    fn json(mut self, body: &str) -> Self {
        self.content_type = Some("application/json");
        self.body = Some(body.to_owned());
        self
    }
    fn body(mut self, content_type: &'static str, body: String) -> Self {
        self.content_type = Some(content_type);
        self.body = Some(body);
        self
    }
}

fn cases(expired: String, forged: String) -> Vec<Case> {
    use Method as M;
    let huge = format!(
        r#"{{"product_id":1,"quantity":1,"pad":"{}"}}"#,
        "x".repeat(100_000)
    );
    vec![
        case("malformed JSON", M::POST, "/orders", 400, "malformed_request")
            .auth(Auth::Shopper)
            .json(r#"{"product_id":1,"#),
        case("quantity as text", M::POST, "/orders", 422, "invalid_request")
            .auth(Auth::Shopper)
            .json(r#"{"product_id":1,"quantity":"two"}"#),
        case("quantity 0", M::POST, "/orders", 422, "invalid_quantity")
            .auth(Auth::Shopper)
            .json(r#"{"product_id":1,"quantity":0}"#),
        case("quantity -999", M::POST, "/orders", 422, "invalid_quantity")
            .auth(Auth::Shopper)
            .json(r#"{"product_id":1,"quantity":-999}"#),
        case("quantity 10^9", M::POST, "/orders", 422, "invalid_quantity")
            .auth(Auth::Shopper)
            .json(r#"{"product_id":1,"quantity":1000000000}"#),
        case("quantity 10^30", M::POST, "/orders", 422, "invalid_request")
            .auth(Auth::Shopper)
            .json(r#"{"product_id":1,"quantity":1e30}"#),
        case("missing field", M::POST, "/orders", 422, "invalid_request")
            .auth(Auth::Shopper)
            .json(r#"{"quantity":1}"#),
        case("unknown product", M::POST, "/orders", 404, "not_found")
            .auth(Auth::Shopper)
            .json(r#"{"product_id":999999,"quantity":1}"#),
        case(
            "size as an emoji",
            M::GET,
            "/products?size=%F0%9F%91%9F",
            422,
            "invalid_size",
        ),
        case(
            "limit out of range",
            M::GET,
            "/products?limit=100000",
            422,
            "invalid_limit",
        ),
        case(
            "limit not a number",
            M::GET,
            "/products?limit=ten",
            422,
            "invalid_request",
        ),
        case(
            "SQL injection in a query is inert",
            M::GET,
            "/products?size=42'%20OR%201=1--",
            422,
            "invalid_size",
        ),
        case("unknown product id", M::GET, "/products/424242", 404, "not_found"),
        case(
            "product id not a number",
            M::GET,
            "/products/abc",
            400,
            "malformed_request",
        ),
        case("unknown order id", M::GET, "/orders/424242", 404, "not_found").auth(Auth::Shopper),
        case("missing JWT", M::GET, "/users/me/orders", 401, "missing_token"),
        case(
            "not a bearer token",
            M::GET,
            "/users/me/orders",
            401,
            "invalid_token",
        )
        .auth(Auth::Raw("Basic dXNlcjpwYXNz")),
        case("expired JWT", M::GET, "/users/me/orders", 401, "token_expired").auth(Auth::Token(expired)),
        case("forged JWT", M::GET, "/users/me/orders", 401, "invalid_token").auth(Auth::Token(forged)),
        case("garbage JWT", M::GET, "/users/me/orders", 401, "invalid_token")
            .auth(Auth::Raw("Bearer not.a.jwt")),
        case(
            "no admin token",
            M::GET,
            "/admin/modes",
            401,
            "missing_admin_token",
        ),
        case("wrong admin token", M::GET, "/admin/modes", 403, "forbidden")
            .auth(Auth::Raw("Bearer wrong-admin-token")),
        case(
            "unknown mode value",
            M::PUT,
            "/admin/modes",
            422,
            "invalid_request",
        )
        .auth(Auth::Admin)
        .json(r#"{"locking":"optimistic"}"#),
        case(
            "race window out of range",
            M::PUT,
            "/admin/modes",
            422,
            "invalid_mode",
        )
        .auth(Auth::Admin)
        .json(r#"{"race_window_ms":999999}"#),
        case(
            "seed plan out of range",
            M::POST,
            "/admin/seed",
            422,
            "invalid_seed_plan",
        )
        .auth(Auth::Admin)
        .json(r#"{"products":0}"#),
        case("oversized body", M::POST, "/orders", 413, "payload_too_large")
            .auth(Auth::Shopper)
            .body("application/json", huge),
        case(
            "wrong content type",
            M::POST,
            "/orders",
            415,
            "unsupported_media_type",
        )
        .auth(Auth::Shopper)
        .body("text/plain", r#"{"product_id":1,"quantity":1}"#.into()),
        case(
            "SQL injection as a login is inert",
            M::POST,
            "/auth/login",
            401,
            "invalid_credentials",
        )
        .json(r#"{"email":"' OR '1'='1' --","password":"' OR '1'='1"}"#),
        case("empty email", M::POST, "/auth/login", 422, "invalid_email")
            .json(r#"{"email":"","password":"x"}"#),
        case("unknown route", M::GET, "/nope", 404, "not_found"),
        case("wrong method", M::DELETE, "/products", 405, "method_not_allowed"),
    ]
}

async fn send(service: &Service, case: &Case) -> (u16, Value) {
    let mut request = service.http.request(case.method.clone(), service.url(case.path));
    request = match &case.auth {
        Auth::None => request,
        Auth::Shopper => request.bearer_auth(service.token(1)),
        Auth::Admin => request.bearer_auth(ADMIN_TOKEN),
        Auth::Raw(value) => request.header("Authorization", *value),
        Auth::Token(token) => request.bearer_auth(token),
    };
    if let Some(content_type) = case.content_type {
        request = request.header("Content-Type", content_type);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn bad_requests_get_4xx_with_a_json_error_and_change_nothing() {
    let lab = Lab::start().await;
    let service = lab.service(|_| {}).await;
    service
        .seed(SeedPlan {
            products: 3,
            users: 2,
            stock: 5,
            orders_per_user: 1,
            seed: 2,
            ..SeedPlan::default()
        })
        .await;
    let stock_before = lab.scalar("SELECT sum(quantity)::bigint FROM inventory").await;
    let orders_before = lab.scalar("SELECT count(*) FROM orders").await;

    let expired = {
        // Same secret as the service, but a lifetime that ended before the token was checked.
        let config = reference_service::Config::for_urls(&lab.database_url, &lab.redis_url);
        let keys = TokenKeys::new(config.jwt_secret.as_bytes(), std::time::Duration::ZERO);
        let token = keys.issue(1).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        token
    };
    let forged = TokenKeys::new(b"an-attackers-own-secret", std::time::Duration::from_secs(600))
        .issue(1)
        .unwrap();

    let table = cases(expired, forged);
    // The table itself must say what the test's name promises: only 4xx answers, each case once.
    let mut names: Vec<&str> = table.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), table.len(), "two cases share a name");
    for case in &table {
        assert!(
            (400..500).contains(&case.status),
            "{} expects {}",
            case.name,
            case.status
        );
    }
    let mut failures = Vec::new();
    for case in &table {
        let (status, body) = send(&service, case).await;
        let code = body["error"]["code"].as_str();
        let message = body["error"]["message"].as_str();
        if status != case.status || code != Some(case.code) || message.is_none_or(str::is_empty) {
            failures.push(format!(
                "{}: expected {} {}, got {status} {body}",
                case.name, case.status, case.code
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );

    assert_eq!(
        lab.scalar("SELECT sum(quantity)::bigint FROM inventory").await,
        stock_before
    );
    assert_eq!(lab.scalar("SELECT count(*) FROM orders").await, orders_before);
    assert_eq!(
        lab.scalar("SELECT count(*) FROM users").await,
        2,
        "the injection strings changed nothing"
    );
    let errors = service
        .metric("fortress_http_requests_total{method=\"POST\",route=\"/orders\",status=\"500\"}")
        .await;
    assert_eq!(errors, 0.0);
}
