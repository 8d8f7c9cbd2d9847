//! What an arm contributes to a test, built from the sums the store
//! aggregates: a unit count, a mean and a per-unit variance.

use serde::{Deserialize, Serialize};

/// One arm, one metric: `n` units whose metric has this mean and this
/// per-unit variance (the variance of one unit's value, not of the mean).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub n: f64,
    pub mean: f64,
    pub variance: f64,
}

/// Sums of a per-unit value (a conversation's length, a user's rating).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
}

impl Moments {
    /// The arm: mean and sample variance (n − 1).
    pub fn arm(&self) -> Arm {
        let n = self.n as f64;
        Arm {
            n,
            mean: mean(self.sum, n),
            variance: sample_variance(self.sum, self.sum_squares, n),
        }
    }
}

/// Units and how many of them converted (a fallback, a correction, a
/// resolved conversation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    pub n: u64,
    pub successes: u64,
}

impl Proportion {
    pub fn rate(&self) -> f64 {
        mean(self.successes as f64, self.n as f64)
    }

    /// The arm: the rate and the Bernoulli variance p(1 − p).
    pub fn arm(&self) -> Arm {
        let p = self.rate();
        Arm {
            n: self.n as f64,
            mean: p,
            variance: p * (1.0 - p),
        }
    }
}

/// Sums for a ratio metric M/D measured per unit (fallbacks per turn,
/// where a user has several turns): the unit is what is randomised, so
/// the ratio's variance comes from the delta method, not from counting
/// turns as if they were independent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RatioMoments {
    pub n: u64,
    pub m_sum: f64,
    pub m_sum_squares: f64,
    pub d_sum: f64,
    pub d_sum_squares: f64,
    pub md_sum: f64,
}

impl RatioMoments {
    /// The arm: ΣM/ΣD and its per-unit variance
    /// s_m²/μ_d² − 2·cov·μ_m/μ_d³ + μ_m²·s_d²/μ_d⁴.
    pub fn arm(&self) -> Arm {
        let n = self.n as f64;
        let (mm, md) = (mean(self.m_sum, n), mean(self.d_sum, n));
        let vm = sample_variance(self.m_sum, self.m_sum_squares, n);
        let vd = sample_variance(self.d_sum, self.d_sum_squares, n);
        let cov = sample_covariance(self.m_sum, self.d_sum, self.md_sum, n);
        Arm {
            n,
            mean: mm / md,
            variance: vm / md.powi(2) - 2.0 * cov * mm / md.powi(3) + mm.powi(2) * vd / md.powi(4),
        }
    }
}

/// Sums of a metric `y` and of the same unit's pre-experiment covariate
/// `x` (its value in the weeks before): what CUPED needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CovariateMoments {
    pub n: u64,
    pub y_sum: f64,
    pub y_sum_squares: f64,
    pub x_sum: f64,
    pub x_sum_squares: f64,
    pub xy_sum: f64,
}

impl CovariateMoments {
    fn plus(&self, other: &CovariateMoments) -> CovariateMoments {
        CovariateMoments {
            n: self.n + other.n,
            y_sum: self.y_sum + other.y_sum,
            y_sum_squares: self.y_sum_squares + other.y_sum_squares,
            x_sum: self.x_sum + other.x_sum,
            x_sum_squares: self.x_sum_squares + other.x_sum_squares,
            xy_sum: self.xy_sum + other.xy_sum,
        }
    }

    /// The arm without the covariate.
    pub fn unadjusted(&self) -> Arm {
        Moments {
            n: self.n,
            sum: self.y_sum,
            sum_squares: self.y_sum_squares,
        }
        .arm()
    }

    /// The arm adjusted by θ: mean ȳ − θx̄, variance s_y² + θ²s_x² − 2θ·cov.
    pub fn adjusted(&self, theta: f64) -> Arm {
        let n = self.n as f64;
        let vy = sample_variance(self.y_sum, self.y_sum_squares, n);
        let vx = sample_variance(self.x_sum, self.x_sum_squares, n);
        let cov = sample_covariance(self.x_sum, self.y_sum, self.xy_sum, n);
        Arm {
            n,
            mean: mean(self.y_sum, n) - theta * mean(self.x_sum, n),
            variance: vy + theta * theta * vx - 2.0 * theta * cov,
        }
    }
}

/// CUPED: θ = cov(y, x) / var(x) over both arms pooled (one θ for all, so
/// the adjustment cannot favour an arm), and both arms adjusted by it.
/// Returns θ, the control and the treatment. The adjusted difference
/// estimates the same effect with the variance the covariate explains
/// taken out. Without covariate variance θ is 0 and nothing changes.
pub fn cuped(control: &CovariateMoments, treatment: &CovariateMoments) -> (f64, Arm, Arm) {
    let all = control.plus(treatment);
    let n = all.n as f64;
    let vx = sample_variance(all.x_sum, all.x_sum_squares, n);
    let cov = sample_covariance(all.x_sum, all.y_sum, all.xy_sum, n);
    let theta = if vx > 0.0 && vx.is_finite() && cov.is_finite() {
        cov / vx
    } else {
        0.0
    };
    (theta, control.adjusted(theta), treatment.adjusted(theta))
}

fn mean(sum: f64, n: f64) -> f64 {
    if n > 0.0 { sum / n } else { 0.0 }
}

fn sample_variance(sum: f64, sum_squares: f64, n: f64) -> f64 {
    if n < 2.0 {
        return 0.0;
    }
    ((sum_squares - sum * sum / n) / (n - 1.0)).max(0.0)
}

fn sample_covariance(a_sum: f64, b_sum: f64, ab_sum: f64, n: f64) -> f64 {
    if n < 2.0 {
        return 0.0;
    }
    (ab_sum - a_sum * b_sum / n) / (n - 1.0)
}
