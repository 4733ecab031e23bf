//! The pages: DAG list, DAG (grid and graph), trigger form, run (with gantt bars), task log, runs, networks,
//! audit log; and the forms that pause, trigger and clear.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use engine::state::TaskState;
use engine::store::{RunFilter, RunRow};
use serde_json::{json, Value};

use super::{checked_form, error_page, field, render, urlencode, UiUser};
use crate::api::dags::task_order;
use crate::api::runs::{create_manual_run, TriggerBody};
use crate::auth::Role;
use crate::error::ApiError;
use crate::extract::serde_urlencoded_pairs;
use crate::WebState;

fn fail(err: ApiError) -> Response {
    let detail = match &err.detail {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    error_page(err.status, &detail)
}

fn when(at: Option<DateTime<Utc>>) -> Value {
    at.map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

fn human_duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Value {
    let (Some(s), Some(e)) = (start, end) else {
        return Value::Null;
    };
    let ms = (e - s).num_milliseconds().max(0);
    json!(if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    })
}

fn query_pairs(query: &Option<String>) -> Vec<(String, String)> {
    serde_urlencoded_pairs(query.as_deref().unwrap_or("")).unwrap_or_default()
}

fn page_number(pairs: &[(String, String)]) -> i64 {
    field(pairs, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
        .clamp(0, 1_000_000)
}

/// `/dags`: every DAG with its recent runs, next run, paused toggle, and the import errors.
pub async fn dags(State(state): State<WebState>, user: UiUser, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(&query);
    let q: String = field(&pairs, "q").unwrap_or("").chars().take(250).collect();
    let paused = field(&pairs, "paused").unwrap_or("").to_string();
    let (dags, errors) = match (state.store.list_dags(false).await, state.store.import_errors().await) {
        (Ok(d), Ok(e)) => (d, e),
        (Err(err), _) | (_, Err(err)) => return fail(err.into()),
    };
    let mut rows = Vec::new();
    for d in dags
        .iter()
        .filter(|d| q.is_empty() || crate::api::like(&q, &d.dag_id))
        .filter(|d| paused.is_empty() || (paused == "true") == d.is_paused)
    {
        let recent = match state
            .store
            .list_runs(&RunFilter {
                dag_id: Some(d.dag_id.clone()),
                limit: 10,
                descending: true,
                ..Default::default()
            })
            .await
        {
            Ok((runs, _)) => runs,
            Err(err) => return fail(err.into()),
        };
        rows.push(json!({
            "dag_id": d.dag_id,
            "is_paused": d.is_paused,
            "description": d.spec.description,
            "owner": d.spec.owner,
            "tags": d.spec.tags,
            "schedule": d.spec.schedule.summary(),
            "next_run": when(d.next_dagrun_create_after),
            "has_import_errors": errors.iter().any(|e| e.filename == d.fileloc),
            "recent": recent.iter().rev().map(|r| json!({"run_id": r.run_id, "state": r.state.as_str()})).collect::<Vec<_>>(),
        }));
    }
    let mut ctx = user.base(&state, "dags");
    ctx.insert("dags".into(), json!(rows));
    ctx.insert("q".into(), json!(q));
    ctx.insert("paused".into(), json!(paused));
    // The stored message starts with its location; the page shows the location once, in its own column.
    let import_errors: Vec<Value> = errors
        .iter()
        .map(|e| {
            let at_line = e.line.map(|l| format!("{}:{l}: ", e.filename));
            let message = at_line
                .as_deref()
                .and_then(|p| e.message.strip_prefix(p))
                .or_else(|| e.message.strip_prefix(&format!("{}: ", e.filename)))
                .unwrap_or(&e.message);
            json!({"filename": e.filename, "line": e.line, "message": message})
        })
        .collect();
    ctx.insert("import_errors".into(), json!(import_errors));
    render("dags.html", Value::Object(ctx))
}

const GRID_PAGE: i64 = 25;

/// `/dags/{dag_id}`: the grid (runs x tasks, 25 runs a page, newest on the right) or the graph.
pub async fn dag(
    State(state): State<WebState>,
    user: UiUser,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(&query);
    let dag = match crate::api::dags::find_dag(&state, &dag_id).await {
        Ok(d) => d,
        Err(err) => return fail(err),
    };
    let view = if field(&pairs, "view") == Some("graph") {
        "graph"
    } else {
        "grid"
    };
    let page = page_number(&pairs);
    let tasks = task_order(&dag);
    let mut ctx = user.base(&state, "dags");
    ctx.insert(
        "dag".into(),
        json!({"dag_id": dag.dag_id, "is_paused": dag.is_paused, "description": dag.spec.description,
               "schedule": dag.spec.schedule.summary(), "owner": dag.spec.owner, "fileloc": dag.fileloc}),
    );
    ctx.insert("view".into(), json!(view));
    let (runs, total) = match state
        .store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.clone()),
            limit: if view == "graph" { 1 } else { GRID_PAGE },
            offset: if view == "graph" { 0 } else { page * GRID_PAGE },
            descending: true,
            ..Default::default()
        })
        .await
    {
        Ok(r) => r,
        Err(err) => return fail(err.into()),
    };
    let pks: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let tis = match state.store.tis_of_runs(&pks).await {
        Ok(t) => t,
        Err(err) => return fail(err.into()),
    };
    let mut states: HashMap<i64, serde_json::Map<String, Value>> = HashMap::new();
    for ti in &tis {
        let s = if ti.state == TaskState::None {
            Value::Null
        } else {
            json!(ti.state.as_str())
        };
        states.entry(ti.run_pk).or_default().insert(ti.task_id.clone(), s);
    }
    if view == "graph" {
        let run_states = runs
            .first()
            .and_then(|r| states.get(&r.id))
            .cloned()
            .unwrap_or_default();
        ctx.insert("graph".into(), layout(&dag, &tasks, &run_states));
        ctx.insert("graph_run".into(), json!(runs.first().map(|r| r.run_id.clone())));
    } else {
        // Oldest on the left, as Airflow's grid.
        let columns: Vec<Value> = runs
            .iter()
            .rev()
            .map(|r| json!({"run_id": r.run_id, "state": r.state.as_str(), "states": states.remove(&r.id).unwrap_or_default()}))
            .collect();
        let first = page * GRID_PAGE + 1;
        ctx.insert(
            "grid".into(),
            json!({
                "tasks": tasks,
                "runs": columns,
                "total": total,
                "first": if runs.is_empty() { 0 } else { first },
                "last": page * GRID_PAGE + runs.len() as i64,
                "newer": if page > 0 { Some(page - 1) } else { None },
                "older": if (page + 1) * GRID_PAGE < total { Some(page + 1) } else { None },
            }),
        );
    }
    render("dag.html", Value::Object(ctx))
}

/// Lays the DAG out left to right: a task's column is its longest path from a root.
fn layout(dag: &engine::store::DagRow, order: &[String], states: &serde_json::Map<String, Value>) -> Value {
    const W: i64 = 170;
    const H: i64 = 40;
    const GAP_X: i64 = 60;
    const GAP_Y: i64 = 18;
    let mut depth: HashMap<&str, i64> = HashMap::new();
    for id in order {
        let d = dag
            .spec
            .task(id)
            .map(|t| {
                t.upstream
                    .iter()
                    .filter_map(|u| depth.get(u.as_str()))
                    .max()
                    .map(|m| m + 1)
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        depth.insert(id.as_str(), d);
    }
    let mut rows_in: HashMap<i64, i64> = HashMap::new();
    let mut pos: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut nodes = Vec::new();
    for id in order {
        let d = depth[id.as_str()];
        let row = rows_in.entry(d).or_insert(0);
        let (x, y) = (10 + d * (W + GAP_X), 10 + *row * (H + GAP_Y));
        *row += 1;
        pos.insert(id.as_str(), (x, y));
        let state = states.get(id).and_then(|s| s.as_str()).unwrap_or("none");
        let operator = dag
            .spec
            .task(id)
            .map(|t| crate::api::shapes::operator_name(&t.operator).to_string());
        nodes.push(json!({"id": id, "x": x, "y": y, "state": state, "operator": operator}));
    }
    let mut edges = Vec::new();
    for t in &dag.spec.tasks {
        for u in &t.upstream {
            if let (Some(&(ux, uy)), Some(&(tx, ty))) = (pos.get(u.as_str()), pos.get(t.task_id.as_str())) {
                let (x1, y1, x2, y2) = (ux + W, uy + H / 2, tx, ty + H / 2);
                edges.push(json!({"x1": x1, "y1": y1, "x2": x2, "y2": y2, "mx": (x1 + x2) / 2}));
            }
        }
    }
    let columns = depth.values().max().map(|m| m + 1).unwrap_or(1);
    let rows = rows_in.values().max().copied().unwrap_or(1);
    json!({
        "nodes": nodes, "edges": edges, "node_w": W, "node_h": H,
        "width": 20 + columns * (W + GAP_X), "height": 20 + rows * (H + GAP_Y),
    })
}

/// `POST /dags/{dag_id}/pause`.
pub async fn pause(
    State(state): State<WebState>,
    user: UiUser,
    Path(dag_id): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let back = req
        .headers()
        .get(axum::http::header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.find("/dags").map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/dags".into());
    let pairs = match checked_form(&state, &user, Role::User, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let paused = field(&pairs, "paused") == Some("true");
    match state.store.set_paused(&dag_id, paused, Some(&user.0.username)).await {
        Ok(()) => Redirect::to(&super::safe_next(Some(&back))).into_response(),
        Err(err) => fail(err.into()),
    }
}

/// `GET /dags/{dag_id}/trigger`: the form, with the DAG's params as the starting conf.
pub async fn trigger_form(State(state): State<WebState>, user: UiUser, Path(dag_id): Path<String>) -> Response {
    if let Err(r) = user.require(Role::User) {
        return r;
    }
    let dag = match crate::api::dags::find_dag(&state, &dag_id).await {
        Ok(d) => d,
        Err(err) => return fail(err),
    };
    let conf = serde_json::to_string_pretty(&dag.spec.params).unwrap_or_else(|_| "{}".into());
    trigger_page(&state, &user, &dag, &conf, "", "", None)
}

fn trigger_page(
    state: &WebState,
    user: &UiUser,
    dag: &engine::store::DagRow,
    conf: &str,
    run_id: &str,
    logical_date: &str,
    error: Option<&str>,
) -> Response {
    let mut ctx = user.base(state, "dags");
    ctx.insert("dag".into(), json!({"dag_id": dag.dag_id, "is_paused": dag.is_paused}));
    ctx.insert("conf".into(), json!(conf));
    ctx.insert("run_id".into(), json!(run_id));
    ctx.insert("logical_date".into(), json!(logical_date));
    ctx.insert("error".into(), json!(error));
    let mut response = render("trigger.html", Value::Object(ctx));
    if error.is_some() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

/// `POST /dags/{dag_id}/trigger`: creates the run and shows it; a bad conf shows the form again with why.
pub async fn trigger_submit(
    State(state): State<WebState>,
    user: UiUser,
    Path(dag_id): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let pairs = match checked_form(&state, &user, Role::User, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let dag = match crate::api::dags::find_dag(&state, &dag_id).await {
        Ok(d) => d,
        Err(err) => return fail(err),
    };
    let conf_text = field(&pairs, "conf").unwrap_or("").trim().to_string();
    let run_id = field(&pairs, "run_id").unwrap_or("").trim().to_string();
    let logical_date = field(&pairs, "logical_date").unwrap_or("").trim().to_string();
    let again = |error: &str| trigger_page(&state, &user, &dag, &conf_text, &run_id, &logical_date, Some(error));
    let conf = if conf_text.is_empty() {
        serde_json::Map::new()
    } else {
        match serde_json::from_str::<Value>(&conf_text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return again("The configuration must be a JSON object, like {\"key\": \"value\"}."),
            Err(err) => return again(&format!("The configuration is not valid JSON: {err}")),
        }
    };
    let body = TriggerBody {
        dag_run_id: (!run_id.is_empty()).then(|| run_id.clone()),
        logical_date: (!logical_date.is_empty()).then(|| logical_date.clone()),
        conf: Some(conf),
        ..Default::default()
    };
    match create_manual_run(&state, &user.0, &dag_id, body).await {
        Ok(run) => {
            Redirect::to(&format!("/dags/{}/runs/{}", urlencode(&dag_id), urlencode(&run.run_id))).into_response()
        }
        Err(err) if err.status.is_client_error() && err.status != StatusCode::FORBIDDEN => {
            let detail = match &err.detail {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.get("msg").and_then(|m| m.as_str()))
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            again(&detail)
        }
        Err(err) => fail(err),
    }
}

fn run_view(run: &RunRow) -> Value {
    json!({
        "dag_id": run.dag_id, "run_id": run.run_id, "state": run.state.as_str(), "run_type": run.run_type.as_str(),
        "triggered_by": run.triggered_by, "triggering_user": run.triggering_user,
        "logical_date": when(run.logical_date), "start_date": when(run.start_date), "end_date": when(run.end_date),
        "run_after": when(Some(run.run_after)),
        "duration": human_duration(run.start_date, run.end_date),
        "conf": Value::Object(run.conf.clone()).to_string(),
    })
}

/// `/dags/{dag_id}/runs/{run_id}`: the run, its tasks with durations and gantt bars.
pub async fn run(
    State(state): State<WebState>,
    user: UiUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Response {
    let run = match crate::api::runs::find_run(&state, &dag_id, &run_id).await {
        Ok(r) => r,
        Err(err) => return fail(err),
    };
    let mut tis = match state.store.tis_of_run(run.id).await {
        Ok(t) => t,
        Err(err) => return fail(err.into()),
    };
    if let Ok(dag) = state.store.get_dag(&dag_id).await {
        let order = task_order(&dag);
        tis.sort_by_key(|t| order.iter().position(|o| *o == t.task_id).unwrap_or(usize::MAX));
    }
    let now = Utc::now();
    let start = tis.iter().filter_map(|t| t.start_date).min();
    let end = tis
        .iter()
        .filter_map(|t| t.end_date.or(t.start_date.map(|_| now)))
        .max();
    let span = match (start, end) {
        (Some(s), Some(e)) if e > s => (e - s).num_milliseconds() as f64,
        _ => 0.0,
    };
    let tasks: Vec<Value> = tis
        .iter()
        .map(|t| {
            let bar = match (start, t.start_date) {
                (Some(s0), Some(s)) if span > 0.0 => {
                    let e = t.end_date.unwrap_or(now);
                    let left = (s - s0).num_milliseconds() as f64 / span * 100.0;
                    let width = ((e - s).num_milliseconds() as f64 / span * 100.0).max(0.4);
                    json!({"left": format!("{left:.2}"), "width": format!("{:.2}", width.min(100.0 - left))})
                }
                _ => Value::Null,
            };
            json!({
                "task_id": t.task_id, "state": t.state.as_str(), "try_number": t.try_number, "max_tries": t.max_tries,
                "duration": human_duration(t.start_date, t.end_date), "bar": bar,
            })
        })
        .collect();
    let mut ctx = user.base(&state, "runs");
    ctx.insert("run".into(), run_view(&run));
    ctx.insert("tasks".into(), json!(tasks));
    render("run.html", Value::Object(ctx))
}

/// `POST /dags/{dag_id}/runs/{run_id}/clear`.
pub async fn clear(
    State(state): State<WebState>,
    user: UiUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    req: axum::extract::Request,
) -> Response {
    let pairs = match checked_form(&state, &user, Role::User, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let only_failed = field(&pairs, "only_failed") == Some("true");
    match state
        .store
        .clear_tis(&dag_id, &run_id, None, only_failed, Some(&user.0.username))
        .await
    {
        Ok(_) => Redirect::to(&format!("/dags/{}/runs/{}", urlencode(&dag_id), urlencode(&run_id))).into_response(),
        Err(err) => fail(err.into()),
    }
}

/// `/dags/{dag_id}/runs/{run_id}/tasks/{task_id}?try=N`: the log of one try; follows it live while it runs.
pub async fn log(
    State(state): State<WebState>,
    user: UiUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(&query);
    let ti = match state.store.get_ti(&dag_id, &run_id, &task_id).await {
        Ok(t) => t,
        Err(err) => return fail(err.into()),
    };
    let last_try = ti.try_number.max(1);
    let try_number = field(&pairs, "try")
        .and_then(|t| t.parse().ok())
        .unwrap_or(last_try)
        .clamp(1, last_try);
    let key = worker::log::TryKey::new(&dag_id, &run_id, &task_id, try_number);
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
    let mut ctx = user.base(&state, "runs");
    ctx.insert(
        "ti".into(),
        json!({"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "state": ti.state.as_str(),
               "operator": crate::api::shapes::operator_name(&ti.operator), "pool": ti.pool,
               "hostname": ti.hostname, "message": ti.message}),
    );
    ctx.insert("tries".into(), json!((1..=last_try).collect::<Vec<_>>()));
    ctx.insert("try_number".into(), json!(try_number));
    ctx.insert("lines".into(), json!(lines));
    ctx.insert("live".into(), json!(live));
    ctx.insert("log_api".into(), json!(format!("{base}/logs/{try_number}")));
    ctx.insert("ti_api".into(), json!(base));
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

/// `/runs`: every run, newest first.
pub async fn runs(State(state): State<WebState>, user: UiUser, RawQuery(query): RawQuery) -> Response {
    let page = page_number(&query_pairs(&query));
    const PAGE: i64 = 50;
    let (runs, total) = match state
        .store
        .list_runs(&RunFilter {
            limit: PAGE,
            offset: page * PAGE,
            descending: true,
            ..Default::default()
        })
        .await
    {
        Ok(r) => r,
        Err(err) => return fail(err.into()),
    };
    let mut ctx = user.base(&state, "runs");
    ctx.insert("runs".into(), json!(runs.iter().map(run_view).collect::<Vec<_>>()));
    ctx.insert("newer".into(), json!(if page > 0 { Some(page - 1) } else { None }));
    ctx.insert(
        "older".into(),
        json!(if (page + 1) * PAGE < total {
            Some(page + 1)
        } else {
            None
        }),
    );
    render("runs.html", Value::Object(ctx))
}

/// `/networks`: the blockchain networks the store knows.
pub async fn networks(State(state): State<WebState>, user: UiUser) -> Response {
    let rows = match state.store.list_networks(true).await {
        Ok(r) => r,
        Err(err) => return fail(err.into()),
    };
    let networks: Vec<Value> = rows
        .iter()
        .map(|n| {
            let spec: Value = serde_json::from_str(&n.spec).unwrap_or(Value::Null);
            let nodes: Value = serde_json::from_str(&n.nodes).unwrap_or(Value::Null);
            json!({
                "name": n.name, "status": n.status, "message": n.message, "backend": n.backend, "host": n.host,
                "client": spec.get("client"), "consensus": spec.get("consensus"),
                "nodes": nodes.as_array().map(|a| a.len()).or_else(|| spec.get("nodes").and_then(|v| v.as_u64()).map(|v| v as usize)),
                "dag_id": n.dag_id, "run_id": n.run_id, "task_id": n.task_id, "created_at": when(Some(n.created_at)),
            })
        })
        .collect();
    let mut ctx = user.base(&state, "networks");
    ctx.insert("networks".into(), json!(networks));
    render("networks.html", Value::Object(ctx))
}

/// `/audit`: the newest 200 audit entries.
pub async fn audit(State(state): State<WebState>, user: UiUser) -> Response {
    let rows = match state.store.events(200).await {
        Ok(r) => r,
        Err(err) => return fail(err.into()),
    };
    let events: Vec<Value> = rows
        .iter()
        .map(|e| {
            json!({"when": when(Some(e.ts)), "owner": e.owner, "event": e.event, "dag_id": e.dag_id,
                        "run_id": e.run_id, "task_id": e.task_id, "extra": e.extra})
        })
        .collect();
    let mut ctx = user.base(&state, "audit");
    ctx.insert("events".into(), json!(events));
    render("audit.html", Value::Object(ctx))
}

fn pools_page(state: &WebState, user: &UiUser, pools: &[engine::store::PoolRow], error: Option<&str>) -> Response {
    let mut ctx = user.base(state, "pools");
    ctx.insert(
        "pools".into(),
        json!(pools.iter().map(crate::api::shapes::pool).collect::<Vec<_>>()),
    );
    ctx.insert("can_manage".into(), json!(user.0.role >= Role::Op));
    ctx.insert("error".into(), json!(error));
    let mut response = render("pools.html", Value::Object(ctx));
    if error.is_some() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

/// `/pools`: slots and their use; Ops and Admins also create, change and delete pools here.
pub async fn pools(State(state): State<WebState>, user: UiUser) -> Response {
    match state.store.list_pools().await {
        Ok(pools) => pools_page(&state, &user, &pools, None),
        Err(err) => fail(err.into()),
    }
}

/// `POST /pools`: create or change a pool (Op).
pub async fn pool_submit(State(state): State<WebState>, user: UiUser, req: axum::extract::Request) -> Response {
    let pairs = match checked_form(&state, &user, Role::Op, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let name = field(&pairs, "name").unwrap_or("").trim().to_string();
    let description = field(&pairs, "description").map(str::trim).filter(|d| !d.is_empty());
    let slots = field(&pairs, "slots").and_then(|s| s.trim().parse::<i64>().ok());
    let outcome = match slots {
        Some(slots) if (0..=1_000_000).contains(&slots) => {
            if description.is_some_and(|d| d.len() > 1000) {
                Err("A description is at most 1000 characters.".to_string())
            } else {
                state
                    .store
                    .put_pool(&name, slots, description, Some(&user.0.username))
                    .await
                    .map_err(|err| err.to_string())
            }
        }
        _ => Err("Slots must be a whole number from 0 to 1000000.".to_string()),
    };
    match outcome {
        Ok(()) => Redirect::to("/pools").into_response(),
        Err(error) => match state.store.list_pools().await {
            Ok(pools) => pools_page(&state, &user, &pools, Some(&error)),
            Err(err) => fail(err.into()),
        },
    }
}

/// `POST /pools/{name}/delete` (Op).
pub async fn pool_delete(
    State(state): State<WebState>,
    user: UiUser,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> Response {
    if let Err(r) = checked_form(&state, &user, Role::Op, req).await {
        return r;
    }
    match state.store.delete_pool(&name, Some(&user.0.username)).await {
        Ok(()) => Redirect::to("/pools").into_response(),
        Err(err) => fail(err.into()),
    }
}

/// `/users` (Admin): who may sign in, with which role.
pub async fn users(State(state): State<WebState>, user: UiUser) -> Response {
    if let Err(r) = user.require(Role::Admin) {
        return r;
    }
    let rows = match state.store.list_users().await {
        Ok(r) => r,
        Err(err) => return fail(err.into()),
    };
    let users: Vec<Value> = rows
        .iter()
        .map(|u| {
            json!({"username": u.username, "role": u.role, "source": u.source, "email": u.email,
                        "last_login_at": when(u.last_login_at)})
        })
        .collect();
    let mut ctx = user.base(&state, "users");
    ctx.insert("users".into(), json!(users));
    render("users.html", Value::Object(ctx))
}

fn token_view(state: &WebState, user: &UiUser, token: Option<String>, headers: &axum::http::HeaderMap) -> Response {
    let origin = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let mut ctx = user.base(state, "token");
    ctx.insert("token".into(), json!(token));
    ctx.insert("hours".into(), json!(state.config.token_ttl_secs / 3600));
    ctx.insert("origin".into(), json!(origin));
    render("token.html", Value::Object(ctx))
}

/// `/token`: a page to create an API token for the signed-in user.
pub async fn token_page(State(state): State<WebState>, user: UiUser, headers: axum::http::HeaderMap) -> Response {
    token_view(&state, &user, None, &headers)
}

/// `POST /token`: creates the token and shows it once.
pub async fn token_submit(State(state): State<WebState>, user: UiUser, req: axum::extract::Request) -> Response {
    let headers = req.headers().clone();
    if let Err(r) = checked_form(&state, &user, Role::Viewer, req).await {
        return r;
    }
    let (token, _) = state
        .keys
        .issue(&user.0.username, user.0.role, "api", state.config.token_ttl_secs);
    let _ = state
        .store
        .audit(
            "token_issued",
            None,
            None,
            Some(&user.0.username),
            Some("api token (page)"),
        )
        .await;
    token_view(&state, &user, Some(token), &headers)
}
