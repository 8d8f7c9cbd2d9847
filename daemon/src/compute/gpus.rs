//! The GPU queue: steps that need GPUs wait here for an allocation. Every
//! change (a request, a release, an inventory refresh) runs one pass of the
//! pure scheduler (`scheduler::gpu::plan`) over a snapshot and carries it
//! out: starts what it places (handing over the device indexes), flags the
//! leases it preempts, keeps the reason each other request waits, refuses
//! what can never fit.

use super::inventory::{Inventory, Probe};
use crate::config::GpuSettings;
use crate::core::sync::{Lock, ReadWrite};
use crate::scheduler::gpu::{self as plan, Allocation, Never, Priority, Request, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::oneshot;

/// What a step asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub gpus: u32,
    /// Bytes per GPU; 0: any.
    pub gpu_memory: u64,
    pub exclusive: bool,
    pub priority: Priority,
    pub queue: String,
    pub preemptible: bool,
    pub max_duration: Option<std::time::Duration>,
}

/// Whose request it is, for the queue listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Owner {
    pub run: i64,
    pub workflow: String,
    pub step: String,
}

struct Waiter {
    request: Request,
    owner: Owner,
    since: chrono::DateTime<chrono::Utc>,
    tx: oneshot::Sender<Result<Vec<String>, Never>>,
    preempt: Arc<AtomicBool>,
}

struct Running {
    alloc: Allocation,
    owner: Owner,
    since: chrono::DateTime<chrono::Utc>,
    preempt: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    next: u64,
    waiting: BTreeMap<u64, Waiter>,
    running: BTreeMap<u64, Running>,
    /// The last pass's verdict on each waiting request, in queue order.
    reasons: Vec<(u64, String)>,
}

/// One waiting request, as `coach queue` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueEntry {
    pub position: usize,
    pub job: u64,
    #[serde(flatten)]
    pub owner: Owner,
    pub gpus: u32,
    pub gpu_memory: u64,
    pub priority: &'static str,
    pub queue: String,
    pub waiting_since: chrono::DateTime<chrono::Utc>,
    pub reason: String,
}

/// One allocation, as `coach gpu` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AllocationEntry {
    pub job: u64,
    #[serde(flatten)]
    pub owner: Owner,
    pub devices: Vec<String>,
    pub exclusive: bool,
    pub gpu_memory: u64,
    pub queue: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

pub fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
        Priority::Critical => "critical",
    }
}

pub struct GpuQueue {
    node: String,
    probe: Probe,
    settings: RwLock<GpuSettings>,
    inventory: RwLock<Inventory>,
    state: Mutex<State>,
    /// Pids of the processes Coach started: their GPU memory is not foreign.
    ours: Mutex<BTreeSet<u32>>,
    epoch: Instant,
}

/// Devices held by a step; released (and the next pass run) when dropped.
pub struct Lease {
    queue: Arc<GpuQueue>,
    job: u64,
    pub devices: Vec<String>,
    /// Set when the scheduler wants the devices back for higher-priority
    /// work (only for preemptible steps).
    pub preempt: Arc<AtomicBool>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.queue.release(self.job);
    }
}

/// Removes a request whose step stopped waiting (cancelled).
struct Withdraw<'a> {
    queue: &'a GpuQueue,
    job: u64,
    armed: bool,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut st = self.queue.state.locked();
            st.waiting.remove(&self.job);
            st.reasons.retain(|(j, _)| *j != self.job);
        }
    }
}

impl GpuQueue {
    pub fn new(settings: GpuSettings) -> Arc<GpuQueue> {
        let probe = Probe::new(&settings);
        let inventory = probe.snapshot(&settings, &|_| false);
        tracing::info!(source = ?inventory.source, gpus = inventory.gpus.len(), "GPU inventory: {}", inventory.reason);
        Arc::new(GpuQueue {
            node: "local".into(),
            probe,
            settings: RwLock::new(settings),
            inventory: RwLock::new(inventory),
            state: Mutex::new(State::default()),
            ours: Mutex::new(BTreeSet::new()),
            epoch: Instant::now(),
        })
    }

    pub fn inventory(&self) -> Inventory {
        self.inventory.reading().clone()
    }

    /// Read the inventory again and run a pass (GPUs may have come back).
    pub fn refresh(&self) {
        let ours = self.ours.locked().clone();
        let settings = self.settings.reading().clone();
        let inv = self.probe.snapshot(&settings, &|pid| ours.contains(&pid));
        {
            let old = self.inventory.reading();
            for g in &inv.gpus {
                let was = old.gpus.iter().find(|o| o.index == g.index);
                if was.is_some_and(|o| o.healthy) && !g.healthy {
                    tracing::error!(gpu = %g.index, problem = g.problem.as_deref().unwrap_or(""), "GPU is unhealthy; nothing new is placed on it");
                }
            }
        }
        *self.inventory.writing() = inv;
        self.pass();
    }

    /// New `[gpus]` settings (a config reload): the inventory is read
    /// again under them.
    pub fn set_settings(&self, settings: GpuSettings) {
        *self.settings.writing() = settings;
        self.refresh();
    }

    pub fn refresh_every(&self) -> std::time::Duration {
        self.settings.reading().refresh
    }

    pub fn add_pid(&self, pid: u32) {
        self.ours.locked().insert(pid);
    }

    pub fn remove_pid(&self, pid: u32) {
        self.ours.locked().remove(&pid);
    }

    /// Why a step's resources can never be placed on this inventory, in
    /// words, if they cannot.
    pub fn never_message(&self, r: &crate::workflow::Resources) -> Option<String> {
        let inv = self.inventory();
        plan::never_fits(&inv.devices(&self.node), r.gpus, r.gpu_memory).map(|n| {
            let source = serde_json::to_value(inv.source).unwrap_or_default();
            format!(
                "can never run here: it {n} ({} inventory: {})",
                source.as_str().unwrap_or("?"),
                inv.reason
            )
        })
    }

    fn request(&self, job: u64, need: &Need) -> Request {
        Request {
            job,
            queue: need.queue.clone(),
            priority: need.priority,
            gpus: need.gpus,
            gpu_memory: need.gpu_memory,
            exclusive: need.exclusive,
            preemptible: need.preemptible,
            submitted: self.epoch.elapsed().as_secs(),
            max_duration: need.max_duration.map(|d| d.as_secs()),
        }
    }

    /// Wait for GPUs. Resolves when the scheduler places the request;
    /// fails at once when it can never fit. Dropping the future withdraws
    /// the request.
    pub async fn acquire(self: &Arc<Self>, owner: Owner, need: Need) -> Result<Lease, Never> {
        let (tx, rx) = oneshot::channel();
        let preempt = Arc::new(AtomicBool::new(false));
        let job = {
            let mut st = self.state.locked();
            st.next += 1;
            let job = st.next;
            st.waiting.insert(
                job,
                Waiter {
                    request: self.request(job, &need),
                    owner,
                    since: chrono::Utc::now(),
                    tx,
                    preempt: preempt.clone(),
                },
            );
            job
        };
        let mut withdraw = Withdraw {
            queue: self,
            job,
            armed: true,
        };
        self.pass();
        let result = rx.await.unwrap_or(Err(Never::TooManyGpus {
            needs: need.gpus,
            largest_node: 0,
        }));
        withdraw.armed = false;
        let devices = result?;
        Ok(Lease {
            queue: self.clone(),
            job,
            devices,
            preempt,
        })
    }

    fn release(&self, job: u64) {
        self.state.locked().running.remove(&job);
        self.pass();
    }

    /// One scheduling pass, carried out.
    pub fn pass(&self) {
        let devices = self.inventory().devices(&self.node);
        let settings = self.settings.reading().clone();
        let mut st = self.state.locked();
        let snapshot = Snapshot {
            now: self.epoch.elapsed().as_secs(),
            devices,
            running: st.running.values().map(|r| r.alloc.clone()).collect(),
            waiting: st.waiting.values().map(|w| w.request.clone()).collect(),
            quotas: settings.queues.clone(),
            aging: settings.aging.as_secs(),
        };
        let p = plan::plan(&snapshot);
        for (job, devices) in p.start {
            let Some(w) = st.waiting.remove(&job) else {
                continue;
            };
            let r = &w.request;
            let alloc = Allocation {
                job,
                queue: r.queue.clone(),
                priority: r.priority,
                preemptible: r.preemptible,
                exclusive: r.exclusive,
                devices: devices.clone(),
                gpu_memory: r.gpu_memory,
                started: snapshot.now,
                max_duration: r.max_duration,
            };
            tracing::info!(run = w.owner.run, step = %w.owner.step, devices = ?devices, "GPUs allocated");
            if w.tx.send(Ok(devices)).is_ok() {
                st.running.insert(
                    job,
                    Running {
                        alloc,
                        owner: w.owner,
                        since: chrono::Utc::now(),
                        preempt: w.preempt,
                    },
                );
            }
        }
        for (job, never) in p.rejected {
            if let Some(w) = st.waiting.remove(&job) {
                let _ = w.tx.send(Err(never));
            }
        }
        // The step holding a preempted lease stops its process (SIGTERM,
        // grace, SIGKILL) and asks again; its devices free on the way.
        for job in p.preempt {
            if let Some(r) = st.running.get(&job)
                && !r.preempt.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(run = r.owner.run, step = %r.owner.step, devices = ?r.alloc.devices, "preempting lower-priority work");
            }
        }
        st.reasons = p
            .waiting
            .into_iter()
            .map(|(job, why)| (job, why.to_string()))
            .collect();
    }

    /// Waiting requests in queue order, with why each waits.
    pub fn queue(&self) -> Vec<QueueEntry> {
        let st = self.state.locked();
        st.reasons
            .iter()
            .filter_map(|(job, reason)| st.waiting.get(job).map(|w| (w, reason)))
            .enumerate()
            .map(|(i, (w, reason))| QueueEntry {
                position: i + 1,
                job: w.request.job,
                owner: w.owner.clone(),
                gpus: w.request.gpus,
                gpu_memory: w.request.gpu_memory,
                priority: priority_name(w.request.priority),
                queue: w.request.queue.clone(),
                waiting_since: w.since,
                reason: reason.clone(),
            })
            .collect()
    }

    pub fn allocations(&self) -> Vec<AllocationEntry> {
        let st = self.state.locked();
        st.running
            .values()
            .map(|r| AllocationEntry {
                job: r.alloc.job,
                owner: r.owner.clone(),
                devices: r.alloc.devices.clone(),
                exclusive: r.alloc.exclusive,
                gpu_memory: r.alloc.gpu_memory,
                queue: r.alloc.queue.clone(),
                since: r.since,
            })
            .collect()
    }
}
