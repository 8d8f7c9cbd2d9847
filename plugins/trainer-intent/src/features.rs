//! Text → sparse, L2-normalised TF-IDF vectors.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// How text is cut into features.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Featurizer {
    pub word_ngrams: usize,
    pub char_min: usize,
    pub char_max: usize,
    /// Feature strings in index order.
    pub vocab: Vec<String>,
    pub idf: Vec<f32>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

/// A sparse vector: sorted feature indices and their weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse {
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
}

/// Lower-cased words: runs of letters, digits and apostrophes.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '\'' {
            cur.extend(ch.to_lowercase());
        } else if !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Every feature string of `text`, with repeats (term counts).
fn raw_features(text: &str, word_ngrams: usize, char_min: usize, char_max: usize) -> Vec<String> {
    let words = tokenize(text);
    let mut out = Vec::new();
    for n in 1..=word_ngrams {
        for w in words.windows(n) {
            out.push(format!("w{n}:{}", w.join(" ")));
        }
    }
    if char_min > 0 {
        for w in &words {
            let padded: Vec<char> = format!(" {w} ").chars().collect();
            for n in char_min..=char_max {
                for g in padded.windows(n) {
                    out.push(format!("c:{}", g.iter().collect::<String>()));
                }
            }
        }
    }
    out
}

fn counts(features: Vec<String>) -> BTreeMap<String, u32> {
    let mut c = BTreeMap::new();
    for f in features {
        *c.entry(f).or_insert(0) += 1;
    }
    c
}

impl Featurizer {
    /// Build the vocabulary from training texts: features in at least
    /// `min_df` texts, the `max_features` most frequent (ties broken by the
    /// feature string, so the result never depends on hashing).
    pub fn fit(
        texts: &[&str],
        word_ngrams: usize,
        char_min: usize,
        char_max: usize,
        min_df: usize,
        max_features: usize,
    ) -> Featurizer {
        let mut df: BTreeMap<String, u32> = BTreeMap::new();
        for t in texts {
            for f in counts(raw_features(t, word_ngrams, char_min, char_max)).into_keys() {
                *df.entry(f).or_insert(0) += 1;
            }
        }
        let mut ranked: Vec<(String, u32)> = df
            .into_iter()
            .filter(|(_, d)| *d as usize >= min_df.max(1))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(max_features);
        let n = texts.len() as f32;
        let idf = ranked
            .iter()
            .map(|(_, d)| ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0)
            .collect();
        let vocab: Vec<String> = ranked.into_iter().map(|(f, _)| f).collect();
        let mut f = Featurizer {
            word_ngrams,
            char_min,
            char_max,
            vocab,
            idf,
            index: HashMap::new(),
        };
        f.build_index();
        f
    }

    /// Rebuild the string → index map after deserialising.
    pub fn build_index(&mut self) {
        self.index = self
            .vocab
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i as u32))
            .collect();
    }

    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// The TF-IDF vector of `text`; unknown features are dropped.
    pub fn transform(&self, text: &str) -> Sparse {
        let mut pairs: Vec<(u32, f32)> = Vec::new();
        for (f, c) in counts(raw_features(
            text,
            self.word_ngrams,
            self.char_min,
            self.char_max,
        )) {
            if let Some(&i) = self.index.get(&f) {
                pairs.push((i, (1.0 + (c as f32).ln()) * self.idf[i as usize]));
            }
        }
        pairs.sort_by_key(|p| p.0);
        let norm = pairs.iter().map(|p| p.1 * p.1).sum::<f32>().sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        Sparse {
            idx: pairs.iter().map(|p| p.0).collect(),
            val: pairs.iter().map(|p| p.1 * scale).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_lowercases_and_splits_on_punctuation() {
        assert_eq!(
            tokenize("Book a DJ, please!"),
            ["book", "a", "dj", "please"]
        );
    }

    #[test]
    fn vectors_are_unit_length_and_sorted() {
        let f = Featurizer::fit(&["book a dj", "find a florist"], 2, 3, 4, 1, 1000);
        let v = f.transform("book a florist");
        let norm: f32 = v.val.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(v.idx.windows(2).all(|w| w[0] < w[1]));
        assert!(f.transform("zzzz").idx.is_empty());
    }
}
