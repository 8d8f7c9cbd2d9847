//! The HTTP API under `/api/v1` (axum), server-sent events, `/metrics` and
//! the health checks.
//!
//! Every route is declared once, in [`routes`], with the role it needs; the
//! router is built from that table and the OpenAPI document
//! (`openapi.json`, served at `/api/v1/openapi.json`) is tested against it.

pub mod auth;
pub mod conversations;
pub mod deployments;
pub mod error;
pub mod events;
pub mod experiments;
pub mod extract;
pub mod gpus;
pub mod limits;
pub mod meta;
pub mod models;
pub mod review;
pub mod runs;
pub mod schema;
pub mod serve;
pub mod tokens;
pub mod web;
pub mod workflows;

use crate::service::Service;
use crate::store::tokens::Role;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, delete, get, post};
use error::ApiError;
use std::sync::Arc;
use std::time::Instant;

pub type AppState = Arc<Service>;

/// One route: method, path, the role it needs (`None`: open) and handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub role: Option<Role>,
    pub handler: MethodRouter<AppState>,
}

fn route(
    method: Method,
    path: &'static str,
    role: Option<Role>,
    handler: MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        role,
        handler,
    }
}

/// Every route the daemon serves.
pub fn routes() -> Vec<Route> {
    use Role::{Admin, Operator, Reviewer, Viewer};
    let (g, p, d) = (Method::GET, Method::POST, Method::DELETE);
    vec![
        route(g.clone(), "/healthz", None, get(meta::healthz)),
        route(g.clone(), "/readyz", None, get(meta::readyz)),
        route(g.clone(), "/metrics", Some(Viewer), get(meta::metrics)),
        route(
            g.clone(),
            "/api/v1/openapi.json",
            Some(Viewer),
            get(meta::openapi),
        ),
        route(g.clone(), "/api/v1/status", Some(Viewer), get(meta::status)),
        route(
            g.clone(),
            "/api/v1/workflows",
            Some(Viewer),
            get(workflows::list),
        ),
        route(
            g.clone(),
            "/api/v1/workflows/{name}",
            Some(Viewer),
            get(workflows::show),
        ),
        route(
            p.clone(),
            "/api/v1/workflows/{name}/runs",
            Some(Operator),
            post(workflows::trigger),
        ),
        route(g.clone(), "/api/v1/runs", Some(Viewer), get(runs::list)),
        route(
            g.clone(),
            "/api/v1/runs/{id}",
            Some(Viewer),
            get(runs::show),
        ),
        route(
            p.clone(),
            "/api/v1/runs/{id}/cancel",
            Some(Operator),
            post(runs::cancel),
        ),
        route(
            g.clone(),
            "/api/v1/runs/{id}/logs",
            Some(Viewer),
            get(runs::logs),
        ),
        route(
            g.clone(),
            "/api/v1/runs/{id}/events",
            Some(Viewer),
            get(events::run_events),
        ),
        route(
            g.clone(),
            "/api/v1/events",
            Some(Viewer),
            get(events::firehose),
        ),
        route(g.clone(), "/api/v1/models", Some(Viewer), get(models::list)),
        route(
            g.clone(),
            "/api/v1/models/{selector}",
            Some(Viewer),
            get(models::show),
        ),
        route(
            p.clone(),
            "/api/v1/models/{name}/predict",
            Some(Operator),
            post(models::predict),
        ),
        route(
            g.clone(),
            "/api/v1/models/{name}/traffic",
            Some(Viewer),
            get(conversations::traffic),
        ),
        route(
            g.clone(),
            "/api/v1/deployments",
            Some(Viewer),
            get(deployments::list),
        ),
        route(
            p.clone(),
            "/api/v1/deployments",
            Some(Operator),
            post(deployments::deploy),
        ),
        route(
            g.clone(),
            "/api/v1/deployments/{model}/history",
            Some(Viewer),
            get(deployments::history),
        ),
        route(
            p.clone(),
            "/api/v1/rollbacks",
            Some(Operator),
            post(deployments::rollback),
        ),
        route(
            g.clone(),
            "/api/v1/experiments",
            Some(Viewer),
            get(experiments::list),
        ),
        route(
            p.clone(),
            "/api/v1/experiments",
            Some(Operator),
            post(experiments::start),
        ),
        route(
            g.clone(),
            "/api/v1/experiments/{name}",
            Some(Viewer),
            get(experiments::show),
        ),
        route(
            p.clone(),
            "/api/v1/experiments/{name}/stop",
            Some(Operator),
            post(experiments::stop),
        ),
        route(
            g.clone(),
            "/api/v1/conversations",
            Some(Viewer),
            get(conversations::list),
        ),
        route(
            g.clone(),
            "/api/v1/conversations/{id}",
            Some(Viewer),
            get(conversations::show),
        ),
        route(
            p.clone(),
            "/api/v1/conversations",
            Some(Operator),
            post(conversations::log),
        ),
        route(
            p.clone(),
            "/api/v1/conversations/import",
            Some(Operator),
            post(conversations::import),
        ),
        route(
            p.clone(),
            "/api/v1/feedback",
            Some(Operator),
            post(conversations::record),
        ),
        route(
            g.clone(),
            "/api/v1/review/items",
            Some(Reviewer),
            get(review::list),
        ),
        route(
            p.clone(),
            "/api/v1/review/items",
            Some(Operator),
            post(review::queue),
        ),
        route(
            g.clone(),
            "/api/v1/review/items/{id}",
            Some(Reviewer),
            get(review::show),
        ),
        route(
            p.clone(),
            "/api/v1/review/items/{id}/labels",
            Some(Reviewer),
            post(review::label),
        ),
        route(
            p.clone(),
            "/api/v1/review/next",
            Some(Reviewer),
            post(review::next),
        ),
        route(
            g.clone(),
            "/api/v1/review/summary",
            Some(Viewer),
            get(review::summary),
        ),
        route(
            p.clone(),
            "/api/v1/models/{name}/patterns",
            Some(Operator),
            post(review::patterns),
        ),
        route(
            g.clone(),
            "/api/v1/models/{name}/recommendations",
            Some(Viewer),
            get(review::recommendations),
        ),
        route(
            p.clone(),
            "/api/v1/recommendations/{id}/review",
            Some(Operator),
            post(review::review_recommendation),
        ),
        route(
            g.clone(),
            "/api/v1/models/{name}/quality",
            Some(Viewer),
            get(review::quality),
        ),
        route(
            g.clone(),
            "/api/v1/gpus",
            Some(Viewer),
            get(gpus::inventory),
        ),
        route(g.clone(), "/api/v1/queue", Some(Viewer), get(gpus::queue)),
        route(
            g.clone(),
            "/api/v1/plugins",
            Some(Viewer),
            get(models::plugins),
        ),
        route(g.clone(), "/api/v1/tokens", Some(Admin), get(tokens::list)),
        route(p, "/api/v1/tokens", Some(Admin), post(tokens::create)),
        route(
            d,
            "/api/v1/tokens/{id}",
            Some(Admin),
            delete(tokens::revoke),
        ),
    ]
}

/// The daemon's router.
pub fn router(service: AppState) -> Router {
    let mut router = Router::new();
    for r in routes() {
        // Latency is measured inside authentication: a request that fails
        // before routing or auth adds no series to `/metrics` (labels come
        // from the route table, never from the request).
        let tracked = r
            .handler
            .route_layer(middleware::from_fn_with_state(service.clone(), track));
        let handler = match r.role {
            Some(role) => tracked.route_layer(middleware::from_fn_with_state(
                (service.clone(), role),
                auth::require,
            )),
            None => tracked,
        };
        router = router.route(r.path, handler);
    }
    router
        .merge(web::router(service.clone()))
        .fallback(|| async { ApiError::NotFound("no such route; see /api/v1/openapi.json".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not take that method".into())
        })
        .layer(middleware::from_fn(limits::request_limits))
        .layer(axum::extract::DefaultBodyLimit::max(limits::MAX_BODY))
        .with_state(service)
}

/// A method as a metrics label: one of the methods routes take, else
/// `other` (the label set stays bounded whatever arrives).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// Latency per route into `/metrics`.
async fn track(State(service): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method()).to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let res = next.run(req).await;
    service
        .bus
        .metrics()
        .http_seconds
        .get_or_create(&crate::events::metrics::HttpLabels {
            method,
            route,
            status: res.status().as_u16().to_string(),
        })
        .observe(start.elapsed().as_secs_f64());
    res
}

#[cfg(test)]
mod tests;
