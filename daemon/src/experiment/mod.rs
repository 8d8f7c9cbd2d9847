//! Experiments, decided without I/O: which arm a unit is assigned to
//! ([`assign`]) and what the numbers collected so far say ([`stats`]).
//!
//! Everything here is a pure function of its inputs — summaries that the
//! store aggregates in SQL come in, verdicts go out — so each formula is
//! tested against reference values and a simulated experiment can be
//! checked every simulated minute without a daemon.

pub mod assign;
pub mod draws;
pub mod results;
pub mod spec;
pub mod stats;
