//! How a conversation is scored: five aspects, each starting at 100 and
//! losing points only for reasons a person can read (the turns and why),
//! with a confidence that says how much evidence the aspect had; the
//! overall score is their confidence-weighted mean.
//!
//! Every signal is principled and general — what a user does when the bot
//! fails them (repeats or rephrases, corrects, complains, asks for a
//! person, leaves), what the bot says when it fails (apologies, "could not",
//! fallbacks), and what closes a conversation well (thanks, a completed
//! task) — not words fitted to any one corpus.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Bot,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Resolved,
    Escalated,
    Abandoned,
}

/// One turn as the analyzer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    /// Top-1 minus top-2 confidence, when the ranking had two.
    pub margin: Option<f64>,
    pub fallback: bool,
    pub escalation: bool,
    /// User feedback on this turn.
    pub rating: Option<i32>,
    pub correction: Option<String>,
}

impl Turn {
    pub fn new(role: Role, text: &str) -> Turn {
        Turn {
            role,
            text: text.to_owned(),
            intent: None,
            confidence: None,
            margin: None,
            fallback: false,
            escalation: false,
            rating: None,
            correction: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dialogue {
    pub turns: Vec<Turn>,
    pub outcome: Option<Outcome>,
    /// Ratings of the conversation as a whole.
    pub ratings: Vec<i32>,
}

/// Points lost, where and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub turns: Vec<u32>,
    pub reason: String,
    pub points: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aspect {
    pub name: &'static str,
    /// 0–100.
    pub score: f64,
    /// 0–1: how much the aspect had to go on.
    pub confidence: f64,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// 0–100.
    pub score: f64,
    pub aspects: Vec<Aspect>,
}

impl Analysis {
    pub fn aspect(&self, name: &str) -> Option<&Aspect> {
        self.aspects.iter().find(|a| a.name == name)
    }
}

/// What a set of conversations is like, so one can be judged against its
/// peers (its length against the usual).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// The median number of user turns.
    pub usual_user_turns: f64,
}

impl Context {
    pub fn of(dialogues: &[Dialogue]) -> Context {
        let mut n: Vec<usize> = dialogues
            .iter()
            .map(|d| d.turns.iter().filter(|t| t.role == Role::User).count())
            .collect();
        n.sort_unstable();
        let usual = if n.is_empty() {
            4.0
        } else {
            n[n.len() / 2] as f64
        };
        Context {
            usual_user_turns: usual.max(1.0),
        }
    }
}

// ---- words ---------------------------------------------------------------

/// Lower-case words of `text` (letters, digits and apostrophes).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Words that carry no content, left out when comparing turns.
const STOP: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "you", "your", "we", "us", "it", "is", "are", "was", "be",
    "to", "of", "in", "on", "at", "for", "and", "or", "but", "so", "that", "this", "do", "does",
    "can", "could", "would", "will", "please", "want", "like", "need", "just", "with", "what",
    "how", "there", "some", "any", "am", "i'm", "it's", "have", "has", "get", "about",
    // Acknowledgements: said again and again in any conversation.
    "yes", "yeah", "yep", "no", "ok", "okay", "sure", "fine", "good", "great", "right", "correct",
    "that's", "sounds", "works", "well", "thanks", "thank", "all",
];

fn content(text: &str) -> BTreeSet<String> {
    words(text)
        .into_iter()
        .filter(|w| w.len() > 1 && !STOP.contains(&w.as_str()))
        .collect()
}

fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let both = a.intersection(b).count() as f64;
    let either = a.union(b).count() as f64;
    if either == 0.0 { 0.0 } else { both / either }
}

/// A user closing well: thanks, praise, "that's all".
const GRATITUDE: &[&str] = &[
    "thank*",
    "thx",
    "great",
    "perfect",
    "awesome",
    "excellent",
    "wonderful",
    "appreciat*",
    "helpful",
    "cool",
    "nice",
    "fantastic",
    "brilliant",
    "amazing",
    "cheers",
];

/// A user's frustration or complaint.
const FRUSTRATION: &[&str] = &[
    "useless",
    "stupid",
    "terrible",
    "horrible",
    "awful",
    "ridiculous",
    "annoying",
    "annoyed",
    "frustrat*",
    "waste",
    "hate",
    "worst",
    "pathetic",
    "wrong",
    "not helpful",
    "doesn't help",
    "not what i",
    "that's not",
    "that is not",
    "i already",
    "i said",
    "i told you",
    "still not",
    "never mind",
    "nevermind",
    "forget it",
    "you don't understand",
    "not working",
    "doesn't work",
    "makes no sense",
    "no sense",
    "disappointed",
    "unhelpful",
];

/// A user asking for a person.
/// (Phrases, not single words: "find someone in Oakland" or "a travel
/// agent" is not a request for a person.)
const ESCALATION: &[&str] = &[
    "a human",
    "human agent",
    "live agent",
    "real person",
    "a person",
    "representative",
    "customer service",
    "talk to someone",
    "speak to someone",
    "talk to somebody",
    "speak with someone",
    "talk to an agent",
    "speak to an agent",
    "transfer me",
    "your manager",
    "a supervisor",
];

/// A bot that failed: apologies, inability, nothing found.
const BOT_FAILURE: &[&str] = &[
    "sorry",
    "unfortunately",
    "could not",
    "couldn't",
    "cannot",
    "can't",
    "unable",
    "not able",
    "failed",
    "no results",
    "didn't find",
    "did not find",
    "couldn't find",
    "not available",
    "unavailable",
    "don't understand",
    "didn't understand",
    "did not understand",
    "not sure what",
    "i'm not sure",
    "try again",
    "rephrase",
    "no matches",
    "nothing matching",
];

/// A bot that completed something.
const BOT_SUCCESS: &[&str] = &[
    "confirmed",
    "booked",
    "reserved",
    "successfully",
    "is done",
    "all set",
    "has been",
    "have been",
    "your reservation",
    "your booking",
    "your order",
    "i found",
    "i have found",
    "here is",
    "here are",
    "there are",
    "there is",
    "enjoy",
    "scheduled",
    "placed",
    "sent",
];

/// A user repairing a misunderstanding or taking back what they asked:
/// the conversation-analysis notion of a self- or other-initiated repair.
const REPAIR: &[&str] = &[
    "actually",
    "i meant",
    "i mean",
    "instead",
    "rather than",
    "what do you mean",
    "pardon",
    "come again",
    "huh",
];

/// Words that make thanks warmer than a formula ("thanks a lot", "thank
/// you so much, that's perfect").
const WARMTH: &[&str] = &[
    "so much",
    "very much",
    "a lot",
    "really",
    "truly",
    "a million",
];

/// A bot closing question ("anything else?") rather than an offer.
const CLOSING_QUESTION: &[&str] = &[
    "anything else",
    "something else",
    "else i can",
    "else can i",
    "can i help",
    "help you with",
];

/// A user declining or contradicting what the bot proposed.
const DECLINE: &[&str] = &["no", "nope", "nah", "not"];

/// Whether the user's turn opens by declining ("No, …", "Not now"), which
/// "no problem" or "no worries" does not.
fn declines(text: &str) -> bool {
    let w = words(text);
    match (w.first(), w.get(1)) {
        (Some(first), second) if DECLINE.contains(&first.as_str()) => {
            !matches!(second.map(String::as_str), Some("problem" | "worries"))
        }
        _ => false,
    }
}

/// The first of `phrases` that `text` says, as whole words in sequence; a
/// phrase ending in `*` matches any word it begins (`thank*`: thanks,
/// thankful).
fn matches(text: &str, phrases: &[&str]) -> Option<String> {
    let w = words(text);
    let joined = format!(" {} ", w.join(" "));
    phrases
        .iter()
        .find(|p| match p.strip_suffix('*') {
            Some(stem) => w.iter().any(|x| x.starts_with(stem)),
            None => joined.contains(&format!(" {p} ")),
        })
        .map(|p| p.trim_end_matches('*').to_owned())
}

fn quote(text: &str) -> String {
    let t: String = text.chars().take(60).collect();
    if t.len() < text.len() {
        format!("\"{t}…\"")
    } else {
        format!("\"{t}\"")
    }
}

// ---- aspects -------------------------------------------------------------

struct Tally {
    name: &'static str,
    lost: Vec<Evidence>,
    confidence: f64,
}

impl Tally {
    fn new(name: &'static str, confidence: f64) -> Tally {
        Tally {
            name,
            lost: Vec::new(),
            confidence,
        }
    }

    fn lose(&mut self, turns: &[usize], points: f64, reason: String) {
        self.lost.push(Evidence {
            turns: turns.iter().map(|&t| t as u32).collect(),
            reason,
            points,
        });
    }

    fn done(self) -> Aspect {
        let lost: f64 = self.lost.iter().map(|e| e.points).sum();
        Aspect {
            name: self.name,
            score: (100.0 - lost).clamp(0.0, 100.0),
            confidence: self.confidence.clamp(0.0, 1.0),
            evidence: self.lost,
        }
    }
}

fn users(d: &Dialogue) -> impl Iterator<Item = (usize, &Turn)> {
    d.turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.role == Role::User)
}

fn bots(d: &Dialogue) -> impl Iterator<Item = (usize, &Turn)> {
    d.turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.role == Role::Bot)
}

/// Intent recognition: what the model's own predictions say.
fn intent_recognition(d: &Dialogue) -> Aspect {
    let predicted: Vec<(usize, &Turn)> = users(d)
        .filter(|(_, t)| t.confidence.is_some() || t.fallback || t.correction.is_some())
        .collect();
    let mut a = Tally::new(
        "intent_recognition",
        (predicted.len() as f64 / 3.0).min(1.0),
    );
    for (i, t) in &predicted {
        if t.fallback {
            a.lose(
                &[*i],
                20.0,
                format!("the bot could not place {}", quote(&t.text)),
            );
        } else if let Some(c) = t.confidence
            && c < 0.5
        {
            a.lose(
                &[*i],
                (0.5 - c) * 30.0,
                format!(
                    "low confidence {c:.2} in `{}` for {}",
                    t.intent.as_deref().unwrap_or("?"),
                    quote(&t.text)
                ),
            );
        }
        if let Some(m) = t.margin
            && m < 0.1
            && !t.fallback
        {
            a.lose(
                &[*i],
                8.0,
                format!(
                    "`{}` won by only {m:.2} over the runner-up",
                    t.intent.as_deref().unwrap_or("?")
                ),
            );
        }
        if let Some(c) = &t.correction {
            a.lose(
                &[*i],
                25.0,
                format!(
                    "the user corrected `{}` to `{c}`",
                    t.intent.as_deref().unwrap_or("?")
                ),
            );
        }
    }
    a.done()
}

/// Response relevance: whether the bot's answers met what was asked.
fn response_relevance(d: &Dialogue) -> Aspect {
    let n_bot = bots(d).count();
    let mut a = Tally::new("response_relevance", (n_bot as f64 / 2.0).min(1.0));
    for (i, t) in bots(d) {
        if let Some(w) = matches(&t.text, BOT_FAILURE) {
            a.lose(
                &[i],
                12.0,
                format!("the bot could not help (\"{w}\"): {}", quote(&t.text)),
            );
        }
    }
    // The same bot answer twice: a loop, not an answer.
    let said: Vec<(usize, BTreeSet<String>)> =
        bots(d).map(|(i, t)| (i, content(&t.text))).collect();
    for (k, (i, w)) in said.iter().enumerate() {
        if w.len() >= 3
            && let Some((j, _)) = said[..k].iter().find(|(_, v)| jaccard(v, w) >= 0.8)
        {
            a.lose(&[*j, *i], 10.0, "the bot gave the same answer again".into());
        }
    }
    a.done()
}

/// Conversation flow: rephrasings, loops, length against the usual.
fn conversation_flow(d: &Dialogue, cx: &Context) -> Aspect {
    let mut a = Tally::new("conversation_flow", 1.0);
    // Short acknowledgements ("yes that's good") repeat by nature; a
    // request said again in other words does not.
    let said: Vec<(usize, BTreeSet<String>)> =
        users(d).map(|(i, t)| (i, content(&t.text))).collect();
    for (k, (i, w)) in said.iter().enumerate() {
        if w.len() < 3 {
            continue;
        }
        if let Some((j, _)) = said[..k]
            .iter()
            .rev()
            .take(3)
            .find(|(_, v)| v.len() >= 3 && jaccard(v, w) >= 0.5)
        {
            a.lose(
                &[*j, *i],
                12.0,
                format!(
                    "the user repeated or rephrased turn {j}: {}",
                    quote(&d.turns[*i].text)
                ),
            );
        }
    }
    // Every user turn past the usual costs a little: the same task took
    // longer.
    let n = said.len() as f64;
    let usual = cx.usual_user_turns;
    if n > usual {
        a.lose(
            &[],
            ((n - usual) * 4.0).min(30.0),
            format!("{n} user turns where {usual} is usual"),
        );
    }
    a.done()
}

/// User satisfaction: what users said and did.
fn user_satisfaction(d: &Dialogue) -> Aspect {
    let mut a = Tally::new("user_satisfaction", 1.0);
    let mut plus = 0.0;
    let n_user = users(d).count();
    for (i, t) in users(d) {
        if let Some(w) = matches(&t.text, FRUSTRATION) {
            a.lose(
                &[i],
                15.0,
                format!("frustration (\"{w}\"): {}", quote(&t.text)),
            );
        }
        if t.escalation || matches(&t.text, ESCALATION).is_some() {
            a.lose(
                &[i],
                20.0,
                format!("asked for a person: {}", quote(&t.text)),
            );
        }
        if t.rating == Some(-1) {
            a.lose(&[i], 30.0, "rated an answer not helpful".into());
        }
        if t.rating == Some(1) {
            plus += 10.0;
        }
        if t.text.contains("??") || t.text.contains("!!") {
            a.lose(
                &[i],
                5.0,
                format!("emphatic punctuation: {}", quote(&t.text)),
            );
        }
    }
    for r in &d.ratings {
        if *r < 0 {
            a.lose(&[], 30.0, "rated the conversation not helpful".into());
        } else {
            plus += 10.0;
        }
    }
    // A user who declines what the bot offered after it failed.
    for (i, t) in users(d) {
        let before = d.turns[..i].iter().rev().find(|b| b.role == Role::Bot);
        if let Some(b) = before
            && matches(&b.text, BOT_FAILURE).is_some()
            && declines(&t.text)
        {
            a.lose(
                &[i],
                10.0,
                format!("turned down the bot's alternative: {}", quote(&t.text)),
            );
        }
    }
    // Declining an offer (not the closing "anything else?") is a milder
    // sign: what the bot proposed did not fit; a repair ("actually, I
    // meant …") says the exchange went off course.
    for (i, t) in users(d) {
        let before = d.turns[..i].iter().rev().find(|b| b.role == Role::Bot);
        if let Some(b) = before
            && b.text.contains('?')
            && matches(&b.text, BOT_FAILURE).is_none()
            && matches(&b.text, CLOSING_QUESTION).is_none()
            && declines(&t.text)
        {
            a.lose(
                &[i],
                4.0,
                format!("declined what the bot proposed: {}", quote(&t.text)),
            );
        }
        if let Some(w) = matches(&t.text, REPAIR) {
            a.lose(
                &[i],
                5.0,
                format!("repaired the exchange (\"{w}\"): {}", quote(&t.text)),
            );
        }
    }
    // How it closed: thanks in the last user turns, warmer or bare.
    let last_users: Vec<(usize, &Turn)> = users(d).collect();
    let tail = &last_users[last_users.len().saturating_sub(2)..];
    let thanked = tail
        .iter()
        .any(|(_, t)| matches(&t.text, GRATITUDE).is_some());
    if !thanked && n_user >= 2 {
        let at: Vec<usize> = tail.iter().map(|(i, _)| *i).collect();
        a.lose(&at, 10.0, "the user closed without thanks".into());
    }
    let praise: BTreeSet<String> = tail
        .iter()
        .flat_map(|(_, t)| {
            GRATITUDE
                .iter()
                .filter(|g| matches(&t.text, std::slice::from_ref(*g)).is_some())
                .map(|g| g.to_string())
        })
        .collect();
    if thanked
        && (praise.len() >= 2 || tail.iter().any(|(_, t)| matches(&t.text, WARMTH).is_some()))
    {
        plus += 5.0;
    }
    let mut s = a.done();
    s.score = (s.score + plus).min(100.0);
    s
}

/// Task completion: the outcome reported, closure, abandonment.
fn task_completion(d: &Dialogue) -> Aspect {
    let mut a = Tally::new("task_completion", 0.6);
    match d.outcome {
        Some(Outcome::Resolved) => a.confidence = 1.0,
        Some(Outcome::Escalated) => {
            a.confidence = 1.0;
            a.lose(&[], 50.0, "the bot reports it escalated".into());
        }
        Some(Outcome::Abandoned) => {
            a.confidence = 1.0;
            a.lose(&[], 60.0, "the bot reports the user abandoned it".into());
        }
        None => {}
    }
    let failures: Vec<usize> = bots(d)
        .filter(|(_, t)| matches(&t.text, BOT_FAILURE).is_some())
        .map(|(i, _)| i)
        .collect();
    let succeeded = bots(d).any(|(_, t)| matches(&t.text, BOT_SUCCESS).is_some());
    if let Some(&last_fail) = failures.last() {
        // A failure the bot never made good.
        let recovered = bots(d)
            .filter(|(i, _)| *i > last_fail)
            .any(|(_, t)| matches(&t.text, BOT_SUCCESS).is_some());
        if !recovered {
            a.lose(
                &[last_fail],
                25.0,
                "the task failed and was not recovered".into(),
            );
        }
    }
    if d.outcome.is_none() && !succeeded && failures.is_empty() {
        a.lose(&[], 10.0, "no sign the task was completed".into());
    }
    // Left after a bot question: abandonment.
    if let Some(last) = d.turns.last()
        && last.role == Role::Bot
        && last.text.trim_end().ends_with('?')
        && d.outcome != Some(Outcome::Resolved)
    {
        a.lose(
            &[d.turns.len() - 1],
            20.0,
            "the user left without answering the bot".into(),
        );
    }
    a.done()
}

/// How much each aspect counts in the overall score.
const WEIGHTS: &[(&str, f64)] = &[
    ("intent_recognition", 1.0),
    ("response_relevance", 1.0),
    ("conversation_flow", 1.0),
    ("user_satisfaction", 2.0),
    ("task_completion", 1.5),
];

/// Analyse one conversation among peers like `cx`.
pub fn analyze(d: &Dialogue, cx: &Context) -> Analysis {
    let aspects = vec![
        intent_recognition(d),
        response_relevance(d),
        conversation_flow(d, cx),
        user_satisfaction(d),
        task_completion(d),
    ];
    let (mut sum, mut weight) = (0.0, 0.0);
    for a in &aspects {
        let w = WEIGHTS
            .iter()
            .find(|(n, _)| *n == a.name)
            .map_or(1.0, |(_, w)| *w)
            * a.confidence;
        sum += a.score * w;
        weight += w;
    }
    Analysis {
        score: if weight > 0.0 { sum / weight } else { 100.0 },
        aspects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialogue(turns: &[(Role, &str)]) -> Dialogue {
        Dialogue {
            turns: turns.iter().map(|(r, t)| Turn::new(*r, t)).collect(),
            outcome: None,
            ratings: Vec::new(),
        }
    }

    const CX: Context = Context {
        usual_user_turns: 4.0,
    };

    #[test]
    fn a_completed_thanked_conversation_beats_a_failed_angry_one() {
        use Role::{Bot, User};
        let good = dialogue(&[
            (User, "I need a table for two tonight at Andes Cafe"),
            (
                Bot,
                "Your reservation for 2 at Andes Cafe is confirmed for 7 pm.",
            ),
            (User, "Perfect, thanks!"),
            (Bot, "Enjoy your meal."),
        ]);
        let bad = dialogue(&[
            (User, "I need a table for two tonight at Andes Cafe"),
            (Bot, "Sorry, I could not make that reservation."),
            (User, "I said a table for two tonight at Andes Cafe"),
            (Bot, "Sorry, I could not make that reservation."),
            (User, "this is useless, let me talk to a human"),
        ]);
        let (g, b) = (analyze(&good, &CX), analyze(&bad, &CX));
        assert!(g.score > b.score + 25.0, "{} vs {}", g.score, b.score);
        let sat = b.aspect("user_satisfaction").unwrap();
        assert!(sat.score < 60.0, "{sat:?}");
        let reasons: Vec<&str> = sat.evidence.iter().map(|e| e.reason.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("asked for a person")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|r| r.contains("useless")), "{reasons:?}");
        let flow = b.aspect("conversation_flow").unwrap();
        assert!(flow.evidence.iter().any(|e| e.turns == [0, 2]), "{flow:?}");
        let relevance = b.aspect("response_relevance").unwrap();
        assert!(
            relevance
                .evidence
                .iter()
                .any(|e| e.reason.contains("same answer again")),
            "{relevance:?}"
        );
        for a in g.aspects.iter().chain(&b.aspects) {
            assert!((0.0..=100.0).contains(&a.score) && (0.0..=1.0).contains(&a.confidence));
            // Every point lost has a reason.
            let lost: f64 = a.evidence.iter().map(|e| e.points).sum();
            assert!(a.score >= 100.0 - lost - 1e-9, "{a:?}");
        }
    }

    #[test]
    fn predictions_and_feedback_move_intent_recognition() {
        let mut d = dialogue(&[
            (Role::User, "can I pay with my watch"),
            (Role::Bot, "Sure."),
        ]);
        let clean = analyze(&d, &CX).aspect("intent_recognition").unwrap().score;
        d.turns[0].intent = Some("card_payment".into());
        d.turns[0].confidence = Some(0.31);
        d.turns[0].margin = Some(0.02);
        d.turns[0].correction = Some("apple_pay".into());
        let a = analyze(&d, &CX);
        let ir = a.aspect("intent_recognition").unwrap();
        assert!(ir.score < clean - 30.0, "{ir:?}");
        assert!(
            ir.evidence
                .iter()
                .any(|e| e.reason.contains("corrected `card_payment` to `apple_pay`"))
        );
    }

    #[test]
    fn reported_outcomes_and_unanswered_questions_count_for_completion() {
        let mut d = dialogue(&[(Role::User, "book a dj"), (Role::Bot, "For which date?")]);
        let left = analyze(&d, &CX).aspect("task_completion").unwrap().clone();
        assert!(
            left.evidence
                .iter()
                .any(|e| e.reason.contains("left without answering"))
        );
        d.outcome = Some(Outcome::Resolved);
        let done = analyze(&d, &CX).aspect("task_completion").unwrap().clone();
        assert!(done.score > left.score && done.confidence == 1.0);
    }

    #[test]
    fn a_decline_opens_the_turn_and_no_problem_is_not_one() {
        assert!(declines("No, that doesn't suit my schedule."));
        assert!(declines("Not at this time."));
        assert!(!declines("Okay, no problem."));
        assert!(!declines("No worries, thanks"));
        assert_eq!(
            matches("I am very thankful", GRATITUDE).as_deref(),
            Some("thank")
        );
        assert_eq!(matches("find someone in Corte Madera", ESCALATION), None);
        assert!(matches("can I talk to a human please", ESCALATION).is_some());
    }

    #[test]
    fn warm_thanks_beat_bare_thanks_and_declined_offers_cost() {
        let sat = |turns: &[(Role, &str)]| {
            analyze(&dialogue(turns), &CX)
                .aspect("user_satisfaction")
                .unwrap()
                .score
        };
        // Warm thanks make up for some of what went wrong on the way (a
        // clean conversation is at 100 either way).
        let close = |last: &'static str| {
            vec![
                (Role::User, "find me a table for two tonight"),
                (Role::Bot, "How about Nopa at 7 pm?"),
                (Role::User, "No, somewhere quieter"),
                (Role::Bot, "Your table at Zuni is booked for 7 pm."),
                (Role::User, last),
            ]
        };
        let warm = sat(&close("Thank you so much, that's perfect!"));
        let bare = sat(&close("thanks"));
        assert!(warm > bare, "warm {warm} vs bare {bare}");
        let bare = sat(&[
            (Role::User, "find me a table for two tonight"),
            (Role::Bot, "Your table at Nopa is booked for 7 pm."),
            (Role::User, "thanks"),
        ]);
        let declined = sat(&[
            (Role::User, "find me a table for two tonight"),
            (Role::Bot, "How about Nopa at 7 pm?"),
            (Role::User, "No, actually I meant tomorrow"),
            (Role::Bot, "Your table at Nopa is booked for tomorrow."),
            (Role::User, "thanks"),
        ]);
        assert!(declined < bare, "declined {declined} vs bare {bare}");
        // "No" to the closing question is no complaint.
        let closing = sat(&[
            (Role::User, "find me a table for two tonight"),
            (Role::Bot, "Your table at Nopa is booked. Anything else?"),
            (Role::User, "No, thanks"),
        ]);
        assert_eq!(closing, bare);
    }

    #[test]
    fn the_usual_length_comes_from_the_peers() {
        let short = dialogue(&[(Role::User, "hi"), (Role::User, "bye")]);
        let long = dialogue(&[(Role::User, "one"); 9]);
        let cx = Context::of(&[short.clone(), short, long]);
        assert_eq!(cx.usual_user_turns, 2.0);
    }
}
