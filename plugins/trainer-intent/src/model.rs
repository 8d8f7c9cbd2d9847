//! Softmax regression over [`Featurizer`] vectors, its training loop,
//! calibration, out-of-scope threshold and byte format.

use crate::entities::Tagger;
use crate::features::{Featurizer, Sparse};
use coach_plugin_sdk::{EntitySpan, Example, PluginError, Prediction, RankedIntent, host};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The step's parameters; defaults are documented in `plugin.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: u32,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
    pub max_features: usize,
    pub min_df: usize,
    pub char_ngrams: [usize; 2],
    pub word_ngrams: usize,
    pub patience: u32,
    pub oos_label: String,
    pub oos_threshold: Option<f32>,
    pub max_in_scope_drop: f32,
    pub entity_epochs: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 15,
            learning_rate: 3.0,
            l2: 1e-6,
            seed: 7,
            max_features: 120_000,
            min_df: 1,
            char_ngrams: [2, 5],
            word_ngrams: 2,
            patience: 20,
            oos_label: "oos".into(),
            oos_threshold: None,
            max_in_scope_drop: 0.0,
            entity_epochs: 10,
        }
    }
}

/// Everything but the weights, stored as JSON in the model bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Meta {
    format: u32,
    labels: Vec<String>,
    featurizer: Featurizer,
    temperature: f32,
    threshold: f32,
    oos_label: String,
    /// Lower-cased entity value → entity name, from labelled spans.
    gazetteer: BTreeMap<String, String>,
    /// The entity tagger; empty when the training data had no spans.
    #[serde(default)]
    tagger: Tagger,
    config: TrainConfig,
}

/// A trained intent model.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentModel {
    meta: Meta,
    /// Words in the longest gazetteer value (derived, not stored).
    max_value_words: usize,
    /// `features × classes`, row-major by feature.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

const MAGIC: &[u8; 8] = b"COACHIM1";

/// Gradients smaller than this are not applied (see the training loop).
const GRAD_FLOOR: f32 = 1e-4;
const FORMAT: u32 = 1;

fn max_value_words(gazetteer: &BTreeMap<String, String>) -> usize {
    gazetteer
        .keys()
        .map(|v| {
            v.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// SplitMix64: a small, seedable generator for shuffling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn softmax_in_place(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

impl IntentModel {
    /// A model before `fit`: uncalibrated, no threshold, no tagger.
    fn untrained(
        config: &TrainConfig,
        labels: Vec<String>,
        featurizer: Featurizer,
        gazetteer: BTreeMap<String, String>,
        weights: Vec<f32>,
        bias: Vec<f32>,
    ) -> IntentModel {
        IntentModel {
            max_value_words: max_value_words(&gazetteer),
            meta: Meta {
                format: FORMAT,
                labels,
                featurizer,
                temperature: 1.0,
                threshold: 0.0,
                oos_label: config.oos_label.clone(),
                gazetteer,
                tagger: Tagger::default(),
                config: config.clone(),
            },
            weights,
            bias,
        }
    }

    fn classes(&self) -> usize {
        self.meta.labels.len()
    }

    fn logits(&self, x: &Sparse) -> Vec<f32> {
        let c = self.classes();
        let mut z = self.bias.clone();
        for (&j, &v) in x.idx.iter().zip(&x.val) {
            let row = &self.weights[j as usize * c..(j as usize + 1) * c];
            for (zk, wk) in z.iter_mut().zip(row) {
                *zk += v * wk;
            }
        }
        z
    }

    fn probabilities(&self, logits: &[f32], temperature: f32) -> Vec<f32> {
        let mut p: Vec<f32> = logits.iter().map(|z| z / temperature).collect();
        softmax_in_place(&mut p);
        p
    }

    fn oos_index(&self) -> Option<usize> {
        self.meta
            .labels
            .iter()
            .position(|l| *l == self.meta.oos_label)
    }

    /// The decision rule: the top class, or out of scope when that is the
    /// `oos` class or its confidence is under the threshold.
    fn decide(&self, p: &[f32]) -> (String, f32) {
        let (best, conf) =
            p.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        let oos = self.oos_index();
        if Some(best) == oos {
            return (self.meta.oos_label.clone(), conf);
        }
        if conf < self.meta.threshold {
            let oos_conf = oos.map(|o| p[o]).unwrap_or(1.0 - conf);
            return (self.meta.oos_label.clone(), oos_conf.max(1.0 - conf));
        }
        (self.meta.labels[best].clone(), conf)
    }

    pub fn predict_one(&self, text: &str) -> Prediction {
        let x = self.meta.featurizer.transform(text);
        let p = self.probabilities(&self.logits(&x), self.meta.temperature);
        let (intent, confidence) = self.decide(&p);
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let ranking = order
            .into_iter()
            .take(5)
            .map(|i| RankedIntent {
                intent: self.meta.labels[i].clone(),
                confidence: p[i],
            })
            .collect();
        Prediction {
            intent,
            confidence,
            ranking,
            entities: if self.meta.tagger.is_empty() {
                self.entities(text)
            } else {
                self.meta
                    .tagger
                    .tag(text, &self.meta.gazetteer, self.max_value_words)
            },
        }
    }

    /// Entity values seen in training, matched on word boundaries in `text`:
    /// left to right, the longest value starting at each word, without
    /// overlaps. Costs a few hash lookups per word, whatever the size of the
    /// gazetteer.
    fn entities(&self, text: &str) -> Vec<EntitySpan> {
        if self.meta.gazetteer.is_empty() {
            return Vec::new();
        }
        let lower = text.to_lowercase();
        if lower.len() != text.len() {
            // Lower-casing changed byte lengths (rare scripts): offsets would
            // not map back to the text.
            return Vec::new();
        }
        // Byte ranges of the words.
        let mut words: Vec<(usize, usize)> = Vec::new();
        let mut start = None;
        for (i, ch) in lower.char_indices() {
            match (ch.is_alphanumeric(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    words.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            words.push((s, lower.len()));
        }
        let longest = self.max_value_words.max(1);
        let mut spans = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let mut matched = 0;
            for len in (1..=longest.min(words.len() - i)).rev() {
                let (s, e) = (words[i].0, words[i + len - 1].1);
                if let Some(entity) = self.meta.gazetteer.get(&lower[s..e]) {
                    spans.push(EntitySpan {
                        entity: entity.clone(),
                        start: s as u32,
                        end: e as u32,
                        value: text[s..e].to_owned(),
                    });
                    matched = len;
                    break;
                }
            }
            i += matched.max(1);
        }
        spans
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).expect("model metadata serialises");
        let mut out =
            Vec::with_capacity(16 + meta.len() + 4 * (self.weights.len() + self.bias.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        for w in self.weights.iter().chain(&self.bias) {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<IntentModel, PluginError> {
        let bad = |m: &str| PluginError::bad_data(format!("not a trainer-intent model: {m}"));
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(bad("missing header"));
        }
        let meta_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let meta_end = 12usize
            .checked_add(meta_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| bad("truncated metadata"))?;
        let mut meta: Meta = serde_json::from_slice(&bytes[12..meta_end])
            .map_err(|e| bad(&format!("metadata: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(&format!(
                "format {} (this plugin reads {FORMAT})",
                meta.format
            )));
        }
        meta.featurizer.check().map_err(|m| bad(&m))?;
        meta.tagger.check().map_err(|m| bad(&m))?;
        meta.featurizer.build_index();
        meta.tagger.build_index();
        let c = meta.labels.len();
        let expected = (meta.featurizer.len() + 1) * c * 4;
        let rest = &bytes[meta_end..];
        if rest.len() != expected {
            return Err(bad(&format!(
                "{} weight bytes, expected {expected}",
                rest.len()
            )));
        }
        let floats: Vec<f32> = rest
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if let Some(i) = floats.iter().position(|w| !w.is_finite()) {
            return Err(bad(&format!("weight {i} is {}", floats[i])));
        }
        if !(meta.temperature.is_finite() && meta.temperature > 0.0) {
            return Err(bad(&format!("temperature {}", meta.temperature)));
        }
        if !meta.threshold.is_finite() {
            return Err(bad(&format!("threshold {}", meta.threshold)));
        }
        let split = meta.featurizer.len() * c;
        Ok(IntentModel {
            weights: floats[..split].to_vec(),
            bias: floats[split..].to_vec(),
            max_value_words: max_value_words(&meta.gazetteer),
            meta,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.meta.labels
    }

    pub fn threshold(&self) -> f32 {
        self.meta.threshold
    }

    pub fn temperature(&self) -> f32 {
        self.meta.temperature
    }
}

/// Accuracy of the decision rule on `xs`, for model selection.
fn accuracy(model: &IntentModel, xs: &[Sparse], ys: &[usize]) -> f64 {
    let correct = xs
        .iter()
        .zip(ys)
        .filter(|(x, y)| {
            let p = model.probabilities(&model.logits(x), model.meta.temperature);
            model.decide(&p).0 == model.meta.labels[**y]
        })
        .count();
    correct as f64 / xs.len().max(1) as f64
}

/// Train a model; returns it with its final metrics.
pub fn train(
    config: &TrainConfig,
    train: &[Example],
    validation: &[Example],
) -> Result<(IntentModel, Vec<(String, f64)>), PluginError> {
    check(config, train)?;
    let labels = labels_of(train, &[])?;
    host::progress(0.0, "building features");
    let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let featurizer = Featurizer::fit(
        &texts,
        config.word_ngrams.max(1),
        config.char_ngrams[0],
        config.char_ngrams[1],
        config.min_df,
        config.max_features,
    );
    let gazetteer = gazetteer_of(train, BTreeMap::new());
    let (d, c) = (featurizer.len(), labels.len());
    let model = IntentModel::untrained(
        config,
        labels,
        featurizer,
        gazetteer,
        vec![0.0; d * c],
        vec![0.0; c],
    );
    fit(config, model, train, validation)
}

/// Continue from `base`: its vocabulary, intents, weights and entity values
/// are kept; features and intents new in `train` are added (new weights
/// start at zero), then training runs as usual on `train`.
pub fn train_from(
    config: &TrainConfig,
    base: &IntentModel,
    train: &[Example],
    validation: &[Example],
) -> Result<(IntentModel, Vec<(String, f64)>), PluginError> {
    check(config, train)?;
    let labels = labels_of(train, &base.meta.labels)?;
    let old = &base.meta.featurizer;
    if (old.word_ngrams, old.char_min, old.char_max)
        != (
            config.word_ngrams.max(1),
            config.char_ngrams[0],
            config.char_ngrams[1],
        )
    {
        return Err(PluginError::bad_config(
            "word_ngrams and char_ngrams must match the base model's to continue from it",
        ));
    }
    host::progress(0.0, "extending features");
    let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let featurizer = old.extended(&texts, config.min_df, config.max_features);
    let (d, c) = (featurizer.len(), labels.len());
    let (old_d, old_c) = (old.len(), base.meta.labels.len());
    let column: Vec<usize> = base
        .meta
        .labels
        .iter()
        .map(|l| {
            labels
                .iter()
                .position(|x| x == l)
                .expect("old labels are kept")
        })
        .collect();
    let mut weights = vec![0.0; d * c];
    for j in 0..old_d {
        for k in 0..old_c {
            weights[j * c + column[k]] = base.weights[j * old_c + k];
        }
    }
    let mut bias = vec![0.0; c];
    for k in 0..old_c {
        bias[column[k]] = base.bias[k];
    }
    let gazetteer = gazetteer_of(train, base.meta.gazetteer.clone());
    host::info(&format!(
        "continuing from a model of {old_c} intents and {old_d} features: now {c} intents, {d} features"
    ));
    let model = IntentModel::untrained(config, labels, featurizer, gazetteer, weights, bias);
    fit(config, model, train, validation)
}

/// The sorted union of `known` and the intents of `train`.
fn labels_of(train: &[Example], known: &[String]) -> Result<Vec<String>, PluginError> {
    let labels: Vec<String> = train
        .iter()
        .map(|e| e.intent.clone())
        .chain(known.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // One intent is enough when the data is there for its entities.
    let has_spans = train.iter().any(|e| !e.entities.is_empty());
    if labels.len() < 2 && !(has_spans && labels.len() == 1) {
        return Err(PluginError::bad_data(format!(
            "need at least two intents to train, found {}",
            labels.len()
        )));
    }
    Ok(labels)
}

/// Entity values labelled in `train`, added to `known`.
fn gazetteer_of(
    train: &[Example],
    mut known: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for e in train {
        for s in &e.entities {
            if !s.value.trim().is_empty() {
                known
                    .entry(s.value.to_lowercase())
                    .or_insert_with(|| s.entity.clone());
            }
        }
    }
    known
}

fn check(config: &TrainConfig, train: &[Example]) -> Result<(), PluginError> {
    if train.is_empty() {
        return Err(PluginError::bad_data("the training set is empty"));
    }
    if config.char_ngrams[0] > config.char_ngrams[1] {
        return Err(PluginError::bad_config(
            "char_ngrams must be [min, max] with min <= max",
        ));
    }
    if config.char_ngrams[1] > crate::features::MAX_NGRAM
        || config.word_ngrams > crate::features::MAX_NGRAM
    {
        return Err(PluginError::bad_config(format!(
            "char_ngrams and word_ngrams go up to {}",
            crate::features::MAX_NGRAM
        )));
    }
    if config.learning_rate.is_nan() || config.learning_rate <= 0.0 || config.l2 < 0.0 {
        return Err(PluginError::bad_config(
            "learning_rate must be > 0 and l2 >= 0",
        ));
    }
    Ok(())
}

/// The training loop shared by fresh and warm starts: SGD epochs with model
/// selection on validation, then calibration and the OOS threshold.
fn fit(
    config: &TrainConfig,
    mut model: IntentModel,
    train: &[Example],
    validation: &[Example],
) -> Result<(IntentModel, Vec<(String, f64)>), PluginError> {
    let labels = model.meta.labels.clone();
    let label_index: BTreeMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let featurizer = &model.meta.featurizer;
    let xs: Vec<Sparse> = train
        .iter()
        .map(|e| featurizer.transform(&e.text))
        .collect();
    let ys: Vec<usize> = train
        .iter()
        .map(|e| label_index[e.intent.as_str()])
        .collect();
    // Validation examples of intents the model does not know cannot be scored.
    let (val_xs, val_ys): (Vec<Sparse>, Vec<usize>) = validation
        .iter()
        .filter_map(|e| {
            label_index
                .get(e.intent.as_str())
                .map(|&y| (featurizer.transform(&e.text), y))
                .or_else(|| {
                    // Out-of-scope examples count even without an oos class.
                    (e.intent == config.oos_label)
                        .then(|| (featurizer.transform(&e.text), usize::MAX))
                })
        })
        .unzip();
    let c = labels.len();
    let d = featurizer.len();
    host::info(&format!(
        "training on {} examples, {} intents, {d} features; validating on {}",
        xs.len(),
        c,
        val_xs.len()
    ));

    // In-scope validation only, for model selection; unscorable oos rows
    // (no oos class) are kept aside for the threshold.
    let scorable: Vec<usize> = (0..val_xs.len())
        .filter(|&i| val_ys[i] != usize::MAX)
        .collect();
    let sel_xs: Vec<Sparse> = scorable.iter().map(|&i| val_xs[i].clone()).collect();
    let sel_ys: Vec<usize> = scorable.iter().map(|&i| val_ys[i]).collect();

    let mut rng = Rng(config.seed);
    let mut order: Vec<usize> = (0..xs.len()).collect();
    let mut scale = 1.0f32; // true weights = scale * stored weights
    let mut t = 0u64;
    let mut best: Option<(f64, Vec<f32>, Vec<f32>, u32)> = None;
    let mut since_best = 0;
    let mut grad = vec![0.0f32; c];
    let mut active: Vec<usize> = Vec::with_capacity(c);
    let epochs = config.epochs.max(1);
    let total_steps = (epochs as usize * xs.len()) as f32;
    for epoch in 1..=epochs {
        rng.shuffle(&mut order);
        let mut loss = 0.0f64;
        for (n, &i) in order.iter().enumerate() {
            if n % 1024 == 0 && host::cancelled() {
                return Err(PluginError::cancelled());
            }
            // Linear decay to a small floor: large steps early, a quiet
            // final iterate.
            let lr = config.learning_rate * (1.0 - t as f32 / total_steps).max(0.02);
            t += 1;
            let x = &xs[i];
            // Forward with the scaled weights.
            grad.copy_from_slice(&model.bias);
            for (&j, &v) in x.idx.iter().zip(&x.val) {
                let row = &model.weights[j as usize * c..(j as usize + 1) * c];
                let sv = scale * v;
                for (g, w) in grad.iter_mut().zip(row) {
                    *g += sv * w;
                }
            }
            softmax_in_place(&mut grad);
            loss -= (grad[ys[i]].max(1e-12) as f64).ln();
            grad[ys[i]] -= 1.0;
            // Weight decay on every weight at once, through the scale.
            scale *= 1.0 - lr * config.l2;
            let step = lr / scale;
            // Once the model is confident, almost every class's gradient is
            // negligible: updating only the classes that matter keeps the
            // result (to within GRAD_FLOOR) and halves the work.
            active.clear();
            active.extend((0..c).filter(|&k| grad[k].abs() > GRAD_FLOOR));
            if active.len() * 3 > c {
                for (&j, &v) in x.idx.iter().zip(&x.val) {
                    let row = &mut model.weights[j as usize * c..(j as usize + 1) * c];
                    let sv = step * v;
                    for (w, g) in row.iter_mut().zip(&grad) {
                        *w -= sv * g;
                    }
                }
            } else {
                for (&j, &v) in x.idx.iter().zip(&x.val) {
                    let row = &mut model.weights[j as usize * c..(j as usize + 1) * c];
                    let sv = step * v;
                    for &k in &active {
                        row[k] -= sv * grad[k];
                    }
                }
            }
            for (b, g) in model.bias.iter_mut().zip(&grad) {
                *b -= lr * g;
            }
            if scale < 1e-3 {
                model.weights.iter_mut().for_each(|w| *w *= scale);
                scale = 1.0;
            }
        }
        // Fold the scale in before scoring or keeping a copy.
        model.weights.iter_mut().for_each(|w| *w *= scale);
        scale = 1.0;
        let train_loss = loss / xs.len() as f64;
        host::metric("train_loss", train_loss, epoch);
        host::progress(
            epoch as f32 / epochs as f32,
            &format!("epoch {epoch}/{epochs}"),
        );
        if sel_xs.is_empty() {
            continue;
        }
        let acc = accuracy(&model, &sel_xs, &sel_ys);
        host::metric("val_accuracy", acc, epoch);
        if best.as_ref().is_none_or(|b| acc > b.0) {
            best = Some((acc, model.weights.clone(), model.bias.clone(), epoch));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience.max(1) {
                host::info(&format!(
                    "stopping early after epoch {epoch}: no better validation accuracy for {since_best} epochs"
                ));
                break;
            }
        }
    }
    let mut metrics = Vec::new();
    if let Some((acc, w, b, epoch)) = best {
        model.weights = w;
        model.bias = b;
        metrics.push(("best_epoch".into(), epoch as f64));
        metrics.push(("val_accuracy_uncalibrated".into(), acc));
    }

    if !val_xs.is_empty() {
        calibrate(&mut model, &val_xs, &val_ys);
        choose_threshold(&mut model, config, &val_xs, &val_ys);
    }
    if let Some(t) = config.oos_threshold {
        model.meta.threshold = t;
    }
    metrics.push(("temperature".into(), model.meta.temperature as f64));
    metrics.push(("oos_threshold".into(), model.meta.threshold as f64));
    metrics.push(("features".into(), d as f64));
    host::progress(1.0, "training the entity tagger");
    if let Some(tagger) = Tagger::train(
        train,
        &model.meta.gazetteer,
        model.max_value_words,
        config.entity_epochs,
        config.seed,
    )? {
        model.meta.tagger = tagger;
        if !validation.is_empty() {
            let (p, r, f) = crate::entities::span_scores(validation, |t| {
                model
                    .meta
                    .tagger
                    .tag(t, &model.meta.gazetteer, model.max_value_words)
            });
            metrics.push(("val_entity_precision".into(), p));
            metrics.push(("val_entity_recall".into(), r));
            metrics.push(("val_entity_f1".into(), f));
        }
    }
    if !val_xs.is_empty() {
        let (acc, in_acc, oos_recall, ece) = evaluate_validation(&model, &val_xs, &val_ys);
        metrics.push(("val_accuracy".into(), acc));
        metrics.push(("val_in_scope_accuracy".into(), in_acc));
        if let Some(r) = oos_recall {
            metrics.push(("val_oos_recall".into(), r));
        }
        metrics.push(("val_ece".into(), ece));
    }
    Ok((model, metrics))
}

/// Fit one temperature on validation rows of known classes by minimising
/// negative log-likelihood over a log-spaced grid.
fn calibrate(model: &mut IntentModel, xs: &[Sparse], ys: &[usize]) {
    let logits: Vec<(Vec<f32>, usize)> = xs
        .iter()
        .zip(ys)
        .filter(|(_, y)| **y != usize::MAX)
        .map(|(x, &y)| (model.logits(x), y))
        .collect();
    if logits.is_empty() {
        return;
    }
    let nll = |t: f32| -> f64 {
        logits
            .iter()
            .map(|(z, y)| -(model.probabilities(z, t)[*y].max(1e-12) as f64).ln())
            .sum()
    };
    // A coarse log-spaced grid over 0.03 … 10, then a fine one around its best.
    let mut best = (f64::INFINITY, 0.0f32);
    for k in 0..=20 {
        let e = -1.5 + 2.5 * k as f32 / 20.0;
        let v = nll(10f32.powf(e));
        if v < best.0 {
            best = (v, e);
        }
    }
    let centre = best.1;
    for k in 0..=20 {
        let e = centre - 0.125 + 0.25 * k as f32 / 20.0;
        let v = nll(10f32.powf(e));
        if v < best.0 {
            best = (v, e);
        }
    }
    model.meta.temperature = 10f32.powf(best.1);
}

/// With out-of-scope validation examples, pick the confidence threshold that
/// maximises in-scope accuracy + OOS recall while giving up at most
/// `max_in_scope_drop` in-scope accuracy.
fn choose_threshold(model: &mut IntentModel, config: &TrainConfig, xs: &[Sparse], ys: &[usize]) {
    let oos = model.oos_index();
    let is_oos = |y: usize| y == usize::MAX || Some(y) == oos;
    if !ys.iter().any(|&y| is_oos(y)) || config.oos_threshold.is_some() {
        return;
    }
    // (confidence of the top in-scope decision, in-scope correct?, is oos?)
    let rows: Vec<(f32, bool, bool)> = xs
        .iter()
        .zip(ys)
        .map(|(x, &y)| {
            let p = model.probabilities(&model.logits(x), model.meta.temperature);
            let best = (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            let top_is_oos = Some(best) == oos;
            let conf = if top_is_oos { -1.0 } else { p[best] };
            (conf, !is_oos(y) && best == y, is_oos(y))
        })
        .collect();
    let n_in = rows.iter().filter(|r| !r.2).count().max(1) as f64;
    let n_oos = rows.iter().filter(|r| r.2).count().max(1) as f64;
    let eval = |t: f32| {
        let mut in_ok = 0;
        let mut oos_ok = 0;
        for &(conf, correct, o) in &rows {
            let says_oos = conf < t;
            if o && says_oos {
                oos_ok += 1;
            }
            if !o && correct && !says_oos {
                in_ok += 1;
            }
        }
        (in_ok as f64 / n_in, oos_ok as f64 / n_oos)
    };
    let (base_in, _) = eval(0.0);
    let mut best = (f64::MIN, 0.0f32);
    for k in 0..=200 {
        let t = k as f32 / 200.0;
        let (in_acc, recall) = eval(t);
        if in_acc + 1e-12 < base_in - config.max_in_scope_drop as f64 {
            continue;
        }
        if in_acc + recall > best.0 {
            best = (in_acc + recall, t);
        }
    }
    model.meta.threshold = best.1;
}

/// Accuracy, in-scope accuracy, OOS recall and expected calibration error
/// (15 equal-width bins) on validation.
fn evaluate_validation(
    model: &IntentModel,
    xs: &[Sparse],
    ys: &[usize],
) -> (f64, f64, Option<f64>, f64) {
    let oos = model.oos_index();
    let bins = 15;
    let mut bin_conf = vec![0.0f64; bins];
    let mut bin_acc = vec![0.0f64; bins];
    let mut bin_n = vec![0usize; bins];
    let (mut ok, mut in_n, mut in_ok, mut oos_n, mut oos_ok) = (0, 0, 0, 0, 0);
    for (x, &y) in xs.iter().zip(ys) {
        let p = model.probabilities(&model.logits(x), model.meta.temperature);
        let (label, conf) = model.decide(&p);
        let truth_is_oos = y == usize::MAX || Some(y) == oos;
        let hit = if truth_is_oos {
            label == model.meta.oos_label
        } else {
            label == model.meta.labels[y]
        };
        ok += hit as usize;
        if truth_is_oos {
            oos_n += 1;
            oos_ok += hit as usize;
        } else {
            in_n += 1;
            in_ok += hit as usize;
        }
        let b = ((conf as f64 * bins as f64) as usize).min(bins - 1);
        bin_conf[b] += conf as f64;
        bin_acc[b] += hit as u8 as f64;
        bin_n[b] += 1;
    }
    let n = xs.len().max(1) as f64;
    let ece = (0..bins)
        .filter(|&b| bin_n[b] > 0)
        .map(|b| (bin_acc[b] - bin_conf[b]).abs() / n)
        .sum();
    (
        ok as f64 / n,
        in_ok as f64 / in_n.max(1) as f64,
        (oos_n > 0).then(|| oos_ok as f64 / oos_n as f64),
        ece,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use coach_plugin_sdk::{Split, testing};

    fn ex(text: &str, intent: &str) -> Example {
        Example {
            text: text.into(),
            intent: intent.into(),
            entities: vec![],
            split: Split::Unspecified,
        }
    }

    fn toy() -> (Vec<Example>, Vec<Example>) {
        let mut train = Vec::new();
        for i in 0..20 {
            train.push(ex(
                &format!("book a dj for the party number {i}"),
                "book_dj",
            ));
            train.push(ex(
                &format!("find me a florist in town {i}"),
                "find_florist",
            ));
            train.push(ex(&format!("what is the weather on day {i}"), "weather"));
        }
        let val = vec![
            ex("please book a dj", "book_dj"),
            ex("I need a florist", "find_florist"),
            ex("weather tomorrow", "weather"),
            ex("how do magnets work", "oos"),
        ];
        (train, val)
    }

    #[test]
    fn learns_a_separable_problem_and_reports_epochs() {
        testing::reset();
        let (train, val) = toy();
        let (model, metrics) = super::train(&TrainConfig::default(), &train, &val).unwrap();
        assert_eq!(model.predict_one("can you book a dj").intent, "book_dj");
        assert_eq!(model.predict_one("florist nearby").intent, "find_florist");
        assert!(!testing::metrics("train_loss").is_empty());
        assert!(metrics.iter().any(|(n, _)| n == "val_ece"));
    }

    #[test]
    fn same_seed_gives_identical_bytes() {
        let (train, val) = toy();
        let a = super::train(&TrainConfig::default(), &train, &val)
            .unwrap()
            .0
            .to_bytes();
        let b = super::train(&TrainConfig::default(), &train, &val)
            .unwrap()
            .0
            .to_bytes();
        assert_eq!(a, b);
        let m = IntentModel::from_bytes(&a).unwrap();
        assert_eq!(m.to_bytes(), a);
    }

    #[test]
    fn the_oos_threshold_comes_from_validation_alone() {
        let (train, mut val) = toy();
        let cfg = TrainConfig::default();
        let without = super::train(&cfg, &train, &val[..3]).unwrap().0;
        assert_eq!(
            without.threshold(),
            0.0,
            "no out-of-scope validation, no threshold"
        );
        for q in [
            "what is the meaning of life",
            "how tall is everest",
            "play jazz",
            "who won the cup",
        ] {
            val.push(ex(q, "oos"));
        }
        let with = super::train(&cfg, &train, &val).unwrap().0;
        assert!(
            with.threshold() > 0.0,
            "out-of-scope validation examples set a threshold"
        );
        let fixed = TrainConfig {
            oos_threshold: Some(0.42),
            ..TrainConfig::default()
        };
        assert_eq!(
            super::train(&fixed, &train, &val).unwrap().0.threshold(),
            0.42
        );
    }

    #[test]
    fn warm_start_keeps_old_intents_and_learns_a_new_one() {
        let (train, val) = toy();
        let cfg = TrainConfig::default();
        let (base, _) = super::train(&cfg, &train, &val).unwrap();
        // New data: a few reminders of the old intents and a new intent.
        let mut more: Vec<Example> = train.iter().step_by(2).cloned().collect();
        for i in 0..20 {
            more.push(ex(
                &format!("order the wedding cake with {i} tiers"),
                "order_cake",
            ));
        }
        let (warm, _) = super::train_from(&cfg, &base, &more, &val).unwrap();
        assert_eq!(
            warm.labels(),
            ["book_dj", "find_florist", "order_cake", "weather"]
        );
        assert_eq!(warm.predict_one("can you book a dj").intent, "book_dj");
        assert_eq!(warm.predict_one("florist nearby").intent, "find_florist");
        assert_eq!(warm.predict_one("weather tomorrow").intent, "weather");
        assert_eq!(
            warm.predict_one("we want to order a cake").intent,
            "order_cake"
        );
        // The base's vocabulary keeps its indices.
        let old = &base.meta.featurizer.vocab;
        assert_eq!(&warm.meta.featurizer.vocab[..old.len()], &old[..]);
        // Deterministic, and its bytes load.
        let again = super::train_from(&cfg, &base, &more, &val).unwrap().0;
        assert_eq!(again.to_bytes(), warm.to_bytes());
        assert_eq!(IntentModel::from_bytes(&warm.to_bytes()).unwrap(), warm);
    }

    #[test]
    fn corrupt_bytes_are_rejected() {
        assert!(IntentModel::from_bytes(b"nonsense").is_err());
        let (train, val) = toy();
        let mut bytes = super::train(&TrainConfig::default(), &train, &val)
            .unwrap()
            .0
            .to_bytes();
        bytes.truncate(bytes.len() - 3);
        assert!(IntentModel::from_bytes(&bytes).is_err());
    }

    /// `bytes` with its metadata changed by `f`, weights kept.
    fn with_meta(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let mut meta: serde_json::Value = serde_json::from_slice(&bytes[12..12 + len]).unwrap();
        f(&mut meta);
        let meta = serde_json::to_vec(&meta).unwrap();
        let mut out = bytes[..8].to_vec();
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&bytes[12 + len..]);
        out
    }

    #[test]
    fn an_artifact_that_contradicts_itself_is_refused() {
        let (train, val) = toy();
        let bytes = super::train(&TrainConfig::default(), &train, &val)
            .unwrap()
            .0
            .to_bytes();
        assert!(IntentModel::from_bytes(&with_meta(&bytes, |_| ())).is_ok());
        let refused = |b: Vec<u8>, why: &str| {
            let e = IntentModel::from_bytes(&b).unwrap_err();
            assert!(e.message.contains(why), "{}", e.message);
        };
        refused(
            with_meta(&bytes, |m| {
                m["featurizer"]["idf"].as_array_mut().unwrap().pop();
            }),
            "idf weights for",
        );
        refused(
            with_meta(&bytes, |m| m["featurizer"]["word_ngrams"] = 1000.into()),
            "n-gram sizes",
        );
        refused(
            with_meta(&bytes, |m| m["temperature"] = 0.into()),
            "temperature 0",
        );
        refused(
            with_meta(&bytes, |m| {
                m["tagger"] = serde_json::json!({"labels": ["O"], "weights": [[1, [[5, 0.5]]]]})
            }),
            "tagger weight (5, 0.5)",
        );
        let mut nan = bytes.clone();
        let at = nan.len() - 4;
        nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
        refused(nan, "is NaN");
    }

    #[test]
    fn cancellation_stops_training() {
        testing::reset();
        testing::set_cancelled(true);
        let (train, val) = toy();
        let err = super::train(&TrainConfig::default(), &train, &val).unwrap_err();
        assert_eq!(err.code, "cancelled");
        testing::reset();
    }

    #[test]
    fn entities_from_labelled_values() {
        let (mut train, val) = toy();
        train[0].text = "book a dj in Paris".into();
        train[0].entities = vec![EntitySpan {
            entity: "city".into(),
            start: 13,
            end: 18,
            value: "Paris".into(),
        }];
        let (model, _) = super::train(&TrainConfig::default(), &train, &val).unwrap();
        let p = model.predict_one("a dj in paris please");
        assert_eq!(p.entities.len(), 1);
        assert_eq!(p.entities[0].value, "paris");
        assert_eq!(p.entities[0].entity, "city");
    }
}
