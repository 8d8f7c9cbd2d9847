//! `/runs` and a run's page: the step timeline, live progress and logs,
//! metric charts per epoch, the evaluation (per-intent table, confusions),
//! the gate's verdict, and cancel. Also the dashboard's event streams, the
//! API's own streams behind the session cookie.

use super::chart::{self, Series};
use super::layout::{self, Options};
use super::{SignedIn, WebError, WebState, ago, checked_form, need, pct, took};
use crate::api::auth::Caller;
use crate::core::evaluation::Report;
use crate::core::ids::RunId;
use crate::core::output::StepOutput;
use crate::core::state::RunState;
use crate::service::views::{MetricView, RunDetail, StepView};
use crate::store::queue::RunFilter;
use crate::store::tokens::Role;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    workflow: Option<String>,
    before: Option<i64>,
}

pub async fn list(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, WebError> {
    let state: Option<RunState> = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            RunState::ALL
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| WebError::bad(&format!("no run state `{s}`")))?,
        ),
        None => None,
    };
    let runs = web
        .service
        .records()
        .runs(&RunFilter {
            workflow: q.workflow.clone().filter(|w| !w.is_empty()),
            state,
            before: q.before,
            limit: 50,
        })
        .await?;
    let body = html! {
        form.panel method="get" action="/runs" role="search" {
            label for="state" { "State" }
            select #state name="state" {
                option value="" { "any" }
                @for st in RunState::ALL { option value=(st.as_str()) selected[state == Some(st)] { (st.as_str()) } }
            }
            label for="workflow" { "Workflow" }
            input #workflow type="search" name="workflow" value=(q.workflow.clone().unwrap_or_default());
            p { button type="submit" { "Filter" } }
        }
        section.panel #run-list data-refresh {
            @if runs.is_empty() { p.muted { "No runs match." } }
            @else {
                div.scroll tabindex="0" { table.wide {
                    caption.sr-only { "Runs, newest first" }
                    thead { tr { th { "run" } th { "workflow" } th { "state" } th { "trigger" } th { "started" } th { "took" } th { "error" } } }
                    tbody { @for r in &runs {
                        tr {
                            td { a href={"/runs/" (r.id)} { "#" (r.id) } }
                            td { a href={"/workflows/" (r.workflow)} { (r.workflow) } }
                            td { (layout::state(r.state.as_str())) }
                            td { (r.trigger.as_str()) }
                            td { (ago(r.started_at)) }
                            td { (r.finished_at.map(|f| took((f - r.started_at).num_seconds())).unwrap_or_default()) }
                            td { (r.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("")) }
                        }
                    } }
                } }
                @if runs.len() == 50 {
                    @let last = runs.last().map(|r| r.id).unwrap_or(0);
                    @let older = form_urlencoded::Serializer::new(String::new())
                        .append_pair("before", &last.to_string())
                        .append_pair("state", q.state.as_deref().unwrap_or_default())
                        .append_pair("workflow", q.workflow.as_deref().unwrap_or_default())
                        .finish();
                    p { a href={"/runs?" (older)} { "Older runs" } }
                }
            }
        }
    };
    Ok(layout::page(
        &session,
        "Runs",
        Options {
            nav: "/runs",
            live: Some("/live/events".into()),
            ..Options::default()
        },
        body,
    ))
}

fn output(step: &StepView) -> Option<StepOutput> {
    serde_json::from_value(step.output.clone()?).ok()
}

/// Epoch metrics of a run as chart series: losses together, the rest
/// (accuracies, F1) together.
fn charts(metrics: &[MetricView]) -> Markup {
    let mut by: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for m in metrics
        .iter()
        .filter(|m| m.epoch > 0 && m.value.is_finite())
    {
        by.entry((m.step.clone(), m.name.clone()))
            .or_default()
            .push((m.epoch as f64, m.value));
    }
    let (loss, rest): (Vec<_>, Vec<_>) = by.iter().partition(|((_, n), _)| n.contains("loss"));
    type Named<'a> = (&'a (String, String), &'a Vec<(f64, f64)>);
    let series = |v: &[Named]| -> Vec<(String, Vec<(f64, f64)>)> {
        v.iter()
            .take(4)
            .map(|((step, name), pts)| (format!("{step}: {name}"), (*pts).clone()))
            .collect()
    };
    let loss = series(&loss);
    let rest = series(&rest);
    let draw = |id: &str, title: &str, v: &[(String, Vec<(f64, f64)>)]| {
        let s: Vec<Series> = v
            .iter()
            .map(|(n, p)| Series {
                name: n,
                points: p.clone(),
            })
            .collect();
        chart::lines(id, title, "epoch", &s)
    };
    html! {
        @if loss.is_empty() && rest.is_empty() { p.muted { "No per-epoch metrics yet." } }
        @if !loss.is_empty() { (draw("chart-loss", "Loss per epoch", &loss)) }
        @if !rest.is_empty() { (draw("chart-quality", "Validation metrics per epoch", &rest)) }
    }
}

fn evaluation(step: &str, r: &Report) -> Markup {
    let mut intents = r.per_intent.clone();
    intents.sort_by(|a, b| a.f1.total_cmp(&b.f1));
    html! {
        section.panel aria-labelledby={"h-eval-" (step)} {
            h2 id={"h-eval-" (step)} { "Evaluation (" (step) ", " (r.split) " split, " (r.examples) " examples)" }
            ul.stats {
                li { span.n { (pct(r.accuracy)) } "accuracy" }
                li { span.n { (pct(r.macro_f1)) } "macro F1" }
                @if let Some(v) = r.in_scope_accuracy { li { span.n { (pct(v)) } "in scope" } }
                @if let Some(v) = r.oos_recall { li { span.n { (pct(v)) } "OOS recall" } }
                li { span.n { (format!("{:.3}", r.ece)) } "ECE" }
            }
            details {
                summary { "Per intent (weakest first)" }
                div.scroll tabindex="0" { table {
                    thead { tr { th { "intent" } th.num { "precision" } th.num { "recall" } th.num { "F1" } th.num { "support" } } }
                    tbody { @for i in &intents {
                        tr { td { (i.intent) } td.num { (pct(i.precision)) } td.num { (pct(i.recall)) } td.num { (pct(i.f1)) } td.num { (i.support) } }
                    } }
                } }
            }
            @if !r.confusions.is_empty() {
                h3 { "Most confused" }
                div.scroll tabindex="0" { table {
                    thead { tr { th { "true intent" } th { "predicted" } th.num { "count" } } }
                    tbody { @for c in r.confusions.iter().take(10) {
                        tr { td { (c.truth) } td { (c.predicted) } td.num { (c.count) } }
                    } }
                } }
            }
        }
    }
}

fn timeline(run: &RunDetail) -> Markup {
    html! {
        @if run.steps.is_empty() { p.muted { "No step has started." } }
        ol.timeline { @for st in &run.steps {
            li {
                span.step { (st.step) }
                (layout::state(st.state.as_str()))
                span.muted { (st.action) @if st.attempt > 1 { ", attempt " (st.attempt) } }
                span { (st.finished_at.map(|f| took((f - st.started_at).num_seconds())).unwrap_or_else(|| "running".into())) }
                @if let Some(e) = &st.error { span.error { (e) } }
                @if let Some(StepOutput::Verdict(v)) = output(st) {
                    span { strong { "gate: " @if v.pass { "pass" } @else { "fail" } } @if let Some(r) = &v.reason { " — " (r) } }
                }
            }
        } }
    }
}

pub async fn page(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
) -> Result<Html<String>, WebError> {
    let s = &web.service;
    let run = s
        .records()
        .run(RunId(id))
        .await?
        .ok_or_else(|| WebError::not_found(&format!("no run {id}")))?;
    s.bus.logs_flushed(crate::api::runs::LOGS_FLUSH_WAIT).await;
    let logs = s.records().logs(RunId(id), 0, 500).await?;
    let active = run.run.state.is_active();
    let evaluations: Vec<(String, Report)> = run
        .steps
        .iter()
        .filter_map(|st| match output(st) {
            Some(StepOutput::Evaluation(r)) => Some((st.step.clone(), r)),
            _ => None,
        })
        .collect();
    let body = html! {
        div.grid {
            section.panel #summary data-refresh aria-labelledby="h-summary" {
                h2 #h-summary { "Run" }
                p { a href={"/workflows/" (run.run.workflow)} { (run.run.workflow) } " " (layout::state(run.run.state.as_str())) }
                p.muted { "Triggered by " (run.run.trigger.as_str()) ", started " (ago(run.run.started_at))
                    @if let Some(f) = run.run.finished_at { ", took " (took((f - run.run.started_at).num_seconds())) } }
                @if let Some(e) = &run.run.error { p.error role="alert" { (e) } }
                @if let Some(m) = &run.model { p { "Registered " a href={"/models/" (m.id)} { (m.name) " v" (m.version) } } }
                @if active && session.can(Role::Operator) {
                    form method="post" action={"/runs/" (id) "/cancel"} data-confirm="Cancel this run?" {
                        (layout::csrf(&session))
                        button.danger #cancel type="submit" { "Cancel run" }
                    }
                }
            }
            section.panel aria-labelledby="h-progress" {
                h2 #h-progress { "Progress" }
                progress #progress-bar .progress max="100" value=(if active { 0 } else { 100 }) aria-labelledby="h-progress" {}
                p #progress-text aria-live="polite" { @if active { "waiting for the next update…" } @else { "finished" } }
            }
        }
        section.panel #timeline data-refresh aria-labelledby="h-steps" {
            h2 #h-steps { "Steps" }
            (timeline(&run))
        }
        section.panel #charts data-refresh aria-labelledby="h-charts" {
            h2 #h-charts { "Metrics per epoch" }
            (charts(&run.metrics))
        }
        @for (step, r) in &evaluations { (evaluation(step, r)) }
        section.panel aria-labelledby="h-log" {
            h2 #h-log { "Log" }
            ol #log .log aria-live="off" tabindex="0" aria-label="Run log" {
                @for l in &logs { li class=(l.level) { @if let Some(st) = &l.step { "[" (st) "] " } (l.message) } }
            }
        }
    };
    Ok(layout::page(
        &session,
        &format!("Run #{id}"),
        Options {
            nav: "/runs",
            live: active.then(|| format!("/live/runs/{id}")),
            reload_on_finish: true,
        },
        body,
    ))
}

/// `POST /runs/{id}/cancel` (operator).
pub async fn cancel(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    checked_form(&session, body).await?;
    need(&session, Role::Operator)?;
    web.service.cancel(RunId(id)).await?;
    tracing::info!(run = id, by = %session.name, "run cancelled from the dashboard");
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

async fn caller(web: &WebState, session: &super::session::Session) -> Result<Caller, WebError> {
    web.service
        .token(&session.token_hash)
        .await?
        .map(Caller)
        .ok_or_else(|| WebError::new(axum::http::StatusCode::UNAUTHORIZED, "sign in again"))
}

/// How often an open stream checks that its session is still live.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// `res`, a stream, ended once the session of cookie value `id` is not
/// live any more (signed out, expired, idle): the API's streams end only
/// when the token is revoked.
fn while_signed_in(web: &WebState, headers: &axum::http::HeaderMap, res: Response) -> Response {
    use futures_util::StreamExt;
    let Some(id) = super::session::cookie_value(headers) else {
        return res;
    };
    let web = web.clone();
    let gone = async move {
        loop {
            tokio::time::sleep(SESSION_CHECK).await;
            if !web.sessions.alive(&id) {
                return;
            }
        }
    };
    let (parts, body) = res.into_parts();
    let body = axum::body::Body::from_stream(body.into_data_stream().take_until(gone));
    Response::from_parts(parts, body)
}

/// `GET /live/runs/{id}`: the API's run stream, for the signed-in browser.
pub async fn live_run(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    headers: axum::http::HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let c = caller(&web, &session).await?;
    let res = crate::api::events::run_events(
        State(web.service.clone()),
        axum::Extension(c),
        crate::api::extract::Path(id),
    )
    .await
    .into_response();
    Ok(while_signed_in(&web, &headers, res))
}

/// `GET /live/events`: every event, for pages that refresh on change.
pub async fn live_all(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    headers: axum::http::HeaderMap,
) -> Result<Response, WebError> {
    let c = caller(&web, &session).await?;
    let res = crate::api::events::firehose(State(web.service.clone()), axum::Extension(c))
        .await
        .into_response();
    Ok(while_signed_in(&web, &headers, res))
}
