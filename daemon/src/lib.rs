//! Coach keeps chatbots learning: it reads workflow files, runs their steps
//! — data sources, trainers and analyzers as sandboxed WebAssembly plugins,
//! built-in split / evaluate / gate / register steps, processes on GPUs —
//! and keeps every dataset snapshot, run and model in its store.
//!
//! The modules are layers, and data flows one way, top to bottom
//! (`docs/architecture.md`; a test enforces it):
//!
//! ```text
//! cli                               the command line (a face)
//! app                               the composition root: builds everything once
//! api                               the HTTP API (a face)
//! trigger                           cron, watch, conditions: emit fires
//! service                           submit, cancel, queries, views, reload
//! executor                          claims queued runs, hands them to the pipeline
//! pipeline                          the runner and one file per step kind
//! serving                           deployed versions loaded and routed
//! plugin | compute | registry       wasm host | GPUs, processes, Slurm | artifacts, models
//! store                             sea-orm entities, migrations, queries
//! workflow                          workflow files: schema, checks, the set
//! script                            Rhai: gates, rules, parameters, conditions
//! events                            the event bus, reporters, metrics
//! config                            settings
//! scheduler | experiment            pure decisions: placement | assignment, statistics
//! patterns | curate | review        pure decisions: traffic patterns | data cleaning | agreement
//! core                              ids, states, step outputs, stop reasons, hashes
//! ```

pub mod api;
pub mod app;
pub mod cli;
pub mod compute;
pub mod config;
pub mod core;
pub mod curate;
pub mod events;
pub mod executor;
pub mod experiment;
pub mod patterns;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod review;
pub mod scheduler;
pub mod script;
pub mod service;
pub mod serving;
pub mod store;
pub mod trigger;
pub mod workflow;
