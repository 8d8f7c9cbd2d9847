//! `coach bench experiment`: what experiments cost — assigning users to
//! arms (GrowthBook hashing, one core), and computing the results of an
//! experiment with 1,000,000 logged events (the SQL aggregate over its
//! units, then every statistic) on a real store.

use crate::cli::out;
use crate::config::Config;
use crate::experiment::assign;
use crate::experiment::results::{self, ArmInput};
use crate::experiment::spec::{ArmSpec, Key, Metric, Metrics, Spec, Stopping};
use crate::store::Store;
use anyhow::Result;
use sea_orm::ConnectionTrait;
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users to assign.
    #[arg(long, default_value_t = 5_000_000)]
    pub users: usize,
    /// Logged events in the experiment whose results are computed: per
    /// conversation two user messages, a bot reply and a rating (four
    /// events), so a quarter as many conversations; two conversations per
    /// user.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Times the results are computed (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// The store (default: a fresh SQLite file in a temporary folder).
    /// PostgreSQL: an empty database, as `postgres://…`.
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn spec() -> Spec {
    Spec {
        model: "bench".into(),
        environment: "production".into(),
        hypothesis: None,
        key: Key::UserId,
        coverage: 1.0,
        seed: "bench".into(),
        namespace: None,
        arms: ["control", "treatment"]
            .map(|n| ArmSpec {
                name: n.into(),
                version: Some(1),
                weight: 0.5,
                model_id: Some(1),
            })
            .to_vec(),
        metrics: Metrics {
            primary: Metric::TaskSuccess,
            secondary: vec![
                Metric::ConversationLength,
                Metric::PositiveRatingRate,
                Metric::EscalationRate,
            ],
            guardrails: vec![
                Metric::FallbackRate,
                Metric::NegativeRatingRate,
                Metric::CorrectionRate,
            ],
        },
        stopping: Stopping::default(),
        canary: None,
    }
}

/// Fill the store with `conversations` conversations of experiment 1:
/// their messages, feedback and the counters logging keeps, written in
/// bulk by SQL (logging them one request at a time would only measure the
/// loader).
async fn fill(store: &Store, conversations: usize) -> Result<()> {
    let db = store.connection();
    let postgres = matches!(db.get_database_backend(), sea_orm::DbBackend::Postgres);
    let series = if postgres {
        format!("SELECT generate_series(0, {}) AS i", conversations - 1)
    } else {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) SELECT i FROM n",
            conversations - 1
        )
    };
    let now = "'2026-11-30T00:00:00Z'";
    // A deterministic draw per conversation, 0..1000.
    let draw = "((i * 2654435761) % 1000)";
    let (f, t) = if postgres {
        ("false", "true")
    } else {
        ("0", "1")
    };
    db.execute_unprepared(&format!(
        "INSERT INTO conversations (model_name, external_id, channel, started_at, received_at, experiment_id, arm, unit, user_messages, fallbacks, rated, positive, negative, corrections, escalated, outcome) \
         SELECT 'bench', 'c-' || i, NULL, {now}, {now}, 1, CASE WHEN (i / 2) % 2 = 0 THEN 'control' ELSE 'treatment' END, 'user-' || (i / 2), \
         2, CASE WHEN {draw} < 80 THEN 1 ELSE 0 END, 1, CASE WHEN {draw} < 700 THEN 1 ELSE 0 END, CASE WHEN {draw} < 700 THEN 0 ELSE 1 END, \
         CASE WHEN {draw} % 50 = 0 THEN 1 ELSE 0 END, CASE WHEN {draw} > 970 THEN {t} ELSE {f} END, CASE WHEN {draw} < 400 + 40 * ((i / 2) % 2) THEN 'resolved' ELSE 'abandoned' END \
         FROM ({series}) s"
    ))
    .await?;
    for (position, role) in [(0, "user"), (1, "bot"), (2, "user")] {
        db.execute_unprepared(&format!(
            "INSERT INTO messages (conversation_id, model_name, position, role, text, intent, confidence, fallback, model_version, escalation, at, received_at) \
             SELECT id, 'bench', {position}, '{role}', 'a message', NULL, NULL, {f}, 1, {f}, {now}, {now} FROM conversations WHERE experiment_id = 1"
        ))
        .await?;
    }
    db.execute_unprepared(&format!(
        "INSERT INTO feedback (model_name, conversation_id, message_id, rating, correction, comment, escalation, at, received_at) \
         SELECT 'bench', id, NULL, CASE WHEN positive = 1 THEN 1 ELSE -1 END, NULL, NULL, {f}, {now}, {now} FROM conversations WHERE experiment_id = 1"
    ))
    .await?;
    Ok(())
}

/// Events logged per second through the store's logging path (a
/// conversation of two user messages and a bot reply, then a rating), for
/// conversations outside any experiment and in one.
async fn write_cost(store: &Store) -> Result<(usize, f64, f64)> {
    use crate::store::conversations::{Assignment, NewConversation, NewFeedback, NewMessage};
    const N: usize = 2000;
    let mut rates = [0.0; 2];
    for (k, rate) in rates.iter_mut().enumerate() {
        let t = Instant::now();
        for i in 0..N {
            let id = format!("w{k}-{i}");
            let message = |role: &'static str| NewMessage {
                role,
                text: "a message".into(),
                intent: None,
                confidence: None,
                fallback: false,
                model_version: Some(1),
                escalation: false,
                at: chrono::Utc::now(),
                ranking: Vec::new(),
                entities: Vec::new(),
            };
            store
                .log_conversations(&[NewConversation {
                    model: "bench".into(),
                    id: id.clone(),
                    channel: None,
                    messages: vec![message("user"), message("bot"), message("user")],
                    outcome: None,
                    assignment: (k == 1).then(|| Assignment {
                        experiment: 2,
                        arm: if i % 2 == 0 { "control" } else { "treatment" }.into(),
                        unit: format!("w-user-{i}"),
                    }),
                }])
                .await?;
            store
                .record_feedback(&[NewFeedback {
                    model: "bench".into(),
                    conversation: Some(id),
                    message: None,
                    rating: Some(1),
                    correction: None,
                    comment: None,
                    escalation: false,
                    at: chrono::Utc::now(),
                }])
                .await?;
        }
        *rate = (4 * N) as f64 / t.elapsed().as_secs_f64();
    }
    Ok((N, rates[0], rates[1]))
}

pub async fn run(_config: Config, a: Args) -> Result<ExitCode> {
    // Assignment: ids made first, so only the hashing is timed.
    let ids: Vec<String> = (0..a.users.min(1_000_000))
        .map(|u| format!("user-{u}"))
        .collect();
    let ranges = assign::bucket_ranges(2, 1.0, Some(&[0.5, 0.5]));
    let started = Instant::now();
    let mut assigned = [0u64; 2];
    let mut done = 0;
    while done < a.users {
        for id in &ids {
            if done == a.users {
                break;
            }
            if let Some(arm) = assign::assign("bench", id, &ranges) {
                assigned[arm] += 1;
            }
            done += 1;
        }
    }
    let assign_s = started.elapsed().as_secs_f64();
    let per_second = a.users as f64 / assign_s;

    let dir = tempfile::tempdir()?;
    let url = a.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        )
    });
    let store = Store::connect(&url).await?;
    let conversations = a.events.div_ceil(4).max(2);
    let t = Instant::now();
    fill(&store, conversations).await?;
    let fill_s = t.elapsed().as_secs_f64();
    // The running totals logging keeps, built once from the bulk rows; the
    // same scan is what computing results from the rows would cost.
    let t = Instant::now();
    store.rebuild_experiment_totals(1).await?;
    let scan_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (logged, plain_rate, experiment_rate) = write_cost(&store).await?;
    let spec = spec();
    let mut times = Vec::with_capacity(a.runs);
    let mut last = None;
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        let totals: std::collections::HashMap<String, results::Totals> =
            store.experiment_totals(1).await?.into_iter().collect();
        let arms: Vec<ArmInput> = spec
            .arms
            .iter()
            .map(|arm| ArmInput {
                name: arm.name.clone(),
                version: 1,
                weight: arm.weight,
                totals: totals.get(&arm.name).cloned().unwrap_or_default(),
                requests: Default::default(),
            })
            .collect();
        last = Some(results::results(&spec, &arms, 3600.0));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let r = last.expect("at least one run");
    let units: u64 = r.arms.iter().map(|x| x.units).sum();
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "assignment": {"users": a.users, "seconds": assign_s, "users_per_second": per_second, "per_arm": assigned},
                "results": {"events": conversations * 4, "conversations": conversations, "units": units,
                    "store": if a.database_url.is_some() { "given" } else { "sqlite" },
                    "fill_seconds": fill_s, "rebuild_from_rows_ms": scan_ms, "runs": times.len(), "median_ms": median,
                    "min_ms": times[0], "max_ms": times[times.len() - 1],
                    "primary_lift": r.winners.first().map(|w| w.lift)},
                "logging": {"conversations": logged, "events_per_second_without_experiment": plain_rate,
                    "events_per_second_in_experiment": experiment_rate},
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    out!("experiment benchmarks");
    out!(
        "  assignment: {} users in {:.3} s on one core: {:.2} M users/s (target ≥ 1 M/s; arms {} / {})",
        a.users,
        assign_s,
        per_second / 1e6,
        assigned[0],
        assigned[1]
    );
    out!(
        "  results of {} logged events ({} conversations, {} units, {} store filled in {:.1} s): median {:.1} ms, min {:.1}, max {:.1} over {} runs (target ≤ 100 ms)",
        conversations * 4,
        conversations,
        units,
        if a.database_url.is_some() {
            "the given"
        } else {
            "a SQLite"
        },
        fill_s,
        median,
        times[0],
        times[times.len() - 1],
        times.len()
    );
    out!("  (computing them from the rows instead, one scan: {scan_ms:.0} ms)");
    out!(
        "  the price, paid when events are logged: {:.0} events/s in an experiment against {:.0} without ({logged} conversations of 4 events each way, {:.2}×)",
        experiment_rate,
        plain_rate,
        experiment_rate / plain_rate
    );
    out!(
        "  (the simulated treatment resolves 44% against 40%: {})",
        match r.winners.first() {
            Some(w) => format!("it wins, {}", w.summary),
            None => "no winner".into(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
