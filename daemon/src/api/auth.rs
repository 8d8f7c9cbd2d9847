//! Bearer tokens on every route but the health checks, wherever the daemon
//! listens (loopback included: a token is never optional). Each route needs
//! a role; a token's role must be at least that.

use super::error::ApiError;
use crate::service::Service;
use crate::store::tokens::{Role, TokenRow, hash_token};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The token a request came with, for handlers that want it.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenRow);

pub async fn require(
    State((service, needed)): State<(Arc<Service>, Role)>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "this route needs a token: send `Authorization: Bearer <token>` (create one with `coach token create`)".into(),
            )
        })?;
    // The scheme is case-insensitive (RFC 7235).
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
    let row = service
        .token(&hash_token(token))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("unknown or revoked token".into()))?;
    let role: Role = row
        .role
        .parse()
        .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
    if role < needed {
        return Err(ApiError::Forbidden(format!(
            "this needs the {} role; token `{}` is a {}",
            needed.as_str(),
            row.name,
            role.as_str()
        )));
    }
    req.extensions_mut().insert(Caller(row));
    Ok(next.run(req).await)
}
