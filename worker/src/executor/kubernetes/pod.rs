//! The pod of one try: the base pod template, the task's `executor_config` over it, and dagctl's own parts (the
//! runner command, the execution API's address and the try's token, labels, no restarts) over both.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use engine::executor_config::{is_label_value, ExecutorConfig};
use engine::store::TiRow;
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, Pod, PodSpec, ResourceRequirements, SecretEnvSource, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sha2::{Digest, Sha256};

/// The runner container's name (Airflow's pod template convention).
pub const BASE_CONTAINER: &str = "base";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "dagctl");
pub const LABEL_DAG: &str = "dagctl.io/dag-id";
pub const LABEL_TASK: &str = "dagctl.io/task-id";
pub const LABEL_RUN: &str = "dagctl.io/run-id";
pub const LABEL_TRY: &str = "dagctl.io/try-number";
pub const LABEL_MAP: &str = "dagctl.io/map-index";
pub const LABEL_TI: &str = "dagctl.io/ti-id";
pub const LABEL_SCHEDULER: &str = "dagctl.io/scheduler";

/// A base pod template file read and checked (a Pod manifest, YAML or JSON).
pub fn read_template(path: &Path) -> Result<Pod, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the pod template {}: {err}", path.display()))?;
    parse_template(&text).map_err(|err| format!("the pod template {} {err}", path.display()))
}

/// Reads a pod template: a Pod (`kind: Pod` when given), with unknown fields refused.
pub fn parse_template(text: &str) -> Result<Pod, String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|err| format!("is not YAML: {err}"))?;
    if let Some(kind) = value.get("kind").and_then(|k| k.as_str()) {
        if kind != "Pod" {
            return Err(format!("is a {kind}, not a Pod"));
        }
    }
    let pod: Pod = serde_path_to_error::deserialize(value.clone()).map_err(|err| {
        let path = err.path().to_string();
        format!("is not a valid Pod at `{path}`: {}", err.into_inner())
    })?;
    // k8s-openapi ignores fields it does not know: a misspelt field would silently do nothing.
    let back = serde_json::to_value(&pod).unwrap_or_default();
    if let Some(path) = first_unknown(&value, &back, String::new()) {
        return Err(format!("is not a valid Pod: unknown field `{path}`"));
    }
    Ok(pod)
}

/// The first path in `written` that did not survive a round trip through the typed Pod.
fn first_unknown(written: &serde_json::Value, typed: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    match (written, typed) {
        (Value::Object(written), Value::Object(typed)) => written.iter().find_map(|(key, value)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match typed.get(key) {
                None if value.is_null() || key == "apiVersion" || key == "kind" => None,
                None => Some(path),
                Some(typed) => first_unknown(value, typed, path),
            }
        }),
        (Value::Array(written), Value::Array(typed)) => written
            .iter()
            .zip(typed)
            .enumerate()
            .find_map(|(i, (w, t))| first_unknown(w, t, format!("{at}[{i}]"))),
        _ => None,
    }
}

/// What a try's pod is made from.
pub struct PodInputs<'a> {
    pub ti: &'a TiRow,
    pub template: &'a Pod,
    pub config: Option<&'a ExecutorConfig>,
    pub image: &'a str,
    pub command: &'a [String],
    pub runner_args: &'a [String],
    pub api_url: &'a str,
    pub token: &'a str,
    pub scheduler_id: &'a str,
    pub active_deadline: Option<Duration>,
}

/// The pod for one try. Its name is fixed by the try, so launching the same try twice finds the first pod.
pub fn build(inputs: &PodInputs<'_>) -> Pod {
    let ti = inputs.ti;
    let mut pod = inputs.template.clone();
    pod.metadata.name = Some(pod_name(ti));
    pod.metadata.generate_name = None;
    pod.metadata.namespace = None;
    pod.metadata.resource_version = None;
    pod.metadata.uid = None;
    pod.status = None;
    let mut spec = pod.spec.take().unwrap_or_default();
    let at = match spec.containers.iter().position(|c| c.name == BASE_CONTAINER) {
        Some(at) => at,
        None => {
            spec.containers.insert(
                0,
                Container {
                    name: BASE_CONTAINER.into(),
                    ..Container::default()
                },
            );
            0
        }
    };
    let config = inputs.config.cloned().unwrap_or_default();
    {
        let base = &mut spec.containers[at];
        if let Some(image) = &config.image {
            base.image = Some(image.clone());
        } else if base.image.as_deref().is_none_or(str::is_empty) {
            base.image = Some(inputs.image.to_string());
        }
        base.command = Some(inputs.command.to_vec());
        base.args = Some(inputs.runner_args.to_vec());
        let mut env: Vec<EnvVar> = base
            .env
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|var| var.name != crate::execution::API_URL_ENV && var.name != crate::execution::TOKEN_ENV)
            .collect();
        env.push(EnvVar {
            name: crate::execution::API_URL_ENV.into(),
            value: Some(inputs.api_url.to_string()),
            ..EnvVar::default()
        });
        env.push(EnvVar {
            name: crate::execution::TOKEN_ENV.into(),
            value: Some(inputs.token.to_string()),
            ..EnvVar::default()
        });
        base.env = Some(env);
        if !config.env_from_secrets.is_empty() {
            let from = base.env_from.get_or_insert_with(Vec::new);
            for name in &config.env_from_secrets {
                from.push(EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: name.clone(),
                        optional: None,
                    }),
                    ..EnvFromSource::default()
                });
            }
        }
        if let Some(resources) = &config.resources {
            let current = base.resources.get_or_insert_with(ResourceRequirements::default);
            let merge = |into: &mut Option<BTreeMap<String, Quantity>>, from: &BTreeMap<String, String>| {
                if !from.is_empty() {
                    let map = into.get_or_insert_with(BTreeMap::new);
                    for (name, quantity) in from {
                        map.insert(name.clone(), Quantity(quantity.clone()));
                    }
                }
            };
            merge(&mut current.requests, &resources.requests);
            merge(&mut current.limits, &resources.limits);
        }
    }
    spec.restart_policy = Some("Never".into());
    if let Some(deadline) = inputs.active_deadline {
        spec.active_deadline_seconds = Some(deadline.as_secs().max(1) as i64);
    }
    // Task pods need no Kubernetes credentials unless their template asks for them, or the task names one of
    // the ServiceAccounts `task_service_accounts` allows: then that account's own automount setting decides (the
    // chart's chain account mounts its token; the plain task account does not).
    if spec.automount_service_account_token.is_none() {
        spec.automount_service_account_token = Some(false);
    }
    if let Some(account) = &config.service_account_name {
        spec.service_account_name = Some(account.clone());
        spec.automount_service_account_token = None;
    }
    if !config.node_selector.is_empty() {
        let selector = spec.node_selector.get_or_insert_with(BTreeMap::new);
        selector.extend(config.node_selector.clone());
    }
    if !config.tolerations.is_empty() {
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        tolerations.extend(config.tolerations.iter().map(|t| Toleration {
            key: t.key.clone(),
            operator: t.operator.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
            toleration_seconds: t.toleration_seconds,
        }));
    }
    pod.spec = Some(spec);
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(config.labels.clone());
    labels.extend(try_labels(ti, inputs.scheduler_id));
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.extend(config.annotations.clone());
    annotations.insert(LABEL_DAG.into(), ti.dag_id.clone());
    annotations.insert(LABEL_RUN.into(), ti.run_id.clone());
    annotations.insert(LABEL_TASK.into(), ti.task_id.clone());
    pod
}

/// dagctl's labels of a try's pod (ids hashed to fit a label value where they do not; the map index only for
/// an instance of a mapped task).
pub fn try_labels(ti: &TiRow, scheduler_id: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (LABEL_DAG.to_string(), safe_label(&ti.dag_id)),
        (LABEL_TASK.to_string(), safe_label(&ti.task_id)),
        (LABEL_RUN.to_string(), safe_label(&ti.run_id)),
        (LABEL_TRY.to_string(), ti.try_number.to_string()),
        (LABEL_TI.to_string(), ti.id.to_string()),
        (LABEL_SCHEDULER.to_string(), safe_label(scheduler_id)),
    ]);
    // Only instances of mapped tasks have an index (a label value cannot begin with `-`).
    if ti.map_index >= 0 {
        labels.insert(LABEL_MAP.to_string(), ti.map_index.to_string());
    }
    labels
}

/// A label value for any text: itself when it is one, else its allowed characters (at most 54) and a hash, as
/// Airflow's `make_safe_label_value`.
pub fn safe_label(text: &str) -> String {
    if is_label_value(text) {
        return text.to_string();
    }
    let kept: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let kept = kept.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut kept: String = kept.chars().take(54).collect();
    while kept.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        kept.pop();
    }
    let hash = short_hash(text, 8);
    if kept.is_empty() {
        hash
    } else {
        format!("{kept}-{hash}")
    }
}

/// The try's pod name: a DNS label (at most 63 of `a-z0-9-`) from its DAG and task, and a hash of the whole
/// try's key (with the task instance's uuid).
pub fn pod_name(ti: &TiRow) -> String {
    let readable: String = format!("{}-{}", ti.dag_id, ti.task_id)
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut readable: String = readable
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
        .chars()
        .take(46)
        .collect();
    while readable.ends_with('-') {
        readable.pop();
    }
    // The task instance's uuid makes names differ between installations (or a reset database) sharing a
    // namespace.
    let key = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        ti.uuid, ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number
    );
    let hash = short_hash(&key, 16);
    if readable.is_empty() {
        format!("dagctl-{hash}")
    } else {
        format!("{readable}-{hash}")
    }
}

fn short_hash(text: &str, len: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(digest)[..len].to_string()
}

/// The default base pod when no template is configured: one `base` container, no restarts.
pub fn default_template() -> Pod {
    Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: BASE_CONTAINER.into(),
                ..Container::default()
            }],
            restart_policy: Some("Never".into()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::state::TaskState;

    fn ti() -> TiRow {
        TiRow {
            id: 42,
            dag_id: "chaos-ibft".into(),
            run_id: "manual__2026-12-05T03:00:00+00:00".into(),
            task_id: "crash_f".into(),
            map_index: -1,
            try_number: 2,
            state: TaskState::Queued,
            uuid: String::new(),
            run_pk: 1,
            max_tries: 3,
            operator: "bash".into(),
            pool: "default_pool".into(),
            pool_slots: 1,
            priority_weight: 1,
            queued_at: None,
            start_date: None,
            end_date: None,
            hostname: None,
            pid: None,
            scheduler_id: None,
            heartbeat_at: None,
            next_retry_at: None,
            message: None,
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn names_and_labels_fit_kubernetes_rules() {
        let ti = ti();
        let name = pod_name(&ti);
        assert!(name.starts_with("chaos-ibft-crash-f-"), "{name}");
        assert!(name.len() <= 63);
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        let mut other = ti.clone();
        other.try_number = 3;
        assert_ne!(pod_name(&other), name, "each try has its own pod");
        let long = TiRow {
            dag_id: "D".repeat(200),
            task_id: "é".repeat(90),
            ..ti.clone()
        };
        assert!(pod_name(&long).len() <= 63);
        for value in try_labels(&long, "host-1-2-abc").values() {
            assert!(is_label_value(value), "{value}");
        }
        let run = safe_label(&ti.run_id);
        assert!(
            is_label_value(&run) && run.starts_with("manual__2026-12-05T03-00-00-00-00-"),
            "{run}"
        );
        assert_ne!(
            safe_label("a:b"),
            safe_label("a+b"),
            "distinct ids keep distinct labels"
        );
        assert_eq!(safe_label("plain-id"), "plain-id");
        assert!(is_label_value(&safe_label("::::")));
    }

    #[test]
    fn the_task_config_goes_over_the_template_and_dagctl_over_both() {
        let template = parse_template(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {team: qa, dagctl.io/ti-id: forged}\nspec:\n  containers:\n  - name: base\n    image: registry.example/dagctl@sha256:aa\n    env: [{name: DAGCTL_TASK_TOKEN, value: forged}, {name: KEEP, value: '1'}]\n  - name: sidecar\n    image: busybox\n  nodeSelector: {zone: a}\n",
        )
        .unwrap();
        let config = ExecutorConfig::from_json(serde_json::json!({
            "resources": {"limits": {"memory": "1Gi"}},
            "node_selector": {"pool": "load"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "service_account_name": "runner",
            "env_from_secrets": ["rpc-keys"],
            "labels": {"cost": "nightly"},
        }))
        .unwrap();
        let ti = ti();
        let args = vec!["tasks".to_string(), "run".into()];
        let pod = build(&PodInputs {
            ti: &ti,
            template: &template,
            config: Some(&config),
            image: "fallback",
            command: &["dagctl".to_string()],
            runner_args: &args,
            api_url: "http://dagctl-api:8793",
            token: "tok",
            scheduler_id: "s1",
            active_deadline: Some(Duration::from_secs(90)),
        });
        let spec = pod.spec.as_ref().unwrap();
        let base = &spec.containers[0];
        assert_eq!(base.image.as_deref(), Some("registry.example/dagctl@sha256:aa"));
        assert_eq!(base.command.as_deref(), Some(&["dagctl".to_string()][..]));
        let env: BTreeMap<_, _> = base
            .env
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v.value.as_deref()))
            .collect();
        assert_eq!(env["DAGCTL_TASK_TOKEN"], Some("tok"));
        assert_eq!(env["KEEP"], Some("1"));
        assert_eq!(env[crate::execution::API_URL_ENV], Some("http://dagctl-api:8793"));
        assert_eq!(
            base.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "1Gi"
        );
        assert_eq!(spec.containers[1].name, "sidecar");
        assert_eq!(spec.node_selector.as_ref().unwrap().len(), 2);
        assert_eq!(spec.service_account_name.as_deref(), Some("runner"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.active_deadline_seconds, Some(90));
        // A task that names an allowed account gets that account's own token setting.
        assert_eq!(spec.automount_service_account_token, None);
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_TI], "42", "dagctl's labels win over the template's");
        assert_eq!(labels["team"], "qa");
        assert_eq!(labels["cost"], "nightly");
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()[LABEL_RUN], ti.run_id);
        let image_override = ExecutorConfig {
            image: Some("other:1".into()),
            ..ExecutorConfig::default()
        };
        let pod = build(&PodInputs {
            config: Some(&image_override),
            ..PodInputs {
                ti: &ti,
                template: &default_template(),
                config: None,
                image: "fallback",
                command: &[],
                runner_args: &[],
                api_url: "",
                token: "",
                scheduler_id: "",
                active_deadline: None,
            }
        });
        assert_eq!(pod.spec.unwrap().containers[0].image.as_deref(), Some("other:1"));
    }

    #[test]
    fn templates_that_are_not_pods_are_refused_with_the_field() {
        let err = parse_template("kind: Deployment\n").unwrap_err();
        assert!(err.contains("is a Deployment, not a Pod"), "{err}");
        let err = parse_template("spec:\n  containers:\n  - name: base\n    imagee: x\n").unwrap_err();
        assert!(err.contains("unknown field `spec.containers[0].imagee`"), "{err}");
        let err = parse_template("spec:\n  containers: 3\n").unwrap_err();
        assert!(err.contains("spec.containers"), "{err}");
        let err = parse_template("spec: [\n").unwrap_err();
        assert!(err.contains("is not YAML"), "{err}");
    }
}
