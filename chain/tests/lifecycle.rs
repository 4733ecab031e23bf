//! Network lifecycle with real anvil processes: TTL reaping and recovery after a restart.
//!
//! anvil comes from `DAGCTL_ANVIL` or `DAGCTL_CLIENTS_BIN` (see `scripts/install-clients.sh`);
//! a missing binary fails the tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chain::lifecycle::{self, DeployRequest, Owner};
use chain::local::process::is_node_alive;
use chain::local::{ClientBinaries, LocalBackend, LocalOptions};
use chain::{Client, Consensus, NetworkSpec};
use chrono::Utc;
use engine::testing::TestDb;
use tokio_util::sync::CancellationToken;

fn anvil() -> PathBuf {
    if let Some(path) = std::env::var_os("DAGCTL_ANVIL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("DAGCTL_CLIENTS_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("anvil");
    }
    panic!(
        "anvil is needed: set DAGCTL_ANVIL, or DAGCTL_CLIENTS_BIN to the bin dir printed by scripts/install-clients.sh"
    )
}

fn backend(networks: &std::path::Path) -> LocalBackend {
    let mut overrides = BTreeMap::new();
    overrides.insert(Client::Anvil, anvil());
    let binaries = ClientBinaries {
        dir: None,
        overrides,
        path: None,
    };
    let mut options = LocalOptions::new(networks.to_path_buf(), binaries, "test-host".into());
    options.kill_grace = Duration::from_secs(3);
    LocalBackend::new(options)
}

fn request(name: &str, owner: Option<Owner>, ttl: Option<Duration>) -> DeployRequest {
    DeployRequest {
        spec: NetworkSpec::new(name, Client::Anvil, Consensus::Interval, 1),
        ready_timeout: Duration::from_secs(60),
        ttl,
        owner,
    }
}

fn quiet(_: &str) {}

/// Stops a network's processes if a test panics half way, so no node outlives the test.
struct Cleanup(chain::local::NetworkRecord);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let nodes: Vec<(u32, PathBuf)> = self
            .0
            .nodes
            .iter()
            .filter_map(|n| n.pid.map(|pid| (pid, n.data_dir.clone())))
            .collect();
        chain::local::process::stop_all(&nodes, Duration::from_secs(3));
    }
}

#[tokio::test]
async fn networks_past_their_ttl_are_reaped_and_others_kept() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let cancel = CancellationToken::new();
    // Owned by a run the store does not have (ended and deleted): past its TTL at once.
    let owner = Owner {
        dag_id: "d".into(),
        run_id: "gone".into(),
        task_id: "deploy".into(),
    };
    let orphan = lifecycle::deploy(
        &db.store,
        &backend,
        &request("orphan", Some(owner), Some(Duration::from_secs(1))),
        &cancel,
        &quiet,
    )
    .await
    .unwrap();
    let _orphan_cleanup = Cleanup(orphan.record.clone());
    // Deployed from the CLI: no owner, no TTL.
    let kept = lifecycle::deploy(&db.store, &backend, &request("kept", None, None), &cancel, &quiet)
        .await
        .unwrap();
    let _kept_cleanup = Cleanup(kept.record.clone());
    let reaped = lifecycle::reap(&db.store, &backend, Utc::now(), &quiet).await.unwrap();
    assert_eq!(reaped, vec!["orphan"]);
    let node = &orphan.record.nodes[0];
    assert!(!is_node_alive(node.pid.unwrap(), &node.data_dir));
    assert!(!orphan.record.base_dir.exists());
    let row = db.store.get_network("orphan").await.unwrap();
    assert_eq!(row.status, "removed");
    assert!(row.message.unwrap().contains("TTL"));
    assert_eq!(db.store.get_network("kept").await.unwrap().status, "running");
    assert!(lifecycle::reap(&db.store, &backend, Utc::now(), &quiet)
        .await
        .unwrap()
        .is_empty());
    lifecycle::teardown(&db.store, &backend, "kept", &quiet).await.unwrap();
    assert!(!kept.record.base_dir.exists());
    // A second teardown is harmless.
    lifecycle::teardown(&db.store, &backend, "kept", &quiet).await.unwrap();
}

#[tokio::test]
async fn recovery_reattaches_live_networks_and_cleans_up_broken_ones() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let cancel = CancellationToken::new();
    let alive = lifecycle::deploy(&db.store, &backend, &request("alive", None, None), &cancel, &quiet)
        .await
        .unwrap();
    let _alive_cleanup = Cleanup(alive.record.clone());
    let mut spec = NetworkSpec::new("broken", Client::Anvil, Consensus::Interval, 2);
    spec.block_time = Some(chain::SpecDuration::from_secs(1));
    let broken_request = DeployRequest {
        spec,
        ..request("unused", None, None)
    };
    let broken = lifecycle::deploy(&db.store, &backend, &broken_request, &cancel, &quiet)
        .await
        .unwrap();
    let _broken_cleanup = Cleanup(broken.record.clone());
    // One node of `broken` dies while dagctl is away.
    let victim = &broken.record.nodes[1];
    let victim_pid = nix::unistd::Pid::from_raw(victim.pid.unwrap() as i32);
    nix::sys::signal::kill(victim_pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while is_node_alive(victim.pid.unwrap(), &victim.data_dir) {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = lifecycle::recover(&db.store, &backend, &quiet).await.unwrap();
    assert_eq!(recovery.attached, vec!["alive"]);
    assert_eq!(recovery.cleaned, vec!["broken"]);
    let survivor = &broken.record.nodes[0];
    assert!(!is_node_alive(survivor.pid.unwrap(), &survivor.data_dir));
    assert!(!broken.record.base_dir.exists());
    let row = db.store.get_network("broken").await.unwrap();
    assert_eq!(row.status, "removed");
    assert!(row.message.unwrap().contains("node-2"), "names the lost node");
    let node = &alive.record.nodes[0];
    assert!(is_node_alive(node.pid.unwrap(), &node.data_dir));
    lifecycle::teardown(&db.store, &backend, "alive", &quiet).await.unwrap();
    assert!(!is_node_alive(node.pid.unwrap(), &node.data_dir));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_network_left_starting_by_an_ended_deploy_task_is_reaped() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    // As a runner that died between claiming the name and starting a node leaves it: `starting`, no nodes,
    // owned by a task the store no longer runs.
    let claim = |name: &'static str, dag_id: Option<&'static str>| engine::store::NewNetwork {
        name,
        backend: "local",
        host: "test-host",
        spec: "{}",
        dag_id,
        run_id: dag_id.map(|_| "r"),
        task_id: dag_id.map(|_| "deploy"),
        ttl_seconds: None,
    };
    db.store
        .claim_network(&claim("abandoned", Some("d")), Utc::now())
        .await
        .unwrap();
    std::fs::create_dir_all(dir.path().join("abandoned")).unwrap();
    // Started from the CLI (no owner): its deploy may still be under way; not the reaper's to judge.
    db.store
        .claim_network(&claim("cli-starting", None), Utc::now())
        .await
        .unwrap();
    let reaped = lifecycle::reap(&db.store, &backend, Utc::now(), &quiet).await.unwrap();
    assert_eq!(reaped, vec!["abandoned"]);
    let row = db.store.get_network("abandoned").await.unwrap();
    assert_eq!(row.status, "removed");
    assert!(row.message.unwrap().contains("deploy's task ended"));
    assert!(!dir.path().join("abandoned").exists());
    assert_eq!(db.store.get_network("cli-starting").await.unwrap().status, "starting");
}
