//! Serving the router on the daemon's socket, bounded so that nobody —
//! with a token or without — can exhaust the process:
//!
//! - **Header and idle timeout** ([`HEADER_TIMEOUT`]): a connection must
//!   send a request's whole header within it, and an idle keep-alive
//!   connection is closed when it passes (hyper's header-read timer starts
//!   as soon as a connection waits for its next request). Streams of events
//!   are responses in progress and are not cut.
//! - **A connection cap** ([`ServeLimits::max_connections`]): the soft
//!   limit on open files is raised to the hard one at start, and
//!   [`RESERVED_FDS`] of it are kept for the store, plugins, processes and
//!   watchers; connections get the rest (at most [`MAX_CONNECTIONS`]). At
//!   the cap a new connection is still taken — the oldest connection that
//!   never had a request answered (idle, half-sent, or refused a token)
//!   is closed for it — so a flood of idle connections cannot keep a
//!   health check or a client with a token out.

use crate::core::sync::Lock;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Time a connection has to send a request's header, and the longest a
/// connection may sit idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Open files kept back from connections for everything else.
pub const RESERVED_FDS: u64 = 1024;
/// Connections at most, however high the open-file limit.
pub const MAX_CONNECTIONS: u64 = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl ServeLimits {
    /// Raise this process's soft limit on open files to its hard limit
    /// and size the connection cap from it.
    pub fn for_this_process() -> ServeLimits {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) => {
                if soft < hard {
                    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                        Ok(()) => hard,
                        Err(e) => {
                            tracing::warn!(
                                "cannot raise the open-file limit from {soft} to {hard}: {e}"
                            );
                            soft
                        }
                    }
                } else {
                    soft
                }
            }
            Err(e) => {
                tracing::warn!("cannot read the open-file limit: {e}");
                RESERVED_FDS * 2
            }
        };
        let max = limit
            .saturating_sub(RESERVED_FDS)
            .clamp(64, MAX_CONNECTIONS);
        tracing::info!(
            open_files = limit,
            max_connections = max,
            "connection limits"
        );
        ServeLimits {
            max_connections: max as usize,
            header_timeout: HEADER_TIMEOUT,
        }
    }
}

/// A connection being served.
struct Conn {
    opened: Instant,
    /// A request on it was answered with anything but 401.
    answered: Arc<AtomicBool>,
    close: CancellationToken,
}

/// Serve `router` on `listener` until `stop`, then let connections finish
/// their responses for up to 5 s.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let conns: Arc<Mutex<BTreeMap<u64, Conn>>> = Arc::default();
    let tracker = TaskTracker::new();
    let mut next_id = 0u64;
    let mut last_error: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up before
                    // the accept: say so now and then, and go on.
                    if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!("cannot accept a connection: {e}");
                        last_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        make_room(&conns, limits.max_connections);
        let id = next_id;
        next_id += 1;
        let answered = Arc::new(AtomicBool::new(false));
        let close = CancellationToken::new();
        conns.locked().insert(
            id,
            Conn {
                opened: Instant::now(),
                answered: answered.clone(),
                close: close.clone(),
            },
        );
        let (http, router, conns, stop) =
            (http.clone(), router.clone(), conns.clone(), stop.clone());
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (router, answered) = (router.clone(), answered.clone());
                async move {
                    let res = router.oneshot(req.map(Body::new)).await;
                    if let Ok(r) = &res
                        && r.status() != axum::http::StatusCode::UNAUTHORIZED
                    {
                        answered.store(true, Ordering::Relaxed);
                    }
                    res
                }
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = close.cancelled() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                }
            }
            conns.locked().remove(&id);
        });
    }
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tracker.len(),
            "connections still open 5 s after the server stopped"
        );
    }
}

/// At the cap, close the oldest connection that never had a request
/// answered, else the oldest of all.
fn make_room(conns: &Mutex<BTreeMap<u64, Conn>>, max: usize) {
    let mut conns = conns.locked();
    while conns.len() >= max {
        let victim = conns
            .iter()
            .filter(|(_, c)| !c.answered.load(Ordering::Relaxed))
            .min_by_key(|(_, c)| c.opened)
            .or_else(|| conns.iter().min_by_key(|(_, c)| c.opened))
            .map(|(id, _)| *id);
        match victim.and_then(|id| conns.remove(&id)) {
            Some(c) => c.close.cancel(),
            None => break,
        }
    }
}
