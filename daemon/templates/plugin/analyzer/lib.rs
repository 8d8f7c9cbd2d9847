//! {{id}}: a Coach conversation analyzer.
//!
//! Scores each conversation 0–100 by how often the bot did not understand
//! (fallback turns) and says which turns cost the points. Replace the rule
//! with yours; keep one analysis per dialogue, in order, with its id.

use coach_plugin_sdk::analysis::{Aspect, Dialogue, DialogueAnalysis, Evidence, Finding};
use coach_plugin_sdk::{Analyzer, PluginError, export_analyzer};

/// The step's parameters: a workflow's `with = { … }`, or
/// `coach plugin run --with KEY=VALUE`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_points")]
    points_per_fallback: f32,
}

fn default_points() -> f32 {
    25.0
}

pub struct Fallbacks;

impl Analyzer for Fallbacks {
    fn analyze(config: &str, dialogues: Vec<Dialogue>) -> Result<Vec<DialogueAnalysis>, PluginError> {
        let config: Config = coach_plugin_sdk::parse_config(config)?;
        if !(0.0..=100.0).contains(&config.points_per_fallback) {
            return Err(PluginError::bad_config("points_per_fallback must be within 0..100"));
        }
        Ok(dialogues.into_iter().map(|d| analyze_one(&config, d)).collect())
    }
}

fn analyze_one(config: &Config, d: Dialogue) -> DialogueAnalysis {
    let fallbacks: Vec<u32> = d
        .turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.fallback)
        .map(|(i, _)| i as u32)
        .collect();
    let lost = (fallbacks.len() as f32 * config.points_per_fallback).min(100.0);
    let evidence = fallbacks
        .iter()
        .map(|&t| Evidence {
            turns: vec![t],
            reason: "the bot did not understand".into(),
            points: config.points_per_fallback.min(100.0),
        })
        .collect();
    let findings = fallbacks
        .iter()
        .map(|&t| Finding {
            kind: "fallback".into(),
            turn: Some(t),
            message: format!("fallback on: {}", d.turns[t as usize].text),
        })
        .collect();
    let user_turns = d.turns.iter().filter(|t| t.role == "user").count();
    DialogueAnalysis {
        id: d.id,
        score: 100.0 - lost,
        aspects: vec![Aspect {
            name: "understanding".into(),
            score: 100.0 - lost,
            // A conversation without user turns says nothing.
            confidence: if user_turns == 0 { 0.0 } else { 1.0 },
            evidence,
        }],
        findings,
    }
}

export_analyzer!(Fallbacks);

/// Native tests of the logic; `tests/sandbox.rs` runs the component in
/// Coach's sandbox.
#[cfg(test)]
mod tests {
    use super::*;
    use coach_plugin_sdk::analysis::Turn;

    fn turn(role: &str, text: &str, fallback: bool) -> Turn {
        Turn {
            role: role.into(),
            text: text.into(),
            intent: None,
            confidence: None,
            ranking: vec![],
            fallback,
            escalation: false,
            timestamp_ms: None,
            rating: None,
            correction: None,
        }
    }

    #[test]
    fn each_fallback_costs_points_and_is_named() {
        let d = Dialogue {
            id: "c-1".into(),
            turns: vec![turn("user", "flibber", false), turn("bot", "Sorry?", true)],
            outcome: None,
            ratings: vec![],
        };
        let a = Fallbacks::analyze("{}", vec![d]).unwrap();
        assert_eq!(a[0].id, "c-1");
        assert_eq!(a[0].score, 75.0);
        assert_eq!(a[0].findings[0].turn, Some(1));
    }
}
