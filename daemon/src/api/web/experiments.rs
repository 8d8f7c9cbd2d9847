//! `/experiments`: every experiment and canary with its arms and traffic;
//! one experiment's page shows each metric's effect with its always-valid
//! interval as a forest plot, the p-values and chance to win, the sample
//! ratio check and the decisions taken on the model since it started.

use super::chart::{self, Interval};
use super::layout::{self, Options};
use super::{SignedIn, WebError, WebState, ago, pct};
use crate::pipeline::experiment::ExperimentError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use maud::html;

impl From<ExperimentError> for WebError {
    fn from(e: ExperimentError) -> WebError {
        match e {
            ExperimentError::NotFound(m) => WebError::not_found(&m),
            ExperimentError::Invalid(m) => WebError::bad(&m),
            ExperimentError::Conflict(m) => WebError::new(StatusCode::CONFLICT, &m),
            ExperimentError::Other(e) => e.into(),
        }
    }
}

fn arms(e: &crate::service::experiments::ExperimentView) -> String {
    e.spec
        .arms
        .iter()
        .map(|a| {
            let v = a.version.map(|v| format!(" v{v}")).unwrap_or_default();
            format!("{}{v} ({}%)", a.name, fmt_weight(a.weight))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn fmt_weight(w: f64) -> String {
    let w = if w <= 1.0 { w * 100.0 } else { w };
    format!("{w:.0}")
}

/// `GET /experiments`
pub async fn list(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
) -> Result<Html<String>, WebError> {
    let all = web.service.experiment_list(None, false).await?;
    let body = html! {
        @if all.is_empty() {
            p.muted { "No experiment has run yet. Start one with " code { "coach experiment start" } " or a workflow's deploy step with a canary." }
        } @else {
            div.scroll tabindex="0" { table {
                caption.sr-only { "Experiments, newest first" }
                thead { tr { th { "experiment" } th { "model" } th { "kind" } th { "state" } th { "arms (traffic)" } th { "started" } th { "decision" } } }
                tbody { @for e in &all { tr {
                    td { a href={"/experiments/" (e.name)} { (e.name) } }
                    td { (e.model) " in " (e.environment) }
                    td { (e.kind) @if let Some(p) = e.percent { " at " (p) "%" } }
                    td { (layout::state(&e.state)) }
                    td { (arms(e)) }
                    td { (ago(e.started_at)) }
                    td { (e.decision.as_deref().unwrap_or("–")) }
                } } }
            } }
        }
    };
    Ok(layout::page(
        &session,
        "Experiments",
        Options {
            nav: "/experiments",
            ..Options::default()
        },
        body,
    ))
}

/// `GET /experiments/{name}`
pub async fn page(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
    Path(name): Path<String>,
) -> Result<Html<String>, WebError> {
    if !crate::core::ids::is_identifier(&name) {
        return Err(WebError::not_found("no such experiment"));
    }
    let e = web.service.experiment(&name).await?;
    let history: Vec<_> = web
        .service
        .records()
        .deployment_history(&e.model, Some(&e.environment), 50)
        .await?
        .into_iter()
        .filter(|h| h.at >= e.started_at)
        .collect();
    let results = e.results.as_ref();
    // Each treatment's p-value and chance to win at each look, over hours
    // since the start.
    let looks = match web.service.store.experiment(&e.name).await? {
        Some(row) => web.service.store.looks(row.id).await?,
        None => Vec::new(),
    };
    let mut p_series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut win_series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (at, look) in &looks {
        let hours = (*at - e.started_at).num_seconds() as f64 / 3600.0;
        for c in look.as_array().into_iter().flatten() {
            let arm = c["arm"].as_str().unwrap_or("?").to_owned();
            for (series, key) in [
                (&mut p_series, "p_value"),
                (&mut win_series, "chance_to_win"),
            ] {
                if let Some(v) = c[key].as_f64() {
                    match series.iter_mut().find(|(a, _)| *a == arm) {
                        Some((_, pts)) => pts.push((hours, v)),
                        None => series.push((arm.clone(), vec![(hours, v)])),
                    }
                }
            }
        }
    }

    let body = html! {
        section.panel #arms data-refresh aria-labelledby="h-arms" {
            h2 #h-arms { "Arms and traffic" }
            p { (e.kind) " of " strong { (e.model) } " in " (e.environment) ", " (layout::state(&e.state))
                ", started " (ago(e.started_at)) " by " (e.created_by) " (" (e.source) ")"
                @if let Some(p) = e.percent { "; the new version gets " (p) "% now" } }
            @if let Some(r) = results {
                div.scroll tabindex="0" { table {
                    caption.sr-only { "Each arm's share and traffic" }
                    thead { tr { th { "arm" } th { "version" } th.num { "weight" } th.num { "units" } th.num { "conversations" } th.num { "requests" } th.num { "errors" } th.num { "p99 latency" } } }
                    tbody { @for a in &r.arms { tr {
                        td { (a.arm) } td { "v" (a.version) } td.num { (fmt_weight(a.weight)) "%" } td.num { (a.units) }
                        td.num { (a.conversations) } td.num { (a.requests) } td.num { (a.errors) }
                        td.num { (a.latency_p99_ms.map(|l| format!("{l:.0} ms")).unwrap_or_else(|| "–".into())) }
                    } } }
                } }
                @if r.srm.flagged {
                    p.error role="alert" { "Sample ratio mismatch: the arms' units are not in the proportions asked for (χ² "
                        (format!("{:.1}", r.srm.chi2)) ", p = " (format!("{:.2e}", r.srm.p_value)) "). Something routes or logs unevenly; do not trust the effects until it is explained." }
                } @else {
                    p.muted { "Sample ratio check: no mismatch (p = " (format!("{:.3}", r.srm.p_value)) ")." }
                }
                p.muted { @if r.ready { "Every arm has its " (r.min_units) " units." } @else { "Waiting for " (r.min_units) " units in every arm before deciding." }
                    " α = " (r.alpha) "; running for " (super::took(r.elapsed_s as i64)) @if r.expired { ", past its maximum duration" } "." }
            }
        }
        @if let Some(r) = results {
            section.panel #effects data-refresh aria-labelledby="h-effects" {
                h2 #h-effects { "Effects" }
                @let rows: Vec<Interval> = r.metrics.iter().flat_map(|m| m.comparisons.iter().filter_map(move |c| {
                    let (lo, hi) = c.ci?;
                    Some(Interval { label: format!("{}: {} ({})", c.arm, m.metric, m.role), estimate: c.estimate?, lo, hi })
                })).collect();
                (chart::forest("effects", "Each treatment against the control, with its always-valid interval", "", &rows))
                div.scroll tabindex="0" { table {
                    caption { "Per metric" }
                    thead { tr { th { "metric" } th { "arm" } th.num { "control" } th.num { "arm's value" } th.num { "lift" } th.num { "p (Holm)" } th.num { "chance to win" } th { "verdict" } } }
                    tbody { @for m in &r.metrics { @for c in &m.comparisons { tr {
                        td { (m.metric) span.muted { " " (m.role) } }
                        td { (c.arm) }
                        td.num { (m.arms.first().and_then(|a| a.value).map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into())) }
                        td.num { (m.arms.iter().find(|a| a.arm == c.arm).and_then(|a| a.value).map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into())) }
                        td.num { (c.lift.map(pct).unwrap_or_else(|| "–".into())) }
                        td.num { (c.p_adjusted.map(|p| format!("{p:.3}")).unwrap_or_else(|| "–".into())) }
                        td.num { (c.chance_to_win.map(pct).unwrap_or_else(|| "–".into())) }
                        td { @if let Some(u) = &c.unavailable { span.muted { (u) } } @else { (layout::state(&c.verdict)) } }
                    } } } }
                } }
                @for b in &r.breaches { p.error { "Guardrail breached: " (b.arm) " on " (b.metric) ": " (b.reason) } }
                @for w in &r.winners { p { strong { "Winning: " } (w.summary) } }
            }
        }
        section.panel #over-time data-refresh aria-labelledby="h-over-time" {
            h2 #h-over-time { "Over time" }
            @if looks.len() < 2 {
                p.muted { "The curves appear after two looks that found something new (the serving daemon looks every experiment_interval)." }
            } @else {
                p.muted { "The primary metric at each look, by hours since the start. The p-values are always valid: looking often does not inflate them." }
                (chart::lines("p-over-time", "p-value (Holm-adjusted) against hours", "hours", &as_series(&p_series)))
                (chart::lines("win-over-time", "Chance to win against hours", "hours", &as_series(&win_series)))
            }
        }
        section.panel #decisions data-refresh aria-labelledby="h-decisions" {
            h2 #h-decisions { "Decisions" }
            @if let Some(d) = &e.decision_now { p { "A look now would " strong { (decision_word(d)) } ": " (d.reason()) } }
            @if let Some(d) = &e.decision { p { "Decided: " strong { (d) } @if let Some(r) = &e.reason { " — " (r) } } }
            @if history.is_empty() { p.muted { "No deployment change for " (e.model) " in " (e.environment) " since it started." } }
            @else {
                ol { @for h in &history { li {
                    (h.action) " to v" (h.to.version) @if let Some(f) = &h.from { " from v" (f.version) } " by " (h.actor) " (" (h.how) ") " (ago(h.at))
                    @if let Some(r) = &h.reason { br; span.muted { (r) } }
                } } }
            }
        }
    };
    Ok(layout::page(
        &session,
        &format!("Experiment {}", e.name),
        Options {
            nav: "/experiments",
            live: Some("/live/events".into()),
            ..Options::default()
        },
        body,
    ))
}

/// Named points as chart series (at most four).
fn as_series(v: &[(String, Vec<(f64, f64)>)]) -> Vec<chart::Series<'_>> {
    v.iter()
        .take(4)
        .map(|(name, points)| chart::Series {
            name,
            points: points.clone(),
        })
        .collect()
}

fn decision_word(d: &crate::experiment::results::Decision) -> &'static str {
    use crate::experiment::results::Decision;
    match d {
        Decision::Promote { .. } => "promote",
        Decision::Rollback { .. } => "roll back",
        Decision::Continue { .. } => "continue",
    }
}
