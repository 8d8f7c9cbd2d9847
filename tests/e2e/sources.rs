//! `source-files` on the real public datasets, through the real sandbox.

use crate::common::*;
use coach::plugin::{JobSpec, PluginHost, bindings::Split};
use std::collections::BTreeSet;
use std::path::Path;

fn read(host: &PluginHost, path: &Path, format: &str) -> coach::plugin::job::SourceOutput {
    let spec = JobSpec {
        run: "t".into(),
        step: format.into(),
        read_paths: vec![path.to_path_buf()],
        ..Default::default()
    };
    let cfg = serde_json::json!({"path": path, "format": format}).to_string();
    host.source("source-files", spec)
        .unwrap()
        .read_all(&cfg, 4096, &host.limits())
        .unwrap()
}

#[test]
fn public_datasets_read_through_the_sandbox() {
    let Some(data) = datasets() else { return };
    let home = Home::new("");
    let host = PluginHost::new(&home.config()).unwrap();

    let clinc = read(&host, &data.join("clinc150/data_full.json"), "clinc150");
    let count = |s: Split| clinc.examples.iter().filter(|e| e.split == s).count();
    assert_eq!(count(Split::Train), 15_000 + 100);
    assert_eq!(count(Split::Validation), 3_000 + 100);
    let intents: BTreeSet<_> = clinc.examples.iter().map(|e| e.intent.as_str()).collect();
    assert_eq!(intents.len(), 151, "150 intents and oos");
    assert_eq!(clinc.bad_records, 0);

    let banking = read(&host, &data.join("banking77/train.csv"), "banking77");
    assert_eq!(banking.examples.len(), 10_003);
    assert_eq!(
        banking
            .examples
            .iter()
            .map(|e| &e.intent)
            .collect::<BTreeSet<_>>()
            .len(),
        77
    );

    let hwu = read(&host, &data.join("hwu64/trainset"), "hwu64");
    assert_eq!(
        hwu.examples
            .iter()
            .map(|e| &e.intent)
            .collect::<BTreeSet<_>>()
            .len(),
        64
    );
    let with_entities = hwu
        .examples
        .iter()
        .filter(|e| !e.entities.is_empty())
        .count();
    assert!(with_entities > 1000, "{with_entities}");
    for e in &hwu.examples {
        for s in &e.entities {
            assert_eq!(&e.text[s.start as usize..s.end as usize], s.value);
        }
    }

    let snips = read(&host, &data.join("snips"), "snips");
    assert_eq!(
        snips
            .examples
            .iter()
            .map(|e| &e.intent)
            .collect::<BTreeSet<_>>()
            .len(),
        7
    );
    for e in &snips.examples {
        for s in &e.entities {
            assert_eq!(&e.text[s.start as usize..s.end as usize], s.value);
        }
    }
}

#[test]
fn rasa_yaml_entities_round_trip_through_the_sandbox() {
    let home = Home::new("");
    let host = PluginHost::new(&home.config()).unwrap();
    let nlu = workspace().join("workflows/data/wedding/nlu.yml");
    let out = read(&host, &nlu, "rasa");
    assert_eq!(out.bad_records, 0);
    let e = out
        .examples
        .iter()
        .find(|e| e.text == "add Maria Santos to the guest list")
        .unwrap();
    assert_eq!(e.intent, "add_guest");
    assert_eq!(e.entities.len(), 1);
    assert_eq!(e.entities[0].entity, "guest_name");
    assert_eq!(
        &e.text[e.entities[0].start as usize..e.entities[0].end as usize],
        "Maria Santos"
    );
}
