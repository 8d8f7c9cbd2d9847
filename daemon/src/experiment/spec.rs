//! What an experiment or a canary is: its arms and traffic, the metrics it
//! is judged on, and when it stops. Files and API bodies are read into it
//! by `workflow::experiment`; it is stored as JSON when it starts.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most arms an experiment may have.
pub const MAX_ARMS: usize = 8;
/// How far the weights may sum from 1.
pub const WEIGHT_TOLERANCE: f64 = 1e-6;

/// The unit assigned to an arm: every request with the same value gets the
/// same arm, on every daemon and after every restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// The request's `user_id`, else its `conversation_id`.
    #[default]
    UserId,
    /// The request's `conversation_id`.
    ConversationId,
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// A metric, computed per unit from the conversations an arm answered
/// (each a ratio of two per-unit sums, so units with several conversations
/// count once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Conversations the bot reports `resolved`, per conversation.
    TaskSuccess,
    /// Fallbacks per user message.
    FallbackRate,
    /// Positive ratings per rating.
    PositiveRatingRate,
    /// Negative ratings per rating.
    NegativeRatingRate,
    /// Corrected intents per user message.
    CorrectionRate,
    /// User messages per conversation.
    ConversationLength,
    /// Conversations where the user asked for a person, per conversation.
    EscalationRate,
    /// Failed predictions per request (canaries).
    ErrorRate,
    /// The 99th percentile of prediction latency (canaries; a bound, not a
    /// test).
    LatencyP99,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::TaskSuccess,
        Metric::FallbackRate,
        Metric::PositiveRatingRate,
        Metric::NegativeRatingRate,
        Metric::CorrectionRate,
        Metric::ConversationLength,
        Metric::EscalationRate,
        Metric::ErrorRate,
        Metric::LatencyP99,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::TaskSuccess => "task_success",
            Metric::FallbackRate => "fallback_rate",
            Metric::PositiveRatingRate => "positive_rating_rate",
            Metric::NegativeRatingRate => "negative_rating_rate",
            Metric::CorrectionRate => "correction_rate",
            Metric::ConversationLength => "conversation_length",
            Metric::EscalationRate => "escalation_rate",
            Metric::ErrorRate => "error_rate",
            Metric::LatencyP99 => "latency_p99",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    pub fn better(self) -> Better {
        match self {
            Metric::TaskSuccess | Metric::PositiveRatingRate => Better::Higher,
            _ => Better::Lower,
        }
    }

    /// Metrics counted from requests rather than conversations.
    pub fn from_requests(self) -> bool {
        matches!(self, Metric::ErrorRate | Metric::LatencyP99)
    }
}

/// An arm: a version of the model and its share of the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSpec {
    pub name: String,
    /// The version; the control's defaults to the one the environment
    /// serves.
    pub version: Option<i32>,
    pub weight: f64,
    /// The model's id, once resolved against the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<i64>,
}

/// A namespace: experiments whose ranges do not overlap never share a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub from: f64,
    pub to: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub primary: Metric,
    #[serde(default)]
    pub secondary: Vec<Metric>,
    #[serde(default)]
    pub guardrails: Vec<Metric>,
}

/// When an experiment may decide, and what decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopping {
    /// The significance level of every test (sequential, so looking at
    /// any time is safe).
    pub alpha: f64,
    /// Units each arm needs before a decision counts.
    pub min_units: u64,
    /// How long it may run; past it the decision script is told
    /// `expired` (the default script stops it, keeping the control).
    #[serde(with = "secs")]
    pub max_duration: Duration,
    /// A Rhai script defining `decide(results)`, relative to the file;
    /// none: the script Coach ships.
    pub decide: Option<String>,
}

impl Default for Stopping {
    fn default() -> Stopping {
        Stopping {
            alpha: 0.05,
            min_units: 100,
            max_duration: Duration::from_secs(14 * 24 * 3600),
            decide: None,
        }
    }
}

/// A canary: the share of traffic the new version gets, step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// Percentages, increasing, the last 100.
    pub steps: Vec<f64>,
    /// Requests the new version answers at a step before it moves on.
    pub min_requests: u64,
    /// Shortest time at a step.
    #[serde(with = "secs")]
    pub hold: Duration,
}

impl Default for Canary {
    fn default() -> Canary {
        Canary {
            steps: vec![5.0, 25.0, 50.0, 100.0],
            min_requests: 200,
            hold: Duration::from_secs(60),
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

/// An experiment, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub model: String,
    pub environment: String,
    pub hypothesis: Option<String>,
    pub key: Key,
    pub coverage: f64,
    /// The hashing seed; the experiment's name unless set.
    pub seed: String,
    pub namespace: Option<Namespace>,
    /// The first is the control.
    pub arms: Vec<ArmSpec>,
    pub metrics: Metrics,
    pub stopping: Stopping,
    /// Set for canaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

impl Spec {
    pub fn weights(&self) -> Vec<f64> {
        self.arms.iter().map(|a| a.weight).collect()
    }

    /// Every metric it reads, primary first.
    pub fn all_metrics(&self) -> Vec<Metric> {
        let mut v = vec![self.metrics.primary];
        for m in self
            .metrics
            .secondary
            .iter()
            .chain(&self.metrics.guardrails)
        {
            if !v.contains(m) {
                v.push(*m);
            }
        }
        v
    }

    /// A canary of `to` against what the environment serves.
    pub fn canary(model: &str, environment: &str, seed: &str, to: i32, canary: Canary) -> Spec {
        let first = canary.steps.first().copied().unwrap_or(100.0) / 100.0;
        Spec {
            model: model.to_owned(),
            environment: environment.to_owned(),
            hypothesis: Some(format!("v{to} is no worse than what {environment} serves")),
            key: Key::UserId,
            coverage: 1.0,
            seed: seed.to_owned(),
            namespace: None,
            arms: vec![
                ArmSpec {
                    name: "stable".into(),
                    version: None,
                    weight: 1.0 - first,
                    model_id: None,
                },
                ArmSpec {
                    name: "canary".into(),
                    version: Some(to),
                    weight: first,
                    model_id: None,
                },
            ],
            metrics: Metrics {
                primary: Metric::ErrorRate,
                secondary: Vec::new(),
                guardrails: vec![
                    Metric::FallbackRate,
                    Metric::ErrorRate,
                    Metric::LatencyP99,
                    Metric::NegativeRatingRate,
                ],
            },
            stopping: Stopping::default(),
            canary: Some(canary),
        }
    }
}

/// Whether `name` may name an experiment (it is a file stem and a URL
/// segment).
pub fn valid_name(name: &str) -> bool {
    crate::core::ids::is_identifier(name)
}
