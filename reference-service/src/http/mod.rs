//! The HTTP face of the service: routes, and the layers every request passes through.
//!
//! Outside in: a request id is taken from `x-request-id` or generated, a tracing span carrying it wraps
//! the request (so every log line names it), the id is echoed on the response, a panic becomes a JSON
//! 500 instead of a dropped connection, and each matched route is counted and timed for `/metrics`.

mod admin;
mod catalog;
mod health;
mod observability;
mod orders;
mod session;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::ApiError;

pub use observability::REQUEST_ID;

/// Request bodies larger than this get a 413: no route here needs more than a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route of the service, with its layers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/auth/login", post(session::login))
        .route("/auth/logout", post(session::logout))
        .route("/products", get(catalog::list_products))
        .route("/products/{id}", get(catalog::get_product))
        .route("/products/{id}/availability", get(catalog::availability))
        .route("/orders", post(orders::checkout))
        .route("/orders/{id}", get(orders::get_order))
        .route("/users/me/orders", get(orders::history))
        .route("/admin/modes", get(admin::get_modes).put(admin::put_modes))
        .route("/admin/seed", post(admin::seed))
        .route("/admin/outbox/replay", post(admin::replay_dead_letters))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observability::record_metrics,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(observability::request_span))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(CatchPanicLayer::custom(observability::panic_response)),
        )
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this route does not accept that method".into(),
    }
}
