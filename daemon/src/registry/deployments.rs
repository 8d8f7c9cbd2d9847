//! Deployments as every face shows them ([`DeploymentView`],
//! [`HistoryEntry`]: versions, not only row ids), and where a rollback
//! goes.

use crate::store::deployments::{DeploymentRow, HistoryRow};
use crate::store::{ModelRow, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// A model version, as a deployment names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRef {
    /// The model's id.
    pub id: i64,
    pub version: i32,
}

/// One environment of one model name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentView {
    pub model: String,
    pub environment: String,
    pub serving: VersionRef,
    pub revision: i64,
    pub since: DateTime<Utc>,
}

/// One change in a deployment's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub model: String,
    pub environment: String,
    pub from: Option<VersionRef>,
    pub to: VersionRef,
    pub action: String,
    pub how: String,
    pub actor: String,
    pub reason: Option<String>,
    pub run: Option<i64>,
    pub at: DateTime<Utc>,
}

/// Model ids to versions, for the rows at hand.
async fn versions(store: &Store, ids: impl Iterator<Item = i64>) -> Result<BTreeMap<i64, i32>> {
    let ids: Vec<i64> = ids.collect();
    Ok(store
        .models_by_id(&ids)
        .await?
        .into_iter()
        .map(|m| (m.id, m.version))
        .collect())
}

fn version_ref(versions: &BTreeMap<i64, i32>, id: i64) -> VersionRef {
    VersionRef {
        id,
        version: versions.get(&id).copied().unwrap_or(0),
    }
}

pub async fn deployment_views(
    store: &Store,
    rows: Vec<DeploymentRow>,
) -> Result<Vec<DeploymentView>> {
    let v = versions(store, rows.iter().map(|d| d.model_id)).await?;
    Ok(rows
        .into_iter()
        .map(|d| DeploymentView {
            serving: version_ref(&v, d.model_id),
            model: d.model_name,
            environment: d.environment,
            revision: d.revision,
            since: d.updated_at,
        })
        .collect())
}

pub async fn history_entries(store: &Store, rows: Vec<HistoryRow>) -> Result<Vec<HistoryEntry>> {
    let ids = rows
        .iter()
        .flat_map(|h| std::iter::once(h.to_model_id).chain(h.from_model_id));
    let v = versions(store, ids).await?;
    Ok(rows
        .into_iter()
        .map(|h| HistoryEntry {
            id: h.id,
            from: h.from_model_id.map(|id| version_ref(&v, id)),
            to: version_ref(&v, h.to_model_id),
            model: h.model_name,
            environment: h.environment,
            action: h.action,
            how: h.how,
            actor: h.actor,
            reason: h.reason,
            run: h.run_id,
            at: h.at,
        })
        .collect())
}

/// Where a rollback without `--to` goes: the version served before the
/// current one was deployed. The history is replayed oldest first as a
/// stack — a deploy pushes its version, a rollback pops back to its — so
/// rolling back twice goes back two deploys, not back and forth. `None`
/// when nothing came before.
pub fn rollback_target(history_newest_first: &[HistoryRow]) -> Option<i64> {
    let mut stack: Vec<i64> = Vec::new();
    for h in history_newest_first.iter().rev() {
        // A traffic split moves no deployment.
        if h.action == "split" {
            continue;
        }
        if h.action == "rollback"
            && let Some(at) = stack.iter().rposition(|&m| m == h.to_model_id)
        {
            stack.truncate(at + 1);
            continue;
        }
        // A first deployment, a deploy, or a rollback to a version that
        // was never served here (`--to`): each makes it the top.
        if stack.last() != Some(&h.to_model_id) {
            stack.push(h.to_model_id);
        }
    }
    stack.len().checked_sub(2).map(|i| stack[i])
}

/// Whether a model can be served: a trainer plugin's model, not the
/// files of a process step.
pub fn servable(m: &ModelRow) -> Result<(), String> {
    if m.trainer_plugin == super::PROCESS_TRAINER {
        return Err(format!(
            "model {} ({} v{}) is the files of a process step, which Coach cannot load and serve",
            m.id, m.name, m.version
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, from: Option<i64>, to: i64, action: &str) -> HistoryRow {
        HistoryRow {
            id,
            model_name: "m".into(),
            environment: "production".into(),
            from_model_id: from,
            to_model_id: to,
            action: action.into(),
            how: "manual".into(),
            actor: "t".into(),
            reason: None,
            run_id: None,
            at: Utc::now(),
        }
    }

    fn newest_first(mut rows: Vec<HistoryRow>) -> Vec<HistoryRow> {
        rows.reverse();
        rows
    }

    #[test]
    fn rollbacks_walk_back_through_the_deploys() {
        let mut h = vec![
            row(1, None, 10, "deploy"),
            row(2, Some(10), 20, "deploy"),
            row(3, Some(20), 30, "deploy"),
        ];
        assert_eq!(rollback_target(&newest_first(h.clone())), Some(20));
        h.push(row(4, Some(30), 20, "rollback"));
        assert_eq!(rollback_target(&newest_first(h.clone())), Some(10));
        h.push(row(5, Some(20), 10, "rollback"));
        assert_eq!(rollback_target(&newest_first(h.clone())), None);
        // Deploying again after rolling back starts from where it is.
        h.push(row(6, Some(10), 40, "deploy"));
        assert_eq!(rollback_target(&newest_first(h)), Some(10));
    }

    #[test]
    fn an_experiment_between_deploys_changes_no_target() {
        let h = vec![
            row(1, None, 10, "deploy"),
            row(2, Some(10), 20, "deploy"),
            row(3, Some(20), 30, "split"),
            // The experiment rolled its treatment back: 20 still serves.
            row(4, Some(30), 20, "rollback"),
        ];
        assert_eq!(rollback_target(&newest_first(h.clone())), Some(10));
        let mut promoted = h[..3].to_vec();
        promoted.push(row(4, Some(20), 30, "deploy"));
        assert_eq!(rollback_target(&newest_first(promoted)), Some(20));
    }

    #[test]
    fn a_rollback_to_a_version_never_served_there_counts_as_a_deploy() {
        let h = vec![row(1, None, 10, "deploy"), row(2, Some(10), 5, "rollback")];
        assert_eq!(rollback_target(&newest_first(h)), Some(10));
        assert_eq!(rollback_target(&[]), None);
        assert_eq!(rollback_target(&[row(1, None, 10, "deploy")]), None);
    }
}
