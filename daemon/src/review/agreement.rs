//! How far reviewers agree on the labels they give queued items (an
//! intent name, or `out_of_scope`): Cohen's kappa for a pair of reviewers,
//! Krippendorff's alpha for all of them at once, missing labels allowed.
//! Both correct for the agreement chance alone would give: 1 is perfect,
//! 0 no better than chance, below 0 worse.
//!
//! Pure arithmetic over labels; counts are kept in ordered maps so that
//! sums run in the same order, and the same labels give the same figure to
//! the last bit.

use std::collections::BTreeMap;

/// Agreement between two reviewers over the items both labelled.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairAgreement {
    /// The reviewers, `a` before `b` in name order.
    pub a: String,
    pub b: String,
    pub items: usize,
    /// `None` where [`cohen_kappa`] is undefined.
    pub kappa: Option<f64>,
}

/// Cohen's kappa over the labels two reviewers gave the same items, one
/// `(first's, second's)` pair per item: (p_o − p_e) / (1 − p_e), where p_o
/// is the share of items they agree on and p_e the share they would agree
/// on by chance, given how often each uses each label.
///
/// `None` with no items, and where both gave every item one and the same
/// label: chance then explains all agreement (p_e = 1) and the ratio is
/// 0/0. Not 1, as it would be read as evidence the labels are reliable,
/// which a single label cannot show.
pub fn cohen_kappa(pairs: &[(&str, &str)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mut used: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let mut agreed = 0.0;
    for &(x, y) in pairs {
        used.entry(x).or_default().0 += 1.0;
        used.entry(y).or_default().1 += 1.0;
        if x == y {
            agreed += 1.0;
        }
    }
    let observed = agreed / n;
    let chance: f64 = used.values().map(|(x, y)| (x / n) * (y / n)).sum();
    (chance < 1.0).then(|| (observed - chance) / (1.0 - chance))
}

/// Krippendorff's alpha for nominal labels, each unit the labels its item
/// received from however many reviewers: 1 − D_o / D_e, observed over
/// expected disagreement, both taken from the coincidences of labels
/// within units (Krippendorff 2011, "Computing Krippendorff's
/// Alpha-Reliability"). Units with fewer than two labels pair with nothing
/// and are left out.
///
/// `None` with no unit of two labels or more, and where one label is all
/// that was given: then D_e = 0, and Krippendorff leaves alpha undefined
/// (there is no variation to be reliable about).
pub fn krippendorff_alpha(units: &[Vec<&str>]) -> Option<f64> {
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    // Σ over units of the off-diagonal coincidences, Σ_{c≠k} o_ck.
    let mut disagreeing = 0.0;
    for unit in units.iter().filter(|u| u.len() >= 2) {
        let mut counts: BTreeMap<&str, f64> = BTreeMap::new();
        for &label in unit {
            *counts.entry(label).or_default() += 1.0;
            *totals.entry(label).or_default() += 1.0;
        }
        let m = unit.len() as f64;
        let same: f64 = counts.values().map(|c| c * c).sum();
        disagreeing += (m * m - same) / (m - 1.0);
    }
    let n: f64 = totals.values().sum();
    // Σ_{c≠k} n_c n_k.
    let expected = n * n - totals.values().map(|c| c * c).sum::<f64>();
    (n > 0.0 && expected > 0.0).then(|| 1.0 - (n - 1.0) * disagreeing / expected)
}

/// The labels of each item, from `(item, reviewer, label)` triples, items
/// in name order, ready for [`krippendorff_alpha`]. A reviewer who labelled
/// an item twice counts once, with the later label.
pub fn units<'a>(labels: &[(&'a str, &'a str, &'a str)]) -> Vec<Vec<&'a str>> {
    let mut items: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for &(item, reviewer, label) in labels {
        items.entry(item).or_default().insert(reviewer, label);
    }
    items
        .into_values()
        .map(|by| by.into_values().collect())
        .collect()
}

/// Cohen's kappa for every pair of reviewers who labelled at least one
/// item in common, from `(item, reviewer, label)` triples, in name order.
/// A reviewer who labelled an item twice counts once, with the later label.
pub fn pairwise(labels: &[(&str, &str, &str)]) -> Vec<PairAgreement> {
    let mut by_reviewer: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for &(item, reviewer, label) in labels {
        by_reviewer.entry(reviewer).or_default().insert(item, label);
    }
    let reviewers: Vec<_> = by_reviewer.iter().collect();
    let mut out = Vec::new();
    for (i, (a, a_labels)) in reviewers.iter().enumerate() {
        for (b, b_labels) in &reviewers[i + 1..] {
            let pairs: Vec<(&str, &str)> = a_labels
                .iter()
                .filter_map(|(item, x)| b_labels.get(item).map(|y| (*x, *y)))
                .collect();
            if !pairs.is_empty() {
                out.push(PairAgreement {
                    a: a.to_string(),
                    b: b.to_string(),
                    items: pairs.len(),
                    kappa: cohen_kappa(&pairs),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: Option<f64>, want: f64, places: i32) -> bool {
        x.is_some_and(|x| (x - want).abs() < 0.5 * 10f64.powi(-places))
    }

    /// The worked example on Wikipedia's "Cohen's kappa" page: 50
    /// proposals, 20 yes–yes, 5 yes–no, 10 no–yes, 15 no–no; p_o = 0.7,
    /// p_e = 0.5.
    #[test]
    fn cohen_kappa_matches_the_textbook() {
        let mut pairs = Vec::new();
        for (x, y, n) in [
            ("yes", "yes", 20),
            ("yes", "no", 5),
            ("no", "yes", 10),
            ("no", "no", 15),
        ] {
            pairs.extend(std::iter::repeat_n((x, y), n));
        }
        assert!(close(cohen_kappa(&pairs), 0.4, 12));
        assert_eq!(cohen_kappa(&[]), None);
        assert_eq!(cohen_kappa(&[("a", "a"), ("a", "a")]), None);
        assert_eq!(cohen_kappa(&[("a", "a"), ("b", "b")]), Some(1.0));
    }

    /// Krippendorff (2011), section C: 4 observers, 12 units, values 1–5,
    /// some missing; nominal alpha = 0.743. Unit 12 has one value only.
    #[test]
    fn krippendorff_alpha_matches_the_worked_example() {
        let observers = [
            "1 2 3 3 2 1 4 1 2 . . .",
            "1 2 3 3 2 2 4 1 2 5 . 3",
            ". 3 3 3 2 3 4 2 2 5 1 .",
            "1 2 3 3 2 4 4 1 2 5 1 .",
        ];
        let mut labels = Vec::new();
        for (observer, row) in ["A", "B", "C", "D"].into_iter().zip(observers) {
            for (unit, value) in [
                "u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12",
            ]
            .into_iter()
            .zip(row.split(' '))
            .filter(|(_, v)| *v != ".")
            {
                labels.push((unit, observer, value));
            }
        }
        let units = units(&labels);
        assert_eq!(units.len(), 12);
        assert!(close(krippendorff_alpha(&units), 0.743, 3));

        assert_eq!(krippendorff_alpha(&[vec!["a"], vec![]]), None);
        assert_eq!(
            krippendorff_alpha(&[vec!["a", "a"], vec!["a", "a", "a"]]),
            None
        );
        assert_eq!(
            krippendorff_alpha(&[vec!["a", "a"], vec!["b", "b"]]),
            Some(1.0)
        );
    }

    #[test]
    fn pairs_are_the_reviewers_sharing_items() {
        let labels = [
            ("i1", "kim", "book"),
            ("i1", "ana", "book"),
            ("i2", "kim", "cancel"),
            ("i2", "ana", "book"),
            ("i2", "ana", "cancel"),
            ("i3", "lee", "book"),
        ];
        let pair = PairAgreement {
            a: "ana".into(),
            b: "kim".into(),
            items: 2,
            kappa: Some(1.0),
        };
        assert_eq!(pairwise(&labels), [pair]);
    }
}
