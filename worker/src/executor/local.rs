//! The local executor: every try is a runner process (`tasks run DAG RUN TASK --try N`) that leads its own
//! process group, within a `parallelism` limit. By default runners are forked by one runner host
//! ([`crate::host`], started once); with `fork_runners` off, or when the host cannot be used, each is the
//! runner binary started anew. The runner's environment is an allow-list (never the engine's): PATH, HOME,
//! LANG, TZ as the engine had them, the execution API's URL and the try's token.
//!
//! Runners do not need this process: a scheduler that is killed leaves them running, and the next one adopts
//! them by pid (checked against `/proc/<pid>/cmdline`, which a forked runner rewrites to its arguments).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::store::TiRow;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use super::host_link::{HostLink, LaunchError};
use super::{Adoption, Executor, ExecutorEvent, LaunchRequest};
use crate::execution::{TokenMinter, API_URL_ENV, TOKEN_ENV};
use crate::log::{LogLine, TaskLogs, TryKey};

/// The verb that runs one try.
pub const RUNNER_VERB: [&str; 2] = ["tasks", "run"];
/// A runner may overrun its task's `execution_timeout` by this much before the executor kills it.
const OVERRUN: Duration = Duration::from_secs(120);
/// How often an adopted runner (not our child) is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);
/// Lifetime of a try's token when the task has no `execution_timeout`.
const TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// After a runner host could not be started, runners are started one by one for this long before it is tried
/// again.
const HOST_RETRY: Duration = Duration::from_secs(60);

/// How the local executor is set up.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub parallelism: usize,
    /// The runner binary (`dagctl-runner`, or `dagctl`): `tasks host` forks runners, `tasks run` is one.
    pub runner_exe: PathBuf,
    /// Fork each try's runner from one runner host (else start the runner binary per try).
    pub fork_runners: bool,
    /// Where runners reach the task execution API.
    pub api_url: String,
    pub hostname: String,
    /// Time between SIGTERM and SIGKILL when a try is stopped.
    pub kill_grace: Duration,
    /// The allow-listed part of the engine's environment that runners get (PATH, HOME, LANG, TZ).
    pub base_env: Vec<(String, String)>,
    /// Where the stderr of runners started anew (not forked) is kept while they run.
    pub work_dir: PathBuf,
}

/// The names of the engine's environment that runners inherit.
pub const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

struct Entry {
    try_number: i64,
    pgid: Option<i32>,
}

struct Inner {
    options: LocalOptions,
    minter: Arc<dyn TokenMinter>,
    logs: Arc<dyn TaskLogs>,
    events: mpsc::UnboundedSender<ExecutorEvent>,
    running: Mutex<HashMap<i64, Entry>>,
    /// The other live engines' execution API addresses.
    peers: Mutex<Vec<String>>,
    host: tokio::sync::Mutex<HostSlot>,
}

/// The runner host, once started (or when it last could not be).
#[derive(Default)]
struct HostSlot {
    link: Option<Arc<HostLink>>,
    failed_at: Option<Instant>,
}

/// Runs task tries as processes on this machine.
#[derive(Clone)]
pub struct LocalExecutor {
    inner: Arc<Inner>,
}

impl LocalExecutor {
    pub fn new(
        options: LocalOptions,
        minter: Arc<dyn TokenMinter>,
        logs: Arc<dyn TaskLogs>,
    ) -> (LocalExecutor, mpsc::UnboundedReceiver<ExecutorEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let _ = std::fs::create_dir_all(&options.work_dir);
        let executor = LocalExecutor {
            inner: Arc::new(Inner {
                options,
                minter,
                logs,
                events,
                running: Mutex::new(HashMap::new()),
                peers: Mutex::new(Vec::new()),
                host: tokio::sync::Mutex::new(HostSlot::default()),
            }),
        };
        (executor, receiver)
    }

    pub fn options(&self) -> &LocalOptions {
        &self.inner.options
    }
}

impl Inner {
    fn set_pgid(&self, ti_id: i64, pgid: i32) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(entry) = running.get_mut(&ti_id) {
                entry.pgid = Some(pgid);
            }
        }
    }

    /// Tells the scheduler a runner is gone. The event is sent before the runner leaves the running set, so
    /// a scheduler that sees no running tries has every event in its channel.
    fn finish(&self, ti: &TiRow, pid: Option<u32>, detail: String) {
        let _ = self.events.send(ExecutorEvent::Exited {
            ti_id: ti.id,
            try_number: ti.try_number,
            pid,
            detail,
        });
        if let Ok(mut running) = self.running.lock() {
            running.remove(&ti.id);
        }
    }

    /// This engine's execution API first, then the other live ones (comma-separated, as the runner reads it).
    fn api_urls(&self) -> String {
        let mut urls = vec![self.options.api_url.clone()];
        if let Ok(peers) = self.peers.lock() {
            urls.extend(peers.iter().filter(|p| **p != self.options.api_url).cloned());
        }
        urls.join(",")
    }

    fn note(&self, ti: &TiRow, level: &str, text: &str) {
        let key = TryKey::of(ti, ti.try_number);
        let _ = self.logs.append(&key, &[LogLine::now(level, "dagctl.executor", text)]);
    }

    /// The runner host, started at the first launch (and again after it ended); `None` when runners are
    /// started one by one.
    async fn host(&self) -> Option<Arc<HostLink>> {
        if !self.options.fork_runners {
            return None;
        }
        let mut slot = self.host.lock().await;
        if let Some(link) = slot.link.as_ref().filter(|l| l.is_alive()) {
            return Some(Arc::clone(link));
        }
        if slot.failed_at.is_some_and(|at| at.elapsed() < HOST_RETRY) {
            return None;
        }
        match HostLink::start(&self.options.runner_exe, &self.options.base_env).await {
            Ok(link) => {
                tracing::debug!(pid = link.pid(), "runner host started");
                slot.link = Some(Arc::clone(&link));
                slot.failed_at = None;
                Some(link)
            }
            Err(error) => {
                tracing::warn!(%error, "runners are started one by one");
                slot.link = None;
                slot.failed_at = Some(Instant::now());
                None
            }
        }
    }

    async fn run(self: Arc<Self>, request: LaunchRequest) {
        let ti = &request.ti;
        let ttl = request
            .execution_timeout
            .map(|t| t + OVERRUN + Duration::from_secs(3600))
            .unwrap_or(TOKEN_TTL);
        let token = self.minter.mint(ti.id, ti.try_number, ttl);
        let argv = runner_argv(ti);
        if let Some(host) = self.host().await.filter(|h| h.fits(&argv)) {
            match host.launch(argv.clone(), self.api_urls(), token.clone()).await {
                Ok((pid, exited)) => return self.watch_forked(request, pid, exited).await,
                // Nothing was forked: start this one anew.
                Err(LaunchError::NotForked(error)) => {
                    tracing::warn!(%error, "the runner host did not fork a runner: starting it anew")
                }
                // A runner may have been forked: one titled with this try's arguments is watched to its end,
                // else the try is started anew (a second runner could not take a try the first one started).
                Err(LaunchError::Lost(detail)) => {
                    tracing::warn!(%detail, "the runner host went away during a launch");
                    if let Some(pid) = find_runner(&argv) {
                        self.note(ti, "warning", &format!("{detail}; its runner (pid {pid}) is watched"));
                        return self.watch_orphan(request, pid).await;
                    }
                }
            }
        }
        self.run_spawned(request, argv, token).await
    }

    /// Watches a runner that is nobody's child (its host went away) until it ends.
    async fn watch_orphan(self: Arc<Self>, request: LaunchRequest, pid: u32) {
        let ti = &request.ti;
        self.set_pgid(ti.id, pid as i32);
        let _ = self.events.send(ExecutorEvent::Started {
            ti_id: ti.id,
            pid: Some(pid),
        });
        while runner_alive(pid, ti) {
            tokio::time::sleep(ADOPTED_POLL).await;
        }
        self.finish(
            ti,
            Some(pid),
            format!("the runner (pid {pid}) ended after its host went away"),
        );
    }

    /// Waits for a forked runner's end (its host reports it), stopping it when it overruns its timeout.
    async fn watch_forked(
        self: Arc<Self>,
        request: LaunchRequest,
        pid: u32,
        mut exited: tokio::sync::oneshot::Receiver<super::host_link::RunnerExit>,
    ) {
        let ti = &request.ti;
        self.set_pgid(ti.id, pid as i32);
        let _ = self.events.send(ExecutorEvent::Started {
            ti_id: ti.id,
            pid: Some(pid),
        });
        let ended = match request.execution_timeout {
            Some(limit) => match tokio::time::timeout(limit + OVERRUN, &mut exited).await {
                Ok(ended) => ended,
                Err(_) => {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    self.note(ti, "error", "the runner overran its execution_timeout: killed");
                    exited.await
                }
            },
            None => exited.await,
        };
        let detail = match ended {
            Ok(exit) => with_tail(describe(exit.code, exit.signal), &exit.stderr),
            // The host went away first: the runner, nobody's child now, is watched by pid.
            Err(_) => {
                while runner_alive(pid, ti) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                format!("the runner (pid {pid}) ended after its host went away")
            }
        };
        self.finish(ti, Some(pid), detail);
    }

    /// Starts the runner binary for one try and waits for it.
    async fn run_spawned(self: Arc<Self>, request: LaunchRequest, argv: Vec<String>, token: String) {
        let ti = &request.ti;
        let stderr_path = self
            .options
            .work_dir
            .join(format!("ti-{}-try-{}.stderr", ti.id, ti.try_number));
        let stderr = match std::fs::File::create(&stderr_path) {
            Ok(file) => Stdio::from(file),
            Err(_) => Stdio::null(),
        };
        let mut command = tokio::process::Command::new(&self.options.runner_exe);
        command
            .args(&argv)
            .env_clear()
            .envs(self.options.base_env.iter().cloned())
            .env(API_URL_ENV, self.api_urls())
            .env(TOKEN_ENV, token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                let detail = format!(
                    "cannot start the task runner {}: {err}",
                    self.options.runner_exe.display()
                );
                self.note(ti, "error", &detail);
                let _ = std::fs::remove_file(&stderr_path);
                self.finish(ti, None, detail);
                return;
            }
        };
        let pid = child.id();
        if let Some(pid) = pid {
            self.set_pgid(ti.id, pid as i32);
        }
        let _ = self.events.send(ExecutorEvent::Started { ti_id: ti.id, pid });
        let status = match request.execution_timeout {
            Some(limit) => match tokio::time::timeout(limit + OVERRUN, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    if let Some(pid) = pid {
                        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                    self.note(ti, "error", "the runner overran its execution_timeout: killed");
                    child.wait().await
                }
            },
            None => child.wait().await,
        };
        let detail = match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                describe(status.code(), status.signal())
            }
            Err(err) => format!("waiting for the runner failed: {err}"),
        };
        let tail = read_tail(&stderr_path);
        let _ = std::fs::remove_file(&stderr_path);
        self.finish(ti, pid, with_tail(detail, &tail));
    }

    async fn watch_adopted(self: Arc<Self>, ti: TiRow, pid: u32) {
        while runner_alive(pid, &ti) {
            tokio::time::sleep(ADOPTED_POLL).await;
        }
        self.finish(&ti, Some(pid), format!("the adopted runner (pid {pid}) ended"));
    }
}

impl Executor for LocalExecutor {
    fn open_slots(&self) -> usize {
        self.inner.options.parallelism.saturating_sub(self.running_count())
    }

    fn running_ids(&self) -> Vec<i64> {
        self.inner
            .running
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    fn running_count(&self) -> usize {
        self.inner.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn launch(&self, request: LaunchRequest) {
        if let Ok(mut running) = self.inner.running.lock() {
            running.insert(
                request.ti.id,
                Entry {
                    try_number: request.ti.try_number,
                    pgid: None,
                },
            );
        }
        tokio::spawn(Arc::clone(&self.inner).run(request));
    }

    fn cancel(&self, ti_id: i64) {
        let pgid = self
            .inner
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(&ti_id).and_then(|e| e.pgid.map(|p| (p, e.try_number))));
        let Some((pgid, try_number)) = pgid else {
            return;
        };
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
        let inner = Arc::clone(&self.inner);
        let grace = self.inner.options.kill_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let still = inner
                .running
                .lock()
                .map(|r| {
                    r.get(&ti_id)
                        .is_some_and(|e| e.pgid == Some(pgid) && e.try_number == try_number)
                })
                .unwrap_or(false);
            if still {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        });
    }

    fn can_adopt(&self, ti: &TiRow) -> bool {
        ti.hostname.as_deref() == Some(self.inner.options.hostname.as_str())
    }

    fn adopt(&self, ti: &TiRow) -> Adoption {
        if !self.can_adopt(ti) {
            return Adoption::NotMine;
        }
        let Some(pid) = ti.pid.and_then(|p| u32::try_from(p).ok()) else {
            return Adoption::Gone("its runner never reported a pid".into());
        };
        if !runner_alive(pid, ti) {
            return Adoption::Gone(format!("its runner (pid {pid}) is gone"));
        }
        if let Ok(mut running) = self.inner.running.lock() {
            running.insert(
                ti.id,
                Entry {
                    try_number: ti.try_number,
                    pgid: Some(pid as i32),
                },
            );
        }
        self.inner.note(
            ti,
            "info",
            &format!(
                "adopted by a new scheduler on {} (runner pid {pid})",
                self.inner.options.hostname
            ),
        );
        tokio::spawn(Arc::clone(&self.inner).watch_adopted(ti.clone(), pid));
        Adoption::Watching
    }

    fn engine_process_alive(&self, hostname: &str, pid: u32) -> Option<bool> {
        (hostname == self.inner.options.hostname).then(|| std::path::Path::new(&format!("/proc/{pid}")).exists())
    }

    fn set_peer_engines(&self, urls: Vec<String>) {
        if let Ok(mut peers) = self.inner.peers.lock() {
            *peers = urls;
        }
    }
}

/// True when `pid` is a live runner of `ti` (not a zombie, not a reused pid running something else).
fn runner_alive(pid: u32, ti: &TiRow) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let verb = args
        .windows(RUNNER_VERB.len())
        .position(|w| w.iter().zip(RUNNER_VERB).all(|(a, b)| *a == b.as_bytes()));
    let Some(at) = verb else {
        return false;
    };
    let ids = &args[at + RUNNER_VERB.len()..];
    if ids.len() < 3
        || ids[0] != ti.dag_id.as_bytes()
        || ids[1] != ti.run_id.as_bytes()
        || ids[2] != ti.task_id.as_bytes()
    {
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

/// A live process whose command line holds exactly `argv` (a runner forked for this try).
fn find_runner(argv: &[String]) -> Option<u32> {
    let wanted = crate::host::title_bytes(argv);
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline
            .windows(wanted.len())
            .any(|w| w == wanted.as_slice())
            .then_some(pid)
    })
}

/// A runner's arguments: `tasks run DAG RUN TASK --try N --map-index M`.
pub(crate) fn runner_argv(ti: &TiRow) -> Vec<String> {
    let mut argv: Vec<String> = RUNNER_VERB.iter().map(|s| s.to_string()).collect();
    argv.extend([
        ti.dag_id.clone(),
        ti.run_id.clone(),
        ti.task_id.clone(),
        "--try".into(),
        ti.try_number.to_string(),
        "--map-index".into(),
        ti.map_index.to_string(),
    ]);
    argv
}

fn describe(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("the runner exited with code {code}"),
        (None, Some(signal)) => format!("the runner was killed by signal {signal}"),
        _ => "the runner ended".to_string(),
    }
}

fn with_tail(detail: String, tail: &str) -> String {
    if tail.is_empty() {
        detail
    } else {
        format!("{detail}: {tail}")
    }
}

/// The last lines of a runner's stderr, on one line.
fn read_tail(path: &std::path::Path) -> String {
    std::fs::read(path)
        .map(|b| crate::host::tail_line(&b))
        .unwrap_or_default()
}
