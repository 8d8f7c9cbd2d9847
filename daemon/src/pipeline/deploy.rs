//! Moving a deployment: the one path every way of deploying takes (the
//! command line, the API, a workflow's `deploy` step, later experiments
//! and canaries). A version is loaded and must answer its health check
//! before the deployment points at it; a version that cannot is refused
//! with the reason and the old one stays.

use super::Runner;
use super::predict::predict;
use crate::core::example::Split;
use crate::registry::deployments::{HistoryEntry, history_entries, rollback_target, servable};
use crate::store::ModelRow;
use crate::store::deployments::{Action, Changed, How, NewChange};
use serde::Serialize;
use std::collections::BTreeSet;

/// Probe utterances a version answers before it serves.
pub const PROBES: usize = 32;

/// How far below its recorded accuracy a version may score on its probes
/// and still count as healthy. The probes are a small sample (32 from its
/// own test split), so only a version that is broken — a damaged
/// artifact, a plugin that answers nonsense — falls this far.
pub const PROBE_ACCURACY_SLACK: f64 = 0.25;

/// Who asks for a change, and why.
#[derive(Debug, Clone)]
pub struct Request {
    pub how: How,
    pub actor: String,
    pub reason: Option<String>,
    pub run: Option<i64>,
}

/// Why a deployment did not move.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    NoSuchModel(String),
    #[error("{0}")]
    NotServable(String),
    #[error(
        "model {model} ({name} v{version}) failed its health check: {why}; {environment} still serves what it served"
    )]
    Unhealthy {
        model: i64,
        name: String,
        version: i32,
        environment: String,
        why: String,
    },
    #[error("{0}")]
    NothingToRollBackTo(String),
    #[error("no deployment of `{name}` to {environment}")]
    NotDeployed { name: String, environment: String },
    #[error(
        "the deployment of `{name}` to {environment} changed while this change was checked; look at it again (`coach deployments list {name}`) and retry"
    )]
    Conflict { name: String, environment: String },
    #[error(
        "{kind} `{experiment}` is running on {environment} of `{name}`; it decides what serves there until it ends (`coach experiment stop {experiment}`)"
    )]
    Busy {
        name: String,
        environment: String,
        experiment: String,
        kind: String,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What a change did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// False when the environment already served that version.
    pub changed: bool,
    pub model: String,
    pub environment: String,
    pub version: i32,
    pub model_id: i64,
    /// The history row of the change (none when nothing changed).
    pub history: Option<HistoryEntry>,
    /// How the version answered its probes.
    pub health: Option<Health>,
}

/// A health check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub probes: usize,
    pub correct: usize,
}

/// Load `model` and ask it its probes: texts from its own test split (one
/// per intent first, up to [`PROBES`]), falling back to validation, then
/// to any examples. Healthy when it loads, answers every probe with an
/// intent and a confidence in [0, 1], and gets at most
/// [`PROBE_ACCURACY_SLACK`] fewer right than its recorded accuracy.
pub async fn health_check(runner: &Runner, model: &ModelRow) -> Result<Health, String> {
    let examples = match model.dataset_version_id {
        Some(id) => runner
            .store
            .load_examples(id)
            .await
            .map_err(|e| format!("its data cannot be read: {e:#}"))?,
        None => Vec::new(),
    };
    let pick = |split: Option<Split>| {
        let mut seen = BTreeSet::new();
        let pool: Vec<_> = examples
            .iter()
            .filter(|e| split.is_none_or(|s| e.split == s))
            .collect();
        // One per intent first, then the rest in order.
        let mut chosen: Vec<_> = pool
            .iter()
            .filter(|e| seen.insert(e.intent.clone()))
            .copied()
            .take(PROBES)
            .collect();
        for e in &pool {
            if chosen.len() >= PROBES {
                break;
            }
            if !chosen.iter().any(|c| std::ptr::eq(*c, *e)) {
                chosen.push(e);
            }
        }
        chosen
    };
    let mut probes = pick(Some(Split::Test));
    if probes.is_empty() {
        probes = pick(Some(Split::Validation));
    }
    if probes.is_empty() {
        probes = pick(None);
    }
    let texts: Vec<String> = if probes.is_empty() {
        vec!["hello".to_owned()]
    } else {
        probes.iter().map(|e| e.text.clone()).collect()
    };
    let predictions = predict(runner.host.clone(), &runner.artifacts, model, texts.clone())
        .await
        .map_err(|e| format!("it cannot be loaded or asked: {e:#}"))?;
    if predictions.len() != texts.len() {
        return Err(format!(
            "it answered {} of {} probes",
            predictions.len(),
            texts.len()
        ));
    }
    if let Some(p) = predictions
        .iter()
        .find(|p| p.intent.is_empty() || !(0.0..=1.0).contains(&p.confidence))
    {
        return Err(format!(
            "it answered a probe with intent {:?} at confidence {}",
            crate::core::text::printable(&p.intent),
            p.confidence
        ));
    }
    let correct = probes
        .iter()
        .zip(&predictions)
        .filter(|(e, p)| e.intent == p.intent)
        .count();
    let recorded: Option<f64> = serde_json::from_str::<serde_json::Value>(&model.metrics)
        .ok()
        .and_then(|m| m.get("accuracy").and_then(serde_json::Value::as_f64));
    if let Some(recorded) = recorded
        && !probes.is_empty()
    {
        let got = correct as f64 / probes.len() as f64;
        if got < recorded - PROBE_ACCURACY_SLACK {
            return Err(format!(
                "it got {correct} of {} probes from its own evaluation data right ({:.0}%), against {:.0}% recorded",
                probes.len(),
                100.0 * got,
                100.0 * recorded
            ));
        }
    }
    Ok(Health {
        probes: probes.len(),
        correct,
    })
}

/// Refuse to move a deployment an experiment or canary is deciding.
pub async fn busy(runner: &Runner, name: &str, environment: &str) -> Result<(), DeployError> {
    match runner.store.running_experiment(name, environment).await? {
        Some(e) => Err(DeployError::Busy {
            name: name.to_owned(),
            environment: environment.to_owned(),
            experiment: e.name,
            kind: e.kind,
        }),
        None => Ok(()),
    }
}

/// Point `environment` of `model`'s name at `model`, after its health
/// check. Deploying the version already served changes nothing.
pub async fn deploy(
    runner: &Runner,
    model: &ModelRow,
    environment: &str,
    action: Action,
    req: Request,
) -> Result<Outcome, DeployError> {
    servable(model).map_err(DeployError::NotServable)?;
    busy(runner, &model.name, environment).await?;
    let current = runner.store.deployment(&model.name, environment).await?;
    let serving = current.as_ref().map(|d| d.model_id);
    if serving == Some(model.id) {
        return Ok(Outcome {
            changed: false,
            model: model.name.clone(),
            environment: environment.to_owned(),
            version: model.version,
            model_id: model.id,
            history: None,
            health: None,
        });
    }
    let health = health_check(runner, model)
        .await
        .map_err(|why| DeployError::Unhealthy {
            model: model.id,
            name: model.name.clone(),
            version: model.version,
            environment: environment.to_owned(),
            why,
        })?;
    let changed = runner
        .store
        .change_deployment(NewChange {
            model_name: model.name.clone(),
            environment: environment.to_owned(),
            to_model_id: model.id,
            expected_from: serving,
            action,
            how: req.how,
            actor: req.actor,
            reason: req.reason,
            run: req.run,
        })
        .await?;
    let history = match changed {
        Changed::Done(_, h) => Some(*h),
        Changed::Unchanged(_) => None,
        Changed::Busy(experiment, kind) => {
            return Err(DeployError::Busy {
                name: model.name.clone(),
                environment: environment.to_owned(),
                experiment,
                kind,
            });
        }
        Changed::Conflict(_) => {
            return Err(DeployError::Conflict {
                name: model.name.clone(),
                environment: environment.to_owned(),
            });
        }
    };
    let history = match history {
        Some(h) => history_entries(&runner.store, vec![h]).await?.pop(),
        None => None,
    };
    tracing::info!(
        model = %model.name,
        version = model.version,
        environment,
        "deployment changed"
    );
    Ok(Outcome {
        changed: history.is_some(),
        model: model.name.clone(),
        environment: environment.to_owned(),
        version: model.version,
        model_id: model.id,
        history,
        health: Some(health),
    })
}

/// Roll `environment` of `name` back: to `to` (a version of that name),
/// or to the version served before the current one was deployed.
pub async fn rollback(
    runner: &Runner,
    name: &str,
    environment: &str,
    to: Option<i32>,
    req: Request,
) -> Result<Outcome, DeployError> {
    if runner.store.deployment(name, environment).await?.is_none() {
        return Err(DeployError::NotDeployed {
            name: name.to_owned(),
            environment: environment.to_owned(),
        });
    }
    busy(runner, name, environment).await?;
    let target = match to {
        Some(version) => {
            let r = crate::core::ids::ModelRef::Version(
                name.try_into().map_err(|e: String| anyhow::anyhow!(e))?,
                version,
            );
            runner.store.find_model(&r).await?.ok_or_else(|| {
                DeployError::NothingToRollBackTo(format!("`{name}` has no version {version}"))
            })?
        }
        None => {
            let history = runner
                .store
                .deployment_history(name, Some(environment), 100_000)
                .await?;
            let id = rollback_target(&history).ok_or_else(|| {
                DeployError::NothingToRollBackTo(format!(
                    "nothing to roll back to: `{name}` in {environment} has served no other version before this one; name one with --to"
                ))
            })?;
            runner
                .store
                .models_by_id(&[id])
                .await?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("model {id} in the history is gone"))?
        }
    };
    // Rolling back to the version served changes nothing (and says so).
    deploy(runner, &target, environment, Action::Rollback, req).await
}
