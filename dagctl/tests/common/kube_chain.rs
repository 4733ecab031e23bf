//! What the chain's Kubernetes tests share: a backend on the local control plane's namespaces (made-up image
//! digests: kwok pulls nothing), the objects a network left, anvil processes playing the nodes behind their RPC
//! Services, Chaos Mesh's CRDs and a metrics-API stand-in installed into the API server, an in-memory fault ledger.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chain::backend::kubernetes::{Access, Images, KubeBackend, KubeOptions, KubeRegion, ServiceType};
use chain::{BackendKind, Client, Consensus, NetworkSpec, NodeBackend};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use tokio_util::sync::CancellationToken;

use super::kube_harness::Cluster;

pub const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// An image pinned (with a made-up digest: kwok pulls nothing) for every client's default version.
pub fn images() -> Images {
    let clients = [
        Client::Geth,
        Client::Quorum,
        Client::Besu,
        Client::Openethereum,
        Client::Anvil,
    ];
    Images::new(clients.map(|c| {
        let version = c.default_version().to_string();
        (c, version.clone(), format!("example.org/{c}:{version}@sha256:{DIGEST}"))
    }))
    .unwrap()
}

pub fn region(name: &str, cluster: &Cluster, service_type: ServiceType, access: Access) -> KubeRegion {
    KubeRegion {
        name: name.into(),
        kubeconfig: Some(cluster.kubeconfig.clone()),
        context: None,
        namespace: cluster.namespace.clone(),
        service_type,
        access,
        node_address: None,
        rpc_source_ranges: Vec::new(),
    }
}

pub fn backend(regions: Vec<KubeRegion>) -> KubeBackend {
    let mut options = KubeOptions::new(regions, images(), "test-host".into());
    options.kill_grace = Duration::from_secs(1);
    options.object_timeout = Duration::from_secs(60);
    KubeBackend::new(options)
}

/// The engine's backends with `kube` for Kubernetes (the local one never runs a node in these tests).
pub fn engine_backends(kube: KubeBackend) -> chain::Backends {
    let local = chain::local::LocalBackend::new(chain::local::LocalOptions::new(
        std::env::temp_dir().join("dagctl-kube-tests-unused"),
        chain::local::ClientBinaries {
            dir: None,
            path: None,
            overrides: Default::default(),
        },
        "test-host".into(),
    ));
    chain::Backends::new(local, Some(kube))
}

pub fn spec(name: &str, client: Client, consensus: Consensus) -> NetworkSpec {
    NetworkSpec {
        members: u32::from(client != Client::Anvil && consensus != Consensus::Raft),
        key_seed: Some("kube".into()),
        backend: BackendKind::Kubernetes,
        ..NetworkSpec::new(name, client, consensus, 2)
    }
}

pub fn quiet(_: &str) {}

/// `kind name` of every object of `network` in the cluster's namespace.
pub fn objects(cluster: &Cluster, network: &str) -> Vec<String> {
    let kinds = [
        ("apps", "v1", "StatefulSet"),
        ("", "v1", "Pod"),
        ("", "v1", "Service"),
        ("", "v1", "ConfigMap"),
        ("", "v1", "Secret"),
        ("", "v1", "PersistentVolumeClaim"),
    ];
    let client = cluster.client();
    cluster.block_on(async move {
        let mut found = Vec::new();
        for (group, version, kind) in kinds {
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &cluster.namespace, &resource);
            let params = ListParams::default().labels(&format!("dagctl.io/network={network}"));
            for object in api.list(&params).await.unwrap().items {
                found.push(format!("{kind} {}", object.metadata.name.unwrap_or_default()));
            }
        }
        found
    })
}

pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs anvil on `port` (loopback) as the process behind a Service's node port; killed by PID on drop.
pub struct Anvil(pub std::process::Child);

impl Anvil {
    pub fn start(port: u16) -> Anvil {
        let program = std::env::var("DAGCTL_ANVIL").expect("DAGCTL_ANVIL names the anvil binary");
        let child = std::process::Command::new(program)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--block-time",
                "1",
                "--silent",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("anvil starts");
        Anvil(child)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn node_port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// A two-node anvil network `name` on `backend` (reached through node ports), with an anvil process answering for
/// each node's RPC Service, once ready.
pub fn ready_anvil_network(cluster: &Cluster, backend: &chain::Backends, name: &str) -> (chain::AnyRecord, Vec<Anvil>) {
    let anvil = spec(name, Client::Anvil, Consensus::Interval);
    let any = cluster
        .block_on(backend.start(&anvil, &CancellationToken::new(), &quiet))
        .unwrap();
    let chain::AnyRecord::Kubernetes(record) = &any else {
        panic!("{any:?}")
    };
    let players = record.nodes.iter().map(|n| Anvil::start(node_port(&n.rpc))).collect();
    cluster
        .block_on(backend.wait_ready(&any, Duration::from_secs(60), &CancellationToken::new(), &quiet))
        .unwrap();
    (any, players)
}

/// Sets its flag when dropped: a player stops when its test's scope ends, also by a failed assertion.
pub struct Stop<'a>(pub &'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Plays the nodes of every network in the cluster's namespace until `done`: an anvil process on the node port
/// of each Service's `rpc` as the Service appears (kwok runs no container).
pub fn answer_services(cluster: &Cluster, done: &AtomicBool) -> usize {
    let services: Api<Service> = Api::namespaced(cluster.client(), &cluster.namespace);
    let mut answered: Vec<(u16, Anvil)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
        let list = cluster
            .block_on(services.list(&ListParams::default().labels("dagctl.io/node")))
            .map(|l| l.items)
            .unwrap_or_default();
        for service in list {
            let rpc = service
                .spec
                .and_then(|s| s.ports)
                .unwrap_or_default()
                .into_iter()
                .find(|p| p.name.as_deref() == Some("rpc"))
                .and_then(|p| p.node_port);
            if let Some(port) = rpc.and_then(|p| u16::try_from(p).ok()) {
                if !answered.iter().any(|(p, _)| *p == port) {
                    answered.push((port, Anvil::start(port)));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    answered.len()
}

/// Installs Chaos Mesh's CRDs (from `DAGCTL_TEST_CHAOS_MESH_CRDS`, which `scripts/test.sh` fills from the Go
/// module proxy) into the API server, so it validates every rendered fault against their schemas.
pub fn install_chaos_mesh(cluster: &Cluster) {
    let dir = std::env::var("DAGCTL_TEST_CHAOS_MESH_CRDS").expect(
        "DAGCTL_TEST_CHAOS_MESH_CRDS names the Chaos Mesh CRD directory (scripts/ensure-chaos-mesh-crds.sh makes it)",
    );
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    ));
    let crds: Api<DynamicObject> = Api::all_with(cluster.client(), &resource);
    for kind in ["networkchaos", "podchaos", "stresschaos", "timechaos"] {
        let text = std::fs::read_to_string(format!("{dir}/chaos-mesh.org_{kind}.yaml")).unwrap();
        let crd: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        cluster
            .block_on(crds.patch(&name, &PatchParams::apply("dagctl-test").force(), &Patch::Apply(&crd)))
            .unwrap();
        wait_until(&format!("CRD {name} established"), Duration::from_secs(30), || {
            let crd = cluster.block_on(crds.get(&name)).unwrap();
            crd.data
                .pointer("/status/conditions")
                .and_then(|c| c.as_array())
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Established" && c["status"] == "True"))
        });
    }
}

/// The fault ledger as rows in memory: what was recorded, and which parts were closed.
#[derive(Default)]
pub struct MemoryLedger {
    pub open: std::sync::Mutex<Vec<(String, String)>>,
    pub closed: std::sync::Mutex<Vec<(String, String)>>,
}

impl chain::chaos::FaultLedger for MemoryLedger {
    async fn record_fault(&self, row: &engine::store::ChaosFaultRow) -> chain::Result<()> {
        self.open.lock().unwrap().push((row.part.clone(), row.undo.clone()));
        Ok(())
    }

    async fn fault_undone(&self, _id: &str, part: &str, error: Option<&str>) -> chain::Result<()> {
        assert_eq!(error, None, "{part}");
        self.closed.lock().unwrap().push((part.to_string(), String::new()));
        Ok(())
    }
}

/// Whether `got` has every field of `want` with its value (objects compared field by field, recursively).
pub fn holds(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    match (got, want) {
        (serde_json::Value::Object(got), serde_json::Value::Object(want)) => {
            want.iter().all(|(k, v)| got.get(k).is_some_and(|g| holds(g, v)))
        }
        (serde_json::Value::Array(got), serde_json::Value::Array(want)) if want.iter().any(|w| w.is_object()) => {
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| holds(g, w))
        }
        _ => got == want,
    }
}

/// `kind name` of every Chaos Mesh object of `network` in the cluster's namespace, with its spec.
pub fn chaos_objects(cluster: &Cluster, network: &str) -> Vec<(String, serde_json::Value)> {
    let mut found = Vec::new();
    for kind in ["NetworkChaos", "PodChaos", "StressChaos", "TimeChaos"] {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("chaos-mesh.org", "v1alpha1", kind),
            &kind.to_ascii_lowercase(),
        );
        let api: Api<DynamicObject> = Api::namespaced_with(cluster.client(), &cluster.namespace, &resource);
        let params = ListParams::default().labels(&format!("dagctl.io/network={network}"));
        for object in cluster.block_on(api.list(&params)).unwrap().items {
            found.push((kind.to_string(), object.data["spec"].clone()));
        }
    }
    found
}

/// Serves `metrics.k8s.io/v1beta1` `PodMetrics` as metrics-server does, from objects the test writes: kwok runs
/// no container, so no real metrics-server has usage to report. A stand-in for that one part, said plainly in
/// docs/chain.md; the backend reads it through the same API path as the real one.
pub fn install_metrics_api(cluster: &Cluster) {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    ));
    let crds: Api<DynamicObject> = Api::all_with(cluster.client(), &resource);
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "pods.metrics.k8s.io",
            "annotations": {"api-approved.kubernetes.io": "unapproved, a test's stand-in for metrics-server"}},
        "spec": {"group": "metrics.k8s.io", "scope": "Namespaced",
            "names": {"plural": "pods", "singular": "podmetrics", "kind": "PodMetrics", "listKind": "PodMetricsList"},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    });
    cluster
        .block_on(crds.patch(
            "pods.metrics.k8s.io",
            &PatchParams::apply("dagctl-test").force(),
            &Patch::Apply(&crd),
        ))
        .unwrap();
    wait_until("the metrics API", Duration::from_secs(30), || {
        let crd = cluster.block_on(crds.get("pods.metrics.k8s.io")).unwrap();
        crd.data
            .pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Established" && c["status"] == "True"))
    });
}
