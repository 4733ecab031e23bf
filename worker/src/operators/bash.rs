//! `bash`: runs `bash_command` with `/bin/bash -c` in the runner's process group. Its stdout and stderr go to
//! the try's log line by line; the last stdout line is pushed as XCom (Airflow's BashOperator), or the JSON a
//! command writes to `$DAGCTL_XCOM`. Exit code 99 (or `skip_on_exit_code`) skips the task.
//!
//! Its environment: the runner's allow-listed one (PATH, HOME, LANG, TZ; never the try's token or the
//! execution API's URL) unless `env` replaces it (`append_env: true` keeps both), plus `AIRFLOW_CTX_*`.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::operators::builtin::BashArgs;
use engine::operators::OperatorDef;
use nix::sys::signal::Signal;
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};
use crate::runner::{group, TaskLog};

/// Time between SIGTERM and SIGKILL when a command is stopped.
const KILL_GRACE: Duration = Duration::from_secs(3);

pub struct Bash;

impl Operator for Bash {
    fn definition(&self) -> OperatorDef {
        engine::operators::builtin::bash()
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        Box::pin(run(ctx))
    }
}

async fn run(ctx: OperatorContext) -> OperatorResult {
    let args: BashArgs = match ctx.args_as() {
        Ok(args) => args,
        Err(err) => return OperatorResult::Failed(err),
    };
    let (env, append_env, skip_codes) = match (args.env(), args.append_env(), args.skip_codes()) {
        (Ok(env), Ok(append), Ok(skip)) => (env, append, skip.to_vec()),
        (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => return OperatorResult::Failed(err),
    };
    let command = args.bash_command.clone();
    let xcom_file = std::env::temp_dir().join(format!("dagctl-xcom-{}-{}.json", std::process::id(), ctx.try_number));
    let _ = std::fs::remove_file(&xcom_file);
    let mut process = tokio::process::Command::new("/bin/bash");
    process.arg("-c").arg(&command);
    if let Some(custom) = env {
        if !append_env {
            process.env_clear();
        }
        process.envs(custom);
    }
    // The runner's own environment holds the try's token: a command never inherits it.
    process.env_remove(crate::execution::TOKEN_ENV);
    process.env_remove(crate::execution::API_URL_ENV);
    process.envs(ctx.env.iter().cloned());
    process.env("DAGCTL_XCOM", &xcom_file);
    if let Some(cwd) = &args.cwd {
        process.current_dir(cwd);
    }
    let own_group = !group::lead_own_group();
    if own_group {
        process.process_group(0);
    }
    process
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    ctx.log.info(&format!("running command: {command}"));
    let mut child = match process.spawn() {
        Ok(child) => child,
        Err(err) => return OperatorResult::Failed(format!("cannot start /bin/bash: {err}")),
    };
    let pid = child.id();
    let last_line = Arc::new(Mutex::new(None::<String>));
    let out = child.stdout.take().map(|s| {
        tokio::spawn(copy_lines(
            s,
            ctx.log.clone(),
            "task.stdout",
            "info",
            Some(last_line.clone()),
        ))
    });
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(copy_lines(s, ctx.log.clone(), "task.stderr", "error", None)));
    let stop = |signal: Signal| match (own_group, pid) {
        (true, Some(pid)) => group::signal_child_group(pid, signal),
        _ => {
            group::signal_members(signal);
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        _ = ctx.cancel.cancelled() => {
            stop(Signal::SIGTERM);
            match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    stop(Signal::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    // A stopped command's leftovers (background children) end with it; a command that ended by itself may
    // leave daemons behind on purpose, as with Airflow.
    if ctx.cancel.is_cancelled() && !own_group {
        group::signal_members(Signal::SIGKILL);
    }
    for copier in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(5), copier).await;
    }
    let pushed = std::fs::read_to_string(&xcom_file).ok();
    let _ = std::fs::remove_file(&xcom_file);
    if ctx.cancel.is_cancelled() {
        return OperatorResult::Failed("stopped".into());
    }
    let status = match status {
        Ok(status) => status,
        Err(err) => return OperatorResult::Failed(format!("waiting for bash failed: {err}")),
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => {
            let xcom = match pushed {
                Some(text) if !text.trim().is_empty() => {
                    Some(serde_json::from_str(&text).unwrap_or(Json::String(text.trim().to_string())))
                }
                _ => last_line.lock().ok().and_then(|l| l.clone()).map(Json::String),
            };
            OperatorResult::Success(xcom)
        }
        (Some(code), _) if u8::try_from(code).is_ok_and(|c| skip_codes.contains(&c)) => {
            OperatorResult::Skipped(format!("exit code {code} means skip"))
        }
        (Some(code), _) => OperatorResult::Failed(format!("bash command failed with exit code {code}")),
        (None, Some(signal)) => OperatorResult::Failed(format!("killed by signal {signal}")),
        (None, None) => OperatorResult::Failed("the command ended without an exit status".into()),
    }
}

async fn copy_lines(
    stream: impl AsyncRead + Unpin,
    log: TaskLog,
    logger: &'static str,
    level: &'static str,
    last: Option<Arc<Mutex<Option<String>>>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buffer);
                let line = text.trim_end_matches(['\n', '\r']);
                log.line(level, logger, line);
                if let Some(last) = &last {
                    if !line.is_empty() {
                        if let Ok(mut guard) = last.lock() {
                            *guard = Some(line.to_string());
                        }
                    }
                }
            }
        }
    }
}
