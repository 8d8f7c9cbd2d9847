//! GPU placement: a pure function from a snapshot (waiting requests, the
//! GPU inventory, running allocations, per-queue quotas) to a plan — which
//! requests start on which devices, which running work is preempted, and
//! why everything else waits. No I/O; the executor carries the plan out.
//!
//! Order: priority class (`low` < `normal` < `high` < `critical`), raised
//! one class per `aging` of waiting up to `high`, so nothing starves and
//! `critical` keeps its meaning; within a class, the queue furthest below
//! its weighted fair share first; then oldest first.
//!
//! Placement: all of a request's GPUs on one node or none (gang).
//! Exclusive requests take whole idle devices; shared ones are packed by
//! GPU memory onto the fullest devices that still fit (best fit), leaving
//! whole devices free for exclusive work.
//!
//! Quotas: a queue may use its nominal GPUs, and borrow GPUs other queues
//! leave idle when it may borrow (Kueue's cohorts, simplified).
//!
//! The first request that cannot be placed is the *head*: it reserves the
//! time its GPUs will be free (from running work's declared maximum
//! durations). Requests behind it start only where they do not delay it —
//! they fit now and declare a maximum duration that ends before that time
//! (EASY backfill). If the head outranks running work marked preemptible
//! and stopping that work would let it start, that work is preempted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A priority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Low = 0,
    Normal = 1,
    High = 2,
    Critical = 3,
}

impl Priority {
    /// `low`, `normal`, `high` or `critical`.
    pub fn parse(s: &str) -> Option<Priority> {
        Some(match s {
            "low" => Priority::Low,
            "normal" => Priority::Normal,
            "high" => Priority::High,
            "critical" => Priority::Critical,
            _ => return None,
        })
    }
}

/// A schedulable GPU (a whole device, or a MIG instance).
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Stable id (UUID, or `node/index` for a static inventory).
    pub id: String,
    pub node: String,
    /// Bytes of GPU memory.
    pub memory: u64,
    /// Memory used by processes Coach did not start (counts as taken).
    pub foreign_used: u64,
    /// An unhealthy device is drained: nothing new is placed on it.
    pub healthy: bool,
}

/// `nodes` nodes of `per_node` healthy devices of `memory` bytes each, ids
/// `n<node>/<index>` (a simulated or static cluster).
pub fn uniform_cluster(nodes: u32, per_node: u32, memory: u64) -> Vec<Device> {
    (0..nodes)
        .flat_map(|n| {
            (0..per_node).map(move |i| Device {
                id: format!("n{n}/{i}"),
                node: format!("n{n}"),
                memory,
                foreign_used: 0,
                healthy: true,
            })
        })
        .collect()
}

/// What a waiting step asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub job: u64,
    pub queue: String,
    pub priority: Priority,
    pub gpus: u32,
    /// Per GPU; for shared placement. 0: any.
    pub gpu_memory: u64,
    pub exclusive: bool,
    pub preemptible: bool,
    /// Seconds, on the snapshot's clock.
    pub submitted: u64,
    /// Declared maximum run time in seconds (needed for backfill).
    pub max_duration: Option<u64>,
}

/// Running work and where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub job: u64,
    pub queue: String,
    pub priority: Priority,
    pub preemptible: bool,
    pub exclusive: bool,
    /// Device ids; each with the memory taken on it (shared) or all of it.
    pub devices: Vec<String>,
    pub gpu_memory: u64,
    pub started: u64,
    pub max_duration: Option<u64>,
}

/// A queue's share.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// Relative weight for fair share.
    pub weight: f64,
    /// GPUs the queue may use as its own.
    pub gpus: u32,
    /// Whether it may use GPUs other queues leave idle.
    pub borrow: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub now: u64,
    pub devices: Vec<Device>,
    pub running: Vec<Allocation>,
    pub waiting: Vec<Request>,
    /// Queues without an entry have weight 1, no quota limit.
    pub quotas: BTreeMap<String, Quota>,
    /// Seconds of waiting that raise a request one priority class; 0: never.
    pub aging: u64,
}

/// Why a request is not started now.
#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    /// Not enough free GPUs on any one node.
    Capacity { needs: u32, most_free: u32 },
    /// Its queue would go over its quota.
    OverQuota {
        queue: String,
        quota: u32,
        used: u32,
    },
    /// Starting it would delay the head request.
    Reserved { head: u64 },
    /// Lower-priority work is being preempted for it.
    Preempting { jobs: Vec<u64> },
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Capacity { needs, most_free } => write!(
                f,
                "needs {needs} GPU{} on one node, {most_free} free",
                if *needs == 1 { "" } else { "s" }
            ),
            Wait::OverQuota { queue, quota, used } => write!(
                f,
                "queue `{queue}` over quota ({used} of {quota} GPUs in use)"
            ),
            Wait::Reserved { head } => {
                write!(f, "GPUs reserved for job {head}, which waits longer")
            }
            Wait::Preempting { jobs } => write!(
                f,
                "preempting lower-priority job{} {}",
                if jobs.len() == 1 { "" } else { "s" },
                jobs.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Why a request can never run here.
#[derive(Debug, Clone, PartialEq)]
pub enum Never {
    TooManyGpus { needs: u32, largest_node: u32 },
    TooMuchMemory { needs: u64, largest_device: u64 },
}

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
        match self {
            Never::TooManyGpus {
                needs,
                largest_node: 0,
            } => write!(
                f,
                "needs {needs} GPU{}; there are no healthy GPUs",
                if *needs == 1 { "" } else { "s" }
            ),
            Never::TooManyGpus {
                needs,
                largest_node,
            } => write!(
                f,
                "needs {needs} GPUs on one node; the largest node has {largest_node} healthy"
            ),
            Never::TooMuchMemory {
                needs,
                largest_device,
            } => write!(
                f,
                "needs {} of GPU memory per GPU; the largest GPU has {}",
                gib(*needs),
                gib(*largest_device)
            ),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Requests to start, with their devices, in order.
    pub start: Vec<(u64, Vec<String>)>,
    /// Running jobs to stop (SIGTERM, grace, requeue).
    pub preempt: Vec<u64>,
    /// Requests that wait, with why, in queue order (the position).
    pub waiting: Vec<(u64, Wait)>,
    /// Requests that can never fit this inventory.
    pub rejected: Vec<(u64, Never)>,
}

/// Free capacity while planning.
#[derive(Clone)]
struct Free {
    /// Device id → (node, free memory, allocations on it, healthy).
    devices: BTreeMap<String, (String, u64, u32, bool)>,
}

impl Free {
    fn new(s: &Snapshot) -> Free {
        let mut devices: BTreeMap<String, (String, u64, u32, bool)> = s
            .devices
            .iter()
            .map(|d| {
                (
                    d.id.clone(),
                    (
                        d.node.clone(),
                        d.memory.saturating_sub(d.foreign_used),
                        u32::from(d.foreign_used > 0),
                        d.healthy,
                    ),
                )
            })
            .collect();
        for a in &s.running {
            for id in &a.devices {
                if let Some(d) = devices.get_mut(id) {
                    d.1 = if a.exclusive {
                        0
                    } else {
                        d.1.saturating_sub(a.gpu_memory)
                    };
                    d.2 += 1;
                }
            }
        }
        Free { devices }
    }

    /// Devices for `r` on one node, or the most it could get on any node.
    fn place(&self, r: &Request) -> Result<Vec<String>, u32> {
        let mut by_node: BTreeMap<&str, Vec<(&String, u64)>> = BTreeMap::new();
        for (id, (node, free, users, healthy)) in &self.devices {
            let fits = *healthy
                && if r.exclusive {
                    *users == 0
                } else {
                    *free >= r.gpu_memory.max(1)
                };
            if fits {
                by_node.entry(node).or_default().push((id, *free));
            }
        }
        let mut best: Option<(u64, Vec<String>)> = None;
        let mut most = 0;
        for candidates in by_node.values_mut() {
            most = most.max(candidates.len() as u32);
            if candidates.len() < r.gpus as usize {
                continue;
            }
            // Best fit: the fullest devices that still fit.
            candidates.sort_by_key(|(id, free)| (*free, (*id).clone()));
            let chosen: Vec<(&String, u64)> = candidates[..r.gpus as usize].to_vec();
            let waste: u64 = chosen.iter().map(|(_, f)| f - r.gpu_memory.min(*f)).sum();
            if best.as_ref().is_none_or(|(w, _)| waste < *w) {
                best = Some((waste, chosen.iter().map(|(id, _)| (*id).clone()).collect()));
            }
        }
        best.map(|(_, ids)| ids).ok_or(most)
    }

    fn take(&mut self, r: &Request, ids: &[String]) {
        for id in ids {
            if let Some(d) = self.devices.get_mut(id) {
                d.1 = if r.exclusive {
                    0
                } else {
                    d.1.saturating_sub(r.gpu_memory)
                };
                d.2 += 1;
            }
        }
    }

    fn release(&mut self, a: &Allocation, s: &Snapshot) {
        for id in &a.devices {
            if let (Some(d), Some(dev)) = (
                self.devices.get_mut(id),
                s.devices.iter().find(|x| &x.id == id),
            ) {
                d.1 = if a.exclusive {
                    dev.memory.saturating_sub(dev.foreign_used)
                } else {
                    (d.1 + a.gpu_memory).min(dev.memory)
                };
                d.2 = d.2.saturating_sub(1);
            }
        }
    }
}

/// The class a request competes in: its own, raised one class per `aging`
/// of waiting — up to `high`, never to `critical`, which stays for work
/// declared critical (otherwise, in a saturated cluster, everything old
/// would be critical and the classes would mean nothing).
fn effective(r: &Request, s: &Snapshot) -> Priority {
    if s.aging == 0 || r.priority >= Priority::High {
        return r.priority;
    }
    let raised = r.priority as u64 + s.now.saturating_sub(r.submitted) / s.aging;
    match raised.min(2) {
        0 => Priority::Low,
        1 => Priority::Normal,
        _ => Priority::High,
    }
}

/// The largest request the devices could ever hold.
struct Largest {
    /// Healthy devices on the fullest node.
    node: u32,
    /// Bytes of the largest device.
    device: u64,
}

impl Largest {
    fn of(devices: &[Device]) -> Largest {
        let mut per: BTreeMap<&str, u32> = BTreeMap::new();
        for d in devices.iter().filter(|d| d.healthy) {
            *per.entry(&d.node).or_default() += 1;
        }
        Largest {
            node: per.values().copied().max().unwrap_or(0),
            device: devices.iter().map(|d| d.memory).max().unwrap_or(0),
        }
    }

    fn never(&self, gpus: u32, gpu_memory: u64) -> Option<Never> {
        if gpus > self.node {
            return Some(Never::TooManyGpus {
                needs: gpus,
                largest_node: self.node,
            });
        }
        (gpu_memory > self.device).then_some(Never::TooMuchMemory {
            needs: gpu_memory,
            largest_device: self.device,
        })
    }
}

/// Why `gpus` GPUs with `gpu_memory` bytes each can never be placed on
/// `devices` (the healthy ones), if they cannot.
pub fn never_fits(devices: &[Device], gpus: u32, gpu_memory: u64) -> Option<Never> {
    Largest::of(devices).never(gpus, gpu_memory)
}

/// Plan one scheduling pass.
pub fn plan(s: &Snapshot) -> Plan {
    let mut out = Plan::default();
    let mut free = Free::new(s);
    let largest = Largest::of(&s.devices);
    // GPUs in use per queue, and the fair-share order key.
    let mut used: BTreeMap<String, u32> = BTreeMap::new();
    for a in &s.running {
        *used.entry(a.queue.clone()).or_default() += a.devices.len() as u32;
    }
    let weight = |q: &str| s.quotas.get(q).map(|x| x.weight).unwrap_or(1.0).max(1e-9);
    // A queue's fair share of the healthy GPUs is its weight over the
    // weights of the queues with work; the one furthest below it goes first.
    let active: BTreeSet<&str> = s
        .waiting
        .iter()
        .map(|r| r.queue.as_str())
        .chain(s.running.iter().map(|a| a.queue.as_str()))
        .collect();
    let total_weight: f64 = active.iter().map(|q| weight(q)).sum();
    let capacity = s.devices.iter().filter(|d| d.healthy).count() as f64;
    let over_share =
        |q: &str| *used.get(q).unwrap_or(&0) as f64 - capacity * weight(q) / total_weight.max(1e-9);
    let mut order: Vec<&Request> = s.waiting.iter().collect();
    order.sort_by(|a, b| {
        effective(b, s)
            .cmp(&effective(a, s))
            .then_with(|| over_share(&a.queue).total_cmp(&over_share(&b.queue)))
            .then(a.submitted.cmp(&b.submitted))
            .then(a.job.cmp(&b.job))
    });
    // Saturating: a queue without a GPU limit has `u32::MAX`.
    let total_quota: u32 = s
        .quotas
        .values()
        .fold(0u32, |a, q| a.saturating_add(q.gpus));
    let healthy_gpus = s.devices.iter().filter(|d| d.healthy).count() as u32;
    // The head: when its GPUs are expected free (None: unknown).
    let mut head: Option<(u64, Option<u64>)> = None;
    let mut preempted: BTreeSet<u64> = BTreeSet::new();
    for r in order {
        if let Some(never) = largest.never(r.gpus, r.gpu_memory) {
            out.rejected.push((r.job, never));
            continue;
        }
        let in_use = *used.get(&r.queue).unwrap_or(&0);
        if let Some(q) = s.quotas.get(&r.queue) {
            // Idle quota of the other queues may be borrowed.
            let others_idle = total_quota
                .min(healthy_gpus)
                .saturating_sub(q.gpus)
                .saturating_sub(
                    used.iter()
                        .filter(|(name, _)| *name != &r.queue)
                        .map(|(_, n)| *n)
                        .sum(),
                );
            let limit = q
                .gpus
                .saturating_add(if q.borrow { others_idle } else { 0 });
            if in_use + r.gpus > limit {
                out.waiting.push((
                    r.job,
                    Wait::OverQuota {
                        queue: r.queue.clone(),
                        quota: q.gpus,
                        used: in_use,
                    },
                ));
                continue;
            }
        }
        if let Some((head_job, reserved_until)) = head {
            // Backfill only what ends before the head's GPUs are free.
            let ends_in_time = match (r.max_duration, reserved_until) {
                (Some(d), Some(t)) => s.now + d <= t,
                _ => false,
            };
            if !ends_in_time {
                out.waiting.push((r.job, Wait::Reserved { head: head_job }));
                continue;
            }
        }
        match free.place(r) {
            Ok(ids) => {
                free.take(r, &ids);
                *used.entry(r.queue.clone()).or_default() += r.gpus;
                out.start.push((r.job, ids));
            }
            Err(most_free) => {
                if head.is_none() {
                    // Preempt lower-priority preemptible work, lowest and
                    // newest first, if that makes room.
                    let mut victims: Vec<&Allocation> = s
                        .running
                        .iter()
                        .filter(|a| a.preemptible && a.priority < effective(r, s))
                        .collect();
                    victims.sort_by_key(|a| (a.priority, std::cmp::Reverse(a.started)));
                    let mut trial = free.clone();
                    let mut chosen = Vec::new();
                    for v in victims {
                        trial.release(v, s);
                        chosen.push(v.job);
                        if trial.place(r).is_ok() {
                            break;
                        }
                    }
                    if !chosen.is_empty() && trial.place(r).is_ok() {
                        preempted.extend(chosen.iter().copied());
                        out.waiting.push((r.job, Wait::Preempting { jobs: chosen }));
                        head = Some((r.job, None));
                        continue;
                    }
                    // When will its GPUs be free? The latest end among
                    // running work, if every one declared a duration.
                    let ends: Option<Vec<u64>> = s
                        .running
                        .iter()
                        .map(|a| a.max_duration.map(|d| a.started + d))
                        .collect();
                    head = Some((r.job, ends.map(|e| e.into_iter().max().unwrap_or(s.now))));
                }
                out.waiting.push((
                    r.job,
                    Wait::Capacity {
                        needs: r.gpus,
                        most_free,
                    },
                ));
            }
        }
    }
    out.preempt = preempted.into_iter().collect();
    out
}

#[cfg(test)]
mod tests;
