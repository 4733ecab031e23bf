//! A network's pods as readiness, restarts and dead-node checks see them: whether each runs, why one will not
//! serve by itself (failed, stuck, exited, restarted), and the log of the container that says why.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;

use super::api::RegionApi;
use super::KubeRecord;
use crate::backend::ready::{Watched, WatchedNode};
use crate::error::Result;
use crate::spec::{Client, Consensus};

/// Log lines shown when a node fails.
const TAIL_LINES: i64 = 25;
/// The node's own container in its pod.
const NODE_CONTAINER: &str = "node";
/// Container waiting reasons that mean the node will not come up by itself.
const STUCK: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why a node's pod will not serve by itself, if it will not, and the container to read the log of.
fn pod_gone(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        let why = format!(
            "its pod failed: {} {}",
            status.reason.as_deref().unwrap_or_default(),
            status.message.as_deref().unwrap_or_default()
        );
        return Some((why, NODE_CONTAINER.to_string()));
    }
    let init = status.init_container_statuses.iter().flatten();
    for container in init.chain(status.container_statuses.iter().flatten()) {
        let state = container.state.as_ref();
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if STUCK.contains(&reason) {
                let why = format!(
                    "its container {} is stuck: {reason} {}",
                    container.name,
                    waiting.message.as_deref().unwrap_or_default()
                );
                return Some((why, container.name.clone()));
            }
        }
        if let Some(done) = state.and_then(|s| s.terminated.as_ref()) {
            if container.name == NODE_CONTAINER || done.exit_code != 0 {
                let why = format!(
                    "its container {} exited with code {}{}",
                    container.name,
                    done.exit_code,
                    done.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                );
                return Some((why, container.name.clone()));
            }
        }
        if container.name == NODE_CONTAINER && container.restart_count > 0 {
            let why = format!("its container restarted {} times", container.restart_count);
            return Some((why, container.name.clone()));
        }
    }
    None
}

/// Whether a node's pod runs and nothing says it will not serve.
pub(super) fn pod_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && pod_gone(pod).is_none()
}

/// A record being waited for, with its regions connected.
pub(super) struct Watch<'a> {
    record: &'a KubeRecord,
    apis: BTreeMap<String, RegionApi>,
    /// The container whose log says why node N is gone (an init container that failed, or the node's own).
    failed: Mutex<Option<(usize, String)>>,
}

impl<'a> Watch<'a> {
    pub(super) fn new(record: &'a KubeRecord, apis: BTreeMap<String, RegionApi>) -> Self {
        Self {
            record,
            apis,
            failed: Mutex::new(None),
        }
    }

    /// Each node's pod as it is now (None: no pod yet).
    pub(super) async fn pods(&self) -> Result<Vec<Option<Pod>>> {
        let mut by_name: BTreeMap<String, Pod> = BTreeMap::new();
        for api in self.apis.values() {
            for pod in api.pods(&self.record.name).await? {
                by_name.insert(pod.metadata.name.clone().unwrap_or_default(), pod);
            }
        }
        Ok(self.record.nodes.iter().map(|n| by_name.remove(&n.pod())).collect())
    }
}

impl Watched for Watch<'_> {
    fn network(&self) -> &str {
        &self.record.name
    }

    fn client(&self) -> Client {
        self.record.client
    }

    fn consensus(&self) -> Consensus {
        self.record.consensus
    }

    fn sealing_deferred(&self) -> bool {
        self.record.sealing_deferred
    }

    fn nodes(&self) -> Vec<WatchedNode<'_>> {
        self.record
            .nodes
            .iter()
            .map(|n| WatchedNode {
                name: &n.name,
                role: n.role,
                rpc: &n.rpc,
                address: &n.address,
            })
            .collect()
    }

    async fn gone(&self) -> Option<(usize, String)> {
        // An API server that does not answer for a moment is not a node that is gone.
        let pods = self.pods().await.ok()?;
        let (index, (why, container)) = pods
            .iter()
            .enumerate()
            .find_map(|(i, pod)| pod.as_ref().and_then(pod_gone).map(|gone| (i, gone)))?;
        if let Ok(mut failed) = self.failed.lock() {
            *failed = Some((index, container));
        }
        Some((index, why))
    }

    async fn log_tail(&self, index: usize) -> String {
        let node = &self.record.nodes[index];
        let Some(api) = self.apis.get(&node.region) else {
            return String::new();
        };
        let container = match self.failed.lock().ok().and_then(|f| f.clone()) {
            Some((failed, container)) if failed == index => container,
            _ => NODE_CONTAINER.to_string(),
        };
        let of = format!("pod {} (container {container})", node.pod());
        match api.log_tail(&node.pod(), &container, TAIL_LINES).await {
            Ok(text) if text.trim().is_empty() => format!("\n(log of {of} is empty)"),
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let mut out = format!("\nlast {} lines of {of}:", lines.len());
                for line in lines {
                    out.push_str("\n  ");
                    out.push_str(line);
                }
                out
            }
            Err(err) => format!("\n(no log of {of}: {err})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n-node-1-0"}, "status": status})).unwrap()
    }

    #[test]
    fn a_pod_that_will_not_serve_names_why_and_the_container_to_read() {
        let running = pod(serde_json::json!({"phase": "Running", "containerStatuses": [
            {"name": "node", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"running": {}}}]}));
        assert!(pod_running(&running));
        let init_failed = pod(serde_json::json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "files", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}));
        let (why, container) = pod_gone(&init_failed).unwrap();
        assert_eq!(container, "files");
        assert!(why.contains("exited with code 1 (Error)"), "{why}");
        let pulling = pod(serde_json::json!({"phase": "Pending", "containerStatuses": [
            {"name": "node", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such digest"}}}]}));
        let (why, container) = pod_gone(&pulling).unwrap();
        assert_eq!(container, "node");
        assert!(why.contains("stuck: ImagePullBackOff no such digest"), "{why}");
        let crashed = pod(serde_json::json!({"phase": "Running", "containerStatuses": [
            {"name": "node", "ready": true, "restartCount": 2, "image": "i", "imageID": "",
             "state": {"running": {}}}]}));
        assert!(!pod_running(&crashed));
        assert!(pod_gone(&crashed).unwrap().0.contains("restarted 2 times"));
    }
}
