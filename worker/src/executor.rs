//! The local executor: each task try is a child process in its own process group (bash, through the
//! supervisor) or a tokio task (in-process operators), within a `parallelism` limit.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::spec::{DagSpec, TaskSpec};
use engine::store::{RunRow, Store, TiRow};
use engine::template::{render_args, TemplateContext};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::log::{try_log_path, LogWriter};
use crate::operator::{OperatorContext, OperatorResult, OperatorRuntime};
use crate::supervise::{read_result, SupervisorResult, TryFiles, SUBCOMMAND};

/// Environment variables of the engine that hold its secrets; tasks do not inherit them.
pub const ENGINE_SECRETS: &[&str] = &[
    "DAGCTL_ADMIN_PASSWORD",
    "DAGCTL_SECRET_KEY",
    "DAGCTL_OIDC_CLIENT_SECRET",
];

/// How the local executor is set up.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub parallelism: usize,
    pub logs_dir: PathBuf,
    /// The `dagctl` binary, run as `dagctl __supervise ...` for each bash try.
    pub supervisor_exe: PathBuf,
    pub hostname: String,
    /// Time between SIGTERM and SIGKILL when a task is killed.
    pub kill_grace: Duration,
}

/// Everything needed to run one try.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub ti: TiRow,
    pub run: RunRow,
    pub dag: Arc<DagSpec>,
    pub task: TaskSpec,
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Skipped,
    Failed,
}

/// The end of a try, as reported to the scheduler.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub ti_id: i64,
    pub run_pk: i64,
    pub try_number: i64,
    pub outcome: Outcome,
    pub message: Option<String>,
    pub xcom: Option<Json>,
    pub ended_at: DateTime<Utc>,
}

impl TaskReport {
    /// The end of `ti`'s current try, now.
    pub fn now(ti: &TiRow, outcome: Outcome, message: Option<String>, xcom: Option<Json>) -> TaskReport {
        TaskReport {
            ti_id: ti.id,
            run_pk: ti.run_pk,
            try_number: ti.try_number,
            outcome,
            message,
            xcom,
            ended_at: Utc::now(),
        }
    }
}

/// What the executor tells the scheduler.
#[derive(Debug, Clone)]
pub enum ExecutorEvent {
    Started { ti_id: i64, pid: Option<u32> },
    Finished(TaskReport),
}

enum Handle {
    Process { pgid: i32 },
    InProcess { cancel: CancellationToken },
    Pending,
}

struct Running {
    handle: Handle,
    killed: bool,
}

/// Runs task tries on this machine.
pub struct LocalExecutor {
    options: ExecutorOptions,
    store: Store,
    runtime: OperatorRuntime,
    events: mpsc::UnboundedSender<ExecutorEvent>,
    running: Arc<Mutex<HashMap<i64, Running>>>,
}

impl LocalExecutor {
    pub fn new(
        options: ExecutorOptions,
        store: Store,
        runtime: OperatorRuntime,
    ) -> (Arc<LocalExecutor>, mpsc::UnboundedReceiver<ExecutorEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let executor = LocalExecutor {
            options,
            store,
            runtime,
            events,
            running: Arc::new(Mutex::new(HashMap::new())),
        };
        (Arc::new(executor), receiver)
    }

    pub fn options(&self) -> &ExecutorOptions {
        &self.options
    }

    /// Free slots under `parallelism`.
    pub fn open_slots(&self) -> usize {
        self.options.parallelism.saturating_sub(self.running_count())
    }

    pub fn running_count(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Ids of the task instances this executor is running.
    pub fn running_ids(&self) -> Vec<i64> {
        self.running
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Path of a try's log.
    pub fn log_path(&self, dag_id: &str, run_id: &str, task_id: &str, try_number: i64) -> PathBuf {
        try_log_path(&self.options.logs_dir, dag_id, run_id, task_id, try_number)
    }

    /// Starts one try (the task instance is already `running` with its try number).
    pub fn launch(self: &Arc<Self>, request: LaunchRequest) {
        if let Ok(mut running) = self.running.lock() {
            running.insert(
                request.ti.id,
                Running {
                    handle: Handle::Pending,
                    killed: false,
                },
            );
        }
        let executor = Arc::clone(self);
        tokio::spawn(async move {
            let ti_id = request.ti.id;
            let report = executor.run_try(request).await;
            if let Ok(mut running) = executor.running.lock() {
                running.remove(&ti_id);
            }
            let _ = executor.events.send(ExecutorEvent::Finished(report));
        });
    }

    /// Stops a try: SIGTERM to its process group, SIGKILL after the grace period; cancels in-process ones.
    pub fn kill(&self, ti_id: i64) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let Some(entry) = running.get_mut(&ti_id) else {
            return;
        };
        entry.killed = true;
        match &entry.handle {
            Handle::Process { pgid } => {
                let pgid = *pgid;
                let grace = self.options.kill_grace;
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                });
            }
            Handle::InProcess { cancel } => cancel.cancel(),
            Handle::Pending => {}
        }
    }

    /// Kills everything still running (on shutdown of a scoped run such as `dags test`).
    pub fn kill_all(&self) {
        for ti_id in self.running_ids() {
            self.kill(ti_id);
        }
    }

    fn set_handle(&self, ti_id: i64, handle: Handle) -> bool {
        let Ok(mut running) = self.running.lock() else {
            return false;
        };
        match running.get_mut(&ti_id) {
            Some(entry) => {
                entry.handle = handle;
                !entry.killed
            }
            None => false,
        }
    }

    fn was_killed(&self, ti_id: i64) -> bool {
        self.running
            .lock()
            .map(|r| r.get(&ti_id).map(|e| e.killed).unwrap_or(false))
            .unwrap_or(false)
    }

    async fn run_try(self: &Arc<Self>, request: LaunchRequest) -> TaskReport {
        let ti = &request.ti;
        let log_path = self.log_path(&ti.dag_id, &ti.run_id, &ti.task_id, ti.try_number);
        let files = TryFiles::for_log(&log_path);
        let report =
            |outcome: Outcome, message: Option<String>, xcom: Option<Json>| TaskReport::now(ti, outcome, message, xcom);
        let writer = match LogWriter::open(&log_path) {
            Ok(writer) => writer,
            Err(err) => {
                return report(
                    Outcome::Failed,
                    Some(format!("cannot open log {}: {err}", log_path.display())),
                    None,
                )
            }
        };
        writer.info(&format!(
            "starting try {} of {} for {}.{} in run {} on {}",
            ti.try_number,
            ti.max_tries + 1,
            ti.dag_id,
            ti.task_id,
            ti.run_id,
            self.options.hostname
        ));
        let xcoms = match self.store.xcoms_of_run(ti.run_pk).await {
            Ok(xcoms) => xcoms,
            Err(err) => {
                writer.error(&format!("cannot read XCom: {err}"));
                return report(Outcome::Failed, Some(format!("cannot read XCom: {err}")), None);
            }
        };
        let mut params = request.dag.params.clone();
        for (key, value) in &request.run.conf {
            params.insert(key.clone(), value.clone());
        }
        let ctx = TemplateContext {
            dag_id: ti.dag_id.clone(),
            task_id: ti.task_id.clone(),
            run_id: ti.run_id.clone(),
            try_number: ti.try_number as u32,
            logical_date: request.run.logical_date,
            data_interval_start: request.run.data_interval_start,
            data_interval_end: request.run.data_interval_end,
            run_after: request.run.run_after,
            conf: request.run.conf.clone(),
            params,
            xcoms,
            native: request.dag.render_template_as_native_obj,
        };
        let args = match render_args(&request.task.args, &ctx) {
            Ok(args) => args,
            Err(err) => {
                let message = err.to_string();
                writer.error(&message);
                return report(Outcome::Failed, Some(message), None);
            }
        };
        let (outcome, message, xcom) = if request.task.operator == "bash" {
            self.run_bash(&request, &ctx, &args, &files, &writer).await
        } else if let Some(operator) = self.runtime.get(&request.task.operator) {
            self.run_in_process(&request, operator, args, &writer).await
        } else {
            let message = format!("operator `{}` cannot run in this process", request.task.operator);
            writer.error(&message);
            (Outcome::Failed, Some(message), None)
        };
        match (&outcome, &message) {
            (Outcome::Success, _) => writer.info("task succeeded"),
            (Outcome::Skipped, Some(message)) => writer.info(&format!("task skipped: {message}")),
            (Outcome::Skipped, None) => writer.info("task skipped"),
            (Outcome::Failed, Some(message)) => writer.error(&format!("task failed: {message}")),
            (Outcome::Failed, None) => writer.error("task failed"),
        }
        report(outcome, message, xcom)
    }

    async fn run_bash(
        &self,
        request: &LaunchRequest,
        ctx: &TemplateContext,
        args: &serde_json::Map<String, Json>,
        files: &TryFiles,
        writer: &LogWriter,
    ) -> (Outcome, Option<String>, Option<Json>) {
        let ti = &request.ti;
        let Some(command) = args.get("bash_command").and_then(Json::as_str) else {
            return (Outcome::Failed, Some("`bash_command` must be a string".into()), None);
        };
        let append_env = args.get("append_env").and_then(Json::as_bool).unwrap_or(false);
        // The engine's own secrets never reach a task (whose output lands in a log anyone with Viewer reads).
        let inherited = || std::env::vars().filter(|(name, _)| !ENGINE_SECRETS.contains(&name.as_str()));
        let mut env: Vec<(String, String)> = Vec::new();
        match args.get("env").and_then(Json::as_object) {
            Some(custom) => {
                if append_env {
                    env.extend(inherited());
                }
                for (key, value) in custom {
                    env.push((
                        key.clone(),
                        value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string()),
                    ));
                }
            }
            None => env.extend(inherited()),
        }
        let logical = ctx.logical_date.unwrap_or(ctx.run_after).to_rfc3339();
        env.push(("AIRFLOW_CTX_DAG_ID".into(), ti.dag_id.clone()));
        env.push(("AIRFLOW_CTX_TASK_ID".into(), ti.task_id.clone()));
        env.push(("AIRFLOW_CTX_LOGICAL_DATE".into(), logical));
        env.push(("AIRFLOW_CTX_DAG_RUN_ID".into(), ti.run_id.clone()));
        env.push(("AIRFLOW_CTX_TRY_NUMBER".into(), ti.try_number.to_string()));
        env.push(("AIRFLOW_CTX_DAG_OWNER".into(), request.task.owner.clone()));
        env.push(("DAGCTL_XCOM".into(), files.xcom.display().to_string()));
        let skip_codes = skip_codes(args);
        let _ = std::fs::remove_file(&files.xcom);
        let _ = std::fs::remove_file(&files.result);
        writer.info(&format!("running command: {command}"));
        let mut process = tokio::process::Command::new(&self.options.supervisor_exe);
        process
            .arg(SUBCOMMAND)
            .arg("--log")
            .arg(&files.log)
            .arg("--result")
            .arg(&files.result)
            .arg("--pidfile")
            .arg(&files.pid)
            .arg("--")
            .arg("/bin/bash")
            .arg("-c")
            .arg(command)
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(cwd) = args.get("cwd").and_then(Json::as_str) {
            process.current_dir(cwd);
        }
        let mut child = match process.spawn() {
            Ok(child) => child,
            Err(err) => {
                return (
                    Outcome::Failed,
                    Some(format!("cannot start the task supervisor: {err}")),
                    None,
                )
            }
        };
        let pid = child.id();
        if let Some(pid) = pid {
            if !self.set_handle(ti.id, Handle::Process { pgid: pid as i32 }) {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = self.events.send(ExecutorEvent::Started {
                ti_id: ti.id,
                pid: Some(pid),
            });
        }
        let timeout = request.task.execution_timeout;
        let wait = child.wait();
        let timed_out = match timeout {
            Some(limit) => match tokio::time::timeout(limit, wait).await {
                Ok(_) => false,
                Err(_) => {
                    writer.error(&format!(
                        "timed out after {}: killing the process group",
                        engine::duration::format_duration(limit)
                    ));
                    if let Some(pid) = pid {
                        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
                        if tokio::time::timeout(self.options.kill_grace, child.wait())
                            .await
                            .is_err()
                        {
                            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                            let _ = child.wait().await;
                        }
                    }
                    true
                }
            },
            None => {
                let _ = wait.await;
                false
            }
        };
        if timed_out {
            return (
                Outcome::Failed,
                Some(format!(
                    "timed out after {}",
                    engine::duration::format_duration(timeout.unwrap_or_default())
                )),
                None,
            );
        }
        let result = read_result(&files.result).unwrap_or_default();
        let killed = self.was_killed(ti.id);
        interpret_bash(&result, &skip_codes, request.task.do_xcom_push, &files.xcom, killed)
    }

    async fn run_in_process(
        &self,
        request: &LaunchRequest,
        operator: Arc<dyn crate::operator::InProcessOperator>,
        args: serde_json::Map<String, Json>,
        writer: &LogWriter,
    ) -> (Outcome, Option<String>, Option<Json>) {
        let ti = &request.ti;
        let cancel = CancellationToken::new();
        if !self.set_handle(ti.id, Handle::InProcess { cancel: cancel.clone() }) {
            return (Outcome::Failed, Some("killed before it started".into()), None);
        }
        let _ = self.events.send(ExecutorEvent::Started {
            ti_id: ti.id,
            pid: None,
        });
        let ctx = OperatorContext {
            dag_id: ti.dag_id.clone(),
            task_id: ti.task_id.clone(),
            run_id: ti.run_id.clone(),
            try_number: ti.try_number,
            args,
            log: writer.clone(),
            cancel: cancel.clone(),
            store: self.store.clone(),
        };
        let future = operator.run(ctx);
        let result = match request.task.execution_timeout {
            Some(limit) => match tokio::time::timeout(limit, future).await {
                Ok(result) => result,
                Err(_) => {
                    cancel.cancel();
                    OperatorResult::Failed(format!("timed out after {}", engine::duration::format_duration(limit)))
                }
            },
            None => future.await,
        };
        match result {
            OperatorResult::Success(value) => (
                Outcome::Success,
                None,
                if request.task.do_xcom_push { value } else { None },
            ),
            OperatorResult::Skipped(message) => (Outcome::Skipped, Some(message), None),
            OperatorResult::Failed(message) => (Outcome::Failed, Some(message), None),
        }
    }

    /// Watches a try that a previous scheduler started (its supervisor is still alive, or already finished),
    /// and reports its end like any other try.
    pub fn adopt(self: &Arc<Self>, request: LaunchRequest, pid: Option<u32>) {
        if let Ok(mut running) = self.running.lock() {
            let handle = match pid {
                Some(pid) => Handle::Process { pgid: pid as i32 },
                None => Handle::Pending,
            };
            running.insert(request.ti.id, Running { handle, killed: false });
        }
        let executor = Arc::clone(self);
        tokio::spawn(async move {
            let ti = &request.ti;
            let log_path = executor.log_path(&ti.dag_id, &ti.run_id, &ti.task_id, ti.try_number);
            let files = TryFiles::for_log(&log_path);
            let writer = LogWriter::open(&log_path).ok();
            if let Some(writer) = &writer {
                writer.info(&format!(
                    "adopted by a new scheduler on {} (supervisor pid {:?})",
                    executor.options.hostname, pid
                ));
            }
            let deadline = request.task.execution_timeout.and_then(|limit| {
                ti.start_date
                    .map(|start| start + chrono::Duration::from_std(limit).unwrap_or_default())
            });
            let mut timed_out = false;
            if let Some(pid) = pid {
                while process_alive(pid) {
                    if deadline.map(|d| Utc::now() >= d).unwrap_or(false) {
                        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
                        tokio::time::sleep(executor.options.kill_grace).await;
                        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                        timed_out = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let (outcome, message, xcom) = if timed_out {
                (Outcome::Failed, Some("timed out (after adoption)".to_string()), None)
            } else {
                match read_result(&files.result) {
                    Some(result) => {
                        let skip = skip_codes(&request.task.args);
                        let killed = executor.was_killed(ti.id);
                        interpret_bash(&result, &skip, request.task.do_xcom_push, &files.xcom, killed)
                    }
                    None => (
                        Outcome::Failed,
                        Some("the task's process was lost while no scheduler watched it".to_string()),
                        None,
                    ),
                }
            };
            if let Some(writer) = &writer {
                match &message {
                    Some(message) => writer.info(&format!("adopted try ended: {message}")),
                    None => writer.info("adopted try ended successfully"),
                }
            }
            if let Ok(mut running) = executor.running.lock() {
                running.remove(&ti.id);
            }
            let _ = executor
                .events
                .send(ExecutorEvent::Finished(TaskReport::now(ti, outcome, message, xcom)));
        });
    }
}

/// Exit codes that mean "skipped": `skip_on_exit_code` as a code, a list, a comma-separated string, or null
/// for none; Airflow's 99 when absent.
fn skip_codes(args: &serde_json::Map<String, Json>) -> Vec<i64> {
    match args.get("skip_on_exit_code") {
        None => vec![99],
        Some(Json::Null) => vec![],
        Some(Json::Number(code)) => code.as_i64().into_iter().collect(),
        Some(Json::Array(codes)) => codes.iter().filter_map(Json::as_i64).collect(),
        Some(Json::String(text)) => text.split(',').filter_map(|c| c.trim().parse().ok()).collect(),
        Some(_) => vec![99],
    }
}

/// Turns a supervisor result into an outcome: exit 0 succeeds, a skip code skips, anything else fails.
fn interpret_bash(
    result: &SupervisorResult,
    skip_codes: &[i64],
    do_xcom_push: bool,
    xcom_file: &std::path::Path,
    killed: bool,
) -> (Outcome, Option<String>, Option<Json>) {
    if let Some(error) = &result.spawn_error {
        return (Outcome::Failed, Some(error.clone()), None);
    }
    match (result.exit_code, result.signal) {
        (Some(0), _) => {
            let xcom = match std::fs::read_to_string(xcom_file) {
                Ok(text) if !text.trim().is_empty() => {
                    Some(serde_json::from_str(&text).unwrap_or(Json::String(text.trim().to_string())))
                }
                _ if do_xcom_push => result.last_stdout_line.clone().map(Json::String),
                _ => None,
            };
            (Outcome::Success, None, xcom)
        }
        (Some(code), _) if skip_codes.contains(&i64::from(code)) => {
            (Outcome::Skipped, Some(format!("exit code {code} means skip")), None)
        }
        (Some(code), _) if killed => (Outcome::Failed, Some(format!("killed (exit code {code})")), None),
        (Some(code), _) => (
            Outcome::Failed,
            Some(format!("bash command failed with exit code {code}")),
            None,
        ),
        (None, Some(signal)) => (Outcome::Failed, Some(format!("killed by signal {signal}")), None),
        (None, None) => (
            Outcome::Failed,
            Some("the task ended without an exit status".into()),
            None,
        ),
    }
}

/// True when `pid` is a live supervisor (not a zombie, not a reused pid running something else).
pub fn process_alive(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if !String::from_utf8_lossy(&cmdline).contains(SUBCOMMAND) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Reads the supervisor pid a try recorded, if any.
pub fn recorded_pid(logs_dir: &std::path::Path, ti: &TiRow) -> Option<u32> {
    let files = TryFiles::for_log(&try_log_path(
        logs_dir,
        &ti.dag_id,
        &ti.run_id,
        &ti.task_id,
        ti.try_number,
    ));
    std::fs::read_to_string(files.pid).ok()?.trim().parse().ok()
}

/// Ids of tries whose supervisor still runs, among `tis`.
pub fn alive_among(logs_dir: &std::path::Path, tis: &[TiRow]) -> HashSet<i64> {
    tis.iter()
        .filter(|ti| {
            ti.pid
                .map(|p| p as u32)
                .or_else(|| recorded_pid(logs_dir, ti))
                .map(process_alive)
                .unwrap_or(false)
        })
        .map(|ti| ti.id)
        .collect()
}
