//! Monitoring a network on Kubernetes against a real API server: RPC through the nodes' Services (anvil processes
//! playing the nodes), pod usage through the metrics API (a PodMetrics stand-in for metrics-server: kwok runs no
//! container), and node logs that kwok serves through the pod log API, with alerts.

mod common;
#[path = "common/kube_chain.rs"]
mod kube_chain;
#[path = "common/kube.rs"]
mod kube_harness;

use std::path::PathBuf;
use std::time::Duration;

use chain::backend::kubernetes::{Access, ServiceType};
use chain::NodeBackend;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_chain::*;
use kube_harness::Cluster;

#[test]
fn a_network_on_kubernetes_is_monitored_through_its_services_the_metrics_api_and_the_pod_log_api() {
    let cluster = Cluster::new("kube-mon");
    install_metrics_api(&cluster);
    let mut east = region("east", &cluster, ServiceType::ClusterIp, Access::NodePort);
    east.node_address = Some("127.0.0.1".into());
    let backend = engine_backends(backend(vec![east]));
    let (any, _nodes) = ready_anvil_network(&cluster, &backend, "m-anvil");
    let chain::AnyRecord::Kubernetes(record) = &any else {
        panic!("{any:?}")
    };

    // Usage as metrics-server reports it, per pod, labelled as the pod is.
    let metrics: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        &cluster.namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
            "pods",
        ),
    );
    for (node, cpu) in record.nodes.iter().zip(["250m", "1500000000n"]) {
        let body = serde_json::json!({
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": node.pod(), "labels": {"dagctl.io/network": "m-anvil", "dagctl.io/node": node.name}},
            "timestamp": "2026-12-05T00:00:00Z", "window": "10s",
            "containers": [{"name": "node", "usage": {"cpu": cpu, "memory": "64Mi"}}],
        });
        cluster
            .block_on(metrics.patch(
                &node.pod(),
                &PatchParams::apply("dagctl-test").force(),
                &Patch::Apply(&body),
            ))
            .unwrap();
    }
    // Each pod's log, served by kwok through the pod log API from a CRI log file.
    let logs_dir = tempfile::tempdir().unwrap();
    let logs: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        &cluster.namespace,
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Logs"), "logs"),
    );
    let files: Vec<PathBuf> = record
        .nodes
        .iter()
        .map(|node| {
            let file = logs_dir.path().join(format!("{}.log", node.pod()));
            std::fs::write(&file, "").unwrap();
            let body = serde_json::json!({
                "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs", "metadata": {"name": node.pod()},
                "spec": {"logs": [{"containers": ["node"], "logsFile": file, "follow": true}]},
            });
            cluster
                .block_on(logs.patch(
                    &node.pod(),
                    &PatchParams::apply("dagctl-test").force(),
                    &Patch::Apply(&body),
                ))
                .unwrap();
            file
        })
        .collect();

    let (readings, alerts, usage_error) = cluster.block_on(async {
        let pods = chain::NodeBackend::pod_watch(&backend, &any)
            .await
            .unwrap()
            .expect("a pod watch");
        let mut monitor = chain::monitor::Monitor::of_pods(record, Duration::from_millis(500), Vec::new(), pods);
        // Lines written once the monitor follows the logs: the first node logs an error, the second a warning.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let lines = [
            "EROR [12-05|10:00:00.000] Failed to import block  number=7 err=\"invalid merkle root\"",
            "WARN [12-05|10:00:00.000] Dropping unsynced node  peer=abc",
        ];
        for (file, line) in files.iter().zip(lines) {
            let mut text = format!("{stamp} stdout F INFO [12-05|10:00:00.000] Imported new chain segment number=7\n");
            text.push_str(&format!("{stamp} stdout F {line}\n"));
            std::fs::write(file, text).unwrap();
        }
        let mut alerts = Vec::new();
        let mut readings = Vec::new();
        for _ in 0..40 {
            readings = monitor.tick().await;
            alerts.extend(monitor.follow_logs());
            if alerts.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (readings, alerts, monitor.usage_error.clone())
    });
    assert_eq!(usage_error, None);
    assert!(readings.iter().all(|r| r.up), "{readings:?}");
    assert_eq!(readings[0].host.cpu_percent, Some(25.0));
    assert_eq!(readings[1].host.cpu_percent, Some(150.0));
    assert_eq!(readings[0].host.rss_bytes, Some(64.0 * 1048576.0));
    assert!(readings[0].rpc.head.is_some(), "{readings:?}");
    let levels: Vec<(String, String)> = alerts
        .iter()
        .map(|a| (a.node.clone(), a.level.as_str().to_string()))
        .collect();
    assert!(levels.contains(&("node-1".into(), "error".into())), "{levels:?}");
    assert!(levels.contains(&("node-2".into(), "warn".into())), "{levels:?}");

    cluster.block_on(backend.stop(&any)).unwrap();
    assert!(objects(&cluster, "m-anvil").is_empty());
}
