//! Deterministic, sticky assignment of units (users, conversations) to
//! experiment arms.
//!
//! The algorithm is GrowthBook's (FNV-1a over UTF-16 code units, hash
//! version 2 for arms, version 1 for namespaces, bucket ranges from
//! cumulative weights and a coverage) so a unit lands in the same arm on
//! every daemon, after every restart, and in any GrowthBook SDK given the
//! same seed. Nothing is stored to make it sticky: the hash is the
//! assignment.

/// FNV-1a, 32 bits, over the UTF-16 code units of `text` (what a
/// JavaScript string is made of, so non-ASCII ids hash as in the SDKs).
pub fn fnv1a32(text: &str) -> u32 {
    text.encode_utf16().fold(0x811c_9dc5_u32, |h, unit| {
        (h ^ u32::from(unit)).wrapping_mul(0x0100_0193)
    })
}

/// Which of the two hash versions places a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashVersion {
    /// `fnv(id + seed) % 1000 / 1000`: coarse; used for namespaces.
    V1,
    /// `fnv(decimal(fnv(seed + id))) % 10000 / 10000`: the double hash
    /// that removes v1's bias for similar seeds; used for arms.
    V2,
}

impl HashVersion {
    /// The version a number names, as in the SDKs' `hashVersion`.
    pub fn from_number(n: u32) -> Option<HashVersion> {
        match n {
            1 => Some(HashVersion::V1),
            2 => Some(HashVersion::V2),
            _ => None,
        }
    }
}

/// Where `id` falls in [0, 1) for this `seed`.
pub fn hash(seed: &str, id: &str, version: HashVersion) -> f64 {
    match version {
        HashVersion::V1 => f64::from(fnv1a32(&format!("{id}{seed}")) % 1000) / 1000.0,
        HashVersion::V2 => {
            let first = fnv1a32(&format!("{seed}{id}"));
            f64::from(fnv1a32(&first.to_string()) % 10_000) / 10_000.0
        }
    }
}

/// `n` equal weights (none for `n == 0`).
pub fn equal_weights(n: usize) -> Vec<f64> {
    vec![1.0 / n as f64; n]
}

/// The bucket `[start, end)` of each arm: arm `i` starts where the
/// weights before it add up to, and is `coverage · w_i` wide. Coverage is
/// clamped to [0, 1]; weights of the wrong count, or not summing to 1
/// within 0.01, become equal weights (the SDKs' rule: a bad weight list
/// must not silently starve an arm).
pub fn bucket_ranges(arms: usize, coverage: f64, weights: Option<&[f64]>) -> Vec<(f64, f64)> {
    let coverage = coverage.clamp(0.0, 1.0);
    let equal = equal_weights(arms);
    let weights = match weights {
        Some(w) if w.len() == arms && (0.99..=1.01).contains(&w.iter().sum::<f64>()) => w,
        _ => &equal,
    };
    let mut start = 0.0;
    weights
        .iter()
        .map(|w| {
            let range = (start, start + coverage * w);
            start += w;
            range
        })
        .collect()
}

/// The arm whose bucket holds `n`, or `None` when `n` falls outside every
/// bucket (the unit is not in the experiment's coverage).
pub fn choose(n: f64, ranges: &[(f64, f64)]) -> Option<usize> {
    ranges.iter().position(|&(lo, hi)| lo <= n && n < hi)
}

/// Whether `id` is in the slice `[from, to)` of `namespace`: experiments
/// sharing a namespace with disjoint slices never share a unit.
pub fn in_namespace(id: &str, namespace: &str, from: f64, to: f64) -> bool {
    let n = hash(&format!("__{namespace}"), id, HashVersion::V1);
    from <= n && n < to
}

/// The arm of `id` in an experiment seeded `seed`, with these ranges.
pub fn assign(seed: &str, id: &str, ranges: &[(f64, f64)]) -> Option<usize> {
    choose(hash(seed, id, HashVersion::V2), ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_published_values() {
        // FNV-1a 32 of the empty string is its offset basis; "a" is the
        // value in the FNV reference tables.
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
    }

    #[test]
    fn non_ascii_ids_hash_over_utf16_code_units() {
        // "é" is one UTF-16 unit (0xE9) but two UTF-8 bytes; "😀" is two
        // UTF-16 units (a surrogate pair).
        let by_units = |units: &[u16]| {
            units.iter().fold(0x811c_9dc5_u32, |h, &u| {
                (h ^ u32::from(u)).wrapping_mul(0x0100_0193)
            })
        };
        assert_eq!(fnv1a32("é"), by_units(&[0xe9]));
        assert_eq!(fnv1a32("😀"), by_units(&[0xd83d, 0xde00]));
    }

    #[test]
    fn arms_split_traffic_by_their_weights() {
        let ranges = bucket_ranges(2, 1.0, Some(&[0.2, 0.8]));
        let mut counts = [0usize; 2];
        for i in 0..100_000 {
            counts[assign("exp-1", &format!("user-{i}"), &ranges).unwrap()] += 1;
        }
        let share = counts[0] as f64 / 100_000.0;
        assert!((share - 0.2).abs() < 0.01, "control share {share}");
    }
}
