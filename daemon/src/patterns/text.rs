//! Text as the patterns compare it: words (lowercase, digits as `#`),
//! TF-IDF vectors of words and word pairs, cosine and Jaccard similarity,
//! and stable ids.

use std::collections::HashMap;

/// Words too common to tell one request from another; sorted, so a
/// binary search finds them. Dropped from features and names, kept when a
/// message has nothing else.
const STOPWORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "but", "by", "can", "could",
    "do", "does", "for", "from", "get", "got", "have", "hello", "hey", "hi", "how", "i", "if",
    "im", "in", "is", "it", "its", "just", "me", "my", "need", "of", "on", "or", "please", "so",
    "that", "the", "there", "this", "to", "u", "want", "was", "we", "what", "whats", "when",
    "where", "which", "who", "why", "will", "with", "would", "you", "your",
];

fn is_stopword(w: &str) -> bool {
    STOPWORDS.binary_search(&w).is_ok()
}

/// The words of `text`: runs of letters and digits, lowercase, each run of
/// digits written `#` (order numbers and prices say nothing of intent),
/// apostrophes dropped (`don't` is `dont`).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_numeric() {
                if !word.ends_with('#') {
                    word.push('#');
                }
            } else {
                word.extend(c.to_lowercase());
            }
        } else if c != '\'' && c != '\u{2019}' && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The words that carry meaning: [`words`] without stopwords, or all of
/// them when nothing else is left.
pub fn content_words(text: &str) -> Vec<String> {
    let all = words(text);
    if all.iter().all(|w| is_stopword(w)) {
        return all;
    }
    all.into_iter().filter(|w| !is_stopword(w)).collect()
}

/// The text two messages are "the same" by: its words joined by spaces.
pub fn normalise(text: &str) -> String {
    words(text).join(" ")
}

/// A bot turn's text as failure points group it: lowercase, digits as
/// `#`, whitespace collapsed, at most 120 characters.
pub fn bot_key(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if out.chars().count() >= 120 {
            break;
        }
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else if c.is_numeric() {
            out.push('#');
        } else {
            out.push(c);
        }
    }
    out.trim_end().to_owned()
}

/// Jaccard similarity of two word sets (sorted and deduplicated).
pub fn jaccard(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut both) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    both as f64 / (a.len() + b.len() - both) as f64
}

/// A word set for [`jaccard`].
pub fn word_set(text: &str) -> Vec<String> {
    let mut w = content_words(text);
    w.sort_unstable();
    w.dedup();
    w
}

/// `prefix` and the first 16 hex digits of the SHA-256 of `key`: an id that
/// stays the same while what it names does.
pub fn stable_id(prefix: &str, key: &str) -> String {
    let h = crate::core::hash::sha256_hex(key.as_bytes());
    format!("{prefix}-{}", &h[..16])
}

/// A sparse vector: (term, weight) sorted by term.
pub type Sparse = Vec<(u32, f32)>;

/// Dot product of two sparse vectors (cosine, when both are unit length).
pub fn dot(a: &[(u32, f32)], b: &[(u32, f32)]) -> f64 {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.len() * 16 < long.len() {
        // A message against a centroid: look each term up.
        return short
            .iter()
            .filter_map(|&(t, w)| {
                let j = long.binary_search_by_key(&t, |&(u, _)| u).ok()?;
                Some(f64::from(w) * f64::from(long[j].1))
            })
            .sum();
    }
    let (mut i, mut j, mut sum) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += f64::from(a[i].1) * f64::from(b[j].1);
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

/// Scale `v` to unit length (an all-zero vector stays as it is).
pub fn unit(mut v: Sparse) -> Sparse {
    let norm = v
        .iter()
        .map(|(_, w)| f64::from(*w).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for (_, w) in &mut v {
            *w = (f64::from(*w) / norm) as f32;
        }
    }
    v
}

/// The weighted sum of sparse vectors, keeping its `keep` heaviest terms,
/// at unit length: a centroid. Summing merges sorted runs, so a cluster of
/// thousands of messages costs a sort of their terms, not a dense array.
pub fn centroid<'v>(parts: impl Iterator<Item = (&'v Sparse, f32)>, keep: usize) -> Sparse {
    let mut all: Vec<(u32, f32)> = Vec::new();
    for (v, scale) in parts {
        all.extend(v.iter().map(|&(t, w)| (t, w * scale)));
    }
    all.sort_unstable_by_key(|&(t, _)| t);
    let mut sum: Sparse = Vec::with_capacity(all.len());
    for (t, w) in all {
        match sum.last_mut() {
            Some(last) if last.0 == t => last.1 += w,
            _ => sum.push((t, w)),
        }
    }
    unit(keep_heaviest(sum, keep))
}

/// `a + w·b`.
pub fn add_scaled(a: &[(u32, f32)], b: &[(u32, f32)], w: f32) -> Sparse {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + w * y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push((y.0, w * y.1));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// `v` with only its `keep` heaviest terms, still sorted by term.
pub fn keep_heaviest(mut v: Sparse, keep: usize) -> Sparse {
    if v.len() > keep {
        v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(keep);
        v.sort_unstable_by_key(|&(t, _)| t);
    }
    v
}

/// The `n` heaviest terms of `v`, heaviest first (ties by term, so the
/// order is the same on every run).
pub fn heaviest(v: &[(u32, f32)], n: usize) -> Vec<u32> {
    let mut by_weight: Vec<(u32, f32)> = v.to_vec();
    by_weight.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    by_weight.into_iter().take(n).map(|(t, _)| t).collect()
}

/// The terms of a set of texts and how many texts hold each: the space
/// TF-IDF vectors live in.
#[derive(Debug, Default)]
pub struct Vocabulary {
    ids: HashMap<String, u32>,
    /// The term of each id: a word, or two words and a space between.
    pub terms: Vec<String>,
    df: Vec<u32>,
    docs: u32,
}

impl Vocabulary {
    /// The term counts of `text` (its content words and adjacent pairs of
    /// them), adding its terms to the vocabulary.
    pub fn count(&mut self, text: &str) -> Sparse {
        let words = content_words(text);
        self.docs += 1;
        let mut tf: Sparse = Vec::with_capacity(words.len() * 2);
        let mut pair = String::new();
        for (i, w) in words.iter().enumerate() {
            tf.push((self.id(w), 1.0));
            if let Some(next) = words.get(i + 1) {
                pair.clear();
                pair.push_str(w);
                pair.push(' ');
                pair.push_str(next);
                tf.push((self.id(&pair), 1.0));
            }
        }
        tf.sort_unstable_by_key(|&(t, _)| t);
        let mut counts: Sparse = Vec::with_capacity(tf.len());
        for (t, n) in tf {
            match counts.last_mut() {
                Some(last) if last.0 == t => last.1 += n,
                _ => counts.push((t, n)),
            }
        }
        for &(t, _) in &counts {
            self.df[t as usize] += 1;
        }
        counts
    }

    fn id(&mut self, term: &str) -> u32 {
        if let Some(&id) = self.ids.get(term) {
            return id;
        }
        let id = self.terms.len() as u32;
        self.ids.insert(term.to_owned(), id);
        self.terms.push(term.to_owned());
        self.df.push(0);
        id
    }

    /// Term counts as a unit TF-IDF vector: sublinear term frequency
    /// (1 + ln n) times smoothed inverse document frequency
    /// (ln((1 + N) / (1 + df)) + 1), as scikit-learn computes them, word
    /// pairs at half weight: they tell phrases apart, but at full weight
    /// one inserted word ("refund my *broken* order") costs two pairs and
    /// halves the similarity of short texts.
    pub fn weigh(&self, counts: &Sparse) -> Sparse {
        let docs = f64::from(self.docs);
        let v = counts
            .iter()
            .map(|&(t, n)| {
                let idf = ((1.0 + docs) / (1.0 + f64::from(self.df[t as usize]))).ln() + 1.0;
                let kind = if self.terms[t as usize].contains(' ') {
                    0.5
                } else {
                    1.0
                };
                (t, ((1.0 + f64::from(n).ln()) * idf * kind) as f32)
            })
            .collect();
        unit(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn words_are_lowercase_with_digits_folded() {
        assert_eq!(
            words("Where's order #12345? I DON'T know…"),
            ["wheres", "order", "#", "i", "dont", "know"]
        );
        assert_eq!(content_words("where is my order"), ["order"]);
        assert_eq!(content_words("hi there"), ["hi", "there"]);
        assert_eq!(
            bot_key("  Your order  42\nships TODAY "),
            "your order ## ships today"
        );
    }

    #[test]
    fn similar_texts_are_close() {
        let mut v = Vocabulary::default();
        let texts = [
            "refund my order",
            "I want a refund for my broken order",
            "nearest store",
        ];
        let counts: Vec<Sparse> = texts.iter().map(|t| v.count(t)).collect();
        let vecs: Vec<Sparse> = counts.iter().map(|c| v.weigh(c)).collect();
        assert!((dot(&vecs[0], &vecs[0]) - 1.0).abs() < 1e-6);
        assert!(dot(&vecs[0], &vecs[1]) > 0.5);
        assert_eq!(dot(&vecs[0], &vecs[2]), 0.0);
        let c = centroid(vecs.iter().take(2).map(|v| (v, 1.0)), 100);
        let sum = add_scaled(&vecs[0], &vecs[1], 1.0);
        assert!((dot(&unit(sum), &c) - 1.0).abs() < 1e-6);
        assert!(dot(&c, &vecs[0]) > 0.8);
        let top = &v.terms[heaviest(&c, 1)[0] as usize];
        assert!(top == "refund" || top == "order", "{top}");
    }

    #[test]
    fn jaccard_of_word_sets() {
        let a = word_set("I want to cancel my booking");
        let b = word_set("cancel booking please");
        assert_eq!(jaccard(&a, &b), 1.0);
        assert_eq!(jaccard(&a, &word_set("store hours")), 0.0);
    }
}
