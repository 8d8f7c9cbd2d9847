//! Native tuning harness on a CLINC150-layout file, scored on its
//! validation split only: `cargo run --release -p trainer-intent --example
//! clinc -- data_full.json '{"epochs": 20}'`.
use coach_plugin_sdk::{Example, Model, Split};
use trainer_intent::TrainConfig;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&args[1]).unwrap()).unwrap();
    let config: TrainConfig =
        serde_json::from_str(args.get(2).map(String::as_str).unwrap_or("{}")).unwrap();
    let rows = |key: &str, oos: bool| -> Vec<Example> {
        data[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Example {
                text: r[0].as_str().unwrap().into(),
                intent: if oos {
                    "oos".into()
                } else {
                    r[1].as_str().unwrap().into()
                },
                entities: vec![],
                split: Split::Unspecified,
            })
            .collect()
    };
    let mut train = rows("train", false);
    train.extend(rows("oos_train", true));
    let mut val = rows("val", false);
    val.extend(rows("oos_val", true));
    let t = std::time::Instant::now();
    let (model, metrics) = trainer_intent::model::train(&config, &train, &val).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (mut n_in, mut ok_in, mut n_oos, mut ok_oos) = (0, 0, 0, 0);
    let texts: Vec<String> = val.iter().map(|e| e.text.clone()).collect();
    let t = std::time::Instant::now();
    let preds = model.predict(texts);
    let ps = val.len() as f64 / t.elapsed().as_secs_f64();
    for (e, p) in val.iter().zip(preds) {
        if e.intent == "oos" {
            n_oos += 1;
            ok_oos += (p.intent == "oos") as usize
        } else {
            n_in += 1;
            ok_in += (p.intent == e.intent) as usize
        }
    }
    println!(
        "train {secs:.1}s in-scope {:.2} oos {:.2} predict {ps:.0}/s bytes {}",
        100.0 * ok_in as f64 / n_in as f64,
        100.0 * ok_oos as f64 / n_oos as f64,
        model.to_bytes().len()
    );
    let keep = [
        "best_epoch",
        "val_accuracy_uncalibrated",
        "temperature",
        "oos_threshold",
        "val_ece",
        "features",
    ];
    println!(
        "  {}",
        metrics
            .iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
