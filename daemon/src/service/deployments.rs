//! Deploying and rolling back, whoever asks: the command line (on the
//! store directly, or through the daemon), the API. The change itself —
//! health check, then one transaction — is the pipeline's
//! ([`crate::pipeline::deploy`]), which workflow steps use too.

use super::Service;
use crate::core::ids::{EnvironmentName, ModelName, ModelRef};
use crate::pipeline::deploy::{self, DeployError, Outcome, Request};
use crate::store::deployments::Action;

impl Service {
    /// Deploy `model` to `environment`.
    pub async fn deploy(
        &self,
        model: &ModelRef,
        environment: &EnvironmentName,
        req: Request,
    ) -> Result<Outcome, DeployError> {
        let Some(row) = self.store.find_model(model).await? else {
            return Err(DeployError::NoSuchModel(format!("no model `{model}`")));
        };
        self.preload(&row).await;
        let outcome = deploy::deploy(
            &self.executor.runner,
            &row,
            environment,
            Action::Deploy,
            req,
        )
        .await?;
        self.routes_changed().await;
        Ok(outcome)
    }

    /// A serving daemon loads a version before traffic moves to it, so the
    /// swap is instant and no request waits for the load.
    async fn preload(&self, model: &crate::store::ModelRow) {
        if self.server.active()
            && crate::registry::deployments::servable(model).is_ok()
            && let Err(e) = self.server.load(model).await
        {
            // The health check that follows says why, to the caller.
            tracing::debug!(model = model.id, "cannot preload: {e:#}");
        }
    }

    pub(crate) async fn routes_changed(&self) {
        if self.server.active()
            && let Err(e) = self.server.sync().await
        {
            tracing::warn!("cannot sync the served models with the store: {e:#}");
        }
    }

    /// Roll `environment` of `name` back (to version `to` when given).
    pub async fn rollback(
        &self,
        name: &ModelName,
        environment: &EnvironmentName,
        to: Option<i32>,
        req: Request,
    ) -> Result<Outcome, DeployError> {
        let outcome = deploy::rollback(&self.executor.runner, name, environment, to, req).await?;
        self.routes_changed().await;
        Ok(outcome)
    }
}
