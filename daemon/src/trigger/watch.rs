//! File-watch triggers: a change under a workflow's `trigger.watch` paths
//! fires it once things have been quiet for `trigger.debounce`.

use crate::service::Service;
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

struct Watching {
    paths: Vec<PathBuf>,
    debounce: Duration,
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct WatchTriggers {
    watching: Mutex<BTreeMap<String, Watching>>,
}

impl WatchTriggers {
    /// Make the watchers match the workflows' `trigger.watch`.
    pub fn sync(&self, service: &Arc<Service>) {
        let wanted: BTreeMap<String, (Vec<PathBuf>, Duration)> = service
            .workflows
            .entries()
            .into_iter()
            .filter_map(|e| e.good)
            .filter(|g| !g.workflow.trigger.watch.is_empty())
            .map(|g| {
                let t = &g.workflow.trigger;
                (g.workflow.name.clone(), (t.watch.clone(), t.debounce))
            })
            .collect();
        let mut watching = self.watching.lock().expect("watch table lock");
        watching.retain(|name, w| {
            let keep = wanted
                .get(name)
                .is_some_and(|(p, d)| *p == w.paths && *d == w.debounce);
            if !keep {
                w.task.abort();
            }
            keep
        });
        for (name, (paths, debounce)) in wanted {
            if watching.contains_key(&name) {
                continue;
            }
            match start(Arc::downgrade(service), &name, &paths, debounce) {
                Ok(w) => {
                    tracing::info!(workflow = %name, paths = ?paths, "watching for changes");
                    watching.insert(name, w);
                }
                Err(e) => tracing::error!(workflow = %name, "cannot watch: {e:#}"),
            }
        }
    }

    pub fn shutdown(&self) {
        for (_, w) in std::mem::take(&mut *self.watching.lock().expect("watch table lock")) {
            w.task.abort();
        }
    }
}

fn start(
    service: Weak<Service>,
    name: &str,
    paths: &[PathBuf],
    debounce: Duration,
) -> anyhow::Result<Watching> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && matches!(
                ev.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            )
        {
            let _ = tx.send(());
        }
    })?;
    for p in paths {
        watcher
            .watch(p, RecursiveMode::Recursive)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    }
    let wf = name.to_owned();
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait for quiet: every further change restarts the clock.
            while let Ok(Some(())) = tokio::time::timeout(debounce, rx.recv()).await {}
            let Some(service) = service.upgrade() else {
                return;
            };
            let _ = super::fire(&service, &wf, "watch", chrono::Utc::now()).await;
        }
    });
    Ok(Watching {
        paths: paths.to_vec(),
        debounce,
        _watcher: watcher,
        task,
    })
}
