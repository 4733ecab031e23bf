//! `/dags/{dag_id}/runs/{run_id}/kpis`: a run's KPI report (the same self-contained page as `dagctl kpi -o
//! html`, computed when opened, reloading itself every 10 s while the run goes on); `/dags/{dag_id}/kpis`: the
//! DAG's KPI trend across runs. Both with links back into the UI.

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};

use super::view::fail;
use super::UiUser;
use crate::WebState;

/// Text made safe for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `html` with a bar of links after `<body>` (and a reload every 10 s when `live`).
fn with_links(html: &str, links: &[(String, &str)], live: bool) -> String {
    let bar: Vec<String> = links
        .iter()
        .map(|(href, text)| format!("<a href=\"{}\">{}</a>", escape(href), escape(text)))
        .collect();
    let mut bar = format!(
        "<nav style=\"margin-bottom:12px\" id=\"kpi-nav\">{}</nav>",
        bar.join(" · ")
    );
    if live {
        bar.push_str("<p id=\"kpi-live\" class=\"note\">The run is going on: this page reloads every 10 s.</p>");
    }
    let html = if live {
        html.replacen("<head>", "<head><meta http-equiv=\"refresh\" content=\"10\">", 1)
    } else {
        html.to_string()
    };
    html.replacen("<body>", &format!("<body>{bar}"), 1)
}

fn path(part: &str) -> String {
    part.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run_kpis(
    State(state): State<WebState>,
    _user: UiUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Response {
    let run = match crate::api::runs::find_run(&state, &dag_id, &run_id).await {
        Ok(run) => run,
        Err(err) => return fail(err),
    };
    let report = match crate::api::kpis::report_of(&state, &dag_id, &run_id).await {
        Ok(report) => report,
        Err(err) => return fail(err),
    };
    let (d, r) = (path(&dag_id), path(&run_id));
    let links = [
        (format!("/dags/{d}/runs/{r}"), "back to the run"),
        (format!("/dags/{d}/kpis"), "KPI trend of the DAG"),
        (format!("/api/v2/dagctl/runs/{d}/{r}/kpis"), "JSON"),
        (format!("/api/v2/dagctl/runs/{d}/{r}/report.html"), "report file"),
    ];
    Html(with_links(&report.html, &links, !run.state.is_finished())).into_response()
}

pub async fn dag_trend(State(state): State<WebState>, _user: UiUser, Path(dag_id): Path<String>) -> Response {
    let trend = match crate::api::kpis::trend_of(&state, &dag_id).await {
        Ok(trend) => trend,
        Err(err) => return fail(err),
    };
    let d = path(&dag_id);
    let links = [
        (format!("/dags/{d}"), "back to the DAG"),
        (format!("/api/v2/dagctl/dags/{d}/kpi-trend"), "JSON"),
    ];
    Html(with_links(&trend.html, &links, false)).into_response()
}
