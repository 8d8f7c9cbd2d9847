//! Cron triggers, on tokio-cron-scheduler: one job per workflow with a
//! `trigger.cron`, replaced when the workflow's schedule changes. At start,
//! fires missed while the daemon was down are recorded and — by the
//! workflow's `catch_up` — run once or skipped.

use super::Context;
use crate::core::state::{FireOutcome, TriggerKind};
use crate::service::Fire;
use crate::store::queue::NewFire;
use crate::workflow::trigger::{CatchUp, Cron};
use anyhow::{Result, anyhow};
use chrono::{DurationRound, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::sync::mpsc::error::TrySendError;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

/// The scheduled jobs; cheap to clone.
#[derive(Clone)]
pub struct CronTriggers {
    scheduler: Arc<Mutex<JobScheduler>>,
    jobs: Arc<Mutex<BTreeMap<String, (Uuid, Cron)>>>,
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
            scheduler: Arc::new(Mutex::new(scheduler)),
            jobs: Arc::default(),
        })
    }

    /// Make the scheduled jobs match the workflows' schedules; once
    /// stopping, remove them all and stop the scheduler.
    pub async fn sync(&self, ctx: &Context) {
        let stopping = ctx.stop.is_cancelled();
        let wanted: BTreeMap<String, Cron> = if stopping {
            BTreeMap::new()
        } else {
            ctx.workflows
                .good()
                .into_iter()
                .filter_map(|g| {
                    let c = g.workflow.trigger.cron.clone()?;
                    Some((g.workflow.name.to_string(), c))
                })
                .collect()
        };
        let mut scheduler = self.scheduler.lock().await;
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
        if stopping {
            if let Err(e) = scheduler.shutdown().await {
                tracing::warn!("cron scheduler did not stop cleanly: {e}");
            }
            return;
        }
        for (name, cron) in wanted {
            if jobs.contains_key(&name) {
                continue;
            }
            let (fires, store, bus) = (ctx.fires.clone(), ctx.store.clone(), ctx.bus.clone());
            let wf = name.clone();
            let job = Job::new_async_tz(cron.expr.as_str(), cron.timezone, move |_, _| {
                let (fires, store, bus) = (fires.clone(), store.clone(), bus.clone());
                let wf = wf.clone();
                Box::pin(async move {
                    // The scheduler fires on the second it was due.
                    let at = Utc::now()
                        .duration_trunc(chrono::Duration::seconds(1))
                        .unwrap_or_else(|_| Utc::now());
                    let fire = Fire {
                        workflow: wf.clone(),
                        kind: TriggerKind::Cron,
                        at,
                        why: None,
                    };
                    // Full: the service is far behind (its store stalls);
                    // the fire is recorded as failed rather than piled up.
                    // Closed: the daemon is stopping.
                    match fires.try_send(super::Emitted { fire, done: None }) {
                        Ok(()) | Err(TrySendError::Closed(_)) => {}
                        Err(TrySendError::Full(_)) => {
                            tracing::warn!(workflow = %wf, "cron fire dropped: the service is behind");
                            bus.metrics().trigger_fired(
                                TriggerKind::Cron.as_str(),
                                FireOutcome::Failed.as_str(),
                            );
                            let record = NewFire {
                                workflow: wf,
                                kind: TriggerKind::Cron,
                                scheduled_for: at,
                                outcome: FireOutcome::Failed,
                                detail: Some(
                                    "dropped: the daemon was too far behind to queue it".into(),
                                ),
                                run_id: None,
                            };
                            if let Err(e) = store.record_fire(record).await {
                                tracing::error!("cannot record a dropped cron fire: {e:#}");
                            }
                        }
                    }
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
}

/// Fires of each cron workflow missed while the daemon was down: recorded
/// as missed where the workflow's `catch_up` is `skip`; where it is `once`,
/// one fire for all of them, returned for the caller to submit before the
/// daemon is ready.
pub async fn catch_up(ctx: &Context) -> Result<Vec<Fire>> {
    let now = Utc::now();
    let mut fires = Vec::new();
    for good in ctx.workflows.good() {
        let wf = &good.workflow;
        let Some(cron) = &wf.trigger.cron else {
            continue;
        };
        let Some(last) = ctx.store.last_cron_fire(&wf.name).await? else {
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
        let (Some(&first), Some(&latest)) = (missed.first(), missed.last()) else {
            continue;
        };
        let detail = format!(
            "{} fire(s) missed while the daemon was down, from {first} to {latest}",
            missed.len(),
        );
        tracing::warn!(workflow = %wf.name, "{detail}");
        match wf.trigger.catch_up {
            CatchUp::Skip => {
                ctx.bus
                    .metrics()
                    .trigger_fired(TriggerKind::CatchUp.as_str(), FireOutcome::Missed.as_str());
                ctx.store
                    .record_fire(NewFire {
                        workflow: wf.name.to_string(),
                        kind: TriggerKind::CatchUp,
                        scheduled_for: latest,
                        outcome: FireOutcome::Missed,
                        detail: Some(format!("{detail}; catch_up = \"skip\"")),
                        run_id: None,
                    })
                    .await?;
            }
            CatchUp::Once => fires.push(Fire {
                workflow: wf.name.to_string(),
                kind: TriggerKind::CatchUp,
                at: latest,
                why: None,
            }),
        }
    }
    Ok(fires)
}
