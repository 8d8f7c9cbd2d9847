use super::*;
use crate::plugin::manifest::Manifest;

fn catalog() -> Catalog {
    let mut c = Catalog::new();
    for text in [
        include_str!("../../../plugins/source-files/plugin.toml"),
        include_str!("../../../plugins/trainer-intent/plugin.toml"),
    ] {
        let m = Manifest::parse(text, "plugin.toml").unwrap();
        c.insert(
            m.id.to_string(),
            crate::core::params::PluginSpec {
                kind: m.kind,
                parameters: m.parameters,
                problem: None,
            },
        );
    }
    c
}

fn parse(text: &str) -> Result<Workflow, Errors> {
    Workflow::parse(Path::new("wf.toml"), text, &catalog())
}

const GOOD: &str = r#"
version = 1
name = "demo"
description = "a demo"

[[step]]
id = "data"
uses = "source-files"
with = { format = "jsonl", path = "data/x.jsonl" }

[[step]]
id = "evaluate"
kind = "evaluate"
needs = ["train"]

[[step]]
id = "train"
uses = "trainer-intent"
needs = ["data"]
with = { epochs = 3, seed = 1 }
timeout = "5m"
retries = 1
"#;

#[test]
fn a_good_workflow_compiles_in_dependency_order() {
    let wf = parse(GOOD).unwrap();
    let ids: Vec<_> = wf.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["data", "train", "evaluate"]);
    let train = wf.step("train").unwrap();
    assert_eq!(train.timeout, Some(Duration::from_secs(300)));
    assert_eq!(train.with["epochs"], 3);
    assert!(
        wf.step("data").unwrap().with["path"]
            .as_str()
            .unwrap()
            .ends_with("data/x.jsonl")
    );
    assert_eq!(wf.nearest("evaluate", Produces::Model).unwrap().id, "train");
    assert_eq!(wf.hash.len(), 64);
}

#[test]
fn syntax_errors_are_located() {
    let e = parse("version = 1\nname = \"x\"\n[[step]]\nid = \n").unwrap_err();
    assert_eq!(e.0[0].line, 4, "{e}");
    assert!(e.0[0].message.contains("TOML syntax"), "{e}");
}

#[test]
fn all_errors_are_reported_at_once_with_positions() {
    let text = r#"version = 1
name = "x"

[[step]]
id = "data"
uses = "source-filez"

[[step]]
id = "train"
uses = "trainer-intent"
needs = ["data"]
colour = "blue"
with = { epochz = 3 }
"#;
    let e = parse(text).unwrap_err();
    let got: Vec<_> = e.0.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, [(6, 8), (12, 1), (13, 10)], "{e}");
    assert!(e.0[0].message.contains("unknown plugin `source-filez`"));
    assert!(e.0[1].message.contains("unknown key `colour`"));
    assert!(e.0[2].message.contains("unknown parameter `epochz`"));
}

#[test]
fn cycles_are_reported_with_the_path() {
    let text = r#"version = 1
name = "x"
[[step]]
id = "a"
kind = "split"
needs = ["b"]
[[step]]
id = "b"
kind = "split"
needs = ["a"]
"#;
    let e = parse(text).unwrap_err();
    assert!(
        e.0.iter().any(|e| e.message.contains("cycle: a → b → a")),
        "{e}"
    );
}

#[test]
fn unknown_needs_wrong_types_and_missing_inputs() {
    let text = r#"version = 2
name = "x"
[[step]]
id = "train"
uses = "trainer-intent"
needs = ["nowhere"]
with = { epochs = "many" }
[[step]]
id = "ev"
kind = "evaluate"
"#;
    let e = parse(text).unwrap_err();
    let msgs: Vec<_> = e.0.iter().map(|e| e.message.as_str()).collect();
    assert!(msgs.iter().any(|m| m.contains("version 2")), "{e}");
    assert!(msgs.iter().any(|m| m.contains("must be an integer")), "{e}");
    let e2 = parse("version = 1\nname = \"x\"\n[[step]]\nid = \"ev\"\nkind = \"evaluate\"\n")
        .unwrap_err();
    assert!(e2.0[0].message.contains("needs a trained model"), "{e2}");
}

#[test]
fn missing_required_parameter() {
    let e = parse("version = 1\nname = \"x\"\n[[step]]\nid = \"d\"\nuses = \"source-files\"\nwith = { path = \"x\" }\n").unwrap_err();
    assert!(
        e.0[0].message.contains("required parameter `format`"),
        "{e}"
    );
}

#[test]
fn render_shows_a_caret_under_the_span() {
    let e = parse("version = 1\nname = \"x\"\nbogus = 1\n[[step]]\nid = \"d\"\nkind = \"split\"\n")
        .unwrap_err();
    let r = e.0[0].render();
    assert!(r.contains("wf.toml:3:1"), "{r}");
    assert!(r.contains("3 | bogus = 1"), "{r}");
    assert!(r.contains("  | ^^^^^"), "{r}");
}

#[test]
fn register_takes_a_trained_model_or_a_process_steps_artifacts() {
    let e = parse("version = 1\nname = \"x\"\n[[step]]\nid = \"r\"\nkind = \"register\"\n")
        .unwrap_err();
    assert!(
        e.0[0]
            .message
            .contains("needs a trained model (a trainer step, or a process step's artifacts)"),
        "{e}"
    );
    let wf = parse(
        "version = 1\nname = \"x\"\n[[step]]\nid = \"ft\"\nkind = \"process\"\ncommand = [\"true\"]\n[[step]]\nid = \"r\"\nkind = \"register\"\nneeds = [\"ft\"]\n",
    )
    .unwrap();
    assert_eq!(
        wf.nearest_of("r", &[Produces::Model, Produces::Artifact])
            .map(|s| s.id.as_str()),
        Some("ft")
    );
    // Evaluating needs a model Coach trained.
    let e = parse(
        "version = 1\nname = \"x\"\n[[step]]\nid = \"ft\"\nkind = \"process\"\ncommand = [\"true\"]\n[[step]]\nid = \"ev\"\nkind = \"evaluate\"\nneeds = [\"ft\"]\n",
    )
    .unwrap_err();
    assert!(
        e.0[0]
            .message
            .contains("needs a trained model (a trainer step)"),
        "{e}"
    );
}
