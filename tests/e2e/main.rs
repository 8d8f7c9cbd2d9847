//! End-to-end tests: one binary, a module per feature (compiled once).

mod common;

mod analysis;
mod architecture;
mod bad_input;
mod bench;
mod chat_exports;
mod conversations;
mod daemon;
mod dashboard;
mod deployments;
mod experiments;
mod gpus;
mod hostile;
mod http;
mod network;
mod output;
mod plugin_tooling;
mod quickstart;
mod review;
mod runs;
mod sandbox;
mod scripts;
mod slurm;
mod sources;
mod store;
mod ui;
