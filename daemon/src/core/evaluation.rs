//! Scores of a model on held-out examples: accuracy, macro-F1, per-intent
//! precision/recall/F1, the most frequent confusions, and — following Larson
//! et al. (EMNLP 2019) — in-scope accuracy (share of in-scope queries given
//! their correct intent) and out-of-scope recall (share of out-of-scope
//! queries predicted as out of scope).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IntentScore {
    pub intent: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confusion {
    pub truth: String,
    pub predicted: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The split scored: `test` or `validation`.
    pub split: String,
    pub examples: usize,
    pub accuracy: f64,
    /// Unweighted mean F1 over the intents in the truth (out of scope included
    /// when present).
    pub macro_f1: f64,
    /// `None` when the data has no in-scope examples.
    pub in_scope_accuracy: Option<f64>,
    /// `None` when the data has no out-of-scope examples.
    pub oos_recall: Option<f64>,
    pub oos_label: String,
    pub per_intent: Vec<IntentScore>,
    pub confusions: Vec<Confusion>,
    /// Mean confidence of the predictions.
    pub mean_confidence: f64,
    /// Expected calibration error: confidence against accuracy over 15
    /// equal-width confidence bins, weighted by their share of examples.
    pub ece: f64,
    /// Those bins that hold examples, lowest confidence first (empty in
    /// reports stored before they were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration: Vec<CalibrationBin>,
}

/// One confidence bin: how confident the model was there, how often right.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationBin {
    pub confidence: f64,
    pub accuracy: f64,
    pub examples: usize,
}

impl Report {
    /// Named numbers, for the store and the registry.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut m = vec![
            ("accuracy".to_owned(), self.accuracy),
            ("macro_f1".to_owned(), self.macro_f1),
            ("mean_confidence".to_owned(), self.mean_confidence),
            ("ece".to_owned(), self.ece),
            ("examples".to_owned(), self.examples as f64),
        ];
        if let Some(v) = self.in_scope_accuracy {
            m.push(("in_scope_accuracy".to_owned(), v));
        }
        if let Some(v) = self.oos_recall {
            m.push(("oos_recall".to_owned(), v));
        }
        m
    }
}

/// Score `(truth, predicted, confidence)` triples.
pub fn score(
    split: &str,
    rows: &[(String, String, f32)],
    oos_label: &str,
    top_confusions: usize,
) -> Report {
    let mut tp: BTreeMap<&str, usize> = BTreeMap::new();
    let mut predicted: BTreeMap<&str, usize> = BTreeMap::new();
    let mut support: BTreeMap<&str, usize> = BTreeMap::new();
    let mut confusions: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let (mut correct, mut in_n, mut in_ok, mut oos_n, mut oos_ok) = (0, 0, 0, 0, 0);
    let mut conf_sum = 0.0f64;
    for (truth, pred, conf) in rows {
        conf_sum += *conf as f64;
        *support.entry(truth).or_default() += 1;
        *predicted.entry(pred).or_default() += 1;
        let hit = truth == pred;
        if hit {
            correct += 1;
            *tp.entry(truth).or_default() += 1;
        } else {
            *confusions.entry((truth, pred)).or_default() += 1;
        }
        if truth == oos_label {
            oos_n += 1;
            oos_ok += hit as usize;
        } else {
            in_n += 1;
            in_ok += hit as usize;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_intent: Vec<IntentScore> = support
        .iter()
        .map(|(&intent, &n)| {
            let t = tp.get(intent).copied().unwrap_or(0);
            let p = ratio(t, predicted.get(intent).copied().unwrap_or(0));
            let r = ratio(t, n);
            let f1 = if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            };
            IntentScore {
                intent: intent.to_owned(),
                precision: p,
                recall: r,
                f1,
                support: n,
            }
        })
        .collect();
    let macro_f1 = if per_intent.is_empty() {
        0.0
    } else {
        per_intent.iter().map(|s| s.f1).sum::<f64>() / per_intent.len() as f64
    };
    let mut pairs: Vec<Confusion> = confusions
        .into_iter()
        .map(|((t, p), count)| Confusion {
            truth: t.to_owned(),
            predicted: p.to_owned(),
            count,
        })
        .collect();
    pairs.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.truth, &a.predicted).cmp(&(&b.truth, &b.predicted)))
    });
    pairs.truncate(top_confusions);
    const BINS: usize = 15;
    let mut bins = [(0.0f64, 0.0f64, 0usize); BINS];
    for (truth, pred, conf) in rows {
        let b = ((*conf as f64 * BINS as f64) as usize).min(BINS - 1);
        bins[b].0 += *conf as f64;
        bins[b].1 += (truth == pred) as u8 as f64;
        bins[b].2 += 1;
    }
    let ece = bins.iter().map(|(c, a, _)| (a - c).abs()).sum::<f64>() / rows.len().max(1) as f64;
    Report {
        split: split.to_owned(),
        examples: rows.len(),
        accuracy: ratio(correct, rows.len()),
        macro_f1,
        in_scope_accuracy: (in_n > 0).then(|| ratio(in_ok, in_n)),
        oos_recall: (oos_n > 0).then(|| ratio(oos_ok, oos_n)),
        oos_label: oos_label.to_owned(),
        per_intent,
        confusions: pairs,
        mean_confidence: if rows.is_empty() {
            0.0
        } else {
            conf_sum / rows.len() as f64
        },
        ece,
        calibration: bins
            .iter()
            .filter(|b| b.2 > 0)
            .map(|&(c, a, n)| CalibrationBin {
                confidence: c / n as f64,
                accuracy: a / n as f64,
                examples: n,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, p: &str) -> (String, String, f32) {
        (t.into(), p.into(), 0.5)
    }

    #[test]
    fn larson_metrics_and_macro_f1() {
        let rows = vec![
            row("a", "a"),
            row("a", "b"),
            row("b", "b"),
            row("b", "oos"), // in-scope predicted oos counts against in-scope accuracy
            row("oos", "oos"),
            row("oos", "a"),
        ];
        let r = score("test", &rows, "oos", 5);
        assert!((r.accuracy - 3.0 / 6.0).abs() < 1e-9);
        assert_eq!(r.in_scope_accuracy, Some(0.5));
        assert_eq!(r.oos_recall, Some(0.5));
        let a = r.per_intent.iter().find(|s| s.intent == "a").unwrap();
        assert!((a.precision - 0.5).abs() < 1e-9 && (a.recall - 0.5).abs() < 1e-9);
        let b = r.per_intent.iter().find(|s| s.intent == "b").unwrap();
        assert!((b.precision - 0.5).abs() < 1e-9);
        assert!((r.macro_f1 - 0.5).abs() < 1e-9);
        assert_eq!(r.confusions.len(), 3);
    }

    #[test]
    fn calibration_error_is_the_gap_between_confidence_and_accuracy() {
        // Half right at confidence 0.5: perfectly calibrated.
        let r = score("t", &[row("a", "a"), row("a", "b")], "oos", 5);
        assert!(r.ece.abs() < 1e-9);
        // Always right at confidence 0.5: under-confident by half.
        let r = score("t", &[row("a", "a"), row("b", "b")], "oos", 5);
        assert!((r.ece - 0.5).abs() < 1e-9);
        // The one bin that holds them, for the calibration plot.
        assert_eq!(
            r.calibration,
            vec![CalibrationBin {
                confidence: 0.5,
                accuracy: 1.0,
                examples: 2
            }]
        );
    }

    #[test]
    fn no_oos_means_no_oos_recall() {
        let r = score("validation", &[row("a", "a")], "oos", 5);
        assert_eq!(r.oos_recall, None);
        assert_eq!(r.in_scope_accuracy, Some(1.0));
    }
}
