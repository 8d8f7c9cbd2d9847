//! Near-duplicate search that scales: texts become sets of word
//! 3-shingles, MinHash signatures with locality-sensitive banding find the
//! few earlier texts worth comparing, and the Jaccard similarity of the
//! shingle sets decides. Every hash has a fixed seed, so the same input
//! always gives the same answer.

use std::collections::HashMap;

/// Words per shingle.
const SHINGLE: usize = 3;

/// How likely a pair exactly at the threshold must be to share a band:
/// the banding is the most selective that still finds this many.
const RECALL: f64 = 0.98;

/// The shingles of `text` as 32-bit hashes, sorted and distinct. Words are
/// runs of letters and digits, lower-cased, so case and punctuation do not
/// make texts differ. A text of fewer than three words is one shingle.
pub fn shingles(text: &str) -> Vec<u32> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<u32> = words
        .windows(SHINGLE.min(words.len()).max(1))
        .map(|w| fold(w.iter().map(|w| hash_bytes(w.as_bytes()))) as u32)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Jaccard similarity of two sorted, distinct sets.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => (i, j, common) = (i + 1, j + 1, common + 1),
        }
    }
    let union = a.len() + b.len() - common;
    if union == 0 {
        0.0
    } else {
        common as f64 / union as f64
    }
}

/// The earlier texts, each filed under its bands' keys; ids are 0, 1, 2…
/// in the order texts are inserted.
pub struct Index {
    /// Multipliers and offsets of the hash functions standing in for
    /// random permutations, one pair per signature position.
    seeds: Vec<(u64, u64)>,
    rows: usize,
    /// Band key (truncated: a collision costs one needless comparison) →
    /// the latest entry under it; `next` chains the earlier ones. Entry `e`
    /// is text `e / bands`. Flat tables rather than a list per key: about
    /// 20 bytes per text and band, some 200 MB for a million texts at the
    /// default threshold.
    heads: HashMap<u32, u32>,
    next: Vec<u32>,
    signature: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl Index {
    /// An index whose `num_perm`-long signatures are cut into bands sized
    /// for `threshold`.
    pub fn new(num_perm: usize, threshold: f64) -> Index {
        let mut state = 0x436f_6163_685f_4d48; // fixed: results must not vary by run
        let seeds = (0..num_perm)
            .map(|_| (splitmix(&mut state) | 1, splitmix(&mut state)))
            .collect();
        Index {
            seeds,
            rows: rows_per_band(num_perm, threshold),
            heads: HashMap::new(),
            next: Vec::new(),
            signature: vec![0; num_perm],
        }
    }

    /// The band keys of a shingle set, salted with `group` so that texts of
    /// different groups never meet.
    pub fn keys(&mut self, group: &str, shingles: &[u32]) -> Vec<u32> {
        self.signature.fill(u32::MAX);
        for &s in shingles {
            let x = mix(u64::from(s));
            for (min, &(a, b)) in self.signature.iter_mut().zip(&self.seeds) {
                *min = (*min).min((a.wrapping_mul(x).wrapping_add(b) >> 32) as u32);
            }
        }
        let salt = hash_bytes(group.as_bytes());
        self.signature
            .chunks_exact(self.rows)
            .enumerate()
            .map(|(band, rows)| {
                let parts = [salt, band as u64].into_iter();
                fold(parts.chain(rows.iter().map(|&r| u64::from(r)))) as u32
            })
            .collect()
    }

    /// The ids filed under any of `keys`, each once, in ascending order.
    pub fn candidates(&self, keys: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        for key in keys {
            let mut at = self.heads.get(key).copied().unwrap_or(NONE);
            while at != NONE {
                out.push(at / keys.len() as u32);
                at = self.next[at as usize];
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// File the next id under each of `keys`, as [`Index::keys`] made them.
    pub fn insert(&mut self, keys: &[u32]) {
        for &key in keys {
            let entry = self.next.len() as u32;
            self.next
                .push(self.heads.insert(key, entry).unwrap_or(NONE));
        }
    }
}

/// Rows per band: the most (so the fewest needless candidates) for which
/// a pair at `threshold` still shares a band with probability [`RECALL`].
/// Signature positions past the last whole band go unused: a short band
/// would let through pairs far below the threshold.
fn rows_per_band(num_perm: usize, threshold: f64) -> usize {
    (1..=num_perm)
        .rev()
        .find(|&rows| {
            let bands = (num_perm / rows) as i32;
            1.0 - (1.0 - threshold.powi(rows as i32)).powi(bands) >= RECALL
        })
        .unwrap_or(1)
}

/// FNV-1a, then [`mix`]: stable across Rust releases, unlike std's hasher.
fn hash_bytes(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    mix(h)
}

fn fold(parts: impl Iterator<Item = u64>) -> u64 {
    parts.fold(0x9e37_79b9_7f4a_7c15, |h, p| mix(h ^ p).wrapping_add(p))
}

/// The splitmix64 finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix(*state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banding_fits_the_threshold() {
        assert_eq!(rows_per_band(128, 0.9), 11);
        assert_eq!(rows_per_band(128, 0.8), 7);
        assert_eq!(rows_per_band(128, 1.0), 128);
    }

    #[test]
    fn shingles_ignore_case_and_punctuation() {
        assert_eq!(
            shingles("Book a table, please!"),
            shingles("book a table please")
        );
        assert_eq!(shingles("book a table please").len(), 2);
        assert_eq!(shingles("hi").len(), 1);
        assert!(shingles(" ?! ").is_empty());
        let (a, b) = (shingles("a b c d"), shingles("a b c e"));
        assert_eq!(jaccard(&a, &b), 1.0 / 3.0);
    }
}
