//! Drift: how far live traffic has moved from the training data, in its
//! intent mix (PSI and a χ² test) and its words (unknown-word rate and
//! Jensen–Shannon divergence).

use super::text;
use super::{Corpus, Settings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A share given to an intent absent on one side, so PSI stays finite:
/// 1 in 10,000, small enough that a present intent dominates its term.
const EMPTY_SHARE: f64 = 1e-4;
/// Intents listed as moving most.
const SHIFTS: usize = 5;

/// Live traffic against the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Live user messages with a predicted intent.
    pub live_messages: usize,
    /// Training examples.
    pub training_examples: usize,
    /// Population stability index of the predicted intents against the
    /// training intents: Σ (live − train) · ln(live / train) over shares,
    /// an intent absent on one side given a share of 0.0001 there.
    pub psi: f64,
    pub level: DriftLevel,
    /// Pearson's χ² of the live and training intent counts as a 2 × k
    /// table (do they come from one distribution?).
    pub chi_squared: f64,
    /// Its degrees of freedom: intents − 1.
    pub dof: usize,
    /// Its p-value. With thousands of messages even a harmless shift is
    /// significant, so the PSI, not this, decides `drifted`.
    pub p_value: f64,
    /// The intents adding most to the PSI, most first.
    pub shifts: Vec<IntentShift>,
    /// Share of live user words never seen in the training examples.
    pub oov_rate: f64,
    /// Jensen–Shannon divergence of the live and training word
    /// distributions, in bits: 0 same, 1 nothing in common.
    pub js_divergence: f64,
    /// The PSI is above `psi_major`, or the unknown-word rate above
    /// `max_oov_rate`.
    pub drifted: bool,
    /// Why (or why not), in words.
    pub reason: String,
}

/// How far the intent mix moved, by the conventional PSI bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftLevel {
    /// PSI at most `psi_moderate`.
    Stable,
    /// PSI above `psi_moderate`, at most `psi_major`.
    Moderate,
    /// PSI above `psi_major`.
    Major,
}

/// One intent's share on each side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentShift {
    pub intent: String,
    pub training_share: f64,
    pub live_share: f64,
    /// Its term of the PSI.
    pub psi: f64,
}

pub(super) fn find(corpus: &Corpus, s: &Settings) -> Option<Drift> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for e in &corpus.training {
        counts.entry(e.intent.as_str()).or_default().0 += 1;
    }
    let mut live = 0;
    for i in corpus.messages.iter().filter_map(|m| m.intent) {
        counts.entry(i).or_default().1 += 1;
        live += 1;
    }
    let training = corpus.training.len();
    if training == 0 || live == 0 {
        return None;
    }
    let table: Vec<(usize, usize)> = counts.values().copied().collect();
    let (chi_squared, dof) = homogeneity(&table);
    let mut shifts: Vec<IntentShift> = counts
        .iter()
        .map(|(&intent, &(t, l))| {
            let (ts, ls) = (t as f64 / training as f64, l as f64 / live as f64);
            IntentShift {
                intent: intent.to_owned(),
                training_share: ts,
                live_share: ls,
                psi: psi_term(ts, ls),
            }
        })
        .collect();
    let psi = shifts.iter().map(|x| x.psi).sum::<f64>();
    shifts.sort_by(|a, b| {
        b.psi
            .total_cmp(&a.psi)
            .then_with(|| a.intent.cmp(&b.intent))
    });
    shifts.truncate(SHIFTS);
    let (oov_rate, js_divergence) = vocabulary(corpus);
    let level = if psi > s.psi_major {
        DriftLevel::Major
    } else if psi > s.psi_moderate {
        DriftLevel::Moderate
    } else {
        DriftLevel::Stable
    };
    let mix = match (level, shifts.first()) {
        (DriftLevel::Stable, _) | (_, None) => format!("the intent mix is stable (PSI {psi:.3})"),
        (_, Some(top)) => format!(
            "the intent mix moved {} (PSI {psi:.3}; most: `{}` {:.1}% of training, {:.1}% live)",
            if level == DriftLevel::Major {
                "a lot"
            } else {
                "moderately"
            },
            top.intent,
            top.training_share * 100.0,
            top.live_share * 100.0
        ),
    };
    let words = format!(
        "{:.1}% of live words are unknown to the training data{}",
        oov_rate * 100.0,
        if oov_rate > s.max_oov_rate {
            format!(" (above {:.0}%)", s.max_oov_rate * 100.0)
        } else {
            String::new()
        }
    );
    Some(Drift {
        live_messages: live,
        training_examples: training,
        psi,
        level,
        chi_squared,
        dof,
        p_value: chi_squared_sf(chi_squared, dof as f64),
        shifts,
        oov_rate,
        js_divergence,
        drifted: level == DriftLevel::Major || oov_rate > s.max_oov_rate,
        reason: format!("{mix}; {words}"),
    })
}

/// One intent's term of the PSI, shares floored at [`EMPTY_SHARE`].
fn psi_term(training: f64, live: f64) -> f64 {
    let (t, l) = (training.max(EMPTY_SHARE), live.max(EMPTY_SHARE));
    (l - t) * (l / t).ln()
}

/// Population stability index of two distributions given as shares.
pub fn psi(training: &[f64], live: &[f64]) -> f64 {
    training
        .iter()
        .zip(live)
        .map(|(&t, &l)| psi_term(t, l))
        .sum()
}

/// Pearson's χ² and degrees of freedom of a 2 × k table given as k
/// columns of (first row, second row) counts. Columns empty on both rows
/// are left out.
fn homogeneity(table: &[(usize, usize)]) -> (f64, usize) {
    let cols: Vec<(f64, f64)> = table
        .iter()
        .filter(|&&(a, b)| a + b > 0)
        .map(|&(a, b)| (a as f64, b as f64))
        .collect();
    let (ra, rb) = cols
        .iter()
        .fold((0.0, 0.0), |(x, y), &(a, b)| (x + a, y + b));
    let n = ra + rb;
    if cols.len() < 2 || ra == 0.0 || rb == 0.0 {
        return (0.0, cols.len().saturating_sub(1));
    }
    let chi = cols
        .iter()
        .map(|&(a, b)| {
            let (ea, eb) = (ra * (a + b) / n, rb * (a + b) / n);
            (a - ea).powi(2) / ea + (b - eb).powi(2) / eb
        })
        .sum();
    (chi, cols.len() - 1)
}

/// The unknown-word rate of live user messages and the Jensen–Shannon
/// divergence of their word distribution from the training examples'.
fn vocabulary(corpus: &Corpus) -> (f64, f64) {
    // Ordered, so the sums below add up in the same order on every run.
    let mut words: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let (mut nt, mut nl) = (0.0, 0.0);
    for e in &corpus.training {
        for w in text::words(&e.text) {
            words.entry(w).or_default().0 += 1.0;
            nt += 1.0;
        }
    }
    for m in &corpus.messages {
        for w in text::words(m.text) {
            words.entry(w).or_default().1 += 1.0;
            nl += 1.0;
        }
    }
    if nt == 0.0 || nl == 0.0 {
        return (0.0, 0.0);
    }
    let (mut unknown, mut js) = (0.0, 0.0);
    let half_kl = |p: f64, m: f64| {
        if p > 0.0 {
            0.5 * p * (p / m).log2()
        } else {
            0.0
        }
    };
    for &(t, l) in words.values() {
        if t == 0.0 {
            unknown += l;
        }
        let (p, q) = (t / nt, l / nl);
        let m = (p + q) / 2.0;
        js += half_kl(p, m) + half_kl(q, m);
    }
    (unknown / nl, js.clamp(0.0, 1.0))
}

/// P(X > x) for X ~ χ² with `dof` degrees of freedom: the regularised
/// upper incomplete gamma function Q(dof/2, x/2). `dof` 0 gives 1.
pub fn chi_squared_sf(x: f64, dof: f64) -> f64 {
    if dof <= 0.0 {
        return 1.0;
    }
    gamma_q(dof / 2.0, x / 2.0)
}

/// Q(a, x) = Γ(a, x) / Γ(a): by its series below a + 1, where the series
/// converges fast, and by its continued fraction (modified Lentz) above,
/// as in Numerical Recipes §6.2.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut ap, mut term, mut sum) = (a, 1.0 / a, 1.0 / a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        return (1.0 - sum * front).clamp(0.0, 1.0);
    }
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let (mut c, mut d) = (1.0 / TINY, 1.0 / b);
    let mut h = d;
    for i in 1..1000 {
        let an = -f64::from(i) * (f64::from(i) - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (front * h).clamp(0.0, 1.0)
}

/// ln Γ(x) for x > 0: Lanczos' approximation (g = 7, nine terms), good to
/// about 15 digits.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let sum = C
        .iter()
        .enumerate()
        .skip(1)
        .fold(C[0], |s, (i, c)| s + c / (x + i as f64));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-300), "{a} vs {b}");
    }

    /// References: scipy.stats.chi2.sf, and the closed forms for one
    /// degree of freedom (erfc(√(x/2))) and even ones
    /// (e^(−x/2) Σ_{i<k/2} (x/2)^i / i!).
    #[test]
    fn chi_squared_survival_matches_known_values() {
        close(chi_squared_sf(3.841_458_820_694_124, 1.0), 0.05, 1e-12);
        close(chi_squared_sf(3.84, 1.0), 0.050_043_521_248_705_09, 1e-12);
        close(chi_squared_sf(18.307_038_053_275_146, 10.0), 0.05, 1e-12);
        close(chi_squared_sf(18.307, 10.0), 0.050_000_589_091_398_1, 1e-10);
        close(chi_squared_sf(4.0, 2.0), (-2.0f64).exp(), 1e-14);
        close(chi_squared_sf(0.5, 3.0), 0.918_891_411_654_675_8, 1e-12);
        close(chi_squared_sf(100.0, 50.0), 3.454_931_382_984_864e-5, 1e-10);
        close(chi_squared_sf(400.0, 4.0), 2.781_632_018_740_842e-85, 1e-9);
        assert_eq!(chi_squared_sf(0.0, 5.0), 1.0);
        assert_eq!(chi_squared_sf(7.0, 0.0), 1.0);
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        assert!(ln_gamma(1.0).abs() < 1e-14);
        close(ln_gamma(5.0), 24.0f64.ln(), 1e-14);
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-14);
        close(ln_gamma(101.0), 363.739_375_555_563_47, 1e-14);
    }

    #[test]
    fn psi_of_identical_distributions_is_zero() {
        assert_eq!(psi(&[0.5, 0.3, 0.2], &[0.5, 0.3, 0.2]), 0.0);
        // One intent doubling from 10% to 20%: (0.1)·ln 2 + (−0.1)·ln(8/9).
        let expected = 0.1 * 2f64.ln() - 0.1 * (0.8f64 / 0.9).ln();
        close(psi(&[0.1, 0.9], &[0.2, 0.8]), expected, 1e-12);
        // An intent absent from training is floored, not infinite.
        assert!(psi(&[1.0, 0.0], &[0.5, 0.5]).is_finite());
    }

    #[test]
    fn homogeneity_of_a_two_by_two_table() {
        // [[10, 20], [30, 40]]: χ² = 0.7937 (scipy, no continuity correction).
        let (chi, dof) = homogeneity(&[(10, 20), (30, 40)]);
        close(chi, 0.793_650_793_650_793_6, 1e-12);
        assert_eq!(dof, 1);
        assert_eq!(homogeneity(&[(5, 5), (0, 0)]), (0.0, 0));
    }
}
