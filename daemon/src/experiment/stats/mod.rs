//! The statistics of an experiment, from per-arm summaries (counts, sums,
//! sums of squares: what SQL aggregates without loading a row) to
//! verdicts.
//!
//! The engine follows GrowthBook's gbstats where it has a formula (Welch
//! t for every metric, relative lift by the delta method, asymptotic
//! confidence sequences for peeking, a Gaussian-prior Bayesian view, CUPED,
//! ratio metrics, χ² sample-ratio checks), adds what an operator planning
//! or auditing an experiment needs (pooled z, mSPRT, Dirichlet sequential
//! SRM, exact beta-binomial chance to win, Holm and Benjamini–Hochberg,
//! sample size), and is tested against reference values computed with
//! scipy, statsmodels and gbstats. No I/O, no clocks, no randomness.

mod dist;
pub mod effect;
pub mod multiple;
pub mod plan;
pub mod proportions;
pub mod srm;
pub mod summary;

pub use effect::{Bayesian, Effect, Frequentist, Prior, Scale, Unavailable};
pub use summary::{Arm, CovariateMoments, Moments, Proportion, RatioMoments};

#[cfg(test)]
mod tests;
