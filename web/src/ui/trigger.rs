//! Triggering a run: the form (with the DAG's params as the starting conf) and its submission.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{json, Value};

use super::view::fail;
use super::{checked_form, urlencode, UiUser};
use crate::api::runs::{create_manual_run, TriggerBody};
use crate::auth::Role;
use crate::extract::field;
use crate::html::render;
use crate::WebState;

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
