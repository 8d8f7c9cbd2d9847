//! The dashboard against a real daemon with real runs: sign-in, pages,
//! roles, CSRF and cross-site refusal over HTTP; then, in a real headless
//! Chromium driven over the DevTools protocol, sign-in, a run watched live,
//! keyboard use, screenshots at 1440 and 390 px and axe-core on every page.

use crate::daemon::{Daemon, daemon_home, token, wait_for_state, wedding_workflow};
use std::time::Duration;

/// A browser-like HTTP client that keeps the session cookie and does not
/// follow redirects (the tests look at them).
pub(crate) struct Browser {
    base: String,
    agent: ureq::Agent,
    cookie: Option<String>,
}

pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) set_cookie: Option<String>,
    pub(crate) body: String,
}

impl Browser {
    pub(crate) fn new(base: &str) -> Browser {
        Browser {
            base: base.trim_end_matches('/').to_owned(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into(),
            cookie: None,
        }
    }

    fn read(mut res: ureq::http::Response<ureq::Body>) -> Page {
        let h = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (location, set_cookie) = (h("location"), h("set-cookie"));
        Page {
            status: res.status().as_u16(),
            location,
            set_cookie,
            body: res.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Page {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        Browser::read(req.call().unwrap())
    }

    fn post(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body: String = form_urlencoded(form);
        Browser::read(req.send(body.as_bytes()).unwrap())
    }

    pub(crate) fn sign_in(&mut self, token: &str) -> Page {
        let p = self.post("/sign-in", &[("token", token), ("next", "/")], &[]);
        if let Some(c) = &p.set_cookie {
            self.cookie = Some(c.split(';').next().unwrap().to_owned());
        }
        p
    }
}

fn form_urlencoded(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The dashboard's upload limit (64 MiB).
fn crate_max_upload() -> usize {
    coach::service::datasets::MAX_UPLOAD
}

/// The CSRF token a page's forms carry.
fn csrf(body: &str) -> String {
    let at = body
        .find("name=\"_csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 20;
    body[at..at + 64].to_owned()
}

#[test]
fn sign_in_pages_roles_and_csrf_over_http() {
    let home = daemon_home("");
    std::fs::write(
        home.path("workflows/wedding.toml"),
        wedding_workflow("wedding", 3, ""),
    )
    .unwrap();
    let d = Daemon::start(&home);
    let operator = token(&home, "operator");
    let viewer = token(&home, "viewer");

    // Signed out: pages send the browser to sign in, actions are refused.
    let mut b = Browser::new(&d.url);
    let p = b.get("/workflows/wedding");
    assert_eq!(p.status, 303);
    assert_eq!(
        p.location.as_deref(),
        Some("/sign-in?next=%2Fworkflows%2Fwedding")
    );
    assert_eq!(b.post("/workflows/wedding/trigger", &[], &[]).status, 401);
    let p = b.get("/sign-in");
    assert_eq!(p.status, 200);
    assert!(p.body.contains("<label for=\"token\">"), "{}", p.body);

    // A wrong token is refused with the reason, and no cookie.
    let p = b.sign_in("coach_not-a-token");
    assert_eq!(p.status, 401);
    assert!(p.body.contains("unknown or revoked token"));
    assert!(p.set_cookie.is_none());

    // `next` stays on this site, whatever a link put in it (browsers drop
    // tabs and newlines from URLs: `/\t/evil.example` is `//evil.example`).
    for next in [
        "/\t/evil.example/x",
        "/\n/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
    ] {
        let p = Browser::new(&d.url).post("/sign-in", &[("token", &operator), ("next", next)], &[]);
        assert_eq!(p.status, 303, "{next:?}");
        assert_eq!(p.location.as_deref(), Some("/"), "{next:?}");
    }
    let p = b.get("/sign-in?next=/%09/evil.example");
    assert!(p.body.contains("name=\"next\" value=\"/\""), "{}", p.body);

    // The operator signs in: a strict, HttpOnly session cookie.
    let p = b.sign_in(&operator);
    assert_eq!(p.status, 303, "{}", p.body);
    let cookie = p.set_cookie.unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    for path in ["/", "/workflows", "/runs", "/models"] {
        let p = b.get(path);
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        assert!(p.body.contains("<main id=\"main\""), "{path}");
    }
    let wf = b.get("/workflows/wedding");
    assert!(wf.body.contains("Trigger a run"), "{}", wf.body);
    assert!(
        wf.body.contains("class=\"h\">[[step]]"),
        "the TOML is highlighted"
    );

    // A state change without the CSRF token, or with another, is refused;
    // so is one posted from another site.
    let no_csrf = b.post("/workflows/wedding/trigger", &[], &[]);
    assert_eq!(no_csrf.status, 403);
    assert!(no_csrf.body.contains("CSRF"), "{}", no_csrf.body);
    let huge = "x".repeat(100 * 1024);
    let big = b.post("/workflows/wedding/trigger", &[("_csrf", &huge)], &[]);
    assert_eq!(big.status, 413, "forms are bounded at 64 KiB");
    let wrong = b.post(
        "/workflows/wedding/trigger",
        &[("_csrf", &"0".repeat(64))],
        &[],
    );
    assert_eq!(wrong.status, 403);
    let token_ok = csrf(&wf.body);
    let cross = b.post(
        "/workflows/wedding/trigger",
        &[("_csrf", &token_ok)],
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(cross.status, 403);
    let (_, runs) = crate::daemon::call("GET", &format!("{}/api/v1/runs", d.url), &operator);
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        0,
        "refused posts started nothing"
    );

    // With it, the run starts and the browser goes to its page.
    let ok = b.post("/workflows/wedding/trigger", &[("_csrf", &token_ok)], &[]);
    assert_eq!(ok.status, 303, "{}", ok.body);
    let run_page = ok.location.unwrap();
    let run: i64 = run_page.trim_start_matches("/runs/").parse().unwrap();
    wait_for_state(&d, &operator, run, &["succeeded"]);
    let page = b.get(&run_page);
    assert_eq!(page.status, 200);
    for part in [
        "Steps",
        "Metrics per epoch",
        "Evaluation",
        "Per intent",
        "Log",
    ] {
        assert!(page.body.contains(part), "{part} missing from the run page");
    }
    assert!(page.body.contains("<svg"), "a chart of the epochs");
    // A second model, and the comparison of the two.
    let again = b.post("/workflows/wedding/trigger", &[("_csrf", &token_ok)], &[]);
    let run2: i64 = again
        .location
        .unwrap()
        .trim_start_matches("/runs/")
        .parse()
        .unwrap();
    wait_for_state(&d, &operator, run2, &["succeeded"]);
    let models = b.get("/models");
    assert!(models.body.contains("Compare two versions"));
    let (_, list) = crate::daemon::call("GET", &format!("{}/api/v1/models", d.url), &operator);
    let ids: Vec<i64> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let cmp = b.get(&format!("/models/compare?a={}&b={}", ids[1], ids[0]));
    assert_eq!(cmp.status, 200, "{}", cmp.body);
    assert!(cmp.body.contains("Per-intent F1 change"), "{}", cmp.body);
    assert!(cmp.body.contains("role=\"img\""));
    assert!(
        cmp.body.contains("Accuracy against confidence"),
        "a calibration plot"
    );

    // Conversations: logged through the API, filtered in the workbench,
    // read as a thread with entities marked and text escaped, and a turn
    // sent to the review queue with the intent it should have had.
    let (s, v) = crate::daemon::post_json(
        &format!("{}/api/v1/conversations", d.url),
        &operator,
        &serde_json::json!({"conversations": [{"model": "wedding", "id": "c-1", "messages": [
            {"role": "user", "text": "we need flowers for the big day", "intent": "find_florist", "confidence": 0.41,
             "entities": [{"entity": "occasion", "start": 24, "end": 31, "value": "big day"}]},
            {"role": "bot", "text": "Here are florists near you."},
            {"role": "user", "text": "<script>alert(1)</script> and the cake", "intent": "oos", "confidence": 0.2, "fallback": true}
        ]}]}),
    );
    assert_eq!(s, 201, "{v}");
    let list = b.get("/conversations?model=wedding&q=flowers&max_confidence=0.5&rating=&since=");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("we need flowers"), "{}", list.body);
    let none = b.get("/conversations?q=nothing-like-this");
    assert!(none.body.contains("No conversation matches"));
    let bad = b.get("/conversations?max_confidence=7");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("max_confidence"), "{}", bad.body);
    let at = list.body.find("href=\"/conversations/").unwrap() + 21;
    let conv: i64 = list.body[at..].split('"').next().unwrap().parse().unwrap();
    let thread = b.get(&format!("/conversations/{conv}"));
    assert_eq!(thread.status, 200);
    assert!(
        thread.body.contains("<mark title=\"occasion\">big day"),
        "{}",
        thread.body
    );
    assert!(
        thread
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    assert!(!thread.body.contains("<script>alert"));
    assert!(thread.body.contains("<meter"), "a confidence bar");
    assert_eq!(b.get("/conversations/999999").status, 404);
    let bad_label = b.post(
        &format!("/conversations/{conv}/turns/2/review"),
        &[("_csrf", &token_ok), ("intent", "order\u{200b}cake")],
        &[],
    );
    assert_eq!(bad_label.status, 422, "{}", bad_label.body);
    let bot_turn = b.post(
        &format!("/conversations/{conv}/turns/1/review"),
        &[("_csrf", &token_ok), ("intent", "x")],
        &[],
    );
    assert_eq!(bot_turn.status, 404, "a bot's turn is not labelled");
    let sent = b.post(
        &format!("/conversations/{conv}/turns/2/review"),
        &[("_csrf", &token_ok), ("intent", "order_cake")],
        &[],
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
    // The bot fell back on that turn, so it was queued when it arrived.
    let to = sent.location.unwrap();
    assert!(to.contains("already=2"), "{to}");
    assert!(b.get(&to).body.contains("was in the review queue already"));
    let first = b.post(
        &format!("/conversations/{conv}/turns/0/review"),
        &[("_csrf", &token_ok), ("intent", "find_florist")],
        &[],
    );
    assert!(first.location.unwrap().contains("queued=0"));

    // Review: the queued turns are listed; labelling it goes through the
    // API's checks (a bad entity span is refused and nothing recorded),
    // then approves it.
    let review = b.get("/review");
    assert!(review.body.contains("and the cake"), "{}", review.body);
    let next = b.post("/review/next", &[("_csrf", &token_ok)], &[]);
    assert_eq!(next.status, 303);
    let item_path = next.location.unwrap();
    let item: i64 = item_path.trim_start_matches("/review/").parse().unwrap();
    let page = b.get(&item_path);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<option value=\"find_florist\">"),
        "the model's intents to pick from"
    );
    assert!(
        page.body.contains("and the cake"),
        "the most valuable item first: {}",
        page.body
    );
    let wrong = b.post(
        &format!("/review/{item}/label"),
        &[
            ("_csrf", &token_ok),
            ("verdict", "label"),
            ("intent", "order_cake"),
            ("entities", "thing\t3\t999"),
        ],
        &[],
    );
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert!(wrong.body.contains("entities[0]"), "{}", wrong.body);
    let both = b.post(
        &format!("/review/{item}/label"),
        &[
            ("_csrf", &token_ok),
            ("verdict", "label"),
            ("intent", "order_cake"),
            ("out_of_scope", "1"),
        ],
        &[],
    );
    assert_eq!(both.status, 422);
    assert!(both.body.contains("not both"), "{}", both.body);
    let cake = "<script>alert(1)</script> and the ".len();
    let done = b.post(
        &format!("/review/{item}/label"),
        &[
            ("_csrf", &token_ok),
            ("verdict", "label"),
            ("intent", "order_cake"),
            ("entities", &format!("food\t{cake}\t{}", cake + 4)),
        ],
        &[],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    let (_, shown) = crate::daemon::call(
        "GET",
        &format!("{}/api/v1/review/items/{item}", d.url),
        &operator,
    );
    assert_eq!(shown["labels"][0]["intent"], "order_cake", "{shown}");
    assert_eq!(
        shown["labels"][0]["entities"][0]["value"], "cake",
        "{shown}"
    );
    assert_eq!(
        shown["labels"].as_array().unwrap().len(),
        1,
        "refused labels left nothing: {shown}"
    );

    // Data: an upload is checked by the file source in the sandbox; a
    // malformed file gets its located errors and keeps nothing; a good one
    // becomes a dataset version.
    let data = b.get("/data");
    assert_eq!(data.status, 200);
    assert!(data.body.contains("id=\"drop\""), "the drop zone");
    let upload = |name: &str, file: &str, body: &[u8], csrf: Option<&str>| {
        let mut req = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .post(&format!("{}/data/upload?name={name}&file={file}", d.url))
            .header("Cookie", b.cookie.as_deref().unwrap())
            .header("Content-Type", "application/octet-stream");
        if let Some(c) = csrf {
            req = req.header("X-CSRF-Token", c);
        }
        let mut res = req.send(body).unwrap();
        (
            res.status().as_u16(),
            res.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let bad = b"{\"text\": \"book a dj\", \"intent\": \"book_music\"}\n{\"text\": \"oops\", \"intent\": \n{\"text\": \"hire a band\", \"intent\": \"book_music\"}\n";
    let (status, body) = upload("extra", "extra.jsonl", bad, Some(&token_ok));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("1 of 3 records are bad"), "{body}");
    assert!(body.contains("extra.jsonl:2"), "the file and line: {body}");
    assert!(!body.contains(".upload-"), "no staging path leaks: {body}");
    assert!(
        !b.get("/data").body.contains("<td>extra</td>"),
        "nothing stored"
    );
    assert!(!home.path("data/datasets/extra").exists(), "no file kept");
    let (status, _) = upload("extra", "extra.jsonl", bad, None);
    assert_eq!(status, 403, "no CSRF token");
    let (status, body) = upload("extra", "extra.txt", b"x", Some(&token_ok));
    assert_eq!(status, 422);
    assert!(body.contains(".jsonl"), "{body}");
    let (status, _) = upload("../x", "extra.jsonl", b"x", Some(&token_ok));
    assert_eq!(status, 422);
    let good = b"{\"text\": \"book a dj\", \"intent\": \"book_music\"}\n{\"text\": \"hire a band\", \"intent\": \"book_music\"}\n{\"text\": \"find a florist\", \"intent\": \"find_florist\"}\n";
    let (status, body) = upload("extra", "extra.jsonl", good, Some(&token_ok));
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("3 examples of 2 intents"), "{body}");
    assert!(b.get("/data").body.contains("<td>extra</td>"));
    let big = vec![b'a'; crate_max_upload() + 1];
    let (status, _) = upload("big", "big.jsonl", &big, Some(&token_ok));
    assert_eq!(status, 413, "past the upload limit");

    // Experiments: none yet, said so; an unknown one is not found.
    let exp = b.get("/experiments");
    assert_eq!(exp.status, 200);
    assert!(
        exp.body.contains("No experiment has run yet"),
        "{}",
        exp.body
    );
    assert_eq!(b.get("/experiments/nope").status, 404);

    // A viewer sees no button it cannot use, and a forged post is refused.
    let mut v = Browser::new(&d.url);
    assert_eq!(v.sign_in(&viewer).status, 303);
    let wf = v.get("/workflows/wedding");
    assert!(!wf.body.contains("Trigger a run"));
    assert!(wf.body.contains("needs the operator role"));
    let forged = v.post(
        "/workflows/wedding/trigger",
        &[("_csrf", &csrf(&wf.body))],
        &[],
    );
    assert_eq!(forged.status, 403);
    assert!(
        forged.body.contains("needs the operator role"),
        "{}",
        forged.body
    );
    let model_page = v.get(&format!("/models/{}", ids[0]));
    assert!(!model_page.body.contains(">Deploy<"));
    let review = v.get("/review");
    assert!(review.body.contains("Labelling needs the reviewer role"));
    assert!(!review.body.contains("Label the next item"));
    assert_eq!(v.get(&item_path).status, 403);
    let forged = v.post(
        &format!("/review/{item}/label"),
        &[("_csrf", &csrf(&wf.body)), ("verdict", "reject")],
        &[],
    );
    assert_eq!(forged.status, 403);
    let thread = v.get(&format!("/conversations/{conv}"));
    assert!(!thread.body.contains("Send to review"));
    assert!(
        !v.get("/data").body.contains("id=\"drop\""),
        "a viewer has no drop zone"
    );
    let forged = v.post(
        &format!("/conversations/{conv}/turns/0/review"),
        &[("_csrf", &csrf(&wf.body))],
        &[],
    );
    assert_eq!(forged.status, 403);

    // Sign-out ends the session on the server, not only in the browser,
    // and the event stream its page had open.
    let (tx, ended) = std::sync::mpsc::channel();
    {
        let url = format!("{}/live/events", d.url);
        let cookie = b.cookie.clone().unwrap();
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut res = agent.get(&url).header("Cookie", &cookie).call().unwrap();
            let status = res.status().as_u16();
            let _ = std::io::copy(&mut res.body_mut().as_reader(), &mut std::io::sink());
            let _ = tx.send(status);
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let home_page = b.get("/");
    let out = b.post("/sign-out", &[("_csrf", &csrf(&home_page.body))], &[]);
    assert_eq!(out.status, 303);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    assert_eq!(b.get("/").status, 303, "the old cookie no longer signs in");
    let status = ended
        .recv_timeout(Duration::from_secs(20))
        .expect("the signed-out session's event stream ended");
    assert_eq!(status, 200);

    // Revoking the token ends its sessions too (within the token cache's
    // second).
    let (_, tokens) = crate::daemon::call(
        "GET",
        &format!("{}/api/v1/tokens", d.url),
        &token(&home, "admin"),
    );
    let viewer_id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "viewer")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(v.get("/").status, 200);
    home.coach(&["token", "revoke", &viewer_id.to_string()])
        .expect_ok();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(v.get("/").status, 303, "a revoked token's session ends");
}

/// Debian's Chromium, or the one `COACH_CHROMIUM` names. Without one the
/// browser test says so and passes, unless `COACH_REQUIRE_BROWSER` is set
/// (CI sets it).
fn chromium() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("COACH_CHROMIUM")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            [
                "/usr/bin/chromium",
                "/usr/bin/chromium-browser",
                "/usr/bin/google-chrome",
            ]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("COACH_REQUIRE_BROWSER").is_none(),
            "COACH_REQUIRE_BROWSER is set but no Chromium was found (apt-get install chromium)"
        );
        eprintln!(
            "skipping the browser test: no Chromium (apt-get install chromium, or set COACH_CHROMIUM)"
        );
    }
    found
}

/// axe-core's script (`npm install axe-core`), from `COACH_AXE` or a
/// `node_modules` beside the workspace.
fn axe() -> Option<String> {
    let path = std::env::var_os("COACH_AXE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::common::workspace().join("node_modules/axe-core/axe.min.js"));
    let found = std::fs::read_to_string(&path).ok();
    if found.is_none() {
        assert!(
            std::env::var_os("COACH_REQUIRE_BROWSER").is_none(),
            "COACH_REQUIRE_BROWSER is set but axe-core is not at {}",
            path.display()
        );
        eprintln!(
            "no accessibility checks: axe-core is not at {} (npm install axe-core)",
            path.display()
        );
    }
    found
}

fn screenshots() -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::common::workspace().join("target"))
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run axe-core in the page: its serious and critical violations.
fn violations(tab: &headless_chrome::Tab, axe: &str) -> Vec<String> {
    tab.evaluate(axe, false).unwrap();
    let v = tab
        .evaluate(
            "axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(r.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => v.impact + ' ' + v.id + ': ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))))",
            true,
        )
        .unwrap()
        .value
        .unwrap();
    serde_json::from_str(v.as_str().unwrap()).unwrap()
}

fn eval(tab: &headless_chrome::Tab, js: &str) -> serde_json::Value {
    tab.evaluate(js, false)
        .unwrap()
        .value
        .unwrap_or(serde_json::Value::Null)
}

fn wait_for(tab: &headless_chrome::Tab, js: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while eval(tab, js) != serde_json::Value::Bool(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn in_a_real_browser_a_run_is_watched_live_and_every_page_passes_axe() {
    use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
    use headless_chrome::types::Bounds;
    let Some(chrome) = chromium() else { return };
    let axe = axe();
    let home = daemon_home("");
    std::fs::write(
        home.path("workflows/wedding.toml"),
        wedding_workflow("wedding", 300, ""),
    )
    .unwrap();
    let d = Daemon::start(&home);
    let operator = token(&home, "operator");
    let browser = headless_chrome::Browser::new(
        headless_chrome::LaunchOptions::default_builder()
            .path(Some(chrome))
            .sandbox(false)
            .window_size(Some((1440, 900)))
            .idle_browser_timeout(Duration::from_secs(300))
            .build()
            .unwrap(),
    )
    .unwrap();
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&format!("{}/", d.url)).unwrap();
    tab.wait_until_navigated().unwrap();
    // Signed out, the browser lands on the sign-in form; sign in with the
    // keyboard.
    wait_for(&tab, "location.pathname === '/sign-in'", "the sign-in page");
    tab.wait_for_element("#token").unwrap().click().unwrap();
    tab.type_str(&operator).unwrap().press_key("Enter").unwrap();
    wait_for(
        &tab,
        "location.pathname === '/' && !!document.querySelector('#runs-by-state')",
        "the overview",
    );

    // Trigger the run from the workflow's page with the keyboard: tab to
    // the button and press Enter.
    tab.navigate_to(&format!("{}/workflows/wedding", d.url))
        .unwrap();
    tab.wait_until_navigated().unwrap();
    wait_for(
        &tab,
        "!!document.querySelector('#trigger')",
        "the trigger button",
    );
    eval(&tab, "document.querySelector('#trigger').focus(), true");
    // Listen to the daemon's own stream of every event, to know when each
    // progress event was emitted.
    let events = {
        let (url, tok) = (format!("{}/api/v1/events", d.url), operator.clone());
        std::thread::spawn(move || crate::daemon::sse(&url, &tok, |name, _| name == "run.finished"))
    };
    std::thread::sleep(Duration::from_millis(300));
    tab.press_key("Enter").unwrap();
    wait_for(
        &tab,
        "location.pathname.startsWith('/runs/')",
        "the run's page",
    );
    // Every text the progress line shows, with when it showed it (kept in
    // the tab's session storage: the page reloads when the run finishes).
    eval(
        &tab,
        "sessionStorage.setItem('watching', String(Date.now())); window.__seen = [];
         new MutationObserver(() => {
             window.__seen.push([Date.now(), document.querySelector('#progress-text').textContent]);
             sessionStorage.setItem('seen', JSON.stringify(window.__seen));
             sessionStorage.setItem('open', document.body.dataset.liveOpen || '0');
         }).observe(document.querySelector('#progress-text'), {childList: true, characterData: true, subtree: true}); true",
    );
    let events = events.join().unwrap();
    wait_for(
        &tab,
        "!!document.querySelector('#h-eval-evaluate')",
        "the evaluation once the run finished (the page reloads itself)",
    );
    let seen: Vec<(i64, String)> = serde_json::from_str(
        eval(&tab, "sessionStorage.getItem('seen') || '[]'")
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let since: i64 = [
        eval(&tab, "sessionStorage.getItem('watching')"),
        eval(&tab, "sessionStorage.getItem('open')"),
    ]
    .iter()
    .filter_map(|v| v.as_str()?.parse().ok())
    .max()
    .unwrap();
    // Each progress event emitted while the page was listening is on the
    // page within 500 ms of the daemon emitting it.
    let mut late = Vec::new();
    let mut shown = 0;
    for (name, e) in &events {
        if name != "progress" {
            continue;
        }
        let at = chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        if at <= since {
            continue;
        }
        let text = format!(
            "{}: {}% {}",
            e["step"].as_str().unwrap(),
            (e["fraction"].as_f64().unwrap() * 100.0).round(),
            e["message"].as_str().unwrap()
        );
        match seen.iter().find(|(t, s)| *s == text && *t >= at - 50) {
            Some((t, _)) if t - at <= 500 => shown += 1,
            Some((t, _)) => late.push(format!("{text}: shown {} ms after", t - at)),
            None => late.push(format!("{text}: never shown")),
        }
    }
    assert!(
        shown >= 3,
        "progress events shown: {shown}; {late:?}; seen {seen:?}"
    );
    assert!(late.is_empty(), "{late:#?}");

    let run_path = eval(&tab, "location.pathname");
    assert!(
        run_path.as_str().unwrap().starts_with("/runs/"),
        "{run_path}"
    );

    // A review item labelled with the keyboard only: `n` on the review
    // page claims the most valuable item, the intent field has the focus,
    // Enter approves.
    let (s, v) = crate::daemon::post_json(
        &format!("{}/api/v1/review/items", d.url),
        &operator,
        &serde_json::json!({"items": [{"model": "wedding", "text": "could someone sort the flowers", "reason": "queued by the test"}]}),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = crate::daemon::post_json(
        &format!("{}/api/v1/conversations", d.url),
        &operator,
        &serde_json::json!({"conversations": [{"model": "wedding", "id": "c-1", "messages": [
            {"role": "user", "text": "we need flowers for the big day", "intent": "find_florist", "confidence": 0.91,
             "entities": [{"entity": "occasion", "start": 24, "end": 31, "value": "big day"}]},
            {"role": "bot", "text": "Here are florists near you."}
        ]}]}),
    );
    assert_eq!(s, 201, "{v}");
    tab.navigate_to(&format!("{}/review", d.url)).unwrap();
    tab.wait_until_navigated().unwrap();
    wait_for(
        &tab,
        "!!document.querySelector('#next-item') && document.readyState === 'complete'",
        "the review page",
    );
    tab.press_key("n").unwrap();
    wait_for(
        &tab,
        "location.pathname.startsWith('/review/') && document.activeElement && document.activeElement.id === 'intent'",
        "the item with its intent field focused",
    );
    let item_path = eval(&tab, "location.pathname").as_str().unwrap().to_owned();
    tab.type_str("find_florist")
        .unwrap()
        .press_key("Enter")
        .unwrap();
    wait_for(
        &tab,
        "location.pathname === '/review'",
        "the queue again, the item labelled",
    );
    let (_, item) = crate::daemon::call(
        "GET",
        &format!(
            "{}/api/v1{}",
            d.url,
            item_path.replace("/review/", "/review/items/")
        ),
        &operator,
    );
    assert_eq!(item["labels"][0]["intent"], "find_florist", "{item}");

    // A malformed file dropped on the data page: its located error shows
    // and nothing is kept.
    tab.navigate_to(&format!("{}/data", d.url)).unwrap();
    tab.wait_until_navigated().unwrap();
    wait_for(
        &tab,
        "!!document.querySelector('#drop') && document.readyState === 'complete'",
        "the data page",
    );
    tab.wait_for_element("#dataset-name")
        .unwrap()
        .click()
        .unwrap();
    tab.type_str("dropped").unwrap();
    eval(
        &tab,
        r#"const dt = new DataTransfer();
           dt.items.add(new File(['{"text": "book a dj", "intent": "book_music"}\n{"text": "oops", "intent":\n'], 'dropped.jsonl'));
           document.querySelector('#drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
           true"#,
    );
    wait_for(
        &tab,
        "!!document.querySelector('#upload-error')",
        "the upload's errors",
    );
    let shown = eval(&tab, "document.querySelector('#upload-error').textContent");
    assert!(
        shown.as_str().unwrap().contains("dropped.jsonl:2"),
        "{shown}"
    );
    assert!(!home.path("data/datasets/dropped").exists(), "nothing kept");

    // Screenshots and accessibility, every page, wide and narrow.
    let model_id = {
        let (_, list) = crate::daemon::call("GET", &format!("{}/api/v1/models", d.url), &operator);
        list["models"][0]["id"].as_i64().unwrap()
    };
    let pages = [
        ("overview", "/".to_owned()),
        ("workflows", "/workflows".to_owned()),
        ("workflow", "/workflows/wedding".to_owned()),
        ("runs", "/runs".to_owned()),
        ("run", run_path.as_str().unwrap().to_owned()),
        ("models", "/models".to_owned()),
        ("model", format!("/models/{model_id}")),
        (
            "compare",
            format!("/models/compare?a={model_id}&b={model_id}"),
        ),
        ("conversations", "/conversations".to_owned()),
        ("conversation", "/conversations/1".to_owned()),
        ("review", "/review".to_owned()),
        ("review-item", item_path.clone()),
        ("experiments", "/experiments".to_owned()),
        ("data", "/data".to_owned()),
    ];
    let dir = screenshots();
    let mut problems = Vec::new();
    for (width, height) in [(1440.0, 900.0), (390.0, 844.0)] {
        tab.set_bounds(Bounds::Normal {
            left: Some(0),
            top: Some(0),
            width: Some(width),
            height: Some(height),
        })
        .unwrap();
        for (name, path) in &pages {
            tab.navigate_to(&format!("{}{path}", d.url)).unwrap();
            tab.wait_until_navigated().unwrap();
            wait_for(&tab, "document.readyState === 'complete'", name);
            let png = tab
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
                .unwrap();
            std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
            // Nothing wider than the screen at 390 px.
            let overflow = eval(
                &tab,
                "document.documentElement.scrollWidth > window.innerWidth + 1",
            );
            if overflow == serde_json::Value::Bool(true) {
                problems.push(format!("{name} at {width}px scrolls sideways"));
            }
            if let Some(axe) = &axe {
                for v in violations(&tab, axe) {
                    problems.push(format!("{name} at {width}px: {v}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
