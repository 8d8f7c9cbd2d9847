//! Text → sparse, L2-normalised TF-IDF vectors; after them the static
//! word vectors' sum, or a sentence encoder's embedding.

use crate::encoder::Encoder;
use crate::word_clusters::{self, WordClusters};
use crate::word_vectors::{self, WordVectors, fnv1a};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How text is cut into features.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Featurizer {
    pub word_ngrams: usize,
    pub char_min: usize,
    pub char_max: usize,
    /// Feature strings in index order.
    pub vocab: Vec<String>,
    pub idf: Vec<f32>,
    /// Dimensions of the static word vectors' block after the n-gram
    /// features (0: none).
    #[serde(default)]
    pub vectors: usize,
    /// That block's length (the n-gram blocks have length 1 each).
    #[serde(default)]
    pub vectors_weight: f32,
    /// Which table of word vectors (its id): a model is only read with the
    /// table it was trained with.
    #[serde(default)]
    pub vectors_table: String,
    /// Words that the shipped word-piece vocabulary spells (see
    /// [`WordVectors::spells`]) count as known beside the vocabulary's
    /// own; off in models from before it, which keep their decisions.
    #[serde(default)]
    pub spelled_known: bool,
    /// IDF of the word pieces seen in training, by piece.
    #[serde(default)]
    pub vectors_idf: BTreeMap<u32, f32>,
    /// IDF of a piece never seen in training.
    #[serde(default)]
    pub vectors_idf_unseen: f32,
    /// Dimensions of the sentence embedding after those (0: no encoder).
    #[serde(default)]
    pub dense: usize,
    /// The embedding's length in the feature vector (the n-gram blocks
    /// have length 1 each).
    #[serde(default)]
    pub dense_weight: f32,
    /// Which word clusters (their id) give each word, and each pair of
    /// neighbouring words, a feature beside the word n-grams; empty: none
    /// (models from before them, or trained with `word_clusters` off).
    #[serde(default)]
    pub clusters: String,
    #[serde(skip)]
    cluster_table: Option<&'static WordClusters>,
    #[serde(skip)]
    table: Option<&'static WordVectors>,
    #[serde(skip)]
    encoder: Option<Arc<Encoder>>,
    #[serde(skip)]
    index: HashMap<String, u32>,
    /// Per feature: is it a word n-gram (else a character n-gram)?
    #[serde(skip)]
    word_block: Vec<bool>,
    /// Read a word the vocabulary lacks as the known word one typing slip
    /// away ([`Featurizer::correction`]); off in models from before it.
    #[serde(default)]
    pub corrects_typos: bool,
    /// With `corrects_typos`: the vocabulary's words (their `w1:`
    /// features) by the hash of each string one letter shorter than them,
    /// and of themselves.
    #[serde(skip)]
    near: HashMap<u64, Vec<u32>>,
}

/// Typos are corrected in words of this many letters…
pub const TYPO_MIN: usize = 4;
/// …to this many (longer ones are left alone, so a hostile text of long
/// words costs no more than its character n-grams).
pub const TYPO_MAX: usize = 24;

/// The keys of `word` in [`Featurizer::near`]: its hash, and its hashes
/// with one letter left out, for each letter (a collision only adds a
/// candidate that [`one_slip`] then turns down).
fn near_keys(word: &[u8]) -> impl Iterator<Item = u64> + '_ {
    std::iter::once(fnv1a(word)).chain((0..word.len()).map(move |i| {
        fnv1a(
            word.iter()
                .enumerate()
                .filter(move |&(j, _)| j != i)
                .map(|(_, c)| c),
        )
    }))
}

/// Whether `a` and `b` are one typing slip apart: a letter dropped, added
/// or changed, or two neighbouring letters swapped.
fn one_slip(a: &[u8], b: &[u8]) -> bool {
    if a.len() == b.len() {
        let mut diff = (0..a.len()).filter(|&i| a[i] != b[i]);
        match (diff.next(), diff.next(), diff.next()) {
            (Some(_), None, _) => true,
            (Some(i), Some(j), None) => j == i + 1 && a[i] == b[j] && a[j] == b[i],
            _ => false,
        }
    } else {
        let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
        if long.len() != short.len() + 1 {
            return false;
        }
        let i = (0..short.len())
            .find(|&i| short[i] != long[i])
            .unwrap_or(short.len());
        short[i..] == long[i + 1..]
    }
}

/// A word a typo can be corrected in (or to): ASCII letters only (the
/// word-piece vocabulary that tells a word of its own is English; a
/// string of Chinese characters is no one word), of a length between
/// `min` and [`TYPO_MAX`].
fn typo_word(word: &str, min: usize) -> Option<&[u8]> {
    let b = word.as_bytes();
    (b.len() >= min && b.len() <= TYPO_MAX && b.iter().all(u8::is_ascii_alphabetic)).then_some(b)
}

/// Known words indexed for correction, the most frequent first: enough for
/// any vocabulary a trainer keeps, and a bound on a hostile model's.
const NEAR_WORDS: usize = 50_000;

/// Known words kept under one key, the most frequent first; a key shared
/// by more only in a hostile model, and a bound on a lookup's cost.
const NEAR_BUCKET: usize = 16;

/// Of a text, at most this many distinct unknown words are corrected.
const CORRECTED_WORDS: usize = JUDGED_WORDS;

/// The share of the vocabulary's longer words that must be words of the
/// word-piece vocabulary (English) for typos to be corrected: in another
/// language, a real word one letter from a known one ("cuesta",
/// "cuenta") would be taken for a typo.
const TYPO_LANGUAGE_SHARE: f64 = 0.5;

/// The distinct words of `text`, sorted.
pub fn distinct_words(text: &str) -> Vec<String> {
    let mut words = tokenize(text);
    words.sort_unstable();
    words.dedup();
    words
}

/// The words whether a text is understood is judged on: its distinct
/// words, the first [`JUDGED_WORDS`] of them in sorted order, so that a
/// huge text costs no more than a long one.
pub fn judged_words(text: &str) -> Vec<String> {
    let mut words = distinct_words(text);
    words.truncate(JUDGED_WORDS);
    words
}

/// How many words (as [`tokenize`] cuts them) `text` has, counting to
/// `cap` at most.
pub fn word_count(text: &str, cap: usize) -> usize {
    let mut n = 0;
    let mut inside = false;
    for ch in text.chars() {
        let part = ch.is_alphanumeric() || ch == '\'';
        if part && !inside {
            n += 1;
            if n >= cap {
                return n;
            }
        }
        inside = part;
    }
    n
}

/// At most this many distinct words of a text are judged.
pub const JUDGED_WORDS: usize = 256;

/// A text of `words` distinct words, `known` of them known, is understood
/// when it has words and at least a third of them are known.
pub fn understood(known: usize, words: usize) -> bool {
    words > 0 && 3 * known >= words
}

/// The longest word or character n-gram a model may use.
pub const MAX_NGRAM: usize = 16;

/// The longest the word vectors' or the embedding's block may be: past it
/// the n-gram blocks (length 1 each) no longer count, and the logits
/// could overflow.
pub const MAX_BLOCK_WEIGHT: f32 = 16.0;

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

/// Call `f` with every feature string of `text`, repeats included (they are
/// term counts). One buffer is reused for all of them.
fn for_each_feature(
    text: &str,
    word_ngrams: usize,
    char_min: usize,
    char_max: usize,
    clusters: Option<&WordClusters>,
    mut f: impl FnMut(&str),
) {
    use std::fmt::Write;
    let words = tokenize(text);
    let mut buf = String::with_capacity(64);
    if let Some(clusters) = clusters.filter(|_| word_ngrams > 0) {
        // Each word's cluster (`wk:`), and each pair of neighbours'
        // (`wK:`), in the word block.
        let mut last = None;
        for w in &words {
            let c = clusters.of(w);
            if let Some(c) = c {
                buf.clear();
                let _ = write!(buf, "wk:{c}");
                f(&buf);
                if let Some(l) = last {
                    buf.clear();
                    let _ = write!(buf, "wK:{l} {c}");
                    f(&buf);
                }
            }
            last = c;
        }
    }
    for n in 1..=word_ngrams {
        for w in words.windows(n) {
            buf.clear();
            buf.push('w');
            buf.push(char::from(b'0' + n.min(9) as u8));
            buf.push(':');
            for (i, word) in w.iter().enumerate() {
                if i > 0 {
                    buf.push(' ');
                }
                buf.push_str(word);
            }
            f(&buf);
        }
    }
    if char_min > 0 {
        let mut padded: Vec<char> = Vec::with_capacity(32);
        for w in &words {
            padded.clear();
            padded.push(' ');
            padded.extend(w.chars());
            padded.push(' ');
            for n in char_min..=char_max {
                for g in padded.windows(n) {
                    buf.clear();
                    buf.push_str("c:");
                    buf.extend(g.iter());
                    f(&buf);
                }
            }
        }
    }
}

impl Featurizer {
    /// Build the vocabulary from training texts: features in at least
    /// `min_df` texts, the `max_features` most frequent (ties broken by the
    /// feature string, so the result never depends on hashing).
    /// `clusters`, when given, adds the word clusters' features.
    pub fn fit(
        texts: &[&str],
        word_ngrams: usize,
        char_min: usize,
        char_max: usize,
        min_df: usize,
        max_features: usize,
        clusters: Option<&'static WordClusters>,
    ) -> Featurizer {
        // feature → (document frequency, last document that counted it)
        let mut df: HashMap<String, (u32, u32)> = HashMap::new();
        for (doc, t) in texts.iter().enumerate() {
            let doc = doc as u32 + 1;
            for_each_feature(
                t,
                word_ngrams,
                char_min,
                char_max,
                clusters,
                |feat| match df.get_mut(feat) {
                    Some(e) if e.1 == doc => {}
                    Some(e) => *e = (e.0 + 1, doc),
                    None => {
                        df.insert(feat.to_owned(), (1, doc));
                    }
                },
            );
        }
        let mut ranked: Vec<(String, u32)> = df
            .into_iter()
            .filter(|(_, (d, _))| *d as usize >= min_df.max(1))
            .map(|(f, (d, _))| (f, d))
            .collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
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
            vectors: 0,
            vectors_weight: 0.0,
            vectors_table: String::new(),
            spelled_known: true,
            vectors_idf: BTreeMap::new(),
            vectors_idf_unseen: 0.0,
            clusters: clusters.map(|c| c.id().to_owned()).unwrap_or_default(),
            cluster_table: clusters,
            table: None,
            dense: 0,
            dense_weight: 0.0,
            encoder: None,
            index: HashMap::new(),
            word_block: Vec::new(),
            corrects_typos: false,
            near: HashMap::new(),
        };
        f.build_index();
        f
    }

    /// This vocabulary plus the most frequent features of `texts` it lacks
    /// (in at least `min_df` texts), up to `max_features` in all. Known
    /// features keep their index and weight, so a model over the old
    /// vocabulary carries over.
    pub fn extended(&self, texts: &[&str], min_df: usize, max_features: usize) -> Featurizer {
        let fresh = Featurizer::fit(
            texts,
            self.word_ngrams,
            self.char_min,
            self.char_max,
            min_df,
            usize::MAX,
            self.cluster_table,
        );
        let mut f = self.clone();
        let room = max_features.saturating_sub(self.vocab.len());
        for (feat, idf) in fresh.vocab.into_iter().zip(fresh.idf) {
            if f.vocab.len() - self.vocab.len() >= room {
                break;
            }
            if !self.index.contains_key(&feat) {
                f.vocab.push(feat);
                f.idf.push(idf);
            }
        }
        f.build_index();
        f
    }

    /// Whether a deserialised featurizer can be used: one weight per
    /// feature, finite, and n-gram sizes a trainer could have chosen.
    pub fn check(&self) -> Result<(), String> {
        if self.idf.len() != self.vocab.len() {
            return Err(format!(
                "{} idf weights for {} features",
                self.idf.len(),
                self.vocab.len()
            ));
        }
        if let Some(w) = self.idf.iter().find(|w| !w.is_finite()) {
            return Err(format!("idf weight {w}"));
        }
        if !(0.0..=MAX_BLOCK_WEIGHT).contains(&self.dense_weight) {
            return Err(format!("embedding weight {}", self.dense_weight));
        }
        if !(0.0..=MAX_BLOCK_WEIGHT).contains(&self.vectors_weight) {
            return Err(format!("word vectors weight {}", self.vectors_weight));
        }
        if let Some(w) = self
            .vectors_idf
            .values()
            .chain([&self.vectors_idf_unseen])
            .find(|w| !w.is_finite())
        {
            return Err(format!("word piece idf weight {w}"));
        }
        if self.word_ngrams > MAX_NGRAM
            || self.char_max > MAX_NGRAM
            || self.char_min > self.char_max
        {
            return Err(format!(
                "n-gram sizes words 1..={}, characters {}..={} (at most {MAX_NGRAM})",
                self.word_ngrams, self.char_min, self.char_max
            ));
        }
        Ok(())
    }

    /// Rebuild the lookup tables after deserialising.
    pub fn build_index(&mut self) {
        self.index = self
            .vocab
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i as u32))
            .collect();
        self.word_block = self.vocab.iter().map(|f| f.starts_with('w')).collect();
        self.near.clear();
        if self.corrects_typos && self.word_ngrams > 0 {
            let words = self.vocab.iter().enumerate().filter_map(|(i, feat)| {
                let word = typo_word(feat.strip_prefix("w1:")?, 3)?;
                Some((i, word))
            });
            for (i, word) in words.take(NEAR_WORDS) {
                for key in near_keys(word) {
                    let bucket = self.near.entry(key).or_default();
                    if bucket.len() < NEAR_BUCKET && bucket.last() != Some(&(i as u32)) {
                        bucket.push(i as u32);
                    }
                }
            }
        }
    }

    /// Turn typo correction on or off (and build its index). It stays off
    /// where most of the vocabulary's longer words are not words of the
    /// word-piece vocabulary's language ([`TYPO_LANGUAGE_SHARE`]).
    pub fn correct_typos(&mut self, on: bool) {
        self.corrects_typos = on && self.in_typo_language();
        self.build_index();
    }

    /// Whether most of the vocabulary's words of [`TYPO_MIN`] letters or
    /// more are whole words of the shipped word-piece vocabulary.
    fn in_typo_language(&self) -> bool {
        let table = word_vectors::shipped();
        let (mut words, mut known) = (0usize, 0usize);
        for w in self.vocab.iter().filter_map(|f| f.strip_prefix("w1:")) {
            if w.chars().count() >= TYPO_MIN && w.chars().all(char::is_alphabetic) {
                words += 1;
                known += usize::from(table.has_word(w));
            }
        }
        words > 0 && known as f64 >= TYPO_LANGUAGE_SHARE * words as f64
    }

    /// The known word that `word`, which the vocabulary lacks, reads as:
    /// the one a single typing slip away (a letter dropped, added, changed
    /// or two swapped) that most training texts have. None for a word of
    /// its own (a whole word of the shipped word-piece vocabulary: `save`
    /// is not `same`), a short, long or non-alphabetic one, or one no
    /// known word is a slip from.
    pub fn correction(&self, word: &str) -> Option<&str> {
        if self.near.is_empty() {
            return None;
        }
        let letters = typo_word(word, TYPO_MIN)?;
        if word_vectors::shipped().has_word(word) {
            return None;
        }
        let mut best: Option<usize> = None;
        for key in near_keys(letters) {
            for &i in self.near.get(&key).into_iter().flatten() {
                let i = i as usize;
                if !one_slip(letters, &self.vocab[i].as_bytes()[3..]) {
                    continue;
                }
                // Most texts (the lowest IDF) first, then the first feature.
                let better = best
                    .is_none_or(|b| self.idf[i].total_cmp(&self.idf[b]).then(i.cmp(&b)).is_lt());
                if better {
                    best = Some(i);
                }
            }
        }
        best.map(|i| &self.vocab[i][3..])
    }

    /// `text` with the typos in its first [`CORRECTED_WORDS`] distinct
    /// unknown words corrected, the rest as it was; None when nothing
    /// changes.
    fn corrected(&self, text: &str) -> Option<String> {
        if self.near.is_empty() {
            return None;
        }
        let mut out: Option<String> = None;
        // `text` up to here is in `out` already.
        let mut copied = 0;
        let mut key = String::from("w1:");
        let mut seen: HashMap<String, Option<&str>> = HashMap::new();
        let mut start = None;
        let end = std::iter::once((text.len(), ' '));
        for (at, ch) in text.char_indices().chain(end) {
            let part = at < text.len() && (ch.is_alphanumeric() || ch == '\'');
            match (part, start) {
                (true, None) => start = Some(at),
                (false, Some(from)) => {
                    start = None;
                    // The word as `tokenize` has it.
                    key.truncate(3);
                    key.extend(text[from..at].chars().flat_map(char::to_lowercase));
                    // Known words, and words no slip could be corrected
                    // in, are not charged to the budget.
                    if self.index.contains_key(&key) || typo_word(&key[3..], TYPO_MIN).is_none() {
                        continue;
                    }
                    let fixed = match seen.get(&key[3..]) {
                        Some(&fixed) => fixed,
                        None if seen.len() < CORRECTED_WORDS => {
                            let fixed = self.correction(&key[3..]);
                            seen.insert(key[3..].to_owned(), fixed);
                            fixed
                        }
                        None => None,
                    };
                    if let Some(fixed) = fixed {
                        let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 8));
                        o.push_str(&text[copied..from]);
                        o.push_str(fixed);
                        copied = at;
                    }
                }
                _ => {}
            }
        }
        out.map(|mut o| {
            o.push_str(&text[copied..]);
            o
        })
    }

    /// Put the IDF-weighted sum of the word vectors of `table`, scaled to
    /// length `weight`, after the n-gram features; the pieces' IDF comes
    /// from `texts`.
    pub fn attach_vectors(&mut self, table: &'static WordVectors, texts: &[&str], weight: f32) {
        let mut df: HashMap<u32, u32> = HashMap::new();
        for t in texts {
            let mut pieces = table.pieces(t);
            pieces.sort_unstable();
            pieces.dedup();
            for p in pieces {
                *df.entry(p).or_default() += 1;
            }
        }
        let n = texts.len() as f32;
        self.vectors_idf = df
            .into_iter()
            .map(|(p, d)| (p, ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0))
            .collect();
        self.vectors_idf_unseen = (1.0 + n).ln() + 1.0;
        self.vectors = table.dims();
        self.vectors_weight = weight;
        self.vectors_table = table.id().to_owned();
        self.table = Some(table);
    }

    /// Find the table of word vectors a deserialised featurizer was
    /// trained with: the one that ships with this trainer, if it is that.
    /// The word clusters, likewise.
    pub fn reattach_vectors(&mut self) -> Result<(), String> {
        if !self.clusters.is_empty() {
            let clusters = word_clusters::shipped();
            if clusters.id() != self.clusters {
                return Err(format!(
                    "the model uses word clusters {}; this trainer ships {}: train the model afresh",
                    shown_id(&self.clusters),
                    clusters.id()
                ));
            }
            self.cluster_table = Some(clusters);
        }
        if self.vectors == 0 {
            return Ok(());
        }
        let table = word_vectors::shipped();
        if table.id() != self.vectors_table || table.dims() != self.vectors {
            return Err(format!(
                "the model uses word vectors {} ({} dimensions); this trainer ships {} ({}): train the model afresh",
                shown_id(&self.vectors_table),
                self.vectors,
                table.id(),
                table.dims()
            ));
        }
        self.table = Some(table);
        Ok(())
    }

    /// Leave the word vectors out: the n-gram features alone.
    pub fn detach_vectors(&mut self) {
        self.vectors = 0;
        self.vectors_weight = 0.0;
        self.vectors_table.clear();
        self.vectors_idf.clear();
        self.vectors_idf_unseen = 0.0;
        self.table = None;
    }

    /// Put the embedding of `encoder`, scaled to length `weight`, after
    /// the n-gram features.
    pub fn attach(&mut self, encoder: Arc<Encoder>, weight: f32) {
        self.dense = encoder.dims();
        self.dense_weight = weight;
        self.encoder = Some(encoder);
    }

    /// Attach the encoder a deserialised featurizer was trained with.
    pub fn reattach(&mut self, encoder: Arc<Encoder>) -> Result<(), String> {
        if encoder.dims() != self.dense {
            return Err(format!(
                "the encoder gives {} dimensions; the features expect {}",
                encoder.dims(),
                self.dense
            ));
        }
        self.encoder = Some(encoder);
        Ok(())
    }

    /// Leave the embedding out: the n-gram features alone.
    pub fn detach(&mut self) {
        self.dense = 0;
        self.dense_weight = 0.0;
        self.encoder = None;
    }

    pub fn encoder(&self) -> Option<&Arc<Encoder>> {
        self.encoder.as_ref()
    }

    /// Features in all: n-grams, then the word vectors' and the
    /// embedding's dimensions.
    pub fn len(&self) -> usize {
        self.vocab.len() + self.vectors + self.dense
    }

    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// Whether the model knows at least a third of the words of `text`:
    /// known words are those of the vocabulary, from training and the
    /// background, those the word-piece vocabulary spells (a product
    /// name such as `hairfall` reads as a word, `asdkj` does not) and
    /// those a typing slip from a known word (`acount`). Without
    /// word features there is nothing to judge by: every text is
    /// understood.
    pub fn understands(&self, text: &str) -> bool {
        if self.word_ngrams == 0 {
            return true;
        }
        let words = judged_words(text);
        let known = words
            .iter()
            .filter(|w| self.knows_word(w) || self.spells(w) || self.correction(w).is_some())
            .count();
        understood(known, words.len())
    }

    /// Whether `word` reads as a word though the vocabulary lacks it: the
    /// shipped word-piece vocabulary spells it (models that count those).
    pub fn spells(&self, word: &str) -> bool {
        self.spelled_known && word_vectors::shipped().spells(word)
    }

    /// Whether `word` (lower-cased, as [`tokenize`] gives it) is in the
    /// vocabulary.
    pub fn knows_word(&self, word: &str) -> bool {
        self.index.contains_key(&format!("w1:{word}"))
    }

    /// The TF-IDF vector of `text` (its typos corrected, where the model
    /// does that); unknown features are dropped.
    pub fn transform(&self, original: &str) -> Sparse {
        // The n-grams and the word vectors read the corrected text; the
        // sentence encoder, which has its own sense of spelling (and its
        // embeddings prepared for the texts as given), the original.
        let fixed = self.corrected(original);
        let text = fixed.as_deref().unwrap_or(original);
        let mut hits: Vec<u32> = Vec::with_capacity(256);
        for_each_feature(
            text,
            self.word_ngrams,
            self.char_min,
            self.char_max,
            self.cluster_table,
            |feat| {
                if let Some(&i) = self.index.get(feat) {
                    hits.push(i);
                }
            },
        );
        hits.sort_unstable();
        let mut idx = Vec::with_capacity(hits.len());
        let mut val = Vec::with_capacity(hits.len());
        let mut k = 0;
        while k < hits.len() {
            let i = hits[k];
            let mut count = 0;
            while k < hits.len() && hits[k] == i {
                count += 1;
                k += 1;
            }
            idx.push(i);
            val.push((1.0 + (count as f32).ln()) * self.idf[i as usize]);
        }
        // Word and character features are normalised as separate blocks, so
        // the many character n-grams do not drown the few words.
        let (mut word_sq, mut char_sq) = (0.0f32, 0.0f32);
        for (&i, &v) in idx.iter().zip(&val) {
            if self.word_block[i as usize] {
                word_sq += v * v;
            } else {
                char_sq += v * v;
            }
        }
        let inv = |sq: f32| if sq > 0.0 { 1.0 / sq.sqrt() } else { 0.0 };
        let (word_scale, char_scale) = (inv(word_sq), inv(char_sq));
        for (&i, v) in idx.iter().zip(val.iter_mut()) {
            *v *= if self.word_block[i as usize] {
                word_scale
            } else {
                char_scale
            };
        }
        if let Some(t) = self.table {
            let base = self.vocab.len() as u32;
            let idf = |p: u32| {
                self.vectors_idf
                    .get(&p)
                    .copied()
                    .unwrap_or(self.vectors_idf_unseen)
            };
            for (i, v) in t.embed(&t.pieces(text), idf).into_iter().enumerate() {
                if v != 0.0 {
                    idx.push(base + i as u32);
                    val.push(v * self.vectors_weight);
                }
            }
        }
        if let Some(e) = &self.encoder {
            let base = (self.vocab.len() + self.vectors) as u32;
            for (i, v) in e.embed(original).into_iter().enumerate() {
                idx.push(base + i as u32);
                val.push(v * self.dense_weight);
            }
        }
        Sparse { idx, val }
    }
}

/// A table id read from a model, as an error shows it: the model's bytes
/// are not trusted, so at most 40 characters, escaped.
fn shown_id(id: &str) -> String {
    let head: String = id.chars().take(40).collect();
    let cut = if head.len() < id.len() { "…" } else { "" };
    format!("{head:?}{cut}")
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
    fn word_and_char_blocks_are_unit_length_and_sorted() {
        let f = Featurizer::fit(&["book a dj", "find a florist"], 2, 3, 4, 1, 1000, None);
        let v = f.transform("book a florist");
        let norm: f32 = v.val.iter().map(|x| x * x).sum();
        assert!((norm - 2.0).abs() < 1e-5);
        assert!(v.idx.windows(2).all(|w| w[0] < w[1]));
        assert!(f.transform("zzzz").idx.is_empty());
    }

    #[test]
    fn a_word_never_seen_shares_the_features_of_its_cluster() {
        let clusters = word_clusters::shipped();
        let texts = ["wake me on monday", "play some jazz"];
        let plain = Featurizer::fit(&texts, 2, 0, 0, 1, 1000, None);
        let mut f = Featurizer::fit(&texts, 2, 0, 0, 1, 1000, Some(clusters));
        assert!(plain.clusters.is_empty());
        assert!(plain.vocab.iter().all(|v| !v.starts_with("wk")));
        assert_eq!(f.clusters, clusters.id());
        // `tuesday` was never seen: without the clusters it is nothing;
        // with them, its cluster and its pair with `on` are `monday`'s.
        assert_eq!(clusters.of("tuesday"), clusters.of("monday"));
        let shared = |f: &Featurizer| {
            let (a, b) = (f.transform("monday"), f.transform("on tuesday"));
            b.idx.iter().filter(|i| a.idx.contains(i)).count()
        };
        assert_eq!(shared(&plain), 0);
        assert_eq!(shared(&f), 1);
        let v = f.transform("wake me on tuesday");
        let names: Vec<&str> = v
            .idx
            .iter()
            .map(|&i| f.vocab[i as usize].as_str())
            .collect();
        let day = clusters.of("tuesday").unwrap();
        let on = clusters.of("on").unwrap();
        assert!(names.contains(&format!("wk:{day}").as_str()), "{names:?}");
        assert!(
            names.contains(&format!("wK:{on} {day}").as_str()),
            "{names:?}"
        );
        // They are word features: the word block is still unit length.
        let norm: f32 = v.val.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        // A model carries the clusters' id, and is read only with them.
        let bytes = serde_json::to_vec(&f).unwrap();
        let mut back: Featurizer = serde_json::from_slice(&bytes).unwrap();
        back.build_index();
        back.reattach_vectors().unwrap();
        assert_eq!(back.transform("on tuesday"), f.transform("on tuesday"));
        f.clusters = "0000000000000000".into();
        let mut other: Featurizer =
            serde_json::from_slice(&serde_json::to_vec(&f).unwrap()).unwrap();
        let err = other.reattach_vectors().unwrap_err();
        assert!(err.contains("word clusters"), "{err}");
        // An id from hostile bytes is shown cut and escaped.
        f.clusters = format!("\u{1b}[2J{}", "x".repeat(100_000));
        let mut other: Featurizer =
            serde_json::from_slice(&serde_json::to_vec(&f).unwrap()).unwrap();
        let err = other.reattach_vectors().unwrap_err();
        assert!(err.len() < 300 && !err.contains('\u{1b}'), "{err}");
    }

    #[test]
    fn a_text_is_understood_when_a_third_of_its_words_are_known() {
        let f = Featurizer::fit(&["book a dj", "find a florist"], 2, 2, 4, 1, 1000, None);
        let understands = |t: &str| f.understands(t);
        assert!(understands("book a florist"));
        // One known word in three is enough (repeats count once).
        assert!(understands("book the the zebra"));
        assert!(understands("Book DJ Zyx Qwerty"));
        // Keyboard mashing shares character n-grams, not words.
        assert!(!f.transform("asdkj bookj florx").idx.is_empty());
        assert!(!understands("asdkj bookj florx"));
        assert!(!understands("lorem ipsum dolor sit amet"));
        assert!(!understands(""));
        assert!(!understands("!!! ???"));
        // Words the word-piece vocabulary spells count as known: product
        // names a bot never saw are read, mashing and filler are not.
        for word in ["hairfall", "calcium", "cancelling", "dumbbell"] {
            assert!(f.spells(word) && understands(word), "{word}");
        }
        for word in ["asdkj", "zxcvb", "qwpeoi", "lorem", "ipsum", "mujhe", "a"] {
            assert!(!f.spells(word), "{word}");
        }
        // Models from before that keep their decisions.
        let before = Featurizer {
            spelled_known: false,
            ..f.clone()
        };
        assert!(!before.understands("hairfall"));
        let mut saved = serde_json::to_value(&f).unwrap();
        saved.as_object_mut().unwrap().remove("spelled_known");
        let saved: Featurizer = serde_json::from_value(saved).unwrap();
        assert!(!saved.spelled_known);
        // A huge text is judged on its first words alone.
        let huge: String = (0..5000).map(|i| format!("zq{i}x ")).collect();
        assert_eq!(judged_words(&huge).len(), JUDGED_WORDS);
        // A word past 40 characters is not spelled, whatever its pieces.
        assert!(f.spells(&"hair".repeat(10)) && !f.spells(&"hair".repeat(11)));
        // Without word features nothing tells: everything is understood.
        let chars = Featurizer::fit(&["book a dj"], 0, 2, 4, 1, 1000, None);
        assert!(chars.understands("zzz"));
    }

    #[test]
    fn one_slip_is_a_letter_dropped_added_changed_or_two_swapped() {
        let slip = |a: &str, b: &str| {
            one_slip(a.as_bytes(), b.as_bytes()) && one_slip(b.as_bytes(), a.as_bytes())
        };
        for (a, b) in [
            ("acount", "account"),
            ("balnace", "balance"),
            ("balence", "balance"),
            ("accounts", "account"),
            ("ccount", "account"),
            ("accoun", "account"),
        ] {
            assert!(slip(a, b), "{a} {b}");
        }
        for (a, b) in [
            ("account", "account"),
            ("acnuoct", "account"),
            ("acount", "accounts"),
            ("blanace", "balance"),
            ("abc", "cab"),
        ] {
            assert!(!slip(a, b), "{a} {b}");
        }
    }

    #[test]
    fn typos_read_as_the_known_word_one_slip_away() {
        let texts = [
            "check my account balance",
            "what is my account balance",
            "transfer money to savings",
            "is it the same card",
        ];
        let mut f = Featurizer::fit(&texts, 2, 2, 5, 1, 10_000, None);
        assert!(f.correction("acount").is_none(), "off until asked");
        f.correct_typos(true);
        for (typo, word) in [
            ("acount", "account"),
            ("balnace", "balance"),
            ("accuont", "account"),
            ("tranfser", "transfer"),
            ("savigns", "savings"),
        ] {
            assert_eq!(f.correction(typo), Some(word), "{typo}");
        }
        // A word of its own is not a slip from a known one (`save` is not
        // `same`, `accounts` stays itself); short, long, mixed or far words
        // are left alone.
        for word in [
            "save", "accounts", "cart", "acc", "bolonce", "acc0unt", "zzzzzz",
        ] {
            assert_eq!(f.correction(word), None, "{word}");
        }
        assert_eq!(f.correction(&"a".repeat(TYPO_MAX + 1)), None);
        // The message reads as the corrected one, the rest of it as it
        // was, and a corrected word counts as known (`trnasfer` is not
        // spelled by the word pieces).
        assert_eq!(
            f.corrected("Check my ACOUNT, balnace!").as_deref(),
            Some("Check my account, balance!")
        );
        assert_eq!(f.corrected("check my account"), None);
        assert_eq!(
            f.transform("Check my acount balnace!"),
            f.transform("check my account balance")
        );
        assert!(!f.spells("trnasfer") && f.understands("trnasfer qwzx"));
        let off = {
            let mut off = f.clone();
            off.correct_typos(false);
            off
        };
        assert!(!off.understands("trnasfer qwzx"));
        // Non-ASCII words are left alone, whatever their letters.
        assert_eq!(f.correction("balançe"), None);
        // Of two known words a slip away, the one more texts have.
        let g = {
            let mut g = Featurizer::fit(&["a card", "the card", "a cart"], 1, 2, 4, 1, 100, None);
            g.correct_typos(true);
            g
        };
        assert_eq!(g.correction("carx"), Some("card"));
        // Models from before read typos as they did.
        let mut saved = serde_json::to_value(&f).unwrap();
        saved.as_object_mut().unwrap().remove("corrects_typos");
        let mut saved: Featurizer = serde_json::from_value(saved).unwrap();
        saved.build_index();
        assert!(!saved.corrects_typos && saved.correction("acount").is_none());
        assert_ne!(saved.transform("acount"), saved.transform("account"));
    }

    #[test]
    fn common_misspellings_read_as_the_word_meant() {
        // Misspellings people make, not made up: one slip each reads right,
        // two slips (`tommorow`, `reccomend`) are left to the n-grams.
        let texts = [
            "i did not receive my card at this address",
            "definitely separate the payment until tomorrow",
            "which restaurant would you recommend",
            "i believe it occurred twice",
            "book accommodation near the beach",
        ];
        let mut f = Featurizer::fit(&texts, 2, 2, 5, 1, 10_000, None);
        f.correct_typos(true);
        for (typo, word) in [
            ("recieve", "receive"),
            ("adress", "address"),
            ("definately", "definitely"),
            ("seperate", "separate"),
            ("untill", "until"),
            ("wich", "which"),
            ("beleive", "believe"),
            ("occured", "occurred"),
            ("accomodation", "accommodation"),
            ("resturant", "restaurant"),
        ] {
            assert_eq!(f.correction(typo), Some(word), "{typo}");
        }
        for typo in ["tommorow", "reccomend"] {
            assert_eq!(f.correction(typo), None, "{typo}");
        }
    }

    #[test]
    fn typos_are_corrected_in_the_word_pieces_language_only_and_at_bounded_cost() {
        // A Spanish bot: "cuesta" (costs) is not a typo of "cuenta".
        let spanish = [
            "quiero abrir una cuenta",
            "cuanto cuesta la tarjeta",
            "necesito ayuda con mi tarjeta",
            "quiero cerrar mi cuenta bancaria",
        ];
        let mut f = Featurizer::fit(&spanish, 2, 2, 5, 1, 10_000, None);
        f.correct_typos(true);
        assert!(!f.corrects_typos && f.correction("cuesta").is_none());
        // A hostile vocabulary of words one letter apart: a key keeps at
        // most NEAR_BUCKET of them, the most frequent first.
        let words: Vec<String> = (b'a'..=b'z')
            .map(|c| format!("w1:pat{}", c as char))
            .collect();
        let mut g = Featurizer::fit(&["pata"], 1, 0, 0, 1, 10, None);
        g.idf = vec![1.0; words.len()];
        g.vocab = words;
        g.corrects_typos = true;
        g.build_index();
        let shared = fnv1a(b"pat");
        assert_eq!(g.near[&shared], (0..NEAR_BUCKET as u32).collect::<Vec<_>>());
        assert_eq!(g.correction("pataa"), Some("pata"));
        // Only the first NEAR_WORDS known words are indexed.
        let letters = |mut i: usize| -> String {
            (0..5)
                .map(|_| {
                    let c = (b'a' + (i % 26) as u8) as char;
                    i /= 26;
                    c
                })
                .collect()
        };
        let mut big = g.clone();
        big.vocab = (0..NEAR_WORDS + 2)
            .map(|i| format!("w1:{}", letters(i)))
            .collect();
        big.idf = vec![1.0; big.vocab.len()];
        big.build_index();
        let (first, past) = (letters(0), letters(NEAR_WORDS + 1));
        assert_eq!(big.correction(&format!("{first}x")), Some(first.as_str()));
        assert_eq!(big.correction(&format!("{past}x")), None);
        // Repeats of an unknown word are looked up once; past the first
        // CORRECTED_WORDS distinct unknown words, none are corrected.
        let repeated: String = (0..2 * CORRECTED_WORDS).map(|_| "pataa ").collect();
        let fixed = g.corrected(&repeated).unwrap();
        assert_eq!(fixed.matches("pata ").count(), 2 * CORRECTED_WORDS);
        let distinct: String = (0..CORRECTED_WORDS)
            .map(|i| format!("zq{} ", letters(i)))
            .chain(["pataa".to_owned()])
            .collect();
        assert_eq!(g.corrected(&distinct), None);
        assert!(g.corrected(&distinct[8..]).is_some());
        // Words no slip could be corrected in (digits, too short, too
        // long) do not spend the budget.
        let uncorrectable: String = (0..CORRECTED_WORDS)
            .map(|i| format!("qq{i:04} ab{i} {} ", "z".repeat(TYPO_MAX + 1)))
            .chain(["pataa".to_owned()])
            .collect();
        let fixed = g.corrected(&uncorrectable).unwrap();
        assert!(fixed.ends_with(" pata"), "{}", &fixed[fixed.len() - 20..]);
    }
}
