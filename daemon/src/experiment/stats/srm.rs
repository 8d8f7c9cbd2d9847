//! Sample-ratio mismatch: are the arms' unit counts what their weights
//! promise? A mismatch means assignment or logging is broken, and every
//! other number of the experiment is suspect until it is explained.

use super::dist;
use serde::{Deserialize, Serialize};

/// Flag a mismatch below this p-value (GrowthBook's and Eppo's default:
/// strict, because the check runs at every look).
pub const SRM_ALPHA: f64 = 0.001;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Srm {
    pub expected: Vec<f64>,
    pub chi2: f64,
    pub df: usize,
    pub p_value: f64,
    pub flagged: bool,
}

/// Pearson's χ² of `observed` counts against `weights` (normalised).
/// No units at all is no evidence: p = 1.
pub fn chi_square(observed: &[u64], weights: &[f64]) -> Srm {
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    let weight_sum: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| w / weight_sum * total).collect();
    let df = observed.len().saturating_sub(1);
    if total == 0.0 || df == 0 {
        return Srm {
            expected,
            chi2: 0.0,
            df,
            p_value: 1.0,
            flagged: false,
        };
    }
    let chi2: f64 = observed
        .iter()
        .zip(&expected)
        .filter(|(_, e)| **e > 0.0)
        .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
        .sum();
    let p_value = dist::chi2_sf(chi2, df as f64);
    Srm {
        expected,
        chi2,
        df,
        p_value,
        flagged: p_value < SRM_ALPHA,
    }
}

/// The sequential SRM test (Lindon & Malek): a Dirichlet-multinomial
/// Bayes factor against the planned ratio, updated with each period's
/// counts. Its p-value is valid at every look, and only falls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialSrm {
    null: Vec<f64>,
    alpha: Vec<f64>,
    pub log_bayes_factor: f64,
    pub p_value: f64,
}

/// The prior's concentration around the planned ratio.
pub const SRM_CONCENTRATION: f64 = 10_000.0;

impl SequentialSrm {
    /// A test of the planned `weights` (normalised).
    pub fn new(weights: &[f64]) -> SequentialSrm {
        let sum: f64 = weights.iter().sum();
        let null: Vec<f64> = weights.iter().map(|w| w / sum).collect();
        SequentialSrm {
            alpha: null.iter().map(|p| p * SRM_CONCENTRATION).collect(),
            null,
            log_bayes_factor: 0.0,
            p_value: 1.0,
        }
    }

    /// Add one period's counts per arm.
    pub fn update(&mut self, counts: &[u64]) {
        let n: f64 = counts.iter().map(|&c| c as f64).sum();
        let a_sum: f64 = self.alpha.iter().sum();
        let mut log_dm = dist::ln_gamma(a_sum) - dist::ln_gamma(a_sum + n);
        let mut log_mult = 0.0;
        for ((a, p), &x) in self.alpha.iter_mut().zip(&self.null).zip(counts) {
            let x = x as f64;
            log_dm += dist::ln_gamma(*a + x) - dist::ln_gamma(*a);
            if x > 0.0 {
                log_mult += x * p.ln();
            }
            *a += x;
        }
        self.log_bayes_factor += log_dm - log_mult;
        self.p_value = self.p_value.min((-self.log_bayes_factor).exp()).min(1.0);
    }

    pub fn flagged(&self) -> bool {
        self.p_value < SRM_ALPHA
    }
}
