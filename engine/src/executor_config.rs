//! A task's `executor_config`: where and with what its tries run, as Airflow's `executor_config` carries a pod
//! override for the KubernetesExecutor. Checked when the DAG file is loaded (unknown keys and bad values are
//! import errors naming the key), stored with the DAG version and handed to the executor at each launch. The
//! local executor runs tries on this machine and ignores it; the Kubernetes executor turns it into the try's
//! pod (over the base pod template).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Per-task overrides of the executor's base pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    /// The runner container's image (a digest pin `repo@sha256:...` is advised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A pod template file other than the executor's base one (Airflow's `pod_template_file`), read at launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_file: Option<String>,
    /// Resource requests and limits of the runner container (`cpu: 500m`, `memory: 1Gi`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secrets whose every key becomes an environment variable of the runner container (`envFrom`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from_secrets: Vec<String>,
    /// Added to the pod's labels (dagctl's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// A toleration, in Kubernetes' words (`operator` Equal or Exists, `effect` NoSchedule, PreferNoSchedule or
/// NoExecute).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// A bad value: the key path (`resources.limits.cpu`) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl ExecutorConfig {
    /// Reads and checks an `executor_config` mapping.
    pub fn from_json(value: serde_json::Value) -> Result<ExecutorConfig, ConfigIssue> {
        let config: ExecutorConfig = serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner().to_string();
            let message = match inner.split_once("unknown field `") {
                Some((_, rest)) => {
                    let field = rest.split('`').next().unwrap_or_default();
                    let expected = inner
                        .split_once(", expected ")
                        .map(|(_, list)| format!(": expected {}", list.replace('`', "")))
                        .unwrap_or_default();
                    format!("unknown key `{field}` in executor_config{expected}")
                }
                None => inner,
            };
            ConfigIssue {
                key: if path == "." { String::new() } else { path },
                message,
            }
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigIssue> {
        let issue = |key: String, message: String| Err(ConfigIssue { key, message });
        if let Some(image) = &self.image {
            if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
                return issue("image".into(), format!("`{image}` is not an image reference"));
            }
        }
        if let Some(resources) = &self.resources {
            for (kind, map) in [("requests", &resources.requests), ("limits", &resources.limits)] {
                for (name, quantity) in map {
                    if !is_quantity(quantity) {
                        return issue(
                            format!("resources.{kind}.{name}"),
                            format!("`{quantity}` is not a quantity (e.g. 500m, 2, 1Gi, 512M)"),
                        );
                    }
                }
            }
        }
        for (index, toleration) in self.tolerations.iter().enumerate() {
            if let Some(op) = &toleration.operator {
                if op != "Equal" && op != "Exists" {
                    return issue(
                        format!("tolerations[{index}].operator"),
                        format!("`{op}` is not Equal or Exists"),
                    );
                }
            }
            if let Some(effect) = &toleration.effect {
                if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect.as_str()) {
                    return issue(
                        format!("tolerations[{index}].effect"),
                        format!("`{effect}` is not NoSchedule, PreferNoSchedule or NoExecute"),
                    );
                }
            }
        }
        for (key, map) in [("labels", &self.labels), ("annotations", &self.annotations)] {
            for name in map.keys() {
                if name.is_empty() || name.len() > 317 || name.chars().any(|c| c.is_whitespace()) {
                    return issue(format!("{key}.{name}"), format!("`{name}` is not a {key} key"));
                }
            }
        }
        for (name, value) in &self.labels {
            if !is_label_value(value) {
                return issue(
                    format!("labels.{name}"),
                    format!(
                        "`{value}` is not a label value (at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)"
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Kubernetes' quantity grammar, loosely: a decimal number with an optional SI or binary suffix or exponent.
fn is_quantity(text: &str) -> bool {
    let number_end = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == '+' || *c == '-'))
        .map(|(at, _)| at)
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let digits = number.strip_prefix(['+', '-']).unwrap_or(number);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') || digits.parse::<f64>().is_err() {
        return false;
    }
    const SUFFIXES: &[&str] = &[
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    SUFFIXES.contains(&suffix)
        || (suffix.len() > 1 && suffix.starts_with(['e', 'E']) && {
            let exponent = &suffix[1..];
            let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            !exponent.is_empty() && exponent.chars().all(|c| c.is_ascii_digit())
        })
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9._-]` beginning and ending alphanumeric.
pub fn is_label_value(text: &str) -> bool {
    text.is_empty()
        || (text.len() <= 63
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_config_reads_and_round_trips() {
        let value = json!({
            "image": "ghcr.io/example/dagctl@sha256:abc",
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi", "cpu": "1e3"}},
            "node_selector": {"pool": "load"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "load", "effect": "NoSchedule"}],
            "service_account_name": "runner",
            "env_from_secrets": ["rpc-keys"],
            "labels": {"team": "qa"},
            "annotations": {"example.com/note": "any text at all"},
        });
        let config = ExecutorConfig::from_json(value.clone()).unwrap();
        assert_eq!(config.node_selector["pool"], "load");
        assert_eq!(serde_json::to_value(&config).unwrap(), value);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_their_key() {
        let issue = ExecutorConfig::from_json(json!({"imagee": "x"})).unwrap_err();
        assert!(issue.message.contains("unknown key `imagee`"), "{issue:?}");
        assert!(
            issue.message.contains("expected one of image, pod_template_file"),
            "{issue:?}"
        );
        assert_eq!(issue.key, "imagee");
        let issue = ExecutorConfig::from_json(json!({"resources": {"limits": {"cpu": "lots"}}})).unwrap_err();
        assert_eq!(issue.key, "resources.limits.cpu");
        let issue = ExecutorConfig::from_json(json!({"resources": {"limit": {}}})).unwrap_err();
        assert_eq!(issue.key, "resources.limit");
        assert!(issue.message.contains("unknown key `limit`"), "{issue:?}");
        let issue = ExecutorConfig::from_json(json!({"tolerations": [{"operator": "Maybe"}]})).unwrap_err();
        assert_eq!(issue.key, "tolerations[0].operator");
        let issue = ExecutorConfig::from_json(json!({"labels": {"run": "a:b"}})).unwrap_err();
        assert_eq!(issue.key, "labels.run");
        let issue = ExecutorConfig::from_json(json!({"node_selector": ["x"]})).unwrap_err();
        assert_eq!(issue.key, "node_selector");
    }

    #[test]
    fn quantities() {
        for good in ["1", "500m", "1.5", "2Gi", "512M", "1e3", "0.5Ki"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "lots", "1GB", "Gi", "1 Gi", "--1"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
