//! Server-sent events of one run (`GET /api/v2/dagctl/runs/{dag_id}/{run_id}/events`): each change to the run
//! as it is committed (by this process or, on PostgreSQL, any other), so the run page and scripts follow a run
//! without polling. `event: change`, `data:` the change (`tasks:12`, `try:12`, `ended:12:success`, `resync`);
//! the stream ends after the run's end, and after an hour at most. A comment every 15 s keeps proxies from
//! closing an idle stream.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::store::Change;
use tokio::sync::Semaphore;

use super::runs::find_run;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::{Principal, WebState};

/// Event streams open at once.
static STREAMS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(64)));
/// The longest a stream lives (the page opens a new one).
const STREAM_LIMIT: Duration = Duration::from_secs(3600);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn run_events(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    who.require(Role::Viewer)?;
    let permit = Arc::clone(&STREAMS).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many event streams open; try again later",
        )
    })?;
    // Subscribed before the run is read: a change committed in between is not missed.
    let changes = state.store.subscribe();
    let run = find_run(&state, &dag_id, &run_id).await?;
    let run_pk = run.id;
    let first = run.state.is_finished().then_some(Change::RunEnded(run_pk, run.state));
    let started = Instant::now();
    let permit = Arc::new(permit);
    let stream = futures_util::stream::unfold((changes, first, false), move |(mut changes, first, ended)| {
        let _permit = Arc::clone(&permit);
        async move {
            if ended || started.elapsed() > STREAM_LIMIT {
                return None;
            }
            let change = match first {
                Some(change) => Some(change),
                None => loop {
                    let left = STREAM_LIMIT.saturating_sub(started.elapsed());
                    match tokio::time::timeout(KEEP_ALIVE.min(left), changes.next()).await {
                        Ok(change) if change.concerns_run(run_pk) => break Some(change),
                        Ok(_) => continue,
                        Err(_) => break None,
                    }
                },
            };
            let (chunk, ended) = match change {
                Some(change) => (
                    format!("event: change\ndata: {}\n\n", change.encode()),
                    matches!(change, Change::RunEnded(..)),
                ),
                None => (": keep-alive\n\n".to_string(), false),
            };
            Some((Ok::<_, std::io::Error>(chunk), (changes, None, ended)))
        }
    });
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
