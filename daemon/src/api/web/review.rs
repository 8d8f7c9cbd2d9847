//! `/review`: the queue by state with how much reviewers agree, the items
//! that matter most first, and labelling one item with the keyboard: an
//! intent picker with search, entities marked by selecting their text,
//! approve, reject or skip. Labels go through the same service call as
//! the API's, with the same checks.

use super::layout::{self, Options};
use super::{SignedIn, WebError, WebState, ago, checked_form, need};
use crate::core::example::EntitySpan;
use crate::service::review::{Answer, LabelError};
use crate::store::review::{Item, ItemFilter, ItemState, OUT_OF_SCOPE};
use crate::store::tokens::Role;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use std::collections::BTreeSet;

/// Most items a reviewer can pass over in one sitting (kept in the page).
const MAX_SKIPPED: usize = 100;
/// Most entities one label marks.
const MAX_ENTITIES: usize = 50;

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    model: Option<String>,
    state: Option<String>,
}

fn model_filter(m: Option<String>) -> Option<String> {
    m.filter(|m| crate::core::ids::is_identifier(m))
}

/// `GET /review`
pub async fn list(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, WebError> {
    let store = &web.service.store;
    let model = model_filter(q.model);
    let state = q.state.as_deref().and_then(ItemState::parse);
    let counts = store.review_counts(model.as_deref()).await?;
    let agreement = crate::service::review::agreement(store, model.as_deref()).await?;
    let reviewer = session.can(Role::Reviewer);
    let mut items = Vec::new();
    if reviewer {
        items = store
            .review_items(&ItemFilter {
                model: model.clone(),
                state: Some(state.unwrap_or(ItemState::Open)),
                limit: 50,
                by_priority: true,
                ..ItemFilter::default()
            })
            .await?
            .0;
    }
    let body = html! {
        div.grid {
            section.panel #queue-counts data-refresh aria-labelledby="h-counts" {
                h2 #h-counts { "The queue" }
                ul.stats {
                    li { span.n { (counts.open) } a href="/review?state=open" { "open" } }
                    li { span.n { (counts.disputed) } a href="/review?state=disputed" { "disputed" } }
                    li { span.n { (counts.approved) } a href="/review?state=approved" { "approved" } }
                    li { span.n { (counts.rejected) } a href="/review?state=rejected" { "rejected" } }
                }
                @if reviewer {
                    form.inline method="post" action="/review/next" {
                        (layout::csrf(&session))
                        @if let Some(m) = &model { input type="hidden" name="model" value=(m); }
                        button #next-item type="submit" aria-keyshortcuts="n" { "Label the next item (n)" }
                    }
                    " "
                    form.inline method="post" action="/review/next" {
                        (layout::csrf(&session))
                        input type="hidden" name="adjudicate" value="1";
                        @if let Some(m) = &model { input type="hidden" name="model" value=(m); }
                        button.secondary type="submit" { "Settle a disputed item" }
                    }
                } @else {
                    p.muted { "Labelling needs the reviewer role." }
                }
            }
            section.panel #agreement data-refresh aria-labelledby="h-agree" {
                h2 #h-agree { "Agreement between reviewers" }
                @if agreement.items == 0 { p.muted { "No item has been labelled by two reviewers yet." } }
                @else {
                    p { "Krippendorff's α over " (agreement.items) " items labelled by two or more (among the latest "
                        (crate::store::review::AGREEMENT_LABELS) " labels): "
                        strong { (agreement.alpha.map(|a| format!("{a:.2}")).unwrap_or_else(|| "undefined".into())) } }
                    div.scroll tabindex="0" { table {
                        caption.sr-only { "Agreement of each pair of reviewers (Cohen's κ)" }
                        thead { tr { th { "reviewers" } th.num { "items" } th.num { "κ" } } }
                        tbody { @for p in &agreement.pairs { tr {
                            td { (p.a) " & " (p.b) } td.num { (p.items) }
                            td.num { (p.kappa.map(|k| format!("{k:.2}")).unwrap_or_else(|| "–".into())) }
                        } } }
                    } }
                }
            }
        }
        @if reviewer {
            section.panel #items data-refresh aria-labelledby="h-items" {
                h2 #h-items { (state.unwrap_or(ItemState::Open).as_str()) " items, most valuable first" }
                @if items.is_empty() { p.muted { "None." } }
                @else {
                    div.scroll tabindex="0" { table {
                        caption.sr-only { "Review items with the reason each was queued" }
                        thead { tr { th { "#" } th { "text" } th { "model" } th { "why" } th.num { "priority" } th { "queued" } } }
                        tbody { @for it in &items { tr {
                            td { a href={"/review/" (it.id)} { (it.id) } }
                            td { (crate::core::text::clip(&it.text, 120)) }
                            td { (it.model) }
                            td { (it.origin.as_str()) ": " (it.reason) }
                            td.num { (format!("{:.2}", it.priority)) }
                            td { (ago(it.created_at)) }
                        } } }
                    } }
                }
            }
        }
    };
    Ok(layout::page(
        &session,
        "Review",
        Options {
            nav: "/review",
            live: Some("/live/events".into()),
            ..Options::default()
        },
        body,
    ))
}

/// Skipped ids from a form or query value: "3,9,12", bounded.
fn skipped(v: Option<&str>) -> Vec<i64> {
    v.unwrap_or("")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .take(MAX_SKIPPED)
        .collect()
}

fn join(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// `POST /review/next` (reviewer): claim the most valuable item this
/// reviewer may label now and go to it.
pub async fn next(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let form = checked_form(&session, body).await?;
    need(&session, Role::Reviewer)?;
    let model = model_filter(form.get("model").map(str::to_owned));
    let adjudicate = form.get("adjudicate").is_some();
    let mut skip = skipped(form.get("skip"));
    if let Some(id) = form.get("skipping").and_then(|s| s.parse().ok())
        && skip.len() < MAX_SKIPPED
    {
        skip.push(id);
    }
    let item = web
        .service
        .store
        .claim_review(session.token_id, model.as_deref(), adjudicate, &skip)
        .await?;
    Ok(match item {
        Some(it) => {
            let mut to = format!("/review/{}?", it.id);
            if adjudicate {
                to.push_str("adjudicate=1&");
            }
            if !skip.is_empty() {
                to.push_str(&format!("skip={}", join(&skip)));
            }
            Redirect::to(to.trim_end_matches(['?', '&'])).into_response()
        }
        None => Redirect::to("/review?done=1").into_response(),
    })
}

#[derive(serde::Deserialize, Default)]
pub struct ItemQuery {
    skip: Option<String>,
    adjudicate: Option<String>,
}

/// The intents a reviewer picks from: those of the model's last
/// evaluation, those reviewers already gave, and the suggestion.
async fn intents(web: &WebState, item: &Item) -> Result<BTreeSet<String>, WebError> {
    let store = &web.service.store;
    let mut out = BTreeSet::new();
    if let Some(m) = store.models_named(&item.model).await?.into_iter().next()
        && let Some(r) = store
            .last_evaluation(crate::core::ids::RunId(m.run_id))
            .await?
    {
        out.extend(r.per_intent.into_iter().map(|i| i.intent));
    }
    out.extend(item.labels.iter().filter_map(|l| l.intent.clone()));
    out.extend(item.suggested_intent.clone());
    out.remove(OUT_OF_SCOPE);
    Ok(out)
}

/// `GET /review/{id}` (reviewer)
pub async fn page(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    Query(q): Query<ItemQuery>,
) -> Result<Html<String>, WebError> {
    need(&session, Role::Reviewer)?;
    let item = web
        .service
        .store
        .review_item(id)
        .await?
        .ok_or_else(|| WebError::not_found(&format!("no review item {id}")))?;
    item_page(&web, &session, &item, &q, None).await
}

async fn item_page(
    web: &WebState,
    session: &super::session::Session,
    item: &Item,
    q: &ItemQuery,
    problem: Option<&str>,
) -> Result<Html<String>, WebError> {
    let intents = intents(web, item).await?;
    let skip = skipped(q.skip.as_deref());
    let adjudicate = q.adjudicate.is_some() || item.state == ItemState::Disputed;
    let open = matches!(item.state, ItemState::Open | ItemState::Disputed);
    let body = html! {
        @if let Some(p) = problem { p.error role="alert" #label-error { (p) } }
        section.panel aria-labelledby="h-item" {
            h2 #h-item { "The message" }
            p #review-text .review-text data-text=(item.text) { (item.text) }
            p.muted { (item.model) " · " (item.origin.as_str()) ": " (item.reason) " · priority " (format!("{:.2}", item.priority))
                " · " (layout::state(item.state.as_str()))
                @if let Some(c) = item.conversation_id { " · " a href={"/conversations/" (c)} { "its conversation" } } }
            @if let Some(s) = &item.suggested_intent { p { "Suggested: " strong { (s) } } }
            @if !item.labels.is_empty() {
                h3 { "Labels so far" }
                ul { @for l in &item.labels { li {
                    (l.reviewer) ": " @if l.verdict == crate::store::review::Verdict::Reject { "reject" } @else { strong { (l.intent.as_deref().unwrap_or("")) } }
                    @for e in &l.entities { " [" (e.entity) ": " (e.value) "]" }
                    @if l.adjudication { " (adjudication)" } span.muted { " " (ago(l.at)) }
                } } }
            }
        }
        @if open {
            form #label-form .panel method="post" action={"/review/" (item.id) "/label"} {
                (layout::csrf(session))
                input type="hidden" name="skip" value=(join(&skip));
                @if adjudicate { input type="hidden" name="adjudication" value="1"; }
                label for="intent" { "Intent" }
                input #intent type="search" name="intent" list="intent-list" autocomplete="off" autofocus
                    value=[item.suggested_intent.as_deref()] aria-describedby="intent-help";
                datalist #intent-list { @for i in &intents { option value=(i) {} } }
                p #intent-help .muted { "Type to search the model's intents, or a new one. Enter approves." }
                div.check {
                    input #oos type="checkbox" name="out_of_scope" value="1";
                    label for="oos" { "Out of scope (no intent fits)" }
                }
                fieldset {
                    legend { "Entities" }
                    p.muted #entity-help { "Select words in the message above, name the entity and press “Mark” (or the m key)." }
                    label for="entity-name" { "Entity name" }
                    input #entity-name type="text" autocomplete="off" aria-describedby="entity-help";
                    button #mark type="button" .secondary { "Mark the selected text" }
                    ul #entities aria-live="polite" {}
                    input #entities-field type="hidden" name="entities" value="";
                }
                div.actions {
                    button type="submit" name="verdict" value="label" { "Approve" }
                    button.secondary type="submit" name="verdict" value="reject" formnovalidate { "Reject (not a training example)" }
                }
            }
            form.inline method="post" action="/review/next" {
                (layout::csrf(session))
                input type="hidden" name="skip" value=(join(&skip));
                input type="hidden" name="skipping" value=(item.id);
                @if adjudicate { input type="hidden" name="adjudicate" value="1"; }
                button #skip .secondary type="submit" { "Skip" }
            }
            p.muted { "Keys: Enter approves · Alt+X rejects · Alt+S skips · Alt+O toggles out of scope · m marks the selection" }
        } @else {
            p { "This item is " (item.state.as_str()) " already." }
            form.inline method="post" action="/review/next" {
                (layout::csrf(session))
                button type="submit" { "Label the next item" }
            }
        }
    };
    Ok(layout::page(
        session,
        &format!("Review item {}", item.id),
        Options {
            nav: "/review",
            ..Options::default()
        },
        body,
    ))
}

/// Entities as the page sends them: one `entity<TAB>start<TAB>end<TAB>value`
/// per line, byte offsets into the text. The value is the text the
/// reviewer selected: it must be what the offsets mark here (a browser
/// that normalised the text, line ends for one, would shift them).
fn entities(text: &str, field: Option<&str>) -> Result<Vec<EntitySpan>, String> {
    let mut out = Vec::new();
    for (i, line) in field
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
    {
        if i >= MAX_ENTITIES {
            return Err(format!("at most {MAX_ENTITIES} entities per label"));
        }
        let parts: Vec<&str> = line.split('\t').collect();
        let (entity, start, end, selected) = match parts[..] {
            [entity, start, end] => (entity, start, end, None),
            [entity, start, end, value] => (entity, start, end, Some(value)),
            _ => {
                return Err(format!(
                    "entities[{i}]: expected a name, a start and an end"
                ));
            }
        };
        let (Ok(start), Ok(end)) = (start.parse::<u32>(), end.parse::<u32>()) else {
            return Err(format!("entities[{i}]: start and end must be byte offsets"));
        };
        let value = text
            .get(start as usize..end as usize)
            .ok_or_else(|| format!("entities[{i}]: {start}..{end} is not a span of the text"))?;
        if let Some(sel) = selected
            && sel != value
        {
            return Err(format!(
                "entities[{i}]: bytes {start}..{end} hold `{value}`, not the `{sel}` selected; reload the page and mark it again"
            ));
        }
        out.push(EntitySpan {
            entity: entity.trim().to_owned(),
            start,
            end,
            value: value.to_owned(),
        });
    }
    Ok(out)
}

/// `POST /review/{id}/label` (reviewer): record the label, then go to the
/// next item.
pub async fn label(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let form = checked_form(&session, body).await?;
    need(&session, Role::Reviewer)?;
    let store = &web.service.store;
    let item = store
        .review_item(id)
        .await?
        .ok_or_else(|| WebError::not_found(&format!("no review item {id}")))?;
    let q = ItemQuery {
        skip: form.get("skip").map(str::to_owned),
        adjudicate: form.get("adjudication").map(str::to_owned),
    };
    let answer = entities(&item.text, form.get("entities")).map(|entities| Answer {
        reject: form.get("verdict") == Some("reject"),
        intent: form
            .get("intent")
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty()),
        out_of_scope: form.get("out_of_scope").is_some(),
        entities,
        adjudication: form.get("adjudication").is_some(),
    });
    let result = match answer {
        Ok(a) => crate::service::review::label(store, session.token_id, &session.name, id, a)
            .await
            .map(|_| ()),
        Err(why) => Err(LabelError::Invalid(why)),
    };
    let status = match result {
        Ok(()) => {
            let skip = skipped(q.skip.as_deref());
            let next = store
                .claim_review(
                    session.token_id,
                    Some(&item.model),
                    q.adjudicate.is_some(),
                    &skip,
                )
                .await?;
            let to = match next {
                Some(n) if q.adjudicate.is_some() => {
                    format!("/review/{}?adjudicate=1&skip={}", n.id, join(&skip))
                }
                Some(n) => format!("/review/{}?skip={}", n.id, join(&skip)),
                None => "/review?done=1".to_owned(),
            };
            return Ok(Redirect::to(&to).into_response());
        }
        Err(LabelError::Invalid(m)) => (StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(LabelError::Conflict(m)) => (StatusCode::CONFLICT, m),
        Err(LabelError::NotFound(m)) => return Err(WebError::not_found(&m)),
        Err(LabelError::Other(e)) => return Err(e.into()),
    };
    let page = item_page(&web, &session, &item, &q, Some(&status.1)).await?;
    Ok((status.0, page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_take_their_values_from_the_text_and_refuse_bad_spans() {
        let e = entities("fly to Zürich now", Some("city\t7\t14\n")).unwrap();
        assert_eq!(e[0].value, "Zürich");
        assert!(entities("fly to Zürich now", Some("city\t7\t14\tZürich")).is_ok());
        assert!(entities("fly to Zürich now", Some("city\t7\t14\tZurich")).is_err());
        assert!(
            entities("fly to Zürich", Some("city\t7\t9")).is_err(),
            "inside a character"
        );
        assert!(entities("abc", Some("x\t1\t9")).is_err());
        assert!(entities("abc", Some("x\t1")).is_err());
        let many = "x\t0\t1\n".repeat(MAX_ENTITIES + 1);
        assert!(entities("abc", Some(&many)).is_err());
        assert!(entities("abc", None).unwrap().is_empty());
    }
}
