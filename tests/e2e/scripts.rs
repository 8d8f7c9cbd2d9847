//! Rhai scripts in real workflows: located errors from `coach validate`,
//! hostile scripts failing their step by name, data and parameter rules.

use crate::common::{Home, workspace};

/// The quickstart's data with a gate (or other) step whose script is
/// `gate`, written to `scripts/gate.rhai`.
fn gated(home: &Home, gate: &str) -> std::path::PathBuf {
    home.write("wf/scripts/gate.rhai", gate);
    let nlu = workspace().join("workflows/data/wedding/nlu.yml");
    let shipped = workspace().join("workflows/scripts");
    home.write(
        "wf/gated.toml",
        &format!(
            r#"version = 1
name = "gated"

[[step]]
id = "data"
uses = "source-files"
with = {{ format = "rasa", path = "{nlu}" }}

[[step]]
id = "clean"
kind = "rules"
needs = ["data"]
with = {{ script = "{redact}" }}

[[step]]
id = "split"
kind = "split"
needs = ["clean"]
with = {{ mode = "stratified", validation = 0.15, test = 0.2, seed = 7 }}

[[step]]
id = "train"
uses = "trainer-intent"
needs = ["split"]
with = {{ seed = 7 }}
params = "{epochs}"

[[step]]
id = "evaluate"
kind = "evaluate"
needs = ["train"]

[[step]]
id = "gate"
kind = "gate"
needs = ["evaluate"]
when = "scripts/gate.rhai"

[[step]]
id = "register"
kind = "register"
needs = ["gate"]
when = "dataset.examples >= 100"
"#,
            nlu = nlu.display(),
            redact = shipped.join("redact.rhai").display(),
            epochs = shipped.join("epochs_from_size.rhai").display(),
        ),
    )
}

#[test]
fn validate_reports_a_script_syntax_error_with_line_and_column() {
    let home = Home::new("");
    let wf = gated(
        &home,
        "let gain = candidate.metrics.accuracy -;\ngain > 0\n",
    );
    let run = home.coach(&["validate", wf.to_str().unwrap()]);
    run.expect_failure_with("scripts/gate.rhai:1:");
    assert!(run.all().contains("syntax error"), "{}", run.all());
    assert!(
        run.all()
            .contains("let gain = candidate.metrics.accuracy -;"),
        "the line is shown: {}",
        run.all()
    );

    // A misspelt variable, and an inline expression: located in the workflow.
    let wf = gated(&home, "candidat.metrics.accuracy > 0.5");
    let text = std::fs::read_to_string(&wf)
        .unwrap()
        .replace("dataset.examples >= 100", "dataset.examples >=");
    std::fs::write(&wf, text).unwrap();
    let line = text_line(&wf, "dataset.examples >=");
    let run = home.coach(&["validate", wf.to_str().unwrap()]);
    run.expect_failure_with("scripts/gate.rhai:1:1: syntax error: Undefined variable: candidat");
    assert!(
        run.all().contains(&format!("gated.toml:{line}:")),
        "{}",
        run.all()
    );
}

#[test]
fn a_gate_rules_and_params_run_and_the_verdict_is_shown() {
    let home = Home::new("");
    let wf = gated(
        &home,
        "#{ pass: candidate.metrics.accuracy > 0.5, reason: `accuracy ${candidate.metrics.accuracy}` }",
    );
    let run = home.coach(&["run", wf.to_str().unwrap()]);
    let out = run.expect_ok().stdout();
    assert!(
        out.contains("gate `gate`: PASS — accuracy 0."),
        "{}",
        run.all()
    );
    assert!(run.all().contains("[clean] done: kept"), "{}", run.all());
    assert!(
        run.all().contains("parameters from") && run.all().contains("\"epochs\":30"),
        "{}",
        run.all()
    );
    assert!(out.contains("registered model 1"), "{}", run.all());
}

/// The 1-based line of `wf` holding `needle`.
fn text_line(wf: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(wf)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap()
        + 1
}

fn expect_step_failure(gate: &str, needles: &[&str]) {
    let home = Home::new("");
    let wf = gated(&home, gate);
    let run = home.coach(&["run", wf.to_str().unwrap()]);
    run.expect_failure_with("step `gate`:");
    for n in needles {
        assert!(run.all().contains(n), "expected `{n}` in:\n{}", run.all());
    }
    // Nothing was registered, and the store still works.
    let models = home.coach(&["models", "list", "--json"]);
    assert_eq!(models.expect_ok().stdout().trim(), "[]");
}

#[test]
fn an_endless_loop_fails_its_step_with_the_limit() {
    // Whichever limit comes first: operations, or wall time in a slow
    // (debug) build.
    let home = Home::new("");
    let wf = gated(&home, "let n = 0;\nloop { n += 1; }");
    let run = home.coach(&["run", wf.to_str().unwrap()]);
    run.expect_failure_with("scripts/gate.rhai:2:");
    assert!(
        run.all().contains("limit of 10000000 operations")
            || run.all().contains("2 s wall-time limit"),
        "{}",
        run.all()
    );
}

#[test]
fn deep_recursion_fails_its_step_with_the_limit() {
    expect_step_failure(
        "fn f(n) { f(n + 1) }\nf(0)",
        &["scripts/gate.rhai:", "call depth limit of 64"],
    );
}

#[test]
fn a_string_bomb_fails_its_step_with_the_limit() {
    expect_step_failure(
        "let s = \"x\";\nloop { s += s; }",
        &["scripts/gate.rhai:2:", "exceeds its limit"],
    );
}

#[test]
fn a_wrong_return_type_fails_its_step() {
    expect_step_failure(
        "42",
        &["scripts/gate.rhai", "must return true/false", "i64"],
    );
}

#[test]
fn a_missing_field_fails_its_step_with_its_position() {
    expect_step_failure(
        "\ncandidate.metrics.no_such_metric > 0.5",
        &["scripts/gate.rhai:2:", "no_such_metric"],
    );
}
