//! Extractors that turn every malformed request into a 4xx with the JSON error body.
//!
//! axum's own rejections carry the right status (400 bad JSON, 415 wrong content type, 413 too large,
//! 422 wrong shape) but answer in plain text; these wrappers keep the status and speak our error format.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

fn rejected(status: StatusCode, body: String) -> ApiError {
    let code = match status {
        StatusCode::BAD_REQUEST => "malformed_request",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        _ => "bad_request",
    };
    ApiError::Rejected {
        status,
        code,
        message: body,
    }
}

/// A JSON body (`Content-Type: application/json`), deserialized or rejected in our error format.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection @ JsonRejection::JsonSyntaxError(_)) => {
                Err(rejected(StatusCode::BAD_REQUEST, rejection.body_text()))
            }
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}

/// Path parameters; a value of the wrong type (`/products/abc`) is a 400, not a 500.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection @ PathRejection::FailedToDeserializePathParams(_)) => {
                Err(rejected(StatusCode::BAD_REQUEST, rejection.body_text()))
            }
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}

/// Query-string parameters, rejected as 422 in our error format when they do not fit.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(rejected(StatusCode::UNPROCESSABLE_ENTITY, rejection.body_text()))
            }
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}
