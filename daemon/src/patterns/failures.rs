//! Failure points: the bot turns after which users most often rephrase,
//! ask for a person, or leave. Bot turns are grouped by their text with
//! digits folded (`bot_key`), so "order 123 ships today" and "order 456
//! ships today" are one point.
//!
//! Only the last bot turn before the user speaks again (or before the end)
//! is judged: in "Sorry, I didn't get that." + "Could you rephrase?" the
//! user answers the second. System turns are skipped.

use super::text;
use super::{Corpus, MessageRef, Settings};
use crate::core::conversation::{Conversation, Outcome, Role, Turn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Words of a user asking for a person.
const PERSON: &[&str] = &[
    "agent",
    "human",
    "manager",
    "operator",
    "person",
    "representative",
    "someone",
    "supervisor",
];
/// Words of a user closing a conversation satisfied.
const THANKS: &[&str] = &[
    "bye", "cheers", "goodbye", "great", "perfect", "thank", "thanks", "thx", "ty",
];
/// Conversation ids kept per failure point.
const EXAMPLES: usize = 5;

/// A bot turn after which users often rephrase, escalate or leave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailurePoint {
    /// The bot's text as grouped: lowercase, digits as `#`, whitespace
    /// collapsed, at most 120 characters.
    pub key: String,
    /// One verbatim instance of it.
    pub text: String,
    /// Times the bot said it (as the last turn before the user's).
    pub occurrences: usize,
    /// Times the user's next message said the same as their previous one.
    pub rephrased: usize,
    /// Times the user then asked for a person, or the conversation ended
    /// escalated.
    pub escalated: usize,
    /// Times the conversation ended there, unresolved and without thanks.
    pub left: usize,
    /// Times any of the three followed.
    pub failed: usize,
    /// `failed / occurrences`.
    pub failure_rate: f64,
    /// `rephrased / occurrences`.
    pub rephrase_rate: f64,
    /// `escalated / occurrences`.
    pub escalation_rate: f64,
    /// `left / occurrences`.
    pub leave_rate: f64,
    /// Conversations where it failed.
    pub conversations: usize,
    /// Up to five of those conversations' ids.
    pub examples: Vec<String>,
    /// What users said next (or last, when they left), at most
    /// `max_examples`.
    pub messages: Vec<MessageRef>,
}

#[derive(Default)]
struct Tally<'a> {
    text: &'a str,
    occurrences: usize,
    rephrased: usize,
    escalated: usize,
    left: usize,
    failed: usize,
    conversations: HashSet<usize>,
    examples: Vec<String>,
    messages: Vec<MessageRef>,
}

/// Failure points with at least `min_support` occurrences, worst first
/// (failures × failure rate: frequent and reliable).
pub(super) fn find(corpus: &Corpus, s: &Settings) -> Vec<FailurePoint> {
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    for (ci, c) in corpus.conversations.iter().enumerate() {
        let turns: Vec<(usize, &Turn)> = c
            .turns
            .iter()
            .enumerate()
            .filter(|(_, t)| t.role != Role::System)
            .collect();
        let sets: Vec<Vec<String>> = turns
            .iter()
            .map(|(_, t)| match t.role {
                Role::User => text::word_set(&t.text),
                _ => Vec::new(),
            })
            .collect();
        for (k, &(_, bot)) in turns.iter().enumerate() {
            let next = turns.get(k + 1);
            if bot.role != Role::Bot || next.is_some_and(|(_, n)| n.role == Role::Bot) {
                continue;
            }
            let key = text::bot_key(&bot.text);
            if key.is_empty() {
                continue;
            }
            let before = (0..k).rev().find(|&j| turns[j].1.role == Role::User);
            let t = tally.entry(key).or_default();
            if t.occurrences == 0 {
                t.text = &bot.text;
            }
            t.occurrences += 1;
            let (rephrased, escalated, left, said) = match next {
                Some(&(j, user)) => {
                    let rephrased = before.is_some_and(|b| {
                        text::jaccard(&sets[b], &sets[k + 1]) >= s.rephrase_similarity
                    });
                    (rephrased, asks_for_person(user), false, Some((j, user)))
                }
                None => {
                    let escalated = c.outcome == Some(Outcome::Escalated);
                    let last = before.map(|b| turns[b]);
                    let closed = c.outcome == Some(Outcome::Resolved)
                        || last.is_some_and(|(_, u)| says_thanks(&u.text))
                        || says_goodbye(&bot.text);
                    (false, escalated, !escalated && !closed, last)
                }
            };
            t.rephrased += usize::from(rephrased);
            t.escalated += usize::from(escalated);
            t.left += usize::from(left);
            if rephrased || escalated || left {
                t.failed += 1;
                record(t, ci, c, said, s);
            }
        }
    }
    let rate = |n: usize, of: usize| n as f64 / of as f64;
    let mut out: Vec<FailurePoint> = tally
        .into_iter()
        .filter(|(_, t)| t.occurrences >= s.min_support && t.failed > 0)
        .map(|(key, t)| FailurePoint {
            key,
            text: t.text.to_owned(),
            occurrences: t.occurrences,
            rephrased: t.rephrased,
            escalated: t.escalated,
            left: t.left,
            failed: t.failed,
            failure_rate: rate(t.failed, t.occurrences),
            rephrase_rate: rate(t.rephrased, t.occurrences),
            escalation_rate: rate(t.escalated, t.occurrences),
            leave_rate: rate(t.left, t.occurrences),
            conversations: t.conversations.len(),
            examples: t.examples,
            messages: t.messages,
        })
        .collect();
    let badness = |f: &FailurePoint| f.failed as f64 * f.failure_rate;
    out.sort_by(|a, b| {
        badness(b)
            .total_cmp(&badness(a))
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

fn record(t: &mut Tally, ci: usize, c: &Conversation, said: Option<(usize, &Turn)>, s: &Settings) {
    if t.conversations.insert(ci) && t.examples.len() < EXAMPLES {
        t.examples.push(c.id.clone());
    }
    if let Some((turn, u)) = said
        && t.messages.len() < s.max_examples
    {
        t.messages.push(MessageRef {
            conversation: c.id.clone(),
            turn,
            text: u.text.clone(),
        });
    }
}

fn asks_for_person(user: &Turn) -> bool {
    user.escalation
        || user.feedback.iter().any(|f| f.escalation)
        || text::words(&user.text)
            .iter()
            .any(|w| PERSON.contains(&w.as_str()))
}

fn says_thanks(user: &str) -> bool {
    text::words(user)
        .iter()
        .any(|w| THANKS.contains(&w.as_str()))
}

fn says_goodbye(bot: &str) -> bool {
    let words = format!(" {} ", text::words(bot).join(" "));
    [
        " bye ",
        " goodbye ",
        " anything else ",
        " nice day ",
        " great day ",
        " good day ",
    ]
    .iter()
    .any(|cue| words.contains(cue))
}
