//! `dagctl tasks ...` and `dagctl pools ...`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use chrono::SecondsFormat;
use engine::store::RunFilter;
use serde_json::{json, Value};

use crate::cmd::dags::find_dag;
use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::{open_store, sync_folder};

pub async fn list(config: &Config, dag_id: &str, output: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    sync_folder(config, &store).await?;
    let dag = find_dag(&store, dag_id).await?;
    match output {
        Format::Table => {
            for task in &dag.spec.tasks {
                println!("{}", task.task_id);
            }
        }
        Format::Json => {
            let rows: Vec<Value> = dag
                .spec
                .tasks
                .iter()
                .map(|t| json!({"task_id": t.task_id, "operator": t.operator, "upstream": t.upstream}))
                .collect();
            print_rows(Format::Json, &[], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn logs(
    config: &Config,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: Option<i64>,
    follow: bool,
) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let ti = store.get_ti(dag_id, run_id, task_id).await?;
    let try_number = try_number.unwrap_or(ti.try_number);
    if try_number < 1 {
        bail!(
            "task `{task_id}` has not run yet in run `{run_id}` (state {})",
            ti.state
        );
    }
    if try_number > ti.try_number {
        bail!(
            "task `{task_id}` has made {} tries; there is no try {try_number}",
            ti.try_number
        );
    }
    let path = worker::log::try_log_path(&config.logs_dir(), dag_id, run_id, task_id, try_number);
    let mut printed = 0;
    loop {
        match worker::log::read_log(&path) {
            Ok(lines) => {
                for line in lines.iter().skip(printed) {
                    println!("{}", line.to_text());
                }
                printed = lines.len();
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !follow => {
                bail!("no log for try {try_number} at {}", path.display())
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(anyhow!("cannot read {}: {err}", path.display())),
        }
        if !follow {
            break;
        }
        let current = store.get_ti(dag_id, run_id, task_id).await?;
        if current.try_number != try_number || !current.state.is_executing() {
            // One last read for lines written as it ended.
            if let Ok(lines) = worker::log::read_log(&path) {
                for line in lines.iter().skip(printed) {
                    println!("{}", line.to_text());
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn clear(
    config: &Config,
    dag_id: &str,
    run_id: Option<String>,
    task_ids: Vec<String>,
    only_failed: bool,
) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let run_id = match run_id {
        Some(run_id) => run_id,
        None => {
            let filter = RunFilter {
                dag_id: Some(dag_id.to_string()),
                limit: 1,
                descending: true,
                ..Default::default()
            };
            let (runs, _) = store.list_runs(&filter).await?;
            runs.into_iter()
                .next()
                .map(|r| r.run_id)
                .ok_or_else(|| anyhow!("dag `{dag_id}` has no runs to clear"))?
        }
    };
    let ids = if task_ids.is_empty() {
        None
    } else {
        Some(task_ids.as_slice())
    };
    let cleared = store
        .clear_tis(dag_id, &run_id, ids, only_failed, std::env::var("USER").ok().as_deref())
        .await?;
    println!(
        "cleared {} task instance(s) of run {run_id}: {}",
        cleared.len(),
        cleared.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn states(config: &Config, dag_id: &str, run_id: &str, output: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let run = store.get_run(dag_id, run_id).await?;
    let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    let rows: Vec<Value> = store
        .tis_of_run(run.id)
        .await?
        .iter()
        .map(|ti| {
            json!({
                "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "state": ti.state.as_str(),
                "try_number": ti.try_number, "start_date": fmt(ti.start_date), "end_date": fmt(ti.end_date), "message": ti.message, "scheduler_id": ti.scheduler_id, "hostname": ti.hostname, "pid": ti.pid,
            })
        })
        .collect();
    print_rows(
        output,
        &["task_id", "state", "try_number", "start_date", "end_date", "message"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn pools(config: &Config, output: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let rows: Vec<Value> = store
        .list_pools()
        .await?
        .iter()
        .map(|p| json!({"pool": p.name, "slots": p.slots, "running": p.running_slots, "queued": p.queued_slots, "open": p.open_slots(), "description": p.description}))
        .collect();
    print_rows(
        output,
        &["pool", "slots", "running", "queued", "open", "description"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn pool_set(config: &Config, name: &str, slots: i64, description: Option<String>) -> Result<ExitCode> {
    let store = open_store(config).await?;
    store
        .put_pool(
            name,
            slots,
            description.as_deref(),
            std::env::var("USER").ok().as_deref(),
        )
        .await?;
    println!("pool `{name}` has {slots} slot(s)");
    Ok(ExitCode::SUCCESS)
}

pub async fn pool_delete(config: &Config, name: &str) -> Result<ExitCode> {
    let store = open_store(config).await?;
    store.delete_pool(name, std::env::var("USER").ok().as_deref()).await?;
    println!("pool `{name}` deleted");
    Ok(ExitCode::SUCCESS)
}
