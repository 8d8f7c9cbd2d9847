//! The one place errors become HTTP responses: `{code, message}` JSON with a
//! status that matches the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidWorkflow(String),
    /// Well-formed input that does not make sense (names the field at fault).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A body larger than the route takes.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UriTooLong(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::InvalidWorkflow(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_workflow"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            ApiError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<crate::service::FireError> for ApiError {
    fn from(e: crate::service::FireError) -> ApiError {
        use crate::service::FireError as F;
        match e {
            F::Unknown(_) => ApiError::NotFound(e.to_string()),
            F::Invalid { .. } => ApiError::InvalidWorkflow(e.to_string()),
            F::ShuttingDown | F::StoreUnwritable(_) => ApiError::Unavailable(e.to_string()),
            F::Forbidden { .. } => ApiError::Conflict(e.to_string()),
            F::Store(e) => ApiError::Internal(e),
        }
    }
}

/// Numbers internal errors, so a client's report finds the log line.
static INTERNAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// SQLite's write lock held past its busy timeout (a burst of large
/// writes): the request can simply be sent again.
fn store_busy(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("database is locked") || text.contains("(code: 5)")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self
            && store_busy(e)
        {
            tracing::warn!("a request waited past the store's busy timeout: {e:#}");
            let mut res = ApiError::Unavailable(
                "the store is busy with other writes; send the request again in a moment".into(),
            )
            .into_response();
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            return res;
        }
        let (status, code) = self.status_and_code();
        let message = match &self {
            // What failed inside (a database's own words, a path) is for
            // the operator's log, never for the client.
            ApiError::Internal(e) => {
                let id = INTERNAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = id, "request failed: {e:#}");
                format!("internal error {id}; the daemon's log says what failed")
            }
            other => other.to_string(),
        };
        (
            status,
            axum::Json(serde_json::json!({ "code": code, "message": message })),
        )
            .into_response()
    }
}
