//! The learning loop over HTTP: the review queue (reviewers claim,
//! label, adjudicate), agreement, patterns and recommendations, and the
//! quality trend of a model's conversations.

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::core::example::{EntitySpan, label_problem};
use crate::service::review::{Answer, LabelError};
use crate::store::review::{ItemFilter, ItemState, NewItem, Origin};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

fn model_name(at: &str, m: &str) -> Result<(), ApiError> {
    if crate::core::ids::is_identifier(m) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{at}: `{}` is not a model name",
            crate::core::text::printable(&crate::core::text::clip(m, 64))
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsQuery {
    model: Option<String>,
    state: Option<String>,
    origin: Option<String>,
    before: Option<i64>,
    limit: Option<u64>,
}

/// `GET /api/v1/review/items`: review items, newest first, a page at a
/// time.
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ItemsQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    if let Some(m) = &q.model {
        model_name("model", m)?;
    }
    let state = match q.state.as_deref() {
        None => None,
        Some(x) => Some(ItemState::parse(x).ok_or_else(|| {
            ApiError::BadRequest("state: expected open, disputed, approved or rejected".into())
        })?),
    };
    let origin = match q.origin.as_deref() {
        None => None,
        Some(x) => Some(Origin::parse(x).ok_or_else(|| {
            ApiError::BadRequest(
                "origin: expected correction, fallback, low_confidence, negative_rating, recommendation or manual".into(),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit: 1 to 1000".into()));
    }
    let (items, next) = s
        .store
        .review_items(&ItemFilter {
            model: q.model,
            state,
            origin,
            before: q.before,
            limit,
            by_priority: false,
        })
        .await?;
    Ok(axum::Json(json!({"items": items, "next_before": next})))
}

/// `GET /api/v1/review/items/{id}`.
pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Value>, ApiError> {
    let item = s
        .store
        .review_item(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no review item {id}")))?;
    Ok(axum::Json(json!(item)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueBody {
    items: Vec<QueueItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueItem {
    model: String,
    text: String,
    reason: Option<String>,
    suggested_intent: Option<String>,
}

/// `POST /api/v1/review/items`: queue texts by hand.
pub async fn queue(
    State(s): State<AppState>,
    Json(body): Json<QueueBody>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let reviews = s.store.review_policy().reviews;
    let mut items = Vec::with_capacity(body.items.len());
    for (i, it) in body.items.into_iter().enumerate() {
        model_name(&format!("items[{i}].model"), &it.model)?;
        if it.text.trim().is_empty() {
            return Err(ApiError::Invalid(format!("items[{i}].text: is blank")));
        }
        if let Some(why) = it
            .suggested_intent
            .as_deref()
            .and_then(|x| label_problem("suggested intent", x))
        {
            return Err(ApiError::Invalid(format!("items[{i}]: {why}")));
        }
        items.push(NewItem {
            model: it.model,
            text: it.text,
            conversation_id: None,
            message_id: None,
            origin: Origin::Manual,
            reason: it.reason.unwrap_or_else(|| "queued by hand".into()),
            priority: crate::review::priority(None, 1),
            suggested_intent: it.suggested_intent,
            recommendation_id: None,
            reviews,
        });
    }
    let added = s.store.queue_review(&items).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"added": added, "already": items.len() as u64 - added})),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextBody {
    model: Option<String>,
    #[serde(default)]
    adjudicate: bool,
}

/// `POST /api/v1/review/next`: the most valuable item the caller may
/// label now, held for it a while; 204 when there is none.
pub async fn next(
    State(s): State<AppState>,
    Extension(Caller(token)): Extension<Caller>,
    Json(body): Json<NextBody>,
) -> Result<Response, ApiError> {
    if let Some(m) = &body.model {
        model_name("model", m)?;
    }
    match s
        .store
        .claim_review(token.id, body.model.as_deref(), body.adjudicate, &[])
        .await?
    {
        Some(item) => Ok(axum::Json(json!(item)).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelBody {
    verdict: String,
    intent: Option<String>,
    #[serde(default)]
    out_of_scope: bool,
    #[serde(default)]
    entities: Vec<EntitySpan>,
    #[serde(default)]
    adjudication: bool,
}

/// `POST /api/v1/review/items/{id}/labels`: the caller's label (or an
/// adjudication of a disputed item).
pub async fn label(
    State(s): State<AppState>,
    Extension(Caller(token)): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<LabelBody>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let reject = match body.verdict.as_str() {
        "label" => false,
        "reject" => true,
        _ => {
            return Err(ApiError::Invalid(
                "verdict: expected label or reject".into(),
            ));
        }
    };
    let answer = Answer {
        reject,
        intent: body.intent,
        out_of_scope: body.out_of_scope,
        entities: body.entities,
        adjudication: body.adjudication,
    };
    match crate::service::review::label(&s.store, token.id, &token.name, id, answer).await {
        Ok(item) => Ok((StatusCode::CREATED, axum::Json(json!(item)))),
        Err(LabelError::Invalid(m)) => Err(ApiError::Invalid(m)),
        Err(LabelError::NotFound(m)) => Err(ApiError::NotFound(m)),
        Err(LabelError::Conflict(m)) => Err(ApiError::Conflict(m)),
        Err(LabelError::Other(e)) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelQuery {
    model: Option<String>,
}

/// `GET /api/v1/review/summary`: the queue by state and how much
/// reviewers agree.
pub async fn summary(
    State(s): State<AppState>,
    Query(q): Query<ModelQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    if let Some(m) = &q.model {
        model_name("model", m)?;
    }
    let counts = s.store.review_counts(q.model.as_deref()).await?;
    let agreement = crate::service::review::agreement(&s.store, q.model.as_deref()).await?;
    Ok(axum::Json(
        json!({"counts": counts, "agreement": agreement}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternsQuery {
    days: Option<u32>,
}

/// `GET /api/v1/models/{name}/patterns`: the patterns of the model's
/// traffic of the last `days` (default 30), found now, with the
/// recommendations they make (kept).
pub async fn patterns(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PatternsQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    model_name("path", &name)?;
    let days = q.days.unwrap_or(30);
    if !(1..=3660).contains(&days) {
        return Err(ApiError::BadRequest("days: 1 to 3660".into()));
    }
    let found = crate::service::review::find(&s.store, &name, days).await?;
    Ok(axum::Json(json!(found)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsQuery {
    state: Option<String>,
}

/// `GET /api/v1/models/{name}/recommendations`: kept recommendations,
/// best first.
pub async fn recommendations(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RecommendationsQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    model_name("path", &name)?;
    if let Some(st) = &q.state
        && !["open", "queued", "dismissed"].contains(&st.as_str())
    {
        return Err(ApiError::BadRequest(
            "state: expected open, queued or dismissed".into(),
        ));
    }
    let recs = s.store.recommendations(&name, q.state.as_deref()).await?;
    Ok(axum::Json(json!({"recommendations": recs})))
}

/// `POST /api/v1/recommendations/{id}/review`: one review item per
/// message the recommendation names.
pub async fn review_recommendation(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    match crate::service::review::queue_recommendation(&s.store, id).await {
        Ok(Some(q)) => Ok((StatusCode::CREATED, axum::Json(json!(q)))),
        Ok(None) => Err(ApiError::NotFound(format!("no recommendation {id}"))),
        Err(e) if e.to_string().contains("dismissed") => Err(ApiError::Conflict(e.to_string())),
        Err(e) => Err(ApiError::Internal(e)),
    }
}

/// `GET /api/v1/models/{name}/quality`: the quality trend of the model's
/// conversations (analyzer `analyzer-quality`).
pub async fn quality(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    model_name("path", &name)?;
    let t = s
        .store
        .quality_trend(&name, crate::core::params::DEFAULT_ANALYZER)
        .await?;
    Ok(axum::Json(json!(t)))
}
