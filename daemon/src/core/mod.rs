//! The ground every other layer stands on, with no I/O and no imports
//! from them: typed names and ids ([`ids`]), run and step states
//! ([`state`]), examples and splits ([`example`]), conversations read
//! back ([`conversation`]) and what analyzers say of them ([`analysis`]), what a step produces
//! ([`output`]) and reports ([`event`]), evaluation reports
//! ([`evaluation`]), how a run is asked to stop ([`stop`]), content hashes
//! ([`hash`]), and locks that survive a panic ([`sync`]).

pub mod analysis;
pub mod conversation;
pub mod evaluation;
pub mod event;
pub mod example;
pub mod hash;
pub mod ids;
pub mod net;
pub mod output;
pub mod params;
pub mod policy;
pub mod state;
pub mod stop;
pub mod sync;
pub mod text;
