//! The effect of a treatment on one metric, and three readings of it:
//! a fixed-horizon test, an always-valid sequential test (safe to look at
//! every minute), and a Bayesian posterior with chance to win and risk.

use super::dist;
use super::summary::Arm;
use serde::{Deserialize, Serialize};

/// The difference as measured, or relative to the control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// treatment − control, in the metric's unit.
    Absolute,
    /// (treatment − control) / control: the lift.
    Relative,
}

/// Why no effect can be estimated yet. Each is a normal state early in an
/// experiment, not an error of the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    #[error("an arm has fewer than 2 units")]
    TooFewUnits,
    #[error("the control has no variance yet (or a zero mean, for a relative lift)")]
    DegenerateControl,
    #[error("the effect's variance is zero or not finite")]
    NoVariance,
}

/// An estimated effect with its standard error and Welch–Satterthwaite
/// degrees of freedom.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub scale: Scale,
    pub estimate: f64,
    pub se: f64,
    pub dof: f64,
    /// Units in both arms (the sequential boundary grows with them).
    pub units: f64,
}

/// A frequentist reading: the estimate, its confidence interval and the
/// two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Frequentist {
    pub estimate: f64,
    pub ci: (f64, f64),
    pub p_value: f64,
}

impl Frequentist {
    pub fn significant(&self, alpha: f64) -> bool {
        self.p_value < alpha
    }
}

/// The prior of a Bayesian reading: flat, or normal on the effect.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Prior {
    Flat,
    Normal { mean: f64, sd: f64 },
}

/// A Bayesian reading: the posterior mean and credible interval, the
/// chance the treatment is better (larger), and the expected loss of
/// keeping the control (`risk.0`) or of shipping the treatment (`risk.1`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bayesian {
    pub estimate: f64,
    pub sd: f64,
    pub ci: (f64, f64),
    pub chance_to_win: f64,
    pub risk: (f64, f64),
}

/// The sequential tuning parameter N*: the total sample size at which the
/// confidence sequence is tightest (GrowthBook's default).
pub const SEQUENTIAL_TUNING: f64 = 5000.0;

impl Effect {
    /// The effect of `treatment` over `control`.
    ///
    /// Absolute: Δ = m_t − m_c, Var = s_t²/n_t + s_c²/n_c. Relative (delta
    /// method): Δ = (m_t − m_c)/m_c, Var = s_t²/(n_t·m_c²) +
    /// s_c²·m_t²/(n_c·m_c⁴). Degrees of freedom by Welch–Satterthwaite on
    /// the arms' own variances.
    pub fn between(control: &Arm, treatment: &Arm, scale: Scale) -> Result<Effect, Unavailable> {
        let (c, t) = (control, treatment);
        if !(c.n >= 2.0 && t.n >= 2.0) {
            return Err(Unavailable::TooFewUnits);
        }
        // A control without variance (no conversions yet) gives no scale
        // to compare against; a relative lift needs a non-zero control.
        if !dist::positive(c.variance) || (scale == Scale::Relative && c.mean == 0.0) {
            return Err(Unavailable::DegenerateControl);
        }
        let (vc, vt) = (c.variance / c.n, t.variance / t.n);
        let dof = (vc + vt).powi(2) / (vc * vc / (c.n - 1.0) + vt * vt / (t.n - 1.0));
        let (estimate, var) = match scale {
            Scale::Absolute => (t.mean - c.mean, vt + vc),
            Scale::Relative => (
                (t.mean - c.mean) / c.mean,
                t.variance / (c.mean.powi(2) * t.n)
                    + c.variance * t.mean.powi(2) / (c.mean.powi(4) * c.n),
            ),
        };
        let se = var.sqrt();
        if !(se > 0.0 && se.is_finite() && estimate.is_finite() && dof > 0.0) {
            return Err(Unavailable::NoVariance);
        }
        Ok(Effect {
            scale,
            estimate,
            se,
            dof,
            units: c.n + t.n,
        })
    }

    /// A fixed-horizon two-sided Welch t-test at level `alpha`: valid
    /// when looked at once, at a sample size chosen in advance.
    pub fn fixed(&self, alpha: f64) -> Frequentist {
        let half = dist::t_quantile(1.0 - alpha / 2.0, self.dof) * self.se;
        Frequentist {
            estimate: self.estimate,
            ci: (self.estimate - half, self.estimate + half),
            p_value: (2.0 * dist::t_sf((self.estimate / self.se).abs(), self.dof)).min(1.0),
        }
    }

    /// An asymptotic confidence sequence (Waudby-Smith et al., as in
    /// GrowthBook) at level `alpha`, tuned for `tuning` total units: the
    /// interval and p-value hold at every look, so an experiment may be
    /// checked continuously and stopped the first time it is significant
    /// without inflating false positives.
    pub fn sequential(&self, alpha: f64, tuning: f64) -> Frequentist {
        let ln_a = -2.0 * alpha.ln();
        let rho2 = (ln_a + (ln_a + 1.0).ln()) / tuning;
        let n = self.units;
        let n_rho2 = n * rho2;
        let half = self.se
            * n.sqrt()
            * (2.0 * (n_rho2 + 1.0) * ((n_rho2 + 1.0).sqrt() / alpha).ln() / (n * n * rho2)).sqrt();
        let z = self.estimate / self.se;
        let p = (n_rho2 + 1.0).sqrt() * (-n_rho2 * z * z / (2.0 * (n_rho2 + 1.0))).exp();
        Frequentist {
            estimate: self.estimate,
            ci: (self.estimate - half, self.estimate + half),
            p_value: p.min(1.0),
        }
    }

    /// The posterior of the effect under a normal likelihood and `prior`,
    /// with a (1 − alpha) credible interval.
    pub fn bayesian(&self, prior: Prior, alpha: f64) -> Bayesian {
        let likelihood_precision = 1.0 / (self.se * self.se);
        let (mean, sd) = match prior {
            Prior::Flat => (self.estimate, self.se),
            Prior::Normal { mean, sd } => {
                let prior_precision = 1.0 / (sd * sd);
                let precision = likelihood_precision + prior_precision;
                (
                    (self.estimate * likelihood_precision + mean * prior_precision) / precision,
                    precision.recip().sqrt(),
                )
            }
        };
        let z = dist::norm_quantile(1.0 - alpha / 2.0);
        let ratio = mean / sd;
        // E[max(0, −X)] for X ~ N(mean, sd²); E[max(0, X)] is that plus
        // the mean.
        let loss_if_shipped = sd * dist::norm_pdf(ratio) - mean * dist::norm_sf(ratio);
        Bayesian {
            estimate: mean,
            sd,
            ci: (mean - z * sd, mean + z * sd),
            chance_to_win: dist::norm_cdf(ratio),
            risk: (mean + loss_if_shipped, loss_if_shipped),
        }
    }
}

/// The mixture sequential probability ratio test (Johari et al., as in
/// Optimizely): the likelihood ratio Λ of an effect `diff` whose estimate
/// has variance `var`, against a normal mixture of alternatives with
/// variance `tau2`.
pub fn msprt_ratio(diff: f64, var: f64, tau2: f64) -> f64 {
    (var / (var + tau2)).sqrt() * (tau2 * diff * diff / (2.0 * var * (var + tau2))).exp()
}

/// The always-valid p-value after a look with ratio `lambda`, given the
/// one after the look before (1 before the first).
pub fn msprt_p(previous: f64, lambda: f64) -> f64 {
    previous.min(1.0 / lambda).min(1.0)
}
