//! The daemon's HTTP server against hostile clients, most of them without
//! any token: junk methods and paths, floods of idle connections, bodies,
//! URIs and headers over their limits, NUL bytes, values outside the
//! bounds the OpenAPI document publishes, revoked tokens on open streams.

use crate::common::{Home, Postgres};
use crate::daemon::{
    Daemon, call, daemon_home, post_json, sse, token, wait_for_state, wedding_workflow,
};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `request` sent as is on a fresh connection; the status (0 when the
/// server closed without an answer) and the body as JSON.
fn raw(url: &str, request: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer and close before it has read all of a request
    // over a limit: a failed write is no failure here.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: coach\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

pub(crate) fn metrics(url: &str, tok: &str) -> String {
    let mut res = ureq::get(&format!("{url}/metrics"))
        .header("Authorization", &format!("Bearer {tok}"))
        .call()
        .unwrap();
    res.body_mut().read_to_string().unwrap()
}

fn series(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn junk_methods_and_paths_add_no_metrics_series() {
    let home = daemon_home("");
    let tok = token(&home, "viewer");
    let d = Daemon::start(&home);
    // Every series a well-behaved client makes, made once.
    metrics(&d.url, &tok);
    call("GET", &format!("{}/healthz", d.url), "");
    let before = metrics(&d.url, &tok);

    let bearer = format!("Bearer {tok}");
    let long_method = "X".repeat(200_000);
    for i in 0..2_000 {
        let method = if i % 100 == 0 {
            long_method.clone()
        } else {
            format!("FOOBAR{i}")
        };
        let path = match i % 5 {
            0 => "/metrics".to_owned(),
            1 => "/api/v1/runs".to_owned(),
            2 => "/healthz".to_owned(),
            3 => format!("/junk/{i}/{}", "y".repeat(i % 300)),
            _ => format!("/api/v1/runs/{i}?x={i}"),
        };
        let auth: &[(&str, &str)] = match i % 3 {
            0 => &[],
            1 => &[("Authorization", "Bearer coach_made_up")],
            // With a token: a route's 405 or the fallback's 404 still adds
            // no series (labels come from the route table).
            _ => &[("Authorization", &bearer)],
        };
        raw(&d.url, &request(&method, &path, auth, ""));
    }
    let after = metrics(&d.url, &tok);
    assert_eq!(
        series(&before),
        series(&after),
        "junk added series to /metrics:\n{after}"
    );
    assert!(
        !after.contains("FOOBAR") && !after.contains("junk"),
        "{after}"
    );
    assert!(
        after.len() < before.len() + 2_000,
        "{} → {} bytes",
        before.len(),
        after.len()
    );
}

/// Open `per` connections to `port` and hold them for `hold` seconds:
/// half of them idle, half with a request header that is never finished;
/// a connection the server closes is opened again at once. Prints `ready`
/// once all are open, then `done <reopened>`.
const FLOOD: &str = r#"
import resource, selectors, socket, sys, time
per, port, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
def open_one(i):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if i % 2:
        s.sendall(b"GET /api/v1/runs HTTP/1.1\r\nHost: coach\r\n")
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, i)
for i in range(per):
    open_one(i)
print("ready", flush=True)
reopened, end = 0, time.time() + hold
while time.time() < end:
    for key, _ in sel.select(0.2):
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            open_one(key.data)
            reopened += 1
print("done", reopened, flush=True)
"#;

/// The hard limit on open files of this process, from `/proc`.
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(4)?.parse().ok()
        })
        .unwrap_or(1024)
}

#[test]
fn twenty_thousand_held_connections_leave_health_checks_and_a_running_step_working() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is needed to hold 20,000 connections");
        return;
    }
    let home = daemon_home("");
    home.write("workflows/steady.toml", &wedding_workflow("steady", 30, ""));
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let port = d.url.rsplit(':').next().unwrap().to_owned();

    // 20,000 connections from as many processes as this machine's
    // open-file limit needs.
    let total = 20_000;
    let per = (open_file_limit().saturating_sub(200)).clamp(500, 10_000);
    let mut floods = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(per);
        left -= n;
        let mut child = Command::new("python3")
            .args(["-c", FLOOD, &n.to_string(), &port, "25"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(
            lines.next().and_then(Result::ok).as_deref(),
            Some("ready"),
            "a flood helper could not open its {n} connections"
        );
        floods.push((child, lines));
    }

    // Under the flood: health checks answer, a run reads its data, trains
    // and registers, and the daemon stays inside its open-file budget.
    let health = |what: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let res = agent.get(&format!("{}/healthz", d.url)).call();
        assert!(
            res.as_ref().is_ok_and(|r| r.status() == 200),
            "/healthz {what}: {:?}",
            res.err()
        );
    };
    health("once the flood holds 20,000 connections");
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/steady/runs", d.url),
        &tok,
    );
    assert_eq!(s, 202, "{v}");
    let id = v["run"]["id"].as_i64().unwrap_or_else(|| panic!("{v}"));
    health("while the run starts");
    let fds = open_files(d.pid());
    let run = wait_for_state(&d, &tok, id, &["succeeded", "failed", "cancelled"]);
    assert_eq!(run["state"], "succeeded", "{run}\n{}", d.log());
    health("after the run");
    for (mut child, mut lines) in floods {
        let done = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(done.starts_with("done"), "{done}");
        child.wait().unwrap();
    }
    health("after the flood");
    let log = d.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(fds <= 16_384 + 1_024, "{fds} open files");
}

#[test]
fn an_event_stream_ends_when_its_token_is_revoked() {
    let home = daemon_home("");
    let admin = token(&home, "admin");
    let viewer = token(&home, "viewer");
    let d = Daemon::start(&home);
    let url = format!("{}/api/v1/events", d.url);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let events = sse(&url, &viewer, |_, _| false);
        let _ = tx.send(events);
    });
    // The stream is open; revoke its token.
    std::thread::sleep(Duration::from_millis(500));
    let (_, tokens) = call("GET", &format!("{}/api/v1/tokens", d.url), &admin);
    let id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "viewer")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let res = ureq::delete(&format!("{}/api/v1/tokens/{id}", d.url))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(res.status(), 204);
    let events = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the stream stayed open after its token was revoked");
    assert_eq!(
        events.last().map(|(e, _)| e.as_str()),
        Some("revoked"),
        "{events:?}"
    );
}

#[test]
fn limits_answer_with_the_json_error_and_the_bearer_scheme_is_case_insensitive() {
    let home = daemon_home("");
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let auth = format!("Bearer {tok}");
    let expect = |(s, v): (u16, Value), status: u16, code: &str, what: &str| {
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{what}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    };
    let big = format!(
        "{{\"feedback\": [{{\"model\": \"m\", \"comment\": \"{}\"}}]}}",
        "x".repeat(5 << 20)
    );
    expect(
        raw(
            &d.url,
            &request(
                "POST",
                "/api/v1/feedback",
                &[("Authorization", &auth)],
                &big,
            ),
        ),
        413,
        "too_large",
        "a 5 MiB body",
    );
    // Without a token the body is never read.
    expect(
        raw(&d.url, &request("POST", "/api/v1/feedback", &[], &big)),
        401,
        "unauthorized",
        "a 5 MiB body without a token",
    );
    let long = format!("/api/v1/runs?workflow={}", "w".repeat(9_000));
    expect(
        raw(
            &d.url,
            &request("GET", &long, &[("Authorization", &auth)], ""),
        ),
        414,
        "uri_too_long",
        "a 9 KB URI",
    );
    let padding = "p".repeat(40_000);
    expect(
        raw(
            &d.url,
            &request(
                "GET",
                "/api/v1/runs",
                &[("Authorization", &auth), ("X-Padding", &padding)],
                "",
            ),
        ),
        431,
        "headers_too_large",
        "40 KB of headers",
    );
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (s, v) = raw(
            &d.url,
            &request(
                "GET",
                "/api/v1/status",
                &[("Authorization", &format!("{scheme} {tok}"))],
                "",
            ),
        );
        assert_eq!(s, 200, "{scheme}: {v}");
    }
}

/// NUL bytes anywhere a client can put text are refused at the edge with
/// the field named — the same answer on every backend — and nothing of
/// the request is kept.
fn nul_is_refused_naming_the_field(home: &Home) {
    let tok = token(home, "operator");
    let d = Daemon::start(home);
    let auth = format!("Bearer {tok}");
    let conversation = |text: &str| {
        json!({"conversations": [{"model": "support", "id": "c1", "messages": [
            {"role": "user", "text": text, "intent": "greet", "confidence": 0.9}]}]})
    };
    let (s, v) = post_json(
        &format!("{}/api/v1/conversations", d.url),
        &tok,
        &conversation("hi\u{0}there"),
    );
    assert_eq!(
        (s, v["message"].as_str()),
        (
            400,
            Some("`conversations[0].messages[0].text` holds a NUL character")
        ),
        "{v}"
    );
    for (target, message) in [
        (
            "/api/v1/runs?workflow=a%00b",
            "query parameter `workflow` holds a NUL character",
        ),
        (
            "/api/v1/models/a%00b/traffic",
            "the path holds a NUL character",
        ),
    ] {
        let (s, v) = raw(
            &d.url,
            &request("GET", target, &[("Authorization", &auth)], ""),
        );
        assert_eq!((s, v["message"].as_str()), (400, Some(message)), "{target}");
    }
    // Nothing was kept, and text without NUL is stored on this backend.
    let traffic = || {
        call(
            "GET",
            &format!("{}/api/v1/models/support/traffic", d.url),
            &tok,
        )
        .1
    };
    assert_eq!(traffic()["messages"], 0);
    let (s, v) = post_json(
        &format!("{}/api/v1/conversations", d.url),
        &tok,
        &conversation("héllo ✓ \u{1b}[2J"),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(traffic()["messages"], 1);
}

#[test]
fn nul_is_refused_naming_the_field_on_sqlite() {
    nul_is_refused_naming_the_field(&daemon_home(""));
}

#[test]
fn nul_is_refused_naming_the_field_on_postgres() {
    let pg = Postgres::create();
    let home = crate::daemon::postgres_home(&pg);
    nul_is_refused_naming_the_field(&home);
}

/// Every leaf of a request body's published example, pushed past each
/// bound its schema declares (and given a NUL when it is a string).
fn mutations(schema: &Value, example: &Value, at: &str, out: &mut Vec<(String, Value, u16)>) {
    let years = |s: &Value| -> Option<(i64, i64)> {
        let y = s.get("x-coach-years")?.as_array()?;
        Some((y.first()?.as_i64()?, y.get(1)?.as_i64()?))
    };
    match example {
        Value::Object(o) => {
            for (k, x) in o {
                let sub = &schema["properties"][k];
                assert!(
                    sub.is_object(),
                    "{at}.{k}: the example has a field the schema lacks"
                );
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                let mut inner = Vec::new();
                mutations(sub, x, &here, &mut inner);
                for (path, v, status) in inner {
                    let mut whole = example.clone();
                    whole[k] = v;
                    out.push((path, whole, status));
                }
            }
        }
        Value::Array(items) => {
            let first = items.first().expect("examples have an item per array");
            let mut inner = Vec::new();
            mutations(&schema["items"], first, &format!("{at}[0]"), &mut inner);
            for (path, v, status) in inner {
                let mut whole = example.clone();
                whole[0] = v;
                out.push((path, whole, status));
            }
            let max = schema["maxItems"]
                .as_u64()
                .unwrap_or_else(|| panic!("{at}: an array without maxItems"));
            out.push((
                at.to_owned(),
                Value::Array(vec![first.clone(); max as usize + 1]),
                422,
            ));
        }
        Value::String(s) => {
            if let Some(options) = schema["enum"].as_array() {
                assert!(options.contains(example));
                out.push((at.to_owned(), json!("not-one-of-them"), 422));
            } else if schema["format"] == "date-time" {
                let (first, last) =
                    years(schema).unwrap_or_else(|| panic!("{at}: a time without x-coach-years"));
                for year in [first - 1, last + 1] {
                    out.push((at.to_owned(), json!(format!("{year:04}{}", &s[4..])), 422));
                }
            } else {
                let max = schema["maxLength"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{at}: a string without maxLength"));
                out.push((at.to_owned(), json!("a".repeat(max as usize + 1)), 422));
                if schema["minLength"].as_u64().is_some_and(|m| m > 0) {
                    out.push((at.to_owned(), json!(""), 422));
                }
                if schema.get("pattern").is_some() {
                    out.push((at.to_owned(), json!("no such/name"), 422));
                }
            }
            out.push((at.to_owned(), json!(format!("{s}\u{0}")), 400));
        }
        Value::Number(_) => {
            if let Some(options) = schema["enum"].as_array() {
                assert!(options.contains(example));
                out.push((at.to_owned(), json!(7), 422));
            } else {
                let min = schema["minimum"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{at}: a number without minimum"));
                let max = schema["maximum"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{at}: a number without maximum"));
                let (below, above) = if schema["type"] == "integer" {
                    (json!(min as i64 - 1), json!(max as i64 + 1))
                } else {
                    (json!(min - 0.5), json!(max + 0.5))
                };
                out.push((at.to_owned(), below, 422));
                out.push((at.to_owned(), above, 422));
            }
            out.push((at.to_owned(), json!("7"), 400));
        }
        Value::Bool(_) => out.push((at.to_owned(), json!(1), 400)),
        Value::Null => {}
    }
}

#[test]
fn every_bound_the_openapi_document_publishes_is_enforced() {
    let home = daemon_home("");
    // The published examples deploy and roll back the quickstart's model.
    let quickstart = crate::common::workspace().join("workflows/quickstart.toml");
    home.coach(&["run", quickstart.to_str().unwrap()])
        .expect_ok();
    // The experiment's example compares v1 with a v2: the same workflow
    // with its gate left out (no v2 would beat v1 by the gate's margin).
    let text = std::fs::read_to_string(&quickstart).unwrap();
    let gate = text.find("[[step]]\nid = \"gate\"").unwrap();
    let register = text.find("[[step]]\nid = \"register\"").unwrap();
    let ungated = format!("{}{}", &text[..gate], &text[register..])
        .replace("needs = [\"gate\"]", "needs = [\"evaluate\"]")
        .replace(
            "data/wedding/",
            &format!(
                "{}/",
                quickstart.parent().unwrap().join("data/wedding").display()
            ),
        )
        .replace(
            "\"scripts/",
            &format!(
                "\"{}/",
                quickstart.parent().unwrap().join("scripts").display()
            ),
        );
    let v2 = home.write("v2/quickstart.toml", &ungated);
    home.coach(&["run", v2.to_str().unwrap()]).expect_ok();
    let admin = token(&home, "admin");
    let d = Daemon::start(&home);
    let (s, doc) = call("GET", &format!("{}/api/v1/openapi.json", d.url), &admin);
    assert_eq!(s, 200);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(body) = op.pointer("/requestBody/content/application~1json") else {
                continue;
            };
            assert_eq!(method, "post", "{path}");
            let example = body
                .get("example")
                .unwrap_or_else(|| panic!("{path}: a request body without an example"));
            // Path parameters take the example their schema publishes.
            let mut concrete = path.clone();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap();
                    let example = p["example"].as_str().unwrap_or_else(|| {
                        panic!("{path}: path parameter `{name}` without an example")
                    });
                    concrete = concrete.replace(&format!("{{{name}}}"), example);
                }
            }
            let url = format!("{}{concrete}", d.url);
            let (s, v) = post_json(&url, &admin, example);
            assert!(
                (200..300).contains(&s),
                "{path}: the published example is refused: {v}"
            );
            let mut cases = Vec::new();
            mutations(&body["schema"], example, "", &mut cases);
            assert!(!cases.is_empty(), "{path}");
            for (at, bad, status) in cases {
                let (s, v) = post_json(&url, &admin, &bad);
                let message = v["message"].as_str().unwrap_or_default();
                assert_eq!(s, status, "{path} {at}: {v}");
                assert!(
                    message.contains(&at),
                    "{path}: the message does not name `{at}`: {message}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} cases");
}

#[test]
fn the_last_admin_token_cannot_be_revoked() {
    let home = daemon_home("");
    let admin = token(&home, "admin");
    let d = Daemon::start(&home);
    let (_, tokens) = call("GET", &format!("{}/api/v1/tokens", d.url), &admin);
    let id = tokens["tokens"][0]["id"].as_i64().unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut res = agent
        .delete(&format!("{}/api/v1/tokens/{id}", d.url))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(res.status(), 409);
    let v: Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("it is the last admin token"),
        "{v}"
    );
    let (s, _) = call("GET", &format!("{}/api/v1/tokens", d.url), &admin);
    assert_eq!(s, 200, "the admin token still works");
    home.coach(&["token", "revoke", &id.to_string()])
        .expect_failure_with("it is the last admin token");
}
