//! Host bindings for `coach:plugin@0.1.1` (which also load 0.1.0 plugins:
//! component names match within `0.1`), one module per world. The shared
//! `types` and `host` interfaces are generated once (in `trainer`) and
//! reused by the other worlds, so one `Host` implementation serves all.
//! A future major version gets its own folder of WIT and its own modules.

pub mod trainer {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "trainer",
    });
}

pub mod source {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "source",
        with: {
            "coach:plugin/types": super::trainer::coach::plugin::types,
            "coach:plugin/host": super::trainer::coach::plugin::host,
        },
    });
}

pub use trainer::coach::plugin::host::LogLevel;
pub use trainer::coach::plugin::types::{
    Conversation, EntitySpan, Example, Message, Metric, PluginError as GuestError, Prediction,
    RankedIntent, Split, Trained,
};

pub mod analyzer {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "analyzer",
        with: {
            "coach:plugin/types": super::trainer::coach::plugin::types,
            "coach:plugin/host": super::trainer::coach::plugin::host,
        },
    });
}

/// The optional `warm-start` export, looked up on any trainer.
pub mod warm_start {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "warm-start-export",
        with: {
            "coach:plugin/types": super::trainer::coach::plugin::types,
            "coach:plugin/host": super::trainer::coach::plugin::host,
        },
    });
}
