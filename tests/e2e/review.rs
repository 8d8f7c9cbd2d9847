//! The learning loop's middle through the real daemon: messages the bot
//! fell back on, was unsure of, or that users corrected enter the review
//! queue as they are logged; two reviewers label each item, agreement is
//! measured, disagreements go to an adjudicator; approved labels become a
//! `reviewed` dataset that a `curate` step merges and cleans; an `analyze`
//! step keeps its analyses; patterns recommend a new intent whose messages
//! become review items in one call.

use crate::common::{Home, Postgres};
use crate::daemon::{Daemon, call, daemon_home, post_json, postgres_home};
use serde_json::{Value, json};

fn named_token(home: &Home, role: &str, name: &str) -> String {
    let out = home.coach(&["token", "create", "--role", role, "--name", name]);
    out.expect_ok();
    out.stdout().trim().to_owned()
}

fn user(text: &str, intent: Option<&str>, confidence: f64, fallback: bool) -> Value {
    let mut m =
        json!({"role": "user", "text": text, "confidence": confidence, "fallback": fallback});
    if let Some(i) = intent {
        m["intent"] = json!(i);
    }
    m
}

fn log(d: &Daemon, tok: &str, conversations: Vec<Value>) {
    let (s, v) = post_json(
        &format!("{}/api/v1/conversations", d.url),
        tok,
        &json!({ "conversations": conversations }),
    );
    assert_eq!(s, 201, "{v}");
}

fn items(d: &Daemon, tok: &str, query: &str) -> Vec<Value> {
    let (s, v) = call(
        "GET",
        &format!("{}/api/v1/review/items?{query}", d.url),
        tok,
    );
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

fn label(d: &Daemon, tok: &str, item: i64, body: Value) -> (u16, Value) {
    post_json(
        &format!("{}/api/v1/review/items/{item}/labels", d.url),
        tok,
        &body,
    )
}

fn by_origin<'a>(items: &'a [Value], origin: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["origin"] == origin)
        .unwrap_or_else(|| panic!("no {origin} item in {items:?}"))
}

fn two_reviewers_agree_disagree_and_an_adjudicator_decides(home: &Home) {
    let op = named_token(home, "operator", "platform");
    let viewer = named_token(home, "viewer", "grafana");
    let ana = named_token(home, "reviewer", "ana");
    let ben = named_token(home, "reviewer", "ben");
    let cleo = named_token(home, "reviewer", "cleo");
    let d = Daemon::start(home);
    log(
        &d,
        &op,
        vec![
            json!({"model": "shop", "id": "c1", "messages": [user("can I bring my dog", None, 0.1, true), {"role": "bot", "text": "Sorry, I did not get that."}]}),
            json!({"model": "shop", "id": "c2", "messages": [user("I want my money back", Some("cancel_order"), 0.22, false)]}),
            json!({"model": "shop", "id": "c3", "messages": [user("bye now", Some("greet"), 0.95, false)]}),
        ],
    );
    // Confident and right: not queued. Corrected: queued.
    assert_eq!(items(&d, &op, "model=shop").len(), 2);
    let (s, v) = post_json(
        &format!("{}/api/v1/feedback", d.url),
        &op,
        &json!({"feedback": [{"model": "shop", "conversation": "c3", "message": 0, "correction": "goodbye"}]}),
    );
    assert_eq!(s, 201, "{v}");
    let queued = items(&d, &ana, "model=shop&state=open");
    assert_eq!(queued.len(), 3, "{queued:?}");
    let fallback = by_origin(&queued, "fallback")["id"].as_i64().unwrap();
    let unsure = by_origin(&queued, "low_confidence")["id"].as_i64().unwrap();
    let corrected = by_origin(&queued, "correction");
    assert_eq!(corrected["suggested_intent"], "goodbye");
    assert!(
        corrected["priority"].as_f64().unwrap()
            >= by_origin(&queued, "low_confidence")["priority"]
                .as_f64()
                .unwrap(),
        "{queued:?}"
    );
    let corrected = corrected["id"].as_i64().unwrap();

    // Roles: a viewer reads the summary but labels nothing; a reviewer
    // labels but starts no runs.
    let (s, _) = call("GET", &format!("{}/api/v1/review/items", d.url), &viewer);
    assert_eq!(s, 403);
    let (s, _) = label(
        &d,
        &viewer,
        fallback,
        json!({"verdict": "label", "intent": "pets"}),
    );
    assert_eq!(s, 403);
    let (s, _) = call(
        "POST",
        &format!("{}/api/v1/workflows/any/runs", d.url),
        &ana,
    );
    assert_eq!(s, 403);

    // A claim hands out the most valuable item, and never the same one
    // to two reviewers beyond the labels it needs.
    let (s, first) = post_json(
        &format!("{}/api/v1/review/next", d.url),
        &ana,
        &json!({"model": "shop"}),
    );
    assert_eq!(s, 200, "{first}");

    // Agreement: approved with the label both gave.
    for who in [&ana, &ben] {
        let (s, v) = label(
            &d,
            who,
            fallback,
            json!({"verdict": "label", "intent": "pets"}),
        );
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = label(
        &d,
        &ana,
        fallback,
        json!({"verdict": "label", "intent": "pets"}),
    );
    assert_eq!(s, 409, "a second label by the same reviewer: {v}");
    // Disagreement: disputed, then decided by someone who did not label.
    let (_, v) = label(
        &d,
        &ana,
        unsure,
        json!({"verdict": "label", "intent": "refund"}),
    );
    assert_eq!(v["state"], "open", "{v}");
    let (_, v) = label(
        &d,
        &ben,
        unsure,
        json!({"verdict": "label", "out_of_scope": true}),
    );
    assert_eq!(v["state"], "disputed", "{v}");
    let (s, v) = label(
        &d,
        &ana,
        unsure,
        json!({"verdict": "label", "intent": "refund", "adjudication": true}),
    );
    assert_eq!(s, 409, "an adjudicator who labelled it: {v}");
    let (s, next) = post_json(
        &format!("{}/api/v1/review/next", d.url),
        &cleo,
        &json!({"model": "shop", "adjudicate": true}),
    );
    assert_eq!(s, 200, "{next}");
    assert_eq!(next["id"], unsure);
    let (s, v) = label(
        &d,
        &cleo,
        unsure,
        json!({"verdict": "label", "intent": "refund", "adjudication": true}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "approved");
    assert_eq!(v["intent"], "refund");
    // Both reject: rejected, no example.
    for who in [&ana, &ben] {
        label(&d, who, corrected, json!({"verdict": "reject"}));
    }
    let (_, v) = call(
        "GET",
        &format!("{}/api/v1/review/items/{corrected}", d.url),
        &ana,
    );
    assert_eq!(v["state"], "rejected", "{v}");
    assert_eq!(v["labels"].as_array().unwrap().len(), 2);

    let (s, summary) = call(
        "GET",
        &format!("{}/api/v1/review/summary?model=shop", d.url),
        &viewer,
    );
    assert_eq!(s, 200, "{summary}");
    assert_eq!(summary["counts"]["approved"], 2, "{summary}");
    assert_eq!(summary["counts"]["rejected"], 1, "{summary}");
    let agreement = &summary["agreement"];
    assert_eq!(agreement["items"], 3, "{summary}");
    let pair = &agreement["pairs"][0];
    assert_eq!(
        (pair["a"].as_str(), pair["b"].as_str()),
        (Some("ana"), Some("ben"))
    );
    // ana and ben agreed on 2 of 3 items.
    let alpha = agreement["alpha"].as_f64().unwrap();
    assert!(alpha > 0.0 && alpha < 1.0, "{summary}");
    drop(d);

    // Approved labels are the `reviewed` source's examples; a curate step
    // merges them with the bot's data and cleans the whole.
    let data = home.write(
        "data-in/shop.jsonl",
        concat!(
            r#"{"text":"where is my parcel","intent":"track_order"}"#,
            "\n",
            r#"{"text":"where is my parcel","intent":"track_order"}"#,
            "\n",
            r#"{"text":"where is my parcel please tell me now","intent":"track_order"}"#,
            "\n",
            r#"{"text":"mail me at ana@example.com about my parcel","intent":"track_order"}"#,
            "\n",
            r#"{"text":"cancel my order","intent":"cancel_order"}"#,
            "\n",
        ),
    );
    let wf = home.write(
        "improve.toml",
        &format!(
            r#"version = 1
name = "shop-data"

[[step]]
id = "data"
uses = "source-files"
with = {{ format = "jsonl", path = "{}" }}

[[step]]
id = "reviewed"
kind = "reviewed"
with = {{ model = "shop" }}

[[step]]
id = "curate"
kind = "curate"
needs = ["data", "reviewed"]
with = {{ min_examples = 2 }}

[[step]]
id = "analyze"
kind = "analyze"
with = {{ model = "shop" }}
"#,
            data.display()
        ),
    );
    let out = home.coach(&["run", wf.to_str().unwrap()]);
    out.expect_ok();
    let all = out.all();
    assert!(all.contains("2 approved example(s) of `shop`"), "{all}");
    assert!(
        all.contains("kept 6 of 7 examples (1 duplicates, 0 near duplicates, 0 conflicting texts, 1 redactions)"),
        "{all}"
    );
    assert!(
        all.contains("analysed 3 conversations with analyzer-quality"),
        "{all}"
    );
    // Analysed again: nothing new for the same analyzer version.
    let again = home.coach(&["run", wf.to_str().unwrap()]);
    assert!(
        again.all().contains("analysed 0 conversations"),
        "{}",
        again.all()
    );

    let d = Daemon::start(home);
    let (_, page) = call(
        "GET",
        &format!("{}/api/v1/conversations?model=shop&external=c1", d.url),
        &viewer,
    );
    let id = page["conversations"][0]["id"].as_i64().unwrap();
    let (_, c) = call(
        "GET",
        &format!("{}/api/v1/conversations/{id}", d.url),
        &viewer,
    );
    let analyses = c["analyses"].as_array().unwrap();
    assert_eq!(analyses.len(), 1, "{c}");
    assert_eq!(analyses[0]["analyzer"], "analyzer-quality");
    let (_, q) = call(
        "GET",
        &format!("{}/api/v1/models/shop/quality", d.url),
        &viewer,
    );
    assert_eq!(q["last_7_days_conversations"], 3, "{q}");
    let metrics = crate::http::metrics(&d.url, &viewer);
    assert!(
        metrics.contains("coach_review_items{state=\"approved\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coach_conversation_quality_conversations{model=\"shop\"} 3"),
        "{metrics}"
    );
}

#[test]
fn two_reviewers_agree_disagree_and_an_adjudicator_decides_on_sqlite() {
    two_reviewers_agree_disagree_and_an_adjudicator_decides(&daemon_home(
        "[review]\nreviews = 2\n",
    ));
}

#[test]
fn two_reviewers_agree_disagree_and_an_adjudicator_decides_on_postgres() {
    let pg = Postgres::create();
    let home = postgres_home(&pg);
    let config = std::fs::read_to_string(&home.config).unwrap();
    std::fs::write(&home.config, format!("{config}\n[review]\nreviews = 2\n")).unwrap();
    two_reviewers_agree_disagree_and_an_adjudicator_decides(&home);
}

#[test]
fn a_fallback_cluster_becomes_a_new_intent_recommendation_and_review_items() {
    let home = daemon_home("");
    let op = named_token(&home, "operator", "platform");
    let d = Daemon::start(&home);
    let asks = [
        "can I bring my dog to the wedding",
        "can I bring my dog",
        "can we bring our dog to the wedding",
        "can i bring my dog to the party",
        "can I bring my dog along please",
        "bring my dog to the wedding?",
    ];
    let mut conversations = Vec::new();
    for (i, a) in asks.iter().enumerate() {
        conversations.push(json!({"model": "shop", "id": format!("d{i}"), "messages": [user(a, None, 0.1, true), {"role": "bot", "text": "Sorry, I did not get that."}]}));
    }
    for i in 0..6 {
        conversations.push(json!({"model": "shop", "id": format!("o{i}"), "messages": [user("where is my parcel", Some("track_order"), 0.93, false), {"role": "bot", "text": "It arrives tomorrow."}]}));
    }
    log(&d, &op, conversations);
    let (s, found) = call(
        "POST",
        &format!("{}/api/v1/models/shop/patterns?days=7", d.url),
        &op,
    );
    assert_eq!(s, 200, "{found}");
    let clusters = found["patterns"]["fallback_clusters"].as_array().unwrap();
    assert!(
        clusters.iter().any(|c| c["size"].as_u64().unwrap() >= 5),
        "{found}"
    );
    let recs = found["recommendations"].as_array().unwrap();
    let new_intent = recs
        .iter()
        .find(|r| r["kind"] == "new_intent")
        .unwrap_or_else(|| panic!("no new intent recommendation: {recs:?}"));
    assert!(new_intent["impact"].as_i64().unwrap() >= 5, "{new_intent}");
    let id = new_intent["id"].as_i64().unwrap();
    let (s, q) = call(
        "POST",
        &format!("{}/api/v1/recommendations/{id}/review", d.url),
        &op,
    );
    assert_eq!(s, 201, "{q}");
    // The fallbacks were queued as they were logged; the recommendation
    // adds nothing twice.
    assert_eq!(
        q["added"].as_u64().unwrap() + q["already"].as_u64().unwrap(),
        asks.len() as u64,
        "{q}"
    );
    let (_, listed) = call(
        "GET",
        &format!("{}/api/v1/models/shop/recommendations?state=queued", d.url),
        &op,
    );
    assert_eq!(
        listed["recommendations"].as_array().unwrap().len(),
        1,
        "{listed}"
    );

    // A message queued as unsure, then corrected by its user: the item
    // takes the user's intent.
    log(
        &d,
        &op,
        vec![
            json!({"model": "shop", "id": "unsure", "messages": [user("my parcel never came", Some("track_order"), 0.3, false)]}),
        ],
    );
    let (s, v) = post_json(
        &format!("{}/api/v1/feedback", d.url),
        &op,
        &json!({"feedback": [{"model": "shop", "conversation": "unsure", "message": 0, "correction": "missing_parcel"}]}),
    );
    assert_eq!(s, 201, "{v}");
    let (_, page) = call(
        "GET",
        &format!("{}/api/v1/review/items?model=shop&origin=correction", d.url),
        &op,
    );
    let item = &page["items"][0];
    assert_eq!(item["text"], "my parcel never came", "{page}");
    assert_eq!(item["suggested_intent"], "missing_parcel", "{page}");
}

/// `workflows/improve.toml` as the daemon in `home` serves it: paths made
/// absolute, its condition checked every second.
fn improve_workflow(home: &Home) {
    let shipped = crate::common::workspace().join("workflows");
    let text = std::fs::read_to_string(shipped.join("improve.toml"))
        .unwrap()
        .replace("\"data/", &format!("\"{}/data/", shipped.display()))
        .replace("\"scripts/", &format!("\"{}/scripts/", shipped.display()))
        .replace("check_every = \"1m\"", "check_every = \"1s\"")
        .replace("min_interval = \"10m\"", "min_interval = \"1s\"");
    home.write("workflows/improve.toml", &text);
}

fn the_loop_teaches_the_bot_a_new_intent(home: &Home) {
    // The bot in production: the quickstart's model, deployed.
    let quickstart = crate::common::workspace().join("workflows/quickstart.toml");
    home.coach(&["run", quickstart.to_str().unwrap()])
        .expect_ok();
    home.coach(&["deploy", "wedding-assistant:1", "--env", "production"])
        .expect_ok();
    improve_workflow(home);
    let op = named_token(home, "operator", "platform");
    let reviewers = [
        named_token(home, "reviewer", "ana"),
        named_token(home, "reviewer", "ben"),
    ];
    let d = Daemon::start(home);
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
    let conversations = asks
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({"model": "wedding-assistant", "id": format!("pets-{i}"), "messages": [
                user(a, Some("oos"), 0.2, true),
                {"role": "bot", "text": "Sorry, I can only help with planning the wedding."}]})
        })
        .collect();
    log(&d, &op, conversations);

    // A fallback cluster, a new intent recommended, its messages queued.
    let (s, found) = call(
        "POST",
        &format!("{}/api/v1/models/wedding-assistant/patterns?days=7", d.url),
        &op,
    );
    assert_eq!(s, 200, "{found}");
    let rec = found["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "new_intent")
        .unwrap_or_else(|| panic!("no new intent recommended: {found}"))
        .clone();
    let (s, q) = call(
        "POST",
        &format!("{}/api/v1/recommendations/{}/review", d.url, rec["id"]),
        &op,
    );
    assert_eq!(s, 201, "{q}");

    // Two reviewers label every item they are handed.
    for r in &reviewers {
        loop {
            let (s, item) = post_json(
                &format!("{}/api/v1/review/next", d.url),
                r,
                &json!({"model": "wedding-assistant"}),
            );
            if s == 204 {
                break;
            }
            assert_eq!(s, 200, "{item}");
            let (s, v) = label(
                &d,
                r,
                item["id"].as_i64().unwrap(),
                json!({"verdict": "label", "intent": "bring_pets"}),
            );
            assert_eq!(s, 201, "{v}");
        }
    }
    let (_, summary) = call(
        "GET",
        &format!("{}/api/v1/review/summary?model=wedding-assistant", d.url),
        &op,
    );
    assert!(
        summary["counts"]["approved"].as_u64().unwrap() >= 6,
        "{summary}"
    );

    // The condition fires; the run trains, gates, registers and deploys.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let run = loop {
        let (_, runs) = call(
            "GET",
            &format!("{}/api/v1/runs?workflow=wedding-assistant-improve", d.url),
            &op,
        );
        if let Some(r) = runs["runs"].as_array().and_then(|r| r.last())
            && ["succeeded", "failed", "cancelled"].contains(&r["state"].as_str().unwrap_or(""))
        {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no finished improve run: {runs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_eq!(run["trigger"], "condition", "{run}");
    let (_, detail) = call("GET", &format!("{}/api/v1/runs/{}", d.url, run["id"]), &op);
    assert_eq!(run["state"], "succeeded", "{detail}");

    // The new version answers the new intent from the serving route.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (s, v) = post_json(
            &format!("{}/api/v1/models/wedding-assistant/predict", d.url),
            &op,
            &json!({"text": "can I bring my dog to the wedding"}),
        );
        if s == 200 && v["version"] == 2 {
            assert_eq!(v["intent"], "bring_pets", "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s}: {v}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn the_loop_teaches_the_bot_a_new_intent_on_sqlite() {
    the_loop_teaches_the_bot_a_new_intent(&daemon_home("[review]\nreviews = 2\n"));
}

#[test]
fn the_loop_teaches_the_bot_a_new_intent_on_postgres() {
    let pg = Postgres::create();
    let home = postgres_home(&pg);
    let config = std::fs::read_to_string(&home.config).unwrap();
    std::fs::write(&home.config, format!("{config}\n[review]\nreviews = 2\n")).unwrap();
    the_loop_teaches_the_bot_a_new_intent(&home);
}

#[test]
fn trusted_corrections_are_approved_at_once() {
    let home = daemon_home("[review]\ntrust_corrections = true\n");
    let op = named_token(&home, "operator", "platform");
    let d = Daemon::start(&home);
    log(
        &d,
        &op,
        vec![
            json!({"model": "shop", "id": "t1", "messages": [user("my parcel never came", Some("track_order"), 0.9, false)]}),
        ],
    );
    let (s, v) = post_json(
        &format!("{}/api/v1/feedback", d.url),
        &op,
        &json!({"feedback": [{"model": "shop", "conversation": "t1", "message": 0, "correction": "missing_parcel"}]}),
    );
    assert_eq!(s, 201, "{v}");
    let approved = items(&d, &op, "model=shop&state=approved");
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["intent"], "missing_parcel");
    assert_eq!(approved[0]["labels"][0]["reviewer"], "user correction");
}
