//! What a monitor reads of a network on Kubernetes besides RPC and client metrics (which it reaches through the
//! nodes' Services): each pod's CPU and memory from the metrics API (`metrics.k8s.io/v1beta1` `PodMetrics`, which
//! metrics-server serves), and each node's log from the pod log API, followed as it grows.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, LogParams};
use kube::core::{ApiResource, GroupVersionKind};
use tokio::sync::mpsc;

use super::api::RegionApi;
use super::render::network_selector;
use super::KubeRecord;
use crate::monitor::HostUsage;

/// Lines a node's log may have waiting before the follower drops the newest (a monitor that stopped reading).
const LOG_BACKLOG: usize = 10_000;
/// How long one metrics call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A network's pods, connected.
pub struct PodWatch {
    record: KubeRecord,
    apis: BTreeMap<String, RegionApi>,
}

/// A CPU quantity (`12345678n`, `250m`, `2`) in cores.
pub fn cpu_cores(text: &str) -> Option<f64> {
    let (number, scale) = match text.chars().last()? {
        'n' => (&text[..text.len() - 1], 1e-9),
        'u' => (&text[..text.len() - 1], 1e-6),
        'm' => (&text[..text.len() - 1], 1e-3),
        _ => (text, 1.0),
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// A memory quantity (`1234Ki`, `12Mi`, `1G`, `4096`) in bytes.
pub fn memory_bytes(text: &str) -> Option<f64> {
    const UNITS: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (unit, scale) in UNITS {
        if let Some(number) = text.strip_suffix(unit) {
            return number.parse::<f64>().ok().map(|n| n * scale);
        }
    }
    text.parse().ok()
}

impl PodWatch {
    pub(super) fn new(record: KubeRecord, apis: BTreeMap<String, RegionApi>) -> Self {
        Self { record, apis }
    }

    /// Each node's container usage now (all `None` where the metrics API has no reading, or is not served),
    /// in node order, and why it could not be read, if it could not.
    pub async fn usage(&self) -> (Vec<HostUsage>, Option<String>) {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
            "pods",
        );
        let mut by_pod: BTreeMap<String, HostUsage> = BTreeMap::new();
        let mut failure = None;
        for api in self.apis.values() {
            let metrics: Api<DynamicObject> = Api::namespaced_with(api.client(), &api.region.namespace, &resource);
            let params = ListParams::default().labels(&network_selector(&self.record.name));
            match tokio::time::timeout(CALL_TIMEOUT, metrics.list(&params)).await {
                Ok(Ok(list)) => {
                    for item in list.items {
                        let containers = item.data["containers"].as_array().cloned().unwrap_or_default();
                        let Some(node) = containers.iter().find(|c| c["name"] == "node") else {
                            continue;
                        };
                        let cpu = node["usage"]["cpu"].as_str().and_then(cpu_cores);
                        let memory = node["usage"]["memory"].as_str().and_then(memory_bytes);
                        by_pod.insert(
                            item.metadata.name.unwrap_or_default(),
                            HostUsage {
                                cpu_percent: cpu.map(|c| c * 100.0),
                                rss_bytes: memory,
                                ..HostUsage::default()
                            },
                        );
                    }
                }
                Ok(Err(err)) => {
                    failure.get_or_insert(format!("region `{}`: the metrics API: {err}", api.region.name));
                }
                Err(_) => {
                    failure.get_or_insert(format!("region `{}`: the metrics API did not answer", api.region.name));
                }
            }
        }
        let usage = self
            .record
            .nodes
            .iter()
            .map(|n| by_pod.remove(&n.pod()).unwrap_or_default())
            .collect();
        (usage, failure)
    }

    /// Follows every node's log from now (the pod log API, container `node`; again from where it stopped when
    /// its pod is made again): one receiver of lines per node, in node order. Each follower ends when its
    /// receiver is dropped.
    pub fn follow_logs(&self) -> Vec<(String, mpsc::Receiver<String>)> {
        self.record
            .nodes
            .iter()
            .filter_map(|node| {
                let api = self.apis.get(&node.region)?;
                let pods: Api<Pod> = Api::namespaced(api.client(), &api.region.namespace);
                let (sender, receiver) = mpsc::channel(LOG_BACKLOG);
                tokio::spawn(follow(pods, node.pod(), sender));
                Some((node.name.clone(), receiver))
            })
            .collect()
    }
}

/// Streams pod `pod`'s log into `sender` until the receiver is gone, reconnecting (once a second at most) when
/// the stream ends: the pod was made again, or the API server closed it. Lines carry the kubelet's timestamps:
/// each reconnection asks from a little before the last line and skips what was already sent, so a line is sent
/// once; bytes that are not UTF-8 are replaced, never the end of the stream.
async fn follow(pods: Api<Pod>, pod: String, sender: mpsc::Sender<String>) {
    // The newest timestamp sent, and how many lines carried it (lines may share one).
    let mut last = chrono::Utc::now();
    let mut sent_at_last = 0usize;
    while !sender.is_closed() {
        let behind = (chrono::Utc::now() - last).num_seconds().max(0) + 1;
        let params = LogParams {
            container: Some("node".into()),
            follow: true,
            timestamps: true,
            since_seconds: Some(behind),
            ..LogParams::default()
        };
        if let Ok(Ok(stream)) = tokio::time::timeout(CALL_TIMEOUT, pods.log_stream(&pod, &params)).await {
            let mut stream = std::pin::pin!(stream);
            let mut bytes = Vec::new();
            let mut seen_at_last = 0usize;
            loop {
                bytes.clear();
                let read = tokio::select! {
                    _ = sender.closed() => return,
                    read = stream.read_until(b'\n', &mut bytes) => read,
                };
                if !matches!(read, Ok(n) if n > 0) {
                    break;
                }
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim_end_matches(['\n', '\r']);
                let (stamp, line) = text.split_once(' ').unwrap_or(("", text));
                if let Ok(at) = chrono::DateTime::parse_from_rfc3339(stamp) {
                    let at = at.with_timezone(&chrono::Utc);
                    if at < last {
                        continue;
                    }
                    if at == last {
                        // Lines of the last timestamp this stream repeats are skipped; any beyond them are new.
                        seen_at_last += 1;
                        if seen_at_last <= sent_at_last {
                            continue;
                        }
                        sent_at_last += 1;
                    } else {
                        last = at;
                        sent_at_last = 1;
                        seen_at_last = 1;
                    }
                }
                // A full backlog drops the line rather than block the stream.
                let _ = sender.try_send(line.to_string());
            }
        }
        tokio::select! {
            _ = sender.closed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_the_metrics_api_writes_them() {
        assert_eq!(cpu_cores("250m"), Some(0.25));
        assert_eq!(cpu_cores("2"), Some(2.0));
        assert!((cpu_cores("1500000n").unwrap() - 0.0015).abs() < 1e-12);
        assert_eq!(memory_bytes("1Ki"), Some(1024.0));
        assert_eq!(memory_bytes("2Mi"), Some(2097152.0));
        assert_eq!(memory_bytes("4096"), Some(4096.0));
        assert_eq!(memory_bytes("x"), None);
    }
}
