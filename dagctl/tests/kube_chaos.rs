//! Faults on a network on Kubernetes against a real API server with Chaos Mesh's CRDs installed: every fault kind
//! rendered as Chaos Mesh objects the server validates, deleted at the fault's end, on cancel and by recovery; what
//! Chaos Mesh cannot say refused; and the backend deploying, faulting, watching and tearing down with exactly the
//! chart's chain Role.

mod common;
#[path = "common/kube_chain.rs"]
mod kube_chain;
#[path = "common/kube.rs"]
mod kube_harness;

use std::time::{Duration, Instant};

use chain::backend::kubernetes::{Access, ServiceType};
use chain::{Client, Consensus, NodeBackend};
use kube_chain::*;
use kube_harness::Cluster;
use tokio_util::sync::CancellationToken;

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
