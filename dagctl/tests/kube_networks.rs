//! The chain's Kubernetes backend against a real API server (the local control plane `scripts/test.sh` starts:
//! etcd, kube-apiserver, controller manager, scheduler, kwok): every client x consensus pair's objects are
//! accepted by server-side apply and hold what generation makes (golden: the genesis in the ConfigMap is the
//! local genesis, the container's args are the generated command line); readiness through node ports with anvil
//! processes answering for the Services (kwok runs no container); a node restart through its StatefulSet;
//! teardown that leaves nothing; dagctl's CLI and a DAG on the cluster; re-attach after an engine restart; bad input
//! refused before anything is made, and a half-made network deleted. Faults: `kube_chaos.rs`; monitoring:
//! `kube_monitor.rs`; shared helpers: `common/kube_chain.rs`.

mod common;
#[path = "common/kube_chain.rs"]
mod kube_chain;
#[path = "common/kube.rs"]
mod kube_harness;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chain::backend::kubernetes::{render, Access, KubeBackend, KubeRecord, ServiceType};
use chain::{BackendKind, Client, Consensus, NetworkSpec, NodeBackend, NodeParams, NodePorts, PodResources, Storage};
use common::Home;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_chain::*;
use kube_harness::Cluster;
use tokio_util::sync::CancellationToken;

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
