//! `/models`: versions with their metrics and lineage; a model's page with
//! its evaluation and deployments (deploy and roll back for operators);
//! compare two versions: per-intent F1 change as sorted bars and a heatmap
//! of the most confused intents.

use super::chart::{self, Series};
use super::layout::{self, Options};
use super::{SignedIn, WebError, WebState, ago, checked_form, need, pct};
use crate::core::evaluation::Report;
use crate::core::ids::{EnvironmentName, ModelName, ModelRef, RunId};
use crate::core::output::StepOutput;
use crate::pipeline::deploy::Request;
use crate::registry::models::ModelView;
use crate::store::deployments::How;
use crate::store::tokens::Role;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use std::collections::{BTreeMap, BTreeSet};

/// The headline metrics, in this order, when the model has them.
const HEADLINE: &[(&str, &str)] = &[
    ("accuracy", "accuracy"),
    ("macro_f1", "macro F1"),
    ("in_scope_accuracy", "in scope"),
    ("oos_recall", "OOS recall"),
    ("ece", "ECE"),
];

fn metric(m: &ModelView, k: &str) -> Option<f64> {
    m.metrics.get(k).and_then(|v| v.as_f64())
}

pub async fn list(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
) -> Result<Html<String>, WebError> {
    let models = web.service.records().models(200).await?;
    let body = html! {
        @if models.len() >= 2 {
            form.panel method="get" action="/models/compare" {
                h2 { "Compare two versions" }
                label for="a" { "Before" }
                select #a name="a" { @for m in &models { option value=(m.id) selected[m.id == models[1].id] { (m.name) " v" (m.version) } } }
                label for="b" { "After" }
                select #b name="b" { @for m in &models { option value=(m.id) { (m.name) " v" (m.version) } } }
                p { button type="submit" { "Compare" } }
            }
        }
        section.panel #model-list data-refresh {
            @if models.is_empty() { p.muted { "No models yet: a workflow's register step adds one." } }
            @else {
                div.scroll tabindex="0" { table.wide {
                    caption.sr-only { "Registered models, newest first" }
                    thead { tr { th { "model" } th { "trainer" } @for (_, label) in HEADLINE { th.num { (label) } } th { "trained by" } th { "registered" } } }
                    tbody { @for m in &models {
                        tr {
                            td { a href={"/models/" (m.id)} { (m.name) " v" (m.version) } }
                            td { (m.trainer.plugin) }
                            @for (k, _) in HEADLINE { td.num { (metric(m, k).map(|v| if *k == "ece" { format!("{v:.3}") } else { pct(v) }).unwrap_or_else(|| "–".into())) } }
                            td { a href={"/runs/" (m.run)} { "run #" (m.run) } }
                            td { (ago(m.created_at)) }
                        }
                    } }
                } }
            }
        }
    };
    Ok(layout::page(
        &session,
        "Models",
        Options {
            nav: "/models",
            ..Options::default()
        },
        body,
    ))
}

async fn model(web: &WebState, id: i64) -> Result<ModelView, WebError> {
    web.service
        .records()
        .model(&ModelRef::Id(id))
        .await?
        .ok_or_else(|| WebError::not_found(&format!("no model {id}")))
}

/// The evaluation of the run that registered `m`, if it had one.
async fn report(web: &WebState, m: &ModelView) -> Result<Option<Report>, WebError> {
    let Some(run) = web.service.records().run(RunId(m.run)).await? else {
        return Ok(None);
    };
    Ok(run.steps.iter().rev().find_map(|st| {
        match serde_json::from_value::<StepOutput>(st.output.clone()?).ok()? {
            StepOutput::Evaluation(r) => Some(r),
            _ => None,
        }
    }))
}

pub async fn page(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
) -> Result<Html<String>, WebError> {
    let m = model(&web, id).await?;
    let deployments = web.service.records().deployments(Some(&m.name)).await?;
    let history = web
        .service
        .records()
        .deployment_history(&m.name, None, 10)
        .await?;
    let others: Vec<ModelView> = web
        .service
        .records()
        .models(200)
        .await?
        .into_iter()
        .filter(|o| o.name == m.name && o.id != m.id)
        .collect();
    let other_metrics: BTreeMap<&str, f64> = m
        .metrics
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !HEADLINE.iter().any(|(h, _)| h == k))
        .filter_map(|(k, v)| Some((k.as_str(), v.as_f64()?)))
        .collect();
    let body = html! {
        div.grid {
            section.panel aria-labelledby="h-metrics" {
                h2 #h-metrics { "Metrics" }
                ul.stats {
                    @for (k, label) in HEADLINE { @if let Some(v) = metric(&m, k) {
                        li { span.n { (if *k == "ece" { format!("{v:.3}") } else { pct(v) }) } (label) }
                    } }
                }
                details {
                    summary { "All metrics (" (other_metrics.len()) ")" }
                    div.scroll tabindex="0" { table { tbody { @for (k, v) in &other_metrics { tr { td { (k) } td.num { (format!("{v:.4}")) } } } } } }
                }
            }
            section.panel aria-labelledby="h-lineage" {
                h2 #h-lineage { "Lineage" }
                dl {
                    dt { "Trained by" } dd { a href={"/runs/" (m.lineage.run)} { "run #" (m.lineage.run) } " with " (m.trainer.plugin) " " (m.trainer.version) }
                    @if let Some(b) = m.lineage.base_model { dt { "Continued from" } dd { a href={"/models/" (b)} { "model " (b) } } }
                    @if let Some(d) = m.lineage.dataset_version { dt { "Dataset snapshot" } dd { (d) } }
                    dt { "Data hash" } dd { code { (&m.lineage.data_hash[..m.lineage.data_hash.len().min(16)]) } }
                    dt { "Artifact" } dd { code { (&m.artifact.sha256[..m.artifact.sha256.len().min(16)]) } " (" (m.artifact.bytes / 1024) " KiB)" }
                    dt { "Intents" } dd { (m.intents.len()) }
                }
            }
            section.panel #deployments data-refresh aria-labelledby="h-deploy" {
                h2 #h-deploy { "Deployments of " (m.name) }
                @if deployments.is_empty() { p.muted { "Not deployed anywhere." } }
                ul { @for d in &deployments {
                    li { (d.environment) ": v" (d.serving.version) span.muted { " since " (ago(d.since)) }
                        @if session.can(Role::Operator) {
                            " "
                            form.inline method="post" action={"/models/" (m.id) "/rollback"} data-confirm={"Roll " (d.environment) " back to its previous version?"} {
                                (layout::csrf(&session))
                                input type="hidden" name="environment" value=(d.environment);
                                button.secondary type="submit" { "Roll back " span.sr-only { (d.environment) } }
                            }
                        }
                    }
                } }
                @if session.can(Role::Operator) {
                    form method="post" action={"/models/" (m.id) "/deploy"} data-confirm={"Deploy " (m.name) " v" (m.version) "?"} {
                        (layout::csrf(&session))
                        label for="environment" { "Deploy v" (m.version) " to" }
                        input #environment type="text" name="environment" value="staging" required pattern="[a-z0-9][a-z0-9_-]*";
                        label for="reason" { "Reason (optional)" }
                        input #reason type="text" name="reason" maxlength="500";
                        p { button type="submit" { "Deploy" } }
                    }
                }
                @if !history.is_empty() {
                    h3 { "History" }
                    ul { @for h in &history { li { (h.environment) ": " (h.action) " " "v" (h.to.version) " by " (h.actor) " " span.muted { (ago(h.at)) } } } }
                }
            }
        }
        @if !others.is_empty() {
            section.panel aria-labelledby="h-versions" {
                h2 #h-versions { "Other versions" }
                ul { @for o in &others {
                    li { a href={"/models/" (o.id)} { (o.name) " v" (o.version) } " — "
                        a href={"/models/compare?a=" (o.id.min(m.id)) "&b=" (o.id.max(m.id))} { "compare" } }
                } }
            }
        }
    };
    Ok(layout::page(
        &session,
        &format!("Model {} v{}", m.name, m.version),
        Options {
            nav: "/models",
            ..Options::default()
        },
        body,
    ))
}

#[derive(serde::Deserialize)]
pub struct CompareQuery {
    a: i64,
    b: i64,
}

pub async fn compare(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Query(q): Query<CompareQuery>,
) -> Result<Html<String>, WebError> {
    let (a, b) = (model(&web, q.a).await?, model(&web, q.b).await?);
    let (ra, rb) = (report(&web, &a).await?, report(&web, &b).await?);
    let title = format!("{} v{} → {} v{}", a.name, a.version, b.name, b.version);
    let body = match (&ra, &rb) {
        (Some(ra), Some(rb)) => {
            let f1 = |r: &Report| -> BTreeMap<String, f64> {
                r.per_intent
                    .iter()
                    .map(|i| (i.intent.clone(), i.f1))
                    .collect()
            };
            let (fa, fb) = (f1(ra), f1(rb));
            let mut changes: Vec<(String, f64)> = fb
                .iter()
                .filter_map(|(k, vb)| Some((k.clone(), 100.0 * (vb - fa.get(k)?))))
                .filter(|(_, d)| d.abs() >= 0.05)
                .collect();
            changes.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            let shown: Vec<(String, f64)> = if changes.len() > 30 {
                changes[..15]
                    .iter()
                    .chain(&changes[changes.len() - 15..])
                    .cloned()
                    .collect()
            } else {
                changes.clone()
            };
            let only_b: Vec<&String> = fb.keys().filter(|k| !fa.contains_key(*k)).collect();
            // The intents most involved in B's confusions, and their matrix.
            let mut weight: BTreeMap<&str, usize> = BTreeMap::new();
            for c in &rb.confusions {
                *weight.entry(c.truth.as_str()).or_default() += c.count;
                *weight.entry(c.predicted.as_str()).or_default() += c.count;
            }
            let mut top: Vec<(&str, usize)> = weight.into_iter().collect();
            top.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
            let labels: Vec<String> = top.iter().take(10).map(|(l, _)| l.to_string()).collect();
            let keep: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
            let counts: BTreeMap<(&str, &str), u64> = rb
                .confusions
                .iter()
                .filter(|c| keep.contains(c.truth.as_str()) && keep.contains(c.predicted.as_str()))
                .map(|c| ((c.truth.as_str(), c.predicted.as_str()), c.count as u64))
                .collect();
            html! {
                section.panel aria-labelledby="h-headline" {
                    h2 #h-headline { "Headline (" (rb.split) " split)" }
                    div.scroll tabindex="0" { table {
                        thead { tr { th { "metric" } th.num { "v" (a.version) } th.num { "v" (b.version) } th.num { "change" } } }
                        tbody {
                            @for (name, va, vb) in [("accuracy", Some(ra.accuracy), Some(rb.accuracy)), ("macro F1", Some(ra.macro_f1), Some(rb.macro_f1)),
                                ("in scope", ra.in_scope_accuracy, rb.in_scope_accuracy), ("OOS recall", ra.oos_recall, rb.oos_recall)] {
                                @if let (Some(va), Some(vb)) = (va, vb) {
                                    tr { td { (name) } td.num { (pct(va)) } td.num { (pct(vb)) } td.num { (format!("{:+.1} pts", 100.0 * (vb - va))) } }
                                }
                            }
                            tr { td { "ECE (calibration error, lower is better)" } td.num { (format!("{:.3}", ra.ece)) } td.num { (format!("{:.3}", rb.ece)) } td.num { (format!("{:+.3}", rb.ece - ra.ece)) } }
                            tr { td { "mean confidence" } td.num { (pct(ra.mean_confidence)) } td.num { (pct(rb.mean_confidence)) } td.num { (format!("{:+.1} pts", 100.0 * (rb.mean_confidence - ra.mean_confidence))) } }
                        }
                    } }
                    @if ra.split != rb.split || ra.examples != rb.examples {
                        p.note { "The two evaluations scored different data (" (ra.split) ", " (ra.examples) " examples against " (rb.split) ", " (rb.examples) "): compare with care." }
                    }
                }
                section.panel aria-labelledby="h-f1" {
                    h2 #h-f1 { "Per-intent F1 change" }
                    p.muted { (changes.len()) " intents changed by at least 0.05 points"
                        @if changes.len() > shown.len() { "; the 15 largest gains and losses are drawn" } "." }
                    (chart::bars("f1-change", "Per-intent F1 change, points", " pts", &shown))
                    @if !only_b.is_empty() { p { "New in v" (b.version) ": " (only_b.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) } }
                }
                section.panel aria-labelledby="h-calib" {
                    h2 #h-calib { "Calibration" }
                    p.muted { "How often each version is right at each confidence: on the diagonal, a confidence of 80% is right 80% of the time." }
                    @let curve = |r: &Report| r.calibration.iter().map(|c| (c.confidence, c.accuracy)).collect::<Vec<_>>();
                    @let (la, lb) = (format!("v{}", a.version), format!("v{}", b.version));
                    @if ra.calibration.is_empty() && rb.calibration.is_empty() {
                        p.muted { "These evaluations were stored before calibration bins were kept." }
                    } @else {
                        (chart::lines("calibration", "Accuracy against confidence (reliability)", "confidence", &[
                            Series { name: &la, points: curve(ra) },
                            Series { name: &lb, points: curve(rb) },
                            Series { name: "perfect", points: vec![(0.0, 0.0), (1.0, 1.0)] },
                        ]))
                    }
                }
                section.panel aria-labelledby="h-conf" {
                    h2 #h-conf { "Most confused intents in v" (b.version) }
                    (chart::heatmap("confusions", "Confusions among the most confused intents", &labels,
                        |i, j| counts.get(&(labels[i].as_str(), labels[j].as_str())).copied().unwrap_or(0)))
                }
            }
        }
        _ => html! {
            p.note { "Both versions need an evaluation step in the run that registered them to be compared; "
                @if ra.is_none() { "v" (a.version) } @else { "v" (b.version) } " has none." }
        },
    };
    Ok(layout::page(
        &session,
        &format!("Compare {title}"),
        Options {
            nav: "/models",
            ..Options::default()
        },
        body,
    ))
}

fn request(session: &super::session::Session, reason: Option<&str>) -> Request {
    Request {
        how: How::Manual,
        actor: session.name.clone(),
        reason: reason.map(|r| r.chars().take(500).collect()),
        run: None,
    }
}

/// A deploy or rollback form: its CSRF token checked, the operator role
/// required, and the environment it names.
async fn environment_form(
    session: &super::session::Session,
    body: axum::body::Bytes,
) -> Result<(super::Form, EnvironmentName), WebError> {
    let form = checked_form(session, body).await?;
    need(session, Role::Operator)?;
    let env = EnvironmentName::try_from(form.get("environment").unwrap_or(""))
        .map_err(|e| WebError::bad(&format!("environment: {e}")))?;
    Ok((form, env))
}

/// `POST /models/{id}/deploy` (operator).
pub async fn deploy(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let (form, env) = environment_form(&session, body).await?;
    web.service
        .deploy(
            &ModelRef::Id(id),
            &env,
            request(&session, form.get("reason")),
        )
        .await
        .map_err(|e| WebError::new(StatusCode::CONFLICT, &e.to_string()))?;
    Ok(Redirect::to(&format!("/models/{id}")).into_response())
}

/// `POST /models/{id}/rollback` (operator): the environment goes back to
/// the version it served before.
pub async fn rollback(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let (form, env) = environment_form(&session, body).await?;
    let m = model(&web, id).await?;
    let name = ModelName::try_from(m.name.as_str()).map_err(|e| WebError::bad(&e.to_string()))?;
    web.service
        .rollback(&name, &env, None, request(&session, form.get("reason")))
        .await
        .map_err(|e| WebError::new(StatusCode::CONFLICT, &e.to_string()))?;
    Ok(Redirect::to(&format!("/models/{id}")).into_response())
}
