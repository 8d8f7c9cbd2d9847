//! Where a step's work runs besides the plugin sandbox: the GPU
//! [`inventory`] (NVML, a static list, or none), the [`gpus`] queue that
//! carries out the placement scheduler's plan on this machine, local
//! [`process`]es on allocated GPUs, and jobs a [`slurm`] cluster places.
//! Decisions are the scheduler's; this module acts on them.

pub mod gpus;
pub mod inventory;
pub mod process;
pub mod slurm;
