//! Limits every request meets before it is routed, answered with the same
//! `{code, message}` JSON as every other error: a URI longer than
//! [`MAX_URI`] is 414, headers larger than [`MAX_HEADERS`] in all are 431,
//! and a NUL anywhere in the path or the query is 400 naming the
//! parameter (NUL is refused at the edge, so no backend ever sees one).
//! Bodies are bounded by [`MAX_BODY`] (413).

use super::error::ApiError;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Longest request URI (path and query), in bytes.
pub const MAX_URI: usize = 8 * 1024;
/// Largest total of header names and values, in bytes.
pub const MAX_HEADERS: usize = 32 * 1024;
/// Largest request body, in bytes.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

pub async fn request_limits(req: Request, next: Next) -> Response {
    match check(&req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(req: &Request) -> Result<(), ApiError> {
    let uri = req.uri();
    let len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if len > MAX_URI {
        return Err(ApiError::UriTooLong(format!(
            "the request URI is {len} bytes; at most {MAX_URI}"
        )));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers > MAX_HEADERS {
        return Err(ApiError::HeadersTooLarge(format!(
            "the request headers are {headers} bytes in all; at most {MAX_HEADERS}"
        )));
    }
    if has_nul(uri.path()) {
        return Err(ApiError::BadRequest(
            "the path holds a NUL character".into(),
        ));
    }
    if let Some(q) = uri.query() {
        for pair in q.split('&') {
            if has_nul(pair) {
                let name = pair.split('=').next().unwrap_or(pair);
                return Err(ApiError::BadRequest(format!(
                    "query parameter `{}` holds a NUL character",
                    crate::core::text::printable(name)
                )));
            }
        }
    }
    Ok(())
}

/// A NUL, raw or percent-encoded.
fn has_nul(s: &str) -> bool {
    s.contains('\0') || s.to_ascii_lowercase().contains("%00")
}
