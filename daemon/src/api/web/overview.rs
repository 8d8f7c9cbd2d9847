//! `/`: runs by state, the GPU queue with each wait's reason, the GPUs,
//! deployments per environment, running experiments and recent failures.

use super::layout::{self, Options};
use super::{SignedIn, WebError, WebState, ago};
use crate::core::state::RunState;
use crate::store::queue::RunFilter;
use axum::extract::State;
use axum::response::Html;
use chrono::Datelike;
use maud::html;
use std::collections::BTreeMap;

fn colour(s: RunState) -> &'static str {
    match s {
        RunState::Queued => "#5b6b7a",
        RunState::Running => "#0b5cad",
        RunState::Succeeded => "#1a6b32",
        RunState::Failed => "#b3261e",
        RunState::Cancelled => "#6b7680",
        RunState::Interrupted => "#8a5300",
    }
}

/// GPU-hours for people: two decimals, more for a few minutes' worth.
fn hours_text(h: f64) -> String {
    if h < 0.1 {
        format!("{h:.4}")
    } else {
        format!("{h:.2}")
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

pub async fn page(
    State(web): State<WebState>,
    SignedIn(session): SignedIn,
) -> Result<Html<String>, WebError> {
    let s = &web.service;
    let counts: std::collections::HashMap<RunState, i64> =
        s.store.run_counts().await?.into_iter().collect();
    let failures = s
        .records()
        .runs(&RunFilter {
            state: Some(RunState::Failed),
            limit: 6,
            ..RunFilter::default()
        })
        .await?;
    let deployments = s.records().deployments(None).await?;
    let mut by_env: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for d in &deployments {
        by_env.entry(d.environment.as_str()).or_default().push(d);
    }
    let experiments = s.experiment_list(None, true).await?;
    let gpus = s.gpu_view();
    // GPU-hours per queue since the first of this month (UTC), and their
    // cost at the configured price.
    let now = chrono::Utc::now();
    let month_start = now
        .date_naive()
        .with_day(1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let usage = s.store.gpu_hours_since(month_start).await?;
    let price = s.config().gpus.price;
    let queue = s.queue_view();
    let parts: Vec<(&str, u64, &str)> = RunState::ALL
        .iter()
        .map(|st| {
            (
                st.as_str(),
                counts.get(st).copied().unwrap_or(0) as u64,
                colour(*st),
            )
        })
        .collect();
    let body = html! {
        div.grid {
            section.panel #runs-by-state data-refresh aria-labelledby="h-runs" {
                h2 #h-runs { "Runs by state" }
                ul.stats {
                    @for st in RunState::ALL {
                        li { span.n { (counts.get(&st).copied().unwrap_or(0)) } a href={"/runs?state=" (st.as_str())} { (st.as_str()) } }
                    }
                }
                (super::chart::stacked("runs-chart", "Runs by state", &parts))
            }
            section.panel #failures data-refresh aria-labelledby="h-fail" {
                h2 #h-fail { "Recent failures" }
                @if failures.is_empty() { p.muted { "No failed runs." } }
                @else {
                    ul {
                        @for r in &failures {
                            li {
                                a href={"/runs/" (r.id)} { (r.workflow) " #" (r.id) } " "
                                span.muted { (ago(r.finished_at.unwrap_or(r.started_at))) } br;
                                span { (r.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("no reason recorded")) }
                            }
                        }
                    }
                }
            }
            section.panel #gpu-queue data-refresh aria-labelledby="h-queue" {
                h2 #h-queue { "GPU queue" }
                @if queue.waiting.is_empty() && queue.running.is_empty() && queue.slurm.is_empty() { p.muted { "Nothing waits for a GPU and nothing holds one." } }
                @if !queue.waiting.is_empty() {
                    div.scroll tabindex="0" { table {
                        caption.sr-only { "Jobs waiting for GPUs" }
                        thead { tr { th { "#" } th { "run / step" } th.num { "GPUs" } th { "waiting" } th { "why" } } }
                        tbody { @for w in &queue.waiting {
                            tr {
                                td { (w.position) }
                                td { a href={"/runs/" (w.owner.run)} { (w.owner.workflow) " #" (w.owner.run) } " / " (w.owner.step) }
                                td.num { (w.gpus) }
                                td { (ago(w.waiting_since)) }
                                td { (w.reason) }
                            }
                        } }
                    } }
                }
                @if !queue.running.is_empty() {
                    h3 { "Holding GPUs" }
                    ul { @for a in &queue.running {
                        li { a href={"/runs/" (a.owner.run)} { (a.owner.workflow) " #" (a.owner.run) } " / " (a.owner.step) ": " (a.devices.join(", ")) " since " (ago(a.since)) }
                    } }
                }
                @if !queue.slurm.is_empty() {
                    h3 { "Slurm jobs" }
                    ul { @for j in &queue.slurm { li { (j.job) " " (j.state) " " (j.reason) } } }
                }
            }
            section.panel #gpus data-refresh aria-labelledby="h-gpus" {
                h2 #h-gpus { "GPUs" }
                p.muted { "Inventory: " (format!("{:?}", gpus.source).to_lowercase()) " — " (gpus.reason) }
                @if !gpus.gpus.is_empty() {
                    div.scroll tabindex="0" { table {
                        caption.sr-only { "GPUs with utilisation, memory, allocations and health" }
                        thead { tr { th { "GPU" } th.num { "busy" } th.num { "memory" } th { "held by" } th { "health" } } }
                        tbody { @for g in &gpus.gpus {
                            tr {
                                td { (g.gpu.index) " " span.muted { (g.gpu.name) } }
                                td.num { (g.gpu.utilization.map(|u| format!("{u}%")).unwrap_or_else(|| "–".into())) }
                                td.num { (gib(g.gpu.memory_used)) " / " (gib(g.gpu.memory_total)) }
                                td { (g.allocated_to.iter().filter_map(|v| v["run"].as_i64()).map(|r| format!("run {r}")).collect::<Vec<_>>().join(", ")) }
                                td { @if g.gpu.healthy { (layout::state("healthy")) } @else { (layout::state("bad")) " " (g.gpu.problem.clone().unwrap_or_default()) } }
                            }
                        } }
                    } }
                }
            }
            section.panel #gpu-hours data-refresh aria-labelledby="h-gpu-hours" {
                h2 #h-gpu-hours { "GPU-hours this month" }
                @if usage.is_empty() { p.muted { "No GPU work on this machine since " (month_start.format("%-d %B")) "." } }
                @else {
                    div.scroll tabindex="0" { table {
                        caption.sr-only { "GPU-hours per queue since the first of the month, and their cost" }
                        thead { tr { th { "queue" } th.num { "GPU-hours" } @if let Some((_, c)) = &price { th.num { "cost (" (c) ")" } } } }
                        tbody {
                            @for (queue, hours) in &usage {
                                tr { td { (queue) } td.num { (hours_text(*hours)) }
                                    @if let Some((p, _)) = &price { td.num { (format!("{:.2}", hours * p)) } } }
                            }
                            @if usage.len() > 1 {
                                @let total: f64 = usage.iter().map(|u| u.1).sum();
                                tr { td { strong { "all" } } td.num { strong { (hours_text(total)) } }
                                    @if let Some((p, _)) = &price { td.num { strong { (format!("{:.2}", total * p)) } } } }
                            }
                        }
                    } }
                }
                p.muted { @if let Some((p, c)) = &price { "At " (format!("{p:.2}")) " " (c) " per GPU-hour (" code { "[gpus] price_per_hour" } ")." }
                    @else { "Set " code { "[gpus] price_per_hour" } " to see what they cost." } }
            }
            section.panel #deployments data-refresh aria-labelledby="h-deploy" {
                h2 #h-deploy { "Deployments" }
                @if by_env.is_empty() { p.muted { "Nothing is deployed." } }
                @for (env, list) in &by_env {
                    h3 { (env) }
                    ul { @for d in list {
                        li { (d.model) " v" (d.serving.version) " " a href={"/models/" (d.serving.id)} { "model " (d.serving.id) } span.muted { " since " (ago(d.since)) } }
                    } }
                }
            }
            section.panel #experiments data-refresh aria-labelledby="h-exp" {
                h2 #h-exp { "Running experiments" }
                @if experiments.is_empty() { p.muted { "No experiment is running." } }
                ul { @for e in &experiments {
                    li { strong { (e.name) } " — " (e.model) " in " (e.environment) ", " (e.kind)
                        ", arms " (e.spec.arms.iter().map(|a| format!("{} (weight {})", a.version.map(|v| format!("v{v}")).unwrap_or_else(|| a.name.clone()), a.weight)).collect::<Vec<_>>().join(" / "))
                        span.muted { " since " (ago(e.started_at)) } }
                } }
            }
        }
    };
    Ok(layout::page(
        &session,
        "Overview",
        Options {
            nav: "/",
            live: Some("/live/events".into()),
            ..Options::default()
        },
        body,
    ))
}
