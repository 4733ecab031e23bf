//! `executor` and `[kubernetes]` in `dagctl.toml`: which executor runs task tries, and the Kubernetes
//! executor's settings, checked.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Deserialize;

/// `[kubernetes]` in `dagctl.toml`: the Kubernetes executor's settings (Airflow's `[kubernetes_executor]`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileKube {
    namespace: Option<String>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    pod_template_file: Option<PathBuf>,
    image: Option<String>,
    command: Option<Vec<String>>,
    execution_api_url: Option<String>,
    delete_worker_pods: Option<bool>,
    keep_failed_pods: Option<String>,
    worker_pods_pending_timeout: Option<String>,
    task_secrets: Option<Vec<String>>,
    task_service_accounts: Option<Vec<String>>,
}

/// Which executor runs task tries.
#[derive(Debug, Clone)]
pub enum ExecutorKind {
    /// Processes on this machine (the default).
    Local,
    /// Pods (`executor = "kubernetes"`).
    Kubernetes(Box<KubeSettings>),
}

/// The Kubernetes executor's settings, checked.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub namespace: String,
    /// None: the pod's own service account (in-cluster).
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub pod_template_file: Option<PathBuf>,
    pub image: Option<String>,
    pub command: Vec<String>,
    /// Where runners in pods reach the execution API (a Service address); None = `execution_api_url`.
    pub execution_api_url: Option<String>,
    pub delete_worker_pods: bool,
    pub keep_failed_pods: std::time::Duration,
    pub worker_pods_pending_timeout: std::time::Duration,
    /// Secrets and ServiceAccounts a task's `executor_config` may name (none unless listed).
    pub task_secrets: Vec<String>,
    pub task_service_accounts: Vec<String>,
}

/// `executor` and `[kubernetes]`: DAGCTL_EXECUTOR, DAGCTL_KUBECONFIG and DAGCTL_KUBERNETES_NAMESPACE win over the
/// file.
pub(super) fn load_executor(
    kind: Option<String>,
    kube: Option<FileKube>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<ExecutorKind> {
    let kind = env("DAGCTL_EXECUTOR").or(kind).unwrap_or_else(|| "local".into());
    match kind.trim().to_ascii_lowercase().as_str() {
        "local" | "localexecutor" => {
            if kube.is_some() {
                bail!("[kubernetes] settings are given but the executor is `local`: set executor = \"kubernetes\"");
            }
            Ok(ExecutorKind::Local)
        }
        "kubernetes" | "kubernetesexecutor" => {
            let kube = kube.unwrap_or_default();
            let duration = |key: &str, text: Option<String>, default: u64| {
                super::positive_duration(&format!("kubernetes.{key}"), text, default)
            };
            let namespace = env("DAGCTL_KUBERNETES_NAMESPACE")
                .or(kube.namespace)
                .unwrap_or_else(|| "default".into());
            let dns_label = namespace.len() <= 63
                && namespace
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && namespace.starts_with(|c: char| c.is_ascii_alphanumeric())
                && namespace.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !dns_label {
                bail!("kubernetes.namespace: `{namespace}` is not a namespace name (lowercase letters, digits and -)");
            }
            let command = kube.command.unwrap_or_else(|| vec!["dagctl".into()]);
            if command.is_empty() || command.iter().any(|part| part.is_empty()) {
                bail!("kubernetes.command: the runner's command in the image must be a non-empty list of words");
            }
            Ok(ExecutorKind::Kubernetes(Box::new(KubeSettings {
                namespace,
                kubeconfig: env("DAGCTL_KUBECONFIG").map(PathBuf::from).or(kube.kubeconfig),
                context: kube.context,
                pod_template_file: kube.pod_template_file,
                image: kube.image,
                command,
                execution_api_url: kube.execution_api_url.map(|u| u.trim_end_matches('/').to_string()),
                delete_worker_pods: kube.delete_worker_pods.unwrap_or(true),
                keep_failed_pods: duration("keep_failed_pods", kube.keep_failed_pods, 3600)?,
                worker_pods_pending_timeout: duration(
                    "worker_pods_pending_timeout",
                    kube.worker_pods_pending_timeout,
                    300,
                )?,
                task_secrets: kube.task_secrets.unwrap_or_default(),
                task_service_accounts: kube.task_service_accounts.unwrap_or_default(),
            })))
        }
        other => bail!("executor: `{other}` is not an executor (local or kubernetes)"),
    }
}
