//! `/data`: the datasets Coach keeps (uploaded ones and the snapshots
//! workflows' source steps took), and a drop zone: a Coach JSONL, CSV or
//! Rasa YAML file dropped on it is read by the file source in the sandbox,
//! as a source step would read it; its located errors are shown and
//! nothing is kept, or, when every record is good, it becomes the newest
//! version of the named dataset.

use super::layout::{self, Options};
use super::{SignedIn, WebError, WebState, ago, need, session};
use crate::service::datasets::{UploadError, Uploaded};
use crate::store::tokens::Role;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

/// `GET /data`
pub async fn page(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
) -> Result<Html<String>, WebError> {
    let datasets = web.service.store.dataset_summaries(200).await?;
    let operator = session.can(Role::Operator);
    let body = html! {
        @if operator {
            section.panel aria-labelledby="h-upload" {
                h2 #h-upload { "Add a dataset" }
                form #upload method="post" action="/data/upload" data-csrf=(session.csrf) {
                    label for="dataset-name" { "Dataset name" }
                    input #dataset-name type="text" name="name" required pattern="[A-Za-z][A-Za-z0-9_-]*" autocomplete="off"
                        aria-describedby="dataset-help";
                    p #dataset-help .muted { "Letters, digits, - and _. A name already used gets a new version." }
                    div #drop .drop {
                        label for="dataset-file" { "Drop a file here, or choose one" }
                        input #dataset-file type="file" name="file" accept=".jsonl,.csv,.yml,.yaml" required;
                        p.muted { "Coach JSONL (.jsonl), CSV with text and intent columns (.csv) or Rasa YAML (.yml); at most 64 MiB. "
                            "It is checked like a source step; nothing is kept unless every record is good." }
                    }
                    button type="submit" { "Check and add" }
                    noscript { p.error { "Adding a dataset needs JavaScript." } }
                }
                div #upload-result aria-live="polite" {}
            }
        }
        section.panel #datasets data-refresh aria-labelledby="h-datasets" {
            h2 #h-datasets { "Datasets" }
            @if datasets.is_empty() { p.muted { "No dataset yet: add one above, or run a workflow's source step." } }
            @else {
                div.scroll tabindex="0" { table {
                    caption.sr-only { "Datasets, most recently changed first" }
                    thead { tr { th { "dataset" } th.num { "examples" } th.num { "intents" } th.num { "conversations" } th { "newest version" } th { "from" } th { "changed" } } }
                    tbody { @for d in &datasets { tr {
                        td { (d.name) }
                        td.num { (d.examples) }
                        td.num { (d.intents) }
                        td.num { (d.conversations) }
                        td { code { (d.content_hash.get(..12).unwrap_or(&d.content_hash)) } " (" (d.versions) @if d.versions == 1 { " version" } @else { " versions" } ")" }
                        td { @if let Some(f) = d.origin.get("file").and_then(|f| f.as_str()) {
                                (f) " by " (d.origin.get("uploaded_by").and_then(|u| u.as_str()).unwrap_or("?"))
                            } @else { "a source step" } }
                        td { (ago(d.created_at)) }
                    } } }
                } }
            }
        }
    };
    Ok(layout::page(
        &session,
        "Data",
        Options {
            nav: "/data",
            ..Options::default()
        },
        body,
    ))
}

#[derive(serde::Deserialize)]
pub struct UploadQuery {
    name: String,
    file: String,
}

/// What an upload came to, as the fragment the page shows.
fn result(status: StatusCode, body: Markup) -> Response {
    (status, Html(body.into_string())).into_response()
}

/// `POST /data/upload?name=&file=` (operator): the file's bytes as the
/// body, the session's CSRF token in `X-CSRF-Token`. Answers with an HTML
/// fragment for the page to show.
pub async fn upload(
    State(web): State<WebState>,
    SignedIn(s): SignedIn,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !token.is_some_and(|t| session::same_secret(t, &s.csrf)) {
        return Err(WebError::forbidden(
            "the upload has no valid security token (CSRF); reload the page and try again",
        ));
    }
    need(&s, Role::Operator)?;
    // One upload at a time is checked: each holds its file in memory and
    // a sandbox reading it.
    let Ok(_turn) = web.uploads.try_acquire() else {
        return Ok(result(
            StatusCode::TOO_MANY_REQUESTS,
            html! { p.error role="alert" { "Another upload is being checked; try again in a moment." } },
        ));
    };
    match web
        .service
        .upload_dataset(&q.name, &q.file, &body, &s.name)
        .await
    {
        Ok(Uploaded {
            dataset,
            version,
            examples,
            conversations,
            intents,
            path,
            ..
        }) => Ok(result(
            StatusCode::CREATED,
            html! {
                p.note role="status" #upload-ok {
                    "Added " strong { (dataset) } ": " (examples) " examples of " (intents) " intents"
                    @if conversations > 0 { " and " (conversations) " conversations" }
                    " (version " (version) "). A workflow reads it with "
                    code { "uses = \"source-files\", with = { path = \"" (path.display()) "\", … }" } "."
                }
            },
        )),
        Err(UploadError::Invalid(why)) => Ok(result(
            StatusCode::UNPROCESSABLE_ENTITY,
            html! { p.error role="alert" #upload-error { (why) } },
        )),
        Err(UploadError::BadRecords {
            bad,
            records,
            first,
        }) => Ok(result(
            StatusCode::UNPROCESSABLE_ENTITY,
            html! {
                div.error role="alert" #upload-error {
                    p { strong { (bad) " of " (records) " records are bad" } "; nothing was kept. The first:" }
                    ul { @for (at, why) in &first { li { code { (at) } ": " (why) } } }
                }
            },
        )),
        Err(UploadError::Other(e)) => Err(e.into()),
    }
}
