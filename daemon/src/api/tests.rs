//! Handlers without a socket (`tower::ServiceExt::oneshot`) and the OpenAPI
//! document against the route table.

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tower::ServiceExt;

#[test]
fn the_openapi_document_lists_exactly_the_routes() {
    let doc: Value = serde_json::from_str(meta::OPENAPI).unwrap();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let role = op
                .get("x-coach-role")
                .and_then(Value::as_str)
                .map(str::to_owned);
            documented.insert((method.to_uppercase(), path.clone(), role));
        }
    }
    let served: BTreeSet<(String, String, Option<String>)> = routes()
        .into_iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_owned(),
                r.role.map(|x| x.as_str().to_owned()),
            )
        })
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}; documented but not served: {extra:?}"
    );
}

struct Fixture {
    _dir: tempfile::TempDir,
    _app: crate::app::App,
    service: AppState,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let wf_dir = dir.path().join("workflows");
    std::fs::create_dir_all(&wf_dir).unwrap();
    std::fs::write(
        wf_dir.join("broken.toml"),
        "version = 1\nname = \"broken\"\n[[step]]\nid = \"x\"\nuses = \"no-such-plugin\"\n",
    )
    .unwrap();
    let text = format!(
        "data_dir = {:?}\n[daemon]\nworkflow_dirs = [{:?}]\n",
        dir.path().join("data"),
        wf_dir
    );
    let config = crate::config::Config::from_toml(&text, dir.path(), None).unwrap();
    let app = crate::app::App::open(config, crate::app::Mode::Daemon)
        .await
        .unwrap();
    app.service.reload_workflows(false);
    Fixture {
        _dir: dir,
        service: app.service.clone(),
        _app: app,
    }
}

async fn call(
    f: &Fixture,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let res = router(f.service.clone())
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn token(f: &Fixture, role: crate::store::tokens::Role) -> String {
    f.service.store.create_token("test", role).await.unwrap().1
}

#[tokio::test]
async fn tokens_are_required_checked_and_ranked() {
    use crate::store::tokens::Role;
    let f = fixture().await;
    let (s, body) = call(&f, "GET", "/api/v1/runs", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthorized");
    assert!(
        body["message"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );

    let (s, body) = call(&f, "GET", "/api/v1/runs", Some("coach_wrong"), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown or revoked")
    );

    let viewer = token(&f, Role::Viewer).await;
    let (s, _) = call(&f, "GET", "/api/v1/runs", Some(&viewer), "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = call(
        &f,
        "POST",
        "/api/v1/workflows/broken/runs",
        Some(&viewer),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap().contains("operator role"),
        "{body}"
    );
    let (s, _) = call(&f, "GET", "/api/v1/tokens", Some(&viewer), "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let admin = token(&f, Role::Admin).await;
    let (s, body) = call(
        &f,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        r#"{"name":"ci","role":"operator"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let new = body["token"].as_str().unwrap().to_owned();
    let (s, _) = call(&f, "GET", "/api/v1/status", Some(&new), "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &f,
        "DELETE",
        &format!("/api/v1/tokens/{id}"),
        Some(&admin),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&f, "GET", "/api/v1/status", Some(&new), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a revoked token stops working");

    // Health checks are open.
    let (s, _) = call(&f, "GET", "/healthz", None, "").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    use crate::store::tokens::Role;
    let f = fixture().await;
    let admin = token(&f, Role::Admin).await;
    for body in [
        "{\"name\": ",
        "[1,2]",
        "{\"name\":\"x\"}",
        "{\"name\":\"x\",\"role\":\"viewer\",\"extra\":1}",
    ] {
        let (s, v) = call(&f, "POST", "/api/v1/tokens", Some(&admin), body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["code"], "bad_request");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    // Well-formed, but a value out of its published bounds: 422.
    for (body, message) in [
        (
            "{\"name\":\"x\",\"role\":\"root\"}",
            "role: `root`; expected `viewer`, `reviewer`, `operator` or `admin`",
        ),
        ("{\"name\":\"\",\"role\":\"viewer\"}", "name: is empty"),
    ] {
        let (s, v) = call(&f, "POST", "/api/v1/tokens", Some(&admin), body).await;
        assert_eq!(
            (s, v["code"].as_str(), v["message"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("invalid"),
                Some(message)
            ),
            "{body}"
        );
    }
    let (s, v) = call(&f, "GET", "/api/v1/runs/abc", Some(&admin), "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = call(&f, "GET", "/api/v1/runs?limit=0", Some(&admin), "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = call(&f, "GET", "/api/v1/nothing", Some(&admin), "").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, v) = call(&f, "GET", "/api/v1/runs/999", Some(&admin), "").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn an_invalid_workflow_shows_its_errors_and_cannot_be_triggered() {
    use crate::store::tokens::Role;
    let f = fixture().await;
    let op = token(&f, Role::Operator).await;
    let (s, v) = call(&f, "GET", "/api/v1/workflows/broken", Some(&op), "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], false);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("broken.toml:5:8") && err.contains("no-such-plugin"),
        "{err}"
    );
    let (s, v) = call(&f, "POST", "/api/v1/workflows/broken/runs", Some(&op), "").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_workflow")),
        "{v}"
    );
    let (s, _) = call(&f, "POST", "/api/v1/workflows/nope/runs", Some(&op), "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn conversations_and_feedback_are_logged_checked_and_counted() {
    use crate::store::tokens::Role;
    let f = fixture().await;
    let op = token(&f, Role::Operator).await;
    let viewer = token(&f, Role::Viewer).await;
    let post = |uri: &'static str, body: String| {
        let (f, op) = (&f, op.clone());
        async move { call(f, "POST", uri, Some(&op), &body).await }
    };
    let traffic = || async {
        call(
            &f,
            "GET",
            "/api/v1/models/support/traffic",
            Some(&viewer),
            "",
        )
        .await
        .1
    };

    let (s, v) = post(
        "/api/v1/conversations",
        r#"{"conversations": [{"model": "support", "id": "c1", "messages": [
            {"role": "user", "text": "lost my card", "intent": "card_lost", "confidence": 0.9},
            {"role": "bot", "text": "I can freeze it."},
            {"role": "user", "text": "can i pay with my watch", "intent": "oos", "fallback": true}]}]}"#
            .into(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["messages"], 3);
    // The same conversation again: messages are appended after the others.
    let (s, _) = post(
        "/api/v1/conversations",
        r#"{"conversations": [{"model": "support", "id": "c1", "messages": [
            {"role": "user", "text": "thanks", "intent": "thanks"}]}]}"#
            .into(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let t = traffic().await;
    assert_eq!(
        (
            &t["conversations"],
            &t["messages"],
            &t["user_messages"],
            &t["fallbacks"]
        ),
        (&json!(1), &json!(4), &json!(3), &json!(1)),
        "{t}"
    );
    assert!((t["fallback_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);

    // Feedback on message 2 (the fallback) and on the appended message 3.
    let (s, v) = post(
        "/api/v1/feedback",
        r#"{"feedback": [
            {"model": "support", "conversation": "c1", "message": 2, "rating": -1, "correction": "apple_pay"},
            {"model": "support", "conversation": "c1", "message": 3, "rating": 1}]}"#
            .into(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let t = traffic().await;
    assert_eq!(
        (
            &t["feedback"],
            &t["positive"],
            &t["negative"],
            &t["corrections"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(1)),
        "{t}"
    );

    // Bad input names the field at fault, and nothing of the request is kept.
    let bad = [
        (
            "/api/v1/conversations",
            r#"{"conversations": [{"model": "support", "id": "c2", "messages": [
                {"role": "user", "text": "hi"}, {"role": "agent", "text": "hello"}]}]}"#,
            "conversations[0].messages[1].role: `agent`; expected `user` or `bot`",
        ),
        (
            "/api/v1/conversations",
            r#"{"conversations": [{"model": "support", "id": "c2", "messages": [
                {"role": "user", "text": "hi", "confidence": 1.5}]}]}"#,
            "conversations[0].messages[0].confidence: 1.5 is not between 0 and 1",
        ),
        (
            "/api/v1/conversations",
            r#"{"conversations": [{"model": "no such/model", "id": "c2", "messages": [
                {"role": "user", "text": "hi"}]}]}"#,
            "conversations[0].model: `no such/model` is not a model name",
        ),
        (
            "/api/v1/conversations",
            r#"{"conversations": []}"#,
            "conversations: is empty",
        ),
        (
            "/api/v1/feedback",
            r#"{"feedback": [
                {"model": "support", "conversation": "c1", "rating": 1},
                {"model": "support", "conversation": "c9", "rating": 1}]}"#,
            "feedback[1]: no conversation `c9` has been logged for model `support`",
        ),
        (
            "/api/v1/feedback",
            r#"{"feedback": [{"model": "support", "conversation": "c1", "message": 7, "rating": 1}]}"#,
            "feedback[0]: conversation `c1` has no message 7",
        ),
        (
            "/api/v1/feedback",
            r#"{"feedback": [{"model": "support", "rating": 5}]}"#,
            "feedback[0].rating: 5; expected 1 (helpful) or -1 (not helpful)",
        ),
        (
            "/api/v1/feedback",
            r#"{"feedback": [{"model": "support"}]}"#,
            "feedback[0]: says nothing",
        ),
    ];
    // An entity's value is bounded as an import of the export bounds it.
    let long = json!({"conversations": [{"model": "support", "id": "c2", "messages": [
        {"role": "user", "text": "hi there", "entities": [{"entity": "name", "start": 0, "end": 2,
         "value": "x".repeat(crate::core::conversation::MAX_ENTITY_VALUE + 1)}]}]}]});
    let (s, v) = post("/api/v1/conversations", long.to_string()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("entities[0].value"),
        "{v}"
    );
    for (uri, body, message) in bad {
        let (s, v) = post(uri, body.into()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["code"], "invalid");
        assert!(
            v["message"].as_str().unwrap().starts_with(message),
            "{body}: {v}"
        );
    }
    let after = traffic().await;
    assert_eq!(
        (&after["messages"], &after["feedback"]),
        (&json!(4), &json!(2)),
        "{after}"
    );
    // An import stores whole conversations (Coach JSONL's shape) with the
    // feedback on them, skips those already logged, feedback and all, and
    // is all or nothing.
    let import = r#"{"model": "support", "conversations": [
            {"id": "c3", "turns": [
                {"role": "user", "text": "lost my card",
                 "feedback": [{"rating": -1, "at": "2026-11-27T09:15:00Z"}]},
                {"role": "system", "text": "handed over"}]}]}"#;
    let (s, v) = post("/api/v1/conversations/import", import.into()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v,
        json!({"conversations": 1, "messages": 2, "feedback": 1, "skipped": 0})
    );
    let (s, v) = post("/api/v1/conversations/import", import.into()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v,
        json!({"conversations": 0, "messages": 0, "feedback": 0, "skipped": 1})
    );
    let bad = [
        (
            r#"{"conversations": [{"id": "c4", "turns": [{"role": "user", "text": "hi"}]}]}"#,
            "conversations[0].model: missing",
        ),
        (
            r#"{"model": "support", "conversations": [
                {"id": "c4", "turns": [{"role": "user", "text": "hi"}]},
                {"id": "c5", "turns": [{"role": "user", "text": "hi", "intent": ""}]}]}"#,
            "conversations[1].turns[0].intent: is empty",
        ),
        (
            r#"{"model": "support", "conversations": [{"id": "c4", "turns": []}]}"#,
            "conversations[0].turns",
        ),
        (
            r#"{"model": "support", "conversations": [{"id": "c4", "turns": [
                {"role": "user", "text": "hi", "feedback": [{"rating": 5, "at": "2026-11-27T09:15:00Z"}]}]}]}"#,
            "conversations[0].turns[0].feedback[0].rating: 5",
        ),
        (
            r#"{"model": "support", "conversations": [{"id": "c4", "turns": [
                {"role": "user", "text": "hi", "ranking": [{"intent": "greet", "confidence": 1.5}]}]}]}"#,
            "conversations[0].turns[0].ranking[0].confidence",
        ),
        (
            r#"{"model": "support", "conversations": [
                {"id": "c4", "turns": [{"role": "user", "text": "hi"}]},
                {"id": "c4", "turns": [{"role": "user", "text": "hi again",
                    "feedback": [{"rating": 1, "at": "2026-11-27T09:15:00Z"}]}]}]}"#,
            "conversations: `c4` is there twice",
        ),
    ];
    for (body, message) in bad {
        let (s, v) = post("/api/v1/conversations/import", body.into()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().starts_with(message),
            "{body}: {v}"
        );
    }
    // A field the shape does not have is a 400, not data lost.
    let (s, v) = post(
        "/api/v1/conversations/import",
        r#"{"model": "support", "conversations": [{"id": "c4", "turns": [
            {"role": "user", "text": "hi", "feedbak": []}]}]}"#
            .into(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("feedbak"), "{v}");
    let after = traffic().await;
    assert_eq!(
        (
            &after["conversations"],
            &after["messages"],
            &after["feedback"]
        ),
        (&json!(2), &json!(6), &json!(3)),
        "{after}"
    );
    // A typo in a field is a 400, like every malformed body.
    let (s, v) = post(
        "/api/v1/feedback",
        r#"{"feedback": [{"model": "support", "ratng": 1}]}"#.into(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("ratng"), "{v}");
    // Viewers read traffic but cannot log it.
    let (s, _) = call(
        &f,
        "POST",
        "/api/v1/feedback",
        Some(&viewer),
        r#"{"feedback": [{"model": "support", "rating": 1}]}"#,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An import needs an operator's token too.
    let import = r#"{"model": "support", "conversations": [{"id": "c9", "turns": [{"role": "user", "text": "hi"}]}]}"#;
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(viewer.as_str()), StatusCode::FORBIDDEN),
    ] {
        let (s, _) = call(&f, "POST", "/api/v1/conversations/import", token, import).await;
        assert_eq!(s, status);
    }
    // `since` after everything: nothing.
    let (s, t) = call(
        &f,
        "GET",
        "/api/v1/models/support/traffic?since=2999-01-01T00:00:00Z",
        Some(&viewer),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (&t["messages"], &t["fallback_rate"]),
        (&json!(0), &json!(0.0))
    );
}

#[tokio::test]
async fn a_long_conversation_is_read_a_page_of_turns_at_a_time() {
    use crate::store::tokens::Role;
    let f = fixture().await;
    let op = token(&f, Role::Operator).await;
    let turns: Vec<Value> = (0..1200)
        .map(|i| {
            let mut t = json!({"role": "user", "text": format!("turn {i}")});
            if i == 1100 {
                t["feedback"] = json!([{"rating": -1, "at": "2026-11-27T09:15:00Z"}]);
            }
            t
        })
        .collect();
    let body = json!({"model": "long", "conversations": [{"id": "l1", "turns": turns,
        "feedback": [{"comment": "long one", "at": "2026-11-27T09:16:00Z"}]}]});
    let (s, v) = call(
        &f,
        "POST",
        "/api/v1/conversations/import",
        Some(&op),
        &body.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, list) = call(&f, "GET", "/api/v1/conversations?model=long", Some(&op), "").await;
    let id = list["conversations"][0]["id"].as_i64().unwrap();
    let get = |query: String| {
        let (f, op) = (&f, op.clone());
        async move {
            call(
                f,
                "GET",
                &format!("/api/v1/conversations/{id}{query}"),
                Some(&op),
                "",
            )
            .await
        }
    };
    // Asked as before pages were, a conversation longer than one page is
    // refused, never cut.
    let (s, v) = get(String::new()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("has 1200 turns, more than one answer carries (1000)"),
        "{v}"
    );
    // A page, and where the next starts.
    let (s, v) = get("?turns_limit=500".into()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["turns"].as_array().unwrap().len(), 500);
    assert_eq!(
        (&v["turns_from"], &v["turns_total"], &v["next_turns_from"]),
        (&json!(0), &json!(1200), &json!(500))
    );
    assert_eq!(v["turns"][499]["text"], "turn 499");
    assert_eq!(v["feedback"][0]["comment"], "long one");
    // The last page: its feedback, and no next.
    let (s, v) = get("?turns_from=1000&turns_limit=1000".into()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["turns"].as_array().unwrap().len(), 200);
    assert_eq!(v["turns"][0]["text"], "turn 1000");
    assert_eq!(v["turns"][100]["feedback"][0]["rating"], -1);
    assert_eq!(v["next_turns_from"], Value::Null);
    let (_, v) = get("?turns_from=5000".into()).await;
    assert_eq!(
        (v["turns"].as_array().unwrap().len(), &v["next_turns_from"]),
        (0, &Value::Null)
    );
    for bad in [
        "?turns_limit=0",
        "?turns_limit=1001",
        "?turns_from=10001",
        "?turns_from=-1",
        "?turn=3",
    ] {
        let (s, v) = get(bad.into()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
}

#[test]
fn a_store_busy_past_its_timeout_answers_503_with_retry_after() {
    use axum::response::IntoResponse;
    let res = ApiError::Internal(anyhow::anyhow!(
        "Query Error: error returned from database: (code: 5) database is locked"
    ))
    .into_response();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
}

#[tokio::test]
async fn a_conversation_holds_a_bounded_number_of_feedback_items() {
    use crate::core::conversation::MAX_FEEDBACK;
    use crate::store::tokens::Role;
    let f = fixture().await;
    let op = token(&f, Role::Operator).await;
    let post = |uri: &'static str, body: String| {
        let (f, op) = (&f, op.clone());
        async move { call(f, "POST", uri, Some(&op), &body).await }
    };
    for id in ["c1", "c2"] {
        let body = json!({"conversations": [{"model": "support", "id": id, "messages": [
            {"role": "user", "text": "lost my card", "intent": "card_lost"}]}]});
        let (s, v) = post("/api/v1/conversations", body.to_string()).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let rating = |id: &str, on_turn: bool| {
        let mut item = json!({"model": "support", "conversation": id, "rating": 1});
        if on_turn {
            item["message"] = json!(0);
        }
        item
    };
    // Up to the bound, on the whole and on its turns together.
    let batch: Vec<Value> = (0..MAX_FEEDBACK)
        .map(|i| rating("c1", i % 2 == 0))
        .collect();
    let (s, v) = post("/api/v1/feedback", json!({ "feedback": batch }).to_string()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let feedback = || async {
        let t = call(&f, "GET", "/api/v1/models/support/traffic", Some(&op), "").await;
        t.1["feedback"].clone()
    };
    assert_eq!(feedback().await, json!(MAX_FEEDBACK));
    // One more is refused, naming the item and the conversation; the
    // request is all or nothing, so the item for c2 before it is not kept.
    for on_turn in [false, true] {
        let body = json!({"feedback": [rating("c2", false), rating("c1", on_turn)]});
        let (s, v) = post("/api/v1/feedback", body.to_string()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("feedback[1]") && msg.contains("`c1`") && msg.contains("1000"),
            "{msg}"
        );
        assert_eq!(feedback().await, json!(MAX_FEEDBACK));
    }
    // Another conversation still takes feedback.
    let body = json!({"feedback": [rating("c2", true)]});
    let (s, v) = post("/api/v1/feedback", body.to_string()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // An import that carries more than the bound on one conversation is
    // refused before anything is stored.
    let turns: Vec<Value> = (0..2)
        .map(|_| {
            let fb: Vec<Value> = (0..=MAX_FEEDBACK / 2)
                .map(|_| json!({"rating": 1, "at": "2026-01-01T00:00:00Z"}))
                .collect();
            json!({"role": "user", "text": "hi", "feedback": fb})
        })
        .collect();
    let import = json!({"model": "support", "conversations": [{"id": "c3", "turns": turns}]});
    let (s, v) = post("/api/v1/conversations/import", import.to_string()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("carries 1002 feedback items; at most 1000"),
        "{v}"
    );
}
