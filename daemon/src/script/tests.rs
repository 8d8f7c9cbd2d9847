//! Hostile and mistaken scripts: each fails with a located, named error.

use super::hooks::{Verdict, apply_rules, params, verdict};
use super::*;
use serde_json::{Value, json};

fn script(src: &str) -> Arc<Script> {
    script_for(Hook::Verdict, src)
}

fn script_for(hook: Hook, src: &str) -> Arc<Script> {
    compile(Origin::File(PathBuf::from("scripts/t.rhai")), hook, src).unwrap()
}

fn run_err(src: &str) -> ScriptError {
    verdict(&script(src), "1", &[]).unwrap_err()
}

#[test]
fn a_gate_returns_a_verdict_with_a_reason() {
    let s = script(
        "let gain = candidate.metrics.acc - production.metrics.acc;\n#{ pass: gain >= 0.005, reason: `gain ${gain}` }",
    );
    let (c, p) = (
        json!({"metrics": {"acc": 0.93}}),
        json!({"metrics": {"acc": 0.92}}),
    );
    let v = verdict(&s, "1", &[("candidate", &c), ("production", &p)]).unwrap();
    assert!(v.pass);
    assert!(v.reason.unwrap().starts_with("gain 0.0"));
    assert_eq!(
        verdict(&script("1 > 2"), "1", &[]).unwrap(),
        Verdict {
            pass: false,
            reason: None
        }
    );
}

#[test]
fn a_syntax_error_is_located() {
    let e = compile(
        Origin::File(PathBuf::from("scripts/bad.rhai")),
        Hook::Verdict,
        "let x = 1;\nlet y = ;\n",
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("scripts/bad.rhai:2:"), "{e}");
    assert!(e.message.contains("syntax error"), "{e}");
}

#[test]
fn an_inline_expression_is_located_in_its_workflow() {
    let origin = Origin::Inline {
        file: PathBuf::from("wf.toml"),
        line: 12,
        column: 9,
    };
    let e = compile(origin, Hook::Verdict, "candidate.x >").unwrap_err();
    assert!(e.to_string().starts_with("wf.toml:12:"), "{e}");
}

#[test]
fn an_endless_loop_hits_the_operations_limit() {
    let e = run_err("let x = 0;\nloop { x += 1; }");
    // Whichever comes first: a debug build is slower per operation.
    assert!(
        e.message.contains("operations") || e.message.contains("wall-time"),
        "{e}"
    );
    assert!(e.to_string().starts_with("scripts/t.rhai:2:"), "{e}");
}

#[test]
fn deep_recursion_hits_the_call_depth_limit() {
    let e = run_err("fn down(n) { down(n + 1) }\ndown(0)");
    assert!(e.message.contains("call depth"), "{e}");
}

#[test]
fn a_string_bomb_hits_the_size_limit() {
    let e = run_err("let s = \"boom\";\nloop { s += s; }");
    assert!(e.message.contains("exceeds its limit"), "{e}");
    assert!(e.to_string().starts_with("scripts/t.rhai:2:"), "{e}");
}

#[test]
fn the_wrong_return_type_is_named() {
    let e = run_err("\"yes\"");
    assert!(
        e.message.contains("must return true/false") && e.message.contains("string"),
        "{e}"
    );
    let e = params(&script_for(Hook::Params, "42"), "1", &[]).unwrap_err();
    assert!(e.message.contains("must return a map"), "{e}");
}

#[test]
fn a_missing_field_is_a_located_runtime_error() {
    let c = json!({"metrics": {}});
    let e = verdict(
        &script("\ncandidate.metrics.accuracy > 0.9"),
        "1",
        &[("candidate", &c)],
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("scripts/t.rhai:2:"), "{e}");
    assert!(e.message.contains("accuracy"), "{e}");
}

#[test]
fn no_eval_no_files_no_modules() {
    assert!(compile(Origin::File("a.rhai".into()), Hook::Verdict, "eval(\"1\")").is_err());
    assert!(
        compile(
            Origin::File("b.rhai".into()),
            Hook::Verdict,
            "import \"x\" as y;"
        )
        .is_err()
    );
    let e = compile(
        Origin::File("c.rhai".into()),
        Hook::Verdict,
        "candidat.metrics",
    )
    .unwrap_err();
    assert!(
        e.message.contains("candidat"),
        "a misspelt variable fails at compile time: {e}"
    );
    let e = run_err("open_file(\"/etc/passwd\")");
    assert!(e.message.contains("open_file"), "{e}");
}

#[test]
fn data_rules_filter_and_map() {
    let s = script_for(
        Hook::Rules,
        "fn filter(e) { word_count(e.text) >= 2 }\nfn map(e) { e.text = redact(e.text, \"[0-9]+\", \"#\"); e }",
    );
    let ex = |t: &str| crate::core::example::Example {
        text: t.into(),
        intent: "i".into(),
        entities: Vec::new(),
        split: crate::core::example::Split::Train,
    };
    let (out, stats) = apply_rules(
        &s,
        "1",
        vec![ex("hi"), ex("call 555 1234"), ex("two words")],
    )
    .unwrap();
    assert_eq!(
        out.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        ["call # #", "two words"]
    );
    assert_eq!((stats.kept, stats.dropped, stats.changed), (2, 1, 1));
    let bad = script_for(Hook::Rules, "fn map(e) { e.split = \"later\"; e }");
    let e = apply_rules(&bad, "1", vec![ex("a b")]).unwrap_err();
    assert!(e.message.contains("`split` is `later`"), "{e}");
}

#[test]
fn parameter_rules_return_plain_maps() {
    let d = json!({"examples": 25000});
    let s = script_for(
        Hook::Params,
        "#{ epochs: if dataset.examples > 10000 { 10 } else { 30 } }",
    );
    assert_eq!(params(&s, "1", &[("dataset", &d)]).unwrap()["epochs"], 10);
}

#[test]
fn statistics_helpers() {
    let v = verdict(
        &script("mean([1, 2, 3]) == 2.0 && median([3, 1, 2]) == 2.0 && percentile([1, 2, 3, 4, 5], 50) == 3.0 && sum([1, 2.5]) == 3.5"),
        "1",
        &[],
    )
    .unwrap();
    assert!(v.pass);
    let e = run_err("mean([])");
    assert!(e.message.contains("empty"), "{e}");
}

#[test]
fn every_registered_function_is_documented() {
    let doc = include_str!("../../../docs/scripting.md");
    let mut missing = Vec::new();
    for sig in engine().gen_fn_signatures(false) {
        let name = sig.split('(').next().unwrap_or_default().trim().to_owned();
        let documented = if let Some(property) = name.strip_prefix("get$") {
            doc.contains(&format!("`.{property}`"))
        } else if name.starts_with("index$") {
            doc.contains("`per_intent[intent]`")
        } else {
            doc.contains(&format!("`{name}("))
        };
        if !documented {
            missing.push(sig);
        }
    }
    assert!(missing.is_empty(), "not in docs/scripting.md: {missing:?}");
}

#[test]
fn inputs_are_not_folded_in_at_compile_time() {
    let p = json!({"version": 1});
    let s = script("production != () && production.version == 1");
    assert!(verdict(&s, "1", &[("production", &p)]).unwrap().pass);
    let n = serde_json::Value::Null;
    assert!(!verdict(&s, "1", &[("production", &n)]).unwrap().pass);
}

#[test]
fn a_gate_reads_lineage() {
    let s = script(
        "if candidate.lineage.data_hash == production.lineage.data_hash { #{ pass: false, reason: `same data as run ${production.lineage.run}` } } else { true }",
    );
    let m = |hash: &str, run: i64| json!({"lineage": {"run": run, "data_hash": hash, "base_model": null}});
    let (c, p) = (m("abc", 9), m("abc", 4));
    let v = verdict(&s, "1", &[("candidate", &c), ("production", &p)]).unwrap();
    assert_eq!(
        (v.pass, v.reason.as_deref()),
        (false, Some("same data as run 4"))
    );
    let c = m("def", 9);
    assert!(
        verdict(&s, "1", &[("candidate", &c), ("production", &p)])
            .unwrap()
            .pass
    );
}

#[test]
fn the_shipped_examples_compile_and_answer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/scripts");
    let gate = compile_file(&dir.join("beats_production.rhai"), Hook::Verdict).unwrap();
    let model = |acc: f64, f1: f64| json!({"version": 1, "metrics": {"in_scope_accuracy": acc}, "per_intent": {"a": {"f1": f1}}});
    let (c, p) = (model(0.95, 0.9), model(0.93, 0.9));
    assert!(
        verdict(&gate, "1", &[("candidate", &c), ("production", &p)])
            .unwrap()
            .pass
    );
    let (c, p) = (model(0.95, 0.8), model(0.93, 0.9));
    let v = verdict(&gate, "1", &[("candidate", &c), ("production", &p)]).unwrap();
    assert_eq!(
        v.reason.as_deref(),
        Some("F1 of a drops from 90.0% to 80.0%")
    );
    compile_file(&dir.join("redact.rhai"), Hook::Rules).unwrap();
    compile_file(&dir.join("epochs_from_size.rhai"), Hook::Params).unwrap();
    let retrain = compile_file(&dir.join("should_retrain.rhai"), Hook::Trigger).unwrap();
    let quiet = json!({"user_messages": 10, "fallback_rate": 0.5});
    let no_feedback = json!({"corrections": 0});
    let young = json!({"age_hours": 2.0});
    let ask = |data: Value, conv: &Value, fb: &Value, model: &Value| {
        verdict(
            &retrain,
            "1",
            &[
                ("data", &data),
                ("conversations", conv),
                ("feedback", fb),
                ("model", model),
            ],
        )
        .unwrap()
    };
    let v = ask(json!({"new_examples": 60}), &quiet, &no_feedback, &young);
    assert_eq!(v.reason.as_deref(), Some("60 new labelled examples"));
    let v = ask(
        json!({"new_examples": 20}),
        &quiet,
        &json!({"corrections": 30}),
        &young,
    );
    assert_eq!(v.reason.as_deref(), Some("50 new labelled examples"));
    // A high fallback rate over too few messages is not enough.
    let v = ask(json!({"new_examples": 1}), &quiet, &no_feedback, &young);
    assert!(!v.pass, "{v:?}");
    let busy = json!({"user_messages": 400, "fallback_rate": 0.2125});
    let v = ask(json!({"new_examples": 1}), &busy, &no_feedback, &young);
    assert_eq!(
        v.reason.as_deref(),
        Some("fallback rate 21.3% over 400 messages")
    );
    let v = ask(
        json!({"new_examples": 1}),
        &quiet,
        &no_feedback,
        &json!({"age_hours": 200.0}),
    );
    assert_eq!(v.reason.as_deref(), Some("the model is 8.0 days old"));
}
