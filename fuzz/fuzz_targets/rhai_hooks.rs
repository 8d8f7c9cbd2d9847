//! Rhai hooks with hostile scripts and hostile inputs: a gate's verdict, a
//! data rule over examples, a parameter rule, a trigger's `when`.
//!
//! The input is `<hook byte><script>\0<inputs as JSON>`: the JSON object's
//! fields become the hook's variables (models as `Model` views), and for a
//! data rule its `examples` are the examples. Every outcome must be a value
//! or a located script error; the engine's limits (operations, depth, sizes,
//! 2 s of wall time) must hold whatever the script does.
#![no_main]

use coach::core::example::{Example, Split};
use coach::script::{Hook, Origin, compile, hooks};
use serde_json::Value;
use std::path::PathBuf;

const HOOKS: [Hook; 4] = [Hook::Verdict, Hook::Rules, Hook::Params, Hook::Trigger];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let hook = HOOKS[usize::from(which) % HOOKS.len()];
    let (script, inputs) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(source) = std::str::from_utf8(script) else {
        return;
    };
    let inputs: Value = serde_json::from_slice(inputs).unwrap_or(Value::Null);
    let origin = Origin::File(PathBuf::from("workflows/fuzz.rhai"));
    let Ok(script) = compile(origin, hook, source) else {
        return;
    };
    let vars: Vec<(&str, &Value)> = hook
        .variables()
        .iter()
        .filter_map(|&name| inputs.get(name).map(|v| (name, v)))
        .collect();
    match hook {
        Hook::Verdict | Hook::Trigger => {
            let _ = hooks::verdict(&script, "fuzz", &vars);
        }
        Hook::Params => {
            let _ = hooks::params(&script, "fuzz", &vars);
        }
        Hook::Rules => {
            let examples = examples(&inputs);
            if let Ok((kept, stats)) = hooks::apply_rules(&script, "fuzz", examples.clone()) {
                assert_eq!(stats.kept + stats.dropped, examples.len());
                assert_eq!(kept.len(), stats.kept);
            }
        }
    }
});

/// The examples a data rule sees: the input's `examples` (`[[text,
/// intent], …]`), else three ordinary ones.
fn examples(inputs: &Value) -> Vec<Example> {
    let given: Option<Vec<(String, String)>> = inputs
        .get("examples")
        .and_then(|e| serde_json::from_value(e.clone()).ok());
    let pairs = given.unwrap_or_else(|| {
        [("book a table", "book"), ("hi there", "greet"), ("", "oos")]
            .iter()
            .map(|(t, i)| ((*t).to_owned(), (*i).to_owned()))
            .collect()
    });
    pairs
        .into_iter()
        .map(|(text, intent)| Example {
            text,
            intent,
            entities: Vec::new(),
            split: Split::Train,
        })
        .collect()
}
