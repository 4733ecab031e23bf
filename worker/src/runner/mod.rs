//! The task runner behind `dagctl tasks run DAG RUN TASK [--try N]`: one try of any operator, in its own
//! process, talking to the engine only through the task execution API with a token scoped to that try.
//!
//! It fetches its context (recording its pid and host), renders the task's templates, runs the operator
//! within `execution_timeout`, ships log lines in batches, heartbeats (and stops the try when the engine says
//! it is no longer current: cleared, marked, terminated), and reports the outcome with its XCom. It keeps
//! running while the engine restarts: every call is retried with backoff for a bounded time.

pub mod group;
mod render;
mod sink;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::state::Outcome;
use hyper::Method;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use sink::TaskLog;

use crate::client::{ClientError, ExecutionClient, RetryPolicy};
use crate::execution::{FinishRequest, FinishResponse, LogBatch, StartRequest, TaskContext, XcomPush};
use crate::operator::{OperatorContext, OperatorResult, Operators};

/// How often buffered log lines are shipped.
const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How long an operator gets to clean up after it was cancelled.
const CLEANUP_GRACE: Duration = Duration::from_secs(60);

/// What `dagctl tasks run` was asked.
#[derive(Debug, Clone)]
pub struct RunnerArgs {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// The try to run; `None`: the one the token is for.
    pub try_number: Option<i64>,
    /// The instance of a mapped task (-1: the task is not mapped).
    pub map_index: i64,
    pub api_url: String,
    pub token: String,
    pub hostname: String,
    pub retry: RetryPolicy,
    /// Print each log line on standard output too (in a pod: what `kubectl logs` shows).
    pub log_to_stdout: bool,
}

/// Exit codes of the runner.
pub mod exit {
    /// The try succeeded or was skipped.
    pub const OK: i32 = 0;
    /// The try failed (its state is recorded).
    pub const FAILED: i32 = 1;
    /// The engine refused to start the try, or could not be reached.
    pub const NOT_STARTED: i32 = 2;
    /// The try ran but its end could not be reported (the engine fails it as lost).
    pub const NOT_REPORTED: i32 = 3;
    /// The try was stopped from outside (cleared, marked, terminated): nothing to report.
    pub const STOPPED: i32 = 4;
}

/// Runs one try and returns the process's exit code. Problems that stop it are printed as one line on stderr.
pub async fn run(args: RunnerArgs, operators: Operators) -> i32 {
    group::lead_own_group();
    let client = match ExecutionClient::new(&args.api_url, &args.token, args.retry) {
        Ok(client) => client,
        Err(err) => {
            eprintln!("dagctl tasks run: {err}");
            return exit::NOT_STARTED;
        }
    };
    let start = StartRequest {
        dag_id: args.dag_id.clone(),
        run_id: args.run_id.clone(),
        task_id: args.task_id.clone(),
        try_number: args.try_number,
        map_index: args.map_index,
        hostname: args.hostname.clone(),
        pid: std::process::id(),
    };
    let ctx: TaskContext = match client
        .call(Method::POST, "/execution/task-instances/run", Some(&start))
        .await
    {
        Ok(ctx) => ctx,
        Err(err) => {
            eprintln!(
                "dagctl tasks run: cannot start {}.{} in run {}: {err}",
                args.dag_id, args.task_id, args.run_id
            );
            return exit::NOT_STARTED;
        }
    };
    let span = tracing::info_span!("try", dag_id = %ctx.dag_id, run_id = %ctx.run_id, task_id = %ctx.task_id, map_index = ctx.map_index, try_number = ctx.try_number);
    run_try(ctx, args, client, operators).instrument(span).await
}

async fn run_try(ctx: TaskContext, args: RunnerArgs, client: ExecutionClient, operators: Operators) -> i32 {
    // Values of conf and params under names like `password` or `token` never reach the log as written.
    let mut secrets = sink::sensitive_values(&ctx.conf);
    secrets.extend(sink::sensitive_values(&ctx.params));
    let log = TaskLog::masking(secrets).echoing(args.log_to_stdout);
    let instance = if ctx.map_index >= 0 {
        format!(" [map_index {}]", ctx.map_index)
    } else {
        String::new()
    };
    log.info(&format!(
        "starting try {} of {} for {}.{}{instance} in run {} on {} (runner pid {})",
        ctx.try_number,
        ctx.max_tries + 1,
        ctx.dag_id,
        ctx.task_id,
        ctx.run_id,
        args.hostname,
        std::process::id()
    ));
    let base = format!("/execution/task-instances/{}", ctx.ti_id);
    let cancel = CancellationToken::new();
    // Set when the engine says the try is no longer current: then nothing is reported.
    let gone: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let stop_background = CancellationToken::new();
    let terminated = watch_sigterm(cancel.clone(), stop_background.clone());
    let heartbeat = tokio::spawn(heartbeat(
        client.clone(),
        format!("{base}/heartbeat"),
        Duration::from_millis(ctx.heartbeat_interval_ms.max(100)),
        cancel.clone(),
        gone.clone(),
        stop_background.clone(),
    ));
    let flusher = tokio::spawn(flush_logs(
        client.clone(),
        format!("{base}/logs"),
        log.clone(),
        cancel.clone(),
        gone.clone(),
        stop_background.clone(),
    ));

    let result = execute(&ctx, &client, &operators, &log, &cancel).await;
    stop_background.cancel();
    let _ = heartbeat.await;
    let _ = flusher.await;

    if let Some(why) = gone.lock().ok().and_then(|g| g.clone()) {
        eprintln!("dagctl tasks run: try {} stopped: {why}", ctx.try_number);
        return exit::STOPPED;
    }
    let result = match (result, terminated.load(std::sync::atomic::Ordering::SeqCst)) {
        (OperatorResult::Success(_), true) | (OperatorResult::Failed(_), true) => {
            OperatorResult::Failed("terminated (SIGTERM)".into())
        }
        (result, _) => result,
    };
    let (state, message, xcom) = match result {
        OperatorResult::Success(value) => (Outcome::Success, None, value.filter(|_| ctx.task.do_xcom_push)),
        OperatorResult::Skipped(message) => (Outcome::Skipped, Some(message), None),
        OperatorResult::Failed(message) => (Outcome::Failed, Some(message), None),
    };
    match (&state, &message) {
        (Outcome::Success, _) => log.info("task succeeded"),
        (Outcome::Skipped, Some(message)) => log.info(&format!("task skipped: {message}")),
        (Outcome::Skipped, None) => log.info("task skipped"),
        (Outcome::Failed, Some(message)) => log.error(&format!("task failed: {message}")),
        (Outcome::Failed, None) => log.error("task failed"),
    }
    let finish = FinishRequest {
        state,
        // Shown beside the log (the try's note): masked like it.
        message: message.map(|m| log.mask(&m)),
        xcoms: xcom
            .map(|value| {
                vec![XcomPush {
                    key: "return_value".into(),
                    value,
                }]
            })
            .unwrap_or_default(),
        logs: log.take(),
    };
    match client
        .report::<_, FinishResponse>(Method::PATCH, &format!("{base}/state"), Some(&finish))
        .await
    {
        Ok(_) if state == Outcome::Failed => exit::FAILED,
        Ok(_) => exit::OK,
        Err(err) if err.try_is_gone() => {
            eprintln!("dagctl tasks run: try {} is no longer current: {err}", ctx.try_number);
            exit::STOPPED
        }
        Err(err) => {
            eprintln!(
                "dagctl tasks run: cannot report the end of try {}: {err}",
                ctx.try_number
            );
            exit::NOT_REPORTED
        }
    }
}

/// Renders the arguments and runs the operator within the task's timeout.
async fn execute(
    ctx: &TaskContext,
    client: &ExecutionClient,
    operators: &Operators,
    log: &TaskLog,
    cancel: &CancellationToken,
) -> OperatorResult {
    // A mapped instance's own elements join the task's fixed (partial) arguments before rendering.
    let written = if ctx.task.is_mapped() {
        let xcoms = ctx.xcom_map();
        let lookup = |task_id: &str| xcoms.get(&(task_id.to_string(), "return_value".to_string()));
        match engine::mapping::mapped_args(&ctx.task.args, &ctx.task.expand, ctx.map_index, &lookup) {
            Ok(args) => args,
            Err(err) => return OperatorResult::Failed(err),
        }
    } else {
        ctx.task.args.clone()
    };
    // Elements taken from an upstream's XCom are values, not templates (as in Airflow): they join after
    // rendering.
    let mut from_xcom = serde_json::Map::new();
    let mut written = written;
    for arg in &ctx.task.expand {
        if matches!(arg.source, engine::mapping::MapSource::Xcom { .. }) {
            if let Some(value) = written.remove(&arg.key) {
                from_xcom.insert(arg.key.clone(), value);
            }
        }
    }
    let mut args = match render::render(&written, &ctx.template_context(), client, log).await {
        Ok(args) => args,
        Err(err) => return OperatorResult::Failed(err),
    };
    args.extend(from_xcom);
    let Some(operator) = operators.get(&ctx.task.operator) else {
        return OperatorResult::Failed(format!("operator `{}` is not known to this runner", ctx.task.operator));
    };
    // Airflow's context only: the try's token stays with the runner, so a task (and anyone reading its log)
    // can never act as the try.
    let env = ctx.airflow_env();
    let operator_ctx = OperatorContext {
        dag_id: ctx.dag_id.clone(),
        task_id: ctx.task_id.clone(),
        map_index: ctx.map_index,
        run_id: ctx.run_id.clone(),
        try_number: ctx.try_number,
        task: ctx.task.clone(),
        args,
        xcoms: ctx.xcom_map(),
        env,
        log: log.clone(),
        cancel: cancel.clone(),
        api: client.clone(),
    };
    let operator_span = tracing::info_span!("operator", operator = %ctx.task.operator);
    // Its own task: an operator that is cancelled still runs its cleanup to the end.
    let mut work = tokio::spawn(operator.run(operator_ctx).instrument(operator_span));
    let limit = ctx.task.execution_timeout;
    let timed_out = tokio::select! {
        joined = &mut work => return joined.unwrap_or_else(|e| OperatorResult::Failed(format!("the operator ended abnormally: {e}"))),
        _ = sleep_or_forever(limit) => true,
        _ = cancel.cancelled() => false,
    };
    if timed_out {
        let limit = engine::duration::format_duration(limit.unwrap_or_default());
        log.error(&format!("timed out after {limit}: stopping the task"));
        cancel.cancel();
    }
    match tokio::time::timeout(CLEANUP_GRACE, &mut work).await {
        Ok(Ok(result)) if !timed_out => result,
        Ok(_) if timed_out => OperatorResult::Failed(format!(
            "timed out after {}",
            engine::duration::format_duration(limit.unwrap_or_default())
        )),
        Ok(Err(err)) => OperatorResult::Failed(format!("the operator ended abnormally: {err}")),
        Ok(Ok(result)) => result,
        Err(_) => {
            work.abort();
            OperatorResult::Failed("the operator did not stop within its cleanup grace".into())
        }
    }
}

async fn sleep_or_forever(limit: Option<Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM (the executor stopping the try) cancels the operator; returns the flag that records it.
fn watch_sigterm(cancel: CancellationToken, stop: CancellationToken) -> Arc<std::sync::atomic::AtomicBool> {
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = flag.clone();
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    cancel.cancel();
                }
                _ = stop.cancelled() => {}
            }
        });
    }
    flag
}

/// The engine says the try is no longer current (cleared, marked, terminated): stop it, report nothing.
fn stop_try(gone: &Mutex<Option<String>>, cancel: &CancellationToken, why: &ClientError) {
    if let Ok(mut gone) = gone.lock() {
        *gone = Some(why.to_string());
    }
    cancel.cancel();
}

async fn heartbeat(
    client: ExecutionClient,
    path: String,
    every: Duration,
    cancel: CancellationToken,
    gone: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let call = client.call::<(), Json>(Method::PUT, &path, None);
        let result = tokio::select! {
            result = call => result,
            _ = stop.cancelled() => return,
        };
        match result {
            Ok(_) => {}
            Err(err) if err.try_is_gone() => return stop_try(&gone, &cancel, &err),
            Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
        }
    }
}

async fn flush_logs(
    client: ExecutionClient,
    path: String,
    log: TaskLog,
    cancel: CancellationToken,
    gone: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
            _ = log.batch_ready() => {}
            _ = stop.cancelled() => return,
        }
        let lines = log.take();
        if lines.is_empty() {
            continue;
        }
        let batch = LogBatch { lines };
        let result = tokio::select! {
            result = client.call::<_, Json>(Method::POST, &path, Some(&batch)) => result,
            _ = stop.cancelled() => {
                log.put_back(batch.lines);
                return;
            }
        };
        match result {
            Ok(_) => {}
            Err(err) if err.try_is_gone() => return stop_try(&gone, &cancel, &err),
            Err(ClientError::Unreachable { .. }) => log.put_back(batch.lines),
            Err(err) => tracing::warn!(error = %err, "log lines refused"),
        }
    }
}
