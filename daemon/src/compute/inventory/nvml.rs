//! The NVML probe (nvml-wrapper). `libnvidia-ml` is loaded once, at start;
//! each snapshot asks it again for memory, utilisation, processes, MIG
//! instances and ECC health. A query the device does not support leaves
//! that field out; a lost GPU is unhealthy.

use super::{Gpu, GpuProcess};
use nvml_wrapper::Device;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
    pub driver: Option<String>,
}

/// `1` in `MigMode::current`.
const MIG_ENABLED: u32 = 1;

impl Nvml {
    /// Load the library and initialise it; the error says why not, in
    /// words (no driver, no permission, …).
    pub fn start() -> Result<Nvml, String> {
        match nvml_wrapper::Nvml::init() {
            Ok(nvml) => {
                let driver = nvml.sys_driver_version().ok();
                Ok(Nvml { nvml, driver })
            }
            Err(NvmlError::LibloadingError(e)) => Err(format!("no NVIDIA driver library: {e}")),
            Err(NvmlError::DriverNotLoaded) => Err("the NVIDIA driver is not loaded".into()),
            Err(NvmlError::NoPermission) => Err("no permission to use NVML".into()),
            Err(e) => Err(format!("NVML did not start: {e}")),
        }
    }

    /// Every schedulable GPU: whole devices, or the MIG instances of a
    /// device in MIG mode.
    pub fn gpus(&self, ours: &dyn Fn(u32) -> bool) -> Result<Vec<Gpu>, NvmlError> {
        let mut out = Vec::new();
        for i in 0..self.nvml.device_count()? {
            let device = match self.nvml.device_by_index(i) {
                Ok(d) => d,
                Err(e) => {
                    out.push(lost(i, &e));
                    continue;
                }
            };
            let health = health(&device);
            let mig = device
                .mig_mode()
                .map(|m| m.current == MIG_ENABLED)
                .unwrap_or(false);
            if mig {
                let slots = device.mig_device_count().unwrap_or(0);
                for s in 0..slots {
                    // Empty slots have no instance.
                    let Ok(instance) = device.mig_device_by_index(s) else {
                        continue;
                    };
                    let mut g = describe(&instance, String::new(), ours, &health);
                    // CUDA names MIG instances by UUID.
                    g.index = g.uuid.clone();
                    g.mig_parent = Some(i);
                    out.push(g);
                }
            } else {
                out.push(describe(&device, i.to_string(), ours, &health));
            }
        }
        Ok(out)
    }
}

fn lost(i: u32, e: &NvmlError) -> Gpu {
    Gpu {
        index: i.to_string(),
        uuid: String::new(),
        name: String::new(),
        memory_total: 0,
        memory_used: 0,
        memory_foreign: 0,
        utilization: None,
        processes: Vec::new(),
        mig_parent: None,
        healthy: false,
        problem: Some(format!("NVML cannot open it: {e}")),
    }
}

/// `None` when healthy, else why not.
fn health(device: &Device<'_>) -> Option<String> {
    match device.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile) {
        Ok(0) | Err(NvmlError::NotSupported) => None,
        Ok(n) => Some(format!(
            "{n} uncorrected ECC error(s) since the driver loaded"
        )),
        Err(NvmlError::GpuLost) => Some("the GPU has fallen off the bus".into()),
        Err(_) => None,
    }
}

fn describe(
    device: &Device<'_>,
    index: String,
    ours: &dyn Fn(u32) -> bool,
    health: &Option<String>,
) -> Gpu {
    let memory = device.memory_info().ok();
    let processes: Vec<GpuProcess> = device
        .running_compute_processes()
        .unwrap_or_default()
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            memory: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => b,
                UsedGpuMemory::Unavailable => 0,
            },
        })
        .collect();
    let foreign = processes
        .iter()
        .filter(|p| !ours(p.pid))
        .map(|p| p.memory)
        .sum();
    let lost = matches!(device.uuid(), Err(NvmlError::GpuLost));
    let problem = if lost {
        Some("the GPU has fallen off the bus".to_owned())
    } else {
        health.clone()
    };
    Gpu {
        index,
        uuid: device.uuid().unwrap_or_default(),
        name: device.name().unwrap_or_default(),
        memory_total: memory.as_ref().map_or(0, |m| m.total),
        memory_used: memory.as_ref().map_or(0, |m| m.used),
        memory_foreign: foreign,
        utilization: device.utilization_rates().ok().map(|u| u.gpu),
        processes,
        mig_parent: None,
        healthy: problem.is_none(),
        problem,
    }
}
