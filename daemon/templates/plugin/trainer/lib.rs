//! {{id}}: a Coach trainer plugin.
//!
//! A word-count classifier: each intent is the bag of words of its
//! examples; an utterance goes to the intent whose words it shares most
//! (cosine similarity), or to `oos` below `min_confidence`. Replace it with
//! your model; keep `train` deterministic and the bytes self-contained.

use coach_plugin_sdk::{
    Example, Metric, Model, PluginError, Prediction, RankedIntent, Trained, Trainer,
    export_trainer, host,
};
use std::collections::BTreeMap;

/// The step's parameters: a workflow's `with = { … }`, or
/// `coach plugin run --with KEY=VALUE`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_min_confidence")]
    min_confidence: f32,
}

fn default_min_confidence() -> f32 {
    0.3
}

pub struct WordCounts;

/// The model: per intent, how often each word appears in its examples.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Bags {
    min_confidence: f32,
    intents: BTreeMap<String, BTreeMap<String, f32>>,
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

impl Bags {
    fn scores(&self, text: &str) -> Vec<RankedIntent> {
        let mut query: BTreeMap<String, f32> = BTreeMap::new();
        for w in words(text) {
            *query.entry(w).or_default() += 1.0;
        }
        let norm = |b: &BTreeMap<String, f32>| b.values().map(|v| v * v).sum::<f32>().sqrt();
        let q = norm(&query).max(1e-6);
        let mut ranked: Vec<RankedIntent> = self
            .intents
            .iter()
            .map(|(intent, bag)| {
                let dot: f32 = query.iter().map(|(w, n)| n * bag.get(w).unwrap_or(&0.0)).sum();
                RankedIntent {
                    intent: intent.clone(),
                    confidence: dot / (q * norm(bag).max(1e-6)),
                }
            })
            .collect();
        ranked.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        ranked
    }
}

impl Trainer for WordCounts {
    type Model = Bags;

    fn train(config: &str, train: Vec<Example>, validation: Vec<Example>) -> Result<Trained, PluginError> {
        let config: Config = coach_plugin_sdk::parse_config(config)?;
        if train.is_empty() {
            return Err(PluginError::bad_data("no training examples"));
        }
        let mut intents: BTreeMap<String, BTreeMap<String, f32>> = BTreeMap::new();
        for (i, e) in train.iter().enumerate() {
            if host::cancelled() {
                return Err(PluginError::cancelled());
            }
            let bag = intents.entry(e.intent.clone()).or_default();
            for w in words(&e.text) {
                *bag.entry(w).or_default() += 1.0;
            }
            host::progress((i + 1) as f32 / train.len() as f32, "counting words");
        }
        let model = Bags { min_confidence: config.min_confidence, intents };
        let mut metrics = Vec::new();
        if !validation.is_empty() {
            let texts = validation.iter().map(|e| e.text.clone()).collect();
            let right = model
                .predict(texts)
                .iter()
                .zip(&validation)
                .filter(|(p, e)| p.intent == e.intent)
                .count();
            let accuracy = right as f64 / validation.len() as f64;
            host::metric("val_accuracy", accuracy, 1);
            metrics.push(Metric { name: "val_accuracy".into(), value: accuracy });
        }
        let bytes = serde_json::to_vec(&model).map_err(|e| PluginError::new("internal", e.to_string()))?;
        Ok(Trained { model: bytes, metrics })
    }
}

impl Model for Bags {
    fn load(bytes: Vec<u8>) -> Result<Self, PluginError> {
        serde_json::from_slice(&bytes)
            .map_err(|e| PluginError::bad_data(format!("not a model of this plugin: {e}")))
    }

    fn predict(&self, texts: Vec<String>) -> Vec<Prediction> {
        texts
            .iter()
            .map(|t| {
                let ranking: Vec<RankedIntent> = self.scores(t).into_iter().take(5).collect();
                let best = ranking.first().cloned().unwrap_or(RankedIntent { intent: "oos".into(), confidence: 0.0 });
                let intent = if best.confidence < self.min_confidence { "oos".to_owned() } else { best.intent };
                Prediction { intent, confidence: best.confidence, ranking, entities: Vec::new() }
            })
            .collect()
    }
}

export_trainer!(WordCounts);

/// Native tests of the logic; `tests/sandbox.rs` runs the component in
/// Coach's sandbox.
#[cfg(test)]
mod tests {
    use super::*;
    use coach_plugin_sdk::Split;

    pub fn example(intent: &str, text: &str) -> Example {
        Example { text: text.into(), intent: intent.into(), entities: vec![], split: Split::Train }
    }

    #[test]
    fn learns_words_and_says_oos_for_strangers() {
        let train = vec![
            example("greet", "hello there"),
            example("greet", "hi hello"),
            example("bye", "goodbye see you"),
            example("bye", "bye for now"),
        ];
        let trained = WordCounts::train("{}", train, vec![]).unwrap();
        let model = Bags::load(trained.model).unwrap();
        let p = model.predict(vec!["hello!".into(), "see you soon".into(), "quantum flux".into()]);
        assert_eq!(p[0].intent, "greet");
        assert_eq!(p[1].intent, "bye");
        assert_eq!(p[2].intent, "oos");
    }
}
