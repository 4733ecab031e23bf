//! `/networks/{name}`: one network, its nodes, live charts of what the monitor stored (uPlot, compiled in) and
//! its log alerts. The page's script (`/static/network.js`) polls the REST API with the session.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::view::fail;
use super::UiUser;
use crate::html::render;
use crate::WebState;

/// The charts of the page: (metric, title, unit).
const CHARTS: &[(&str, &str, &str)] = &[
    ("head", "Head block", ""),
    ("peers", "Peers", ""),
    ("txpool_pending", "Pending transactions", ""),
    ("block_time_seconds", "Block time", "s"),
    ("block_import_ms", "Block import (median)", "ms"),
    ("block_propagation_ms", "Block propagation (newHeads)", "ms"),
    ("cpu_percent", "CPU", "% of a core"),
    ("rss_bytes", "Memory (RSS)", "bytes"),
    ("disk_write_bytes_per_second", "Disk writes", "bytes/s"),
    ("net_in_bytes_per_second", "Network in (p2p)", "bytes/s"),
    ("net_out_bytes_per_second", "Network out (p2p)", "bytes/s"),
];

pub async fn network(State(state): State<WebState>, user: UiUser, Path(name): Path<String>) -> Response {
    let row = match state.store.get_network(&name).await {
        Ok(row) => row,
        Err(err) => return fail(err.into()),
    };
    let spec: Value = serde_json::from_str(&row.spec).unwrap_or(Value::Null);
    let record: Value = serde_json::from_str(&row.nodes).unwrap_or(Value::Null);
    let nodes: Vec<Value> = record
        .get("nodes")
        .and_then(Value::as_array)
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| json!({"name": n.get("name"), "role": n.get("role"), "rpc": n.get("rpc")}))
                .collect()
        })
        .unwrap_or_default();
    let mut ctx = user.base(&state, "networks");
    ctx.insert(
        "network".into(),
        json!({
            "name": row.name, "status": row.status, "backend": row.backend, "host": row.host,
            "client": spec.get("client"), "consensus": spec.get("consensus"), "nodes": nodes,
            "dag_id": row.dag_id, "run_id": row.run_id,
        }),
    );
    ctx.insert(
        "charts".into(),
        json!(CHARTS
            .iter()
            .map(|(metric, title, unit)| json!({"metric": metric, "title": title, "unit": unit}))
            .collect::<Vec<_>>()),
    );
    render("network.html", Value::Object(ctx))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/network.js"),
    )
}

pub async fn uplot_script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/vendor/uplot/uPlot.iife.min.js"),
    )
}

pub async fn uplot_style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/vendor/uplot/uPlot.min.css"),
    )
}
