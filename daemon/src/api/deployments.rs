//! Deployments: which version each environment serves, deploying,
//! rolling back, and the history of every change.

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::core::ids::{EnvironmentName, ModelName, ModelRef};
use crate::pipeline::deploy::{DeployError, Request};
use crate::store::deployments::How;
use axum::Extension;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> ApiError {
        match e {
            DeployError::NoSuchModel(_) | DeployError::NotDeployed { .. } => {
                ApiError::NotFound(e.to_string())
            }
            DeployError::NotServable(_) | DeployError::Unhealthy { .. } => {
                ApiError::Invalid(e.to_string())
            }
            DeployError::NothingToRollBackTo(_)
            | DeployError::Conflict { .. }
            | DeployError::Busy { .. } => ApiError::Conflict(e.to_string()),
            DeployError::Other(e) => ApiError::Internal(e),
        }
    }
}

fn environment(at: &str, s: &str) -> Result<EnvironmentName, ApiError> {
    EnvironmentName::try_from(s).map_err(|e| ApiError::Invalid(format!("{at}: {e}")))
}

fn model_name(at: &str, s: &str) -> Result<ModelName, ApiError> {
    ModelName::try_from(s).map_err(|e| ApiError::Invalid(format!("{at}: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    model: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let name = q
        .model
        .as_deref()
        .map(|m| model_name("model", m))
        .transpose()?;
    let deployments = s.records().deployments(name.as_deref()).await?;
    Ok(axum::Json(json!({ "deployments": deployments })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    environment: Option<String>,
    limit: Option<u64>,
}

pub async fn history(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let name = model_name("model", &name)?;
    let env = q
        .environment
        .as_deref()
        .map(|e| environment("environment", e))
        .transpose()?;
    let history = s
        .records()
        .deployment_history(&name, env.as_deref(), q.limit.unwrap_or(50).clamp(1, 1000))
        .await?;
    Ok(axum::Json(json!({ "history": history })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    model: String,
    environment: String,
    reason: Option<String>,
    /// `direct` (the default) or `canary`.
    strategy: Option<String>,
    /// A canary's `steps`, `min_requests` and `hold`.
    canary: Option<Value>,
}

fn request(caller: &Caller, reason: Option<String>) -> Request {
    Request {
        how: How::Manual,
        actor: caller.0.name.clone(),
        reason,
        run: None,
    }
}

pub async fn deploy(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<DeployBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let model: ModelRef = body
        .model
        .parse()
        .map_err(|e: String| ApiError::Invalid(format!("model: {e}")))?;
    let env = environment("environment", &body.environment)?;
    match body.strategy.as_deref() {
        None | Some("direct") => {
            if body.canary.is_some() {
                return Err(ApiError::Invalid(
                    "canary: needs `strategy: \"canary\"`".into(),
                ));
            }
        }
        Some("canary") => {
            let canary = crate::workflow::params::canary_params(body.canary.as_ref())
                .map_err(|e| ApiError::Invalid(format!("canary: {e}")))?;
            let started = s
                .canary(&model, &env, canary, caller.0.name.clone())
                .await?;
            return Ok(axum::Json(
                serde_json::to_value(started).map_err(anyhow::Error::from)?,
            ));
        }
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "strategy: `{other}`; expected `direct` or `canary`"
            )));
        }
    }
    let outcome = s
        .deploy(&model, &env, request(&caller, body.reason))
        .await?;
    Ok(axum::Json(
        serde_json::to_value(outcome).map_err(anyhow::Error::from)?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    model: String,
    environment: String,
    to: Option<i32>,
    reason: Option<String>,
}

pub async fn rollback(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RollbackBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let name = model_name("model", &body.model)?;
    let env = environment("environment", &body.environment)?;
    let outcome = s
        .rollback(&name, &env, body.to, request(&caller, body.reason))
        .await?;
    Ok(axum::Json(
        serde_json::to_value(outcome).map_err(anyhow::Error::from)?,
    ))
}
