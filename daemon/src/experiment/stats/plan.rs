//! Planning: how many units an experiment needs to see a given change,
//! and what power a given size has.

use super::dist;
use serde::{Deserialize, Serialize};

/// Cohen's h between two rates: 2·asin√p₂ − 2·asin√p₁ (the effect on the
/// scale where a proportion's variance is constant).
pub fn cohens_h(p_control: f64, p_treatment: f64) -> f64 {
    2.0 * p_treatment.sqrt().asin() - 2.0 * p_control.sqrt().asin()
}

/// The power of a two-sided z-test on effect size `h` with `n_control`
/// units in the control and `ratio · n_control` in the treatment.
pub fn power(h: f64, n_control: f64, ratio: f64, alpha: f64) -> f64 {
    let z = dist::norm_quantile(1.0 - alpha / 2.0);
    let shift = h.abs() * (n_control / (1.0 + 1.0 / ratio)).sqrt();
    dist::norm_sf(z - shift) + dist::norm_cdf(-z - shift)
}

/// A sample-size plan for detecting a change of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub cohens_h: f64,
    /// Units the control needs (not rounded).
    pub n_control: f64,
    pub n_treatment: f64,
    pub power: f64,
}

/// The units needed to detect `p_control → p_treatment` with `power` at
/// level `alpha`, with `ratio` treatment units per control unit: the root
/// of power(n) = target (both tails counted), started from the one-tail
/// closed form (z_{1−α/2} + z_power)²·(1 + 1/r)/h². `None` when the rates
/// are equal or out of (0, 1).
pub fn sample_size(
    p_control: f64,
    p_treatment: f64,
    alpha: f64,
    target: f64,
    ratio: f64,
) -> Option<Plan> {
    let valid = |p: f64| p > 0.0 && p < 1.0;
    if !valid(p_control)
        || !valid(p_treatment)
        || !valid(alpha)
        || !valid(target)
        || !dist::positive(ratio)
    {
        return None;
    }
    let h = cohens_h(p_control, p_treatment);
    if h == 0.0 {
        return None;
    }
    let za = dist::norm_quantile(1.0 - alpha / 2.0);
    let zb = dist::norm_quantile(target);
    let k = 1.0 + 1.0 / ratio;
    let mut n = (za + zb).powi(2) * k / (h * h);
    for _ in 0..50 {
        let shift = h.abs() * (n / k).sqrt();
        let f = dist::norm_sf(za - shift) + dist::norm_cdf(-za - shift) - target;
        let slope = (dist::norm_pdf(za - shift) - dist::norm_pdf(za + shift)) * h.abs()
            / (2.0 * (n * k).sqrt());
        if !dist::positive(slope) {
            break;
        }
        let step = f / slope;
        n -= step;
        if step.abs() <= 1e-12 * n {
            break;
        }
    }
    Some(Plan {
        cohens_h: h,
        n_control: n,
        n_treatment: n * ratio,
        power: power(h, n, ratio, alpha),
    })
}
