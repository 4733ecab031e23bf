//! Finding what a run produced and feeding it to an [`Etl`]: its load tests' records files (named by their
//! XCom), its network (deployed by the run, or named by a monitor's XCom), that network's samples in the run's
//! time (paged), and its alerts. The same code runs in `dagctl kpi` (over the store) and in `chain.log_etl`
//! (over the task execution API).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use engine::store::SamplePage;
use serde_json::Value;

use super::{Etl, Kpis, Options, RunInfo};
use crate::registry::NetworkStore;

/// Samples per page.
const PAGE: u32 = 10_000;
/// Pages read at most (a hundred million samples).
const MAX_PAGES: u32 = 10_000;

/// What was read, besides the KPIs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    pub samples: u64,
    /// Node log lines read from CloudWatch Logs.
    pub log_lines: u64,
    pub records_files: Vec<String>,
}

/// The network of a run: the newest it deployed, else the one a monitor task of it watched.
async fn network_of(
    store: &impl NetworkStore,
    run: &RunInfo,
    xcoms: &HashMap<(String, String), Value>,
) -> Result<Option<(String, Vec<String>, DateTime<Utc>)>, String> {
    let rows = store.list_networks(true).await.map_err(|e| e.to_string())?;
    let mut owned: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.dag_id.as_deref() == Some(run.dag_id.as_str()) && r.run_id.as_deref() == Some(run.run_id.as_str())
        })
        .collect();
    owned.sort_by_key(|r| r.created_at);
    let row = match owned.last() {
        Some(row) => Some(*row),
        None => {
            let watched = xcoms
                .iter()
                .filter(|((_, key), _)| key == "return_value")
                .find_map(|(_, v)| v.get("readings").and(v.get("network")).and_then(Value::as_str));
            watched.and_then(|name| rows.iter().find(|r| r.name == name))
        }
    };
    Ok(row.map(|row| {
        let created = row.created_at;
        let nodes = serde_json::from_str::<Value>(&row.nodes)
            .ok()
            .and_then(|v| {
                v.as_array().map(|nodes| {
                    nodes
                        .iter()
                        .filter_map(|n| n.get("name").and_then(Value::as_str).map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default();
        (row.name.clone(), nodes, created)
    }))
}

/// Computes the KPIs of `run` from its XComs (`(task, key) -> value`), the records files they name, and its
/// network's samples and alerts in `store`, from the run's start (or the network's making) to its end (or now).
pub async fn gather(
    store: &impl NetworkStore,
    run: RunInfo,
    xcoms: &HashMap<(String, String), Value>,
    options: &Options,
) -> Result<(Kpis, Gathered), String> {
    let mut gathered = Gathered::default();
    let network = network_of(store, &run, xcoms).await?;
    let name = network.as_ref().map(|n| n.0.clone());
    let created = network.as_ref().map(|n| n.2);
    let nodes = network.map(|n| n.1).unwrap_or_default();
    let mut etl = Etl::new(run.clone(), name.clone(), nodes);
    let mut loads: Vec<(&String, &Value)> = xcoms
        .iter()
        .filter(|((_, key), value)| key == "return_value" && value.get("records_file").is_some())
        .map(|((task, _), value)| (task, value))
        .collect();
    loads.sort_by_key(|(task, _)| *task);
    for (task, value) in loads {
        match value["records_file"].as_str() {
            Some(path) => {
                gathered.records_files.push(path.to_string());
                etl.add_records(Path::new(path), Some(task.clone()));
            }
            None => etl.add_missing(&format!("load {task}"), "the load test kept no records file"),
        }
    }
    // From the run's start; for a run still going (a task's view), from when its network was made.
    let from = run
        .start
        .or(created)
        .unwrap_or_else(|| Utc::now() - chrono::Duration::days(1));
    let to = run.end.unwrap_or_else(Utc::now) + chrono::Duration::seconds(1);
    if let Some(name) = &name {
        gathered.samples = read_samples(store, name, from, to, &mut etl).await?;
        match &options.cloudwatch {
            Some(settings) => {
                etl.logs_from(&format!("cloudwatch {}", settings.log_group(name)));
                gathered.log_lines = super::cloudwatch::read_logs(settings, name, from, to, |node, at, line| {
                    etl.add_log_line(node, at, line)
                })
                .await?;
            }
            None => {
                let alerts = store.read_alerts(name).await.map_err(|e| e.to_string())?;
                etl.add_alerts(alerts.into_iter().filter(|a| {
                    a.run_id.as_deref() == Some(run.run_id.as_str()) || (a.last_at >= from && a.first_at <= to)
                }));
            }
        }
    }
    let mut kpis = etl.finish(options);
    kpis.resilience = super::resilience::phases(xcoms, kpis.charts.nodes.get("head"), &kpis.loads);
    Ok((kpis, gathered))
}

async fn read_samples(
    store: &impl NetworkStore,
    network: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    etl: &mut Etl,
) -> Result<u64, String> {
    let mut page = SamplePage {
        network,
        from,
        to,
        cursor: None,
        skip: 0,
        limit: PAGE,
    };
    let mut count = 0u64;
    for _ in 0..MAX_PAGES {
        let samples = store.sample_page(&page).await.map_err(|e| e.to_string())?;
        for s in &samples {
            etl.add_sample(&s.node, &s.metric, s.at, s.value);
        }
        count += samples.len() as u64;
        if !page.advance(&samples) {
            break;
        }
    }
    Ok(count)
}
