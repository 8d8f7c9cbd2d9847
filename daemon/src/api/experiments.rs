//! Experiments and canaries: list, start, show with results, stop.

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::pipeline::experiment::ExperimentError;
use crate::store::deployments::How;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

impl From<ExperimentError> for ApiError {
    fn from(e: ExperimentError) -> ApiError {
        match e {
            ExperimentError::Invalid(m) => ApiError::Invalid(m),
            ExperimentError::NotFound(m) => ApiError::NotFound(m),
            ExperimentError::Conflict(m) => ApiError::Conflict(m),
            ExperimentError::Other(e) => ApiError::Internal(e),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    model: Option<String>,
    /// `running`: only those running.
    state: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    if let Some(m) = &q.model
        && !crate::core::ids::is_identifier(m)
    {
        return Err(ApiError::Invalid(format!(
            "model: `{m}` is not a model name"
        )));
    }
    let running = match q.state.as_deref() {
        None | Some("all") => false,
        Some("running") => true,
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "state: `{other}`; expected `running` or `all`"
            )));
        }
    };
    let experiments = s.experiment_list(q.model.as_deref(), running).await?;
    Ok(axum::Json(json!({ "experiments": experiments })))
}

fn experiment_name(name: &str) -> Result<(), ApiError> {
    if crate::experiment::spec::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "name: `{name}` is not an experiment name"
        )))
    }
}

pub async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    experiment_name(&name)?;
    let v = s.experiment(&name).await?;
    Ok(axum::Json(
        serde_json::to_value(v).map_err(anyhow::Error::from)?,
    ))
}

/// `POST /api/v1/experiments`: `name` and the experiment, in the shape of
/// an experiment file.
pub async fn start(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(mut body): Json<Value>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let name = body
        .as_object_mut()
        .and_then(|o| o.remove("name"))
        .and_then(|n| n.as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::BadRequest("name: is required".into()))?;
    experiment_name(&name)?;
    let spec =
        crate::workflow::experiment::parse_request(&name, &body).map_err(ApiError::Invalid)?;
    let v = s
        .start_experiment(
            &name,
            spec,
            "api".into(),
            caller.0.name.clone(),
            How::Manual,
            None,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::to_value(v).map_err(anyhow::Error::from)?),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopBody {
    reason: Option<String>,
}

pub async fn stop(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<StopBody>,
) -> Result<axum::Json<Value>, ApiError> {
    experiment_name(&name)?;
    let v = s
        .stop_experiment(&name, caller.0.name.clone(), body.reason)
        .await?;
    Ok(axum::Json(
        serde_json::to_value(v).map_err(anyhow::Error::from)?,
    ))
}
