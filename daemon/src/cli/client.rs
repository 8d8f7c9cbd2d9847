//! A small HTTP client for the commands that talk to a running daemon
//! (`COACH_URL`, `COACH_TOKEN`), and the terminal rendering of its events.

use crate::cli::{OutputFailed, out};
use crate::core::text::printable;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The daemon's address. Default: the `listen` address in the config.
    #[arg(long, env = "COACH_URL")]
    pub url: Option<String>,
    /// An API token (`coach token create`).
    #[arg(long, env = "COACH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(remote: &Remote, config: &crate::config::Config) -> Client {
        let base = remote
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.daemon.listen));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token: remote.token.clone(),
            agent,
        }
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the Coach daemon at {}: {e} (is `coach daemon` running? set COACH_URL to its address)",
            self.base
        )
    }

    fn answer(&self, mut res: ureq::http::Response<ureq::Body>) -> Result<Value> {
        let status = res.status().as_u16();
        let body: Value = if status == 204 {
            Value::Null
        } else {
            res.body_mut()
                .read_json()
                .context("the daemon's answer is not JSON")?
        };
        if status >= 400 {
            let msg = body["message"].as_str().unwrap_or("(no message)");
            let code = body["code"].as_str().unwrap_or("error");
            if status == 401 && self.token.is_none() {
                bail!("{msg} ({code}); set COACH_TOKEN");
            }
            bail!("{msg} ({code})");
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let res = req.call().map_err(|e| self.unreachable(e))?;
        self.answer(res)
    }

    pub fn post(&self, path: &str) -> Result<Value> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let res = req.send_empty().map_err(|e| self.unreachable(e))?;
        self.answer(res)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let res = req.send_json(body).map_err(|e| self.unreachable(e))?;
        self.answer(res)
    }

    /// Read server-sent events from `path`, calling `each(event, data)`
    /// until it returns `false` or the stream ends.
    pub fn events(&self, path: &str, each: impl FnMut(&str, &Value) -> bool) -> Result<()> {
        let mut req = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Accept", "text/event-stream");
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let res = req.call().map_err(|e| self.unreachable(e))?;
        if res.status().as_u16() >= 400 {
            self.answer(res)?;
            return Ok(());
        }
        crate::events::stream::read(res.into_body().into_reader(), each)
            .context("the event stream broke")?;
        Ok(())
    }
}

/// One event as a terminal line; `None` for events not worth a line.
pub fn render(event: &str, v: &Value) -> Option<String> {
    // Outside text (plugin logs, summaries) on one line each.
    let s = |k: &str| printable(v[k].as_str().unwrap_or("")).into_owned();
    Some(match event {
        "run.queued" => format!("run {} queued ({})", v["run"], s("trigger")),
        "run.started" => format!("run {} started", v["run"]),
        "step.started" => format!(
            "▶ {} ({}), attempt {}",
            s("step"),
            s("action"),
            v["attempt"]
        ),
        "step.finished" if v["ok"] == true => format!("✓ {}: {}", s("step"), s("summary")),
        "step.finished" => format!("✗ {}", s("summary")),
        "step.skipped" => format!("– {} skipped: {}", s("step"), s("reason")),
        "log" => format!("  [{}] {}: {}", s("level"), s("step"), s("message")),
        "run.finished" => match v["error"].as_str() {
            Some(e) => format!("run {} {}: {e}", v["run"], s("state")),
            None => format!("run {} {}", v["run"], s("state")),
        },
        _ => return None,
    })
}

/// Follow run `id` on the terminal until it finishes; its final state.
pub fn follow(client: &Client, id: i64) -> Result<String> {
    type Epoch = Option<(String, i64, Vec<String>)>;
    // Metrics arrive one by one; print each epoch's on one line.
    fn flush(epoch: &mut Epoch) -> Result<(), OutputFailed> {
        if let Some((step, n, values)) = epoch.take() {
            out!("  {step} epoch {n}: {}", values.join(", "));
        }
        Ok(())
    }
    let mut state = String::from("unknown");
    let mut last_tenth = -1i64;
    let mut epoch: Epoch = None;
    let mut on_event = |event: &str, v: &Value| -> Result<bool, OutputFailed> {
        if event == "metric" {
            let step = v["step"].as_str().unwrap_or("").to_owned();
            let n = v["epoch"].as_i64().unwrap_or(0);
            let value = format!(
                "{} {:.4}",
                v["name"].as_str().unwrap_or(""),
                v["value"].as_f64().unwrap_or(f64::NAN)
            );
            match &mut epoch {
                Some((s, e, values)) if *s == step && *e == n => values.push(value),
                _ => {
                    flush(&mut epoch)?;
                    epoch = Some((step, n, vec![value]));
                }
            }
            return Ok(true);
        }
        flush(&mut epoch)?;
        if event == "progress" {
            // One line per tenth of progress is plenty on a terminal.
            let tenth = (v["fraction"].as_f64().unwrap_or(0.0) * 10.0) as i64;
            if tenth != last_tenth {
                last_tenth = tenth;
                out!(
                    "  {} {:>3.0}% {}",
                    v["step"].as_str().unwrap_or(""),
                    v["fraction"].as_f64().unwrap_or(0.0) * 100.0,
                    printable(v["message"].as_str().unwrap_or(""))
                );
            }
            return Ok(true);
        }
        if event == "step.started" {
            last_tenth = -1;
        }
        if let Some(line) = render(event, v) {
            out!("{line}");
        }
        if event == "run.finished" {
            state = v["state"].as_str().unwrap_or("unknown").to_owned();
            return Ok(false);
        }
        Ok(true)
    };
    // A failed write stops following and is the command's error.
    let mut broken = None;
    client.events(&format!("/api/v1/runs/{id}/events"), |event, v| {
        on_event(event, v).unwrap_or_else(|e| {
            broken = Some(e);
            false
        })
    })?;
    if let Some(e) = broken {
        return Err(e.into());
    }
    Ok(state)
}
