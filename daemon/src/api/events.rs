//! Live progress as server-sent events: one run's stream (it ends when the
//! run finishes) and the firehose of everything.

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::Path;
use crate::core::ids::RunId;
use crate::core::state::RunState;
use crate::events::{Event, EventKind};
use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

fn to_sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .event(e.kind.name())
        .id(e.seq.to_string())
        .data(serde_json::to_string(e).unwrap_or_default())
}

fn finished(run: RunId, state: RunState, error: Option<String>) -> SseEvent {
    let e = Event {
        seq: 0,
        at: chrono::Utc::now(),
        run: Some(run),
        workflow: None,
        kind: EventKind::RunFinished {
            state,
            error,
            model: None,
        },
    };
    to_sse(&e)
}

/// How often an open stream checks that its token is still live.
const TOKEN_CHECK: Duration = Duration::from_secs(2);

fn token_check() -> tokio::time::Interval {
    let mut t = tokio::time::interval(TOKEN_CHECK);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Whether the token a stream was opened with is still live (revoked in
/// the API or with `coach token revoke`: the stream ends). A store that
/// cannot answer keeps the stream.
async fn still_allowed(s: &AppState, caller: &Caller) -> bool {
    s.store
        .token_by_hash(&caller.0.token_hash)
        .await
        .map_or(true, |t| t.is_some())
}

/// The last event of a stream whose token was revoked.
fn revoked() -> SseEvent {
    SseEvent::default()
        .event("revoked")
        .data("{\"message\":\"the token of this stream was revoked\"}")
}

/// Events of run `id`, from now until it finishes. A run that already
/// finished gets its `run.finished` at once.
pub async fn run_events(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let id = RunId(id);
    // Subscribe before reading the state, so nothing falls in between.
    let mut rx = s.bus.subscribe();
    let (state, error) = s
        .records()
        .state_of(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no run {id}")))?;
    let stopping = s.stopping.clone();
    let mut check = token_check();
    let stream = async_stream::stream! {
        if !state.is_active() {
            yield Ok(finished(id, state, error.clone()));
            return;
        }
        loop {
            tokio::select! {
                _ = stopping.cancelled() => return,
                _ = check.tick() => if !still_allowed(&s, &caller).await {
                    yield Ok(revoked());
                    return;
                },
                got = rx.recv() => match got {
                    Ok(e) if e.run == Some(id) => {
                        let end = matches!(e.kind, EventKind::RunFinished { .. });
                        yield Ok(to_sse(&e));
                        if end { return; }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        yield Ok(SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}")));
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Every event, until the client goes away or the daemon stops.
pub async fn firehose(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut rx = s.bus.subscribe();
    let stopping = s.stopping.clone();
    let mut check = token_check();
    let stream = async_stream::stream! {
        loop {
            tokio::select! {
                _ = stopping.cancelled() => return,
                _ = check.tick() => if !still_allowed(&s, &caller).await {
                    yield Ok(revoked());
                    return;
                },
                got = rx.recv() => match got {
                    Ok(e) => { let e: Arc<Event> = e; yield Ok(to_sse(&e)); }
                    Err(RecvError::Lagged(n)) => {
                        yield Ok(SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}")));
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
