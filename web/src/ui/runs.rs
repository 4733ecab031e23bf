//! The run pages: one run with its tasks and gantt bars, every run, and clearing a run.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use engine::store::{RunFilter, RunRow};
use serde_json::{json, Value};

use super::view::{fail, human_duration, page_number, query_pairs, when};
use super::{checked_form, urlencode, UiUser};
use crate::api::dags::task_order;
use crate::auth::Role;
use crate::extract::field;
use crate::html::render;
use crate::WebState;

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
        tis.sort_by_key(|t| {
            (
                order.iter().position(|o| *o == t.task_id).unwrap_or(usize::MAX),
                t.map_index,
            )
        });
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
                "task_id": t.task_id, "map_index": t.map_index, "state": t.state.as_str(), "try_number": t.try_number, "max_tries": t.max_tries,
                "duration": human_duration(t.start_date, t.end_date), "bar": bar,
            })
        })
        .collect();
    let mut ctx = user.base(&state, "runs");
    let mut view = run_view(&run);
    // The version the run is pinned to, and the commit it came from (a git-synced DAGs folder).
    if let Ok(info) = state.store.version_info(&run.version_hash).await {
        view["version"] = json!({"number": info.number, "commit": info.bundle_version});
    }
    ctx.insert("run".into(), view);
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
