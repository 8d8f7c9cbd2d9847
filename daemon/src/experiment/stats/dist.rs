//! The distributions the tests need, to full double precision: statrs'
//! inverses come from approximations good to about 1e-10 and are polished
//! here by Newton steps, since a critical value feeds every interval.

use statrs::distribution::{Continuous, ContinuousCDF, Normal, StudentsT};

/// Φ(x). statrs' own normal CDF is good to about 1e-10 only; libm's
/// erfc (musl's, within an ulp) keeps tail probabilities exact, which a
/// risk — a small difference of tail terms — needs.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// 1 − Φ(x), without cancellation in the upper tail.
pub fn norm_sf(x: f64) -> f64 {
    0.5 * libm::erfc(x / std::f64::consts::SQRT_2)
}

/// φ(x).
pub fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Φ⁻¹(p) for 0 < p < 1.
pub fn norm_quantile(p: f64) -> f64 {
    newton(Normal::standard().inverse_cdf(p), p, norm_cdf, norm_pdf)
}

fn student(dof: f64) -> StudentsT {
    // dof > 0 is checked by every caller; an infinite dof is the normal.
    StudentsT::new(0.0, 1.0, dof).unwrap_or_else(|_| {
        StudentsT::new(0.0, 1.0, f64::INFINITY).expect("the t with infinite freedom exists")
    })
}

/// P(T > t) for Student's t with `dof` degrees of freedom.
pub fn t_sf(t: f64, dof: f64) -> f64 {
    student(dof).sf(t)
}

/// The `p` quantile of Student's t with `dof` degrees of freedom.
pub fn t_quantile(p: f64, dof: f64) -> f64 {
    let d = student(dof);
    newton(d.inverse_cdf(p), p, |x| d.cdf(x), |x| d.pdf(x))
}

/// Two Newton steps on `cdf(x) = p` from a close start: each doubles the
/// correct digits, and an approximation good to 1e-8 needs no more.
fn newton(mut x: f64, p: f64, cdf: impl Fn(f64) -> f64, pdf: impl Fn(f64) -> f64) -> f64 {
    for _ in 0..2 {
        let density = pdf(x);
        if !positive(density) || !x.is_finite() {
            break;
        }
        let next = x - (cdf(x) - p) / density;
        if !next.is_finite() {
            break;
        }
        x = next;
    }
    x
}

/// Whether `x` is above zero (a NaN is not).
pub fn positive(x: f64) -> bool {
    x > 0.0
}

/// P(χ²_df > x).
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    statrs::function::gamma::gamma_ur(df / 2.0, x / 2.0)
}

/// ln Γ(x).
pub fn ln_gamma(x: f64) -> f64 {
    statrs::function::gamma::ln_gamma(x)
}

/// ln B(a, b).
pub fn ln_beta(a: f64, b: f64) -> f64 {
    statrs::function::beta::ln_beta(a, b)
}
