//! The HTTP side of a target's judge, on its entry after the run: `[[invariants]]` with `http` (a
//! request whose answer must have one of the statuses, and the text), and the `[acknowledged]`
//! lookup of each acknowledged id by a GET of its own.

use std::time::Duration;

use futures::StreamExt;

use crate::experiment::definition::{HttpCheck, HttpLookup};
use crate::load::script::{Captured, Template, Values};

/// How long one request of a check or a lookup may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a lookup whose answer is neither found nor missing is asked.
const TRIES: u32 = 3;
/// How long between two of those tries.
const AGAIN_AFTER: Duration = Duration::from_millis(200);
/// Lookups in flight at once.
const AT_ONCE: usize = 8;

/// A lookup that could not tell whether the target has an id.
#[derive(Debug, thiserror::Error)]
#[error("GET {path} answered {last} {TRIES} times: neither found ({found:?}) nor missing ({missing:?})")]
pub struct Undetermined {
    path: String,
    last: String,
    found: Vec<u16>,
    missing: Vec<u16>,
}

/// A request with `path` and `headers` filled in from `captured`.
fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    entry: &str,
    (path, headers): (&Template, &[(String, Template)]),
    captured: &Captured,
) -> (String, reqwest::RequestBuilder) {
    let values = Values {
        user: 0,
        request: 0,
        captured,
    };
    let path = path.render(&values);
    let mut request = http.request(method, format!("{entry}{path}")).timeout(TIMEOUT);
    for (name, value) in headers {
        request = request.header(name, value.render(&values));
    }
    (path, request)
}

/// Sends the check once: whether its answer holds, and what it was.
pub(super) async fn check(http: &reqwest::Client, entry: &str, check: &HttpCheck) -> (bool, String) {
    let method = reqwest::Method::from_bytes(check.method.to_string().as_bytes()).unwrap_or_default();
    let parts = (&check.path, check.headers.as_slice());
    let (path, request) = request(http, method, entry, parts, &Captured::new());
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => {
            let cause = reference_service::error::cause_chain(&error);
            return (false, format!("{} {path}: no answer: {cause}", check.method));
        }
    };
    let status = answer.status().as_u16();
    let body = answer.text().await.unwrap_or_default();
    let status_held = check.status.contains(&status);
    let text_held = check.contains.as_deref().is_none_or(|text| body.contains(text));
    let mut detail = format!("{} {path} answered {status}", check.method);
    if !status_held {
        detail += &format!(", not one of {:?}", check.status);
    }
    if let (Some(text), false) = (&check.contains, text_held) {
        detail += &format!(", without {text:?}");
    }
    (status_held && text_held, detail)
}

/// The acknowledged ids the target answers as missing, in their order. An id it answers neither
/// way, three times, is an error: the run cannot say whether it was lost.
pub(super) async fn lost(
    http: &reqwest::Client,
    entry: &str,
    lookup: &HttpLookup,
    acknowledged: &[String],
) -> Result<Vec<String>, Undetermined> {
    let answers: Vec<_> = futures::stream::iter(acknowledged)
        .map(|id| async move { (id, has(http, entry, lookup, id).await) })
        .buffered(AT_ONCE)
        .collect()
        .await;
    let mut lost = Vec::new();
    for (id, has) in answers {
        if !has? {
            lost.push(id.clone());
        }
    }
    Ok(lost)
}

/// Whether the target has `id`: a found status, or a missing one, asked again after anything else.
async fn has(
    http: &reqwest::Client,
    entry: &str,
    lookup: &HttpLookup,
    id: &str,
) -> Result<bool, Undetermined> {
    let captured = Captured::from([("id".to_owned(), id.to_owned())]);
    let parts = (&lookup.path, lookup.headers.as_slice());
    let mut last = String::new();
    let mut path = String::new();
    for attempt in 0..TRIES {
        if attempt > 0 {
            tokio::time::sleep(AGAIN_AFTER).await;
        }
        let (sent, request) = request(http, reqwest::Method::GET, entry, parts, &captured);
        path = sent;
        match request.send().await {
            Ok(answer) if lookup.found.contains(&answer.status().as_u16()) => return Ok(true),
            Ok(answer) if lookup.missing.contains(&answer.status().as_u16()) => return Ok(false),
            Ok(answer) => last = format!("HTTP {}", answer.status()),
            Err(error) => last = reference_service::error::cause_chain(&error),
        }
    }
    Err(Undetermined {
        path,
        last,
        found: lookup.found.clone(),
        missing: lookup.missing.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::script::Method;

    /// A stand-in entry on 127.0.0.1: `/healthz` answers 200 "ok"; `/orders/{id}` answers 200 for
    /// ids starting with A, 404 for B, 500 for anything else.
    async fn entry() -> (String, tokio::task::JoinHandle<()>) {
        use axum::http::StatusCode;
        let order = |axum::extract::Path(id): axum::extract::Path<String>| async move {
            match id.chars().next() {
                Some('A') => StatusCode::OK,
                Some('B') => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            }
        };
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route("/orders/{id}", axum::routing::get(order));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, server)
    }

    fn check_of(path: &str, status: u16, contains: Option<&str>) -> HttpCheck {
        HttpCheck {
            method: Method::Get,
            path: Template::parse(path, &[]).unwrap(),
            headers: Vec::new(),
            status: vec![status],
            contains: contains.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn a_check_holds_on_its_status_and_text_and_says_what_it_saw_otherwise() {
        let (url, server) = entry().await;
        let http = reqwest::Client::new();
        assert_eq!(
            check(&http, &url, &check_of("/healthz", 200, Some("ok"))).await,
            (true, "GET /healthz answered 200".to_owned())
        );
        let (held, detail) = check(&http, &url, &check_of("/healthz", 200, Some("ready"))).await;
        assert!(!held && detail.ends_with("without \"ready\""), "{detail}");
        let (held, detail) = check(&http, &url, &check_of("/gone", 200, None)).await;
        assert!(
            !held && detail.contains("answered 404, not one of [200]"),
            "{detail}"
        );
        server.abort();
        let (held, detail) = check(&http, &url, &check_of("/healthz", 200, None)).await;
        assert!(!held && detail.contains("no answer"), "{detail}");
    }

    #[tokio::test]
    async fn a_lookup_finds_keeps_order_and_refuses_to_guess() {
        let (url, server) = entry().await;
        let http = reqwest::Client::new();
        let lookup = HttpLookup {
            path: Template::parse("/orders/{{id}}", &["id".to_owned()]).unwrap(),
            headers: Vec::new(),
            found: vec![200],
            missing: vec![404],
        };
        let ids: Vec<String> = ["A1", "B2", "A3", "B4"].map(str::to_owned).to_vec();
        assert_eq!(lost(&http, &url, &lookup, &ids).await.unwrap(), ["B2", "B4"]);
        let unknown = lost(&http, &url, &lookup, &["C5".to_owned()]).await.unwrap_err();
        assert!(
            unknown.to_string().contains("GET /orders/C5 answered HTTP 500"),
            "{unknown}"
        );
        server.abort();
    }
}
