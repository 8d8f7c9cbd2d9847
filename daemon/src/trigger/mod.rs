//! What starts runs on its own: cron schedules ([`cron`]), changes under
//! watched paths ([`watch`]) and condition scripts ([`condition`]). Each
//! decides when a workflow should run and *emits* a [`Fire`] on a channel;
//! what becomes of it — the concurrency policy, the queue, the record — is
//! the service's, which the composition root hands every fire to. People
//! fire runs through the service directly (`POST
//! /api/v1/workflows/{name}/runs`, `coach trigger`).
//!
//! Each kind follows the workflows in service: it subscribes to the
//! workflow set and brings its schedules, watchers and checks in line
//! after every reload. Every task it starts is tracked and ends with the
//! stop token it is given.

pub mod condition;
pub mod cron;
pub mod watch;

use crate::events::Bus;
use crate::plugin::PluginHost;
use crate::service::Fire;
use crate::store::Store;
use crate::workflow::set::WorkflowSet;
use anyhow::Result;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Fires waiting for the service, at most; a trigger that finds the
/// channel full waits.
pub const FIRE_BUFFER: usize = 1024;

/// A fire on its way to the service; `done` is told once the service has
/// acted on it (a trigger that must not fire again before then waits).
#[derive(Debug)]
pub struct Emitted {
    pub fire: Fire,
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Where triggers send their fires.
pub type Fires = mpsc::Sender<Emitted>;

/// What the triggers read and where they send what they decide.
#[derive(Clone)]
pub struct Context {
    pub workflows: Arc<WorkflowSet>,
    pub store: Store,
    pub host: Arc<PluginHost>,
    pub bus: Bus,
    pub fires: Fires,
    pub tracker: TaskTracker,
    pub stop: CancellationToken,
}

impl Context {
    /// Send `fire` to the service; false when nobody takes fires any more
    /// (the daemon is stopping).
    async fn emit(&self, fire: Fire) -> bool {
        let sent = Emitted { fire, done: None };
        tokio::select! {
            sent = self.fires.send(sent) => sent.is_ok(),
            () = self.stop.cancelled() => false,
        }
    }

    /// [`Context::emit`], and wait until the service has acted on it.
    async fn emit_and_wait(&self, fire: Fire) -> bool {
        let (done, acted) = tokio::sync::oneshot::channel();
        let sent = Emitted {
            fire,
            done: Some(done),
        };
        tokio::select! {
            sent = self.fires.send(sent) => if sent.is_err() { return false },
            () = self.stop.cancelled() => return false,
        }
        tokio::select! {
            acted = acted => acted.is_ok(),
            () = self.stop.cancelled() => false,
        }
    }
}

/// Start every kind of trigger: each follows the workflow set until
/// `ctx.stop`. Every trigger is armed when this returns, so a daemon that
/// says it is ready misses no change and no tick. (Cron fires missed while
/// the daemon was down are found by [`cron::catch_up`], before this.)
pub async fn start(ctx: Context) -> Result<()> {
    let crons = cron::CronTriggers::start().await?;
    follow(ctx.clone(), move |ctx| {
        let crons = crons.clone();
        async move { crons.sync(&ctx).await }
    })
    .await;
    let watches = Arc::new(watch::WatchTriggers::default());
    follow(ctx.clone(), move |ctx| {
        let watches = watches.clone();
        async move { watches.sync(&ctx) }
    })
    .await;
    let conditions = Arc::new(condition::ConditionTriggers::default());
    follow(ctx, move |ctx| {
        let conditions = conditions.clone();
        async move { conditions.sync(&ctx) }
    })
    .await;
    Ok(())
}

/// Run `sync` now, then after every change of the workflow set until
/// `ctx.stop`; then once more with nothing, so everything it started
/// stops.
async fn follow<F, Fut>(ctx: Context, sync: F)
where
    F: Fn(Context) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    // Subscribed first: a change during the first sync is not missed.
    let mut changes = ctx.workflows.subscribe();
    sync(ctx.clone()).await;
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = ctx.stop.cancelled() => break,
            }
            sync(ctx.clone()).await;
        }
        sync(ctx).await;
    });
}
