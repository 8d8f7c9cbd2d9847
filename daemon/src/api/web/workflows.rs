//! `/workflows`: every workflow with its triggers, next cron fire, last runs
//! and success rate; a workflow's page with its TOML and scripts, the
//! located errors of a rejected edit, and a trigger button for operators.

use super::layout::{self, Options};
use super::{SignedIn, WebError, WebState, ago, checked_form, need};
use crate::core::state::{RunState, TriggerKind};
use crate::service::submit::Fire;
use crate::service::views;
use crate::store::queue::RunFilter;
use crate::store::tokens::Role;
use crate::workflow::set::Entry;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

/// What stands in for a hidden value.
const HIDDEN: &str = "\"••••••\"";

/// `text` with every value of every `env` table (a process step's
/// environment, which may carry credentials) replaced by [`HIDDEN`]; the
/// rest of the file, its comments and layout, as written. A file this
/// cannot read is not shown (the workflow check read it, so it cannot
/// happen; were it to, a secret must not show).
fn masked(text: &str) -> String {
    use toml_edit::{Item, Value};
    fn leaves(v: &Value, out: &mut Vec<std::ops::Range<usize>>) {
        match v {
            Value::InlineTable(t) => t.iter().for_each(|(_, v)| leaves(v, out)),
            v => out.extend(v.span()),
        }
    }
    fn value(v: &Value, out: &mut Vec<std::ops::Range<usize>>) {
        match v {
            Value::InlineTable(t) => {
                for (k, v) in t.iter() {
                    if k == "env" && v.is_inline_table() {
                        leaves(v, out);
                    } else {
                        value(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| value(v, out)),
            _ => {}
        }
    }
    fn table(t: &toml_edit::Table, out: &mut Vec<std::ops::Range<usize>>) {
        for (k, i) in t.iter() {
            match i {
                Item::Table(t) if k == "env" => {
                    for (_, i) in t.iter() {
                        match i {
                            Item::Value(v) => leaves(v, out),
                            i => out.extend(i.span()),
                        }
                    }
                }
                Item::Value(v) if k == "env" && v.is_inline_table() => leaves(v, out),
                Item::Value(v) => value(v, out),
                Item::Table(t) => table(t, out),
                Item::ArrayOfTables(a) => a.iter().for_each(|t| table(t, out)),
                Item::None => {}
            }
        }
    }
    let Ok(doc) = toml_edit::Document::parse(text) else {
        return "# (this file cannot be shown here; read it on disk)".to_owned();
    };
    let mut spans = Vec::new();
    table(doc.as_table(), &mut spans);
    spans.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in spans {
        if r.start < at || r.end > text.len() {
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push_str(HIDDEN);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

fn triggers(e: &Entry) -> Vec<String> {
    let Some(g) = &e.good else { return vec![] };
    let t = &g.workflow.trigger;
    let mut out = Vec::new();
    if let Some(c) = &t.cron {
        out.push(format!("cron {} ({})", c.expr, c.timezone));
    }
    if !t.watch.is_empty() {
        out.push(format!("watch {} path(s)", t.watch.len()));
    }
    for on in &t.on {
        out.push(format!("on {on}"));
    }
    if t.when.is_some() {
        out.push("condition script".into());
    }
    out.push("manual".into());
    out
}

fn next_fire(e: &Entry) -> Option<chrono::DateTime<chrono::Utc>> {
    e.good
        .as_ref()?
        .workflow
        .trigger
        .cron
        .as_ref()?
        .next_after(chrono::Utc::now())
}

pub async fn list(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
) -> Result<Html<String>, WebError> {
    let s = &web.service;
    let mut entries = s.workflows.entries();
    entries.sort_by_key(|e| e.name());
    let mut rows = Vec::new();
    for e in &entries {
        let runs = s
            .records()
            .runs(&RunFilter {
                workflow: Some(e.name()),
                limit: 20,
                ..RunFilter::default()
            })
            .await?;
        let done: Vec<_> = runs.iter().filter(|r| !r.state.is_active()).collect();
        let ok = done
            .iter()
            .filter(|r| r.state == RunState::Succeeded)
            .count();
        rows.push((e, runs.first().cloned(), ok, done.len()));
    }
    let body = html! {
        section.panel #workflow-list data-refresh {
            @if rows.is_empty() { p.muted { "No workflows. Put a workflow file in a watched folder (see " code { "[daemon] workflow_dirs" } ")." } }
            @else {
                div.scroll tabindex="0" { table.wide {
                    caption.sr-only { "Workflows with their triggers, next cron fire, last run and success rate" }
                    thead { tr { th { "workflow" } th { "triggers" } th { "next cron fire" } th { "last run" } th.num { "success (last 20)" } } }
                    tbody { @for (e, last, ok, done) in &rows {
                        tr {
                            td { a href={"/workflows/" (e.name())} { (e.name()) }
                                @if e.error.is_some() { " " (layout::state("failed")) span.sr-only { "the file on disk was rejected" } } }
                            td { (triggers(e).join(", ")) }
                            td { (next_fire(e).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| "–".into())) }
                            td { @match last { Some(r) => { a href={"/runs/" (r.id)} { "#" (r.id) } " " (layout::state(r.state.as_str())) " " span.muted { (ago(r.started_at)) } }, None => span.muted { "never" } } }
                            td.num { @if *done > 0 { (ok) " / " (done) } @else { "–" } }
                        }
                    } }
                } }
            }
        }
    };
    Ok(layout::page(
        &session,
        "Workflows",
        Options {
            nav: "/workflows",
            live: Some("/live/events".into()),
            ..Options::default()
        },
        body,
    ))
}

pub async fn page(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(name): Path<String>,
) -> Result<Html<String>, WebError> {
    let s = &web.service;
    let e = s
        .workflows
        .get(&name)
        .ok_or_else(|| WebError::not_found(&format!("no workflow named `{name}`")))?;
    let fires = s.records().fires(&name, 10).await?;
    let detail = views::workflow_detail(&e, &fires);
    let runs = s
        .records()
        .runs(&RunFilter {
            workflow: Some(name.clone()),
            limit: 10,
            ..RunFilter::default()
        })
        .await?;
    let scripts: Vec<(String, String)> = e
        .good
        .iter()
        .flat_map(|g| g.workflow.steps.iter())
        .flat_map(|st| [st.when.as_ref(), st.params.as_ref()])
        .flatten()
        .chain(
            e.good
                .as_ref()
                .and_then(|g| g.workflow.trigger.when.as_ref()),
        )
        .map(|r| {
            let origin = match &r.0.origin {
                crate::script::Origin::File(p) => p.display().to_string(),
                crate::script::Origin::Inline { file, line, column } => {
                    format!("{}:{line}:{column} (inline)", file.display())
                }
            };
            (origin, r.0.source.clone())
        })
        .collect();
    let body = html! {
        div.grid {
            section.panel aria-labelledby="h-about" {
                h2 #h-about { "About" }
                p { (detail["description"].as_str().unwrap_or("")) }
                p.muted { "File " code { (e.file.display()) } }
                p { "Triggers: " (triggers(&e).join(", ")) }
                @if let Some(t) = next_fire(&e) { p { "Next cron fire: " (t.format("%Y-%m-%d %H:%M:%S UTC")) } }
                @if session.can(Role::Operator) {
                    @if e.good.is_some() {
                        form method="post" action={"/workflows/" (name) "/trigger"} {
                            (layout::csrf(&session))
                            button #trigger type="submit" { "Trigger a run" }
                        }
                    }
                } @else {
                    p.muted { "Triggering needs the operator role." }
                }
            }
            section.panel #recent-runs data-refresh aria-labelledby="h-runs" {
                h2 #h-runs { "Last runs" }
                @if runs.is_empty() { p.muted { "No runs yet." } }
                ul { @for r in &runs {
                    li { a href={"/runs/" (r.id)} { "#" (r.id) } " " (layout::state(r.state.as_str())) " " (r.trigger.as_str()) " " span.muted { (ago(r.started_at)) } }
                } }
            }
        }
        @if let Some(err) = &e.error {
            section.panel aria-labelledby="h-rejected" {
                h2 #h-rejected { "The file on disk was rejected" }
                p { "The last good version stays in service until the file passes." }
                pre.error role="alert" tabindex="0" { (err) }
            }
        }
        @if let Some(steps) = detail["steps"].as_array() {
            section.panel aria-labelledby="h-steps" {
                h2 #h-steps { "Steps" }
                ol { @for st in steps {
                    li { strong { (st["id"].as_str().unwrap_or("")) } " — " (st["action"].as_str().unwrap_or(""))
                        @if let Some(n) = st["needs"].as_array().filter(|n| !n.is_empty()) {
                            span.muted { " after " (n.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")) }
                        } }
                } }
            }
        }
        @if let Some(g) = &e.good {
            section.panel aria-labelledby="h-toml" {
                h2 #h-toml { "Workflow file (in service, read-only)" }
                p.muted { "The values of a step's " code { "env" } " are hidden here: they may be credentials." }
                (layout::toml(&masked(&g.text)))
            }
        }
        @for (origin, source) in &scripts {
            section.panel {
                h2 { "Script " code { (origin) } }
                pre.code tabindex="0" { code { (source) } }
            }
        }
    };
    Ok(layout::page(
        &session,
        &format!("Workflow {name}"),
        Options {
            nav: "/workflows",
            live: Some("/live/events".into()),
            ..Options::default()
        },
        body,
    ))
}

/// `POST /workflows/{name}/trigger` (operator).
pub async fn trigger(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    checked_form(&session, body).await?;
    need(&session, Role::Operator)?;
    let run = web
        .service
        .fire(Fire::now(&name, TriggerKind::Manual))
        .await
        .map_err(|e| WebError::new(axum::http::StatusCode::CONFLICT, &e.to_string()))?;
    tracing::info!(workflow = %name, run = run.id, by = %session.name, "run triggered from the dashboard");
    Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn a_steps_environment_values_are_hidden_and_nothing_else_is() {
        let text = r#"# env = { A = "comment stays" }
name = "x"
[[step]]
id = "a"
env = { HF_TOKEN = "hf_secret", NESTED = { K = 'also' } }
with = { env = "production" }
[[step]]
id = "b"
[step.env]
API_KEY = """
multi"""
N = 3
"#;
        let m = masked(text);
        for secret in ["hf_secret", "also", "multi", "N = 3"] {
            assert!(!m.contains(secret), "{secret} shows in:\n{m}");
        }
        for kept in [
            "# env = { A = \"comment stays\" }",
            "HF_TOKEN = \"••••••\"",
            "API_KEY = \"••••••\"",
            "with = { env = \"production\" }",
            "id = \"b\"",
        ] {
            assert!(m.contains(kept), "{kept} missing from:\n{m}");
        }
        assert!(!masked("token = [\"secret\"").contains("secret"));
    }
}
