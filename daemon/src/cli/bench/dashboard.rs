//! `coach bench dashboard`: the dashboard's pages served by a real `coach
//! daemon` on loopback over a store of many runs, models and logged
//! conversations — each page's response time (signed in, sequential
//! requests), its size, the assets' weight, and, with Chromium, each
//! page's first contentful paint in a headless browser driven over the
//! DevTools protocol.

use super::daemon::{agent, pct, seed, start, stop};
use crate::cli::{note, out};
use crate::config::Config;
use crate::store::{NewModel, Store};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Finished runs stored beside the real ones.
    #[arg(long, default_value_t = 10_000)]
    pub runs: usize,
    /// Model versions registered (two trained for real, the rest copies
    /// of them with their own metrics).
    #[arg(long, default_value_t = 100)]
    pub models: usize,
    /// Conversations logged (about four turns each).
    #[arg(long, default_value_t = 100_000)]
    pub conversations: usize,
    /// Requests per page, after three to warm up.
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// Chromium for the first contentful paint (default: the first of
    /// chromium, chromium-browser, google-chrome on the PATH; none: no
    /// paint measured).
    #[arg(long)]
    pub chromium: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// A signed-in browser without the browser: the session cookie.
fn sign_in(url: &str, token: &str) -> Result<String> {
    let a: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let body = format!("token={token}&next=%2F");
    let res = a
        .post(format!("{url}/sign-in"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())?;
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .context("signing in gave no session cookie")?;
    Ok(cookie.to_owned())
}

fn api(url: &str, token: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let a = agent();
    let auth = format!("Bearer {token}");
    let mut res = match body {
        Some(b) => a
            .post(format!("{url}{path}"))
            .header("Authorization", &auth)
            .send_json(b)?,
        None => a
            .get(format!("{url}{path}"))
            .header("Authorization", &auth)
            .call()?,
    };
    let status = res.status().as_u16();
    let v: Value = serde_json::from_str(&res.body_mut().read_to_string()?).unwrap_or(Value::Null);
    if status >= 400 {
        bail!("{path}: {status} {v}");
    }
    Ok(v)
}

/// Trigger the quickstart and wait for it to finish; its run id.
fn train(url: &str, token: &str) -> Result<i64> {
    let v = api(
        url,
        token,
        "/api/v1/workflows/wedding-assistant/runs",
        Some(&json!({})),
    )?;
    let id = v["run"]["id"].as_i64().context("no run id")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = api(url, token, &format!("/api/v1/runs/{id}"), None)?;
        match r["state"].as_str() {
            Some("succeeded") => return Ok(id),
            Some("failed" | "cancelled") => bail!("the quickstart run failed: {}", r["error"]),
            _ if Instant::now() > deadline => bail!("the quickstart run took over 10 minutes"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Each page `n` times in a row: response times (ms, sorted) and size.
fn time_page(url: &str, cookie: &str, path: &str, n: usize) -> Result<(Vec<f64>, usize)> {
    let a = agent();
    let get = || -> Result<(u16, usize)> {
        let mut res = a
            .get(format!("{url}{path}"))
            .header("Cookie", cookie)
            .call()?;
        let status = res.status().as_u16();
        let body = res.body_mut().read_to_vec()?;
        Ok((status, body.len()))
    };
    for _ in 0..3 {
        get()?;
    }
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let (status, len) = get()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("{path} answered {status}");
        }
        size = len;
    }
    times.sort_by(f64::total_cmp);
    Ok((times, size))
}

fn find_chromium(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .flat_map(|d| ["chromium", "chromium-browser", "google-chrome"].map(|n| d.join(n)))
                .find(|p| p.is_file())
        })
    })
}

/// A headless Chromium and one page of it, spoken to over the DevTools
/// protocol's WebSocket.
struct Chromium {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    ws: tungstenite::WebSocket<std::net::TcpStream>,
    next_id: u64,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromium {
    fn start(path: &PathBuf) -> Result<Chromium> {
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(path)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1440,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", path.display()))?;
        let err = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(err).lines();
        let browser_ws = loop {
            let line = lines
                .next()
                .context("Chromium exited before it listened")??;
            if let Some(u) = line.strip_prefix("DevTools listening on ") {
                break u.trim().to_owned();
            }
        };
        // Keep reading its stderr so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let port = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .context("an odd DevTools address")?
            .to_owned();
        let list: Value = agent()
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .call()?
            .body_mut()
            .read_json()?;
        let page = list
            .as_array()
            .and_then(|l| l.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .context("Chromium has no page")?
            .to_owned();
        let stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}"))?;
        let (ws, _) = tungstenite::client(page.as_str(), stream)
            .map_err(|e| anyhow::anyhow!("DevTools WebSocket: {e}"))?;
        Ok(Chromium {
            child,
            _profile: profile,
            ws,
            next_id: 1,
        })
    }

    /// Send a command and wait for its answer (events in between are
    /// dropped).
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(tungstenite::Message::text(msg))?;
        loop {
            let m = self.ws.read()?;
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok(v["result"].clone());
            }
        }
    }

    fn eval(&mut self, js: &str) -> Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
        )?;
        Ok(r["result"]["value"].clone())
    }

    /// Open `url` and read its first contentful paint (ms from the start
    /// of navigation).
    fn paint(&mut self, url: &str) -> Result<f64> {
        self.call("Page.navigate", json!({"url": url}))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.eval(&format!(
                "location.href === {url:?} && document.readyState === 'complete' && (performance.getEntriesByName('first-contentful-paint')[0] || {{}}).startTime || null"
            ))?;
            if let Some(ms) = v.as_f64() {
                return Ok(ms);
            }
            if Instant::now() > deadline {
                bail!("{url} did not paint within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Measures its own scratch daemon; the caller's config is not used.
pub async fn run(_config: Config, args: Args) -> Result<ExitCode> {
    let (_scratch, cfg_path, bench_config, log) = super::daemon::scratch("dashboard")?;
    note!("seeding {} runs …", args.runs);
    let token = seed(&bench_config, args.runs).await?;
    let store = Store::connect(&bench_config.database_url()).await?;
    note!("logging {} conversations …", args.conversations);
    let all = super::learning::conversations(args.conversations);
    for chunk in all.chunks(5000) {
        crate::service::conversations::import(&store, chunk, None).await?;
    }
    drop(all);

    let d = start(&cfg_path, &log)?;
    note!("training the quickstart twice (the second run's gate keeps its equal model out) …");
    train(&d.url, &token)?;
    let second = train(&d.url, &token)?;
    // The rest of the versions: copies of the trained one, each with its
    // own metrics (what the list and the comparisons read).
    let trained = store.models(10).await?;
    let base = trained
        .first()
        .context("the quickstart registered no model")?;
    for i in trained.len()..args.models {
        let mut metrics: Value = serde_json::from_str(&base.metrics)?;
        if let Some(a) = metrics["in_scope_accuracy"].as_f64() {
            metrics["in_scope_accuracy"] = json!(a - 0.0005 * (i % 40) as f64);
        }
        store
            .register_model(NewModel {
                name: base.name.clone(),
                run_id: crate::core::ids::RunId(base.run_id),
                trainer_plugin: base.trainer_plugin.clone(),
                trainer_version: base.trainer_version.clone(),
                plugin_hash: base.plugin_hash.clone(),
                artifact_hash: base.artifact_hash.clone(),
                artifact_size: base.artifact_size,
                dataset_version_id: base.dataset_version_id,
                data_hash: base.data_hash.clone(),
                config_hash: base.config_hash.clone(),
                metrics,
                intents: serde_json::from_str(&base.intents)?,
                base_model_id: None,
            })
            .await?;
    }
    let models = store.models(2).await?;
    let (newest, older) = (models[0].id, base.id);
    let conv =
        api(&d.url, &token, "/api/v1/conversations?limit=1", None)?["conversations"][0]["id"]
            .as_i64()
            .context("no conversation")?;
    let item = api(
        &d.url,
        &token,
        "/api/v1/review/items?limit=1&state=open",
        None,
    )?["items"][0]["id"]
        .as_i64();
    let cookie = sign_in(&d.url, &token)?;
    let mut pages: Vec<(String, String)> = vec![
        ("overview".into(), "/".into()),
        ("workflows".into(), "/workflows".into()),
        ("workflow".into(), "/workflows/wedding-assistant".into()),
        ("runs".into(), "/runs".into()),
        ("run".into(), format!("/runs/{second}")),
        ("models".into(), "/models".into()),
        ("model".into(), format!("/models/{newest}")),
        (
            "compare".into(),
            format!("/models/compare?a={older}&b={newest}"),
        ),
        ("conversations".into(), "/conversations".into()),
        (
            "conversations filtered".into(),
            "/conversations?q=cake&max_confidence=0.5".into(),
        ),
        ("conversation".into(), format!("/conversations/{conv}")),
        ("review".into(), "/review".into()),
        ("experiments".into(), "/experiments".into()),
    ];
    if let Some(i) = item {
        pages.push(("review item".into(), format!("/review/{i}")));
    }
    note!(
        "timing {} pages, {} requests each …",
        pages.len(),
        args.requests
    );
    let mut rows = Vec::new();
    for (name, path) in &pages {
        let (url, cookie, path2, n) = (
            d.url.clone(),
            cookie.clone(),
            path.clone(),
            args.requests.max(1),
        );
        let (times, size) =
            tokio::task::spawn_blocking(move || time_page(&url, &cookie, &path2, n)).await??;
        rows.push((name.clone(), path.clone(), times, size));
    }
    // The assets every page loads.
    let home = agent()
        .get(format!("{}/", d.url))
        .header("Cookie", &cookie)
        .call()?
        .body_mut()
        .read_to_string()?;
    let mut asset_bytes = 0;
    for part in home.split("/assets/").skip(1) {
        let name: String = part.chars().take_while(|c| *c != '"').collect();
        asset_bytes += agent()
            .get(format!("{}/assets/{name}", d.url))
            .call()?
            .body_mut()
            .read_to_vec()?
            .len();
    }
    // First contentful paint, each page, in a headless Chromium.
    let mut paints: Vec<(String, f64)> = Vec::new();
    let chromium = find_chromium(args.chromium.clone());
    if let Some(path) = &chromium {
        note!("first contentful paint in {} …", path.display());
        let (url, cookie_value) = (d.url.clone(), cookie.clone());
        let pages2 = pages.clone();
        let path = path.clone();
        paints = tokio::task::spawn_blocking(move || -> Result<Vec<(String, f64)>> {
            let mut c = Chromium::start(&path)?;
            let (name, value) = cookie_value.split_once('=').context("an odd cookie")?;
            c.call(
                "Network.setCookie",
                json!({"name": name, "value": value, "url": format!("{url}/"), "httpOnly": true, "sameSite": "Strict"}),
            )?;
            let mut out = Vec::new();
            for (page, path) in &pages2 {
                // Once to load the assets into the cache, as a returning
                // user has them; then the paint that counts.
                c.paint(&format!("{url}{path}"))?;
                out.push((page.clone(), c.paint(&format!("{url}{path}"))?));
            }
            Ok(out)
        })
        .await??;
    }
    stop(d)?;

    let report = json!({
        "stored": {"runs": args.runs + 2, "models": args.models.max(2), "conversations": args.conversations},
        "requests_per_page": args.requests,
        "pages": rows.iter().map(|(name, path, t, size)| json!({
            "page": name, "path": path, "bytes": size,
            "ms": {"p50": pct(t, 0.5), "p99": pct(t, 0.99), "max": t.last()},
            "first_contentful_paint_ms": paints.iter().find(|p| &p.0 == name).map(|p| p.1),
        })).collect::<Vec<_>>(),
        "assets_bytes": asset_bytes,
        "chromium": chromium.map(|p| p.display().to_string()),
    });
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "dashboard on loopback: {} runs, {} models, {} conversations stored; {} requests a page",
        args.runs + 2,
        args.models.max(2),
        args.conversations,
        args.requests
    );
    out!(
        "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "page",
        "p50 ms",
        "p99 ms",
        "max ms",
        "KB",
        "FCP ms"
    );
    for (name, _, t, size) in &rows {
        let fcp = paints
            .iter()
            .find(|p| &p.0 == name)
            .map(|p| format!("{:.0}", p.1))
            .unwrap_or_else(|| "-".into());
        out!(
            "  {:<24} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>10}",
            name,
            pct(t, 0.5),
            pct(t, 0.99),
            t.last().copied().unwrap_or(f64::NAN),
            *size as f64 / 1024.0,
            fcp
        );
    }
    out!(
        "  targets: every page p99 ≤ 50 ms; first contentful paint ≤ 500 ms; JavaScript and CSS {:.1} KB together (≤ 100 KB)",
        asset_bytes as f64 / 1024.0
    );
    if report["chromium"].is_null() {
        out!("  (no Chromium found: pass --chromium to measure the paint)");
    }
    Ok(ExitCode::SUCCESS)
}
