//! Predictions from deployed models, whoever asks: the version an
//! environment serves answers, and a prediction that names a conversation
//! is logged as a turn of it, so analysis and feedback see it without the
//! platform posting it again.

use super::Service;
use crate::core::conversation::Ranked;
use crate::core::example::EntitySpan;
use crate::plugin::bindings::Prediction;
use crate::store::conversations::{Assignment, NewConversation, NewMessage};
use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};

/// A predict request, checked at the edge.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub texts: Vec<String>,
    pub user_id: Option<String>,
    pub conversation_id: Option<String>,
    pub channel: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(
        "no deployment of `{name}` to {environment}; `coach deploy {name}:VERSION --env {environment}` makes one"
    )]
    NotDeployed { name: String, environment: String },
    #[error("`{name}` in {environment} is deployed but not loaded yet; try again in a moment")]
    Loading { name: String, environment: String },
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginFailure),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What answered, and its predictions.
#[derive(Debug, Clone, Serialize)]
pub struct PredictAnswer {
    pub model: String,
    pub environment: String,
    pub version: i32,
    pub model_id: i64,
    /// The experiment arm that answered, when an experiment applies.
    pub experiment: Option<Value>,
    pub predictions: Vec<Value>,
}

/// The intent a model answers when it judges an utterance out of scope.
const OUT_OF_SCOPE: &str = "oos";

pub fn prediction_json(p: &Prediction) -> Value {
    json!({
        "intent": p.intent,
        "confidence": p.confidence,
        "ranking": p.ranking.iter().map(|r| json!({"intent": r.intent, "confidence": r.confidence})).collect::<Vec<_>>(),
        "entities": p.entities.iter().map(|e| json!({"entity": e.entity, "start": e.start, "end": e.end, "value": e.value})).collect::<Vec<_>>(),
    })
}

impl Service {
    /// Predict with the version `environment` of `name` serves.
    pub async fn predict(
        &self,
        name: &str,
        environment: &str,
        req: PredictRequest,
    ) -> Result<PredictAnswer, PredictError> {
        let Some(route) = self.server.route(name, environment) else {
            return Err(match self.store.deployment(name, environment).await? {
                Some(_) => PredictError::Loading {
                    name: name.to_owned(),
                    environment: environment.to_owned(),
                },
                None => PredictError::NotDeployed {
                    name: name.to_owned(),
                    environment: environment.to_owned(),
                },
            });
        };
        let pick = route.pick(req.user_id.as_deref(), req.conversation_id.as_deref());
        let arm = &route.arms[pick.arm];
        let served = &arm.served;
        let started = std::time::Instant::now();
        let predictions = served.predict(req.texts.clone()).await;
        let split = route.split.as_ref();
        let counted = split.is_some_and(|s| pick.unit.is_some() || s.canary);
        if counted {
            route.record(
                pick.arm,
                predictions.is_ok(),
                started.elapsed().as_secs_f64() * 1000.0,
            );
        }
        let assignment = match (split, &pick.unit) {
            (Some(s), Some(unit)) => Some(Assignment {
                experiment: s.experiment,
                arm: arm.name.clone(),
                unit: unit.clone(),
            }),
            _ => None,
        };
        let predictions = match predictions {
            Ok(p) => p,
            Err(e) => {
                // The unit still counts for its arm: a treatment that fails
                // must not vanish from the experiment's units.
                if let (Some(conversation), Some(_)) = (&req.conversation_id, &assignment)
                    && let Err(log) = self
                        .store
                        .log_conversations(&[NewConversation {
                            model: name.to_owned(),
                            id: conversation.clone(),
                            channel: req.channel.clone(),
                            messages: Vec::new(),
                            outcome: None,
                            assignment: assignment.clone(),
                        }])
                        .await
                {
                    tracing::warn!("cannot log the failed prediction's conversation: {log:#}");
                }
                return Err(e.into());
            }
        };
        if let Some(conversation) = &req.conversation_id {
            let now = Utc::now();
            let messages = req
                .texts
                .iter()
                .zip(&predictions)
                .map(|(text, p)| NewMessage {
                    role: "user",
                    text: text.clone(),
                    intent: Some(p.intent.clone()),
                    confidence: Some(f64::from(p.confidence)),
                    fallback: p.intent == OUT_OF_SCOPE,
                    model_version: Some(served.model.version),
                    escalation: false,
                    at: now,
                    ranking: p
                        .ranking
                        .iter()
                        .map(|r| Ranked {
                            intent: r.intent.clone(),
                            confidence: f64::from(r.confidence),
                        })
                        .collect(),
                    entities: p
                        .entities
                        .iter()
                        .map(|e| EntitySpan {
                            entity: e.entity.clone(),
                            start: e.start,
                            end: e.end,
                            value: e.value.clone(),
                        })
                        .collect(),
                })
                .collect();
            self.store
                .log_conversations(&[NewConversation {
                    model: name.to_owned(),
                    id: conversation.clone(),
                    channel: req.channel.clone(),
                    messages,
                    outcome: None,
                    assignment,
                }])
                .await?;
        }
        let experiment = split.filter(|_| counted).map(|s| {
            json!({
                "name": s.name,
                "arm": arm.name,
                "version": served.model.version,
                "canary": s.canary,
            })
        });
        Ok(PredictAnswer {
            model: served.model.name.clone(),
            environment: environment.to_owned(),
            version: served.model.version,
            model_id: served.model.id,
            experiment,
            predictions: predictions.iter().map(prediction_json).collect(),
        })
    }
}
