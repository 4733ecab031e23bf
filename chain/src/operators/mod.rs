//! The `chain.*` operators, one module each: where the engine and the chain crate meet.
//!
//! Each operator gives the engine its argument check (run when a DAG file is loaded) and the task runner its
//! code, through one [`worker::operator::Operator`] registration in [`register`]. They run in
//! `dagctl tasks run`, which holds no database credentials: network records go through the task execution API
//! ([`crate::registry::ApiNetworks`]) with the try's token, and the XCom they read is the run's XCom when the
//! try started ([`worker::operator::OperatorContext::xcoms`]).

mod audit;
mod certify;
mod chaos;
mod deploy_network;
mod load_test;
mod locust;
mod log_etl;
mod monitor;
mod teardown;

use std::sync::Arc;

use worker::operator::Operators;

use crate::backend::NodeBackend;

pub use audit::AUDIT;
pub use certify::CERTIFY;
pub use chaos::CHAOS;
pub use deploy_network::{default_network_name, DEPLOY_NETWORK};
pub use load_test::LOAD_TEST;
pub use locust::LOCUST;
pub use log_etl::LOG_ETL;
pub use monitor::MONITOR;
pub use teardown::TEARDOWN;

/// What the chain operators take from the engine's configuration.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Where load tests keep their per-call records (and locust its CSV stats).
    pub load_dir: std::path::PathBuf,
    /// The `locust` program `chain.locust` runs (default: `locust` on PATH).
    pub locust: Option<std::path::PathBuf>,
}

/// Registers the chain operators; their networks run on `backend`.
pub fn register<B: NodeBackend + 'static>(operators: &mut Operators, backend: Arc<B>, settings: Settings) {
    operators.add(Arc::new(deploy_network::DeployNetwork {
        backend: backend.clone(),
    }));
    operators.add(Arc::new(chaos::Chaos {
        backend: backend.clone(),
    }));
    operators.add(Arc::new(certify::Certify {
        backend: backend.clone(),
        reports_dir: settings.load_dir.clone(),
    }));
    operators.add(Arc::new(teardown::Teardown {
        backend: backend.clone(),
    }));
    operators.add(Arc::new(audit::Audit));
    operators.add(Arc::new(monitor::MonitorOperator { backend }));
    operators.add(Arc::new(load_test::LoadTest {
        records_dir: settings.load_dir.clone(),
    }));
    operators.add(Arc::new(log_etl::LogEtl {
        reports_dir: settings.load_dir.clone(),
    }));
    operators.add(Arc::new(locust::Locust {
        results_dir: settings.load_dir,
        program: settings.locust.unwrap_or_else(|| "locust".into()),
    }));
}

/// The network name behind `reference` (a `network:` argument): the `name` pushed by a task of this run
/// with that id, the network that task recorded, or else `reference` itself.
async fn resolve_network(
    ctx: &worker::operator::OperatorContext,
    networks: &impl crate::registry::NetworkStore,
    reference: &str,
) -> Result<String, crate::error::Error> {
    let pushed = ctx
        .xcoms
        .get(&(reference.to_string(), "return_value".to_string()))
        .and_then(|value| value.get("name"))
        .and_then(serde_json::Value::as_str);
    if let Some(name) = pushed {
        return Ok(name.to_string());
    }
    let owned = networks.list_networks(true).await?.into_iter().find(|row| {
        row.dag_id.as_deref() == Some(ctx.dag_id.as_str())
            && row.run_id.as_deref() == Some(ctx.run_id.as_str())
            && row.task_id.as_deref() == Some(reference)
    });
    Ok(owned.map(|row| row.name).unwrap_or_else(|| reference.to_string()))
}

/// The name and record of the running network `reference` names (a network name or a deploy task's id), or
/// "network `N` is STATUS: `nothing`".
async fn running_record(
    ctx: &worker::operator::OperatorContext,
    networks: &crate::registry::ApiNetworks,
    reference: &str,
    nothing: &str,
) -> Result<(String, crate::backend::any::AnyRecord), String> {
    use crate::registry::NetworkStore;
    let name = resolve_network(ctx, networks, reference)
        .await
        .map_err(|e| e.to_string())?;
    let row = networks.get_network(&name).await.map_err(|e| e.to_string())?;
    match crate::lifecycle::any_record_of(&row).map_err(|e| e.to_string())? {
        Some(record) if row.status == "running" => Ok((name, record)),
        _ => Err(format!("network `{name}` is {}: {nothing}", row.status)),
    }
}

/// `<dir>/<dag>/<run>/<task>-try<N>.<extension>` (`<task>-<map_index>-try<N>` for a mapped instance), every
/// part made safe for a file name.
fn results_path(dir: &std::path::Path, ctx: &worker::operator::OperatorContext, extension: &str) -> std::path::PathBuf {
    let part = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let task = if ctx.map_index >= 0 {
        format!("{}-{}", part(&ctx.task_id), ctx.map_index)
    } else {
        part(&ctx.task_id)
    };
    dir.join(part(&ctx.dag_id))
        .join(part(&ctx.run_id))
        .join(format!("{task}-try{}.{extension}", ctx.try_number))
}

/// The nodes a load goes to, as (name, JSON-RPC URL), and their WebSocket URLs by name where they have one:
/// the node at `url`, or every node of the running network `network` names.
type Nodes = (Vec<(String, String)>, std::collections::BTreeMap<String, String>);

async fn target_nodes(
    ctx: &worker::operator::OperatorContext,
    url: Option<&str>,
    network: Option<&str>,
) -> Result<Nodes, String> {
    use crate::registry::{ApiNetworks, NetworkStore};
    match (url, network) {
        (Some(url), _) => Ok((vec![(url.to_string(), url.to_string())], Default::default())),
        (None, Some(reference)) => {
            let networks = ApiNetworks(ctx.api.clone());
            let name = resolve_network(ctx, &networks, reference)
                .await
                .map_err(|e| e.to_string())?;
            let row = networks.get_network(&name).await.map_err(|e| e.to_string())?;
            if row.status != "running" {
                return Err(format!(
                    "network `{name}` is {}; load needs a running network",
                    row.status
                ));
            }
            let record = crate::lifecycle::any_record_of(&row)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("network `{name}` has no nodes"))?;
            Ok((record.rpc_endpoints(), record.ws_endpoints().into_iter().collect()))
        }
        (None, None) => Err("give `network` or `url`".into()),
    }
}

#[cfg(test)]
mod tests {
    use engine::operators::OperatorRegistry;
    use engine::parse::parse_text;

    use super::*;

    fn registry() -> OperatorRegistry {
        let dir = std::env::temp_dir().join("dagctl-chain-operator-tests");
        let backend = crate::local::LocalBackend::new(crate::local::LocalOptions::new(
            dir.clone(),
            Default::default(),
            "test-host".into(),
        ));
        let mut operators = worker::operator::Operators::builtin();
        register(&mut operators, Arc::new(backend), Settings::default());
        operators.registry().clone()
    }

    /// The errors of a one-task DAG whose task has `args` (YAML flow mapping entries).
    fn errors(args: &str) -> Vec<String> {
        let text =
            format!("d:\n  params: {{n: 4}}\n  tasks:\n    deploy:\n      operator: chain.deploy_network\n{args}\n");
        parse_text("d.yaml", &text, &[], &registry())
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    const GOOD: &str =
        "      client: geth\n      consensus: clique\n      nodes: 4\n      block_time: 2\n      gas_limit: 30000000";

    #[test]
    fn a_good_spec_and_templates_pass() {
        assert!(errors(GOOD).is_empty(), "{:?}", errors(GOOD));
        let templated = "      client: geth\n      consensus: clique\n      nodes: \"{{ params.n }}\"\n      ready_timeout: 3m\n      ttl: 1h";
        assert!(errors(templated).is_empty(), "{:?}", errors(templated));
        let all_templated =
            "      client: \"{{ params.c }}\"\n      consensus: \"{{ params.k }}\"\n      nodes: \"{{ params.n }}\"";
        assert!(errors(all_templated).is_empty());
    }

    #[test]
    fn bad_specs_name_key_and_line() {
        // (args, expected key, expected line, text in the message)
        let cases = [
            ("      client: ethereumjs\n      consensus: clique\n      nodes: 4", "client", 6, "unknown variant"),
            ("      client: geth\n      consensus: ibft\n      nodes: 4", "consensus", 7, "supported: clique"),
            ("      client: geth\n      consensus: clique\n      nodes: 0", "nodes", 8, "nodes"),
            ("      client: geth\n      consensus: clique\n      nodes: 4\n      block_time: -2", "block_time", 9, "negative"),
            ("      client: geth\n      consensus: clique\n      nodes: 4\n      gas_limit: 100", "gas_limit", 9, "out of range"),
            ("      client: geth\n      consensus: clique\n      nodes: 2\n      regions: [eu]\n      placement: {validator-1: us}", "placement", 10, "unknown region"),
            ("      client: geth\n      consensus: clique\n      nodes: 4\n      colour: red", "colour", 9, "unknown argument"),
            ("      client: geth\n      consensus: clique", "nodes", 5, "missing required"),
            ("      client: geth\n      consensus: clique\n      nodes: 4\n      ready_timeout: soon", "ready_timeout", 9, "duration"),
        ];
        for (args, key, line, needle) in cases {
            let errors = errors(args);
            assert_eq!(errors.len(), 1, "{args}: {errors:?}");
            let error = &errors[0];
            assert!(error.contains(&format!("d.yaml:{line}")), "{args}: {error}");
            assert!(error.contains(&format!("key `{key}`")), "{args}: {error}");
            assert!(error.contains(needle), "{args}: {error}");
        }
    }

    #[test]
    fn teardown_needs_a_network() {
        let text = "d:\n  tasks:\n    down: {operator: chain.teardown}\n    down2: {operator: chain.teardown, network: deploy}\n";
        let errors = parse_text("d.yaml", text, &[], &registry()).errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("network"));
    }

    #[test]
    fn default_names_are_valid_and_differ_per_run() {
        let a = default_network_name("Deploy_Geth.Clique", "manual__2026-11-22T10:00:00+00:00");
        let b = default_network_name("Deploy_Geth.Clique", "manual__2026-11-22T10:00:01+00:00");
        assert_ne!(a, b);
        assert!(a.starts_with("deploy-geth-clique-"), "{a}");
        let mut spec = crate::spec::NetworkSpec::new(a, crate::Client::Geth, crate::Consensus::Clique, 1);
        assert!(spec.validate().is_ok());
        spec.name = default_network_name(&"x".repeat(200), "r");
        assert!(spec.validate().is_ok(), "{}", spec.name);
    }
}
