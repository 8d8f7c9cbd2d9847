//! The GPU inventory: what the machine has, from NVML (through
//! nvml-wrapper), from a `static` list in the config (for machines without
//! a driver, for tests, or to declare GPUs by hand), or none — and which of
//! these it is, and why.
//!
//! NVML is initialised once for the process's life; a snapshot is taken on
//! every refresh. Memory used by processes Coach did not start counts as
//! taken; a device with uncorrected ECC errors or that NVML lost is
//! unhealthy and drained (nothing new is placed on it).

pub mod nvml;

use crate::config::{GpuSettings, InventoryKind};
use crate::scheduler::gpu::Device;
use serde::Serialize;

/// One schedulable GPU: a whole device, or a MIG instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpu {
    /// Index as `CUDA_VISIBLE_DEVICES` takes it (a MIG instance: its UUID).
    pub index: String,
    pub uuid: String,
    pub name: String,
    pub memory_total: u64,
    pub memory_used: u64,
    /// Used by processes Coach did not start.
    pub memory_foreign: u64,
    /// Percent, when the driver reports it.
    pub utilization: Option<u32>,
    pub processes: Vec<GpuProcess>,
    /// `Some(parent index)` for a MIG instance.
    pub mig_parent: Option<u32>,
    pub healthy: bool,
    /// Why it is unhealthy.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuProcess {
    pub pid: u32,
    pub memory: u64,
}

/// Where the inventory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Nvml,
    Static,
    None,
}

/// The inventory at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub source: Source,
    /// Why this source (e.g. why NVML is not used).
    pub reason: String,
    pub driver: Option<String>,
    pub gpus: Vec<Gpu>,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Inventory {
    /// The devices as the scheduler sees them: all on this node; memory
    /// used by processes not started by Coach is taken.
    pub fn devices(&self, node: &str) -> Vec<Device> {
        self.gpus
            .iter()
            .map(|g| Device {
                id: g.index.clone(),
                node: node.to_owned(),
                memory: g.memory_total,
                foreign_used: g.memory_foreign,
                healthy: g.healthy,
            })
            .collect()
    }
}

/// Takes inventory snapshots.
pub struct Probe {
    nvml: Option<nvml::Nvml>,
    /// Why NVML is not used, when it is not.
    nvml_problem: Option<String>,
}

impl Probe {
    /// Start NVML when the settings allow it (`auto`, `nvml`).
    pub fn new(settings: &GpuSettings) -> Probe {
        let (nvml, nvml_problem) = match settings.inventory {
            InventoryKind::Auto | InventoryKind::Nvml => match nvml::Nvml::start() {
                Ok(n) => (Some(n), None),
                Err(e) => (None, Some(e)),
            },
            InventoryKind::Static => (None, Some("the config asks for a static inventory".into())),
            InventoryKind::None => (None, Some("the config turns GPUs off".into())),
        };
        Probe { nvml, nvml_problem }
    }

    /// A snapshot now, under `settings` (a reloaded config may declare
    /// other static GPUs). `ours` says whether a pid is a process Coach
    /// started (its GPU memory is not foreign).
    pub fn snapshot(&self, settings: &GpuSettings, ours: &dyn Fn(u32) -> bool) -> Inventory {
        let at = chrono::Utc::now();
        if let Some(n) = &self.nvml {
            return match n.gpus(ours) {
                Ok(gpus) => Inventory {
                    source: Source::Nvml,
                    reason: format!("NVML reports {} GPU(s)", gpus.len()),
                    driver: n.driver.clone(),
                    gpus,
                    at,
                },
                Err(e) => Inventory {
                    source: Source::Nvml,
                    reason: format!("NVML could not be read: {e}"),
                    driver: n.driver.clone(),
                    gpus: Vec::new(),
                    at,
                },
            };
        }
        let why = self.nvml_problem.clone().unwrap_or_default();
        match settings.inventory {
            InventoryKind::None => Inventory {
                source: Source::None,
                reason: why,
                driver: None,
                gpus: Vec::new(),
                at,
            },
            _ if !settings.devices.is_empty() => Inventory {
                source: Source::Static,
                reason: match settings.inventory {
                    InventoryKind::Static => why,
                    _ => format!("no NVML ({why}); using the GPUs declared in `[gpus]`"),
                },
                driver: None,
                gpus: settings
                    .devices
                    .iter()
                    .enumerate()
                    .map(|(i, d)| Gpu {
                        index: i.to_string(),
                        uuid: format!("static-{i}"),
                        name: d.name.clone(),
                        memory_total: d.memory,
                        memory_used: 0,
                        memory_foreign: 0,
                        utilization: None,
                        processes: Vec::new(),
                        mig_parent: None,
                        healthy: d.healthy,
                        problem: (!d.healthy).then(|| "declared unhealthy".to_owned()),
                    })
                    .collect(),
                at,
            },
            _ => Inventory {
                source: Source::None,
                reason: format!("no NVML ({why}) and no GPUs declared in `[gpus]`"),
                driver: None,
                gpus: Vec::new(),
                at,
            },
        }
    }
}
