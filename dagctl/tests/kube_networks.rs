//! The chain's Kubernetes backend against a real API server (the local control plane `scripts/test.sh` starts:
//! etcd, kube-apiserver, controller manager, scheduler, kwok): every client x consensus pair's objects are
//! accepted by server-side apply and hold what generation makes (golden: the genesis in the ConfigMap is the
//! local genesis, the container's args are the generated command line); readiness through node ports with anvil
//! processes answering for the Services (kwok runs no container); a node restart through its StatefulSet;
//! teardown that leaves nothing; bad input refused before anything is made, and a half-made network deleted.

mod common;
#[path = "common/kube.rs"]
mod kube_harness;

use std::sync::atomic::{AtomicBool, Ordering};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chain::backend::kubernetes::{
    render, Access, Images, KubeBackend, KubeOptions, KubeRecord, KubeRegion, ServiceType,
};
use chain::{BackendKind, Client, Consensus, NetworkSpec, NodeBackend, NodeParams, NodePorts, PodResources, Storage};
use common::Home;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_harness::Cluster;
use tokio_util::sync::CancellationToken;

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// An image pinned (with a made-up digest: kwok pulls nothing) for every client's default version.
fn images() -> Images {
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

fn region(name: &str, cluster: &Cluster, service_type: ServiceType, access: Access) -> KubeRegion {
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

fn backend(regions: Vec<KubeRegion>) -> KubeBackend {
    let mut options = KubeOptions::new(regions, images(), "test-host".into());
    options.kill_grace = Duration::from_secs(1);
    options.object_timeout = Duration::from_secs(60);
    KubeBackend::new(options)
}

/// The engine's backends with `kube` for Kubernetes (the local one never runs a node in these tests).
fn engine_backends(kube: KubeBackend) -> chain::Backends {
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

fn spec(name: &str, client: Client, consensus: Consensus) -> NetworkSpec {
    NetworkSpec {
        members: u32::from(client != Client::Anvil && consensus != Consensus::Raft),
        key_seed: Some("kube".into()),
        backend: BackendKind::Kubernetes,
        ..NetworkSpec::new(name, client, consensus, 2)
    }
}

fn quiet(_: &str) {}

/// `kind name` of every object of `network` in the cluster's namespace.
fn objects(cluster: &Cluster, network: &str) -> Vec<String> {
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

/// The local backend's parameters for the same nodes: distinctive ports and data dirs, so a normalised command
/// line can be compared with the pod's.
fn local_params(spec: &NetworkSpec) -> Vec<NodeParams> {
    let kube_ports = render::container_ports(spec.client, spec.consensus);
    spec.layout()
        .unwrap()
        .iter()
        .map(|slot| {
            let base = 41000 + 10 * slot.index as u16;
            NodeParams {
                data_dir: PathBuf::from(format!("/srv/local/{}", slot.name)),
                // Not 127.0.0.1, which clients also use for what they bind to loopback on purpose.
                host: "127.0.0.2".into(),
                ports: NodePorts {
                    p2p: base,
                    rpc: base + 1,
                    ws: kube_ports.ws.map(|_| base + 2),
                    metrics: kube_ports.metrics.map(|_| base + 3),
                    authrpc: kube_ports.authrpc.map(|_| base + 4),
                    raft: kube_ports.raft.map(|_| base + 5),
                },
                advertise: None,
            }
        })
        .collect()
}

/// `args` of a local node with its data dir, host and ports replaced by the pod's.
fn normalised(args: &[String], params: &NodeParams, kube: &NodePorts) -> Vec<String> {
    let data_dir = params.data_dir.to_string_lossy().into_owned();
    let pairs = [
        (Some(params.ports.p2p), Some(kube.p2p)),
        (Some(params.ports.rpc), Some(kube.rpc)),
        (params.ports.ws, kube.ws),
        (params.ports.metrics, kube.metrics),
        (params.ports.authrpc, kube.authrpc),
        (params.ports.raft, kube.raft),
    ];
    args.iter()
        .map(|arg| {
            let mut arg = arg.replace(&data_dir, render::DATA_DIR).replace("127.0.0.2", "0.0.0.0");
            for (local, pod) in pairs {
                if let (Some(local), Some(pod)) = (local, pod) {
                    arg = arg.replace(&local.to_string(), &pod.to_string());
                }
            }
            arg
        })
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_client_and_consensus_renders_objects_the_api_server_accepts_and_teardown_leaves_none() {
    let cluster = Cluster::new("kube-nets");
    let backend = backend(vec![region("east", &cluster, ServiceType::ClusterIp, Access::Cluster)]);
    let kube = cluster.client();
    let configmaps: Api<ConfigMap> = Api::namespaced(kube.clone(), &cluster.namespace);
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &cluster.namespace);
    let sets: Api<StatefulSet> = Api::namespaced(kube.clone(), &cluster.namespace);
    let pods: Api<Pod> = Api::namespaced(kube.clone(), &cluster.namespace);
    let clients = [
        Client::Geth,
        Client::Quorum,
        Client::Besu,
        Client::Openethereum,
        Client::Anvil,
    ];
    let mut pairs = 0;
    for client in clients {
        for &consensus in client.supported_consensus() {
            pairs += 1;
            let name = format!("n-{client}-{consensus}");
            let mut spec = spec(&name, client, consensus);
            if pairs == 1 {
                spec.resources = Some(PodResources {
                    cpu: Some("250m".into()),
                    memory: Some("512Mi".into()),
                });
                spec.storage = Some(Storage {
                    size: "1Gi".into(),
                    class: Some("standard".into()),
                });
            }
            let record: KubeRecord = cluster
                .block_on(backend.start(&spec, &CancellationToken::new(), &quiet))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(record.nodes.len(), spec.layout().unwrap().len());

            // Golden: what the pods get is what generation makes, and what the local backend would run.
            let kube_ports = render::container_ports(client, consensus);
            let kube_params: Vec<NodeParams> = record
                .nodes
                .iter()
                .map(|n| NodeParams {
                    data_dir: PathBuf::from(render::DATA_DIR),
                    host: "0.0.0.0".into(),
                    ports: kube_ports,
                    advertise: Some(n.peer.clone()),
                })
                .collect();
            let mut generated = chain::generate(&spec, &kube_params).unwrap();
            chain::local::defer_clique_sealing(&mut generated);
            let local_params = local_params(&spec);
            let mut local = chain::generate(&spec, &local_params).unwrap();
            chain::local::defer_clique_sealing(&mut local);
            for (i, node) in record.nodes.iter().enumerate() {
                assert!(
                    node.peer.host.parse::<std::net::IpAddr>().is_ok(),
                    "{name}: {:?}",
                    node.peer
                );
                assert_eq!(
                    node.rpc,
                    format!("http://{}-rpc.{}.svc:8545", node.object, cluster.namespace)
                );
                let set = cluster.block_on(sets.get(&node.object)).unwrap();
                let pod_spec = set.spec.template.spec.unwrap();
                let container = &pod_spec.containers[0];
                assert_eq!(container.image.as_deref(), Some(record.image.as_str()));
                assert!(record.image.ends_with(DIGEST));
                let args = container.args.clone().unwrap_or_default();
                // A secret flag's value (OpenEthereum's --node-key) comes from the Secret through the environment.
                let (expected, hidden) = render::hide_secret_args(&generated.nodes[i].command.args);
                assert_eq!(args, expected, "{name} {}: the generated command line", node.name);
                assert_eq!(hidden.is_empty(), client != Client::Openethereum, "{name}: {hidden:?}");
                let env = container.env.clone().unwrap_or_default();
                for (key, variable, _) in &hidden {
                    let from = env
                        .iter()
                        .find(|e| e.name == *variable)
                        .and_then(|e| e.value_from.clone());
                    let secret_key = from.and_then(|f| f.secret_key_ref).map(|r| r.key);
                    assert_eq!(secret_key.as_deref(), Some(*key), "{name}: {variable}");
                }
                let (local_args, _) = render::hide_secret_args(&local.nodes[i].command.args);
                assert_eq!(
                    args,
                    normalised(&local_args, &local_params[i], &kube_ports),
                    "{name} {}: the local command line with the pod's host, ports and data dir",
                    node.name
                );
                assert_eq!(
                    container.command.as_ref().unwrap()[0],
                    chain::backend::kubernetes::images::program_path(client)
                );
                let init: Vec<String> = pod_spec
                    .init_containers
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                assert_eq!(init.len(), 1 + generated.nodes[i].init.len(), "{name}: {init:?}");
                assert_eq!(pod_spec.automount_service_account_token, Some(false));
                let security = pod_spec.security_context.clone().unwrap();
                assert_eq!((security.run_as_user, security.fs_group), (Some(1000), Some(1000)));
                assert_eq!(security.run_as_non_root, Some(true));

                let config_map = cluster.block_on(configmaps.get(&node.object)).unwrap();
                let data = config_map.data.unwrap_or_default();
                let secret = cluster.block_on(secrets.get(&node.object)).unwrap();
                let secret_data = secret.data.unwrap_or_default();
                for file in &local.nodes[i].files {
                    let flat = file.path.to_string_lossy().replace('/', "_");
                    if file.secret {
                        let value = secret_data
                            .iter()
                            .find(|(k, _)| k.ends_with(&flat))
                            .map(|(_, v)| v.0.clone());
                        let kube_file = generated.nodes[i].files.iter().find(|f| f.path == file.path).unwrap();
                        assert_eq!(
                            value.as_deref(),
                            Some(kube_file.contents.as_slice()),
                            "{name}: {flat} in the Secret"
                        );
                        assert!(
                            !data.keys().any(|k| k.ends_with(&flat)),
                            "{name}: key {flat} in the ConfigMap"
                        );
                    }
                }
                if let Some(genesis) = local.genesis_file {
                    let key = data
                        .keys()
                        .find(|k| k.ends_with(genesis))
                        .unwrap_or_else(|| panic!("{name}: {genesis}"));
                    let local_genesis = local.nodes[i]
                        .files
                        .iter()
                        .find(|f| f.path.to_string_lossy() == genesis)
                        .unwrap();
                    assert_eq!(
                        data[key].as_bytes(),
                        local_genesis.contents.as_slice(),
                        "{name}: the local genesis"
                    );
                }
            }
            if pairs == 1 {
                let set = cluster.block_on(sets.get(&record.nodes[0].object)).unwrap();
                let set_spec = set.spec;
                assert_eq!(
                    set_spec.volume_claim_templates.unwrap()[0]
                        .spec
                        .as_ref()
                        .unwrap()
                        .storage_class_name
                        .as_deref(),
                    Some("standard")
                );
                let requests = set_spec.template.spec.unwrap().containers[0]
                    .resources
                    .clone()
                    .unwrap()
                    .requests
                    .unwrap();
                assert_eq!(requests["cpu"].0, "250m");
            } else {
                // The controller manager makes each StatefulSet's pod and kwok runs it.
                let pod = record.nodes[0].pod();
                wait_until(&format!("pod {pod}"), Duration::from_secs(60), || {
                    cluster
                        .block_on(pods.get_opt(&pod))
                        .unwrap()
                        .and_then(|p| p.status?.phase)
                        .as_deref()
                        == Some("Running")
                });
            }
            let report = cluster.block_on(backend.stop(&record)).unwrap();
            assert_eq!(report.stopped, record.nodes.len());
            assert_eq!(objects(&cluster, &name), Vec::<String>::new(), "{name}: left behind");
        }
    }
    assert_eq!(pairs, 12);
}

/// Runs anvil on `port` (loopback) as the process behind a Service's node port; killed by PID on drop.
struct Anvil(std::process::Child);

impl Anvil {
    fn start(port: u16) -> Anvil {
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

fn node_port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// A two-node anvil network `name` on `backend` (reached through node ports), with an anvil process answering for
/// each node's RPC Service, once ready.
fn ready_anvil_network(cluster: &Cluster, backend: &chain::Backends, name: &str) -> (chain::AnyRecord, Vec<Anvil>) {
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

#[test]
fn a_network_across_two_regions_is_ready_through_node_ports_restarts_a_node_and_tears_down() {
    let east = Cluster::new("kube-east");
    let west = Cluster::new("kube-west");
    let mut east_region = region("east", &east, ServiceType::NodePort, Access::NodePort);
    east_region.node_address = Some("127.0.0.1".into());
    // West finds the address of its (kwok) node itself.
    let west_region = region("west", &west, ServiceType::NodePort, Access::NodePort);
    let backend = backend(vec![east_region, west_region]);

    // GoQuorum across the regions: every enode names a node port on the node address.
    let mut quorum = spec("q-across", Client::Quorum, Consensus::Raft);
    quorum.nodes = 3;
    quorum.regions = vec![chain::Region::named("east"), chain::Region::named("west")];
    let record = east
        .block_on(backend.start(&quorum, &CancellationToken::new(), &quiet))
        .unwrap();
    let regions: Vec<&str> = record.nodes.iter().map(|n| n.region.as_str()).collect();
    assert_eq!(regions, ["east", "west", "east"]);
    for node in &record.nodes {
        assert_eq!(node.peer.host, "127.0.0.1", "{node:?}");
        assert!((30000..=32767).contains(&node.peer.p2p), "{node:?}");
        assert!(node.peer.raft.is_some_and(|p| (30000..=32767).contains(&p)), "{node:?}");
        let enode = node.enode.as_deref().unwrap();
        assert!(enode.contains(&format!("@127.0.0.1:{}", node.peer.p2p)), "{enode}");
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(west.client(), &west.namespace);
    let static_nodes = west
        .block_on(configmaps.get(&record.nodes[1].object))
        .unwrap()
        .data
        .unwrap();
    let static_nodes = static_nodes
        .iter()
        .find(|(k, _)| k.ends_with("static-nodes.json"))
        .unwrap()
        .1;
    for node in &record.nodes {
        assert!(
            static_nodes.contains(&format!("127.0.0.1:{}", node.peer.p2p)),
            "{static_nodes}"
        );
    }
    east.block_on(backend.stop(&record)).unwrap();
    assert!(objects(&east, "q-across").is_empty() && objects(&west, "q-across").is_empty());

    // anvil nodes, one per region, answered by anvil processes on the Services' node ports.
    let mut anvil = spec("a-across", Client::Anvil, Consensus::Interval);
    anvil.version = Some("1.7.1".into());
    anvil.regions = vec![chain::Region::named("east"), chain::Region::named("west")];
    let record = east
        .block_on(backend.start(&anvil, &CancellationToken::new(), &quiet))
        .unwrap();
    let _processes: Vec<Anvil> = record.nodes.iter().map(|n| Anvil::start(node_port(&n.rpc))).collect();
    let report = east
        .block_on(backend.wait_ready(&record, Duration::from_secs(60), &CancellationToken::new(), &quiet))
        .unwrap();
    assert!(report.heads.iter().all(|(_, head)| *head >= 1), "{report:?}");
    let described = backend.describe(&record);
    assert_eq!(described["backend"], "kubernetes");
    assert_eq!(described["nodes"][1]["namespace"], west.namespace.as_str());

    // Node 2's pod is deleted and made again by its StatefulSet.
    let pods: Api<Pod> = Api::namespaced(west.client(), &west.namespace);
    let pod = record.nodes[1].pod();
    wait_until("the west pod to run", Duration::from_secs(60), || {
        east.block_on(backend.dead_nodes(&record)).unwrap().is_empty()
    });
    let uid = west.block_on(pods.get(&pod)).unwrap().metadata.uid;
    east.block_on(backend.restart_node(&record, "node-2", &quiet)).unwrap();
    let new_uid = west.block_on(pods.get(&pod)).unwrap().metadata.uid;
    assert_ne!(uid, new_uid, "a new pod");
    let err = east
        .block_on(backend.signal(&record, "node-1", chain::NodeSignal::Stop))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pod-failure"), "{err}");

    let report = east.block_on(backend.stop(&record)).unwrap();
    assert_eq!(report.stopped, 2);
    assert!(objects(&east, "a-across").is_empty() && objects(&west, "a-across").is_empty());
}

#[test]
fn bad_input_is_refused_before_anything_is_made_and_a_half_made_network_is_deleted() {
    let cluster = Cluster::new("kube-bad");
    let good = region("east", &cluster, ServiceType::ClusterIp, Access::Cluster);
    let start = |backend: &KubeBackend, spec: &NetworkSpec| {
        cluster
            .block_on(backend.start(spec, &CancellationToken::new(), &quiet))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let geth = spec("bad", Client::Geth, Consensus::Clique);

    let err = start(&backend(vec![]), &geth);
    assert!(err.contains("no Kubernetes region is configured"), "{err}");
    let mut placed = geth.clone();
    placed.regions = vec![chain::Region::named("mars")];
    let err = start(&backend(vec![good.clone()]), &placed);
    assert!(err.contains("region `mars`") && err.contains("has: east"), "{err}");
    let mut no_context = good.clone();
    no_context.context = Some("no-such-context".into());
    let err = start(&backend(vec![no_context]), &geth);
    assert!(
        err.contains("region `east`") && err.contains("no-such-context"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let unreachable_config = dir.path().join("unreachable.kubeconfig");
    let text = std::fs::read_to_string(&cluster.kubeconfig).unwrap();
    let server = text
        .lines()
        .find(|l| l.trim_start().starts_with("server:"))
        .unwrap()
        .trim();
    std::fs::write(&unreachable_config, text.replace(server, "server: https://127.0.0.1:1")).unwrap();
    let mut unreachable = good.clone();
    unreachable.kubeconfig = Some(unreachable_config);
    let err = start(&backend(vec![unreachable]), &geth);
    assert!(err.contains("not reachable"), "{err}");
    let mut unpinned = geth.clone();
    unpinned.version = Some("1.13.14".into());
    let err = start(&backend(vec![good.clone()]), &unpinned);
    assert!(err.contains("no image is pinned for geth 1.13.14"), "{err}");
    let long = spec(&"x".repeat(45), Client::Geth, Consensus::Clique);
    let err = start(&backend(vec![good.clone()]), &long);
    assert!(err.contains("longer than 52"), "{err}");
    let mut second = region("west", &cluster, ServiceType::ClusterIp, Access::Cluster);
    second.namespace = cluster.namespace.clone();
    let mut across = geth.clone();
    across.regions = vec![chain::Region::named("east"), chain::Region::named("west")];
    let err = start(&backend(vec![good.clone(), second]), &across);
    assert!(err.contains("NodePort or LoadBalancer"), "{err}");
    let mut local = geth.clone();
    local.backend = BackendKind::Local;
    let err = start(&backend(vec![good.clone()]), &local);
    assert!(err.contains("backend: kubernetes"), "{err}");
    assert!(objects(&cluster, "bad").is_empty());

    // A quota that admits one ConfigMap: the second node's is refused part-way, and what was made is deleted.
    let quota: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        &cluster.namespace,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ResourceQuota")),
    );
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "one-configmap"},
        // kube-root-ca.crt is the namespace's own ConfigMap.
        "spec": {"hard": {"configmaps": "2"}},
    });
    cluster
        .block_on(quota.patch(
            "one-configmap",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&body),
        ))
        .unwrap();
    // Admission counts against the quota once its controller has written what is used.
    wait_until("the quota's usage", Duration::from_secs(30), || {
        cluster
            .block_on(quota.get("one-configmap"))
            .unwrap()
            .data
            .pointer("/status/used/configmaps")
            .is_some()
    });
    let err = start(&backend(vec![good]), &geth);
    assert!(err.contains("exceeded quota") || err.contains("forbidden"), "{err}");
    assert_eq!(objects(&cluster, "bad"), Vec::<String>::new());
}

/// Sets its flag when dropped: a player stops when its test's scope ends, also by a failed assertion.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Plays the nodes of every network in the cluster's namespace until `done`: an anvil process on the node port
/// of each Service's `rpc` as the Service appears (kwok runs no container).
fn answer_services(cluster: &Cluster, done: &AtomicBool) -> usize {
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

#[test]
fn dagctl_runs_networks_on_kubernetes_from_the_cli_and_from_a_dag() {
    let cluster = Cluster::new("kube-cli");
    let home = Home::new();
    std::fs::write(
        home.path().join("dagctl.toml"),
        format!(
            r#"
[chain.kubernetes]
kill_grace = "1s"

[[chain.kubernetes.regions]]
name = "east"
kubeconfig = "{}"
namespace = "{}"
service_type = "NodePort"
access = "node-port"
node_address = "127.0.0.1"

[chain.kubernetes.images.anvil]
"1.7.1" = "example.org/anvil:1.7.1@sha256:{DIGEST}"
"#,
            cluster.kubeconfig.display(),
            cluster.namespace
        ),
    )
    .unwrap();
    home.write_dag(
        "kube_dag.yaml",
        r#"
kube_dag:
  tasks:
    deploy: {operator: chain.deploy_network, name: k-dag, backend: kubernetes, client: anvil, consensus: interval, nodes: 2, block_time: 1, ready_timeout: 90s}
    watch: {operator: chain.monitor, network: deploy, interval: 500ms, duration: 3s, dependencies: [deploy]}
    down: {operator: chain.teardown, network: deploy, trigger_rule: all_done, dependencies: [watch]}
"#,
    );
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let player = scope.spawn(|| answer_services(&cluster, &done));
        let stop = Stop(&done);
        let up = home.run(&[
            "net",
            "up",
            "--client",
            "anvil",
            "--consensus",
            "interval",
            "--nodes",
            "2",
            "--block-time",
            "1",
            "--backend",
            "kubernetes",
            "--name",
            "k-up",
            "--wait-ready-timeout",
            "90s",
            "-o",
            "json",
        ]);
        assert!(up.status.success(), "{}", common::stderr(&up));
        let described: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
        assert_eq!(described["backend"], "kubernetes");
        assert!(
            described["rpc"].as_str().unwrap().starts_with("http://127.0.0.1:3"),
            "{described}"
        );
        let shown = home.json(&["net", "show", "k-up"]);
        assert_eq!(shown["backend"], "kubernetes");
        assert_eq!(shown["host"], "kubernetes");
        assert_eq!(shown["nodes"][1]["pod"], "k-up-node-2-0");
        let listed = home.json(&["net", "ls"]);
        assert_eq!(listed[0]["nodes"], 2, "{listed}");
        // What needs a local process says so.
        let audit = home.run(&["audit", "k-up"]);
        assert!(!audit.status.success());
        assert!(
            common::stderr(&audit).contains("runs on the `kubernetes` backend"),
            "{}",
            common::stderr(&audit)
        );
        home.ok(&["net", "down", "k-up"]);
        assert_eq!(objects(&cluster, "k-up"), Vec::<String>::new());

        let test = home.run(&["dags", "test", "kube_dag"]);
        let text = format!("{}{}", common::stdout(&test), common::stderr(&test));
        assert!(test.status.success(), "{text}");
        assert!(text.contains("StatefulSets of image example.org/anvil"), "{text}");
        assert!(text.contains("monitoring network `k-dag` (2 nodes)"), "{text}");
        assert_eq!(objects(&cluster, "k-dag"), Vec::<String>::new());

        // The example DAG, as shipped, on Kubernetes: its check curls the node through the RPC Service.
        let example =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags/deploy-anvil.yaml"))
                .unwrap();
        home.write_dag("deploy-anvil.yaml", &example);
        let test = home.run(&["dags", "test", "deploy-anvil", "--conf", r#"{"backend": "kubernetes"}"#]);
        let text = format!("{}{}", common::stdout(&test), common::stderr(&test));
        assert!(test.status.success(), "{text}");
        assert!(
            text.contains("\"result\":\"0x7a69\""),
            "eth_chainId 31337 through the Service: {text}"
        );
        assert_eq!(objects(&cluster, "k-dag"), Vec::<String>::new());
        drop(stop);
        assert!(player.join().unwrap() >= 5);
    });

    // A spec asking for Kubernetes where no region is configured: a clear error, nothing recorded running.
    let bare = Home::new();
    let out = bare.run(&[
        "net",
        "up",
        "--client",
        "anvil",
        "--consensus",
        "interval",
        "--backend",
        "kubernetes",
    ]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("[chain.kubernetes]"),
        "{}",
        common::stderr(&out)
    );
}

/// Installs Chaos Mesh's CRDs (from `DAGCTL_TEST_CHAOS_MESH_CRDS`, which `scripts/test.sh` fills from the Go
/// module proxy) into the API server, so it validates every rendered fault against their schemas.
fn install_chaos_mesh(cluster: &Cluster) {
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
struct MemoryLedger {
    open: std::sync::Mutex<Vec<(String, String)>>,
    closed: std::sync::Mutex<Vec<(String, String)>>,
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
fn holds(got: &serde_json::Value, want: &serde_json::Value) -> bool {
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
fn chaos_objects(cluster: &Cluster, network: &str) -> Vec<(String, serde_json::Value)> {
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

#[test]
fn faults_on_kubernetes_are_chaos_mesh_objects_the_api_server_validates_and_deletes_at_their_end() {
    use chain::chaos::{episode, spec::FaultArgs};
    let cluster = Cluster::new("kube-chaos");
    install_chaos_mesh(&cluster);
    let backend = engine_backends(backend(vec![region(
        "east",
        &cluster,
        ServiceType::ClusterIp,
        Access::Cluster,
    )]));
    let mut geth = spec("c-geth", Client::Geth, Consensus::Clique);
    geth.nodes = 3;
    let record = match cluster
        .block_on(backend.start(&geth, &CancellationToken::new(), &quiet))
        .unwrap()
    {
        chain::AnyRecord::Kubernetes(record) => record,
        other => panic!("{other:?}"),
    };
    let any = chain::AnyRecord::Kubernetes(record.clone());
    let store = common::block_on(engine::store::Store::connect(&format!(
        "sqlite://{}",
        tempfile::tempdir().unwrap().keep().join("db.sqlite").display()
    )))
    .unwrap();

    let ip = |i: usize| record.nodes[i].peer.host.clone();
    let picked = |names: &[&str]| serde_json::json!({"expressionSelectors": [{"values": names}]});
    // (fault, kind, what each of its objects' specs must say)
    let cases: Vec<(serde_json::Value, &str, Vec<serde_json::Value>)> = vec![
        (
            serde_json::json!({"target": "validator-1", "netem": {"duration": "2s", "delay": {"time": 100, "jitter": 10, "correlation": 25}}}),
            "NetworkChaos",
            vec![
                serde_json::json!({"action": "delay", "direction": "to", "delay": {"latency": "100ms", "jitter": "10ms"}}),
            ],
        ),
        (
            serde_json::json!({"target": "validator-2", "netem": {"duration": "2s", "direction": "both", "rate": {"rate": "1mbit"}}}),
            "NetworkChaos",
            vec![
                serde_json::json!({"action": "bandwidth", "direction": "to", "bandwidth": {"rate": "125000bps"}, "selector": picked(&["validator-2"])}),
                serde_json::json!({"action": "bandwidth", "direction": "to", "externalTargets": [ip(1)],
                    "selector": picked(&["validator-1", "validator-3", "member-1"])}),
            ],
        ),
        (
            serde_json::json!({"target": "validator-1", "netem": {"duration": "2s", "loss": {"percent": 20}}}),
            "NetworkChaos",
            vec![serde_json::json!({"action": "loss", "loss": {"loss": "20"}})],
        ),
        (
            serde_json::json!({"target": "validator-1", "netem": {"duration": "2s", "duplicate": {"percent": 5}}}),
            "NetworkChaos",
            vec![serde_json::json!({"action": "duplicate"})],
        ),
        (
            serde_json::json!({"target": "validator-1", "netem": {"duration": "2s", "corrupt": {"percent": 5}}}),
            "NetworkChaos",
            vec![serde_json::json!({"action": "corrupt"})],
        ),
        (
            serde_json::json!({"target": "validator-1", "partition": {"duration": "2s", "from": "validator-2,validator-3"}}),
            "NetworkChaos",
            vec![
                serde_json::json!({"action": "partition", "direction": "to", "externalTargets": [ip(1), ip(2)],
                    "selector": picked(&["validator-1"])}),
                serde_json::json!({"action": "partition", "direction": "to", "externalTargets": [ip(0)],
                    "selector": picked(&["validator-2", "validator-3"])}),
            ],
        ),
        (
            serde_json::json!({"target": "validator-3", "kill": {}}),
            "PodChaos",
            vec![serde_json::json!({"action": "pod-kill", "gracePeriod": 1})],
        ),
        (
            serde_json::json!({"target": "validator-3", "kill": {"restart_after": "2s"}}),
            "PodChaos",
            vec![serde_json::json!({"action": "pod-failure", "duration": "2s"})],
        ),
        (
            serde_json::json!({"target": "member-1", "pause": {"duration": "2s"}}),
            "PodChaos",
            vec![serde_json::json!({"action": "pod-failure"})],
        ),
        (
            serde_json::json!({"target": "f", "stress": {"duration": "2s", "cpu": 2, "cpu_load": 50, "vm": 1, "memory": "64M"}}),
            "StressChaos",
            vec![
                serde_json::json!({"stressors": {"cpu": {"workers": 2, "load": 50}, "memory": {"workers": 1, "size": "64MiB"}}}),
            ],
        ),
        (
            serde_json::json!({"target": "validator-2", "clock": {"offset": "-30s", "duration": "2s"}}),
            "TimeChaos",
            vec![serde_json::json!({"timeOffset": "-30s", "containerNames": ["node"]})],
        ),
    ];
    for (fault, kind, expected) in cases {
        let args: FaultArgs = serde_json::from_value(fault.clone()).unwrap();
        let planned = episode::plan(&any, &[args], 7).unwrap_or_else(|e| panic!("{fault}: {e}"));
        let ledger = MemoryLedger::default();
        let seen = std::sync::Mutex::new(None);
        let never = CancellationToken::new();
        let reports = cluster.block_on(async {
            let faults = episode::run(&store, &backend, &ledger, "c-geth", &planned, &never, &quiet);
            let look = async {
                for _ in 0..40 {
                    let objects = tokio::task::block_in_place(|| chaos_objects(&cluster, "c-geth"));
                    if objects.len() >= expected.len() {
                        *seen.lock().unwrap() = Some(objects);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let (reports, ()) = tokio::join!(faults, look);
            reports
        });
        let reports = reports.unwrap_or_else(|e| panic!("{fault}: {e}"));
        assert!(reports[0].in_place.is_some(), "{fault}: {reports:?}");
        let objects = seen
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| panic!("{fault}: no object seen"));
        assert_eq!(objects.len(), expected.len(), "{fault}: {objects:?}");
        for (object_kind, spec) in &objects {
            assert_eq!(object_kind, kind, "{fault}");
            assert_eq!(spec["mode"], "all");
            assert_eq!(spec["selector"]["namespaces"][0], cluster.namespace.as_str());
        }
        for want in &expected {
            assert!(
                objects.iter().any(|(_, spec)| holds(spec, want)),
                "{fault}: no object holds {want}: {objects:?}"
            );
        }
        assert!(
            chaos_objects(&cluster, "c-geth").is_empty(),
            "{fault}: deleted at its end"
        );
        let open = ledger.open.lock().unwrap().len();
        assert_eq!(open, ledger.closed.lock().unwrap().len(), "{fault}: every part closed");
        assert!(open >= 1);
    }

    // What Chaos Mesh cannot say is refused before anything is made.
    for (fault, wanted) in [
        (
            serde_json::json!({"target": "validator-1", "partition": {"duration": "2s", "mode": "reset"}}),
            "mode `reset`",
        ),
        (
            serde_json::json!({"target": "validator-1", "netem": {"duration": "2s", "delay": {"time": 100, "jitter": 10, "distribution": "pareto"}}}),
            "no distribution",
        ),
    ] {
        let args: FaultArgs = serde_json::from_value(fault.clone()).unwrap();
        let err = episode::plan(&any, &[args], 7).unwrap_err();
        assert!(err.contains(wanted), "{fault}: {err}");
    }

    // Cancelled part-way: deleted at once.
    let args: FaultArgs =
        serde_json::from_value(serde_json::json!({"target": "validator-1", "pause": {"duration": "5m"}})).unwrap();
    let planned = episode::plan(&any, &[args], 7).unwrap();
    let cancel = CancellationToken::new();
    let ledger = MemoryLedger::default();
    let began = Instant::now();
    let reports = cluster.block_on(async {
        let faults = episode::run(&store, &backend, &ledger, "c-geth", &planned, &cancel, &quiet);
        let stop = async {
            for _ in 0..100 {
                if !tokio::task::block_in_place(|| chaos_objects(&cluster, "c-geth")).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            cancel.cancel();
        };
        tokio::join!(faults, stop).0
    });
    assert!(began.elapsed() < Duration::from_secs(30));
    assert!(reports.unwrap()[0].cancelled);
    assert!(chaos_objects(&cluster, "c-geth").is_empty());

    // Left behind by a process that died mid-fault: the engine's recovery deletes it.
    let book = chain::chaos::Book::new(&store, "c-geth", chain::NodeBackend::host_id(&backend)).unwrap();
    let args: FaultArgs =
        serde_json::from_value(serde_json::json!({"target": "validator-2", "stop": {"duration": "5m"}})).unwrap();
    let planned = episode::plan(&any, &[args], 9).unwrap();
    let object = &planned[0].1.mesh[0];
    let mut body = object.object.clone();
    body["metadata"]["name"] = serde_json::json!("left-behind");
    let target = chain::kubernetes::ClusterObject {
        region: object.region.clone(),
        namespace: object.namespace.clone(),
        api_version: chain::chaos::mesh::API_VERSION.into(),
        kind: object.kind.into(),
        name: "left-behind".into(),
    };
    cluster.block_on(async {
        book.applying(
            "east/PodChaos/left-behind",
            "chaos-mesh",
            &chain::chaos::Undo::ClusterObject(target),
        )
        .await
        .unwrap();
        chain::NodeBackend::apply_cluster_object(&backend, "east", &body)
            .await
            .unwrap();
    });
    assert_eq!(chaos_objects(&cluster, "c-geth").len(), 1);
    let undone = cluster
        .block_on(chain::chaos::ledger::recover(&store, &backend, true, &quiet))
        .unwrap();
    assert_eq!(undone.len(), 1, "{undone:?}");
    assert!(chaos_objects(&cluster, "c-geth").is_empty());

    cluster.block_on(backend.stop(&any)).unwrap();
    assert!(objects(&cluster, "c-geth").is_empty());
}

/// Serves `metrics.k8s.io/v1beta1` `PodMetrics` as metrics-server does, from objects the test writes: kwok runs
/// no container, so no real metrics-server has usage to report. A stand-in for that one part, said plainly in
/// docs/chain.md; the backend reads it through the same API path as the real one.
fn install_metrics_api(cluster: &Cluster) {
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

#[test]
fn the_chain_role_is_all_the_backend_needs_to_deploy_fault_watch_and_tear_down() {
    let cluster = Cluster::new("kube-rbac");
    install_chaos_mesh(&cluster);
    let role = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/dagctl/files/chain-role.yaml");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.service_account_kubeconfig("chain", &role, dir.path());
    let mut east = region("east", &cluster, ServiceType::NodePort, Access::NodePort);
    east.kubeconfig = Some(kubeconfig);
    // Listing nodes is cluster-wide, beyond the Role: the region names its node address.
    east.node_address = Some("127.0.0.1".into());
    let backend = engine_backends(backend(vec![east]));
    // (No `storage`: this cluster has no volume provisioner, so a claim would keep its pod Pending.)
    let (any, _nodes) = ready_anvil_network(&cluster, &backend, "r-anvil");
    let args: chain::chaos::spec::FaultArgs =
        serde_json::from_value(serde_json::json!({"target": "node-1", "pause": {"duration": "1s"}})).unwrap();
    let planned = chain::chaos::episode::plan(&any, &[args], 3).unwrap();
    let ledger = MemoryLedger::default();
    let never = CancellationToken::new();
    let store = common::block_on(engine::store::Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    )))
    .unwrap();
    cluster
        .block_on(chain::chaos::episode::run(
            &store, &backend, &ledger, "r-anvil", &planned, &never, &quiet,
        ))
        .unwrap();
    assert!(cluster
        .block_on(chain::NodeBackend::pod_watch(&backend, &any))
        .unwrap()
        .is_some());
    cluster.block_on(backend.restart_node(&any, "node-2", &quiet)).unwrap();
    cluster.block_on(backend.stop(&any)).unwrap();
    assert!(objects(&cluster, "r-anvil").is_empty());
}

#[test]
fn after_an_engine_restart_a_network_on_kubernetes_is_re_attached_or_cleaned_up() {
    let cluster = Cluster::new("kube-recover");
    let mut east = region("east", &cluster, ServiceType::ClusterIp, Access::NodePort);
    east.node_address = Some("127.0.0.1".into());
    let dir = tempfile::tempdir().unwrap();
    let store = common::block_on(engine::store::Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    )))
    .unwrap();
    let request = chain::lifecycle::DeployRequest {
        spec: spec("re-anvil", Client::Anvil, Consensus::Interval),
        ready_timeout: Duration::from_secs(60),
        ttl: None,
        owner: None,
    };
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let player = scope.spawn(|| answer_services(&cluster, &done));
        let stop = Stop(&done);
        let first = engine_backends(backend(vec![east.clone()]));
        let deployed = cluster.block_on(chain::lifecycle::deploy(
            &store,
            &first,
            &request,
            &CancellationToken::new(),
            &quiet,
        ));
        let deployed = deployed.unwrap();
        assert!(matches!(deployed.record, chain::AnyRecord::Kubernetes(_)));
        let row = common::block_on(store.get_network("re-anvil")).unwrap();
        assert_eq!((row.backend.as_str(), row.host.as_str()), ("kubernetes", "kubernetes"));

        // Another engine with the same regions finds it whole: re-attached.
        let second = engine_backends(backend(vec![east.clone()]));
        wait_until("both pods to run", Duration::from_secs(60), || {
            cluster
                .block_on(chain::NodeBackend::dead_nodes(&second, &deployed.record))
                .unwrap()
                .is_empty()
        });
        let recovery = cluster
            .block_on(chain::lifecycle::recover(&store, &second, &quiet))
            .unwrap();
        assert_eq!(recovery.attached, ["re-anvil"]);

        // A node lost while no engine watched: the next recovery cleans the network up.
        let sets: Api<StatefulSet> = Api::namespaced(cluster.client(), &cluster.namespace);
        cluster
            .block_on(sets.delete("re-anvil-node-2", &Default::default()))
            .unwrap();
        wait_until("node-2's pod to go", Duration::from_secs(60), || {
            let pods: Api<Pod> = Api::namespaced(cluster.client(), &cluster.namespace);
            cluster.block_on(pods.get_opt("re-anvil-node-2-0")).unwrap().is_none()
        });
        let recovery = cluster
            .block_on(chain::lifecycle::recover(&store, &second, &quiet))
            .unwrap();
        assert_eq!(recovery.cleaned, ["re-anvil"]);
        let row = common::block_on(store.get_network("re-anvil")).unwrap();
        assert_eq!(row.status, "removed");
        assert!(objects(&cluster, "re-anvil").is_empty());
        drop(stop);
        player.join().unwrap();
    });
}
