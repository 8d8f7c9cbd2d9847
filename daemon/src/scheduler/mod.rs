//! Pure decisions: which queued runs start now, and ([`gpu`]) where GPU
//! work is placed. No I/O; the executor feeds it a snapshot and carries out
//! the plan.
//!
//! Rules: oldest first; at most `capacity` runs at once; a workflow whose
//! concurrency is `queue` or `forbid` runs one at a time; `allow` runs beside
//! itself. A run that cannot start keeps its place (runs of other workflows
//! behind it may start).

pub mod gpu;

use crate::core::policy::Concurrency;
use std::collections::{BTreeMap, BTreeSet};

/// A queued run, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub run: i64,
    pub workflow: String,
}

/// What the scheduler decides from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Oldest first.
    pub queued: Vec<Queued>,
    /// Workflows of the runs executing now (one entry per run).
    pub running: Vec<String>,
    pub policies: BTreeMap<String, Concurrency>,
    pub capacity: usize,
}

/// Why a queued run is not started now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Every slot is taken.
    Capacity { running: usize, capacity: usize },
    /// A run of the same workflow is running (concurrency `queue`).
    Serial,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Capacity { running, capacity } => {
                write!(f, "{running} of {capacity} run slots are busy")
            }
            Wait::Serial => f.write_str("a run of the same workflow is running"),
        }
    }
}

/// The runs to start now, in order, and why each other queued run waits.
pub fn plan(s: &Snapshot) -> (Vec<i64>, Vec<(i64, Wait)>) {
    let mut busy: BTreeSet<&str> = s.running.iter().map(String::as_str).collect();
    let mut slots = s.capacity.saturating_sub(s.running.len());
    let mut start = Vec::new();
    let mut waiting = Vec::new();
    for q in &s.queued {
        let policy = s.policies.get(&q.workflow).copied().unwrap_or_default();
        let serial = policy != Concurrency::Allow;
        if serial && busy.contains(q.workflow.as_str()) {
            waiting.push((q.run, Wait::Serial));
            continue;
        }
        if slots == 0 {
            waiting.push((
                q.run,
                Wait::Capacity {
                    running: s.capacity,
                    capacity: s.capacity,
                },
            ));
            continue;
        }
        slots -= 1;
        busy.insert(q.workflow.as_str());
        start.push(q.run);
    }
    (start, waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(run: i64, workflow: &str) -> Queued {
        Queued {
            run,
            workflow: workflow.into(),
        }
    }

    #[test]
    fn oldest_first_within_capacity() {
        let s = Snapshot {
            queued: vec![q(1, "a"), q(2, "b"), q(3, "c")],
            capacity: 2,
            ..Default::default()
        };
        let (start, waiting) = plan(&s);
        assert_eq!(start, vec![1, 2]);
        assert_eq!(
            waiting,
            vec![(
                3,
                Wait::Capacity {
                    running: 2,
                    capacity: 2
                }
            )]
        );
    }

    #[test]
    fn queue_policy_runs_one_at_a_time_and_lets_others_pass() {
        let s = Snapshot {
            queued: vec![q(2, "a"), q(3, "a"), q(4, "b")],
            running: vec!["a".into()],
            capacity: 3,
            ..Default::default()
        };
        let (start, waiting) = plan(&s);
        assert_eq!(start, vec![4]);
        assert_eq!(waiting, vec![(2, Wait::Serial), (3, Wait::Serial)]);
    }

    #[test]
    fn allow_policy_runs_beside_itself() {
        let s = Snapshot {
            queued: vec![q(2, "a"), q(3, "a")],
            running: vec!["a".into()],
            policies: [("a".to_owned(), Concurrency::Allow)].into(),
            capacity: 3,
        };
        assert_eq!(plan(&s).0, vec![2, 3]);
    }

    #[test]
    fn full_capacity_starts_nothing() {
        let s = Snapshot {
            queued: vec![q(5, "x")],
            running: vec!["a".into(), "b".into()],
            capacity: 2,
            ..Default::default()
        };
        assert!(plan(&s).0.is_empty());
    }
}
