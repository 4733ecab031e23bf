//! `dagctl tasks ...` and `dagctl pools ...`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use chrono::SecondsFormat;
use engine::store::{Change, RunFilter};
use serde_json::{json, Value};

use crate::cmd::dags::find_dag;
use worker::log::TryKey;

use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::{open_store, sync_folder, task_logs};

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
    map_index: i64,
    try_number: Option<i64>,
    follow: bool,
) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let ti = match store.get_ti(dag_id, run_id, task_id, map_index).await {
        Err(engine::Error::NotFound(what)) if map_index == engine::mapping::UNMAPPED => {
            let mapped = store.get_run(dag_id, run_id).await.ok();
            let count = match mapped {
                Some(run) => store.task_tis(run.id, task_id).await?.len(),
                None => 0,
            };
            if count > 0 {
                bail!("task `{task_id}` is mapped into {count} instance(s) in run `{run_id}`: pass --map-index N");
            }
            bail!("{what} not found");
        }
        other => other?,
    };
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
    let logs = task_logs(config, &store);
    let key = TryKey::of(&ti, try_number);
    if !follow && !logs.exists(&key) {
        bail!("no log for try {try_number} at {}", logs.describe(&key));
    }
    let mut source = if follow {
        crate::link::ChangeSource::open(config, &store).await
    } else {
        crate::link::ChangeSource::None
    };
    let mut offset = 0;
    let print_new = |offset: &mut u64| -> Result<()> {
        loop {
            let page = logs
                .read_from(&key, *offset, 4 << 20)
                .map_err(|err| anyhow!("cannot read {}: {err}", logs.describe(&key)))?;
            for line in &page.lines {
                println!("{}", worker::log::parse_line(line).to_text());
            }
            let done = page.next == *offset;
            *offset = page.next;
            if done || page.lines.is_empty() {
                return Ok(());
            }
        }
    };
    loop {
        print_new(&mut offset)?;
        if !follow {
            break;
        }
        let current = store.get_ti(dag_id, run_id, task_id, map_index).await?;
        if current.try_number != try_number || !current.state.is_executing() {
            // One last read for lines written as it ended.
            print_new(&mut offset)?;
            break;
        }
        // New lines or the try's end are told as they happen; the timer is the fallback.
        source
            .wait(
                Duration::from_secs(2),
                Duration::from_millis(300),
                |change| match change {
                    Change::Log(id) => *id == ti.id,
                    change => change.concerns_run(ti.run_pk),
                },
            )
            .await;
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
        .clear_tis(dag_id, &run_id, ids, only_failed, config.user.as_deref())
        .await?;
    println!(
        "cleared {} task(s) of run {run_id} (with every instance of a mapped task): {}",
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
                "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index, "state": ti.state.as_str(),
                "try_number": ti.try_number, "start_date": fmt(ti.start_date), "end_date": fmt(ti.end_date), "message": ti.message, "scheduler_id": ti.scheduler_id, "hostname": ti.hostname, "pid": ti.pid,
            })
        })
        .collect();
    print_rows(
        output,
        &[
            "task_id",
            "map_index",
            "state",
            "try_number",
            "start_date",
            "end_date",
            "message",
        ],
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
        .put_pool(name, slots, description.as_deref(), config.user.as_deref())
        .await?;
    println!("pool `{name}` has {slots} slot(s)");
    Ok(ExitCode::SUCCESS)
}

pub async fn pool_delete(config: &Config, name: &str) -> Result<ExitCode> {
    let store = open_store(config).await?;
    store.delete_pool(name, config.user.as_deref()).await?;
    println!("pool `{name}` deleted");
    Ok(ExitCode::SUCCESS)
}
