//! Plugins that reach the network: the first-party helpdesk source against
//! a helpdesk-shaped server started here, behind the operator's allow-list
//! — allowed and denied hosts, a redirect that tries to leave the list, a
//! name that resolves to loopback, oversized and slow responses, an
//! oversized request, secrets, and a checkpoint that survives restarts.

use crate::common::Home;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret-token";

/// A ticket: id, requester, its public comments (texts, the requester's
/// first) and one private note.
#[derive(Clone)]
struct Ticket {
    id: u64,
    requester: u64,
    comments: Vec<String>,
}

#[derive(Default)]
struct State {
    tickets: Vec<Ticket>,
    /// Ticket ids in the order they were created or updated: the export's
    /// stream; a cursor is a position in it.
    stream: Vec<u64>,
    /// Every request: path and query, and whether it carried the token.
    seen: Vec<(String, bool)>,
}

impl State {
    fn upsert(&mut self, t: Ticket) {
        self.stream.push(t.id);
        self.tickets.retain(|x| x.id != t.id);
        self.tickets.push(t);
    }
}

/// A helpdesk API (after Zendesk's cursor-based incremental export) on a
/// loopback port, one thread per connection.
struct Helpdesk {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Helpdesk {
    fn start() -> Helpdesk {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(conn, port, &state));
            }
        });
        Helpdesk { port, state }
    }

    fn url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}{prefix}", self.port)
    }

    fn add(&self, id: u64, comments: &[&str]) {
        self.state.lock().unwrap().upsert(Ticket {
            id,
            requester: 1000 + id,
            comments: comments.iter().map(|s| s.to_string()).collect(),
        });
    }

    fn seen(&self) -> Vec<(String, bool)> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }
}

fn respond(conn: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

fn serve(mut conn: TcpStream, port: u16, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut authorized = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if h.to_ascii_lowercase().starts_with("authorization:")
            && h.trim_end().ends_with(&format!("Bearer {TOKEN}"))
        {
            authorized = true;
        }
    }
    state
        .lock()
        .unwrap()
        .seen
        .push((target.clone(), authorized));
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    if let Some(rest) = path.strip_prefix("/escape") {
        // Off to a host the grant does not name (the same server, by
        // another name).
        let to = format!("http://localhost:{port}{rest}?{query}");
        return respond(&mut conn, "302 Found", &[("location", to)], b"");
    }
    if path.starts_with("/huge") {
        let body = format!("{{\"tickets\": [], \"pad\": \"{}\"}}", "x".repeat(3 << 20));
        return respond(&mut conn, "200 OK", &[], body.as_bytes());
    }
    if path.starts_with("/slow") {
        std::thread::sleep(Duration::from_secs(30));
        return respond(&mut conn, "200 OK", &[], b"{\"tickets\": []}");
    }
    if !authorized {
        return respond(
            &mut conn,
            "401 Unauthorized",
            &[],
            b"{\"error\": \"Couldn't authenticate you\"}",
        );
    }
    let s = state.lock().unwrap();
    let body = if path == "/api/v2/incremental/tickets/cursor.json" {
        let per_page: usize = param("per_page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(100);
        let start: usize = param("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
        let end = (start + per_page).min(s.stream.len());
        let tickets: Vec<serde_json::Value> = s.stream[start.min(end)..end]
            .iter()
            .map(|id| {
                let t = s.tickets.iter().find(|t| t.id == *id).unwrap();
                serde_json::json!({"id": t.id, "requester_id": t.requester, "status": "open"})
            })
            .collect();
        serde_json::json!({
            "tickets": tickets,
            "after_cursor": end.to_string(),
            "end_of_stream": end == s.stream.len(),
        })
    } else if let Some(id) = path
        .strip_prefix("/api/v2/tickets/")
        .and_then(|r| r.strip_suffix("/comments.json"))
        .and_then(|id| id.parse::<u64>().ok())
    {
        let Some(t) = s.tickets.iter().find(|t| t.id == id) else {
            drop(s);
            return respond(&mut conn, "404 Not Found", &[], b"{}");
        };
        // Two pages: the first comment, then the rest and a private note.
        let comment = |i: usize, text: &str, public: bool| {
            serde_json::json!({
                "id": i,
                "author_id": if i == 0 { t.requester } else { 7 },
                "body": text,
                "public": public,
                "created_at": format!("2026-11-29T10:{:02}:00Z", i),
            })
        };
        if param("page").as_deref() == Some("2") {
            let mut rest: Vec<_> = t.comments[1..]
                .iter()
                .enumerate()
                .map(|(i, c)| comment(i + 1, c, true))
                .collect();
            rest.push(comment(99, "internal: refund approved by finance", false));
            serde_json::json!({"comments": rest, "next_page": null})
        } else {
            serde_json::json!({
                "comments": [comment(0, &t.comments[0], true)],
                "next_page": format!("http://127.0.0.1:{port}/api/v2/tickets/{id}/comments.json?page=2"),
            })
        }
    } else {
        drop(s);
        return respond(&mut conn, "404 Not Found", &[], b"{}");
    };
    drop(s);
    respond(
        &mut conn,
        "200 OK",
        &[("content-type", "application/json".into())],
        body.to_string().as_bytes(),
    );
    let _ = reader.read(&mut [0u8; 0]);
}

fn workflow(home: &Home, base_url: &str) -> String {
    home.write(
        "helpdesk.toml",
        &format!(
            "version = 1\nname = \"helpdesk\"\n\n[[step]]\nid = \"tickets\"\nuses = \"source-helpdesk\"\nincremental = true\nwith = {{ base_url = \"{base_url}\", per_page = 2 }}\n"
        ),
    )
    .display()
    .to_string()
}

/// The config's `[limits]` with `extra` lines added.
fn with_limits(home: &Home, extra: &str) {
    let config = std::fs::read_to_string(&home.config).unwrap().replacen(
        "output = \"64KiB\"\n",
        &format!("output = \"64KiB\"\n{extra}\n"),
        1,
    );
    std::fs::write(&home.config, config).unwrap();
}

fn snapshot(home: &Home) -> Vec<(String, Vec<(String, String)>)> {
    crate::common::snapshot_conversations(home, "helpdesk/tickets")
}

#[test]
fn a_granted_helpdesk_is_read_with_its_secret_and_resumed_from_its_checkpoint() {
    let server = Helpdesk::start();
    for id in 1..=5 {
        server.add(
            id,
            &[
                &format!("my order {id} never arrived"),
                "Sorry about that, a new one is on its way.",
            ],
        );
    }
    let home = Home::new(
        "[grants.source-helpdesk]\nhttp = [\"127.0.0.1\"]\nprivate_network = true\n[grants.source-helpdesk.secrets]\nHELPDESK_TOKEN = \"${COACH_SECRET_FOR_TESTS_HELPDESK}\"\n",
    );
    let wf = workflow(&home, &server.url(""));
    // Without the variable the secret is not given, and the server says
    // so through the plugin.
    home.coach(&["run", &wf])
        .expect_failure_with("401")
        .expect_failure_with("Couldn't authenticate you");
    assert!(server.seen().iter().all(|(_, auth)| !auth));
    let run = |home: &Home| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coach-cli"))
            .arg("--config")
            .arg(&home.config)
            .args(["run", &wf])
            .env("COACH_SECRET_FOR_TESTS_HELPDESK", TOKEN)
            .env_remove("COACH_DATA_DIR")
            .env_remove("COACH_DATABASE_URL")
            .output()
            .unwrap();
        crate::common::Run(out)
    };
    let first = run(&home);
    first.expect_ok();
    assert!(first.all().contains("5 conversations"), "{}", first.all());
    let seen = server.seen();
    assert!(seen.iter().all(|(_, auth)| *auth), "{seen:?}");
    // 3 pages of tickets (2 + 2 + 1), 2 pages of comments per ticket.
    assert_eq!(seen.len(), 3 + 5 * 2, "{seen:?}");
    let convs = snapshot(&home);
    assert_eq!(convs.len(), 5);
    assert_eq!(convs[0].0, "ticket-1");
    assert_eq!(
        convs[0].1,
        vec![
            ("user".to_owned(), "my order 1 never arrived".to_owned()),
            (
                "bot".to_owned(),
                "Sorry about that, a new one is on its way.".to_owned()
            ),
        ],
        "private notes stay out"
    );

    // New tickets, and an old one updated; the next run — a new process,
    // as after a restart — starts from the checkpoint.
    server.add(6, &["can I change my address?", "Yes, done."]);
    server.add(
        3,
        &[
            "my order 3 never arrived",
            "Sent again.",
            "It came, thanks!",
        ],
    );
    let second = run(&home);
    second.expect_ok();
    assert!(
        second.all().contains("resuming after snapshot"),
        "{}",
        second.all()
    );
    let seen = server.seen();
    assert!(
        seen[0].0.contains("cursor=5") && !seen[0].0.contains("start_time"),
        "resumes at the cursor: {seen:?}"
    );
    // Only the two new stream entries are read: one page, two tickets.
    assert_eq!(seen.len(), 1 + 2 * 2, "{seen:?}");
    let convs = snapshot(&home);
    let ids: Vec<&str> = convs.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "ticket-1", "ticket-2", "ticket-4", "ticket-5", "ticket-6", "ticket-3"
        ]
    );
    assert_eq!(convs[5].1.len(), 3, "the updated ticket replaces its copy");
    assert_eq!(convs[5].1[2].1, "It came, thanks!");

    // Nothing new: the snapshot stays, and the run still succeeds.
    run(&home).expect_ok();
    assert_eq!(snapshot(&home).len(), 6);
}

#[test]
fn the_allow_list_holds_against_denied_hosts_redirects_loopback_names_and_big_or_slow_answers() {
    let server = Helpdesk::start();
    server.add(1, &["hello", "hi, how can I help?"]);
    // A host that is not granted.
    let home = Home::new("[grants.source-helpdesk]\nhttp = [\"api.example.com\"]\n");
    let wf = workflow(&home, &server.url(""));
    home.coach(&["run", &wf])
        .expect_failure_with("may not reach 127.0.0.1")
        .expect_failure_with("granted: api.example.com");
    assert!(server.seen().is_empty(), "nothing reached the server");

    // A plugin with no grant at all.
    std::fs::write(
        &home.config,
        std::fs::read_to_string(&home.config).unwrap().replace(
            "[grants.source-helpdesk]\nhttp = [\"api.example.com\"]\n",
            "",
        ),
    )
    .unwrap();
    home.coach(&["run", &wf])
        .expect_failure_with("may not send HTTP requests (no host is granted");

    // A granted name that resolves to loopback, without
    // `private_network`: refused before connecting, as a rebinding
    // attack's second answer would be.
    std::fs::write(
        &home.config,
        format!(
            "{}\n[grants.source-helpdesk]\nhttp = [\"localhost\"]\n",
            std::fs::read_to_string(&home.config).unwrap()
        ),
    )
    .unwrap();
    let wf_localhost = workflow(&home, &format!("http://localhost:{}", server.port));
    home.coach(&["run", &wf_localhost])
        .expect_failure_with("localhost resolves to 127.0.0.1, which is not a public address");
    assert!(server.seen().is_empty(), "nothing reached the server");

    // Granted loopback by address; a redirect to another name is a new
    // request, refused.
    let config = std::fs::read_to_string(&home.config).unwrap().replace(
        "http = [\"localhost\"]\n",
        "http = [\"127.0.0.1\"]\nprivate_network = true\n",
    );
    std::fs::write(&home.config, config).unwrap();
    let wf_escape = workflow(&home, &server.url("/escape"));
    home.coach(&["run", &wf_escape])
        .expect_failure_with("may not reach localhost");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "only the redirect was served: {seen:?}");
    assert!(seen[0].0.starts_with("/escape/"), "{seen:?}");

    // An answer larger than the job's HTTP bytes.
    with_limits(&home, "http_bytes = \"1MiB\"");
    let wf_huge = workflow(&home, &server.url("/huge"));
    home.coach(&["run", &wf_huge])
        .expect_failure_with("[limits] http_bytes");

    // What a plugin sends counts too: a request whose line alone is past
    // the job's HTTP bytes never leaves.
    let config = std::fs::read_to_string(&home.config)
        .unwrap()
        .replace("http_bytes = \"1MiB\"", "http_bytes = \"1KiB\"");
    std::fs::write(&home.config, config).unwrap();
    server.seen();
    let wf_long = workflow(&home, &server.url(&format!("/long{}", "x".repeat(2048))));
    home.coach(&["run", &wf_long])
        .expect_failure_with("[limits] http_bytes");
    assert!(server.seen().is_empty(), "the request never left");

    // An answer slower than the request's time.
    with_limits(&home, "http_timeout = \"1s\"");
    let wf_slow = workflow(&home, &server.url("/slow"));
    let started = Instant::now();
    home.coach(&["run", &wf_slow])
        .expect_failure_with("[limits] http_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the request was cut at its limit, not at the server's 30 s"
    );
}
