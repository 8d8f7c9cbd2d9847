//! Registered models and installed plugins.

use super::AppState;
use super::error::ApiError;
use super::extract::{Json as JsonBody, Path, Query};
use crate::core::ids::ModelRef;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u64>,
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let models = s.records().models(q.limit.unwrap_or(50).min(1000)).await?;
    Ok(Json(json!({ "models": models })))
}

/// A model by id, `name`, `name:version` or `latest`.
pub async fn show(
    State(s): State<AppState>,
    Path(selector): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r: ModelRef = selector.parse().map_err(ApiError::BadRequest)?;
    let m = s
        .records()
        .model(&r)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no model `{selector}`")))?;
    Ok(Json(m.to_json()))
}

pub async fn plugins(State(s): State<AppState>) -> Json<Value> {
    Json(s.plugins_view())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictQuery {
    env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictBody {
    text: Option<String>,
    texts: Option<Vec<String>>,
    user_id: Option<String>,
    conversation_id: Option<String>,
    channel: Option<String>,
}

/// Predict with the version an environment serves (`production` unless
/// `?env=`): one `text`, or a list of `texts`.
pub async fn predict(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PredictQuery>,
    JsonBody(body): JsonBody<PredictBody>,
) -> Result<Json<Value>, ApiError> {
    use crate::core::ids::{EnvironmentName, ModelName};
    use crate::service::predict::{PredictError, PredictRequest};
    let name = ModelName::try_from(name).map_err(|e| ApiError::Invalid(format!("name: {e}")))?;
    let env = EnvironmentName::try_from(q.env.unwrap_or_else(|| "production".into()))
        .map_err(|e| ApiError::Invalid(format!("env: {e}")))?;
    let single = body.text.is_some();
    let texts = match (body.text, body.texts) {
        (Some(t), None) => vec![t],
        (None, Some(ts)) if !ts.is_empty() => ts,
        (None, Some(_)) => return Err(ApiError::Invalid("texts: is empty".into())),
        _ => {
            return Err(ApiError::Invalid(
                "text: give one `text` or a list of `texts`, not both or neither".into(),
            ));
        }
    };
    let req = PredictRequest {
        texts,
        user_id: body.user_id,
        conversation_id: body.conversation_id,
        channel: body.channel,
    };
    let answer = s.predict(&name, &env, req).await.map_err(|e| match e {
        PredictError::NotDeployed { .. } => ApiError::NotFound(e.to_string()),
        PredictError::Loading { .. } => ApiError::Unavailable(e.to_string()),
        PredictError::Plugin(p) => ApiError::Internal(anyhow::anyhow!(p)),
        PredictError::Other(e) => ApiError::Internal(e),
    })?;
    let mut v = json!({
        "model": answer.model,
        "environment": answer.environment,
        "version": answer.version,
        "model_id": answer.model_id,
        "experiment": answer.experiment,
    });
    if single {
        if let (Some(obj), Some(Value::Object(p))) =
            (v.as_object_mut(), answer.predictions.into_iter().next())
        {
            obj.extend(p);
        }
    } else {
        v["predictions"] = Value::Array(answer.predictions);
    }
    Ok(Json(v))
}
