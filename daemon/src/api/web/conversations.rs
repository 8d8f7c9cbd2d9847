//! `/conversations`: the workbench. Filters over the logged traffic (the
//! API's, with the same checks); a thread shows each turn's predicted
//! intent with a confidence bar, its entities marked in the text, its
//! feedback, and the conversation's analyses with their reasons. A user
//! turn can be sent to the review queue with the intent it should have.

use super::layout::{self, Options};
use super::{SignedIn, WebError, WebState, ago, checked_form, need, pct};
use crate::core::conversation::{Role as Speaker, Turn};
use crate::core::example::label_problem;
use crate::service::conversations::ListQuery;
use crate::store::review::{NewItem, Origin};
use crate::store::tokens::Role;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use std::collections::HashMap;

/// Most turns a thread shows (a longer one says how many it leaves out).
const MAX_TURNS: usize = 500;

/// The filter form's fields, as the API's query names them.
const FIELDS: &[(&str, &str, &str)] = &[
    ("model", "Model", "text"),
    ("q", "Text contains", "search"),
    ("intent", "Intent", "text"),
    ("max_confidence", "Confidence at most", "number"),
    ("since", "Since (RFC 3339)", "text"),
];

/// `GET /conversations`
pub async fn list(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    // Empty form fields are no filter; the rest is the API's query.
    let given: serde_json::Map<String, serde_json::Value> = raw
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| {
            let v = v.trim();
            let value = match k.as_str() {
                "version" | "before" | "limit" => {
                    v.parse::<i64>().map(Into::into).unwrap_or(v.into())
                }
                "min_confidence" | "max_confidence" => {
                    v.parse::<f64>().map(Into::into).unwrap_or(v.into())
                }
                "fallback" => (v == "true").into(),
                _ => v.into(),
            };
            (k.clone(), value)
        })
        .collect();
    let parsed = serde_json::from_value::<ListQuery>(serde_json::Value::Object(given))
        .map_err(|e| e.to_string())
        .and_then(ListQuery::filter);
    let (problem, page) = match parsed {
        Ok(filter) => (
            None,
            Some(web.service.records().conversations(&filter).await?),
        ),
        Err(why) => (Some(why), None),
    };
    let value = |k: &str| raw.get(k).cloned().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/conversations" role="search" aria-label="Filter conversations" {
            @for (name, label, kind) in FIELDS {
                div {
                    label for={"f-" (name)} { (label) }
                    input id={"f-" (name)} name=(name) type=(kind) value=(value(name))
                        step=[(*kind == "number").then_some("0.01")] min=[(*kind == "number").then_some("0")] max=[(*kind == "number").then_some("1")];
                }
            }
            div {
                label for="f-rating" { "Rating" }
                select #f-rating name="rating" {
                    option value="" { "any" }
                    @for r in ["negative", "positive", "rated", "unrated"] { option value=(r) selected[value("rating") == r] { (r) } }
                }
            }
            div {
                label for="f-fallback" { "Fell back" }
                select #f-fallback name="fallback" {
                    option value="" { "any" }
                    option value="true" selected[value("fallback") == "true"] { "yes" }
                    option value="false" selected[value("fallback") == "false"] { "no" }
                }
            }
            div { button type="submit" { "Filter" } }
        }
        @if let Some(p) = &problem { p.error role="alert" { (p) } }
        @if let Some(page) = &page {
            @if page.conversations.is_empty() { p.muted { "No conversation matches." } }
            @else {
                div.scroll tabindex="0" { table {
                    caption.sr-only { "Conversations, newest first" }
                    thead { tr { th { "#" } th { "first message" } th { "model" } th.num { "turns" } th.num { "fallbacks" } th.num { "lowest confidence" } th { "feedback" } th { "outcome" } th { "started" } } }
                    tbody { @for c in &page.conversations { tr {
                        td { a href={"/conversations/" (c.id)} { (c.id) } }
                        td { (crate::core::text::clip(c.first_user_text.as_deref().unwrap_or(""), 160)) }
                        td { (c.model) }
                        td.num { (c.turns) }
                        td.num { (c.fallbacks) }
                        td.num { (c.lowest_confidence.map(pct).unwrap_or_else(|| "–".into())) }
                        td { @if c.positive > 0 { "+" (c.positive) " " } @if c.negative > 0 { "−" (c.negative) " " } @if c.corrections > 0 { (c.corrections) " corrected" } }
                        td { (c.outcome.as_deref().unwrap_or("–")) @if c.escalated { " (escalated)" } }
                        td { (ago(c.started_at)) }
                    } } }
                } }
                @if let Some(before) = page.next {
                    @let mut q = raw.clone();
                    @let _ = q.insert("before".into(), before.to_string());
                    p { a href={"/conversations?" (form_urlencoded::Serializer::new(String::new()).extend_pairs(q.iter()).finish())} { "Older conversations" } }
                }
            }
        }
    };
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        layout::page(
            &session,
            "Conversations",
            Options {
                nav: "/conversations",
                ..Options::default()
            },
            body,
        ),
    )
        .into_response())
}

/// A turn's text with its entities marked (byte spans that are not on
/// character boundaries, or overlap, are left unmarked).
fn marked(t: &Turn) -> Markup {
    let mut spans: Vec<_> = t.entities.iter().collect();
    spans.sort_by_key(|e| e.start);
    // (plain text before, the entity's text and name)
    let mut parts: Vec<(&str, Option<(&str, &str)>)> = Vec::new();
    let mut at = 0usize;
    for e in spans {
        let (s, end) = (e.start as usize, e.end as usize);
        if let (true, Some(before), Some(inside)) = (s >= at, t.text.get(at..s), t.text.get(s..end))
        {
            parts.push((before, Some((inside, e.entity.as_str()))));
            at = end;
        }
    }
    parts.push((t.text.get(at..).unwrap_or(""), None));
    html! {
        @for (before, entity) in parts {
            (before)
            @if let Some((inside, name)) = entity {
                mark title=(name) { (inside) span.sr-only { " (" (name) ")" } }
            }
        }
    }
}

/// `GET /conversations/{id}`
#[derive(serde::Deserialize, Default)]
pub struct Said {
    queued: Option<u32>,
    already: Option<u32>,
    /// The first turn shown (pages of [`MAX_TURNS`]).
    from: Option<u64>,
}

/// Where the page of turns that shows turn `turn` starts.
fn page_of(turn: u64) -> u64 {
    turn / MAX_TURNS as u64 * MAX_TURNS as u64
}

pub async fn page(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    Query(said): Query<Said>,
) -> Result<Html<String>, WebError> {
    let from = said
        .from
        .unwrap_or(0)
        .min(crate::core::conversation::MAX_TURNS as u64);
    let (c, total) = web
        .service
        .records()
        .conversation(id, from, MAX_TURNS as u64)
        .await?
        .ok_or_else(|| WebError::not_found(&format!("no conversation {id}")))?;
    let next = from + c.turns.len() as u64;
    // The page before, or the last page when `from` is past the end.
    let earlier = from
        .saturating_sub(MAX_TURNS as u64)
        .min(page_of(total.saturating_sub(1)));
    let analyses = web.service.store.analyses_of(id).await?;
    let operator = session.can(Role::Operator);
    let body = html! {
        @if let Some(t) = said.queued { p.note role="status" { "Turn " (t.saturating_add(1)) " is in the review queue." } }
        @if let Some(t) = said.already { p.note role="status" { "Turn " (t.saturating_add(1)) " was in the review queue already (" a href="/review" { "see the queue" } ")." } }
        p.muted { (c.model) " · " (c.external_id) @if let Some(ch) = &c.channel { " · " (ch) } " · started " (ago(c.started_at))
            @if let Some(o) = &c.outcome { " · outcome " (format!("{o:?}").to_lowercase()) }
            @if let Some(a) = &c.arm { " · experiment arm " (a) } }
        @for a in analyses.iter().take(3) {
            section.panel aria-label={"Analysis by " (a.analyzer)} {
                h2 { "Quality " (format!("{:.0}", a.score)) "/100" span.muted { " by " (a.analyzer) " " (a.analyzer_version) ", " (ago(a.analyzed_at)) } }
                ul { @for asp in &a.aspects { li { (asp.name) ": " (format!("{:.0}", asp.score))
                    @for e in asp.evidence.iter().take(3) { " — " (e.reason) " (" (format!("{:+.0}", e.points)) ")" } } } }
                @if !a.findings.is_empty() {
                    h3 { "Why" }
                    ul { @for f in &a.findings { li { strong { (f.kind) } @if let Some(t) = f.turn { " (turn " (t + 1) ")" } ": " (f.message) } } }
                }
            }
        }
        @if analyses.is_empty() { p.muted { "Not analysed yet." } }
        @if c.turns.is_empty() && from > 0 {
            p.muted { "This conversation has " (total) " turns." }
        } @else if from > 0 || next < total {
            p.muted { "Turns " (from + 1) "–" (next) " of " (total) "." }
        }
        @if from > 0 { p { a href={"/conversations/" (c.id) "?from=" (earlier)} { "Earlier turns" } } }
        ol.thread start=(from + 1) {
            @for (i, t) in c.turns.iter().enumerate().map(|(k, t)| (from as usize + k, t)) {
                li class={"turn turn-" (format!("{:?}", t.role).to_lowercase())} #{"turn-" (i)} {
                    div.who { (format!("{:?}", t.role).to_lowercase()) }
                    p.text { (marked(t)) }
                    @if t.role == Speaker::User {
                        p.pred {
                            @if let Some(intent) = &t.intent { "→ " strong { (intent) } }
                            @if t.fallback { " " (layout::state("fallback")) }
                            @if let Some(conf) = t.confidence {
                                " " meter min="0" max="1" value=(format!("{conf:.3}")) aria-label={"confidence " (pct(conf))} {}
                                " " (pct(conf))
                            }
                        }
                    }
                    @for f in &t.feedback {
                        p.feedback { @match f.rating { Some(r) if r > 0 => "👍 helpful", Some(_) => "👎 not helpful", None => "" }
                            @if let Some(cor) = &f.correction { " · should be " strong { (cor) } }
                            @if let Some(cm) = &f.comment { " · “" (cm) "”" } }
                    }
                    @if operator && t.role == Speaker::User {
                        details {
                            summary { "Label this turn" }
                            form.inline method="post" action={"/conversations/" (c.id) "/turns/" (i) "/review"} {
                                (layout::csrf(&session))
                                label for={"intent-" (i)} { "Intent it should have" }
                                input id={"intent-" (i)} name="intent" type="text" value=[t.intent.as_deref()];
                                button type="submit" { "Send to review" }
                            }
                        }
                    }
                }
            }
        }
        @if next < total { p { a href={"/conversations/" (c.id) "?from=" (next)} { "Later turns" } } }
    };
    Ok(layout::page(
        &session,
        &format!("Conversation {}", c.id),
        Options {
            nav: "/conversations",
            ..Options::default()
        },
        body,
    ))
}

/// `POST /conversations/{id}/turns/{turn}/review` (operator): queue the
/// turn for review with the intent the operator suggests.
pub async fn queue_turn(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path((id, turn)): Path<(i64, u32)>,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let form = checked_form(&session, body).await?;
    need(&session, Role::Operator)?;
    let (c, _) = web
        .service
        .records()
        .conversation(id, u64::from(turn), 1)
        .await?
        .ok_or_else(|| WebError::not_found(&format!("no conversation {id}")))?;
    let t = c
        .turns
        .first()
        .filter(|t| t.role == Speaker::User)
        .ok_or_else(|| {
            WebError::not_found(&format!(
                "conversation {id} has no user turn {}",
                u64::from(turn) + 1
            ))
        })?;
    let suggested = form
        .get("intent")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(why) = suggested
        .as_deref()
        .and_then(|s| label_problem("intent", s))
    {
        return Err(WebError::new(StatusCode::UNPROCESSABLE_ENTITY, &why));
    }
    let store = &web.service.store;
    let message = store
        .message_id(&c.model, &c.external_id, turn as i32)
        .await?
        .map(|(_, m)| m);
    let item = NewItem {
        model: c.model.clone(),
        text: t.text.clone(),
        conversation_id: Some(c.id),
        message_id: message,
        origin: Origin::Manual,
        reason: format!("labelled by {} from conversation {}", session.name, c.id),
        priority: crate::review::priority(t.confidence, 1),
        suggested_intent: suggested,
        recommendation_id: None,
        reviews: store.review_policy().reviews,
    };
    let added = store.queue_review(&[item]).await?;
    let said = if added == 1 { "queued" } else { "already" };
    let from = page_of(u64::from(turn));
    Ok(Redirect::to(&format!(
        "/conversations/{id}?from={from}&{said}={turn}#turn-{turn}"
    ))
    .into_response())
}
