//! Logging in, and the extractors that say who is asking: a shopper (a JWT, or a session cookie, as the
//! `sessions` mode says) or an operator (admin token).

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::auth;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::modes::Sessions;
use crate::sessions;

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// `POST /auth/login`: `{"token"}` to send as a bearer token (`sessions = jwt`), or `{"session"}` and
/// the same id in a `fortress_session` cookie (`sessions = redis | memory`).
pub async fn login(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
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
    let modes = state.modes.current();
    let user_id = auth::login(
        &state.db,
        &state.password_checks,
        &request.email,
        &request.password,
        modes.login_timing,
    )
    .await?;
    if modes.sessions == Sessions::Jwt {
        let token = state.tokens.issue(user_id)?;
        return Ok(Json(json!({ "token": token, "user_id": user_id })).into_response());
    }
    let id = state.sessions.create(modes.sessions, user_id).await?;
    let cookie = format!("{}={id}; Path=/; HttpOnly; SameSite=Lax", sessions::COOKIE);
    Ok((
        [(SET_COOKIE, cookie)],
        Json(json!({ "session": id, "user_id": user_id })),
    )
        .into_response())
}

/// `POST /auth/logout`: the bearer token goes on the revocation list, or the session cookie's session
/// ends. 204 either way.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = bearer(&headers)? {
        let token = state.tokens.verify_token(token)?;
        state.sessions.revoke(&token).await?;
    } else if let Some(id) = session_cookie(&headers) {
        state.sessions.end(state.modes.current().sessions, id).await?;
    } else {
        return Err(ApiError::unauthorized(
            "missing_token",
            "send the token or the session cookie to log out",
        ));
    }
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// The session id of the `fortress_session` cookie, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == sessions::COOKIE)
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty())
}

/// The bearer token of the `Authorization` header, if there is one.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
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

/// A logged-in shopper: the user id from a valid JWT or a known session.
#[derive(Debug, Clone, Copy)]
pub struct Shopper(pub i64);

impl FromRequestParts<AppState> for Shopper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let modes = state.modes.current();
        if let Some(token) = bearer(&parts.headers)? {
            let token = state.tokens.verify_token(token)?;
            state.sessions.check_revocation(&token, modes.revocation).await?;
            return Ok(Shopper(token.user_id));
        }
        let Some(id) = session_cookie(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "missing_token",
                "log in at /auth/login and send `Authorization: Bearer <token>` or its session cookie",
            ));
        };
        state.sessions.find(modes.sessions, id).await.map(Shopper)
    }
}

/// An operator holding the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)?.ok_or_else(|| {
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
