//! Starting an experiment or a canary: the one path the API, the command
//! line, experiment files and a workflow's `deploy` step take. Its arms
//! are resolved against the registry and the deployment, each treatment
//! answers its health check, and the store records it in one transaction.

use super::Runner;
use super::deploy::health_check;
use crate::core::ids::ModelRef;
use crate::experiment::spec::{Canary, Spec};
use crate::store::ModelRow;
use crate::store::deployments::How;
use crate::store::experiments::{ExperimentRow, NewExperiment, StartError};
use anyhow::Context;
use chrono::Utc;

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The definition is wrong (names the field).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<StartError> for ExperimentError {
    fn from(e: StartError) -> ExperimentError {
        match e {
            StartError::NotDeployed { .. } => ExperimentError::Invalid(format!("model: {e}")),
            StartError::ControlNotServed { .. } => {
                ExperimentError::Invalid(format!("arms[0].version: {e}"))
            }
            StartError::Busy { .. } | StartError::Exists(..) => {
                ExperimentError::Conflict(e.to_string())
            }
            StartError::Other(e) => ExperimentError::Other(e),
        }
    }
}

/// Start experiment `name`: resolve its arms against the registry and the
/// deployment, check each treatment answers its health check, `preload`
/// them, and record it (the store checks again, in the transaction, that
/// the deployment serves the control and no other experiment runs there).
#[allow(clippy::too_many_arguments)]
pub async fn start<F, Fut>(
    runner: &Runner,
    name: &str,
    mut spec: Spec,
    source: String,
    actor: String,
    how: How,
    run: Option<i64>,
    preload: F,
) -> Result<(ExperimentRow, Spec), ExperimentError>
where
    F: FnOnce(Vec<ModelRow>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    if !crate::experiment::spec::valid_name(name) {
        return Err(ExperimentError::Invalid(format!(
            "name: `{name}` is not an experiment name (up to 64 letters, digits, `-` or `_`)"
        )));
    }
    let model_name: crate::core::ids::ModelName = spec
        .model
        .as_str()
        .try_into()
        .map_err(|e: String| ExperimentError::Invalid(format!("model: {e}")))?;
    let Some(deployment) = runner
        .store
        .deployment(&spec.model, &spec.environment)
        .await?
    else {
        return Err(StartError::NotDeployed {
            model: spec.model.clone(),
            environment: spec.environment.clone(),
        }
        .into());
    };
    let control = runner
        .store
        .models_by_id(&[deployment.model_id])
        .await?
        .pop()
        .context("the deployed model is gone")?;
    let mut models: Vec<ModelRow> = vec![control.clone()];
    for (i, arm) in spec.arms.iter_mut().enumerate() {
        let model = match arm.version {
            None if i == 0 => control.clone(),
            None => {
                return Err(ExperimentError::Invalid(format!(
                    "arms[{i}].version: a treatment needs a version"
                )));
            }
            Some(v) => runner
                .store
                .find_model(&ModelRef::Version(model_name.clone(), v))
                .await?
                .ok_or_else(|| {
                    ExperimentError::Invalid(format!(
                        "arms[{i}].version: `{}` has no version {v}",
                        spec.model
                    ))
                })?,
        };
        if i == 0 && model.id != control.id {
            return Err(ExperimentError::Invalid(format!(
                "arms[0].version: the control must be the version {} serves (v{}), not v{}",
                spec.environment, control.version, model.version
            )));
        }
        if i > 0 && model.id == control.id {
            return Err(ExperimentError::Invalid(format!(
                "arms[{i}].version: v{} is the control; a treatment must be another version",
                model.version
            )));
        }
        crate::registry::deployments::servable(&model)
            .map_err(|e| ExperimentError::Invalid(format!("arms[{i}].version: {e}")))?;
        arm.version = Some(model.version);
        arm.model_id = Some(model.id);
        if i > 0 {
            models.push(model);
        }
    }
    // Refused before the health checks: they load each treatment.
    if let Some(other) = runner
        .store
        .running_experiment(&spec.model, &spec.environment)
        .await?
    {
        return Err(StartError::Busy {
            model: spec.model.clone(),
            environment: spec.environment.clone(),
            running: other.name,
        }
        .into());
    }
    for (i, model) in models.iter().enumerate().skip(1) {
        health_check(runner, model).await.map_err(|why| {
            ExperimentError::Invalid(format!(
                "arms[{i}]: model {} ({} v{}) failed its health check: {why}",
                model.id, model.name, model.version
            ))
        })?;
    }
    preload(models[1..].to_vec()).await?;
    let kind = if spec.canary.is_some() {
        "canary"
    } else {
        "experiment"
    };
    let treatments: Vec<String> = spec.arms[1..]
        .iter()
        .map(|a| {
            format!(
                "{:.0}% to v{}",
                100.0 * a.weight,
                a.version.unwrap_or_default()
            )
        })
        .collect();
    let reason = match &spec.canary {
        Some(_) => format!("canary `{name}` step 1: {}", treatments.join(", ")),
        None => format!(
            "experiment `{name}` started: {}{}",
            treatments.join(", "),
            spec.hypothesis
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        ),
    };
    let row = runner
        .store
        .start_experiment(NewExperiment {
            name: name.to_owned(),
            model_name: spec.model.clone(),
            environment: spec.environment.clone(),
            kind: kind.to_owned(),
            spec: serde_json::to_string(&spec).context("the spec")?,
            control_model_id: control.id,
            treatment_model_id: models[1].id,
            source,
            created_by: actor,
            how,
            reason,
            run,
        })
        .await?;
    tracing::info!(experiment = name, model = %spec.model, environment = %spec.environment, kind, "experiment started");
    Ok((row, spec))
}

/// A canary's name and spec: `to` against what `environment` serves.
pub fn canary_spec(
    to: &ModelRow,
    environment: &str,
    canary: Canary,
) -> Result<(String, Spec), ExperimentError> {
    crate::workflow::params::check_steps(&canary.steps).map_err(ExperimentError::Invalid)?;
    // Within the 64 characters a name may have, whatever the model's.
    let model: String = to.name.chars().take(28).collect();
    let name = format!(
        "{model}-v{}-canary-{}",
        to.version,
        Utc::now().format("%Y%m%d%H%M%S%3f")
    );
    let spec = Spec::canary(&to.name, environment, &name, to.version, canary);
    Ok((name, spec))
}
