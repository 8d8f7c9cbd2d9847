//! API tokens (admins only): list, create, revoke.

use super::AppState;
use super::error::ApiError;
use super::extract::{Json, Path};
use crate::store::tokens::{Revoked, Role, TokenRow, token_name};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

fn token_json(t: &TokenRow) -> Value {
    json!({"id": t.id, "name": t.name, "role": t.role, "created_at": t.created_at, "revoked_at": t.revoked_at})
}

pub async fn list(State(s): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let tokens = s.store.tokens().await?;
    Ok(axum::Json(
        json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: String,
}

pub async fn create(
    State(s): State<AppState>,
    Json(body): Json<NewToken>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let role: Role = body.role.parse().map_err(ApiError::BadRequest)?;
    let name = token_name(&body.name).map_err(|m| ApiError::Invalid(format!("name: {m}")))?;
    let (row, token) = s.store.create_token(name, role).await?;
    let mut v = token_json(&row);
    v["token"] = json!(token);
    Ok((StatusCode::CREATED, axum::Json(v)))
}

pub async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    match s.store.revoke_token(id).await? {
        Revoked::Done => {
            s.forget_tokens();
            Ok(StatusCode::NO_CONTENT)
        }
        Revoked::NoSuchToken => Err(ApiError::NotFound(format!("no live token {id}"))),
        Revoked::LastAdmin => Err(ApiError::Conflict(format!(
            "token {id} was not revoked: {}",
            Revoked::LAST_ADMIN
        ))),
    }
}
