//! The proxy's control API: list the links, set or clear the faults of one. JSON in and out; a bad
//! request gets a 4xx that names what is allowed, and changes nothing.
//!
//! `GET /links`, `GET /links/{name}`: the links, their faults, and the evidence since the last change.
//! `PUT /links/{name}` with `{"faults":[{"kind":"latency","ms":20}, ...]}`: replaces the link's faults
//! (each may take a `fraction` of the connections: `{"kind":"reset","fraction":0.25}`);
//! answers the link as it is now and, as `previous`, the faults that ended with their evidence.
//! `DELETE /links/{name}`: clears the link's faults; answers like `PUT`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ScopedFault;
use super::link::{Link, LinkReport};
use super::network_fault::{FaultKind, FaultSet};

pub type Links = Arc<BTreeMap<String, Arc<Link>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFaults {
    pub faults: Vec<ScopedFault>,
}

/// A refused request: its status, a code, and a message that says what is allowed.
#[derive(Debug)]
pub struct ControlError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ControlError {
    ControlError {
        status,
        code,
        message: message.into(),
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

fn find<'a>(links: &'a Links, name: &str) -> Result<&'a Arc<Link>, ControlError> {
    links.get(name).ok_or_else(|| {
        let known: Vec<&str> = links.keys().map(String::as_str).collect();
        error(
            StatusCode::NOT_FOUND,
            "unknown_link",
            format!("no link named {name:?}; links: {}", known.join(", ")),
        )
    })
}

pub fn router(links: Links) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/links", get(list))
        .route("/links/{name}", get(show).put(set).delete(clear))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "routes: /links, /links/{name}",
            )
        })
        .with_state(links)
}

async fn list(State(links): State<Links>) -> Json<Vec<LinkReport>> {
    Json(links.values().map(|link| link.report()).collect())
}

async fn show(
    State(links): State<Links>,
    Path(name): Path<String>,
) -> Result<Json<LinkReport>, ControlError> {
    Ok(Json(find(&links, &name)?.report()))
}

async fn set(
    State(links): State<Links>,
    Path(name): Path<String>,
    body: Result<Json<SetFaults>, JsonRejection>,
) -> Result<Json<Value>, ControlError> {
    let link = find(&links, &name)?;
    let faults = match body {
        Ok(Json(request)) => request.faults,
        Err(JsonRejection::JsonSyntaxError(e)) => {
            return Err(error(StatusCode::BAD_REQUEST, "malformed_json", e.body_text()));
        }
        Err(rejection) => {
            let message = format!(
                "{}; expected {{\"faults\":[...]}} with kinds: {}",
                rejection.body_text(),
                FaultKind::usages()
            );
            return Err(error(rejection.status(), "invalid_faults", message));
        }
    };
    let set = FaultSet::from_list(&faults)
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_faults", e.to_string()))?;
    if !link.spec.http
        && let Some(http) = faults.iter().find(|f| f.kind().is_http())
    {
        let http_links: Vec<&str> = (links.values())
            .filter(|l| l.spec.http)
            .map(|l| l.spec.name.as_str())
            .collect();
        let message = format!(
            "{} is an HTTP fault and the {name} link carries raw TCP; HTTP links: {}",
            http.kind(),
            if http_links.is_empty() {
                "none".to_owned()
            } else {
                http_links.join(", ")
            }
        );
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_an_http_link",
            message,
        ));
    }
    Ok(apply(link, set))
}

async fn clear(State(links): State<Links>, Path(name): Path<String>) -> Result<Json<Value>, ControlError> {
    Ok(apply(find(&links, &name)?, FaultSet::default()))
}

fn apply(link: &Link, faults: FaultSet) -> Json<Value> {
    let previous = link.set_faults(faults);
    let now = link.report();
    tracing::info!(link = link.spec.name, faults = ?now.faults, "faults set");
    Json(json!({ "link": now, "previous": previous }))
}
