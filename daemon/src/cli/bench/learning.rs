//! `coach bench analyze` and `coach bench loop`: the learning loop
//! measured. Analysis throughput through the analyzer plugin in the
//! sandbox (against the 10,000 conversations an hour the seed asked for),
//! fallback clustering of 100,000 messages, feedback reaching the review
//! queue under a fixed rate of posts to a real daemon; and the whole loop
//! on a real daemon, from corrections posted to the retrained, gated,
//! deployed model answering the new intent, with each stage's share.

use super::daemon::{agent, pct, start, stop};
use crate::cli::{note, out};
use crate::config::Config;
use crate::core::conversation::{Conversation, Feedback, Ranked, Role, Turn};
use crate::store::Store;
use crate::store::tokens::Role as TokenRole;
use anyhow::{Context, Result, bail};
use chrono::Utc;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Conversations analysed through the plugin.
    #[arg(long, default_value_t = 10_000)]
    pub conversations: usize,
    /// Fallback messages clustered.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Feedback posts per second to the daemon (open loop).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Seconds of feedback posts.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LoopArgs {
    #[arg(long)]
    pub json: bool,
}

const TOPICS: &[&str] = &[
    "bring my dog",
    "park my car",
    "wheelchair access",
    "vegan menu",
    "kids corner",
    "hotel discount",
    "shuttle bus",
    "gift registry",
    "dress code",
    "photo booth",
    "late arrival",
    "plus one",
    "allergy list",
    "rain plan",
    "fireworks permit",
    "live stream",
    "smoking area",
    "candle rules",
    "tip the staff",
    "cash bar",
];
const WORDS: &[&str] = &[
    "please", "today", "again", "really", "now", "friday", "maybe", "quickly", "guys", "thanks",
    "soon", "tonight",
];

/// A deterministic stand-in for live traffic: conversations of a few
/// turns, with predictions, some fallbacks, corrections and ratings.
pub(super) fn conversations(n: usize) -> Vec<Conversation> {
    (0..n)
        .map(|i| {
            let topic = TOPICS[i % TOPICS.len()];
            let mut ask = Turn::new(
                Role::User,
                format!("can I ask about the {topic} {}", WORDS[i % WORDS.len()]),
            );
            let fell_back = i % 5 == 0;
            ask.fallback = fell_back;
            ask.intent = Some(if fell_back {
                "oos".into()
            } else {
                "book_venue".into()
            });
            ask.confidence = Some(if fell_back { 0.2 } else { 0.85 });
            ask.ranking = vec![
                Ranked {
                    intent: "book_venue".into(),
                    confidence: 0.85,
                },
                Ranked {
                    intent: "find_florist".into(),
                    confidence: 0.1,
                },
            ];
            if i % 7 == 0 {
                ask.feedback.push(Feedback {
                    rating: Some(-1),
                    correction: Some("guest_questions".into()),
                    comment: None,
                    escalation: false,
                    at: Utc::now(),
                });
            }
            let reply = Turn::new(
                Role::Bot,
                if fell_back {
                    "Sorry, I did not get that."
                } else {
                    "Here is what I found."
                },
            );
            let mut turns = vec![ask, reply];
            if i % 3 == 0 {
                turns.push(Turn::new(
                    Role::User,
                    format!("I said the {topic}, let me talk to a human"),
                ));
                turns.push(Turn::new(Role::Bot, "Connecting you to a planner."));
            } else {
                turns.push(Turn::new(Role::User, "great, thank you"));
            }
            Conversation {
                id: format!("bench-{i}"),
                model: Some("bench".into()),
                channel: Some("web".into()),
                outcome: None,
                turns,
                feedback: Vec::new(),
            }
        })
        .collect()
}

/// A scratch installation: a config with the checkout's workflows granted,
/// `extra` appended; returns (folder, config path).
pub(super) fn scratch(extra: &str) -> Result<(tempfile::TempDir, PathBuf, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let workflows = std::env::current_dir()?.join("workflows");
    if !workflows.join("improve.toml").is_file() {
        bail!("run this benchmark from the Coach checkout (it uses workflows/)");
    }
    std::fs::create_dir_all(dir.path().join("served"))?;
    let text = format!(
        "data_dir = {:?}\nplugin_dirs = []\n[grants.source-files]\nread = [{:?}]\n[daemon]\nlisten = \"127.0.0.1:0\"\nworkflow_dirs = [{:?}]\n{extra}",
        dir.path().join("data"),
        workflows,
        dir.path().join("served"),
    );
    let cfg = dir.path().join("coach.toml");
    std::fs::write(&cfg, text)?;
    Ok((dir, cfg, workflows))
}

fn post(url: &str, token: &str, body: &Value) -> Result<(u16, Value)> {
    let mut res = agent()
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)?;
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn get(url: &str, token: &str) -> Result<Value> {
    let mut res = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()?;
    Ok(serde_json::from_str(&res.body_mut().read_to_string()?).unwrap_or(Value::Null))
}

/// Feedback corrections posted at `rate` per second for `seconds` to a
/// real daemon, each on its own logged message: latency from when each
/// was due to its answer — the item is in the queue when it answers.
async fn feedback_to_queue(rate: u32, seconds: u32) -> Result<(Vec<f64>, u64, u64)> {
    let (_dir, cfg, _) = scratch("")?;
    let config = Config::load(Some(&cfg))?;
    let token = {
        let store = Store::connect(&config.database_url()).await?;
        store.create_token("bench", TokenRole::Operator).await?.1
    };
    let log = cfg.with_file_name("daemon.log");
    let d = start(&cfg, &log)?;
    let n = (rate * seconds) as usize;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"model": "bench", "id": format!("f{i}"), "messages": [
                {"role": "user", "text": format!("question number {i}"), "intent": "book_venue", "confidence": 0.9}]}))
            .collect();
        let (s, v) = post(
            &format!("{}/api/v1/conversations", d.url),
            &token,
            &json!({"conversations": batch}),
        )?;
        if s != 201 {
            bail!("logging conversations: {s} {v}");
        }
    }
    let url = d.url.clone();
    let tok = token.clone();
    let latencies = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let out = std::sync::Mutex::new(Vec::with_capacity(n));
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let body = json!({"feedback": [{"model": "bench", "conversation": format!("f{i}"), "message": 0, "correction": "guest_questions"}]});
                    let ok = matches!(post(&format!("{url}/api/v1/feedback"), &tok, &body), Ok((201, _)));
                    let ms = due.elapsed().as_secs_f64() * 1000.0;
                    if let Ok(mut o) = out.lock() {
                        o.push((ms, ok));
                    }
                });
            }
        });
        out.into_inner().unwrap_or_default()
    })
    .await?;
    let queued = get(
        &format!("{}/api/v1/review/summary?model=bench", d.url),
        &token,
    )?;
    stop(d)?;
    let failed = latencies.iter().filter(|(_, ok)| !ok).count() as u64;
    let mut ms: Vec<f64> = latencies.into_iter().map(|(m, _)| m).collect();
    ms.sort_by(f64::total_cmp);
    Ok((ms, failed, queued["counts"]["open"].as_u64().unwrap_or(0)))
}

pub async fn analyze(config: Config, a: AnalyzeArgs) -> Result<ExitCode> {
    // The plugin host alone: this benchmark keeps nothing.
    let host = std::sync::Arc::new(crate::plugin::PluginHost::new(&config)?);
    let all = conversations(a.conversations.max(1));
    // The first job compiles (or loads) the plugin: not a per-conversation cost.
    crate::pipeline::analysis::analyze(
        host.clone(),
        crate::core::params::DEFAULT_ANALYZER,
        json!({}),
        all[..10.min(all.len())].to_vec(),
    )
    .await?;
    note!("analysing {} conversations …", all.len());
    let t = Instant::now();
    let n = all.len();
    let analyses = crate::pipeline::analysis::analyze(
        host,
        crate::core::params::DEFAULT_ANALYZER,
        json!({}),
        all,
    )
    .await?;
    let analyze_s = t.elapsed().as_secs_f64();
    if analyses.len() != n {
        bail!("{} analyses for {n} conversations", analyses.len());
    }
    let per_s = n as f64 / analyze_s;

    note!("clustering {} fallback messages …", a.messages);
    let msgs = a.messages.max(1);
    // 400 topics (two words each), four ways to ask, and a rare word in
    // every message (names, typos): clustering must see through them.
    let fallbacks: Vec<Conversation> = (0..msgs)
        .map(|i| {
            let topic = i % 400;
            let mut t = Turn::new(
                Role::User,
                format!(
                    "{} {} {} {} w{}",
                    ["can I", "is there a", "what about the", "tell me about"][(i / 400) % 4],
                    TOPICS[topic % TOPICS.len()],
                    TOPICS[topic / TOPICS.len()]
                        .split(' ')
                        .next_back()
                        .unwrap_or_default(),
                    WORDS[(i / 1600) % WORDS.len()],
                    (i * 7919) % 20_000
                ),
            );
            t.fallback = true;
            Conversation {
                id: format!("m{i}"),
                model: None,
                channel: None,
                outcome: None,
                turns: vec![t],
                feedback: Vec::new(),
            }
        })
        .collect();
    let t = Instant::now();
    let found = tokio::task::spawn_blocking(move || {
        crate::patterns::find(
            &crate::patterns::Input {
                conversations: &fallbacks,
                examples: &[],
                evaluation: None,
                now: Utc::now(),
            },
            &crate::patterns::Settings::default(),
        )
    })
    .await?;
    let cluster_s = t.elapsed().as_secs_f64();

    note!(
        "posting feedback at {}/s for {} s to a daemon …",
        a.rate,
        a.seconds
    );
    let (ms, failed, queued) = feedback_to_queue(a.rate.max(1), a.seconds.max(1)).await?;
    let report = json!({
        "analyze": {"conversations": n, "seconds": analyze_s, "per_second": per_s,
                    "floor_per_second": 10_000.0 / 3600.0, "times_the_floor": per_s / (10_000.0 / 3600.0)},
        "clustering": {"messages": msgs, "seconds": cluster_s, "clusters": found.fallback_clusters.len()},
        "feedback_to_queue_ms": {"rate_per_s": a.rate, "posts": ms.len(), "failed": failed, "queued": queued,
                                 "p50": pct(&ms, 0.5), "p99": pct(&ms, 0.99), "max": ms.last()},
    });
    if a.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("analysis through analyzer-quality in the sandbox");
    out!(
        "  {n} conversations in {analyze_s:.2} s: {per_s:.0}/s ({:.0}× the 10,000 an hour floor)",
        per_s / (10_000.0 / 3600.0)
    );
    out!("fallback clustering");
    out!(
        "  {msgs} messages in {cluster_s:.2} s: {} clusters",
        found.fallback_clusters.len()
    );
    out!(
        "feedback → review queue, {} posts at {}/s ({failed} failed, {queued} queued)",
        ms.len(),
        a.rate
    );
    out!(
        "  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms (from when each post was due)",
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    Ok(ExitCode::SUCCESS)
}

/// `coach` with `args` on config `cfg`, which must succeed.
fn coach(cfg: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("COACH_DATA_DIR")
        .env_remove("COACH_DATABASE_URL")
        .output()
        .context("cannot run coach")?;
    if !out.status.success() {
        bail!(
            "coach {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub async fn learning_loop(_config: Config, a: LoopArgs) -> Result<ExitCode> {
    let (dir, cfg, workflows) = scratch("[review]\nreviews = 2\n")?;
    note!("training and deploying the quickstart's model …");
    coach(
        &cfg,
        &[
            "run",
            workflows
                .join("quickstart.toml")
                .to_str()
                .unwrap_or_default(),
        ],
    )?;
    coach(
        &cfg,
        &["deploy", "wedding-assistant:1", "--env", "production"],
    )?;
    let improve = std::fs::read_to_string(workflows.join("improve.toml"))?
        .replace("\"data/", &format!("\"{}/data/", workflows.display()))
        .replace("\"scripts/", &format!("\"{}/scripts/", workflows.display()))
        .replace("check_every = \"1m\"", "check_every = \"1s\"")
        .replace("min_interval = \"10m\"", "min_interval = \"1s\"");
    std::fs::write(dir.path().join("served/improve.toml"), improve)?;
    let config = Config::load(Some(&cfg))?;
    let (op, ana, ben) = {
        let store = Store::connect(&config.database_url()).await?;
        (
            store.create_token("platform", TokenRole::Operator).await?.1,
            store.create_token("ana", TokenRole::Reviewer).await?.1,
            store.create_token("ben", TokenRole::Reviewer).await?.1,
        )
    };
    let d = start(&cfg, &cfg.with_file_name("daemon.log"))?;
    let url = d.url.clone();
    let asks = [
        "can I bring my dog to the wedding",
        "can I bring my dog",
        "can we bring our dog to the wedding",
        "can i bring my dog to the party",
        "can I bring my dog along please",
        "bring my dog to the wedding?",
        "can guests bring their dogs",
        "is it ok if I bring my dog",
    ];
    let stages = tokio::task::spawn_blocking(move || -> Result<Vec<(&'static str, f64)>> {
        let t0 = Instant::now();
        let mut stages = Vec::new();
        let mut mark = |name: &'static str, since: &mut Instant| {
            stages.push((name, since.elapsed().as_secs_f64()));
            *since = Instant::now();
        };
        let mut since = t0;
        // Users correct what the bot got wrong; each correction is queued.
        let conversations: Vec<Value> = asks.iter().enumerate().map(|(i, a)| json!({"model": "wedding-assistant", "id": format!("pets-{i}"), "messages": [
            {"role": "user", "text": a, "intent": "find_florist", "confidence": 0.3},
            {"role": "bot", "text": "Here are three florists near the venue."}]})).collect();
        post(&format!("{url}/api/v1/conversations"), &op, &json!({"conversations": conversations}))?;
        let feedback: Vec<Value> = (0..asks.len()).map(|i| json!({"model": "wedding-assistant", "conversation": format!("pets-{i}"), "message": 0, "correction": "bring_pets"})).collect();
        let (s, v) = post(&format!("{url}/api/v1/feedback"), &op, &json!({"feedback": feedback}))?;
        if s != 201 {
            bail!("feedback: {s} {v}");
        }
        mark("corrections posted and queued", &mut since);
        for r in [&ana, &ben] {
            loop {
                let (s, item) = post(&format!("{url}/api/v1/review/next"), r, &json!({"model": "wedding-assistant"}))?;
                if s == 204 {
                    break;
                }
                let intent = item["suggested_intent"].as_str().unwrap_or("bring_pets").to_owned();
                post(&format!("{url}/api/v1/review/items/{}/labels", item["id"]), r, &json!({"verdict": "label", "intent": intent}))?;
            }
        }
        mark("two reviewers label every item", &mut since);
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut run = Value::Null;
        let mut started = false;
        while Instant::now() < deadline {
            let runs = get(&format!("{url}/api/v1/runs?workflow=wedding-assistant-improve"), &op)?;
            if let Some(r) = runs["runs"].as_array().and_then(|r| r.first()) {
                if !started {
                    mark("the condition fires", &mut since);
                    started = true;
                }
                if ["succeeded", "failed", "cancelled"].contains(&r["state"].as_str().unwrap_or("")) {
                    run = r.clone();
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if run["state"] != "succeeded" {
            bail!("the improve run did not succeed: {run}");
        }
        mark("retrain, evaluate, gate, register, deploy", &mut since);
        loop {
            let (s, v) = post(&format!("{url}/api/v1/models/wedding-assistant/predict"), &op, &json!({"text": "can I bring my dog to the wedding"}))?;
            if s == 200 && v["version"] == 2 {
                if v["intent"] != "bring_pets" {
                    bail!("v2 answers {v}");
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("v2 never answered: {s} {v}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        mark("v2 answers the new intent from the serving route", &mut since);
        Ok(stages)
    })
    .await??;
    stop(d)?;
    let total: f64 = stages.iter().map(|(_, s)| s).sum();
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "total_seconds": total,
                "stages": stages.iter().map(|(n, s)| json!({"stage": n, "seconds": s, "share": s / total})).collect::<Vec<_>>(),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "the learning loop on a real daemon: {total:.1} s from corrections to the new intent served"
    );
    for (n, s) in &stages {
        out!("  {:<50} {:>6.2} s  {:>5.1}%", n, s, s / total * 100.0);
    }
    Ok(ExitCode::SUCCESS)
}
