//! Conversations read back through the real daemon and the command line:
//! logged by the platform and by predictions, listed with every filter and
//! paged, shown turn by turn with predictions, entities and feedback;
//! exported to Coach JSONL and imported again (and from Rasa tracker dumps
//! and CSV) into another installation with nothing lost; a source's
//! conversations kept in its dataset snapshot.

use crate::common::{Home, Postgres, workspace};
use crate::daemon::{Daemon, call, cli, daemon_home, post_json, postgres_home, token};
use serde_json::{Value, json};

/// `coach args` against daemon `d` with `tok`: its stdout, after it
/// succeeded.
fn remote(home: &Home, d: &Daemon, tok: &str, args: &[&str]) -> String {
    let out = cli(home, &d.url, tok, args);
    assert!(
        out.status.success(),
        "coach {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `coach conversations import FILE --model MODEL` in `home`.
fn import(home: &Home, file: &std::path::Path, model: &str) -> crate::common::Run {
    home.coach(&[
        "conversations",
        "import",
        file.to_str().unwrap(),
        "--model",
        model,
    ])
}

fn get(d: &Daemon, tok: &str, path: &str) -> Value {
    let (s, v) = call("GET", &format!("{}{path}", d.url), tok);
    assert_eq!(s, 200, "{path}: {v}");
    v
}

/// External ids of a list answer, in order.
fn ids(v: &Value) -> Vec<String> {
    v["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["external_id"].as_str().unwrap().to_owned())
        .collect()
}

fn quickstart_deployed(home: &Home) {
    let qs = workspace().join("workflows/quickstart.toml");
    home.coach(&["run", qs.to_str().unwrap()]).expect_ok();
    home.coach(&["deploy", "wedding-assistant:1", "--env", "production"])
        .expect_ok();
}

fn read_back(home: Home) {
    quickstart_deployed(&home);
    let op = token(&home, "operator");
    let viewer = token(&home, "viewer");
    let d = Daemon::start(&home);
    // A prediction that names its conversation is logged with its ranking
    // and entities.
    let (s, v) = post_json(
        &format!("{}/api/v1/models/wedding-assistant/predict", d.url),
        &op,
        &json!({"text": "can you find us a photographer in Leeds", "conversation_id": "web-1", "channel": "web"}),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = post_json(
        &format!("{}/api/v1/conversations", d.url),
        &op,
        &json!({"conversations": [
            {"model": "wedding-assistant", "id": "web-1", "channel": "web", "outcome": "resolved",
             "messages": [{"role": "bot", "text": "Here are three photographers."}]},
            {"model": "wedding-assistant", "id": "app-2", "channel": "app", "outcome": "escalated",
             "messages": [
                {"role": "user", "text": "do you do fireworks", "intent": "venue", "confidence": 0.31, "fallback": true,
                 "ranking": [{"intent": "venue", "confidence": 0.31}, {"intent": "catering", "confidence": 0.29}]},
                {"role": "bot", "text": "Sorry, I did not get that."},
                {"role": "user", "text": "let me talk to a person", "escalation": true}]},
            {"model": "wedding-assistant", "id": "app-3", "channel": "app",
             "messages": [{"role": "user", "text": "Book a DJ please", "intent": "music", "confidence": 0.94, "model_version": 1}]},
            {"model": "other-bot", "id": "x-1", "messages": [{"role": "user", "text": "hello, ça va ? \"100% sure\""}]}
        ]}),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = post_json(
        &format!("{}/api/v1/feedback", d.url),
        &op,
        &json!({"feedback": [
            {"model": "wedding-assistant", "conversation": "app-2", "message": 0, "rating": -1, "correction": "fireworks"},
            {"model": "wedding-assistant", "conversation": "app-3", "rating": 1, "comment": "quick"}
        ]}),
    );
    assert_eq!(s, 201, "{v}");

    // Newest first; a viewer may read; nobody else.
    let all = get(&d, &viewer, "/api/v1/conversations");
    assert_eq!(ids(&all), ["x-1", "app-3", "app-2", "web-1"], "{all}");
    let (s, _) = call("GET", &format!("{}/api/v1/conversations", d.url), "");
    assert_eq!(s, 401);
    let web = &all["conversations"][3];
    assert_eq!(web["turns"], 2, "{web}");
    assert_eq!(
        web["first_user_text"],
        "can you find us a photographer in Leeds"
    );
    for (query, want) in [
        ("model=wedding-assistant", &["app-3", "app-2", "web-1"][..]),
        ("external=app-2", &["app-2"]),
        ("channel=app", &["app-3", "app-2"]),
        ("fallback=true", &["app-2"]),
        (
            "fallback=false&model=wedding-assistant",
            &["app-3", "web-1"],
        ),
        ("max_confidence=0.5", &["app-2"]),
        ("min_confidence=0.95", &["web-1"]),
        ("rating=negative", &["app-2"]),
        ("rating=positive", &["app-3"]),
        ("rating=unrated", &["x-1", "web-1"]),
        ("intent=music", &["app-3"]),
        ("intent=fireworks", &["app-2"]),
        ("outcome=escalated", &["app-2"]),
        ("outcome=none", &["x-1", "app-3"]),
        ("version=1", &["app-3", "web-1"]),
        // Text search: any substring, whatever the case, across words;
        // quotes, `%` and `_` are plain characters; one or two
        // characters search as well as longer ones.
        ("q=PHOTOGRAPHER", &["web-1"]),
        ("q=er%20in%20le", &["web-1"]),
        ("q=%C3%87A%20VA", &["x-1"]),
        ("q=%22100%25%20s", &["x-1"]),
        ("q=100%25", &["x-1"]),
        ("q=100_", &[]),
        ("q=%22", &["x-1"]),
        ("q=dj", &["app-3"]),
        ("q=fireworks%22%20OR%20%22hello", &[]),
        ("since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z", &[]),
    ] {
        let v = get(&d, &viewer, &format!("/api/v1/conversations?{query}"));
        assert_eq!(ids(&v), want, "{query}: {v}");
    }
    // Pages follow `next_before` to the end.
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let v = get(
            &d,
            &viewer,
            &format!("/api/v1/conversations?limit=3{before}"),
        );
        seen.extend(ids(&v));
        match v["next_before"].as_i64() {
            Some(n) => before = format!("&before={n}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all));
    for bad in [
        "limit=0",
        "rating=great",
        "outcome=won",
        "min_confidence=2",
        "fallback=maybe",
        "colour=red",
        "q=ab%00cd",
    ] {
        let (s, v) = call(
            "GET",
            &format!("{}/api/v1/conversations?{bad}", d.url),
            &viewer,
        );
        assert_eq!(s, 400, "{bad}: {v}");
    }

    // One conversation whole: the prediction's ranking and entities, the
    // feedback on its turn.
    let id = web["id"].as_i64().unwrap();
    let c = get(&d, &viewer, &format!("/api/v1/conversations/{id}"));
    assert_eq!(c["external_id"], "web-1");
    assert_eq!(c["outcome"], "resolved");
    let turn = &c["turns"][0];
    assert_eq!(turn["role"], "user");
    assert!(turn["intent"].is_string(), "{c}");
    assert!(turn["ranking"].as_array().unwrap().len() >= 2, "{c}");
    assert_eq!(turn["model_version"], 1);
    assert_eq!(c["turns"][1]["role"], "bot");
    let app2 = all["conversations"][2]["id"].as_i64().unwrap();
    let c = get(&d, &viewer, &format!("/api/v1/conversations/{app2}"));
    assert_eq!(
        c["turns"][0]["feedback"][0]["correction"], "fireworks",
        "{c}"
    );
    assert_eq!(c["turns"][0]["feedback"][0]["rating"], -1);
    assert_eq!(c["turns"][2]["escalation"], true);
    let (s, _) = call(
        "GET",
        &format!("{}/api/v1/conversations/999999", d.url),
        &viewer,
    );
    assert_eq!(s, 404);

    // The command line reads the same, from the daemon and from the store.
    let out = remote(
        &home,
        &d,
        &viewer,
        &["conversations", "list", "--search", "photographer"],
    );
    assert!(out.contains("web-1") && !out.contains("app-2"), "{out}");
    let out = remote(
        &home,
        &d,
        &viewer,
        &["conversations", "show", &app2.to_string()],
    );
    assert!(
        out.contains("corrected to fireworks") && out.contains("margin 0.02"),
        "{out}"
    );
    let local = home.coach(&["conversations", "list", "--fallback", "true"]);
    local.expect_ok();
    assert!(
        local.stdout().contains("app-2") && !local.stdout().contains("web-1"),
        "{}",
        local.all()
    );

    // A turn logged after a search is found by the next one.
    let (s, v) = post_json(
        &format!("{}/api/v1/conversations", d.url),
        &op,
        &json!({"conversations": [{"model": "other-bot", "id": "x-9",
            "messages": [{"role": "user", "text": "one more Photographer question"}]}]}),
    );
    assert_eq!(s, 201, "{v}");
    let v = get(&d, &viewer, "/api/v1/conversations?q=photographer");
    assert_eq!(ids(&v), ["x-9", "web-1"], "{v}");
}

#[test]
fn conversations_are_read_back_with_filters_and_pages() {
    read_back(daemon_home(""));
}

#[test]
fn conversations_are_read_back_with_filters_and_pages_on_postgres() {
    let pg = Postgres::create();
    read_back(postgres_home(&pg));
}

#[test]
fn export_and_import_carry_every_turn_prediction_and_feedback() {
    let a = daemon_home("");
    let file = a.write(
        "in.jsonl",
        concat!(
            r#"{"id":"c1","model":"bot","channel":"web","outcome":"resolved","turns":[{"role":"user","text":"my card is lost","intent":"lost_card","confidence":0.62,"ranking":[{"intent":"lost_card","confidence":0.62},{"intent":"card_arrival","confidence":0.3}],"entities":[{"entity":"item","start":3,"end":7,"value":"card"}],"feedback":[{"rating":-1,"correction":"stolen_card","at":"2026-11-01T10:00:00Z"}]},{"role":"bot","text":"I blocked it."}],"feedback":[{"comment":"fine","at":"2026-11-01T10:01:00Z"}]}"#,
            "\n",
            r#"{"conversation":"c2","messages":[{"role":"user","text":"hi"},{"role":"bot","text":"hello"}]}"#,
            "\n"
        ),
    );
    let out = import(&a, &file, "bot");
    out.expect_ok();
    assert!(
        out.stdout()
            .contains("imported 2 conversations (4 messages, 2 feedback)"),
        "{}",
        out.all()
    );
    // Again: nothing new.
    let out = import(&a, &file, "bot");
    assert!(
        out.stdout().contains("imported 0 conversations")
            && out.stdout().contains("2 already logged"),
        "{}",
        out.all()
    );
    let exported = a.path("out.jsonl");
    a.coach(&["conversations", "export", "-o", exported.to_str().unwrap()])
        .expect_ok();
    let first = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(first.lines().count(), 2, "{first}");

    // Into another installation, through its daemon: the same export.
    let b = daemon_home("");
    let op = token(&b, "operator");
    let d = Daemon::start(&b);
    let import_through = |file: &std::path::Path| {
        remote(
            &b,
            &d,
            &op,
            &["conversations", "import", file.to_str().unwrap()],
        )
    };
    let out = import_through(&exported);
    assert!(
        out.contains("imported 2 conversations (4 messages, 2 feedback)"),
        "{out}"
    );
    // Again: both are there, with their feedback; nothing is added.
    let out = import_through(&exported);
    assert!(
        out.contains("imported 0 conversations (0 messages, 0 feedback)")
            && out.contains("2 already logged, skipped"),
        "{out}"
    );
    let again = b.path("again.jsonl");
    remote(
        &b,
        &d,
        &op,
        &["conversations", "export", "-o", again.to_str().unwrap()],
    );
    assert_eq!(std::fs::read_to_string(&again).unwrap(), first);
    // Oldest first: the order they were imported in.
    let c1: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(c1["id"], "c1", "{first}");
    assert_eq!(c1["turns"][0]["feedback"][0]["correction"], "stolen_card");
    assert_eq!(c1["turns"][0]["entities"][0]["value"], "card");
    assert_eq!(c1["feedback"][0]["comment"], "fine");
    // Many, in several batches, each conversation with its feedback.
    let bulk: String = (0..450)
        .map(|i| {
            json!({"id": format!("bulk-{i}"), "model": "bulk", "turns": [
                {"role": "user", "text": format!("question {i}"),
                 "feedback": [{"rating": 1, "at": "2026-11-27T09:15:00Z"}]},
                {"role": "system", "text": "handed over"}]})
            .to_string()
                + "\n"
        })
        .collect();
    let bulk = b.write("bulk.jsonl", &bulk);
    let out = import_through(&bulk);
    assert!(
        out.contains("imported 450 conversations (900 messages, 450 feedback)"),
        "{out}"
    );
    let out = import_through(&bulk);
    assert!(out.contains("450 already logged, skipped"), "{out}");
    // What the daemon would refuse is found, with its line, before
    // anything is sent.
    let strict = b.write(
        "strict.jsonl",
        &format!(
            "{}\n{}\n",
            json!({"id": "fine", "model": "strict", "turns": [{"role": "user", "text": "hi"}]}),
            json!({"id": "long", "model": "strict", "turns": [{"role": "user", "text": "hi",
                "feedback": [{"comment": "x".repeat(5000), "at": "2026-11-27T09:15:00Z"}]}]})
        ),
    );
    let out = cli(
        &b,
        &d.url,
        &op,
        &["conversations", "import", strict.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(
                "line 2: conversation `long`: feedback: its comment is longer than 4096 characters"
            ),
        "{err}"
    );
    let listed = get(&d, &op, "/api/v1/conversations?model=strict");
    assert_eq!(listed["conversations"], json!([]), "{listed}");
    // Daemons from before the import route: told so, not "run it again".
    // Those since the conversation route read the path as a conversation's
    // id, which takes no POST (405); older ones have no such route (404).
    let old_daemon = |status: &'static str, body: &'static str| {
        let old = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", old.local_addr().unwrap());
        std::thread::spawn(move || {
            use std::io::{BufRead, Read, Write};
            for mut conn in old.incoming().flatten() {
                // The whole request, so the answer is not a reset.
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let _ = reader.take(length).read_to_end(&mut Vec::new());
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    };
    for url in [
        old_daemon(
            "405 Method Not Allowed",
            r#"{"code":"method_not_allowed","message":"this route does not take that method"}"#,
        ),
        old_daemon(
            "404 Not Found",
            r#"{"code":"not_found","message":"no such route; see /api/v1/openapi.json"}"#,
        ),
    ] {
        let out = cli(
            &b,
            &url,
            &op,
            &["conversations", "import", exported.to_str().unwrap()],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("the daemon has no conversation import route")
                && !err.contains("run the import again"),
            "{err}"
        );
    }

    // Rasa tracker dumps and CSV of turns.
    let rasa = a.write(
        "trackers.json",
        r#"[{"sender_id":"r1","events":[
            {"event":"user","text":"book a table for two","timestamp":1764000000.0,"parse_data":{"intent":{"name":"book","confidence":0.8},"intent_ranking":[{"name":"book","confidence":0.8},{"name":"cancel","confidence":0.1}],"entities":[]}},
            {"event":"bot","text":"Done."},
            {"event":"user","text":"zzz","parse_data":{"intent":{"name":"nlu_fallback","confidence":0.3}}},
            {"event":"action","name":"action_default_fallback"}]}]"#,
    );
    let out = import(&a, &rasa, "rasa-bot");
    out.expect_ok();
    assert!(
        out.stdout()
            .contains("imported 1 conversations (3 messages"),
        "{}",
        out.all()
    );
    let csv = a.write(
        "turns.csv",
        "conversation_id,role,text,intent,confidence,rating\nk1,user,\"hello, there\",greet,0.9,1\nk1,bot,hi!,,,\n",
    );
    import(&a, &csv, "csv-bot").expect_ok();
    let out = a.coach(&[
        "conversations",
        "list",
        "--model",
        "rasa-bot",
        "--fallback",
        "true",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(v["conversations"].as_array().unwrap().len(), 1, "{v}");

    // A file with problems is refused whole, each problem on its line.
    let bad = a.write(
        "bad.jsonl",
        "{\"id\":\"ok\",\"turns\":[{\"role\":\"user\",\"text\":\"fine\"}]}\n{\"id\":\"z\",\"turns\":[{\"role\":\"alien\",\"text\":\"x\"}]}\n{oops\n",
    );
    import(&a, &bad, "bad-bot")
        .expect_failure_with("bad.jsonl:line 2")
        .expect_failure_with("bad.jsonl:line 3")
        .expect_failure_with("nothing was imported");
    let out = a.coach(&["conversations", "list", "--model", "bad-bot", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout()).unwrap();
    assert!(v["conversations"].as_array().unwrap().is_empty(), "{v}");
    a.coach(&["conversations", "import", file.to_str().unwrap()])
        .expect_failure_with("names no model; pass --model");
}

#[test]
fn a_sources_conversations_are_kept_in_its_snapshot() {
    let home = daemon_home("");
    let data = home.write(
        "data-in/support.jsonl",
        concat!(
            r#"{"text":"where is my card","intent":"card_arrival"}"#,
            "\n",
            r#"{"text":"my card has not come","intent":"card_arrival"}"#,
            "\n",
            r#"{"text":"I lost my card","intent":"lost_card"}"#,
            "\n",
            r#"{"text":"card stolen","intent":"lost_card"}"#,
            "\n",
            r#"{"conversation":"s1","messages":[{"role":"user","text":"card?","intent":"card_arrival"},{"role":"bot","text":"On its way."}]}"#,
            "\n",
            r#"{"conversation":"s2","messages":[{"role":"user","text":"help"},{"role":"robot","text":"?"}]}"#,
            "\n"
        ),
    );
    let wf = home.write(
        "workflows/support.toml",
        &format!(
            "version = 1\nname = \"support\"\n\n[[step]]\nid = \"data\"\nuses = \"source-files\"\nwith = {{ format = \"jsonl\", path = \"{}\", max_bad_fraction = 0.5 }}\n",
            data.display()
        ),
    );
    let out = home.coach(&["run", wf.to_str().unwrap()]);
    out.expect_ok();
    // s2 has a turn whose role is no role: a bad record, named.
    assert!(out.all().contains("role `robot`"), "{}", out.all());
    let runs = home.coach(&["runs", "show", "1", "--json"]);
    let v: Value = serde_json::from_str(&runs.stdout()).unwrap();
    let output = &v["steps"][0]["output"];
    assert_eq!(output["conversations"], 1, "{v}");
    assert_eq!(output["examples"], 4, "{v}");
}

#[test]
fn a_full_page_of_a_large_store_lists_and_a_conversation_stays_bounded() {
    let home = daemon_home("");
    let op = token(&home, "operator");
    let d = Daemon::start(&home);
    for batch in 0..2 {
        let conversations: Vec<Value> = (0..600)
            .map(|i| {
                json!({"model": "big", "id": format!("c{batch}-{i}"), "messages": [
                    {"role": "bot", "text": "hello"},
                    {"role": "user", "text": format!("question {i}")}]})
            })
            .collect();
        let (s, v) = post_json(
            &format!("{}/api/v1/conversations", d.url),
            &op,
            &json!({ "conversations": conversations }),
        );
        assert_eq!(s, 201, "{v}");
    }
    // A page of 1,000 (one flat query for the previews, however many).
    let page = get(&d, &op, "/api/v1/conversations?model=big&limit=1000");
    let list = page["conversations"].as_array().unwrap();
    assert_eq!(list.len(), 1000);
    assert!(
        list[0]["first_user_text"]
            .as_str()
            .unwrap()
            .starts_with("question")
    );
    let out = home.coach(&["conversations", "list", "--model", "big", "--limit", "1000"]);
    out.expect_ok();
    // Appending is bounded as importing is.
    let turns: Vec<Value> = (0..1000)
        .map(|i| json!({"role": "user", "text": format!("again {i}")}))
        .collect();
    let mut last = (0, Value::Null);
    for _ in 0..11 {
        last = post_json(
            &format!("{}/api/v1/conversations", d.url),
            &op,
            &json!({"conversations": [{"model": "big", "id": "long", "messages": turns}]}),
        );
        if last.0 != 201 {
            break;
        }
    }
    assert_eq!(last.0, 422, "{}", last.1);
    assert!(
        last.1["message"]
            .as_str()
            .unwrap()
            .contains("at most 10000"),
        "{}",
        last.1
    );
}

#[test]
fn imports_at_once_add_nothing_twice_and_a_failed_export_keeps_the_old_file() {
    let home = Home::new("");
    let lines: String = (0..600)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("c{i}"), "turns": [{"role": "user", "text": format!("hello {i}")}]})
            )
        })
        .collect();
    let file = home.write("talks.jsonl", &lines);
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coach-cli"))
            .args(["--config", home.config.to_str().unwrap()])
            .args([
                "conversations",
                "import",
                file.to_str().unwrap(),
                "--model",
                "race",
            ])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success());
    let out = home.coach(&[
        "conversations",
        "export",
        "--model",
        "race",
        "-o",
        home.path("out.jsonl").to_str().unwrap(),
    ]);
    out.expect_ok();
    let exported = std::fs::read_to_string(home.path("out.jsonl")).unwrap();
    assert_eq!(exported.lines().count(), 600);
    assert!(
        exported
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).unwrap()["turns"]
                .as_array()
                .unwrap()
                .len()
                == 1),
        "a conversation got its turns twice"
    );
    // An export that fails leaves the file it would have replaced.
    let failed = home.coach(&[
        "conversations",
        "export",
        "--url",
        "http://127.0.0.1:9",
        "--token",
        "x",
        "-o",
        home.path("out.jsonl").to_str().unwrap(),
    ]);
    assert!(!failed.ok());
    assert_eq!(
        std::fs::read_to_string(home.path("out.jsonl")).unwrap(),
        exported
    );
    // A device or pipe is refused before it is read.
    home.coach(&["conversations", "import", "/dev/zero", "--model", "race"])
        .expect_failure_with("is not a regular file");
}

#[test]
fn the_same_conversations_imported_and_logged_at_once_on_postgres_are_stored_once() {
    let pg = Postgres::create();
    let home = postgres_home(&pg);
    let op = token(&home, "operator");
    let d = Daemon::start(&home);
    let op = op.as_str();
    let at_once = |url: &str, body: &(dyn Fn(usize) -> Value + Sync)| -> Vec<(u16, Value)> {
        std::thread::scope(|s| {
            let calls: Vec<_> = (0..6)
                .map(|k| s.spawn(move || post_json(url, op, &body(k))))
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        })
    };
    // Six imports of one file at once: each conversation goes in once,
    // and no import fails for having lost the race.
    let file: Vec<Value> = (0..40)
        .map(|i| {
            json!({"id": format!("race-{i}"), "model": "race",
            "turns": [{"role": "user", "text": format!("question {i}")}]})
        })
        .collect();
    let answers = at_once(
        &format!("{}/api/v1/conversations/import", d.url),
        &|_| json!({ "conversations": file }),
    );
    for (s, v) in &answers {
        assert_eq!(*s, 201, "{v}");
    }
    let imported: u64 = answers
        .iter()
        .map(|(_, v)| v["conversations"].as_u64().unwrap())
        .sum();
    let skipped: u64 = answers
        .iter()
        .map(|(_, v)| v["skipped"].as_u64().unwrap())
        .sum();
    assert_eq!((imported, skipped), (40, 200), "{answers:?}");
    // The same conversations in opposite orders at once: writers that wait
    // on each other are run again, not failed.
    let answers = at_once(&format!("{}/api/v1/conversations/import", d.url), &|k| {
        let mut file: Vec<Value> = (0..40)
            .map(|i| {
                json!({"id": format!("cross-{i}"), "model": "race",
                    "turns": [{"role": "user", "text": format!("question {i}")}]})
            })
            .collect();
        if k % 2 == 1 {
            file.reverse();
        }
        json!({ "conversations": file })
    });
    for (s, v) in &answers {
        assert_eq!(*s, 201, "{v}\n{}", d.log());
    }
    let imported: u64 = answers
        .iter()
        .map(|(_, v)| v["conversations"].as_u64().unwrap())
        .sum();
    assert_eq!(imported, 40, "{answers:?}");
    // Six messages of one new conversation at once: one conversation,
    // every message in it.
    let answers = at_once(&format!("{}/api/v1/conversations", d.url), &|k| {
        json!({"conversations": [{"model": "race", "id": "live",
            "messages": [{"role": "user", "text": format!("message {k}")}]}]})
    });
    for (s, v) in &answers {
        assert_eq!(*s, 201, "{v}");
    }
    let listed = get(&d, op, "/api/v1/conversations?model=race&external=live");
    assert_eq!(ids(&listed), ["live"], "{listed}");
    let id = listed["conversations"][0]["id"].as_i64().unwrap();
    let live = get(&d, op, &format!("/api/v1/conversations/{id}"));
    assert_eq!(live["turns"].as_array().unwrap().len(), 6, "{live}");
}

#[test]
fn a_long_conversation_is_read_through_a_daemon_whole_a_page_at_a_time() {
    let home = daemon_home("");
    let turns: Vec<Value> = (0..1200)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "bot" }, "text": format!("turn {i}")}))
        .collect();
    let file = home.write(
        "long.jsonl",
        &(json!({"id": "long", "model": "bot", "turns": turns}).to_string() + "\n"),
    );
    import(&home, &file, "bot").expect_ok();
    let local = home.path("local.jsonl");
    home.coach(&["conversations", "export", "-o", local.to_str().unwrap()])
        .expect_ok();
    let local = std::fs::read_to_string(&local).unwrap();
    let c: Value = serde_json::from_str(local.trim()).unwrap();
    assert_eq!(c["turns"].as_array().unwrap().len(), 1200);
    // The daemon answers 500 turns a page; the command line puts the
    // pages together.
    let op = token(&home, "operator");
    let d = Daemon::start(&home);
    let through = home.path("through.jsonl");
    remote(
        &home,
        &d,
        &op,
        &["conversations", "export", "-o", through.to_str().unwrap()],
    );
    assert_eq!(std::fs::read_to_string(&through).unwrap(), local);
    let listed = get(&d, &op, "/api/v1/conversations?model=bot");
    let id = listed["conversations"][0]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let shown: Value = serde_json::from_str(&remote(
        &home,
        &d,
        &op,
        &["conversations", "show", &id, "--json"],
    ))
    .unwrap();
    assert_eq!(shown["turns"].as_array().unwrap().len(), 1200);
    assert_eq!(shown["turns"][1199]["text"], "turn 1199");
    // The web page shows 500 at a time, with links to the others; a turn
    // labelled on a later page is answered on its page.
    let mut b = crate::dashboard::Browser::new(&d.url);
    b.sign_in(&op);
    let first = b.get(&format!("/conversations/{id}"));
    assert!(
        first.body.contains("Turns 1–500 of 1200")
            && first
                .body
                .contains(&format!("/conversations/{id}?from=500"))
            && !first.body.contains("Earlier turns")
            && !first.body.contains("turn 500<"),
        "{}",
        first.body
    );
    let last = b.get(&format!("/conversations/{id}?from=1000"));
    assert!(
        last.body.contains("Turns 1001–1200 of 1200")
            && last.body.contains("turn 1199<")
            && last.body.contains("Earlier turns")
            && !last.body.contains("Later turns"),
        "{}",
        last.body
    );
    for bad in ["abc", "-1", "99999999999999999999999"] {
        let p = b.get(&format!("/conversations/{id}?from={bad}"));
        assert_eq!(p.status, 400, "{bad}: {}", p.body);
    }
    let past = b.get(&format!("/conversations/{id}?from=5000"));
    assert!(
        past.body.contains("This conversation has 1200 turns")
            && past
                .body
                .contains(&format!("/conversations/{id}?from=1000")),
        "{}",
        past.body
    );
}
