//! The `split` step: assign train / validation / test.
//!
//! `mode = "keep"` keeps the splits the data came with (examples without one
//! are training data) and, when the data has no validation split, carves one
//! out of training. `mode = "stratified"` reassigns every example, per
//! intent, so each split keeps the intent mix. Both are seeded.

use super::{StepCtx, builtin_params, dataset_for, save_snapshot};
use crate::core::example::{Example, Split};
use crate::pipeline::Output;
use crate::workflow::Builtin;
use crate::workflow::params::{BuiltinParams, SplitMode as Mode};
use anyhow::{Result, bail};
use serde_json::json;
use std::collections::BTreeMap;

/// The step: the examples of every dataset it needs directly (else of the
/// nearest one before it), split and stored as a new snapshot.
pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let BuiltinParams::Split(p) = builtin_params(ctx, Builtin::Split)? else {
        bail!("a split step without split parameters");
    };
    let mut rows: Vec<Example> = Vec::new();
    let mut direct = 0;
    for n in &ctx.step.needs {
        if let Some(d) = ctx
            .progress
            .outputs
            .get(n.as_str())
            .and_then(Output::dataset)
        {
            rows.extend(d.rows.iter().cloned());
            direct += 1;
        }
    }
    if direct == 0 {
        rows = dataset_for(ctx)?.rows.clone();
    }
    let mode = p.mode_for(rows.iter().any(|r| r.split != Split::Unspecified));
    let cfg = SplitConfig {
        mode,
        validation: p.validation,
        test: p.test_for(mode),
        seed: p.seed,
    };
    if cfg.validation + cfg.test >= 1.0 {
        bail!(
            "validation ({}) and test ({}) must be fractions that leave some training data",
            cfg.validation,
            cfg.test
        );
    }
    apply(&mut rows, &cfg);
    let origin = json!({
        "step": ctx.step.id,
        "kind": "split",
        "mode": match mode { Mode::Keep => "keep", Mode::Stratified => "stratified" },
        "validation": cfg.validation,
        "test": cfg.test,
        "seed": cfg.seed,
    });
    Ok(Output::Dataset(save_snapshot(ctx, rows, origin).await?))
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitConfig {
    pub mode: Mode,
    pub validation: f64,
    pub test: f64,
    pub seed: u64,
}

/// SplitMix64, for a shuffle that is the same on every platform.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Per intent, move `fraction` of the examples at `candidates` to `to`.
fn carve(
    rows: &mut [Example],
    candidates: &[usize],
    fraction: f64,
    to: Split,
    seed: u64,
) -> Vec<usize> {
    let mut by_intent: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in candidates {
        by_intent
            .entry(rows[i].intent.as_str())
            .or_default()
            .push(i);
    }
    let mut moved = Vec::new();
    let mut keep = Vec::new();
    for (n, (_, mut idx)) in by_intent.into_iter().enumerate() {
        shuffle(&mut idx, seed.wrapping_add(n as u64));
        // Intents with a single example stay in training.
        let take = if idx.len() < 2 {
            0
        } else {
            ((idx.len() as f64 * fraction).round() as usize).clamp(1, idx.len() - 1)
        };
        let take = if fraction <= 0.0 { 0 } else { take };
        moved.extend_from_slice(&idx[..take]);
        keep.extend_from_slice(&idx[take..]);
    }
    for &i in &moved {
        rows[i].split = to;
    }
    keep.sort_unstable();
    keep
}

/// Assign splits in place.
pub fn apply(rows: &mut [Example], config: &SplitConfig) {
    match config.mode {
        Mode::Stratified => {
            for r in rows.iter_mut() {
                r.split = Split::Train;
            }
            let all: Vec<usize> = (0..rows.len()).collect();
            let rest = carve(rows, &all, config.test, Split::Test, config.seed);
            let share = if config.test < 1.0 {
                config.validation / (1.0 - config.test)
            } else {
                0.0
            };
            carve(rows, &rest, share, Split::Validation, config.seed ^ 0x5eed);
        }
        Mode::Keep => {
            for r in rows.iter_mut() {
                if r.split == Split::Unspecified {
                    r.split = Split::Train;
                }
            }
            if !rows.iter().any(|r| r.split == Split::Validation) {
                let train: Vec<usize> = (0..rows.len())
                    .filter(|&i| rows[i].split == Split::Train)
                    .collect();
                carve(
                    rows,
                    &train,
                    config.validation,
                    Split::Validation,
                    config.seed,
                );
            }
        }
    }
}

/// Stratified K-fold assignment: the fold (0..k) of every row, each intent
/// spread evenly over the folds, seeded.
pub fn folds(rows: &[Example], k: usize, seed: u64) -> Vec<usize> {
    let mut by_intent: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_intent.entry(r.intent.as_str()).or_default().push(i);
    }
    let mut fold = vec![0; rows.len()];
    let mut next = 0;
    for (n, (_, mut idx)) in by_intent.into_iter().enumerate() {
        shuffle(&mut idx, seed.wrapping_add(n as u64));
        // Continue the round-robin across intents so small intents do not
        // all land in fold 0.
        for i in idx {
            fold[i] = next % k.max(1);
            next += 1;
        }
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example {
                text: format!("t{i}"),
                intent: format!("i{}", i % 4),
                entities: Vec::new(),
                split: Split::Unspecified,
            })
            .collect()
    }

    fn count(rows: &[Example], split: Split, intent: &str) -> usize {
        rows.iter()
            .filter(|r| r.split == split && r.intent == intent)
            .count()
    }

    #[test]
    fn stratified_keeps_the_intent_mix_and_is_seeded() {
        let cfg = SplitConfig {
            mode: Mode::Stratified,
            validation: 0.1,
            test: 0.2,
            seed: 3,
        };
        let mut a = rows(200);
        apply(&mut a, &cfg);
        for i in 0..4 {
            let intent = format!("i{i}");
            assert_eq!(count(&a, Split::Test, &intent), 10);
            assert_eq!(count(&a, Split::Validation, &intent), 5);
            assert_eq!(count(&a, Split::Train, &intent), 35);
        }
        let mut b = rows(200);
        apply(&mut b, &cfg);
        assert_eq!(a, b);
        let mut c = rows(200);
        apply(&mut c, &SplitConfig { seed: 4, ..cfg });
        assert_ne!(a, c);
    }

    #[test]
    fn folds_are_stratified_and_cover_every_row() {
        let r = rows(200);
        let f = folds(&r, 5, 1);
        for fold in 0..5 {
            for i in 0..4 {
                let n = r
                    .iter()
                    .zip(&f)
                    .filter(|(x, k)| **k == fold && x.intent == format!("i{i}"))
                    .count();
                assert_eq!(n, 10);
            }
        }
        assert_eq!(folds(&r, 5, 1), f);
    }

    #[test]
    fn keep_preserves_given_splits_and_carves_validation() {
        let mut r = rows(40);
        r[0].split = Split::Test;
        apply(
            &mut r,
            &SplitConfig {
                mode: Mode::Keep,
                validation: 0.25,
                test: 0.0,
                seed: 1,
            },
        );
        assert_eq!(r[0].split, Split::Test);
        assert!(r.iter().any(|x| x.split == Split::Validation));
        assert!(!r.iter().any(|x| x.split == Split::Unspecified));
    }
}
