//! The dashboard: server-rendered pages for the people who run and improve
//! the bot, served by the daemon under `/` beside the API. It reads and acts
//! through the same service layer as the API (no second source of truth),
//! signs in with an API token and respects the same roles.
//!
//! - `session`: sign-in, cookies, CSRF.
//! - `layout`: the page shell and small pieces shared by pages.
//! - `chart`: SVG charts rendered here, each with a text alternative.
//! - one file per page family: `overview`, `workflows`, `runs`, `models`,
//!   `conversations`, `review`, `experiments`, `data`.
//! - `assets`: the embedded, content-hashed stylesheet and script.

pub mod assets;
pub mod chart;
pub mod conversations;
pub mod data;
pub mod experiments;
pub mod layout;
pub mod models;
pub mod overview;
pub mod review;
pub mod runs;
pub mod session;
pub mod workflows;

use super::AppState;
use crate::service::Service;
use crate::store::tokens::Role;
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use session::{Session, Sessions};
use std::collections::HashMap;
use std::sync::Arc;

/// What every dashboard handler gets.
pub struct Web {
    pub service: Arc<Service>,
    pub sessions: Sessions,
    /// Uploads being checked (one at a time).
    pub uploads: tokio::sync::Semaphore,
}

/// Largest form a dashboard page posts.
const MAX_FORM: usize = 64 * 1024;

pub type WebState = Arc<Web>;

/// The dashboard's routes, for the API router to merge.
pub fn router(service: AppState) -> axum::Router<AppState> {
    let web = Arc::new(Web {
        service,
        sessions: Sessions::default(),
        uploads: tokio::sync::Semaphore::new(1),
    });
    Router::new()
        .route("/", get(overview::page))
        .route("/sign-in", get(layout::sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/workflows", get(workflows::list))
        .route("/workflows/{name}", get(workflows::page))
        .route("/workflows/{name}/trigger", post(workflows::trigger))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::page))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/models", get(models::list))
        .route("/models/compare", get(models::compare))
        .route("/models/{id}", get(models::page))
        .route("/models/{id}/deploy", post(models::deploy))
        .route("/models/{id}/rollback", post(models::rollback))
        .route("/conversations", get(conversations::list))
        .route("/conversations/{id}", get(conversations::page))
        .route(
            "/conversations/{id}/turns/{turn}/review",
            post(conversations::queue_turn),
        )
        .route("/review", get(review::list))
        .route("/review/next", post(review::next))
        .route("/review/{id}", get(review::page))
        .route("/review/{id}/label", post(review::label))
        .route("/experiments", get(experiments::list))
        .route("/experiments/{name}", get(experiments::page))
        .route("/data", get(data::page))
        .route(
            "/data/upload",
            post(data::upload).layer(axum::extract::DefaultBodyLimit::max(
                crate::service::datasets::MAX_UPLOAD,
            )),
        )
        .route("/live/events", get(runs::live_all))
        .route("/live/runs/{id}", get(runs::live_run))
        .route("/assets/{file}", get(assets::serve))
        .layer(middleware::from_fn(guard))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .with_state(web)
}

/// Headers on every dashboard answer, and no state change from another
/// site: a POST whose `Origin` is not this host (or that the browser marks
/// cross-site) is refused before any handler runs.
async fn guard(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return WebError::forbidden("a form from another site cannot change anything here")
            .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn same_origin(h: &HeaderMap) -> bool {
    if h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return false;
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest == host)
}

/// Did the browser reach Coach over TLS (a proxy in front says so)?
fn over_tls(h: &HeaderMap) -> bool {
    h.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https")
}

/// A signed-in browser, from its cookie. Pages without one send the browser
/// to sign in; anything else is refused.
pub struct SignedIn(pub Session);

impl FromRequestParts<WebState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &WebState) -> Result<Self, Response> {
        if let Some(id) = session::cookie_value(&parts.headers)
            && let Some(s) = web
                .sessions
                .get(
                    &web.service,
                    &id,
                    !parts.headers.contains_key("x-coach-refresh"),
                )
                .await
        {
            return Ok(SignedIn(s));
        }
        if parts.method == Method::GET && !parts.uri.path().starts_with("/live/") {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let to = format!(
                "/sign-in?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            return Err(Redirect::to(&to).into_response());
        }
        Err(WebError::new(StatusCode::UNAUTHORIZED, "sign in first").into_response())
    }
}

/// A submitted form (URL-encoded), its CSRF token checked against the
/// session's.
pub struct Form(pub HashMap<String, String>);

impl Form {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Read a form body and check its `_csrf` field.
pub async fn checked_form(session: &Session, body: axum::body::Bytes) -> Result<Form, WebError> {
    let fields: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    match fields.get("_csrf") {
        Some(t) if session::same_secret(t, &session.csrf) => Ok(Form(fields)),
        Some(_) => Err(WebError::forbidden(
            "the form's security token does not match this session; reload the page and try again",
        )),
        None => Err(WebError::forbidden(
            "the form has no security token (CSRF); reload the page and try again",
        )),
    }
}

/// Refuse what the session's role may not do, as the API would.
pub fn need(session: &Session, role: Role) -> Result<(), WebError> {
    if session.can(role) {
        Ok(())
    } else {
        Err(WebError::forbidden(&format!(
            "this needs the {} role; you signed in as {}, a {}",
            role.as_str(),
            session.name,
            session.role.as_str()
        )))
    }
}

/// A failed page or action, shown as a page that says what went wrong.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    pub fn new(status: StatusCode, message: &str) -> WebError {
        WebError {
            status,
            message: message.to_owned(),
        }
    }
    pub fn forbidden(message: &str) -> WebError {
        WebError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: &str) -> WebError {
        WebError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn bad(message: &str) -> WebError {
        WebError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> WebError {
        let n = crate::core::hash::sha256_hex(format!("{e:#}").as_bytes());
        tracing::error!(error = %format!("{e:#}"), id = %&n[..8], "a dashboard page failed");
        WebError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "internal error {}; the daemon's log says what failed",
                &n[..8]
            ),
        )
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let body = layout::bare(
            self.status.canonical_reason().unwrap_or("Error"),
            maud::html! {
                p.error role="alert" { (self.message) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (self.status, body).into_response()
    }
}

async fn sign_in(
    State(web): State<WebState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let fields: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let next = fields
        .get("next")
        .and_then(|n| session::safe_next(n))
        .unwrap_or("/")
        .to_owned();
    let token = fields.get("token").map(String::as_str).unwrap_or("");
    match web.sessions.sign_in(&web.service, token).await {
        Ok((id, s)) => {
            tracing::info!(token = %s.name, role = s.role.as_str(), "signed in to the dashboard");
            let mut res = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, over_tls(&headers))) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Err(why) => (
            StatusCode::UNAUTHORIZED,
            layout::sign_in_form(&next, Some(&why)),
        )
            .into_response(),
    }
}

async fn sign_out(
    State(web): State<WebState>,
    SignedIn(s): SignedIn,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    checked_form(&s, body).await?;
    if let Some(id) = session::cookie_value(&headers) {
        web.sessions.sign_out(&id);
    }
    let mut res = Redirect::to("/sign-in").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie()).expect("a valid header"),
    );
    Ok(res)
}

/// Time since `t`, for people: "5 s ago", "3 min ago", "2 h ago", "4 d ago".
pub fn ago(t: chrono::DateTime<chrono::Utc>) -> String {
    let s = (chrono::Utc::now() - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86400),
    }
}

/// A duration for people.
pub fn took(secs: i64) -> String {
    match secs.max(0) {
        s @ 0..120 => format!("{s} s"),
        s @ 120..7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

pub fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}
