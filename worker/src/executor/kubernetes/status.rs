//! What a pod's status means for its try.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::pod::{BASE_CONTAINER, LABEL_TI, LABEL_TRY};

/// Waiting reasons of a container that will not start by waiting longer: the try fails at once.
const HOPELESS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A pod's state, as its try sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PodState {
    /// Not running yet; why, when the pod says (`Unschedulable: 0/3 nodes are available ...`).
    Pending(Option<String>),
    /// Pending and never going to start (image cannot be pulled, bad configuration).
    Hopeless(String),
    Running,
    Succeeded(String),
    Failed(String),
}

/// The try a dagctl pod runs: (task instance id, try number), from its labels.
pub(super) fn try_of(pod: &Pod) -> Option<(i64, i64)> {
    let labels = pod.metadata.labels.as_ref()?;
    Some((
        labels.get(LABEL_TI)?.parse().ok()?,
        labels.get(LABEL_TRY)?.parse().ok()?,
    ))
}

pub(super) fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

pub(super) fn state(pod: &Pod) -> PodState {
    let name = name_of(pod);
    let status = pod.status.clone().unwrap_or_default();
    let base: Option<ContainerStatus> = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == BASE_CONTAINER)
        .or_else(|| status.container_statuses.iter().flatten().next())
        .cloned();
    let with = |text: &str, extra: Option<&String>| match extra.filter(|m| !m.is_empty()) {
        Some(extra) => format!("{text}: {extra}"),
        None => text.to_string(),
    };
    match status.phase.as_deref() {
        Some("Succeeded") => PodState::Succeeded(format!("its pod {name} succeeded{}", container_end(base.as_ref()))),
        Some("Failed") => {
            let mut detail = format!("its pod {name} failed");
            if let Some(reason) = &status.reason {
                detail = with(&format!("{detail}: {reason}"), status.message.as_ref());
            }
            detail.push_str(&container_end(base.as_ref()));
            PodState::Failed(detail)
        }
        Some("Running") => PodState::Running,
        _ => {
            let waiting = base
                .as_ref()
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref());
            if let Some(waiting) = waiting {
                if let Some(reason) = waiting.reason.as_deref().filter(|r| HOPELESS.contains(r)) {
                    return PodState::Hopeless(with(
                        &format!("its pod {name} cannot start its container: {reason}"),
                        waiting.message.as_ref(),
                    ));
                }
            }
            let unscheduled = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .map(|c| with(c.reason.as_deref().unwrap_or("not scheduled"), c.message.as_ref()));
            let waiting = waiting.and_then(|w| w.reason.clone().map(|r| with(&r, w.message.as_ref())));
            PodState::Pending(unscheduled.or(waiting))
        }
    }
}

/// `; container base: OOMKilled (exit code 137)`, from the runner container's end.
fn container_end(container: Option<&ContainerStatus>) -> String {
    let Some(ended) = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
    else {
        return String::new();
    };
    let mut text = format!(
        "; container {}: ",
        container.map(|c| c.name.as_str()).unwrap_or(BASE_CONTAINER)
    );
    text.push_str(ended.reason.as_deref().unwrap_or("terminated"));
    text.push_str(&format!(" (exit code {}", ended.exit_code));
    if let Some(signal) = ended.signal {
        text.push_str(&format!(", signal {signal}"));
    }
    text.push(')');
    if let Some(message) = ended.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(&format!(": {message}"));
    }
    text
}

/// When a finished pod's container ended (else when the pod was made), for the clean-up policy.
pub(super) fn ended_at(pod: &Pod) -> Option<chrono::DateTime<chrono::Utc>> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| {
            all.iter()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
        })
        .or_else(|| pod.metadata.creation_timestamp.clone())
        .and_then(|time| chrono::DateTime::from_timestamp(time.0.as_second(), time.0.subsec_nanosecond().max(0) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {LABEL_TI: "7", LABEL_TRY: "2"}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn failures_keep_their_reason() {
        let oom = pod(
            serde_json::json!({"phase": "Failed", "containerStatuses": [{"name": "base", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(
            state(&oom),
            PodState::Failed("its pod p failed; container base: OOMKilled (exit code 137)".into())
        );
        assert_eq!(try_of(&oom), Some((7, 2)));
        let evicted = pod(serde_json::json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}));
        assert_eq!(
            state(&evicted),
            PodState::Failed("its pod p failed: Evicted: The node was low on resource: memory.".into())
        );
        let deadline = pod(serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}));
        assert!(matches!(state(&deadline), PodState::Failed(d) if d.contains("DeadlineExceeded")));
        let pull = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "base", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}}}]}),
        );
        assert_eq!(
            state(&pull),
            PodState::Hopeless(
                "its pod p cannot start its container: ImagePullBackOff: Back-off pulling image \"nope\"".into()
            )
        );
        let unschedulable = pod(
            serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"}]}),
        );
        assert_eq!(
            state(&unschedulable),
            PodState::Pending(Some("Unschedulable: 0/1 nodes are available".into()))
        );
        assert_eq!(state(&pod(serde_json::json!({}))), PodState::Pending(None));
        assert_eq!(state(&pod(serde_json::json!({"phase": "Running"}))), PodState::Running);
    }
}
