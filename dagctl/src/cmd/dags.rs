//! `dagctl dags ...` and `dagctl trigger`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use chrono::{SecondsFormat, Utc};
use engine::parse::{load_folder, parse_path};
use engine::runs::{RunKind, RunRequest, TriggeredBy};
use engine::state::{RunState, TaskState};
use engine::store::{DagRow, RunFilter, RunRow, Store};
use engine::timetable::{parse_datetime, Timetable};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::{open_store, scheduler_options, scoped_scheduler, sync_folder, task_logs};
use crate::trigger::{RunReader, RunStatus, Trigger, Triggered};
use crate::TriggerArgs;

fn time(value: Option<chrono::DateTime<Utc>>) -> Value {
    value
        .map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

pub fn parse_conf(conf: Option<&str>) -> Result<serde_json::Map<String, Value>> {
    match conf {
        None => Ok(Default::default()),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => bail!("--conf must be a JSON object like '{{\"nodes\": 4}}'"),
            Err(err) => bail!("--conf is not valid JSON: {err}"),
        },
    }
}

/// A DAG by id, with a helpful error when it is missing.
pub async fn find_dag(store: &Store, dag_id: &str) -> Result<DagRow> {
    match store.get_dag(dag_id).await {
        Ok(dag) if dag.is_stale => {
            bail!("dag `{dag_id}` is no longer defined by any file in the DAGs folder")
        }
        Ok(dag) => Ok(dag),
        Err(engine::Error::NotFound(_)) => {
            let errors = store.import_errors().await?;
            match errors.iter().find(|e| e.dag_id.as_deref() == Some(dag_id)) {
                Some(error) => bail!("dag `{dag_id}` failed to load: {}", error.message),
                None => {
                    bail!("dag `{dag_id}` not found; `dagctl dags list` shows the DAGs that loaded")
                }
            }
        }
        Err(err) => Err(err.into()),
    }
}

fn dag_json(dag: &DagRow) -> Value {
    json!({
        "dag_id": dag.dag_id,
        "fileloc": dag.fileloc,
        "is_paused": dag.is_paused,
        "schedule": dag.spec.schedule.summary(),
        "owners": dag.spec.owner,
        "tags": dag.spec.tags.join(","),
        "description": dag.spec.description,
        "next_dagrun": time(dag.next_dagrun),
        "version": dag.version_number,
    })
}

pub async fn list(config: &Config, output: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    sync_folder(config, &store).await?;
    let rows: Vec<Value> = store.list_dags(false).await?.iter().map(dag_json).collect();
    print_rows(
        output,
        &[
            "dag_id",
            "fileloc",
            "owners",
            "is_paused",
            "schedule",
            "next_dagrun",
            "tags",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn show(config: &Config, dag_id: &str, output: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    sync_folder(config, &store).await?;
    let dag = find_dag(&store, dag_id).await?;
    match output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"dag": dag_json(&dag), "spec": dag.spec}))?
        ),
        Format::Table => {
            println!("dag_id:      {}", dag.dag_id);
            println!("file:        {}", dag.fileloc);
            println!("description: {}", dag.spec.description.clone().unwrap_or_default());
            println!(
                "schedule:    {} ({})",
                dag.spec.schedule.summary().unwrap_or_else(|| "manual only".into()),
                dag.spec.timezone
            );
            println!("paused:      {}", dag.is_paused);
            println!("version:     {} ({})", dag.version_number, &dag.version_hash[..12]);
            println!();
            let rows: Vec<Value> = dag
                .spec
                .tasks
                .iter()
                .map(|t| json!({"task_id": t.task_id, "operator": t.operator, "upstream": t.upstream.join(","), "trigger_rule": t.trigger_rule.as_str(), "retries": t.retries, "pool": t.pool}))
                .collect();
            print_rows(
                Format::Table,
                &["task_id", "operator", "upstream", "trigger_rule", "retries", "pool"],
                &rows,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn validate(config: &Config, paths: &[PathBuf], output: Format) -> Result<ExitCode> {
    let registry = crate::runtime::registry(config);
    let targets: Vec<PathBuf> = if paths.is_empty() {
        vec![config.dags_folder.clone()]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for target in &targets {
        if target.is_dir() {
            files.extend(load_folder(target, &config.folder_options, &registry));
        } else if target.is_file() {
            // Inside the DAGs folder, the layers from the folder down apply, as they do when the engine reads it.
            let folder = std::path::absolute(&config.dags_folder).ok();
            let root = target
                .ancestors()
                .skip(1)
                .find(|dir| folder.is_some() && std::path::absolute(dir).ok() == folder)
                .or_else(|| target.parent())
                .map(PathBuf::from)
                .unwrap_or_default();
            if engine::parse::is_defaults_file(target) {
                files.push(engine::parse::check_defaults(
                    &root,
                    target,
                    &config.folder_options.limits,
                    &registry,
                ));
            } else {
                files.push(parse_path(&root, target, &config.folder_options, &registry));
            }
        } else {
            bail!("{} does not exist", target.display());
        }
    }
    let mut rows = Vec::new();
    let mut bad = 0;
    for file in &files {
        for error in &file.errors {
            bad += 1;
            rows.push(
                json!({"file": file.path, "line": error.location.line, "level": "error", "message": error.to_string()}),
            );
        }
        for warning in &file.warnings {
            rows.push(json!({"file": file.path, "line": warning.location.line, "level": "warning", "message": warning.to_string()}));
        }
    }
    let dags: usize = files.iter().map(|f| f.dags.len()).sum();
    match output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"files": files.len(), "dags": dags, "problems": rows}))?
        ),
        Format::Table => {
            for row in &rows {
                let prefix = if row["level"] == "error" { "error" } else { "warning" };
                eprintln!("{prefix}: {}", row["message"].as_str().unwrap_or_default());
            }
            println!("{} file(s), {dags} DAG(s), {bad} error(s)", files.len());
        }
    }
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub async fn import_errors(config: &Config, output: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    sync_folder(config, &store).await?;
    let rows: Vec<Value> = store
        .import_errors()
        .await?
        .iter()
        .map(|e| json!({"filepath": e.filename, "line": e.line, "dag_id": e.dag_id, "task_id": e.task_id, "key": e.key, "error": e.message}))
        .collect();
    print_rows(output, &["filepath", "line", "error"], &rows);
    Ok(ExitCode::SUCCESS)
}

pub async fn pause(config: &Config, dag_id: &str, paused: bool) -> Result<ExitCode> {
    let store = open_store(config).await?;
    sync_folder(config, &store).await?;
    find_dag(&store, dag_id).await?;
    store.set_paused(dag_id, paused, config.user.as_deref()).await?;
    println!("dag `{dag_id}` is {}", if paused { "paused" } else { "unpaused" });
    Ok(ExitCode::SUCCESS)
}

pub async fn trigger(config: &Config, args: TriggerArgs) -> Result<ExitCode> {
    let timeout = args
        .timeout
        .as_deref()
        .map(engine::duration::parse_duration_str)
        .transpose()
        .map_err(|e| anyhow!("--timeout: {e}"))?;
    let request = Trigger::new(config, &args)?;
    let (run, store, source) = match crate::link::trigger(config, &request).await? {
        // The running engine created it; the store is only needed to follow it.
        Some((run, source)) => (run, None, args.wait.then_some(source)),
        None => {
            let store = open_store(config).await?;
            sync_folder(config, &store).await?;
            // Listening before the run exists: nothing it does can be missed.
            let source = match args.wait {
                true => Some(crate::link::ChangeSource::open(config, &store).await),
                false => None,
            };
            (request.create(&store).await?, Some(store), source)
        }
    };
    match args.output {
        Format::Json if !args.wait => println!("{}", serde_json::to_string_pretty(&run.json)?),
        _ => println!("triggered run {} of dag {}", run.run_id, run.dag_id),
    }
    if run.paused {
        eprintln!(
            "warning: dag `{}` is paused: the run starts when you unpause it (dagctl dags unpause {})",
            run.dag_id, run.dag_id
        );
    }
    let Some(source) = source else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut reader = match store {
        Some(store) => RunReader::Store(store),
        None => RunReader::Engine(Box::new(config.clone())),
    };
    let status = wait_for_run(&mut reader, &run, timeout, source).await?;
    if args.output == Format::Json {
        println!("{}", serde_json::to_string_pretty(&status.json)?);
    }
    Ok(if status.state == RunState::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn run_json(run: &RunRow) -> Value {
    json!({
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "state": run.state.as_str(),
        "run_type": run.run_type.as_str(),
        "logical_date": time(run.logical_date),
        "start_date": time(run.start_date),
        "end_date": time(run.end_date),
        "conf": run.conf,
    })
}

/// Waits until a run ends, showing a live line of progress. Returns its final state. The run is read again
/// when `source` tells of a change to it (or when it may have missed one), else every 200 ms without a live
/// source (and every 5 s with one, as a fallback).
pub async fn wait_for_run(
    reader: &mut RunReader,
    run: &Triggered,
    timeout: Option<Duration>,
    mut source: crate::link::ChangeSource,
) -> Result<RunStatus> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    let mut warned = false;
    loop {
        let status = reader.status(run.pk).await?;
        let (state, tis) = (status.state, &status.tis);
        let count = |wanted: &[TaskState]| tis.iter().filter(|(_, s)| wanted.contains(s)).count();
        let done = tis.iter().filter(|(_, s)| s.is_finished()).count();
        let line = format!(
            "{} {}: {}/{} tasks done ({} success, {} failed, {} skipped, {} running, {} up for retry)",
            run.run_id,
            state,
            done,
            tis.len(),
            count(&[TaskState::Success]),
            count(&[TaskState::Failed, TaskState::UpstreamFailed]),
            count(&[TaskState::Skipped]),
            count(&[TaskState::Running, TaskState::Queued, TaskState::Scheduled]),
            count(&[TaskState::UpForRetry]),
        );
        if line != last_line {
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            last_line = line;
        }
        if state.is_finished() {
            if tty {
                eprintln!();
            }
            let failed: Vec<&str> = tis
                .iter()
                .filter(|(_, s)| *s == TaskState::Failed)
                .map(|(t, _)| t.as_str())
                .collect();
            if !failed.is_empty() {
                eprintln!(
                    "failed tasks: {} (see: dagctl tasks logs {} {} TASK)",
                    failed.join(", "),
                    run.dag_id,
                    run.run_id
                );
            }
            return Ok(status);
        }
        if !warned
            && state == RunState::Queued
            && started.elapsed() > Duration::from_secs(5)
            && !reader.scheduler_alive().await?
        {
            eprintln!(
                "{}note: no scheduler is running; start one with `dagctl standalone` or `dagctl scheduler`",
                if tty { "\n" } else { "" }
            );
            warned = true;
        }
        if let Some(limit) = timeout {
            if started.elapsed() > limit {
                bail!(
                    "run {} did not end within {}",
                    run.run_id,
                    engine::duration::format_duration(limit)
                );
            }
        }
        source
            .wait(Duration::from_secs(5), Duration::from_millis(200), |change| {
                change.concerns_run(run.pk)
            })
            .await;
    }
}

/// Runs the given runs in this process with a scheduler scoped to them, printing each task's log as it ends.
async fn run_locally(config: &Config, store: &Store, run_pks: Vec<i64>, print_logs: bool) -> Result<()> {
    let metrics = Arc::new(scheduler::Metrics::default());
    let mut options = scheduler_options(config);
    options.dags_folder = None;
    options.scope = Some(run_pks.clone());
    options.create_scheduled_runs = false;
    options.idle_interval = Duration::from_millis(100);
    let stop_server = CancellationToken::new();
    let (mut scheduler, server) = scoped_scheduler(config, store, options, metrics, stop_server.clone()).await?;
    let mut notices = scheduler.subscribe();
    let logs = task_logs(config, store);
    let printer = tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            if !print_logs {
                continue;
            }
            let instance = if notice.map_index >= 0 {
                format!("[{}]", notice.map_index)
            } else {
                String::new()
            };
            println!(
                "--- {}.{}{instance} try {}: {} ---",
                notice.dag_id, notice.task_id, notice.try_number, notice.state
            );
            let key = worker::log::TryKey::new(
                &notice.dag_id,
                &notice.run_id,
                &notice.task_id,
                notice.map_index,
                notice.try_number,
            );
            // Page by page: a store may return less than the whole log at once.
            let mut offset = 0;
            while let Ok(page) = logs.read_from(&key, offset, 4 << 20) {
                if page.lines.is_empty() {
                    break;
                }
                for line in &page.lines {
                    println!("{}", worker::log::parse_line(line).to_text());
                }
                offset = page.next;
            }
        }
    });
    let shutdown = crate::runtime::cancel_on_ctrl_c();
    let result = scheduler.run(shutdown).await;
    stop_server.cancel();
    let _ = server.await;
    result?;
    let _ = printer.await;
    // Interrupted (Ctrl-C): what did not finish is failed, so nothing stays `running` without a process.
    for pk in run_pks {
        let run = store.get_run_by_pk(pk).await?;
        if run.state.is_finished() {
            continue;
        }
        for ti in store.tis_of_run(pk).await? {
            if ti.state.is_executing() {
                store
                    .mark_ti(
                        &ti.dag_id,
                        &ti.run_id,
                        &ti.task_id,
                        ti.map_index,
                        TaskState::Failed,
                        None,
                    )
                    .await?;
            }
        }
        store.mark_run(&run.dag_id, &run.run_id, RunState::Failed, None).await?;
        eprintln!("run {} was interrupted and is marked failed", run.run_id);
    }
    Ok(())
}

pub async fn test(
    config: &Config,
    dag_id: &str,
    logical_date: Option<String>,
    conf: Option<String>,
) -> Result<ExitCode> {
    let conf = parse_conf(conf.as_deref())?;
    let store = open_store(config).await?;
    sync_folder(config, &store).await?;
    let dag = find_dag(&store, dag_id).await?;
    let logical_date = logical_date
        .map(|text| parse_datetime(&text, &dag.spec.timezone))
        .transpose()
        .map_err(|e| anyhow!("logical date: {e}"))?;
    let request = RunRequest {
        conf,
        user: config.user.clone(),
        ..RunRequest::new(RunKind::Test { logical_date }, TriggeredBy::Test, Utc::now())
    };
    let run = store.create_run(request.new_run(&dag.spec)?).await?;
    println!("testing dag {} with run {}", dag.dag_id, run.run_id);
    run_locally(config, &store, vec![run.id], true).await?;
    let run = store.get_run_by_pk(run.id).await?;
    let mut tis = store.tis_of_run(run.id).await?;
    // In the DAG's order, a mapped task's instances together.
    tis.sort_by_key(|ti| {
        (
            dag.spec.tasks.iter().position(|t| t.task_id == ti.task_id),
            ti.map_index,
        )
    });
    println!("--- run {}: {} ---", run.run_id, run.state);
    for ti in &tis {
        println!(
            "{:<40} {}",
            engine::mapping::instance_name(&ti.task_id, ti.map_index),
            ti.state
        );
    }
    Ok(if run.state == RunState::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn backfill(config: &Config, dag_id: &str, start: &str, end: &str, local: bool) -> Result<ExitCode> {
    let store = open_store(config).await?;
    sync_folder(config, &store).await?;
    let dag = find_dag(&store, dag_id).await?;
    let start = parse_datetime(start, &dag.spec.timezone).map_err(|e| anyhow!("--start-date: {e}"))?;
    let end = parse_datetime(end, &dag.spec.timezone).map_err(|e| anyhow!("--end-date: {e}"))?;
    if end < start {
        bail!("--end-date is before --start-date");
    }
    if matches!(dag.spec.schedule, engine::timetable::Schedule::None) {
        bail!("dag `{dag_id}` has no schedule: backfill needs one (trigger it with a logical date instead)");
    }
    let timetable = Timetable::new(&dag.spec.schedule, &dag.spec.timezone).map_err(|e| anyhow!(e))?;
    let intervals = timetable.intervals_between(start, end, 10_000);
    let mut created = Vec::new();
    for interval in intervals {
        let request = RunRequest {
            user: config.user.clone(),
            ..RunRequest::new(RunKind::Backfill { interval }, TriggeredBy::Backfill, Utc::now())
        };
        let result = store.create_run(request.new_run(&dag.spec)?).await;
        match result {
            Ok(run) => {
                println!("created {}", run.run_id);
                created.push(run.id);
            }
            Err(engine::Error::Conflict(_)) => println!(
                "exists  run for {}",
                interval.start.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            Err(err) => return Err(err.into()),
        }
    }
    println!("{} backfill run(s) created", created.len());
    if !local || created.is_empty() {
        if !created.is_empty() && dag.is_paused {
            eprintln!("warning: dag `{dag_id}` is paused: the scheduler runs these when you unpause it, or rerun with --local");
        }
        return Ok(ExitCode::SUCCESS);
    }
    run_locally(config, &store, created.clone(), false).await?;
    let mut failed = 0;
    for pk in created {
        let run = store.get_run_by_pk(pk).await?;
        println!("{:<50} {}", run.run_id, run.state);
        failed += usize::from(run.state != RunState::Success);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn list_runs(
    config: &Config,
    dag_id: &str,
    state: Option<String>,
    limit: i64,
    output: Format,
) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let states = match state {
        Some(text) => vec![text.parse::<RunState>()?],
        None => vec![],
    };
    store
        .get_dag(dag_id)
        .await
        .map_err(|_| anyhow!("dag `{dag_id}` not found"))?;
    let filter = RunFilter {
        dag_id: Some(dag_id.to_string()),
        states,
        limit,
        descending: true,
        ..Default::default()
    };
    let (runs, _) = store.list_runs(&filter).await?;
    let rows: Vec<Value> = runs.iter().map(run_json).collect();
    print_rows(
        output,
        &[
            "dag_id",
            "run_id",
            "state",
            "run_type",
            "logical_date",
            "start_date",
            "end_date",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}
