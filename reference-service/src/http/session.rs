//! Logging in, and the extractors that say who is asking: a shopper (JWT) or an operator (admin token).

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth;
use crate::error::ApiError;
use crate::extract::ApiJson;

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<Value>, ApiError> {
    if request.email.is_empty() || request.email.len() > 254 {
        return Err(ApiError::unprocessable(
            "invalid_email",
            "email must be 1 to 254 bytes long",
        ));
    }
    if request.password.is_empty() || request.password.len() > 1024 {
        return Err(ApiError::unprocessable(
            "invalid_password",
            "password must be 1 to 1024 bytes long",
        ));
    }
    let timing = state.modes.current().login_timing;
    let user_id = auth::login(&state.db, &request.email, &request.password, timing).await?;
    let token = state.tokens.issue(user_id)?;
    Ok(Json(json!({ "token": token, "user_id": user_id })))
}

/// The bearer token of the `Authorization` header, if there is one.
fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match value {
        Some(token) if !token.is_empty() => Ok(Some(token)),
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "expected `Authorization: Bearer <token>`",
        )),
    }
}

/// A logged-in shopper: the user id from a valid JWT.
#[derive(Debug, Clone, Copy)]
pub struct Shopper(pub i64);

impl FromRequestParts<AppState> for Shopper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?.ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "log in at /auth/login and send `Authorization: Bearer <token>`",
            )
        })?;
        state.tokens.verify(token).map(Shopper)
    }
}

/// An operator holding the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?.ok_or_else(|| {
            ApiError::unauthorized(
                "missing_admin_token",
                "send the admin token as `Authorization: Bearer <token>`",
            )
        })?;
        if state.is_admin_token(token) {
            Ok(Operator)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}
