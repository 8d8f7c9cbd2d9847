//! Native tuning harness on CLINC150-layout files. The public validation
//! split stands in for the held-back test split: training data is carved
//! into train and validation as the pipeline would, so nothing scored here
//! is seen by training or selection.
//!
//! ```text
//! cargo run --release -p trainer-intent --example clinc -- DATASETS/clinc150 SETTING '{"epochs": 20}'
//! ```
//!
//! With `{"encoder": "FOLDER"}` the sentence encoder in FOLDER joins the
//! n-grams (`PEER=1` runs the scikit-learn peer beside; `DUMP=1` prints
//! each test message the model gets wrong to stderr, `SCORES=1` each
//! one's energy and number of words, and the threshold for longer
//! messages). How users type, on the in-scope test
//! messages only: `PERTURB=0.15` misspells each word of four letters or
//! more with that probability (two letters swapped or one dropped);
//! `KEYWORDS=1` cuts each to its first three words of four letters or
//! more. `EXTRA_OOS=1` adds to a CLINC150 test the 151 out-of-scope
//! examples only `data_oos_plus.json` has; `DATA=data_small.json` reads
//! another variant.
//!
//! Settings: `full` (with `oos_train`), `threshold` (no out-of-scope
//! training data; `oos_train` is the validation's out-of-scope), `none` (no
//! out-of-scope data at all), `bot` (a small bot: two domains, 20 examples
//! per intent, no out-of-scope data; scored on traffic 40% out of scope;
//! `BOT_DOMAINS=home,travel` picks the domains, banking and
//! auto_and_commute by default), `lio` (the same bot without every third
//! intent of each domain, whose messages are its out-of-scope traffic:
//! unsupported requests in the bot's own domain).
use coach_plugin_sdk::{Example, Model, Split};
use trainer_intent::TrainConfig;

fn ex(text: &str, intent: &str) -> Example {
    Example {
        text: text.into(),
        intent: intent.into(),
        entities: vec![],
        split: Split::Unspecified,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let setting = args.get(2).map(String::as_str).unwrap_or("full");
    let config: TrainConfig =
        serde_json::from_str(args.get(3).map(String::as_str).unwrap_or("{}")).unwrap();
    let read = |name: &str| -> serde_json::Value {
        std::fs::read_to_string(dir.join(name))
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_default()
    };
    let file = std::env::var("DATA").unwrap_or_else(|_| "data_full.json".into());
    let (data, domains) = (read(&file), read("domains.json"));
    let rows = |key: &str| -> Vec<Example> {
        data[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let intent = r[1].as_str().unwrap();
                ex(
                    r[0].as_str().unwrap(),
                    if intent == "oos" { "oos" } else { intent },
                )
            })
            .collect()
    };
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let mut test: Vec<Example>;
    // Every fifth training example of an intent goes to validation.
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut carve = |e: Example, train: &mut Vec<Example>, val: &mut Vec<Example>| {
        let n = seen.entry(e.intent.clone()).or_default();
        *n += 1;
        if n.is_multiple_of(5) {
            val.push(e)
        } else {
            train.push(e)
        }
    };
    match setting {
        "full" | "threshold" | "none" => {
            for e in rows("train") {
                carve(e, &mut train, &mut val);
            }
            match setting {
                "full" => {
                    for e in rows("oos_train") {
                        carve(e, &mut train, &mut val);
                    }
                }
                "threshold" => val.extend(rows("oos_train")),
                _ => {}
            }
            test = rows("val");
            test.extend(rows("oos_val"));
            if std::env::var_os("EXTRA_OOS").is_some() {
                // The out-of-scope examples only `oos_plus` has: more
                // unseen out-of-scope messages to score.
                let plus = read("data_oos_plus.json");
                let seen: std::collections::BTreeSet<&str> = data["oos_train"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r[0].as_str().unwrap())
                    .collect();
                test.extend(
                    plus["oos_train"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r[0].as_str().unwrap())
                        .filter(|t| !seen.contains(t))
                        .map(|t| ex(t, "oos")),
                );
            }
        }
        "bot" | "lio" => {
            // `lio`: every third intent of each domain is left out of
            // training and its validation messages are scored as out of
            // scope (a third of the traffic): unsupported requests that
            // share the bot's words, the hard case.
            let which =
                std::env::var("BOT_DOMAINS").unwrap_or_else(|_| "banking,auto_and_commute".into());
            let (mut keep, mut out) = (Vec::new(), Vec::new());
            for d in which.split(',') {
                for (k, i) in domains[d].as_array().unwrap().iter().enumerate() {
                    let i = i.as_str().unwrap().to_owned();
                    if setting == "lio" && k % 3 == 2 {
                        out.push(i)
                    } else {
                        keep.push(i)
                    }
                }
            }
            let mut per = std::collections::BTreeMap::<String, usize>::new();
            for e in rows("train") {
                if keep.contains(&e.intent) {
                    let n = per.entry(e.intent.clone()).or_default();
                    *n += 1;
                    if *n <= 16 {
                        train.push(e);
                    } else if *n <= 20 {
                        val.push(e);
                    }
                }
            }
            test = rows("val")
                .into_iter()
                .filter(|e| keep.contains(&e.intent))
                .collect();
            if setting == "lio" {
                test.extend(
                    rows("val")
                        .into_iter()
                        .filter(|e| out.contains(&e.intent))
                        .map(|e| ex(&e.text, "oos")),
                );
            } else {
                let n_oos = test.len() * 2 / 3;
                test.extend(rows("oos_val"));
                test.extend(
                    rows("val")
                        .into_iter()
                        .filter(|e| !keep.contains(&e.intent))
                        .step_by(7)
                        .map(|e| ex(&e.text, "oos"))
                        .take(n_oos.saturating_sub(100)),
                );
            }
        }
        "bot77" => {
            // A small support bot from Banking77: a third of its intents,
            // 6–30 examples each; the other intents and CLINC150's
            // out-of-scope examples are its out-of-scope traffic (~45%).
            let csv = std::fs::read_to_string(dir.join("../banking77/train.csv")).unwrap();
            let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for line in csv.lines().skip(1) {
                let Some((text, intent)) = line.rsplit_once(',') else {
                    continue;
                };
                let text = text.trim_matches('"').replace("\"\"", "\"");
                by.entry(intent.to_owned()).or_default().push(text);
            }
            let (mut n_in, mut oos_pool) = (0, Vec::new());
            test = Vec::new();
            for (k, (intent, texts)) in by.iter().enumerate() {
                if k % 3 == 0 {
                    let n = 6 + (k * 7) % 25;
                    for (j, t) in texts.iter().enumerate() {
                        if j < n {
                            carve(ex(t, intent), &mut train, &mut val);
                        } else if j < n + 30 {
                            test.push(ex(t, intent));
                            n_in += 1;
                        }
                    }
                } else {
                    oos_pool.extend(texts.iter().step_by(13).map(|t| ex(t, "oos")));
                }
            }
            oos_pool.extend(rows("oos_val"));
            if std::env::var_os("BG").is_some() {
                train.extend(rows("oos_train"));
            } else {
                oos_pool.extend(rows("oos_train"));
            }
            let step = (oos_pool.len() / (n_in * 4 / 5)).max(1);
            test.extend(oos_pool.into_iter().step_by(step));
        }
        "jsonl" => {
            // `PREFIX-train.jsonl` and `PREFIX-test.jsonl` (`{"text", "intent"}`
            // lines): a closed-set data set, one fold of it held out.
            let lines = |suffix: &str| -> Vec<Example> {
                let path = format!("{}-{suffix}.jsonl", dir.display());
                std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{path}: {e}"))
                    .lines()
                    .map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        ex(v["text"].as_str().unwrap(), v["intent"].as_str().unwrap())
                    })
                    .collect()
            };
            train = lines("train");
            test = lines("test");
        }
        s => panic!("unknown setting {s}"),
    }
    if let Ok(path) = std::env::var("EXTRA_TEST") {
        // More out-of-scope test messages, one per line.
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        test.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| ex(l, "oos")),
        );
    }
    if std::env::var_os("KEYWORDS").is_some() {
        for e in test.iter_mut().filter(|e| e.intent != "oos") {
            let kept: Vec<&str> = e
                .text
                .split_whitespace()
                .filter(|w| w.chars().count() >= 4)
                .take(3)
                .collect();
            if !kept.is_empty() {
                e.text = kept.join(" ");
            }
        }
    }
    if let Ok(p) = std::env::var("PERTURB") {
        // Typos in in-scope test messages: each word of 4+ letters gets,
        // with probability p, two neighbouring letters swapped or one dropped.
        let p: f64 = p.parse().unwrap();
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for e in test.iter_mut().filter(|e| e.intent != "oos") {
            let words: Vec<String> = e
                .text
                .split_whitespace()
                .map(|w| {
                    let c: Vec<char> = w.chars().collect();
                    if c.len() >= 4 && next() < p {
                        let i = 1 + ((next() * (c.len() - 2) as f64) as usize).min(c.len() - 3);
                        let mut c = c.clone();
                        if next() < 0.5 {
                            c.swap(i, i + 1);
                        } else {
                            c.remove(i);
                        }
                        c.into_iter().collect()
                    } else {
                        w.to_owned()
                    }
                })
                .collect();
            e.text = words.join(" ");
        }
    }
    let t = std::time::Instant::now();
    let (model, metrics) = trainer_intent::model::train(&config, &train, &val).unwrap();
    let secs = t.elapsed().as_secs_f64();
    if std::env::var_os("LOGS").is_some() {
        for line in coach_plugin_sdk::testing::logs(coach_plugin_sdk::host::LogLevel::Info) {
            eprintln!("LOG\t{line}");
        }
    }
    let (mut n_in, mut ok_in, mut n_oos, mut ok_oos) = (0, 0, 0, 0);
    // In-scope messages whose top intent is right (before rejection), and
    // those turned away.
    let (mut top_in, mut turned_away) = (0, 0);
    let texts: Vec<String> = test.iter().map(|e| e.text.clone()).collect();
    let t = std::time::Instant::now();
    let preds = model.predict(texts);
    let ps = test.len() as f64 / t.elapsed().as_secs_f64();
    let dump = std::env::var_os("DUMP").is_some();
    for (e, p) in test.iter().zip(preds) {
        if dump && p.intent != e.intent {
            eprintln!(
                "MISS\t{}\t{}\t{}\t{:.3}",
                e.text, e.intent, p.intent, p.confidence
            );
        }
        if e.intent == "oos" {
            n_oos += 1;
            ok_oos += (p.intent == "oos") as usize
        } else {
            n_in += 1;
            ok_in += (p.intent == e.intent) as usize;
            top_in += p
                .ranking
                .iter()
                .find(|r| r.intent != "oos")
                .is_some_and(|r| r.intent == e.intent) as usize;
            turned_away += (p.intent == "oos") as usize;
        }
    }
    println!(
        "{setting}: train {} val {} test {} | {secs:.1}s in-scope {:.2} (top intent {:.2}, turned away {:.2}) oos {:.2} overall {:.3} predict {ps:.0}/s bytes {}",
        train.len(),
        val.len(),
        test.len(),
        100.0 * ok_in as f64 / n_in as f64,
        100.0 * top_in as f64 / n_in as f64,
        100.0 * turned_away as f64 / n_in as f64,
        100.0 * ok_oos as f64 / n_oos.max(1) as f64,
        (ok_in + ok_oos) as f64 / test.len() as f64,
        model.to_bytes().len()
    );
    // AUROC of each out-of-scope score: in-scope vs out-of-scope test rows.
    let scored: Vec<([f32; 2], bool)> = test
        .iter()
        .map(|e| (model.in_scope_scores(&e.text), e.intent != "oos"))
        .collect();
    if std::env::var_os("SCORES").is_some() {
        for (e, s) in test.iter().zip(&scored) {
            eprintln!(
                "SCORE\t{}\t{}\t{}\t{}",
                s.1,
                e.text.split_whitespace().count(),
                s.0[1],
                model.threshold()
            );
        }
    }
    let auroc = |k: usize| {
        let pos: Vec<f32> = scored.iter().filter(|s| s.1).map(|s| s.0[k]).collect();
        let neg: Vec<f32> = scored.iter().filter(|s| !s.1).map(|s| s.0[k]).collect();
        let mut win = 0.0;
        for a in &pos {
            for b in &neg {
                win += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
        win / (pos.len() * neg.len()).max(1) as f64
    };
    println!(
        "  AUROC top probability {:.3}, energy {:.3}",
        auroc(0),
        auroc(1)
    );
    if std::env::var_os("PEER").is_some() {
        // The sklearn peer on the same training data (train + validation,
        // as the final model here) and the same test.
        let dir = std::env::temp_dir();
        let write = |name: &str, rows: &[&Example]| {
            let path = dir.join(name);
            let text: String = rows
                .iter()
                .map(|e| serde_json::json!({"text": e.text, "intent": e.intent}).to_string() + "\n")
                .collect();
            std::fs::write(&path, text).unwrap();
            path
        };
        let fitted: Vec<&Example> = train
            .iter()
            .chain(&val)
            .filter(|e| e.intent != "oos" || setting == "full")
            .collect();
        let a = write("peer-train.jsonl", &fitted);
        let b = write("peer-test.jsonl", &test.iter().collect::<Vec<_>>());
        let out = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../daemon/src/cli/bench/sklearn_peer.py"
            ))
            .args([a.as_os_str(), b.as_os_str()])
            .arg("oos")
            .output()
            .unwrap();
        println!("  peer {}", String::from_utf8_lossy(&out.stdout).trim());
    }
    println!(
        "  {}",
        metrics
            .iter()
            .filter(|(k, _)| !k.starts_with("val_entity"))
            .map(|(k, v)| format!("{k}={v:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
