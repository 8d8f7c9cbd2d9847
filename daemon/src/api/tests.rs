//! Handlers without a socket (`tower::ServiceExt::oneshot`) and the OpenAPI
//! document against the route table.

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
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
    let (service, _) = crate::service::Service::open(config).await.unwrap();
    Fixture { _dir: dir, service }
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
        "{\"name\":\"x\",\"role\":\"root\"}",
        "{\"name\":\"x\",\"role\":\"viewer\",\"extra\":1}",
    ] {
        let (s, v) = call(&f, "POST", "/api/v1/tokens", Some(&admin), body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["code"], "bad_request");
        assert!(!v["message"].as_str().unwrap().is_empty());
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
