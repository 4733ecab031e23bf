//! The DAG pages: the list of DAGs with their recent runs, one DAG's grid or graph, and pausing.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use engine::state::TaskState;
use engine::store::RunFilter;
use serde_json::{json, Value};

use super::view::{fail, page_number, query_pairs, when};
use super::{checked_form, UiUser};
use crate::api::dags::task_order;
use crate::auth::Role;
use crate::extract::field;
use crate::html::render;
use crate::session::safe_next;
use crate::WebState;

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
               "schedule": dag.spec.schedule.summary(), "owner": dag.spec.owner, "fileloc": dag.fileloc,
               "version": dag.version_number, "commit": dag.bundle_version}),
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
    // Each task's state per run; a mapped task's is its instances' summary, with their count beside it.
    let mut by_cell: HashMap<(i64, &str), Vec<TaskState>> = HashMap::new();
    for ti in &tis {
        by_cell
            .entry((ti.run_pk, ti.task_id.as_str()))
            .or_default()
            .push(ti.state);
    }
    let mut states: HashMap<i64, serde_json::Map<String, Value>> = HashMap::new();
    let mut mapped: HashMap<i64, serde_json::Map<String, Value>> = HashMap::new();
    for ((run_pk, task_id), cell) in by_cell {
        let count = cell.iter().filter(|s| **s != TaskState::Removed).count();
        let summary = engine::mapping::summary_state(cell).unwrap_or(TaskState::None);
        let s = if summary == TaskState::None {
            Value::Null
        } else {
            json!(summary.as_str())
        };
        states.entry(run_pk).or_default().insert(task_id.to_string(), s);
        if dag.spec.task(task_id).is_some_and(|t| t.is_mapped()) {
            mapped
                .entry(run_pk)
                .or_default()
                .insert(task_id.to_string(), json!(count));
        }
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
            .map(|r| json!({"run_id": r.run_id, "state": r.state.as_str(), "states": states.remove(&r.id).unwrap_or_default(), "mapped": mapped.remove(&r.id).unwrap_or_default()}))
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
        Ok(()) => Redirect::to(&safe_next(Some(&back))).into_response(),
        Err(err) => fail(err.into()),
    }
}
