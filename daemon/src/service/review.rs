//! The learning loop's service: patterns in a model's traffic and the
//! recommendations made from them (kept, turned into review items in one
//! call), the review queue's agreement, and the quality trend — one shape
//! for the API and the command line.

use crate::core::evaluation::Report;
use crate::patterns::{self, Patterns};
use crate::store::Store;
use crate::store::conversation_reads::{ConversationFilter, WHOLE_READ_BYTES};
use crate::store::review::{NewItem, NewRecommendation, Origin, StoredRecommendation};
use anyhow::{Result, bail};
use chrono::Utc;
use serde::Serialize;
use serde_json::json;

/// Most conversations one patterns computation reads.
pub const MAX_CONVERSATIONS: u64 = 100_000;

/// Most stored text one patterns computation reads, newest conversations
/// first: they are held together, and a conversation may be long.
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// What the patterns of a model's traffic are now, and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub model: String,
    pub days: u32,
    pub patterns: Patterns,
    pub recommendations: Vec<StoredRecommendation>,
    /// The window's conversations left unread: those of more than
    /// [`WHOLE_READ_BYTES`], and the oldest past [`MAX_BYTES`] in all.
    pub conversations_left_out: u64,
}

/// The training examples and last evaluation of `model`'s newest
/// registered version, if it has one.
async fn baseline(
    store: &Store,
    model: &str,
) -> Result<(Vec<crate::core::example::Example>, Option<Report>)> {
    let Some(m) = store.models_named(model).await?.into_iter().next() else {
        return Ok((Vec::new(), None));
    };
    let examples = match m.dataset_version_id {
        Some(v) => store
            .dataset_version(v)
            .await?
            .map(|(_, rows)| rows)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let report = store
        .last_evaluation(crate::core::ids::RunId(m.run_id))
        .await?;
    Ok((examples, report))
}

/// Find the patterns of `model`'s conversations of the last `days` and
/// keep the recommendations they make.
pub async fn find(store: &Store, model: &str, days: u32) -> Result<Found> {
    find_within(store, model, days, WHOLE_READ_BYTES, MAX_BYTES).await
}

/// [`find`], reading no conversation of more than `one` bytes of stored
/// text and at most `total` in all.
async fn find_within(store: &Store, model: &str, days: u32, one: u64, total: u64) -> Result<Found> {
    let filter = ConversationFilter {
        model: Some(model.to_owned()),
        since: Some(Utc::now() - chrono::Duration::days(i64::from(days))),
        limit: MAX_CONVERSATIONS,
        ..Default::default()
    };
    let ids = store.conversation_ids(&filter).await?;
    let (chunks, left_out) = store.whole_reads(&ids, 1000, one, total).await?;
    let left_out = left_out as u64;
    if left_out > 0 {
        tracing::warn!(
            model,
            read = ids.len() as u64 - left_out,
            left_out,
            "patterns: conversations of more than {one} bytes are passed over, and the window's oldest past {total} bytes in all left out"
        );
    }
    let mut conversations = Vec::with_capacity(ids.len());
    for chunk in chunks {
        conversations.extend(
            store
                .conversations_whole(&chunk)
                .await?
                .into_iter()
                .map(|c| c.into_conversation()),
        );
    }
    let (examples, report) = baseline(store, model).await?;
    let (found, recs) = tokio::task::spawn_blocking(move || {
        let settings = patterns::Settings::default();
        let found = patterns::find(
            &patterns::Input {
                conversations: &conversations,
                examples: &examples,
                evaluation: report.as_ref(),
                now: Utc::now(),
            },
            &settings,
        );
        let recs = patterns::recommend(&found, &settings);
        (found, recs)
    })
    .await?;
    let new: Vec<NewRecommendation> = recs
        .iter()
        .map(|r| NewRecommendation {
            key: r.id.clone(),
            kind: serde_json::to_value(r.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            title: r.title.clone(),
            impact: r.impact as i64,
            rank: r.score,
            evidence: json!({"evidence": r.evidence, "intents": r.intents, "confidence": r.confidence}),
            messages: json!(r.items),
        })
        .collect();
    let recommendations = store.save_recommendations(model, &new).await?;
    Ok(Found {
        model: model.to_owned(),
        days,
        patterns: found,
        recommendations,
        conversations_left_out: left_out,
    })
}

/// What turning a recommendation into review items did.
#[derive(Debug, Clone, Serialize)]
pub struct Queued {
    pub recommendation: i64,
    /// Items added to the queue.
    pub added: u64,
    /// Messages already queued (for another reason or before).
    pub already: u64,
    /// Messages no longer stored.
    pub missing: u64,
}

/// Turn recommendation `id` into review items, one per message it names,
/// each labelled `reviews` times.
pub async fn queue_recommendation(store: &Store, id: i64) -> Result<Option<Queued>> {
    let Some(rec) = store.recommendation(id).await? else {
        return Ok(None);
    };
    if rec.state == "dismissed" {
        bail!("recommendation {id} was dismissed");
    }
    let refs: Vec<patterns::ReviewItem> =
        serde_json::from_value(rec.messages.clone()).unwrap_or_default();
    let policy = store.review_policy();
    let occurrences = refs.len() as u64;
    let mut items = Vec::with_capacity(refs.len());
    let mut missing = 0;
    for r in &refs {
        let Some((conversation, message)) = store
            .message_id(&rec.model, &r.conversation, r.turn as i32)
            .await?
        else {
            missing += 1;
            continue;
        };
        items.push(NewItem {
            model: rec.model.clone(),
            text: r.text.clone(),
            conversation_id: Some(conversation),
            message_id: Some(message),
            origin: Origin::Recommendation,
            reason: rec.title.clone(),
            priority: crate::review::priority(None, occurrences),
            suggested_intent: r.suggested_intent.clone(),
            recommendation_id: Some(id),
            reviews: policy.reviews,
        });
    }
    let added = store.queue_recommendation(id, &items).await?;
    Ok(Some(Queued {
        recommendation: id,
        added,
        already: items.len() as u64 - added,
        missing,
    }))
}

/// How much reviewers agree: Cohen's kappa per pair of reviewers on the
/// items both labelled, Krippendorff's alpha over every item labelled
/// more than once.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// Items labelled independently by two or more reviewers.
    pub items: usize,
    pub alpha: Option<f64>,
    pub pairs: Vec<crate::review::agreement::PairAgreement>,
}

pub async fn agreement(store: &Store, model: Option<&str>) -> Result<Agreement> {
    let answers = store.review_answers(model).await?;
    let ids: Vec<String> = answers.iter().map(|(i, _, _)| i.to_string()).collect();
    let rows: Vec<(&str, &str, &str)> = answers
        .iter()
        .zip(&ids)
        .map(|((_, r, a), i)| (i.as_str(), r.as_str(), a.as_str()))
        .collect();
    let units = crate::review::agreement::units(&rows);
    Ok(Agreement {
        items: units.len(),
        alpha: crate::review::agreement::krippendorff_alpha(&units),
        pairs: crate::review::agreement::pairwise(&rows),
    })
}

/// A reviewer's answer as a face received it, before it is checked.
#[derive(Debug, Clone)]
pub struct Answer {
    pub reject: bool,
    pub intent: Option<String>,
    pub out_of_scope: bool,
    pub entities: Vec<crate::core::example::EntitySpan>,
    pub adjudication: bool,
}

/// Why an answer was not recorded.
#[derive(Debug)]
pub enum LabelError {
    /// The answer itself is wrong (names the field).
    Invalid(String),
    NotFound(String),
    /// The item's state does not take it now.
    Conflict(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for LabelError {
    fn from(e: anyhow::Error) -> LabelError {
        LabelError::Other(e)
    }
}

/// Check `answer` to item `id` and record it as the label of token
/// `token_id`, named `reviewer`: an
/// intent or out of scope (not both), entities whose values are the text
/// they mark. The API and the dashboard both label through here.
pub async fn label(
    store: &Store,
    token_id: i64,
    reviewer: &str,
    id: i64,
    answer: Answer,
) -> Result<crate::store::review::Item, LabelError> {
    use crate::core::example::{label_problem, span_problem};
    use crate::store::review::{Labelled, NewLabel, OUT_OF_SCOPE, Verdict};
    let invalid = |m: &str| Err(LabelError::Invalid(m.to_owned()));
    let (verdict, intent) = match (answer.reject, answer.out_of_scope, answer.intent) {
        (true, _, _) => (Verdict::Reject, None),
        (false, true, None) => (Verdict::Label, Some(OUT_OF_SCOPE.to_owned())),
        (false, true, Some(_)) => return invalid("a label is an intent or out of scope, not both"),
        (false, false, Some(i)) => {
            if let Some(why) = label_problem("intent", &i) {
                return Err(LabelError::Invalid(why));
            }
            (Verdict::Label, Some(i))
        }
        (false, false, None) => {
            return invalid("a label needs an intent (or `out_of_scope: true`)");
        }
    };
    let item = store
        .review_item(id)
        .await?
        .ok_or_else(|| LabelError::NotFound(format!("no review item {id}")))?;
    for (i, span) in answer.entities.iter().enumerate() {
        if let Some(why) = span_problem(&item.text, span) {
            return Err(LabelError::Invalid(format!("entities[{i}]: {why}")));
        }
        // A reviewer's value is the text it marks: a training example
        // never carries anything else (or personal data curation misses).
        if span.value != item.text[span.start as usize..span.end as usize] {
            return Err(LabelError::Invalid(format!(
                "entities[{i}]: its value is not the text at bytes {}..{}",
                span.start, span.end
            )));
        }
    }
    let label = NewLabel {
        token_id: Some(token_id),
        reviewer: reviewer.to_owned(),
        verdict,
        intent,
        entities: answer.entities,
    };
    match store.label_review(id, &label, answer.adjudication).await? {
        Labelled::Recorded(item) => Ok(*item),
        Labelled::NoSuchItem => Err(LabelError::NotFound(format!("no review item {id}"))),
        Labelled::Refused(why) => Err(LabelError::Conflict(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conversations::{NewConversation, NewMessage};

    #[tokio::test]
    async fn patterns_read_the_newest_conversations_within_their_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let store = Store::connect(&url).await.unwrap();
        let message = |text: &str| NewMessage {
            role: "user",
            text: text.into(),
            intent: Some("card_lost".into()),
            confidence: Some(0.9),
            fallback: false,
            model_version: Some(1),
            escalation: false,
            at: Utc::now(),
            ranking: Vec::new(),
            entities: Vec::new(),
        };
        // Oldest first: three of 1,000 characters (1,265 bytes with the
        // intent and a turn's share), then one of 5,000.
        for (id, n) in [
            ("old", 1000),
            ("middle", 1000),
            ("new", 1000),
            ("long", 5000),
        ] {
            let batch = [NewConversation {
                model: "bot".into(),
                id: id.into(),
                channel: None,
                messages: vec![message(&"a".repeat(n))],
                outcome: None,
                assignment: None,
            }];
            store.log_conversations(&batch).await.unwrap();
        }
        let read = |found: Found| (found.patterns.conversations, found.conversations_left_out);
        assert_eq!(read(find(&store, "bot", 30).await.unwrap()), (4, 0));
        // The long one is passed over; two of the others fit, the oldest not.
        let two = find_within(&store, "bot", 30, 3000, 2600).await.unwrap();
        assert_eq!(read(two), (2, 2));
        let none = find_within(&store, "bot", 30, 3000, 1000).await.unwrap();
        assert_eq!(read(none), (0, 4));
        // Held whole, the long one is the newest and crowds out the rest.
        let long = find_within(&store, "bot", 30, 6000, 6000).await.unwrap();
        assert_eq!(read(long), (1, 3));
    }
}
