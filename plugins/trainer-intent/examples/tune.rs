//! Train natively on a JSONL file of `{text, intent, split}` and print
//! held-out scores: `cargo run --release -p trainer-intent --example tune -- data.jsonl '{"epochs": 30}'`.
use coach_plugin_sdk::{Example, Split};
use trainer_intent::{IntentModel, TrainConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&args[1]).expect("read data");
    let config: TrainConfig =
        serde_json::from_str(args.get(2).map(String::as_str).unwrap_or("{}")).expect("config");
    let (mut train, mut val, mut test) = (vec![], vec![], vec![]);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let split = v["split"].as_str().unwrap_or("train");
        let e = Example {
            text: v["text"].as_str().unwrap().into(),
            intent: v["intent"].as_str().unwrap().into(),
            entities: vec![],
            split: Split::Unspecified,
        };
        match split {
            "validation" => val.push(e),
            "test" => test.push(e),
            _ => train.push(e),
        }
    }
    let start = std::time::Instant::now();
    let (model, metrics) = trainer_intent::model::train(&config, &train, &val).expect("train");
    let secs = start.elapsed().as_secs_f64();
    let held = if test.is_empty() { &val } else { &test };
    let (mut ok, mut in_n, mut in_ok, mut oos_n, mut oos_ok) = (0, 0, 0, 0, 0);
    for e in held {
        let p = <IntentModel as coach_plugin_sdk::Model>::predict(&model, vec![e.text.clone()])
            .remove(0);
        let hit = p.intent == e.intent;
        ok += hit as usize;
        if e.intent == config.oos_label {
            oos_n += 1;
            oos_ok += hit as usize
        } else {
            in_n += 1;
            in_ok += hit as usize
        }
    }
    println!(
        "train {secs:.2}s  accuracy {:.3}  in-scope {:.3}  oos recall {:.3}  ({} held out)",
        ok as f64 / held.len() as f64,
        in_ok as f64 / in_n.max(1) as f64,
        oos_ok as f64 / oos_n.max(1) as f64,
        held.len()
    );
    for (k, v) in metrics {
        print!("{k}={v:.3} ");
    }
    println!();
}
