//! Buying and looking back: checkout, one order, and the order history.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::REQUEST_ID;
use super::session::Shopper;
use crate::app::AppState;
use crate::catalog::{self, Availability};
use crate::checkout::{self, Checkout, Dependencies, MAX_QUANTITY, Order, Placed};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::modes::{Modes, Payments};
use crate::order_history;

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    product_id: i64,
    /// Wide on purpose: 10^12 is a 422 that names the allowed range, not a JSON type error.
    quantity: i64,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::unprocessable(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )
    };
    let key = value.to_str().map_err(|_| invalid())?;
    let visible = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !visible {
        return Err(invalid());
    }
    Ok(Some(key.to_owned()))
}

/// `POST /orders`: 201 with the order; the same order (201, `idempotent-replayed: true`) for a repeated
/// `Idempotency-Key`; 409 `sold_out` when the stock cannot cover it.
pub async fn checkout(
    State(state): State<AppState>,
    Shopper(user_id): Shopper,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CheckoutRequest>,
) -> Result<Response, ApiError> {
    let quantity = i32::try_from(request.quantity)
        .ok()
        .filter(|q| (1..=MAX_QUANTITY).contains(q))
        .ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_quantity",
                format!(
                    "quantity must be between 1 and {MAX_QUANTITY} (got {})",
                    request.quantity
                ),
            )
        })?;
    if request.product_id < 1 {
        return Err(ApiError::NotFound("product"));
    }
    let checkout = Checkout {
        user_id,
        product_id: request.product_id,
        quantity,
        idempotency_key: idempotency_key(&headers)?,
        request_id: headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let modes = state.modes.current();
    let placed = match modes.payments {
        Payments::Guarded if state.payments.is_some() => {
            placed_even_if_abandoned(&state, modes, checkout).await
        }
        Payments::Guarded | Payments::Naive => place(&state, &modes, &checkout).await,
    };
    let result = match &placed {
        Ok(Placed::Created { .. }) => "created",
        Ok(Placed::Replayed(_)) => "replayed",
        Err(ApiError::SoldOut { .. }) => "sold_out",
        Err(_) => "failed",
    };
    state.metrics.orders.with_label_values(&[result]).inc();
    match placed? {
        Placed::Created { order, remaining } => {
            let fresh = Availability {
                product_id: order.product_id,
                available: remaining,
            };
            state
                .cache
                .refresh(&modes, &catalog::availability_key(order.product_id), &fresh)
                .await;
            Ok((StatusCode::CREATED, Json(order)).into_response())
        }
        Placed::Replayed(order) => {
            let replayed = [(IDEMPOTENT_REPLAYED.clone(), HeaderValue::from_static("true"))];
            Ok((StatusCode::CREATED, replayed, Json(order)).into_response())
        }
    }
}

async fn place(state: &AppState, modes: &Modes, checkout: &Checkout) -> Result<Placed, ApiError> {
    let outside = Dependencies {
        mailer: state.mailer.as_ref(),
        payments: state.payments.as_ref(),
    };
    checkout::place_order(&state.db, modes, outside, checkout).await
}

/// The guarded checkout runs to its end on its own task: once the provider is asked, the money must
/// end in an order or a release. Run in the request's own future, a client that gives up (a timeout, a
/// closed tab) drops it between the authorisation and the order, and the authorisation stands for
/// nothing (found by `fortress capacity slow-payments`: 194 in one search). The naive checkout keeps
/// the request's future: that is the code people write.
async fn placed_even_if_abandoned(
    state: &AppState,
    modes: Modes,
    checkout: Checkout,
) -> Result<Placed, ApiError> {
    let state = state.clone();
    let in_flight = state.metrics.count_payment_in_flight();
    let task = tokio::spawn(async move {
        let _counted = in_flight;
        place(&state, &modes, &checkout).await
    });
    task.await
        .unwrap_or_else(|error| Err(ApiError::Internal(format!("the checkout's task ended: {error}"))))
}

pub async fn get_order(
    State(state): State<AppState>,
    Shopper(user_id): Shopper,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Order>, ApiError> {
    checkout::get_order(&state.db, user_id, id).await.map(Json)
}

/// `GET /users/me/orders`: the shopper's latest orders with their products (the N+1 showcase).
pub async fn history(
    State(state): State<AppState>,
    Shopper(user_id): Shopper,
) -> Result<Json<serde_json::Value>, ApiError> {
    let modes = state.modes.current();
    let orders = order_history::order_history(&state.db, &modes, &state.history_bulkhead, user_id).await?;
    Ok(Json(json!({ "orders": orders })))
}
