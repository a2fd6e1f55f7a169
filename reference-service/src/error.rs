//! The one error type handlers return, and how it looks to a client.
//!
//! Clients get `{"error":{"code","message"}}` with a status that says whose fault it was; a server-side
//! failure shows only a safe message, while its full cause chain goes to the log with the request id.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::payments::{PaymentError, RETRY_AFTER_S};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    #[error("the admin token is wrong")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("sold out: {requested} requested, {available} left")]
    SoldOut { requested: i32, available: i32 },
    #[error("this Idempotency-Key was already used for a different order")]
    IdempotencyConflict,
    #[error("{message}")]
    Rejected {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// A checkout that sends its confirmation inline could not: the order was not placed.
    #[error("the confirmation email could not be sent, so the order was not placed; try again")]
    EmailUnavailable(#[source] crate::mail::MailError),
    /// The payment provider refused the payment: the order was not placed.
    #[error("the payment was declined; the order was not placed")]
    PaymentDeclined(#[source] PaymentError),
    /// The payment could not be authorised now (the provider failed, was slow, or is being spared):
    /// the order was not placed, and the client may try again after `Retry-After`.
    #[error("the payment could not be taken right now, so the order was not placed; try again shortly")]
    PaymentUnavailable(#[source] PaymentError),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            message: message.into(),
        }
    }

    /// Classifies a database error: a pool that cannot hand out a connection, or a server that went
    /// away, means Postgres is unavailable (503), anything else is a bug or a broken invariant (500).
    pub fn from_db(error: sqlx::Error) -> Self {
        let unavailable = match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE class 08 (connection exception) and 57 (operator intervention: the server is
            // shutting down and ends this connection) mean Postgres is going away, not a bug here.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
            _ => false,
        };
        if unavailable {
            Self::DatabaseUnavailable(error)
        } else {
            Self::Database(error)
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::SoldOut { .. } => (StatusCode::CONFLICT, "sold_out"),
            Self::IdempotencyConflict => (StatusCode::CONFLICT, "idempotency_conflict"),
            Self::Rejected { status, code, .. } => (*status, code),
            Self::DatabaseUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Self::EmailUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "email_unavailable"),
            Self::PaymentDeclined(_) => (StatusCode::PAYMENT_REQUIRED, "payment_declined"),
            Self::PaymentUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "payment_unavailable"),
            Self::Database(_) | Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::from_db(error)
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Declined { .. } => Self::PaymentDeclined(error),
            other => Self::PaymentUnavailable(other),
        }
    }
}

/// Renders the full `source()` chain of an error on one line, for the log. A cause whose text the
/// line already ends with is left out: some errors (sqlx's among them) print their source in their
/// own message, and the chain would say it twice.
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !chain.ends_with(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %cause_chain(&self), code, "request failed");
        }
        let message = match &self {
            // Never show a client the internals of a server-side failure.
            Self::Database(_) | Self::Internal(_) => {
                "something went wrong on our side; it has been logged".into()
            }
            other => other.to_string(),
        };
        let body = Json(json!({ "error": { "code": code, "message": message } }));
        match &self {
            // When to come back: the provider is being given time to recover.
            Self::PaymentUnavailable(_) => {
                let retry_after = [(RETRY_AFTER, RETRY_AFTER_S.to_string())];
                (status, retry_after, body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn server_errors_hide_their_cause() {
        let (status, body) = body_of(ApiError::Internal("secret detail".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        let text = body.to_string();
        assert!(!text.contains("secret"), "the cause reached the client: {text}");
        assert!(text.contains("something went wrong on our side"), "{text}");

        let (status, body) = body_of(ApiError::Database(sqlx::Error::RowNotFound)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("no rows"), "{body}");
    }

    #[test]
    fn a_cause_is_said_once_even_when_its_parent_prints_it_too() {
        #[derive(Debug, thiserror::Error)]
        #[error("column \"qty\" does not exist")]
        struct Missing;
        #[derive(Debug, thiserror::Error)]
        #[error("error returned from database: {0}")]
        struct Returned(#[source] Missing);
        #[derive(Debug, thiserror::Error)]
        #[error("database error")]
        struct Outer(#[source] Returned);
        assert_eq!(
            cause_chain(&Outer(Returned(Missing))),
            "database error: error returned from database: column \"qty\" does not exist"
        );
    }

    #[test]
    fn pool_timeouts_are_unavailability_not_bugs() {
        let (status, code) = ApiError::from_db(sqlx::Error::PoolTimedOut).status_and_code();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code, "database_unavailable");
    }
}
