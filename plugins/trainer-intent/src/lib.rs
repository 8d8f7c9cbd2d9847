//! `trainer-intent`: the intent classifier Coach trains by default, on CPU,
//! inside the sandbox.
//!
//! - Features: word n-grams and character n-grams (within word boundaries),
//!   weighted by sublinear TF-IDF and L2-normalised ([`features`]); beside
//!   them the IDF-weighted sum of static word vectors distilled from a
//!   sentence encoder, which ship with the trainer ([`word_vectors`]), or
//!   with `encoder`, a pretrained sentence encoder's embedding, carried by
//!   the model ([`encoder`]).
//! - Classifier: a linear SVM per intent (squared hinge, one against the
//!   rest; or one softmax regression) fitted by SGD with L2 regularisation;
//!   shuffling is seeded, so the same seed and data give the same model
//!   bytes ([`model`]).
//! - Selection: k-fold cross-validation over the training data (and the
//!   validation split, which the final model is then fitted on too); the
//!   regularisation (for small data), whether the word vectors (or the
//!   encoder) pay and at what length, the temperature and the out-of-scope
//!   threshold are chosen on out-of-fold scores, then the final model is
//!   fitted on all of it.
//! - Calibration: one temperature, minimising negative log-likelihood.
//! - Out of scope: an `oos` class when the data has one, with a confidence
//!   threshold tuned on the out-of-scope examples; without any, a threshold
//!   on the in-scope energy that turns away a set share of the in-scope
//!   messages the model gets right (1.5% by default) and the wrong guesses
//!   that score as low, so unknown requests are still rejected.
//! - Entities: a BIO tagger (averaged perceptron) trained on the labelled
//!   spans, with the labelled values as a gazetteer feature ([`entities`]).
//! - Warm start: continue from an earlier model, keeping its vocabulary,
//!   intents and weights and adding what the new data brings.

pub mod encoder;
pub mod entities;
pub mod features;
pub mod model;
pub mod word_clusters;
pub mod word_vectors;

use coach_plugin_sdk::{
    Example, Metric, Model, PluginError, Prediction, Trained, Trainer, WarmStart,
};

pub use model::{IntentModel, TrainConfig};

pub struct IntentTrainer;

/// A trained model and its metrics, as the host receives them.
fn trained((model, metrics): (IntentModel, Vec<(String, f64)>)) -> Trained {
    Trained {
        model: model.to_bytes(),
        metrics: metrics
            .into_iter()
            .map(|(name, value)| Metric { name, value })
            .collect(),
    }
}

impl Trainer for IntentTrainer {
    type Model = IntentModel;

    fn train(
        config: &str,
        train: Vec<Example>,
        validation: Vec<Example>,
    ) -> Result<Trained, PluginError> {
        let config: TrainConfig = coach_plugin_sdk::parse_config(config)?;
        model::train(&config, &train, &validation).map(trained)
    }
}

impl WarmStart for IntentTrainer {
    fn train_from(
        config: &str,
        base: Vec<u8>,
        train: Vec<Example>,
        validation: Vec<Example>,
    ) -> Result<Trained, PluginError> {
        let config: TrainConfig = coach_plugin_sdk::parse_config(config)?;
        let base = IntentModel::from_bytes(&base)?;
        model::train_from(&config, &base, &train, &validation).map(trained)
    }
}

impl Model for IntentModel {
    fn load(bytes: Vec<u8>) -> Result<Self, PluginError> {
        IntentModel::from_bytes(&bytes)
    }

    fn predict(&self, texts: Vec<String>) -> Vec<Prediction> {
        self.predict_many(&texts)
    }
}

coach_plugin_sdk::export_trainer!(IntentTrainer);
