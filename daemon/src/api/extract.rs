//! Extractors whose rejections are [`ApiError`]s, so a malformed body, path
//! or query gets the same `{code, message}` answer as every other error.

use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let schema = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .and_then(|p| super::schema::request_schema(req.method().as_str(), p.as_str()));
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::TooLarge(format!(
                    "the request body is larger than {} bytes",
                    super::limits::MAX_BODY
                )));
            }
            Err(e) => {
                return Err(ApiError::BadRequest(format!(
                    "the request body is not valid: {}",
                    e.body_text()
                )));
            }
        };
        // One normalisation at the edge, for every backend: no NUL.
        if let Some(at) = nul_at(&value, "") {
            return Err(ApiError::BadRequest(format!(
                "`{at}` holds a NUL character"
            )));
        }
        // The bounds the OpenAPI document publishes, checked here.
        if let Some(schema) = schema {
            use super::schema::Problem;
            super::schema::check(schema, &value, "").map_err(|p| match p {
                Problem::Shape(m) => ApiError::BadRequest(m),
                Problem::Bound(m) => ApiError::Invalid(m),
            })?;
        }
        serde_json::from_value(value)
            .map(Json)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid: {e}")))
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Query parameters.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Where in `v` a string (or an object key) holds a NUL, as a path such as
/// `conversations[0].messages[1].text`.
fn nul_at(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => Some(if at.is_empty() {
            "body".into()
        } else {
            at.to_owned()
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &format!("{at}[{i}]"))),
        Value::Object(o) => o.iter().find_map(|(k, x)| {
            let here = if at.is_empty() {
                crate::core::text::printable(k).into_owned()
            } else {
                format!("{at}.{}", crate::core::text::printable(k))
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_at(x, &here)
            }
        }),
        _ => None,
    }
}
