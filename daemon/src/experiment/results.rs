//! An experiment's results at one look: per-arm totals (summed in SQL) in,
//! every metric's value per arm, each treatment against the control
//! (sequential test, Holm-adjusted p-values, Bayesian chance to win), the
//! sample-ratio check, guardrail breaches and winners out. A decision
//! script reads these; so do people.

use super::spec::{Better, Metric, Spec};
use super::stats::effect::SEQUENTIAL_TUNING;
use super::stats::srm::{self, Srm};
use super::stats::{Arm, Effect, Prior, Proportion, RatioMoments, Scale, multiple};
use serde::{Deserialize, Serialize};

/// Per-unit counters the store sums, in this order.
pub const VARIABLES: [&str; 9] = [
    "conversations",
    "user_messages",
    "fallbacks",
    "rated",
    "positive",
    "negative",
    "corrections",
    "escalated",
    "resolved",
];

const CONVERSATIONS: usize = 0;
const USER_MESSAGES: usize = 1;
const FALLBACKS: usize = 2;
const RATED: usize = 3;
const POSITIVE: usize = 4;
const NEGATIVE: usize = 5;
const CORRECTIONS: usize = 6;
const ESCALATED: usize = 7;
const RESOLVED: usize = 8;

/// Each conversation metric as numerator / denominator over a unit's
/// counters; the store also sums their products.
pub const RATIOS: [(Metric, usize, usize); 7] = [
    (Metric::TaskSuccess, RESOLVED, CONVERSATIONS),
    (Metric::FallbackRate, FALLBACKS, USER_MESSAGES),
    (Metric::PositiveRatingRate, POSITIVE, RATED),
    (Metric::NegativeRatingRate, NEGATIVE, RATED),
    (Metric::CorrectionRate, CORRECTIONS, USER_MESSAGES),
    (Metric::ConversationLength, USER_MESSAGES, CONVERSATIONS),
    (Metric::EscalationRate, ESCALATED, CONVERSATIONS),
];

/// One arm's sums over its units: Σv, Σv² per variable, Σ(num·den) per
/// ratio.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub units: u64,
    pub sums: [f64; 9],
    pub squares: [f64; 9],
    pub cross: [f64; 7],
}

impl Totals {
    /// Move a unit whose counters went from `old` to `new` (all zero: the
    /// unit is new).
    pub fn move_unit(&mut self, old: &[f64; 9], new: &[f64; 9]) {
        if old.iter().all(|v| *v == 0.0) && new.iter().any(|v| *v != 0.0) {
            self.units += 1;
        }
        for i in 0..9 {
            self.sums[i] += new[i] - old[i];
            self.squares[i] += new[i] * new[i] - old[i] * old[i];
        }
        for (k, (_, m, d)) in RATIOS.iter().enumerate() {
            self.cross[k] += new[*m] * new[*d] - old[*m] * old[*d];
        }
    }

    fn ratio(&self, metric: Metric) -> Option<RatioMoments> {
        let (i, &(_, m, d)) = RATIOS
            .iter()
            .enumerate()
            .find(|(_, (x, _, _))| *x == metric)?;
        Some(RatioMoments {
            n: self.units,
            m_sum: self.sums[m],
            m_sum_squares: self.squares[m],
            d_sum: self.sums[d],
            d_sum_squares: self.squares[d],
            md_sum: self.cross[i],
        })
    }
}

/// Latency bucket bounds, in milliseconds (the last is unbounded).
pub const LATENCY_BOUNDS_MS: [f64; 20] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0,
    500.0, 1000.0, 2000.0, 5000.0,
];

/// What the serving daemon counted of an arm's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    pub requests: u64,
    pub errors: u64,
    /// Counts per latency bucket ([`LATENCY_BOUNDS_MS`], then one for
    /// anything slower).
    pub latency: Vec<u64>,
}

impl Requests {
    pub fn record(&mut self, ok: bool, ms: f64) {
        if self.latency.len() != LATENCY_BOUNDS_MS.len() + 1 {
            self.latency.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
        }
        self.requests += 1;
        self.errors += u64::from(!ok);
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[i] += 1;
    }

    pub fn add(&mut self, other: &Requests) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }

    /// The upper bound of the bucket holding the 99th percentile (∞ past
    /// the last bound); none without requests.
    pub fn p99_ms(&self) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (0.99 * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }
}

/// A canary's latency bound: its p99 may exceed the stable version's by
/// this factor or [`LATENCY_SLACK_MS`], whichever is larger.
pub const LATENCY_FACTOR: f64 = 1.5;
pub const LATENCY_SLACK_MS: f64 = 10.0;
/// Requests each arm needs before latency is compared.
pub const LATENCY_MIN_REQUESTS: u64 = 500;

/// One arm as the results show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmInput {
    pub name: String,
    pub version: i32,
    pub weight: f64,
    pub totals: Totals,
    pub requests: Requests,
}

/// A metric's value in one arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmValue {
    pub arm: String,
    pub value: Option<f64>,
    pub units: u64,
}

/// A treatment against the control on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub arm: String,
    /// Treatment − control, in the metric's unit: what is tested.
    pub estimate: Option<f64>,
    /// (treatment − control) / control, when the control is not zero.
    pub lift: Option<f64>,
    /// The always-valid confidence interval of `estimate`.
    pub ci: Option<(f64, f64)>,
    /// The always-valid p-value, and after Holm's correction across the
    /// family it belongs to.
    pub p_value: Option<f64>,
    pub p_adjusted: Option<f64>,
    /// `better`, `worse` or `none` (not significant).
    pub verdict: String,
    pub chance_to_win: Option<f64>,
    /// Expected loss of shipping the treatment, in the metric's unit.
    pub risk: Option<f64>,
    /// Why nothing could be estimated yet, if so.
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub metric: String,
    /// `primary`, `secondary` or `guardrail`.
    pub role: String,
    pub better: Better,
    pub arms: Vec<ArmValue>,
    pub comparisons: Vec<Comparison>,
}

/// A guardrail significantly worse on a treatment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub arm: String,
    pub metric: String,
    pub reason: String,
}

/// A treatment significantly better on the primary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Winner {
    pub arm: String,
    pub lift: f64,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    pub arm: String,
    pub version: i32,
    pub weight: f64,
    pub units: u64,
    pub conversations: u64,
    pub requests: u64,
    pub errors: u64,
    pub latency_p99_ms: Option<f64>,
}

/// Everything one look says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub arms: Vec<ArmSummary>,
    pub srm: Srm,
    pub alpha: f64,
    pub min_units: u64,
    /// Every arm has `min_units` units.
    pub ready: bool,
    /// It has run past its `max_duration`.
    pub expired: bool,
    pub elapsed_s: f64,
    pub metrics: Vec<MetricResult>,
    pub breaches: Vec<Breach>,
    /// Treatments better on the primary metric with no breach, largest
    /// lift first.
    pub winners: Vec<Winner>,
    /// Treatments significantly worse on the primary metric.
    pub losers: Vec<String>,
}

/// What an experiment decides at a look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Promote { arm: String, reason: String },
    Rollback { reason: String },
    Continue { reason: String },
}

impl Decision {
    pub fn reason(&self) -> &str {
        match self {
            Decision::Promote { reason, .. }
            | Decision::Rollback { reason }
            | Decision::Continue { reason } => reason,
        }
    }
}

fn arm_of(metric: Metric, a: &ArmInput) -> Option<Arm> {
    match metric {
        Metric::ErrorRate => Some(
            Proportion {
                n: a.requests.requests,
                successes: a.requests.errors,
            }
            .arm(),
        ),
        Metric::LatencyP99 => None,
        m => a.totals.ratio(m).map(|r| r.arm()),
    }
}

fn units_of(metric: Metric, a: &ArmInput) -> u64 {
    if metric.from_requests() {
        a.requests.requests
    } else {
        a.totals.units
    }
}

/// The difference `t` − `c` with its Welch standard error. Tested on this
/// scale rather than as a lift: a lift's delta-method variance explodes
/// when the control's rate is small (a 5% negative-rating rate), which is
/// exactly where a guardrail must see a jump.
fn effect(c: &Arm, t: &Arm) -> Result<Effect, String> {
    match Effect::between(c, t, Scale::Absolute) {
        Ok(e) => Ok(e),
        Err(first) => {
            // A control at zero (no errors yet) against a treatment that
            // varies is still a difference to test.
            if c.n < 2.0 || t.n < 2.0 {
                return Err(first.to_string());
            }
            let se = (c.variance / c.n + t.variance / t.n).sqrt();
            let estimate = t.mean - c.mean;
            if se > 0.0 && se.is_finite() && estimate.is_finite() {
                Ok(Effect {
                    scale: Scale::Absolute,
                    estimate,
                    se,
                    dof: f64::INFINITY,
                    units: c.n + t.n,
                })
            } else {
                Err("no variation in either arm yet".into())
            }
        }
    }
}

fn compare(metric: Metric, control: &ArmInput, t: &ArmInput, alpha: f64) -> Comparison {
    let mut out = Comparison {
        arm: t.name.clone(),
        estimate: None,
        lift: None,
        ci: None,
        p_value: None,
        p_adjusted: None,
        verdict: "none".into(),
        chance_to_win: None,
        risk: None,
        unavailable: None,
    };
    if metric == Metric::LatencyP99 {
        let (c, tr) = (control.requests.p99_ms(), t.requests.p99_ms());
        if let (Some(c), Some(tr)) = (c, tr)
            && control.requests.requests >= LATENCY_MIN_REQUESTS
            && t.requests.requests >= LATENCY_MIN_REQUESTS
        {
            out.estimate = Some(tr - c);
            let bound = (c * LATENCY_FACTOR).max(c + LATENCY_SLACK_MS);
            if tr > bound {
                out.verdict = "worse".into();
            }
        } else {
            out.unavailable = Some(format!(
                "latency is compared from {LATENCY_MIN_REQUESTS} requests per arm"
            ));
        }
        return out;
    }
    let (Some(c), Some(tr)) = (arm_of(metric, control), arm_of(metric, t)) else {
        out.unavailable = Some("no data".into());
        return out;
    };
    match effect(&c, &tr) {
        Ok(e) => {
            let seq = e.sequential(alpha, SEQUENTIAL_TUNING);
            let bayes = e.bayesian(Prior::Flat, alpha);
            let higher_is_better = metric.better() == Better::Higher;
            out.estimate = Some(e.estimate);
            out.lift = Effect::between(&c, &tr, Scale::Relative)
                .ok()
                .map(|r| r.estimate);
            out.ci = Some(seq.ci);
            out.p_value = Some(seq.p_value);
            out.chance_to_win = Some(if higher_is_better {
                bayes.chance_to_win
            } else {
                1.0 - bayes.chance_to_win
            });
            out.risk = Some(if higher_is_better {
                bayes.risk.1
            } else {
                bayes.risk.0
            });
        }
        Err(why) => out.unavailable = Some(why),
    }
    out
}

fn verdict(metric: Metric, c: &Comparison, p: f64, alpha: f64) -> String {
    match c.estimate {
        Some(e) if p < alpha && e != 0.0 => {
            let up = e > 0.0;
            if up == (metric.better() == Better::Higher) {
                "better".into()
            } else {
                "worse".into()
            }
        }
        _ => "none".into(),
    }
}

fn describe(c: &Comparison) -> String {
    let est = c.estimate.unwrap_or(0.0);
    let what = match c.lift {
        Some(l) => format!("{est:+.4} ({:+.1}%)", 100.0 * l),
        None => format!("{est:+.4}"),
    };
    match c.p_adjusted.or(c.p_value) {
        Some(p) => format!("{what} (sequential p = {p:.4})"),
        None => what,
    }
}

/// Read an experiment at one look.
pub fn results(spec: &Spec, arms: &[ArmInput], elapsed_s: f64) -> Results {
    let alpha = spec.stopping.alpha;
    let weights: Vec<f64> = arms.iter().map(|a| a.weight).collect();
    let units: Vec<u64> = arms.iter().map(|a| a.totals.units).collect();
    // A canary's weights change step by step, so its units (assigned at
    // several weights) cannot be checked against one ratio, and its
    // requests are clustered by user: canaries skip the check.
    let srm = if spec.canary.is_some() {
        srm::chi_square(&[], &weights)
    } else {
        srm::chi_square(&units, &weights)
    };
    let min_units = spec.stopping.min_units;
    let ready = units.iter().all(|u| *u >= min_units);
    let mut metrics = Vec::new();
    let roles = std::iter::once((spec.metrics.primary, "primary"))
        .chain(spec.metrics.secondary.iter().map(|m| (*m, "secondary")))
        .chain(spec.metrics.guardrails.iter().map(|m| (*m, "guardrail")));
    let Some(control) = arms.first() else {
        return Results {
            arms: Vec::new(),
            srm,
            alpha,
            min_units,
            ready: false,
            expired: false,
            elapsed_s,
            metrics,
            breaches: Vec::new(),
            winners: Vec::new(),
            losers: Vec::new(),
        };
    };
    for (metric, role) in roles {
        let values = arms
            .iter()
            .map(|a| ArmValue {
                arm: a.name.clone(),
                value: match metric {
                    Metric::LatencyP99 => a.requests.p99_ms(),
                    _ => arm_of(metric, a).map(|x| x.mean).filter(|v| v.is_finite()),
                },
                units: units_of(metric, a),
            })
            .collect();
        let comparisons = arms[1..]
            .iter()
            .map(|t| compare(metric, control, t, alpha))
            .collect();
        metrics.push(MetricResult {
            metric: metric.name().to_owned(),
            role: role.to_owned(),
            better: metric.better(),
            arms: values,
            comparisons,
        });
    }
    // Holm across treatments for the primary metric; across every
    // (metric, treatment) for secondary ones. Guardrails keep their own
    // p-values: a harm is acted on, not explained away.
    let adjust = |metrics: &mut Vec<MetricResult>, role: &str| {
        let mut family = Vec::new();
        for (i, m) in metrics.iter().enumerate() {
            if m.role == role {
                for (j, c) in m.comparisons.iter().enumerate() {
                    if let Some(p) = c.p_value {
                        family.push((i, j, p));
                    }
                }
            }
        }
        let adjusted = multiple::holm(&family.iter().map(|f| f.2).collect::<Vec<_>>());
        for ((i, j, _), p) in family.into_iter().zip(adjusted) {
            metrics[i].comparisons[j].p_adjusted = Some(p);
        }
    };
    adjust(&mut metrics, "primary");
    adjust(&mut metrics, "secondary");
    for m in &mut metrics {
        let metric = Metric::parse(&m.metric).expect("named from a Metric");
        for c in &mut m.comparisons {
            if metric == Metric::LatencyP99 {
                continue;
            }
            c.verdict = match c.p_adjusted.or(c.p_value) {
                Some(p) => verdict(metric, c, p, alpha),
                None => "none".into(),
            };
        }
    }
    // A comparison counts once both arms have `min_units` units (requests,
    // for metrics counted per request).
    let enough = |metric: &MetricResult, arm: &str| -> bool {
        metric
            .arms
            .iter()
            .filter(|v| v.arm == arm || v.arm == control.name)
            .all(|v| v.units >= min_units)
    };
    let mut breaches = Vec::new();
    for m in metrics.iter().filter(|m| m.role == "guardrail") {
        for c in m.comparisons.iter().filter(|c| c.verdict == "worse") {
            if m.metric == Metric::LatencyP99.name() || enough(m, &c.arm) {
                breaches.push(Breach {
                    arm: c.arm.clone(),
                    metric: m.metric.clone(),
                    reason: match m.metric.as_str() {
                        "latency_p99" => format!(
                            "p99 latency {} ms against {} ms",
                            fmt_ms(m.arms.iter().find(|v| v.arm == c.arm)),
                            fmt_ms(m.arms.first())
                        ),
                        _ => format!(
                            "{} {} against {}: {}",
                            m.metric,
                            fmt_value(m.arms.iter().find(|v| v.arm == c.arm)),
                            fmt_value(m.arms.first()),
                            describe(c)
                        ),
                    },
                });
            }
        }
    }
    let primary = &metrics[0];
    let mut winners: Vec<Winner> = primary
        .comparisons
        .iter()
        .filter(|c| c.verdict == "better" && enough(primary, &c.arm))
        .filter(|c| !breaches.iter().any(|b| b.arm == c.arm))
        .map(|c| Winner {
            arm: c.arm.clone(),
            lift: c.lift.or(c.estimate).unwrap_or(0.0),
            summary: format!(
                "{} {} against {}: {}",
                primary.metric,
                fmt_value(primary.arms.iter().find(|v| v.arm == c.arm)),
                fmt_value(primary.arms.first()),
                describe(c)
            ),
        })
        .collect();
    let sign = if primary.better == Better::Higher {
        -1.0
    } else {
        1.0
    };
    winners.sort_by(|a, b| (sign * a.lift).total_cmp(&(sign * b.lift)));
    let losers = primary
        .comparisons
        .iter()
        .filter(|c| c.verdict == "worse" && enough(primary, &c.arm))
        .map(|c| c.arm.clone())
        .collect();
    Results {
        arms: arms
            .iter()
            .map(|a| ArmSummary {
                arm: a.name.clone(),
                version: a.version,
                weight: a.weight,
                units: a.totals.units,
                conversations: a.totals.sums[CONVERSATIONS] as u64,
                requests: a.requests.requests,
                errors: a.requests.errors,
                latency_p99_ms: a.requests.p99_ms().filter(|v| v.is_finite()),
            })
            .collect(),
        srm,
        alpha,
        min_units,
        ready,
        expired: elapsed_s >= spec.stopping.max_duration.as_secs_f64(),
        elapsed_s,
        metrics,
        breaches,
        winners,
        losers,
    }
}

fn fmt_value(v: Option<&ArmValue>) -> String {
    match v.and_then(|v| v.value) {
        Some(x) => format!("{x:.4}"),
        None => "–".into(),
    }
}

fn fmt_ms(v: Option<&ArmValue>) -> String {
    match v.and_then(|v| v.value) {
        Some(x) if x.is_finite() => format!("≤ {x}"),
        Some(_) => "> 5000".into(),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::spec::{ArmSpec, Key, Metrics, Stopping};

    fn spec() -> Spec {
        Spec {
            model: "m".into(),
            environment: "production".into(),
            hypothesis: None,
            key: Key::UserId,
            coverage: 1.0,
            seed: "s".into(),
            namespace: None,
            arms: ["control", "v2"]
                .map(|n| ArmSpec {
                    name: n.into(),
                    version: None,
                    weight: 0.5,
                    model_id: None,
                })
                .to_vec(),
            metrics: Metrics {
                primary: Metric::TaskSuccess,
                secondary: vec![Metric::ConversationLength],
                guardrails: vec![Metric::FallbackRate],
            },
            stopping: Stopping {
                min_units: 100,
                ..Stopping::default()
            },
            canary: None,
        }
    }

    /// Totals of `units` one-conversation units, `resolved` of them
    /// resolved, each with 3 user messages, `fallbacks` fallbacks in all
    /// (one per unit at most).
    fn totals(units: u64, resolved: u64, fallbacks: u64) -> Totals {
        let u = units as f64;
        let mut t = Totals {
            units,
            ..Totals::default()
        };
        let set = |t: &mut Totals, i: usize, sum: f64, sq: f64| {
            t.sums[i] = sum;
            t.squares[i] = sq;
        };
        set(&mut t, CONVERSATIONS, u, u);
        set(&mut t, USER_MESSAGES, 3.0 * u, 9.0 * u);
        set(&mut t, FALLBACKS, fallbacks as f64, fallbacks as f64);
        set(&mut t, RESOLVED, resolved as f64, resolved as f64);
        t.cross[0] = resolved as f64; // resolved × 1 conversation
        t.cross[1] = 3.0 * fallbacks as f64; // fallbacks × 3 messages
        t.cross[5] = 3.0 * u; // messages × conversations
        t
    }

    fn arm(name: &str, t: Totals) -> ArmInput {
        ArmInput {
            name: name.into(),
            version: 1,
            weight: 0.5,
            totals: t,
            requests: Requests::default(),
        }
    }

    #[test]
    fn a_clearly_better_treatment_wins_and_a_worse_guardrail_breaches() {
        let r = results(
            &spec(),
            &[
                arm("control", totals(2000, 600, 100)),
                arm("v2", totals(2000, 900, 100)),
            ],
            60.0,
        );
        assert!(r.ready && !r.srm.flagged);
        assert_eq!(r.winners.len(), 1, "{r:#?}");
        assert!((r.winners[0].lift - 0.5).abs() < 1e-9);
        assert!(r.breaches.is_empty());
        let r = results(
            &spec(),
            &[
                arm("control", totals(2000, 600, 100)),
                arm("v2", totals(2000, 900, 400)),
            ],
            60.0,
        );
        assert!(r.winners.is_empty(), "a breach blocks a win");
        assert_eq!(r.breaches[0].metric, "fallback_rate");
    }

    #[test]
    fn nothing_is_decided_below_the_minimum_or_on_equal_arms() {
        let r = results(
            &spec(),
            &[
                arm("control", totals(50, 10, 0)),
                arm("v2", totals(50, 40, 0)),
            ],
            60.0,
        );
        assert!(!r.ready && r.winners.is_empty());
        let r = results(
            &spec(),
            &[
                arm("control", totals(2000, 600, 100)),
                arm("v2", totals(2000, 610, 100)),
            ],
            60.0,
        );
        assert!(r.winners.is_empty() && r.losers.is_empty() && r.breaches.is_empty());
    }

    #[test]
    fn an_imbalance_is_flagged() {
        let r = results(
            &spec(),
            &[
                arm("control", totals(2000, 600, 100)),
                arm("v2", totals(1500, 450, 75)),
            ],
            60.0,
        );
        assert!(r.srm.flagged, "{:?}", r.srm);
    }

    #[test]
    fn a_canary_with_errors_against_none_breaches() {
        let mut s = spec();
        s.canary = Some(Default::default());
        s.metrics.guardrails = vec![Metric::ErrorRate, Metric::LatencyP99];
        let mut stable = arm("stable", Totals::default());
        let mut canary = arm("canary", Totals::default());
        for i in 0..2000 {
            stable.requests.record(true, 2.0);
            if i < 300 {
                canary.requests.record(i % 10 != 0, 2.5);
            }
        }
        let r = results(&s, &[stable.clone(), canary.clone()], 60.0);
        assert_eq!(r.breaches.len(), 1, "{:#?}", r.breaches);
        assert_eq!(r.breaches[0].metric, "error_rate");
        // Slow but correct: the latency bound.
        let mut slow = arm("canary", Totals::default());
        for _ in 0..600 {
            slow.requests.record(true, 40.0);
        }
        let r = results(&s, &[stable, slow], 60.0);
        assert_eq!(r.breaches[0].metric, "latency_p99", "{:#?}", r.breaches);
    }

    #[test]
    fn p99_reads_the_bucket_of_the_99th_request() {
        let mut r = Requests::default();
        for i in 0..1000 {
            r.record(true, if i < 985 { 1.5 } else { 12.0 });
        }
        assert_eq!(r.p99_ms(), Some(15.0));
    }
}
