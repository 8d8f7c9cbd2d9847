//! Two rates compared directly: the pooled two-proportion z-test with its
//! Wald interval (what most A/B calculators show), and the exact
//! beta-binomial chance that the treatment's rate is higher.

use super::dist;
use super::summary::Proportion;
use serde::{Deserialize, Serialize};

/// The pooled two-proportion z-test: the p-value uses the pooled rate
/// (the null says both arms share it); the interval uses the unpooled
/// (Wald) standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZTest {
    pub diff: f64,
    pub pooled_rate: f64,
    pub se_pooled: f64,
    pub z: f64,
    pub p_value: f64,
    pub se_wald: f64,
    pub ci: (f64, f64),
}

/// `None` when an arm has no units or the pooled rate is 0 or 1.
pub fn z_test(control: &Proportion, treatment: &Proportion, alpha: f64) -> Option<ZTest> {
    let (nc, nt) = (control.n as f64, treatment.n as f64);
    if nc == 0.0 || nt == 0.0 {
        return None;
    }
    let (pc, pt) = (control.rate(), treatment.rate());
    let pooled = (control.successes + treatment.successes) as f64 / (nc + nt);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nt)).sqrt();
    if !dist::positive(se_pooled) {
        return None;
    }
    let diff = pt - pc;
    let z = diff / se_pooled;
    let se_wald = (pc * (1.0 - pc) / nc + pt * (1.0 - pt) / nt).sqrt();
    let half = dist::norm_quantile(1.0 - alpha / 2.0) * se_wald;
    Some(ZTest {
        diff,
        pooled_rate: pooled,
        se_pooled,
        z,
        p_value: (2.0 * dist::norm_sf(z.abs())).min(1.0),
        se_wald,
        ci: (diff - half, diff + half),
    })
}

/// A Beta(a, b) posterior over a rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BetaPosterior {
    pub a: f64,
    pub b: f64,
}

impl BetaPosterior {
    /// The posterior of a rate after `p`, from the uniform Beta(1, 1).
    pub fn uniform_prior(p: &Proportion) -> BetaPosterior {
        BetaPosterior {
            a: 1.0 + p.successes as f64,
            b: 1.0 + (p.n - p.successes.min(p.n)) as f64,
        }
    }

    fn mean(&self) -> f64 {
        self.a / (self.a + self.b)
    }
}

/// P(X > Y) for X ~ Beta(x.a, x.b), Y ~ Beta(y.a, y.b), with an integer
/// `x.a`: Evan Miller's closed form, a sum of x.a positive terms in log
/// space (no cancellation, so a small probability keeps its digits).
fn greater(x: BetaPosterior, y: BetaPosterior) -> f64 {
    let base = -dist::ln_beta(y.a, y.b);
    let terms = x.a.round() as u64;
    (0..terms)
        .map(|i| {
            let i = i as f64;
            (dist::ln_beta(y.a + i, y.b + x.b) - (x.b + i).ln() - dist::ln_beta(1.0 + i, x.b)
                + base)
                .exp()
        })
        .sum::<f64>()
        .clamp(0.0, 1.0)
}

/// The exact Bayesian comparison of two rates under uniform priors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BetaComparison {
    pub chance_to_win: f64,
    /// E[max(control − treatment, 0)]: what shipping the treatment costs
    /// if it is worse.
    pub loss_if_shipped: f64,
    /// E[max(treatment − control, 0)]: what keeping the control costs.
    pub loss_if_kept: f64,
}

/// Terms in the exact sums beyond which a comparison is not computed
/// (the normal approximation of [`super::Effect::bayesian`] is exact
/// enough long before).
pub const BETA_EXACT_UP_TO: u64 = 1_000_000;

/// `None` beyond [`BETA_EXACT_UP_TO`] successes in an arm.
pub fn beta_comparison(control: &Proportion, treatment: &Proportion) -> Option<BetaComparison> {
    if control.successes.max(treatment.successes) >= BETA_EXACT_UP_TO {
        return None;
    }
    let c = BetaPosterior::uniform_prior(control);
    let t = BetaPosterior::uniform_prior(treatment);
    let up = |p: BetaPosterior| BetaPosterior {
        a: p.a + 1.0,
        b: p.b,
    };
    // E[X·1{X > Y}] = E[X]·P(X' > Y) with X' ~ Beta(a + 1, b).
    let loss_if_shipped = (c.mean() * greater(up(c), t) - t.mean() * greater(c, up(t))).max(0.0);
    let loss_if_kept = (t.mean() * greater(up(t), c) - c.mean() * greater(t, up(c))).max(0.0);
    Some(BetaComparison {
        chance_to_win: greater(t, c),
        loss_if_shipped,
        loss_if_kept,
    })
}
