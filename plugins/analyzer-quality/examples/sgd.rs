//! Score the Schema-Guided Dialogue dialogues and print the lowest and
//! highest, with their reasons, to read whether the scores are right:
//!
//! ```text
//! cargo run -p analyzer-quality --example sgd -- PATH/TO/datasets/sgd [N]
//! ```

use analyzer_quality::score::{Context, Dialogue, Role, Turn, analyze};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: sgd DATASETS/sgd [how many to show]");
    let show: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    let mut dialogues = Vec::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("a folder") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("dialogues_") {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for d in v.as_array().unwrap() {
            let turns = d["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let role = if t["speaker"] == "USER" {
                        Role::User
                    } else {
                        Role::Bot
                    };
                    Turn::new(role, t["utterance"].as_str().unwrap_or(""))
                })
                .collect();
            dialogues.push(Dialogue {
                turns,
                outcome: None,
                ratings: Vec::new(),
            });
            names.push(d["dialogue_id"].as_str().unwrap_or("?").to_owned());
        }
    }
    let cx = Context::of(&dialogues);
    let mut scored: Vec<(f64, usize)> = dialogues
        .iter()
        .enumerate()
        .map(|(i, d)| (analyze(d, &cx).score, i))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = scored.len();
    let mean = scored.iter().map(|s| s.0).sum::<f64>() / n as f64;
    println!(
        "{n} dialogues, usual user turns {}, mean score {mean:.1}",
        cx.usual_user_turns
    );
    let print = |(score, i): (f64, usize)| {
        let a = analyze(&dialogues[i], &cx);
        println!("\n== {} score {score:.1}", names[i]);
        for t in &dialogues[i].turns {
            println!("  {:?}: {}", t.role, t.text);
        }
        for asp in &a.aspects {
            println!(
                "  {} {:.0} (confidence {:.2})",
                asp.name, asp.score, asp.confidence
            );
            for e in &asp.evidence {
                println!("    -{:.0} {:?} {}", e.points, e.turns, e.reason);
            }
        }
    };
    for s in scored.iter().take(show) {
        print(*s);
    }
    for s in scored.iter().rev().take(show) {
        print(*s);
    }
}
