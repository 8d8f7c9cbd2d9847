//! `analyzer-quality`: how well a conversation went, from what was said in
//! it (and, where the bot's platform sent them, the model's predictions and
//! the users' feedback). See [`score`] for the aspects and how each is
//! computed; this file is the plugin around it.

pub mod score;

use coach_plugin_sdk::analysis::{
    Aspect, Dialogue, DialogueAnalysis, Evidence, Finding, Turn as WitTurn,
};
use coach_plugin_sdk::{Analyzer, PluginError, host};
use score::{Context, Outcome, Role, Turn};

pub struct Quality;

fn turn(t: &WitTurn) -> Turn {
    let role = match t.role.as_str() {
        "user" => Role::User,
        "bot" => Role::Bot,
        _ => Role::System,
    };
    let mut out = Turn::new(role, &t.text);
    out.intent = t.intent.clone();
    out.confidence = t.confidence.map(f64::from);
    out.margin = match t.ranking.as_slice() {
        [a, b, ..] => Some(f64::from(a.confidence - b.confidence)),
        _ => None,
    };
    out.fallback = t.fallback;
    out.escalation = t.escalation;
    out.rating = t.rating;
    out.correction = t.correction.clone();
    out
}

/// A dialogue in the scorer's terms.
pub fn dialogue(d: &Dialogue) -> score::Dialogue {
    score::Dialogue {
        turns: d.turns.iter().map(turn).collect(),
        outcome: match d.outcome.as_deref() {
            Some("resolved") => Some(Outcome::Resolved),
            Some("escalated") => Some(Outcome::Escalated),
            Some("abandoned") => Some(Outcome::Abandoned),
            _ => None,
        },
        ratings: d.ratings.clone(),
    }
}

/// What a person should look at, from the evidence: fallbacks, rephrased
/// requests, requests for a person, failures not made good.
fn findings(d: &Dialogue, a: &score::Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, t) in d.turns.iter().enumerate() {
        if t.fallback {
            out.push(Finding {
                kind: "fallback".into(),
                turn: Some(i as u32),
                message: format!("the bot could not place \"{}\"", t.text),
            });
        }
    }
    for aspect in &a.aspects {
        for e in &aspect.evidence {
            let kind = if e.reason.starts_with("the user repeated") {
                "rephrase"
            } else if e.reason.starts_with("asked for a person") {
                "escalation_request"
            } else if e.reason.starts_with("the task failed") {
                "task_failed"
            } else if e.reason.starts_with("the user corrected") {
                "correction"
            } else if e.reason.starts_with("the bot gave the same answer") {
                "loop"
            } else {
                continue;
            };
            out.push(Finding {
                kind: kind.into(),
                turn: e.turns.last().copied(),
                message: e.reason.clone(),
            });
        }
    }
    out
}

impl Analyzer for Quality {
    fn analyze(
        config: &str,
        dialogues: Vec<Dialogue>,
    ) -> Result<Vec<DialogueAnalysis>, PluginError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Config {}
        let _: Config = coach_plugin_sdk::parse_config(config)?;
        let scored: Vec<score::Dialogue> = dialogues.iter().map(dialogue).collect();
        let cx = Context::of(&scored);
        let mut out = Vec::with_capacity(dialogues.len());
        for (i, (d, s)) in dialogues.iter().zip(&scored).enumerate() {
            if i % 256 == 0 && host::cancelled() {
                return Err(PluginError::cancelled());
            }
            let a = score::analyze(s, &cx);
            out.push(DialogueAnalysis {
                id: d.id.clone(),
                score: a.score as f32,
                findings: findings(d, &a),
                aspects: a
                    .aspects
                    .iter()
                    .map(|x| Aspect {
                        name: x.name.into(),
                        score: x.score as f32,
                        confidence: x.confidence as f32,
                        evidence: x
                            .evidence
                            .iter()
                            .map(|e| Evidence {
                                turns: e.turns.clone(),
                                reason: e.reason.clone(),
                                points: e.points as f32,
                            })
                            .collect(),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}

coach_plugin_sdk::export_analyzer!(Quality);

#[cfg(test)]
mod tests {
    use super::*;
    use coach_plugin_sdk::testing;

    #[test]
    fn the_plugin_answers_each_dialogue_in_order_with_findings() {
        testing::reset();
        let dialogues = vec![
            testing::dialogue(
                "good",
                &[
                    ("user", "book a table for two at Andes Cafe"),
                    ("bot", "Your table for 2 is booked."),
                    ("user", "thanks!"),
                ],
            ),
            testing::dialogue(
                "bad",
                &[
                    ("user", "book a table for two at Andes Cafe"),
                    ("bot", "Sorry, I could not book it."),
                    ("user", "I said book a table for two at Andes Cafe"),
                    ("bot", "Sorry, I could not book it."),
                ],
            ),
        ];
        let out = Quality::analyze("{}", dialogues).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].id.as_str(), out[1].id.as_str()), ("good", "bad"));
        assert!(out[0].score > out[1].score);
        let kinds: Vec<&str> = out[1].findings.iter().map(|f| f.kind.as_str()).collect();
        assert!(
            kinds.contains(&"rephrase") && kinds.contains(&"task_failed"),
            "{kinds:?}"
        );
    }

    #[test]
    fn unknown_parameters_and_a_cancel_are_refused() {
        testing::reset();
        let e = Quality::analyze(r#"{"mode": "strict"}"#, Vec::new()).unwrap_err();
        assert_eq!(e.code, "bad-config");
        testing::set_cancelled(true);
        let e =
            Quality::analyze("{}", vec![testing::dialogue("x", &[("user", "hi")])]).unwrap_err();
        assert_eq!(e.code, "cancelled");
        testing::reset();
    }
}
