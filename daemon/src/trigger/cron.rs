//! Cron triggers, on tokio-cron-scheduler: one job per workflow with a
//! `trigger.cron`, replaced when the workflow's schedule changes. At start,
//! fires missed while the daemon was down are recorded and — by the
//! workflow's `catch_up` — run once or skipped.

use crate::service::Service;
use crate::store::queue::NewFire;
use crate::workflow::trigger::{CatchUp, Cron};
use anyhow::{Result, anyhow};
use chrono::{DurationRound, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

pub struct CronTriggers {
    scheduler: Mutex<JobScheduler>,
    jobs: Mutex<BTreeMap<String, (Uuid, Cron)>>,
}

impl CronTriggers {
    pub async fn start() -> Result<CronTriggers> {
        let scheduler = JobScheduler::new()
            .await
            .map_err(|e| anyhow!("cannot start the cron scheduler: {e}"))?;
        scheduler
            .start()
            .await
            .map_err(|e| anyhow!("cannot start the cron scheduler: {e}"))?;
        Ok(CronTriggers {
            scheduler: Mutex::new(scheduler),
            jobs: Mutex::default(),
        })
    }

    /// Make the scheduled jobs match the workflows' schedules.
    pub async fn sync(&self, service: &Arc<Service>) {
        let wanted: BTreeMap<String, Cron> = service
            .workflows
            .entries()
            .into_iter()
            .filter_map(|e| e.good)
            .filter_map(|g| {
                let c = g.workflow.trigger.cron.clone()?;
                Some((g.workflow.name.clone(), c))
            })
            .collect();
        let scheduler = self.scheduler.lock().await;
        let mut jobs = self.jobs.lock().await;
        let stale: Vec<String> = jobs
            .iter()
            .filter(|(name, (_, cron))| wanted.get(*name) != Some(cron))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((id, _)) = jobs.remove(&name) {
                if let Err(e) = scheduler.remove(&id).await {
                    tracing::error!(workflow = %name, "cannot remove a cron job: {e}");
                }
                tracing::info!(workflow = %name, "cron schedule removed");
            }
        }
        for (name, cron) in wanted {
            if jobs.contains_key(&name) {
                continue;
            }
            let weak: Weak<Service> = Arc::downgrade(service);
            let wf = name.clone();
            let job = Job::new_async_tz(cron.expr.as_str(), cron.timezone, move |_, _| {
                let weak = weak.clone();
                let wf = wf.clone();
                Box::pin(async move {
                    let Some(service) = weak.upgrade() else {
                        return;
                    };
                    // The scheduler fires on the second it was due.
                    let at = Utc::now()
                        .duration_trunc(chrono::Duration::seconds(1))
                        .unwrap_or_else(|_| Utc::now());
                    // `fire` logs and records the outcome.
                    let _ = super::fire(&service, &wf, "cron", at).await;
                })
            });
            match job {
                Ok(job) => match scheduler.add(job).await {
                    Ok(id) => {
                        tracing::info!(workflow = %name, cron = %cron.expr, timezone = %cron.timezone, "cron schedule set");
                        jobs.insert(name, (id, cron));
                    }
                    Err(e) => tracing::error!(workflow = %name, "cannot schedule: {e}"),
                },
                Err(e) => {
                    tracing::error!(workflow = %name, cron = %cron.expr, "cannot schedule: {e}")
                }
            }
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.scheduler.lock().await.shutdown().await {
            tracing::warn!("cron scheduler did not stop cleanly: {e}");
        }
    }
}

/// Fires of each cron workflow missed while the daemon was down: recorded,
/// and run once where the workflow's `catch_up` is `once`.
pub async fn catch_up(service: &Service) -> Result<()> {
    let now = Utc::now();
    for entry in service.workflows.entries() {
        let Some(good) = entry.good else { continue };
        let wf = &good.workflow;
        let Some(cron) = &wf.trigger.cron else {
            continue;
        };
        let Some(last) = service.store.last_cron_fire(&wf.name).await? else {
            continue;
        };
        let mut missed = Vec::new();
        let mut t = last;
        while let Some(next) = cron.next_after(t) {
            if next >= now || missed.len() >= 1000 {
                break;
            }
            missed.push(next);
            t = next;
        }
        let Some(&latest) = missed.last() else {
            continue;
        };
        let detail = format!(
            "{} fire(s) missed while the daemon was down, from {} to {}",
            missed.len(),
            missed[0],
            latest
        );
        tracing::warn!(workflow = %wf.name, "{detail}");
        match wf.trigger.catch_up {
            CatchUp::Skip => {
                service.metrics.trigger_fired("catch-up", "missed");
                service
                    .store
                    .record_fire(NewFire {
                        workflow: wf.name.clone(),
                        kind: "catch-up".into(),
                        scheduled_for: latest,
                        outcome: "missed".into(),
                        detail: Some(format!("{detail}; catch_up = \"skip\"")),
                        run_id: None,
                    })
                    .await?;
            }
            CatchUp::Once => {
                let _ = super::fire(service, &wf.name, "catch-up", latest).await;
            }
        }
    }
    Ok(())
}
