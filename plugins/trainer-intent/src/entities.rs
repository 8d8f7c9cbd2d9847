//! Entity extraction: a BIO tagger over word tokens, trained as an averaged
//! perceptron (Collins 2002) with greedy left-to-right decoding.
//!
//! Features of a token: the word, its neighbours, prefixes and suffixes,
//! its shape, the previous tag, and whether the training data's entity
//! values (the gazetteer) cover it. Spans come back as byte offsets of the
//! original text.

use coach_plugin_sdk::{EntitySpan, Example, PluginError, host};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A word token: byte range in the text and the lower-cased word.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub lower: String,
    pub shape: String,
}

/// Words (runs of letters and digits) and single punctuation marks.
pub fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let push = |out: &mut Vec<Token>, s: usize, e: usize| {
        let word = &text[s..e];
        let mut shape = String::new();
        for c in word.chars() {
            let k = if c.is_uppercase() {
                'X'
            } else if c.is_lowercase() {
                'x'
            } else if c.is_ascii_digit() {
                'd'
            } else {
                c
            };
            if !shape.ends_with(k) {
                shape.push(k);
            }
        }
        out.push(Token {
            start: s,
            end: e,
            lower: word.to_lowercase(),
            shape,
        });
    };
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
            continue;
        }
        if let Some(s) = start.take() {
            push(&mut out, s, i);
        }
        if !c.is_whitespace() {
            push(&mut out, i, i + c.len_utf8());
        }
    }
    if let Some(s) = start {
        push(&mut out, s, text.len());
    }
    out
}

fn hash(parts: &[&str]) -> u64 {
    // FNV-1a: stable across platforms and releases, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Fewer examples with spans than this train no tagger.
pub const MIN_LABELLED: usize = 20;

/// A trained tagger.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Tagger {
    /// `O`, then `B-x`, `I-x` for every entity type `x`.
    labels: Vec<String>,
    /// Feature hash → (label, averaged weight), sorted by hash.
    weights: Vec<(u64, Vec<(u16, f32)>)>,
    #[serde(skip)]
    index: HashMap<u64, usize>,
    /// `follows[prev][label]`: may `label` come after `prev` in BIO?
    #[serde(skip)]
    follows: Vec<Vec<bool>>,
}

fn transitions(labels: &[String]) -> Vec<Vec<bool>> {
    labels
        .iter()
        .map(|p| labels.iter().map(|l| allowed(p, l)).collect())
        .collect()
}

/// Per-token gazetteer tags: `B-x` / `I-x` where a known value covers it.
fn gazetteer_tags(
    toks: &[Token],
    text_lower: &str,
    gazetteer: &BTreeMap<String, String>,
    longest: usize,
) -> Vec<String> {
    let mut tags = vec![String::new(); toks.len()];
    let mut i = 0;
    while i < toks.len() {
        let mut matched = 0;
        for len in (1..=longest.min(toks.len() - i)).rev() {
            let (s, e) = (toks[i].start, toks[i + len - 1].end);
            if let Some(ent) = text_lower.get(s..e).and_then(|v| gazetteer.get(v)) {
                tags[i] = format!("B-{ent}");
                for t in tags.iter_mut().take(i + len).skip(i + 1) {
                    *t = format!("I-{ent}");
                }
                matched = len;
                break;
            }
        }
        i += matched.max(1);
    }
    tags
}

fn features(toks: &[Token], gaz: &[String], i: usize, prev: &str) -> Vec<u64> {
    let w = |j: isize| -> &str {
        if j < 0 {
            "<s>"
        } else {
            toks.get(j as usize)
                .map(|t| t.lower.as_str())
                .unwrap_or("</s>")
        }
    };
    let i_ = i as isize;
    let word = w(i_);
    let chars: Vec<char> = word.chars().collect();
    let prefix: String = chars.iter().take(3).collect();
    let suffix: String = chars
        .iter()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    vec![
        hash(&["bias"]),
        hash(&["w", word]),
        hash(&["w-1", w(i_ - 1)]),
        hash(&["w+1", w(i_ + 1)]),
        hash(&["w-2", w(i_ - 2)]),
        hash(&["w+2", w(i_ + 2)]),
        hash(&["w-1w", w(i_ - 1), word]),
        hash(&["ww+1", word, w(i_ + 1)]),
        hash(&["pre", &prefix]),
        hash(&["suf", &suffix]),
        hash(&["shape", &toks[i].shape]),
        hash(&["prev", prev]),
        hash(&["prev-w", prev, word]),
        hash(&["gaz", &gaz[i]]),
        hash(&["gaz-prev", &gaz[i], prev]),
    ]
}

/// Can `label` follow `prev` in BIO?
fn allowed(prev: &str, label: &str) -> bool {
    match label.strip_prefix("I-") {
        None => true,
        Some(ent) => prev.strip_prefix("B-") == Some(ent) || prev.strip_prefix("I-") == Some(ent),
    }
}

/// The BIO tags of an example's labelled spans (spans snapped to tokens).
fn gold(toks: &[Token], spans: &[EntitySpan]) -> Vec<String> {
    let mut tags = vec!["O".to_owned(); toks.len()];
    for s in spans {
        let (a, b) = (s.start as usize, s.end as usize);
        let mut first = true;
        for (k, t) in toks.iter().enumerate() {
            if t.start >= a && t.end <= b {
                tags[k] = format!("{}-{}", if first { "B" } else { "I" }, s.entity);
                first = false;
            }
        }
    }
    tags
}

impl Tagger {
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Whether a deserialised tagger can be used: `O` first, every weight
    /// for a label it has, and finite.
    pub fn check(&self) -> Result<(), String> {
        if self.weights.is_empty() {
            return Ok(());
        }
        if self.labels.first().map(String::as_str) != Some("O") {
            return Err("the tagger's first label is not `O`".into());
        }
        if self.labels.len() > usize::from(u16::MAX) {
            return Err(format!("the tagger has {} labels", self.labels.len()));
        }
        for (_, ws) in &self.weights {
            for &(l, w) in ws {
                if usize::from(l) >= self.labels.len() || !w.is_finite() {
                    return Err(format!("tagger weight ({l}, {w}) is out of range"));
                }
            }
        }
        Ok(())
    }

    pub fn build_index(&mut self) {
        self.index = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, (h, _))| (*h, i))
            .collect();
        self.follows = transitions(&self.labels);
    }

    fn score(&self, feats: &[u64], scores: &mut [f32]) {
        scores.iter_mut().for_each(|s| *s = 0.0);
        for f in feats {
            if let Some(&i) = self.index.get(f) {
                for &(l, w) in &self.weights[i].1 {
                    scores[l as usize] += w;
                }
            }
        }
    }

    fn decode(&self, toks: &[Token], gaz: &[String]) -> Vec<usize> {
        let mut out = Vec::with_capacity(toks.len());
        let mut scores = vec![0.0f32; self.labels.len()];
        let mut prev = 0; // `O`
        for i in 0..toks.len() {
            let feats = features(toks, gaz, i, &self.labels[prev]);
            self.score(&feats, &mut scores);
            let best = (0..self.labels.len())
                .filter(|&l| self.follows[prev][l])
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            prev = best;
            out.push(best);
        }
        out
    }

    /// Spans of `text`.
    pub fn tag(
        &self,
        text: &str,
        gazetteer: &BTreeMap<String, String>,
        longest: usize,
    ) -> Vec<EntitySpan> {
        if self.is_empty() {
            return Vec::new();
        }
        let toks = tokens(text);
        let lower = text.to_lowercase();
        let gaz = if lower.len() == text.len() {
            gazetteer_tags(&toks, &lower, gazetteer, longest)
        } else {
            vec![String::new(); toks.len()]
        };
        let tags = self.decode(&toks, &gaz);
        let mut spans: Vec<EntitySpan> = Vec::new();
        for (k, &l) in tags.iter().enumerate() {
            let label = &self.labels[l];
            if let Some(ent) = label.strip_prefix("B-") {
                spans.push(EntitySpan {
                    entity: ent.to_owned(),
                    start: toks[k].start as u32,
                    end: toks[k].end as u32,
                    value: String::new(),
                });
            } else if label.starts_with("I-")
                && let Some(last) = spans.last_mut()
            {
                last.end = toks[k].end as u32;
            }
        }
        for s in &mut spans {
            s.value = text[s.start as usize..s.end as usize].to_owned();
        }
        spans
    }

    /// Train on the examples' labelled spans; `None` when there are none.
    pub fn train(
        examples: &[Example],
        gazetteer: &BTreeMap<String, String>,
        longest: usize,
        epochs: u32,
        seed: u64,
    ) -> Result<Option<Tagger>, PluginError> {
        let mut types: Vec<String> = examples
            .iter()
            .flat_map(|e| e.entities.iter().map(|s| s.entity.clone()))
            .collect();
        types.sort();
        types.dedup();
        // A handful of labelled examples teaches a tagger noise; the lookup
        // of labelled values serves those better.
        let labelled = examples.iter().filter(|e| !e.entities.is_empty()).count();
        if types.is_empty() || epochs == 0 || labelled < MIN_LABELLED {
            return Ok(None);
        }
        if types.len() > 250 {
            return Err(PluginError::bad_data(format!(
                "{} entity types; at most 250 are supported",
                types.len()
            )));
        }
        let mut labels = vec!["O".to_owned()];
        for t in &types {
            labels.push(format!("B-{t}"));
            labels.push(format!("I-{t}"));
        }
        let label_of: HashMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let data: Vec<(Vec<Token>, Vec<String>, Vec<usize>)> = examples
            .iter()
            .map(|e| {
                let toks = tokens(&e.text);
                let lower = e.text.to_lowercase();
                let gaz = if lower.len() == e.text.len() {
                    gazetteer_tags(&toks, &lower, gazetteer, longest)
                } else {
                    vec![String::new(); toks.len()]
                };
                let g = gold(&toks, &e.entities)
                    .iter()
                    .map(|t| label_of[t.as_str()])
                    .collect();
                (toks, gaz, g)
            })
            .collect();
        // Averaged perceptron. Per feature, the labels it has weights for:
        // (label, weight, running total, step of last change).
        let mut w: HashMap<u64, Vec<(u16, f32, f32, u32)>> = HashMap::new();
        let mut step: u32 = 0;
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng = seed;
        let mut tagger = Tagger {
            labels: labels.clone(),
            ..Default::default()
        };
        let mut scores = vec![0.0f32; labels.len()];
        let follows = transitions(&labels);
        for epoch in 1..=epochs {
            for i in (1..order.len()).rev() {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                order.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let mut errors = 0usize;
            for (n, &k) in order.iter().enumerate() {
                if n % 1024 == 0 && host::cancelled() {
                    return Err(PluginError::cancelled());
                }
                let (toks, gaz, gold) = &data[k];
                // The gazetteer holds every training value, so it always
                // fires on training spans; hiding it half the time makes
                // the tagger learn the context that finds unseen values.
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let hidden;
                let gaz = if (rng >> 40) & 1 == 0 {
                    hidden = vec![String::new(); toks.len()];
                    &hidden
                } else {
                    gaz
                };
                let mut prev = 0; // `O`
                for (i, &truth) in gold.iter().enumerate() {
                    step += 1;
                    let feats = features(toks, gaz, i, &labels[prev]);
                    scores.iter_mut().for_each(|s| *s = 0.0);
                    for f in &feats {
                        for &(l, v, _, _) in w.get(f).map(Vec::as_slice).unwrap_or(&[]) {
                            scores[l as usize] += v;
                        }
                    }
                    let guess = (0..labels.len())
                        .filter(|&l| follows[prev][l])
                        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
                        .unwrap_or(0);
                    if guess != truth {
                        errors += 1;
                        for f in &feats {
                            let ws = w.entry(*f).or_default();
                            for (l, delta) in [(truth, 1.0f32), (guess, -1.0)] {
                                let at = match ws.iter().position(|x| x.0 as usize == l) {
                                    Some(p) => p,
                                    None => {
                                        ws.push((l as u16, 0.0, 0.0, step));
                                        ws.len() - 1
                                    }
                                };
                                let e = &mut ws[at];
                                e.2 += (step - e.3) as f32 * e.1;
                                e.3 = step;
                                e.1 += delta;
                            }
                        }
                    }
                    // The next token sees the tag the tagger chose, as it
                    // will when tagging for real.
                    prev = guess;
                }
            }
            host::metric("entity_token_errors", errors as f64, epoch);
        }
        // Average, then keep the non-zero weights, sorted for determinism.
        let mut by_feature: BTreeMap<u64, Vec<(u16, f32)>> = BTreeMap::new();
        for (f, ws) in w {
            for (l, v, total, last) in ws {
                let avg = (total + (step - last) as f32 * v) / step.max(1) as f32;
                if avg.abs() > 1e-6 {
                    by_feature.entry(f).or_default().push((l, avg));
                }
            }
        }
        tagger.weights = by_feature
            .into_iter()
            .map(|(f, mut ls)| {
                ls.sort_by_key(|x| x.0);
                (f, ls)
            })
            .collect();
        tagger.build_index();
        Ok(Some(tagger))
    }
}

/// Span-level precision, recall and F1 (exact entity type and offsets) of
/// `tag` on the labelled spans of `examples`.
pub fn span_scores(examples: &[Example], tag: impl Fn(&str) -> Vec<EntitySpan>) -> (f64, f64, f64) {
    let (mut tp, mut predicted, mut gold) = (0usize, 0usize, 0usize);
    for e in examples {
        let got = tag(&e.text);
        predicted += got.len();
        gold += e.entities.len();
        tp += got
            .iter()
            .filter(|s| {
                e.entities
                    .iter()
                    .any(|g| g.entity == s.entity && g.start == s.start && g.end == s.end)
            })
            .count();
    }
    let p = if predicted == 0 {
        0.0
    } else {
        tp as f64 / predicted as f64
    };
    let r = if gold == 0 {
        0.0
    } else {
        tp as f64 / gold as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coach_plugin_sdk::Split;

    fn ex(text: &str, spans: &[(&str, &str)]) -> Example {
        let entities = spans
            .iter()
            .map(|(value, entity)| {
                let s = text.find(value).unwrap();
                EntitySpan {
                    entity: (*entity).into(),
                    start: s as u32,
                    end: (s + value.len()) as u32,
                    value: (*value).into(),
                }
            })
            .collect();
        Example {
            text: text.into(),
            intent: "i".into(),
            entities,
            split: Split::Train,
        }
    }

    #[test]
    fn tokens_keep_byte_offsets() {
        let t = tokens("Book Café, 5pm!");
        let words: Vec<_> = t.iter().map(|t| t.lower.as_str()).collect();
        assert_eq!(words, ["book", "café", ",", "5pm", "!"]);
        assert_eq!(&"Book Café, 5pm!"[t[1].start..t[1].end], "Café");
        assert_eq!(t[3].shape, "dx");
    }

    #[test]
    fn learns_spans_beyond_the_values_it_saw() {
        let mut train = Vec::new();
        for (n, who) in [
            "Anna", "Tom", "Priya", "James", "Chen", "Maria", "Olu", "Sven",
        ]
        .iter()
        .enumerate()
        {
            for day in ["Monday", "Friday", "Sunday"] {
                train.push(ex(
                    &format!("book a table for {} people on {day} for {who}", n + 2),
                    &[
                        (&format!("{}", n + 2), "people"),
                        (day, "date"),
                        (who, "name"),
                    ],
                ));
            }
        }
        let tagger = Tagger::train(&train, &BTreeMap::new(), 1, 8, 7)
            .unwrap()
            .unwrap();
        let spans = tagger.tag(
            "book a table for 9 people on Tuesday for Lena",
            &BTreeMap::new(),
            1,
        );
        let got: Vec<_> = spans
            .iter()
            .map(|s| (s.entity.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [("people", "9"), ("date", "Tuesday"), ("name", "Lena")]
        );
    }
}
