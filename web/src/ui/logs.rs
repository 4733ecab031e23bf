//! The log page of one try, which follows the log live while the try runs.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use engine::state::TaskState;
use serde_json::{json, Value};

use super::view::{fail, query_pairs};
use super::{urlencode, UiUser};
use crate::extract::field;
use crate::html::render;
use crate::WebState;

/// `/dags/{dag_id}/runs/{run_id}/tasks/{task_id}?try=N`: the log of one try; follows it live while it runs.
pub async fn log(
    State(state): State<WebState>,
    user: UiUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(&query);
    let map_index: i64 = field(&pairs, "map_index")
        .and_then(|m| m.parse().ok())
        .unwrap_or(engine::mapping::UNMAPPED);
    let ti = match state.store.get_ti(&dag_id, &run_id, &task_id, map_index).await {
        Ok(t) => t,
        Err(err) => return fail(err.into()),
    };
    let last_try = ti.try_number.max(1);
    let try_number = field(&pairs, "try")
        .and_then(|t| t.parse().ok())
        .unwrap_or(last_try)
        .clamp(1, last_try);
    let key = worker::log::TryKey::of(&ti, try_number);
    let logs = std::sync::Arc::clone(&state.logs);
    let (lines, offset) = tokio::task::spawn_blocking(move || read_all(logs.as_ref(), &key))
        .await
        .unwrap_or_default();
    let live = try_number == ti.try_number.max(1)
        && (ti.state.is_executing()
            || matches!(ti.state, TaskState::None | TaskState::Scheduled | TaskState::UpForRetry));
    let base = format!(
        "/api/v2/dags/{}/dagRuns/{}/taskInstances/{}",
        urlencode(&dag_id),
        urlencode(&run_id),
        urlencode(&task_id)
    );
    // A mapped instance: its own API resource, and its logs by the map_index query parameter.
    let (ti_api, log_query) = if map_index >= 0 {
        (format!("{base}/{map_index}"), format!("?map_index={map_index}"))
    } else {
        (base.clone(), String::new())
    };
    let mut ctx = user.base(&state, "runs");
    ctx.insert(
        "ti".into(),
        json!({"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "state": ti.state.as_str(),
               "operator": crate::api::shapes::operator_name(&ti.operator), "pool": ti.pool,
               "hostname": ti.hostname, "message": ti.message}),
    );
    ctx.insert("tries".into(), json!((1..=last_try).collect::<Vec<_>>()));
    ctx.insert("try_number".into(), json!(try_number));
    ctx.insert("lines".into(), json!(lines));
    ctx.insert("live".into(), json!(live));
    ctx.insert("log_api".into(), json!(format!("{base}/logs/{try_number}{log_query}")));
    ctx.insert("ti_api".into(), json!(ti_api));
    ctx.insert(
        "token".into(),
        json!(base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            format!("offset:{offset}")
        )),
    );
    render("log.html", Value::Object(ctx))
}

/// At most this much of a log is put on the page (the tail); the API pages through the rest.
const LOG_TAIL_BYTES: u64 = 4 << 20;

/// The complete lines of (the last 4 MiB of) a log with their levels, and the position after them.
fn read_all(logs: &dyn worker::log::TaskLogs, key: &worker::log::TryKey) -> (Vec<Value>, u64) {
    let Ok(page) = logs.read_tail(key, LOG_TAIL_BYTES) else {
        return (Vec::new(), 0);
    };
    let mut lines: Vec<Value> = Vec::new();
    if page.skipped > 0 {
        lines.push(json!({"level": "warning", "text": format!("… {} earlier bytes not shown (read them through the API)", page.skipped)}));
    }
    lines.extend(
        page.lines
            .iter()
            .map(|line| match serde_json::from_str::<worker::log::LogLine>(line) {
                Ok(l) => json!({"level": l.level.to_lowercase(), "text": l.to_text()}),
                Err(_) => json!({"level": "info", "text": line}),
            }),
    );
    (lines, page.next)
}
