//! Requests to the API as an admin would send them, with hostile targets,
//! queries and bodies: routing, path and query extraction, the body's
//! normalisation and schema check, and the handlers down to the store.
//!
//! The input is `<method byte><path and query after /api/v1/>\n<body>`.
//! Whatever comes in, the answer is never a 500, and every error is the
//! JSON `{code, message}`.
#![no_main]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use coach::app::{App, Mode};
use coach::config::Config;
use coach::store::tokens::Role;
use serde_json::Value;
use std::sync::{Mutex, OnceLock};
use tower::ServiceExt;

struct Daemon {
    runtime: tokio::runtime::Runtime,
    app: App,
    token: Mutex<String>,
    _dir: tempfile::TempDir,
}

fn daemon() -> &'static Daemon {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let workflows = dir.path().join("workflows");
        std::fs::create_dir_all(&workflows).unwrap();
        std::fs::write(
            workflows.join("broken.toml"),
            "version = 1\nname = \"broken\"\n[[step]]\nid = \"x\"\nuses = \"no-such-plugin\"\n",
        )
        .unwrap();
        let text = format!(
            "data_dir = {:?}\n[daemon]\nworkflow_dirs = [{:?}]\n",
            dir.path().join("data"),
            workflows
        );
        let config = Config::from_toml(&text, dir.path(), None).unwrap();
        let (app, token) = runtime.block_on(async {
            let app = App::open(config, Mode::Daemon).await.unwrap();
            app.service.reload_workflows(false);
            let token = app
                .service
                .store
                .create_token("fuzz", Role::Admin)
                .await
                .unwrap()
                .1;
            (app, token)
        });
        Daemon {
            runtime,
            app,
            token: Mutex::new(token),
            _dir: dir,
        }
    })
}

/// Bytes as a request target: kept where they are legal in a URI,
/// percent-encoded where not.
fn target(bytes: &[u8]) -> String {
    let mut out = String::from("/api/v1/");
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"/?&=-._~%+,:;@!$'()*".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "POST", "DELETE", "GET"][usize::from(which & 3)];
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let d = daemon();
    let token = d.token.lock().unwrap().clone();
    let Ok(req) = Request::builder()
        .method(method)
        .uri(target(path))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    let (status, answer) = d.runtime.block_on(async {
        let res = coach::api::router(d.app.service.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = res.status();
        let stream = res
            .headers()
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
        if stream {
            return (status, Ok(Default::default()));
        }
        let bytes = axum::body::to_bytes(res.into_body(), 8 << 20).await;
        (status, bytes)
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{:?}", answer);
    if status == StatusCode::UNAUTHORIZED {
        // The input revoked the fuzzer's own token: mint another.
        let fresh = d.runtime.block_on(async {
            d.app
                .service
                .store
                .create_token("fuzz", Role::Admin)
                .await
                .unwrap()
                .1
        });
        *d.token.lock().unwrap() = fresh;
    }
    // Streams (`/events`) answer with a body that never ends: asked for,
    // not read.
    if status.is_client_error() {
        let answer = answer.expect("an error body is read whole");
        let v: Value = serde_json::from_slice(&answer).expect("an error is JSON");
        assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
    }
});
