//! Where network records live: [`NetworkStore`] is the handful of operations [`crate::lifecycle`] needs,
//! implemented by the engine's [`Store`] (the CLI and the engine process) and by [`ApiNetworks`], the task
//! execution API as seen from a runner (`dagctl tasks run`), which holds no database credentials.
//!
//! Both give the same answers and the same errors: a missing network is [`Error::NotFound`] (`network `x`
//! not found`), a name still in use or an unknown status is [`Error::Rejected`], anything else is
//! [`Error::Store`].
//!
//! The execution API's network endpoints (served by `web/src/execution/networks.rs`; every call carries the
//! try's token, and the try must be executing). `{name}` is one percent-encoded path segment:
//!
//! | call | body | answer |
//! |------|------|--------|
//! | `POST /execution/networks` (claim) | `{name, backend, host, spec, dag_id?, run_id?, task_id?, ttl_seconds?}` | 204; 409 name in use |
//! | `PUT /execution/networks/{name}/nodes` | `{nodes}` | 204; 404 |
//! | `POST /execution/networks/{name}/transition` | `{from: [..], to, message?}` | `{"changed": bool}`; 422 unknown status |
//! | `GET /execution/networks/{name}` | | `NetworkRow`; 404 |
//! | `GET /execution/networks?include_gone=true\|false` | | `[NetworkRow]` |
//! | `GET /execution/networks-past-ttl` | | `[NetworkRow]` |
//! | `POST /execution/networks/{name}/samples` | `{samples: [{node, metric, at, value}]}` | 204; 404 |
//! | `POST /execution/networks/{name}/alerts` | `{alerts: [{node, level, pattern, message, count, first_at, last_at}]}` | 204; 404 |
//! | `GET /execution/networks/{name}/samples?from=&to=&cursor=&skip=&limit=` | | `[NodeSample]`, one page; 404 |
//! | `GET /execution/networks/{name}/alerts` | | `[NodeAlert]`; 404 |
//! | `PUT /execution/kpis` | `{kpis}` | 204: kept for the caller's DAG, run and task |
//! | `GET /execution/kpis/history?limit=N` | | `[{run_id, computed_at, scalars}]`, the caller DAG's other runs |
//!
//! [`KpiStore`] is the same for KPIs: where `chain.log_etl` keeps a run's KPIs and reads its DAG's history.
//!
//! The claim's owner (`dag_id`, `run_id`, `task_id`), when given, must be the calling try's task (403
//! otherwise). Over the API the engine's clock stands for `now`.

use std::future::Future;

use chrono::{DateTime, Utc};
use engine::store::{NetworkRow, NewNetwork, NodeAlert, NodeSample, SamplePage, Store};
use hyper::Method;
use serde::{Deserialize, Serialize};
use worker::client::{ClientError, ExecutionClient};

use crate::error::{Error, Result};

/// The network records [`crate::lifecycle`] reads and writes; mirrors the engine store's network methods.
pub trait NetworkStore: Send + Sync {
    /// Records a new network in status `starting`; a name held by an active network is [`Error::Rejected`].
    fn claim_network(&self, new: &NewNetwork<'_>, now: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;

    /// Replaces the nodes JSON of a network.
    fn set_network_nodes(&self, name: &str, nodes: &str, now: DateTime<Utc>)
        -> impl Future<Output = Result<()>> + Send;

    /// Moves a network to `to` if its status is one of `from`; whether it moved.
    fn transition_network(
        &self,
        name: &str,
        from: &[&str],
        to: &str,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    fn get_network(&self, name: &str) -> impl Future<Output = Result<NetworkRow>> + Send;

    /// Networks by name; with `include_gone` also the removed and failed ones.
    fn list_networks(&self, include_gone: bool) -> impl Future<Output = Result<Vec<NetworkRow>>> + Send;

    /// Running networks whose owning run ended more than their TTL before `now`.
    fn networks_past_ttl(&self, now: DateTime<Utc>) -> impl Future<Output = Result<Vec<NetworkRow>>> + Send;

    /// Whether the task that deployed `row` may still be running (its runner may still be deploying it, even
    /// while the engine restarts). True when it cannot be told.
    fn owner_executing(&self, row: &NetworkRow) -> impl Future<Output = Result<bool>> + Send;

    /// Stores a batch of monitor samples of network `name` (one transaction). Over the API the samples are
    /// tied to the calling try's run and task.
    fn write_samples(&self, name: &str, samples: &[NodeSample]) -> impl Future<Output = Result<()>> + Send;

    /// Adds log alerts of network `name` (counts since the last call). Over the API they are tied to the calling
    /// try's run and task.
    fn write_alerts(&self, name: &str, alerts: &[NodeAlert]) -> impl Future<Output = Result<()>> + Send;

    /// One page of network `page.network`'s samples (see [`Store::samples_page`]).
    fn sample_page(&self, page: &SamplePage<'_>) -> impl Future<Output = Result<Vec<NodeSample>>> + Send;

    /// The alerts of network `name`, most recent first (at most 10,000).
    fn read_alerts(&self, name: &str) -> impl Future<Output = Result<Vec<NodeAlert>>> + Send;
}

/// Where a run's KPIs are kept and its DAG's earlier runs read, for trends.
pub trait KpiStore: Send + Sync {
    /// The headline figures of `dag_id`'s runs other than `run_id`, newest first (at most `limit`).
    fn kpi_history(
        &self,
        dag_id: &str,
        run_id: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<crate::kpi::trend::TrendPoint>>> + Send;

    /// Keeps `kpis` for (`dag_id`, `run_id`, `task_id`); over the API, for the calling try's.
    fn save_kpis(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        kpis: &serde_json::Value,
    ) -> impl Future<Output = Result<()>> + Send;
}

impl KpiStore for Store {
    async fn kpi_history(&self, dag_id: &str, run_id: &str, limit: u32) -> Result<Vec<crate::kpi::trend::TrendPoint>> {
        let rows = Store::dag_kpis(self, dag_id, Some(run_id), limit).await?;
        Ok(crate::kpi::trend::points_of(rows.into_iter().filter_map(|row| {
            let value = serde_json::from_str(&row.kpis).ok()?;
            Some((row.run_id, row.computed_at, value))
        })))
    }

    async fn save_kpis(&self, dag_id: &str, run_id: &str, task_id: &str, kpis: &serde_json::Value) -> Result<()> {
        let row = engine::store::RunKpiRow {
            dag_id: dag_id.to_string(),
            run_id: run_id.to_string(),
            task_id: task_id.to_string(),
            computed_at: Utc::now(),
            kpis: kpis.to_string(),
        };
        Ok(Store::put_run_kpis(self, &row).await?)
    }
}

/// One earlier run in `GET /execution/kpis/history`.
#[derive(Debug, Deserialize)]
struct HistoryItem {
    run_id: String,
    computed_at: DateTime<Utc>,
    scalars: serde_json::Value,
}

impl KpiStore for ApiNetworks {
    async fn kpi_history(
        &self,
        _dag_id: &str,
        _run_id: &str,
        limit: u32,
    ) -> Result<Vec<crate::kpi::trend::TrendPoint>> {
        let items: Vec<HistoryItem> = self
            .0
            .call(Method::GET, &format!("/execution/kpis/history?limit={limit}"), NO_BODY)
            .await
            .map_err(|err| api_error(err, None))?;
        Ok(crate::kpi::trend::points_of(items.into_iter().map(|item| {
            (
                item.run_id,
                item.computed_at,
                serde_json::json!({"scalars": item.scalars}),
            )
        })))
    }

    async fn save_kpis(&self, _dag_id: &str, _run_id: &str, _task_id: &str, kpis: &serde_json::Value) -> Result<()> {
        self.0
            .call::<_, ()>(Method::PUT, "/execution/kpis", Some(&serde_json::json!({"kpis": kpis})))
            .await
            .map_err(|err| api_error(err, None))
    }
}

impl NetworkStore for Store {
    async fn sample_page(&self, page: &SamplePage<'_>) -> Result<Vec<NodeSample>> {
        Store::get_network(self, page.network).await?;
        Ok(Store::samples_page(self, page).await?)
    }

    async fn read_alerts(&self, name: &str) -> Result<Vec<NodeAlert>> {
        Store::get_network(self, name).await?;
        Ok(Store::alerts(self, name, 10_000).await?)
    }

    async fn write_alerts(&self, name: &str, alerts: &[NodeAlert]) -> Result<()> {
        Store::get_network(self, name).await?;
        Store::add_alerts(self, alerts).await?;
        Ok(())
    }

    async fn write_samples(&self, name: &str, samples: &[NodeSample]) -> Result<()> {
        Store::get_network(self, name).await?;
        Store::insert_samples(self, samples).await?;
        Ok(())
    }

    async fn claim_network(&self, new: &NewNetwork<'_>, now: DateTime<Utc>) -> Result<()> {
        Ok(Store::claim_network(self, new, now).await?)
    }

    async fn set_network_nodes(&self, name: &str, nodes: &str, now: DateTime<Utc>) -> Result<()> {
        Ok(Store::set_network_nodes(self, name, nodes, now).await?)
    }

    async fn transition_network(
        &self,
        name: &str,
        from: &[&str],
        to: &str,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        Ok(Store::transition_network(self, name, from, to, message, now).await?)
    }

    async fn get_network(&self, name: &str) -> Result<NetworkRow> {
        Ok(Store::get_network(self, name).await?)
    }

    async fn list_networks(&self, include_gone: bool) -> Result<Vec<NetworkRow>> {
        Ok(Store::list_networks(self, include_gone).await?)
    }

    async fn networks_past_ttl(&self, now: DateTime<Utc>) -> Result<Vec<NetworkRow>> {
        Ok(Store::networks_past_ttl(self, now).await?)
    }

    async fn owner_executing(&self, row: &NetworkRow) -> Result<bool> {
        let (Some(dag_id), Some(run_id), Some(task_id)) = (&row.dag_id, &row.run_id, &row.task_id) else {
            return Ok(false);
        };
        task_executing(self, dag_id, run_id, task_id).await
    }
}

/// Whether an instance of task `task_id` of run `run_id` of `dag_id` is executing (a mapped task's instances
/// share what the task owns).
pub async fn task_executing(store: &Store, dag_id: &str, run_id: &str, task_id: &str) -> Result<bool> {
    let run = match store.get_run(dag_id, run_id).await {
        Ok(run) => run,
        Err(engine::Error::NotFound(_)) => return Ok(false),
        Err(err) => return Err(err.into()),
    };
    Ok(store
        .task_tis(run.id, task_id)
        .await?
        .iter()
        .any(|ti| ti.state.is_executing()))
}

/// Network records through the task execution API, with the running try's token (see the module docs for
/// the endpoints). The `now` arguments are ignored: the engine uses its own clock.
#[derive(Debug, Clone)]
pub struct ApiNetworks(pub ExecutionClient);

/// Body of `POST /execution/networks`.
#[derive(Debug, Serialize)]
struct ClaimBody<'a> {
    name: &'a str,
    backend: &'a str,
    host: &'a str,
    /// The network spec, JSON text.
    spec: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dag_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<i64>,
}

/// Body of `PUT /execution/networks/{name}/nodes`.
#[derive(Debug, Serialize)]
struct NodesBody<'a> {
    /// Nodes JSON text written by the backend.
    nodes: &'a str,
}

/// Body of `POST /execution/networks/{name}/transition`.
#[derive(Debug, Serialize)]
struct TransitionBody<'a> {
    from: &'a [&'a str],
    to: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// Answer of `POST /execution/networks/{name}/transition`.
#[derive(Debug, Deserialize)]
struct TransitionAnswer {
    changed: bool,
}

/// One sample in `POST /execution/networks/{name}/samples`.
#[derive(Debug, Serialize)]
struct SampleOut<'a> {
    node: &'a str,
    metric: &'a str,
    at: DateTime<Utc>,
    value: f64,
}

/// Body of `POST /execution/networks/{name}/samples`.
#[derive(Debug, Serialize)]
struct SamplesBody<'a> {
    samples: Vec<SampleOut<'a>>,
}

/// One alert in `POST /execution/networks/{name}/alerts`.
#[derive(Debug, Serialize)]
struct AlertOut<'a> {
    node: &'a str,
    level: &'a str,
    pattern: &'a str,
    message: &'a str,
    count: i64,
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
}

/// Body of `POST /execution/networks/{name}/alerts`.
#[derive(Debug, Serialize)]
struct AlertsBody<'a> {
    alerts: Vec<AlertOut<'a>>,
}

/// No body.
const NO_BODY: Option<&()> = None;

/// `/execution/networks/{name}` with the name as one percent-encoded segment.
fn network_path(name: &str) -> String {
    let mut path = String::from("/execution/networks/");
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path
}

/// The engine's answer as the error [`Store`] would have given; `name` is the network the call is about.
pub(crate) fn api_error(err: ClientError, name: Option<&str>) -> Error {
    match err {
        // The store says `… not found`; any other 404 (`Not Found`, or none) is a route this engine lacks.
        ClientError::Refused { status: 404, detail } if detail.ends_with(" not found") => Error::NotFound(match name {
            Some(name) => format!("network `{name}`"),
            None => detail.strip_suffix(" not found").unwrap_or(&detail).to_string(),
        }),
        ClientError::Refused {
            status: 400 | 409 | 422,
            detail,
        } => Error::Rejected(readable_detail(&detail)),
        other => Error::Store(other.to_string()),
    }
}

/// A validation error's messages (`[{loc, msg, type}]`), or the detail as it is.
fn readable_detail(detail: &str) -> String {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(detail) else {
        return detail.to_string();
    };
    let messages: Vec<&str> = items
        .iter()
        .filter_map(|item| item.get("msg").and_then(serde_json::Value::as_str))
        .collect();
    if messages.is_empty() {
        detail.to_string()
    } else {
        messages.join("; ")
    }
}

impl NetworkStore for ApiNetworks {
    async fn claim_network(&self, new: &NewNetwork<'_>, _now: DateTime<Utc>) -> Result<()> {
        let body = ClaimBody {
            name: new.name,
            backend: new.backend,
            host: new.host,
            spec: new.spec,
            dag_id: new.dag_id,
            run_id: new.run_id,
            task_id: new.task_id,
            ttl_seconds: new.ttl_seconds,
        };
        self.0
            .call::<_, ()>(Method::POST, "/execution/networks", Some(&body))
            .await
            .map_err(|err| api_error(err, Some(new.name)))
    }

    async fn set_network_nodes(&self, name: &str, nodes: &str, _now: DateTime<Utc>) -> Result<()> {
        let path = format!("{}/nodes", network_path(name));
        self.0
            .call::<_, ()>(Method::PUT, &path, Some(&NodesBody { nodes }))
            .await
            .map_err(|err| api_error(err, Some(name)))
    }

    async fn transition_network(
        &self,
        name: &str,
        from: &[&str],
        to: &str,
        message: Option<&str>,
        _now: DateTime<Utc>,
    ) -> Result<bool> {
        let path = format!("{}/transition", network_path(name));
        let body = TransitionBody { from, to, message };
        let answer: TransitionAnswer = self
            .0
            .call(Method::POST, &path, Some(&body))
            .await
            .map_err(|err| api_error(err, Some(name)))?;
        Ok(answer.changed)
    }

    async fn get_network(&self, name: &str) -> Result<NetworkRow> {
        self.0
            .call(Method::GET, &network_path(name), NO_BODY)
            .await
            .map_err(|err| api_error(err, Some(name)))
    }

    async fn list_networks(&self, include_gone: bool) -> Result<Vec<NetworkRow>> {
        let path = format!("/execution/networks?include_gone={include_gone}");
        self.0
            .call(Method::GET, &path, NO_BODY)
            .await
            .map_err(|err| api_error(err, None))
    }

    async fn networks_past_ttl(&self, _now: DateTime<Utc>) -> Result<Vec<NetworkRow>> {
        self.0
            .call(Method::GET, "/execution/networks-past-ttl", NO_BODY)
            .await
            .map_err(|err| api_error(err, None))
    }

    async fn write_samples(&self, name: &str, samples: &[NodeSample]) -> Result<()> {
        let path = format!("{}/samples", network_path(name));
        let body = SamplesBody {
            samples: samples
                .iter()
                .map(|s| SampleOut {
                    node: &s.node,
                    metric: &s.metric,
                    at: s.at,
                    value: s.value,
                })
                .collect(),
        };
        self.0
            .call::<_, ()>(Method::POST, &path, Some(&body))
            .await
            .map_err(|err| api_error(err, Some(name)))
    }

    async fn write_alerts(&self, name: &str, alerts: &[NodeAlert]) -> Result<()> {
        let path = format!("{}/alerts", network_path(name));
        let body = AlertsBody {
            alerts: alerts
                .iter()
                .map(|a| AlertOut {
                    node: &a.node,
                    level: &a.level,
                    pattern: &a.pattern,
                    message: &a.message,
                    count: a.count,
                    first_at: a.first_at,
                    last_at: a.last_at,
                })
                .collect(),
        };
        self.0
            .call::<_, ()>(Method::POST, &path, Some(&body))
            .await
            .map_err(|err| api_error(err, Some(name)))
    }

    async fn sample_page(&self, page: &SamplePage<'_>) -> Result<Vec<NodeSample>> {
        let time = |t: DateTime<Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .replace('+', "%2B")
        };
        let mut path = format!(
            "{}/samples?from={}&to={}&skip={}&limit={}",
            network_path(page.network),
            time(page.from),
            time(page.to),
            page.skip,
            page.limit
        );
        if let Some(cursor) = page.cursor {
            path.push_str(&format!("&cursor={}", time(cursor)));
        }
        self.0
            .call(Method::GET, &path, NO_BODY)
            .await
            .map_err(|err| api_error(err, Some(page.network)))
    }

    async fn read_alerts(&self, name: &str) -> Result<Vec<NodeAlert>> {
        let path = format!("{}/alerts", network_path(name));
        self.0
            .call(Method::GET, &path, NO_BODY)
            .await
            .map_err(|err| api_error(err, Some(name)))
    }

    /// A runner cannot see other tries' states: assume the owner may be running.
    async fn owner_executing(&self, _row: &NetworkRow) -> Result<bool> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use worker::client::RetryPolicy;

    use super::*;

    /// A server that answers every request with `status` and `body`, and records `METHOD path body`.
    async fn canned(status: u16, body: &'static str) -> (ApiNetworks, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let request = loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if rest.len() >= length {
                        let line = head.lines().next().unwrap_or_default();
                        let mut parts = line.split(' ');
                        let method = parts.next().unwrap_or_default();
                        let path = parts.next().unwrap_or_default();
                        break Some(format!("{method} {path} {rest}").trim_end().to_string());
                    }
                };
                let Some(request) = request else { continue };
                record.lock().unwrap().push(request);
                let reason = if status < 300 { "OK" } else { "Refused" };
                let answer = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        let retry = RetryPolicy {
            budget: Duration::from_millis(200),
            report_budget: Duration::from_millis(200),
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        let client = ExecutionClient::new(&format!("http://{address}"), "token", retry).unwrap();
        (ApiNetworks(client), seen)
    }

    fn new_network(name: &str) -> NewNetwork<'_> {
        NewNetwork {
            name,
            backend: "local",
            host: "here",
            spec: "{}",
            dag_id: Some("d"),
            run_id: Some("r"),
            task_id: Some("deploy"),
            ttl_seconds: None,
        }
    }

    #[tokio::test]
    async fn a_missing_network_is_not_found_like_the_store_says() {
        let (api, seen) = canned(404, r#"{"detail":"network `a b` not found"}"#).await;
        let err = api.get_network("a b").await.unwrap_err();
        assert_eq!(err, Error::NotFound("network `a b`".into()));
        assert_eq!(err.to_string(), "network `a b` not found");
        let err = api.set_network_nodes("a b", "[]", Utc::now()).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0], "GET /execution/networks/a%20b");
        assert_eq!(seen[1], r#"PUT /execution/networks/a%20b/nodes {"nodes":"[]"}"#);
    }

    #[tokio::test]
    async fn a_route_the_engine_lacks_is_not_a_missing_network() {
        for body in ["", r#"{"detail":"Not Found"}"#] {
            let (api, _) = canned(404, body).await;
            let err = api.get_network("a").await.unwrap_err();
            assert!(matches!(err, Error::Store(ref m) if m.contains("404")), "{err}");
        }
    }

    #[tokio::test]
    async fn a_name_in_use_is_rejected_with_the_store_message() {
        let message = "network `a` already exists and is running; tear it down first (`dagctl net down a`)";
        let (api, seen) = canned(
            409,
            r#"{"detail":"network `a` already exists and is running; tear it down first (`dagctl net down a`)"}"#,
        )
        .await;
        let err = api.claim_network(&new_network("a"), Utc::now()).await.unwrap_err();
        assert_eq!(err, Error::Rejected(message.into()));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen[0],
            r#"POST /execution/networks {"name":"a","backend":"local","host":"here","spec":"{}","dag_id":"d","run_id":"r","task_id":"deploy"}"#
        );
    }

    #[tokio::test]
    async fn an_unknown_status_is_rejected() {
        let (api, _) = canned(
            422,
            r#"{"detail":[{"loc":["body","to"],"msg":"unknown network status `nope`","type":"enum"}]}"#,
        )
        .await;
        let err = api
            .transition_network("a", &["running"], "nope", None, Utc::now())
            .await
            .unwrap_err();
        assert_eq!(err, Error::Rejected("unknown network status `nope`".into()));
    }

    #[tokio::test]
    async fn a_refused_token_is_a_store_error() {
        let (api, _) = canned(403, r#"{"detail":"try 1 of d.t has ended (state success)"}"#).await;
        let err = api.list_networks(true).await.unwrap_err();
        assert!(
            matches!(err, Error::Store(ref m) if m.contains("403") && m.contains("has ended")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn answers_decode() {
        let (api, seen) = canned(200, r#"{"changed":true}"#).await;
        assert!(api
            .transition_network("a", &["starting"], "failed", Some("boom"), Utc::now())
            .await
            .unwrap());
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen[0],
            r#"POST /execution/networks/a/transition {"from":["starting"],"to":"failed","message":"boom"}"#
        );
        let (api, _) = canned(204, "").await;
        api.claim_network(&new_network("a"), Utc::now()).await.unwrap();
        let (api, seen) = canned(200, "[]").await;
        assert!(api.list_networks(false).await.unwrap().is_empty());
        assert!(api.networks_past_ttl(Utc::now()).await.unwrap().is_empty());
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                "GET /execution/networks?include_gone=false",
                "GET /execution/networks-past-ttl"
            ]
        );
    }
}
