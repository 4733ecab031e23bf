//! The Kubernetes executor: every try is a pod running `dagctl tasks run DAG RUN TASK --try N --map-index M`
//! with that try's token, in one namespace, within a `parallelism` limit. One watch (not polling) on dagctl's
//! pods tells how each ends; a pod that fails before its runner could report (image pull, OOM kill,
//! eviction, deadline, pending too long) ends its try with the pod's reason in the try's log. Pods are named
//! after their try, so a relaunch finds the first pod, and a scheduler that starts after another died adopts
//! that one's pods from the same watch. Finished pods are deleted by policy (succeeded at once, failed after
//! `keep_failed`).

pub mod pod;
mod status;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::store::TiRow;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

use super::{Adoption, Executor, ExecutorEvent, LaunchRequest};
use crate::execution::TokenMinter;
use crate::log::{LogLine, TaskLogs, TryKey};

/// A pod may run this much past its task's `execution_timeout` before it is stopped (its runner enforces the
/// timeout itself).
const OVERRUN: Duration = Duration::from_secs(120);
/// Lifetime of a try's token when the task has no `execution_timeout`.
const TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Attempts to create a pod while the API server is unreachable or overloaded, with backoff between them.
const CREATE_ATTEMPTS: u32 = 6;
/// The longest any one API call (other than the watch) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// An API call bounded by [`CALL_TIMEOUT`] (kube's client has no read timeout of its own).
async fn timed<T>(call: impl std::future::Future<Output = kube::Result<T>>) -> kube::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(kube::Error::Service(
            format!("no answer in {}s", CALL_TIMEOUT.as_secs()).into(),
        )),
    }
}

/// How the Kubernetes executor is set up (read once from dagctl's configuration).
#[derive(Debug, Clone)]
pub struct KubeOptions {
    pub namespace: String,
    pub parallelism: usize,
    /// The runner image when neither the pod template nor the task names one.
    pub image: String,
    /// The base pod (from the `pod_template_file`, else one `base` container).
    pub template: Pod,
    /// The runner's command in the image (`dagctl tasks run` follows it as arguments).
    pub command: Vec<String>,
    /// Where runners in pods reach the task execution API (a Service address).
    pub api_url: String,
    pub scheduler_id: String,
    /// This engine's host (another engine on the same host is checked by pid).
    pub hostname: String,
    /// Delete a pod as soon as its try succeeded.
    pub delete_succeeded: bool,
    /// Keep a failed pod this long (for `kubectl describe` and its log), then delete it.
    pub keep_failed: Duration,
    /// A pod still pending after this long (unschedulable, image never pulled) fails its try.
    pub pending_timeout: Duration,
    /// Grace period when a try's pod is stopped.
    pub kill_grace: Duration,
    /// Where per-task `pod_template_file` paths are relative to (the DAGs folder).
    pub templates_dir: PathBuf,
    /// Secrets a task's `executor_config.env_from_secrets` may name (none by default: the engine's own Secret
    /// sits in the same namespace).
    pub task_secrets: Vec<String>,
    /// ServiceAccounts a task's `executor_config.service_account_name` may name (none by default).
    pub task_service_accounts: Vec<String>,
}

/// What a DAG author may ask of the cluster through `executor_config`: only the Secrets and ServiceAccounts the
/// operator allowed, and pod templates inside the DAGs folder.
fn check_allowed(options: &KubeOptions, config: &engine::executor_config::ExecutorConfig) -> Result<(), String> {
    for secret in &config.env_from_secrets {
        if !options.task_secrets.contains(secret) {
            return Err(format!(
                "executor_config.env_from_secrets names `{secret}`, which [kubernetes] task_secrets does not allow"
            ));
        }
    }
    if let Some(account) = &config.service_account_name {
        if !options.task_service_accounts.contains(account) {
            return Err(format!(
                "executor_config.service_account_name `{account}` is not one [kubernetes] task_service_accounts allows"
            ));
        }
    }
    if let Some(file) = &config.pod_template_file {
        let path = std::path::Path::new(file);
        let inside = path
            .components()
            .all(|part| matches!(part, std::path::Component::Normal(_) | std::path::Component::CurDir));
        if !inside {
            return Err(format!(
                "executor_config.pod_template_file `{file}` must be a path inside the DAGs folder"
            ));
        }
    }
    Ok(())
}

/// One try this executor watches.
#[derive(Debug, Clone)]
struct Tracked {
    ti: TiRow,
    pod: String,
    since: Instant,
    /// The pod was created (or found): its absence now means it is gone.
    created: bool,
    /// Its pod was last seen pending.
    pending: bool,
    deadline: Option<Instant>,
    /// Why it is ending, once dagctl decided it is (later events of its pod then change nothing).
    ending: Option<String>,
    /// Its failed pod's reason and log are being copied into its log; that task ends it.
    collecting: bool,
}

pub(crate) struct Inner {
    options: KubeOptions,
    pods: Api<Pod>,
    minter: Arc<dyn TokenMinter>,
    logs: Arc<dyn TaskLogs>,
    events: mpsc::UnboundedSender<ExecutorEvent>,
    running: Mutex<HashMap<i64, Tracked>>,
    /// Per-task pod templates read so far, by path.
    templates: Mutex<HashMap<PathBuf, Pod>>,
    /// The watch's view: pod name -> (ti id, try), for pods dagctl made in this namespace.
    known: Mutex<HashMap<String, (i64, i64)>>,
    /// Whether the watch has listed every pod once.
    synced: std::sync::atomic::AtomicBool,
}

/// Runs task tries as pods.
#[derive(Clone)]
pub struct KubeExecutor {
    inner: Arc<Inner>,
}

impl KubeExecutor {
    /// Starts the executor's watch on the namespace's dagctl pods (it stops when the executor is dropped).
    pub fn new(
        options: KubeOptions,
        client: kube::Client,
        minter: Arc<dyn TokenMinter>,
        logs: Arc<dyn TaskLogs>,
    ) -> (KubeExecutor, mpsc::UnboundedReceiver<ExecutorEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let pods = Api::namespaced(client, &options.namespace);
        let inner = Arc::new(Inner {
            options,
            pods,
            minter,
            logs,
            events,
            running: Mutex::new(HashMap::new()),
            templates: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            synced: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(watch::run(Arc::downgrade(&inner)));
        (KubeExecutor { inner }, receiver)
    }

    pub fn options(&self) -> &KubeOptions {
        &self.inner.options
    }
}

/// A client for the API server: from a kubeconfig file (and context) when one is given, else the pod's own
/// service account (in-cluster).
pub async fn client(kubeconfig: Option<&std::path::Path>, context: Option<&str>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|err| format!("cannot read the kubeconfig {}: {err}", path.display()))?;
            let options = kube::config::KubeConfigOptions {
                context: context.map(str::to_string),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|err| format!("the kubeconfig {} cannot be used: {err}", path.display()))?
        }
        None => kube::Config::incluster().map_err(|err| {
            format!("no kubeconfig is configured and this is not a pod with a service account: {err}")
        })?,
    };
    kube::Client::try_from(config).map_err(|err| format!("cannot make a Kubernetes client: {err}"))
}

impl Inner {
    fn note(&self, ti: &TiRow, level: &str, text: &str) {
        let key = TryKey::of(ti, ti.try_number);
        let _ = self
            .logs
            .append(&key, &[LogLine::now(level, "dagctl.executor.kubernetes", text)]);
    }

    /// Tells the scheduler a try's pod is gone (the event is sent before the try leaves the running set).
    /// Under one lock, so a try ends once whichever path sees its end first.
    fn finish(&self, ti_id: i64, detail: String) {
        let Ok(mut running) = self.running.lock() else { return };
        let Some(tracked) = running.get(&ti_id) else { return };
        let _ = self.events.send(ExecutorEvent::Exited {
            ti_id,
            try_number: tracked.ti.try_number,
            pid: None,
            detail,
        });
        running.remove(&ti_id);
    }

    fn tracked(&self, ti_id: i64) -> Option<Tracked> {
        self.running.lock().ok()?.get(&ti_id).cloned()
    }

    fn mark_created(&self, ti_id: i64) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(tracked) = running.get_mut(&ti_id) {
                tracked.created = true;
            }
        }
    }

    /// The base pod of a task: its own `pod_template_file`, else the executor's.
    fn template_for(&self, request: &LaunchRequest) -> Result<Pod, String> {
        let Some(file) = request
            .executor_config
            .as_ref()
            .and_then(|c| c.pod_template_file.as_ref())
        else {
            return Ok(self.options.template.clone());
        };
        let path = self.options.templates_dir.join(file);
        if let Some(pod) = self.templates.lock().ok().and_then(|t| t.get(&path).cloned()) {
            return Ok(pod);
        }
        let pod = pod::read_template(&path)?;
        if let Ok(mut templates) = self.templates.lock() {
            templates.insert(path, pod.clone());
        }
        Ok(pod)
    }

    async fn launch(self: Arc<Self>, request: LaunchRequest) {
        let ti = &request.ti;
        if let Some(config) = &request.executor_config {
            if let Err(refused) = check_allowed(&self.options, config) {
                self.note(ti, "error", &refused);
                return self.finish(ti.id, refused);
            }
        }
        let template = match self.template_for(&request) {
            Ok(template) => template,
            Err(err) => {
                self.note(ti, "error", &err);
                return self.finish(ti.id, err);
            }
        };
        let ttl = request
            .execution_timeout
            .map(|t| t + OVERRUN + Duration::from_secs(3600))
            .unwrap_or(TOKEN_TTL);
        let token = self.minter.mint(ti.id, ti.try_number, ttl);
        let mut args = super::local::runner_argv(ti);
        // The pod's own log (`kubectl logs`, and the lines copied into the try's log when a pod fails) holds
        // the try's log.
        args.push("--log-to-stdout".into());
        let pod = pod::build(&pod::PodInputs {
            ti,
            template: &template,
            config: request.executor_config.as_ref(),
            image: &self.options.image,
            command: &self.options.command,
            runner_args: &args,
            api_url: &self.options.api_url,
            token: &token,
            scheduler_id: &self.options.scheduler_id,
            active_deadline: request.execution_timeout.map(|t| t + OVERRUN),
        });
        let name = pod::pod_name(ti);
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=CREATE_ATTEMPTS {
            let created = match tokio::time::timeout(CALL_TIMEOUT, self.pods.create(&PostParams::default(), &pod)).await
            {
                Ok(result) => result,
                Err(_) => Err(kube::Error::Service(
                    format!("no answer in {}s", CALL_TIMEOUT.as_secs()).into(),
                )),
            };
            match created {
                Ok(_) => break,
                // A pod of that name exists: made by an earlier launch of this try (before a restart), which is
                // watched from its current state; or not this try's at all, which fails the try.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let found = match timed(self.pods.get_opt(&name)).await {
                        Ok(Some(found)) => found,
                        _ => {
                            let detail = format!("a pod named {name} exists but could not be read");
                            self.note(ti, "error", &detail);
                            return self.finish(ti.id, detail);
                        }
                    };
                    if status::try_of(&found) != Some((ti.id, ti.try_number)) {
                        let detail = format!("a pod named {name} exists and is not this try's");
                        self.note(ti, "error", &detail);
                        return self.finish(ti.id, detail);
                    }
                    self.note(ti, "info", &format!("the try's pod {name} already exists: watching it"));
                    self.mark_created(ti.id);
                    let _ = self.events.send(ExecutorEvent::Started {
                        ti_id: ti.id,
                        pid: None,
                    });
                    return self.observe(&found).await;
                }
                Err(err) if attempt < CREATE_ATTEMPTS && retriable(&err) => {
                    tracing::warn!(pod = %name, attempt, error = %err, "creating a task pod failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(err) => {
                    let detail = format!(
                        "the API server did not take the try's pod {name}: {}",
                        describe_error(&err)
                    );
                    self.note(ti, "error", &detail);
                    return self.finish(ti.id, detail);
                }
            }
        }
        self.mark_created(ti.id);
        let _ = self.events.send(ExecutorEvent::Started {
            ti_id: ti.id,
            pid: None,
        });
    }

    /// Deletes a try's pod (its Delete event ends the try if its runner did not report first).
    async fn delete_pod(&self, name: &str, grace: Duration) {
        let params = DeleteParams {
            grace_period_seconds: Some(grace.as_secs() as u32),
            ..DeleteParams::default()
        };
        match timed(self.pods.delete(name, &params)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => tracing::warn!(pod = %name, error = %err, "could not delete a task pod"),
        }
    }
}

/// Errors worth another try: the server unreachable, overloaded or timing out.
fn retriable(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// An API error in a line: the server's own message when it gave one.
fn describe_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

impl Executor for KubeExecutor {
    fn open_slots(&self) -> usize {
        let running = self.inner.running.lock().map(|r| r.len()).unwrap_or(usize::MAX);
        self.inner.options.parallelism.saturating_sub(running)
    }

    fn running_ids(&self) -> Vec<i64> {
        self.inner
            .running
            .lock()
            .map(|running| running.keys().copied().collect())
            .unwrap_or_default()
    }

    fn launch(&self, request: LaunchRequest) {
        let ti = &request.ti;
        let deadline = request.execution_timeout.map(|t| Instant::now() + t + OVERRUN);
        if let Ok(mut running) = self.inner.running.lock() {
            running.insert(
                ti.id,
                Tracked {
                    ti: ti.clone(),
                    pod: pod::pod_name(ti),
                    since: Instant::now(),
                    created: false,
                    pending: true,
                    deadline,
                    ending: None,
                    collecting: false,
                },
            );
        }
        tokio::spawn(Arc::clone(&self.inner).launch(request));
    }

    /// Deletes the try's pod unless it ends on its own within the grace period: the scheduler also stops tries
    /// whose runner has just reported (their pod is ending and is kept by policy), and a runner whose try was
    /// changed from outside stops itself at its next heartbeat.
    fn cancel(&self, ti_id: i64) {
        let Some(tracked) = self.inner.tracked(ti_id) else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(inner.options.kill_grace).await;
            if inner.tracked(ti_id).is_some_and(|now| now.pod == tracked.pod) {
                inner.delete_pod(&tracked.pod, inner.options.kill_grace).await;
            }
        });
    }

    /// Watches the pod of a try another scheduler started. Its state comes from the watch: when the watch has
    /// listed the namespace and the pod is not there, it is gone at once; else it is watched, and a pod found
    /// missing later ends the try.
    fn adopt(&self, ti: &TiRow) -> Adoption {
        let name = pod::pod_name(ti);
        let synced = self.inner.synced.load(std::sync::atomic::Ordering::Acquire);
        let known = self.inner.known.lock().map(|k| k.contains_key(&name)).unwrap_or(false);
        if synced && !known {
            return Adoption::Gone(format!("its pod {name} does not exist"));
        }
        if let Ok(mut running) = self.inner.running.lock() {
            running.insert(
                ti.id,
                Tracked {
                    ti: ti.clone(),
                    pod: name.clone(),
                    since: Instant::now(),
                    created: true,
                    pending: false,
                    deadline: None,
                    ending: None,
                    collecting: false,
                },
            );
        }
        // The pod is now this scheduler's (best effort: the label is for people and selectors, not for dagctl).
        let inner = Arc::clone(&self.inner);
        let scheduler = pod::safe_label(&inner.options.scheduler_id);
        tokio::spawn(async move {
            let patch = serde_json::json!({"metadata": {"labels": {pod::LABEL_SCHEDULER: scheduler}}});
            let _ = timed(inner.pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))).await;
            // Its current state, should the watch have seen its end before this scheduler tracked it.
            if let Ok(Some(found)) = timed(inner.pods.get_opt(&name)).await {
                inner.observe(&found).await;
            }
        });
        Adoption::Watching
    }

    /// Told for an engine on this same host (pod or machine) only.
    fn engine_process_alive(&self, hostname: &str, pid: u32) -> Option<bool> {
        (hostname == self.inner.options.hostname).then(|| std::path::Path::new(&format!("/proc/{pid}")).exists())
    }

    /// Runners in pods reach the execution API through one Service address, whichever engines live.
    fn set_peer_engines(&self, _urls: Vec<String>) {}

    fn can_adopt(&self, _ti: &TiRow) -> bool {
        true
    }
}
