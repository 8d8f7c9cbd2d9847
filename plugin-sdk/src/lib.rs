//! The Coach plugin SDK.
//!
//! A Coach plugin is a WebAssembly component built for `wasm32-wasip2`. This
//! crate gives it the interface `coach:plugin@0.1.1` as plain Rust:
//!
//! - a trait per plugin kind ([`Source`], [`Trainer`], `Analyzer`) with
//!   documented methods,
//! - a macro that exports an implementation ([`export_source!`],
//!   [`export_trainer!`], `export_analyzer!`),
//! - the interface's types ([`Example`], [`Prediction`], …),
//! - the host's small API in [`host`] (log, progress, metric, cancelled),
//! - a native test harness ([`testing`]) so plugin logic can be unit-tested
//!   with `cargo test`, without wasm,
//! - a host-backed harness ([`sandbox`]) that builds the component and runs
//!   it in Coach's own sandbox (`coach plugin run`), so tests see what Coach
//!   will see,
//! - outgoing HTTP through the host's allow-list ([`http`], feature `http`).
//!
//! Enable the cargo feature of your plugin's kind (`source`, `trainer` or
//! `analyzer`).
//! See the crate README for a complete minimal plugin.

#[cfg(feature = "source")]
use std::cell::RefCell;

// Lets the generated bindings name this crate the same way from inside and
// from plugin crates.
extern crate self as coach_plugin_sdk;

pub mod host;
#[cfg(feature = "http")]
pub mod http;
pub mod resume;
pub mod sandbox;
pub mod testing;

#[doc(hidden)]
pub mod base {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin-base",
        generate_unused_types: true,
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        runtime_path: "::coach_plugin_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use base::coach::plugin::types::{
    Conversation, EntitySpan, Example, Message, Metric, PluginError, Prediction, RankedIntent,
    Split, Trained,
};

/// The version of the plugin interface this SDK implements.
pub const API_VERSION: &str = "0.1.1";

impl PluginError {
    /// An error with a short machine-readable `code` and a message for people.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The step's parameters are wrong.
    pub fn bad_config(message: impl Into<String>) -> Self {
        Self::new("bad-config", message)
    }

    /// The input data is wrong.
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new("bad-data", message)
    }

    /// Reading or writing failed.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new("io", message)
    }

    /// The host asked the call to stop.
    pub fn cancelled() -> Self {
        Self::new("cancelled", "cancelled by the host")
    }
}

/// Parse a step's parameters (the workflow's `with` table, as JSON).
///
/// Derive `serde::Deserialize` with `#[serde(deny_unknown_fields)]` on `T` so
/// that a misspelt parameter is an error rather than a silent default.
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, PluginError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| PluginError::bad_config(e.to_string()))
}

// ---------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------

/// One batch of records from a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub examples: Vec<Example>,
    pub conversations: Vec<Conversation>,
}

/// A record a source skipped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// `file:line` as the plugin sees it.
    pub location: String,
    pub reason: String,
}

/// Counts a source reports to the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceStats {
    pub records: u64,
    pub bad_records: u64,
    /// The first few bad records (the host shows up to 20).
    pub first_bad: Vec<BadRecord>,
}

/// A data source plugin: reads records from somewhere and hands them to Coach
/// in batches.
///
/// Lifecycle: the host calls [`Source::open`] once per step, then
/// [`Cursor::next_batch`] until it returns an empty batch. Between batches it
/// may ask for a [`Cursor::checkpoint`]; opening again with that checkpoint
/// must resume right after the last batch returned.
pub trait Source {
    type Cursor: Cursor;

    /// Open the source with the step's parameters (JSON) and, when resuming,
    /// a checkpoint a previous cursor returned.
    fn open(config: &str, checkpoint: Option<String>) -> Result<Self::Cursor, PluginError>;
}

/// A position in a source's stream of records.
pub trait Cursor: 'static {
    /// Up to `max` records. An empty batch means the source is exhausted.
    fn next_batch(&mut self, max: u32) -> Result<Batch, PluginError>;
    /// An opaque token that resumes the stream after the last batch.
    fn checkpoint(&self) -> String;
    /// Records read and skipped so far.
    fn stats(&self) -> SourceStats;
}

// ---------------------------------------------------------------------------
// Trainers
// ---------------------------------------------------------------------------

/// An intent model trainer.
///
/// Lifecycle: [`Trainer::train`] is called once per training step on a fresh
/// instance; [`Model::load`] builds a model from bytes `train` returned
/// (possibly in another process, much later), and [`Model::predict`] is then
/// called any number of times.
pub trait Trainer {
    type Model: Model;

    /// Train on `train`; `validation` (possibly empty) is for early stopping,
    /// calibration and thresholds, never for fitting weights.
    ///
    /// Report per-epoch metrics with [`host::metric`] and progress with
    /// [`host::progress`]; check [`host::cancelled`] in long loops.
    fn train(
        config: &str,
        train: Vec<Example>,
        validation: Vec<Example>,
    ) -> Result<Trained, PluginError>;
}

/// A trainer that can continue from a model it produced before (enable the
/// `warm-start` feature; `export_trainer!` then exports this too).
///
/// The host calls [`WarmStart::train_from`] instead of [`Trainer::train`]
/// when a step names a base model. The examples may hold intents the base
/// model did not know; include examples of the old intents too, or they
/// will fade.
pub trait WarmStart: Trainer {
    fn train_from(
        config: &str,
        base: Vec<u8>,
        train: Vec<Example>,
        validation: Vec<Example>,
    ) -> Result<Trained, PluginError>;
}

/// A trained model, loaded for prediction.
pub trait Model: Sized + 'static {
    /// Load a model from bytes [`Trainer::train`] produced. Bytes are
    /// verified against their hash by the host before they get here, but a
    /// model written by an older plugin version may still need a clear error.
    fn load(bytes: Vec<u8>) -> Result<Self, PluginError>;

    /// One prediction per text, in order.
    fn predict(&self, texts: Vec<String>) -> Vec<Prediction>;
}

// ---------------------------------------------------------------------------
// Bindings per kind and the adapters from the traits above to them
// ---------------------------------------------------------------------------

#[cfg(feature = "source")]
#[doc(hidden)]
pub mod source_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "source",
        with: {
            "coach:plugin/types@0.1.1": crate::base::coach::plugin::types,
            "coach:plugin/host@0.1.1": crate::base::coach::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_source_world",
        default_bindings_module: "::coach_plugin_sdk::source_world",
        runtime_path: "::coach_plugin_sdk::__wit_bindgen::rt",
    });
}

#[cfg(feature = "source")]
#[doc(hidden)]
pub mod source_adapter {
    use super::*;
    use crate::source_world::exports::coach::plugin::source_api as api;
    use std::marker::PhantomData;

    pub struct SourceExport<S>(PhantomData<S>);
    pub struct CursorExport<C>(RefCell<C>);

    impl<S: Source + 'static> api::Guest for SourceExport<S> {
        type Cursor = CursorExport<S::Cursor>;

        fn open(config: String, checkpoint: Option<String>) -> Result<api::Cursor, PluginError> {
            crate::host::install_panic_hook();
            S::open(&config, checkpoint).map(|c| api::Cursor::new(CursorExport(RefCell::new(c))))
        }
    }

    impl<C: Cursor> api::GuestCursor for CursorExport<C> {
        fn next_batch(&self, max: u32) -> Result<api::Batch, PluginError> {
            self.0.borrow_mut().next_batch(max).map(|b| api::Batch {
                examples: b.examples,
                conversations: b.conversations,
            })
        }

        fn checkpoint(&self) -> String {
            self.0.borrow().checkpoint()
        }

        fn stats(&self) -> api::SourceStats {
            let s = self.0.borrow().stats();
            api::SourceStats {
                records: s.records,
                bad_records: s.bad_records,
                first_bad: s
                    .first_bad
                    .into_iter()
                    .map(|b| api::BadRecord {
                        location: b.location,
                        reason: b.reason,
                    })
                    .collect(),
            }
        }
    }
}

/// Export a [`Source`] implementation as this component's `source-api`.
///
/// ```ignore
/// struct Files;
/// impl coach_plugin_sdk::Source for Files { /* … */ }
/// coach_plugin_sdk::export_source!(Files);
/// ```
#[cfg(feature = "source")]
#[macro_export]
macro_rules! export_source {
    ($source:ty) => {
        // Exported names are component-model names, which only a wasm
        // linker accepts; native builds (unit tests) export nothing.
        #[cfg(target_arch = "wasm32")]
        mod __coach_source_export {
            #[allow(unused_imports)]
            use super::*;
            type __CoachSourceExport = $crate::source_adapter::SourceExport<$source>;
            $crate::source_world::__export_source_world!(__CoachSourceExport);
        }
    };
}

#[cfg(all(feature = "trainer", not(feature = "warm-start")))]
#[doc(hidden)]
pub mod trainer_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "trainer",
        with: {
            "coach:plugin/types@0.1.1": crate::base::coach::plugin::types,
            "coach:plugin/host@0.1.1": crate::base::coach::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_trainer_world",
        default_bindings_module: "::coach_plugin_sdk::trainer_world",
        runtime_path: "::coach_plugin_sdk::__wit_bindgen::rt",
    });
}

#[cfg(feature = "warm-start")]
#[doc(hidden)]
pub mod trainer_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "trainer-with-warm-start",
        with: {
            "coach:plugin/types@0.1.1": crate::base::coach::plugin::types,
            "coach:plugin/host@0.1.1": crate::base::coach::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_trainer_world",
        default_bindings_module: "::coach_plugin_sdk::trainer_world",
        runtime_path: "::coach_plugin_sdk::__wit_bindgen::rt",
    });
}

#[cfg(feature = "trainer")]
#[doc(hidden)]
pub mod trainer_adapter {
    use super::*;
    use crate::trainer_world::exports::coach::plugin::trainer_api as api;
    use std::marker::PhantomData;

    pub struct TrainerExport<T>(PhantomData<T>);
    pub struct ModelExport<M>(M);

    impl<T: Trainer + 'static> api::Guest for TrainerExport<T> {
        type Model = ModelExport<T::Model>;

        fn train(
            config: String,
            train_set: Vec<Example>,
            validation_set: Vec<Example>,
        ) -> Result<Trained, PluginError> {
            crate::host::install_panic_hook();
            T::train(&config, train_set, validation_set)
        }
    }

    #[cfg(feature = "warm-start")]
    impl<T: WarmStart + 'static> crate::trainer_world::exports::coach::plugin::warm_start::Guest
        for TrainerExport<T>
    {
        fn train_from(
            config: String,
            base: Vec<u8>,
            train_set: Vec<Example>,
            validation_set: Vec<Example>,
        ) -> Result<Trained, PluginError> {
            crate::host::install_panic_hook();
            T::train_from(&config, base, train_set, validation_set)
        }
    }

    impl<M: Model> api::GuestModel for ModelExport<M> {
        fn load(bytes: Vec<u8>) -> Result<api::Model, PluginError> {
            crate::host::install_panic_hook();
            M::load(bytes).map(|m| api::Model::new(ModelExport(m)))
        }

        fn predict(&self, texts: Vec<String>) -> Vec<Prediction> {
            self.0.predict(texts)
        }
    }
}

/// Export a [`Trainer`] implementation as this component's `trainer-api`.
///
/// ```ignore
/// struct Intent;
/// impl coach_plugin_sdk::Trainer for Intent { /* … */ }
/// coach_plugin_sdk::export_trainer!(Intent);
/// ```
#[cfg(feature = "trainer")]
#[macro_export]
macro_rules! export_trainer {
    ($trainer:ty) => {
        // See `export_source!`: native builds export nothing.
        #[cfg(target_arch = "wasm32")]
        mod __coach_trainer_export {
            #[allow(unused_imports)]
            use super::*;
            type __CoachTrainerExport = $crate::trainer_adapter::TrainerExport<$trainer>;
            $crate::trainer_world::__export_trainer_world!(__CoachTrainerExport);
        }
    };
}

// ---------------------------------------------------------------------------
// Analyzers
// ---------------------------------------------------------------------------

#[cfg(feature = "analyzer")]
#[doc(hidden)]
pub mod analyzer_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "analyzer",
        with: {
            "coach:plugin/types@0.1.1": crate::base::coach::plugin::types,
            "coach:plugin/host@0.1.1": crate::base::coach::plugin::host,
        },
        additional_derives: [PartialEq],
        pub_export_macro: true,
        export_macro_name: "__export_analyzer_world",
        default_bindings_module: "::coach_plugin_sdk::analyzer_world",
        runtime_path: "::coach_plugin_sdk::__wit_bindgen::rt",
    });
}

/// What analyzers read and write: [`analysis::Dialogue`] in,
/// [`analysis::DialogueAnalysis`] out.
#[cfg(feature = "analyzer")]
pub use analyzer_world::coach::plugin::analysis;

/// A conversation analyzer: scores each dialogue 0–100, overall and per
/// aspect, and says why.
///
/// The host calls [`Analyzer::analyze`] with a batch of dialogues that are
/// peers (one model's conversations, one file); return exactly one
/// analysis per dialogue, in order, with its `id`.
#[cfg(feature = "analyzer")]
pub trait Analyzer {
    fn analyze(
        config: &str,
        dialogues: Vec<analysis::Dialogue>,
    ) -> Result<Vec<analysis::DialogueAnalysis>, PluginError>;
}

#[cfg(feature = "analyzer")]
#[doc(hidden)]
pub mod analyzer_adapter {
    use super::*;
    use crate::analyzer_world::exports::coach::plugin::analyzer_api as api;
    use std::marker::PhantomData;

    pub struct AnalyzerExport<A>(PhantomData<A>);

    impl<A: Analyzer + 'static> api::Guest for AnalyzerExport<A> {
        fn analyze(
            config: String,
            dialogues: Vec<analysis::Dialogue>,
        ) -> Result<Vec<analysis::DialogueAnalysis>, PluginError> {
            crate::host::install_panic_hook();
            A::analyze(&config, dialogues)
        }
    }
}

/// Export an [`Analyzer`] implementation as this component's
/// `analyzer-api`.
///
/// ```ignore
/// struct Quality;
/// impl coach_plugin_sdk::Analyzer for Quality { /* … */ }
/// coach_plugin_sdk::export_analyzer!(Quality);
/// ```
#[cfg(feature = "analyzer")]
#[macro_export]
macro_rules! export_analyzer {
    ($analyzer:ty) => {
        // See `export_source!`: native builds export nothing.
        #[cfg(target_arch = "wasm32")]
        mod __coach_analyzer_export {
            #[allow(unused_imports)]
            use super::*;
            type __CoachAnalyzerExport = $crate::analyzer_adapter::AnalyzerExport<$analyzer>;
            $crate::analyzer_world::__export_analyzer_world!(__CoachAnalyzerExport);
        }
    };
}

/// The README's example plugin is compiled and checked as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
