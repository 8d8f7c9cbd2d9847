//! File-watch triggers: a change under a workflow's `trigger.watch` paths
//! fires it once things have been quiet for `trigger.debounce`.

use super::Context;
use crate::core::state::TriggerKind;
use crate::core::sync::Lock;
use crate::service::Fire;
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Changes a watcher holds before the debouncer reads them; more in one
/// burst carry nothing new (any change restarts the quiet period).
const CHANGE_BUFFER: usize = 64;

struct Watching {
    paths: Vec<PathBuf>,
    debounce: Duration,
    _watcher: notify::RecommendedWatcher,
    stop: CancellationToken,
}

#[derive(Default)]
pub struct WatchTriggers {
    watching: Mutex<BTreeMap<String, Watching>>,
}

impl WatchTriggers {
    /// Make the watchers match the workflows' `trigger.watch`; once
    /// stopping, drop them all.
    pub fn sync(&self, ctx: &Context) {
        let wanted: BTreeMap<String, (Vec<PathBuf>, Duration)> = if ctx.stop.is_cancelled() {
            BTreeMap::new()
        } else {
            ctx.workflows
                .good()
                .into_iter()
                .filter(|g| !g.workflow.trigger.watch.is_empty())
                .map(|g| {
                    let t = &g.workflow.trigger;
                    (g.workflow.name.to_string(), (t.watch.clone(), t.debounce))
                })
                .collect()
        };
        let mut watching = self.watching.locked();
        watching.retain(|name, w| {
            let keep = wanted
                .get(name)
                .is_some_and(|(p, d)| *p == w.paths && *d == w.debounce);
            if !keep {
                w.stop.cancel();
            }
            keep
        });
        for (name, (paths, debounce)) in wanted {
            if watching.contains_key(&name) {
                continue;
            }
            match start(ctx, &name, &paths, debounce) {
                Ok(w) => {
                    tracing::info!(workflow = %name, paths = ?paths, "watching for changes");
                    watching.insert(name, w);
                }
                Err(e) => tracing::error!(workflow = %name, "cannot watch: {e:#}"),
            }
        }
    }
}

fn start(
    ctx: &Context,
    name: &str,
    paths: &[PathBuf],
    debounce: Duration,
) -> anyhow::Result<Watching> {
    let (tx, mut rx) = mpsc::channel::<()>(CHANGE_BUFFER);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && matches!(
                ev.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            )
        {
            // Full: a change is already waiting, which is all that counts.
            let _ = tx.try_send(());
        }
    })?;
    for p in paths {
        watcher
            .watch(p, RecursiveMode::Recursive)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    }
    let stop = ctx.stop.child_token();
    let (task_stop, ctx, wf) = (stop.clone(), ctx.clone(), name.to_owned());
    ctx.tracker.clone().spawn(async move {
        loop {
            tokio::select! {
                change = rx.recv() => if change.is_none() { return },
                () = task_stop.cancelled() => return,
            }
            // Wait for quiet: every further change restarts the clock.
            loop {
                tokio::select! {
                    more = tokio::time::timeout(debounce, rx.recv()) => match more {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    },
                    () = task_stop.cancelled() => return,
                }
            }
            if !ctx.emit(Fire::now(&wf, TriggerKind::Watch)).await {
                return;
            }
        }
    });
    Ok(Watching {
        paths: paths.to_vec(),
        debounce,
        _watcher: watcher,
        stop,
    })
}
