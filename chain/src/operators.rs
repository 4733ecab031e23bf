//! The `chain.*` operators: where the engine and the chain crate meet.
//!
//! [`definitions`] gives the engine the argument validators, which run when a DAG file is loaded
//! (before anything starts); [`register`] gives the task runner the implementations. These run in
//! `dagctl tasks run`, which holds no database credentials: network records go through the task
//! execution API ([`ApiNetworks`]) with the try's token, and the XCom they read is the run's XCom
//! when the try started ([`OperatorContext::xcoms`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use engine::operators::{is_template, ArgError, Args, OperatorDef};
use engine::yaml::{Node, Value};
use serde_json::{Map, Value as Json};
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult, OperatorRuntime};

use crate::error::Error;
use crate::lifecycle::{self, DeployRequest, Owner, DEFAULT_READY_TIMEOUT, DEFAULT_TTL};
use crate::local::LocalBackend;
use crate::registry::{ApiNetworks, NetworkStore};
use crate::spec::NetworkSpec;

/// Canonical name of the deploy operator.
pub const DEPLOY_NETWORK: &str = "chain.deploy_network";
/// Canonical name of the teardown operator.
pub const TEARDOWN: &str = "chain.teardown";

/// Spec fields accepted by `chain.deploy_network`.
const SPEC_KEYS: &[&str] = &[
    "name",
    "client",
    "consensus",
    "nodes",
    "members",
    "block_time",
    "epoch",
    "request_timeout",
    "gas_limit",
    "chain_id",
    "accounts",
    "node_balance",
    "version",
    "regions",
    "placement",
    "key_seed",
];
/// Arguments of `chain.deploy_network` that are not spec fields.
const DEPLOY_OPTIONS: &[&str] = &["ready_timeout", "ttl"];
/// Spec fields that are whole numbers (a rendered template turns them into strings).
const INTEGER_KEYS: &[&str] = &["nodes", "members", "epoch", "gas_limit", "chain_id"];

/// Validators of the chain operators, to register with the engine's `OperatorRegistry`.
pub fn definitions() -> Vec<OperatorDef> {
    vec![
        OperatorDef {
            name: DEPLOY_NETWORK,
            aliases: &[],
            validate: validate_deploy,
            completes_in_scheduler: false,
        },
        OperatorDef {
            name: TEARDOWN,
            aliases: &[],
            validate: validate_teardown,
            completes_in_scheduler: false,
        },
    ]
}

/// Registers the implementations with a task runner's operator table.
pub fn register(runtime: &mut OperatorRuntime, backend: Arc<LocalBackend>) {
    runtime.register(
        DEPLOY_NETWORK,
        Arc::new(DeployNetwork {
            backend: backend.clone(),
        }),
    );
    runtime.register(TEARDOWN, Arc::new(Teardown { backend }));
}

fn has_template(node: &Node) -> bool {
    match &node.value {
        Value::Str(text) => is_template(text),
        Value::Seq(items) => items.iter().any(has_template),
        Value::Map(entries) => entries.iter().any(|(_, v)| has_template(v)),
        _ => false,
    }
}

/// Placeholders that make a partial spec deserializable; they never produce errors themselves.
fn placeholder_spec() -> Map<String, Json> {
    let mut object = Map::new();
    object.insert("name".into(), Json::from("placeholder"));
    object.insert("client".into(), Json::from("geth"));
    object.insert("consensus".into(), Json::from("clique"));
    object.insert("nodes".into(), Json::from(1));
    object
}

/// The spec field an error is about.
fn error_key(err: &Error) -> Option<&'static str> {
    match err {
        Error::UnsupportedConsensus { .. } => Some("consensus"),
        Error::InvalidField { field, .. } | Error::FieldNotApplicable { field, .. } => Some(field),
        Error::BlockTimeUnit { .. } => Some("block_time"),
        Error::UnsupportedVersion { .. } => Some("version"),
        Error::UnknownRegion { .. } | Error::UnknownNode { .. } => Some("placement"),
        _ => None,
    }
}

fn validate_deploy(args: &Args<'_>) -> Result<(), ArgError> {
    let mut allowed: Vec<&str> = SPEC_KEYS.to_vec();
    allowed.extend_from_slice(DEPLOY_OPTIONS);
    args.only(DEPLOY_NETWORK, &allowed)?;
    for key in ["client", "consensus", "nodes"] {
        args.require(key)?;
    }
    for key in DEPLOY_OPTIONS {
        if let Some(node) = args.get(key) {
            if !has_template(node) {
                engine::duration::duration_from_node(node)
                    .map_err(|e| args.error(key, node, format!("`{key}`: {e}")))?;
            }
        }
    }
    let mut templated: BTreeSet<&str> = BTreeSet::new();
    let mut fields: Vec<(&str, &Node)> = Vec::new();
    for (key, node) in &args.entries {
        if DEPLOY_OPTIONS.contains(&key.as_str()) {
            continue;
        }
        if has_template(node) {
            templated.insert(key.as_str());
        } else {
            fields.push((key.as_str(), node));
        }
    }
    // Each field alone: its type and shape (unknown client, negative block time, ...).
    for (key, node) in &fields {
        let mut probe = placeholder_spec();
        probe.insert(key.to_string(), node.to_json());
        if let Err(err) = serde_json::from_value::<NetworkSpec>(Json::Object(probe)) {
            return Err(args.error(key, node, format!("`{key}`: {err}")));
        }
    }
    // The whole spec, unless what decides legality (client, consensus) is only known at run time.
    if templated.contains("client") || templated.contains("consensus") {
        return Ok(());
    }
    let mut object = placeholder_spec();
    for (key, node) in &fields {
        object.insert(key.to_string(), node.to_json());
    }
    let spec: NetworkSpec = serde_json::from_value(Json::Object(object)).map_err(|err| ArgError {
        key: "client".into(),
        line: args.task_line,
        message: err.to_string(),
    })?;
    let Err(err) = spec.validate() else {
        return Ok(());
    };
    let key = error_key(&err);
    // An error about a templated field (or one that depends on the node count) may vanish once rendered.
    let depends_on_template = match key {
        Some(key) => templated.contains(key) || (key == "placement" && !templated.is_empty()),
        None => !templated.is_empty(),
    };
    if depends_on_template {
        return Ok(());
    }
    let message = format!("invalid network spec: {err}");
    match key.and_then(|k| args.get(k).map(|node| (k, node))) {
        Some((key, node)) => Err(args.error(key, node, message)),
        None => Err(ArgError {
            key: key.unwrap_or("client").to_string(),
            line: args.task_line,
            message,
        }),
    }
}

fn validate_teardown(args: &Args<'_>) -> Result<(), ArgError> {
    args.only(TEARDOWN, &["network"])?;
    let node = args.require("network")?;
    match &node.value {
        Value::Str(text) if !text.trim().is_empty() => Ok(()),
        _ => Err(args.error(
            "network",
            node,
            "`network` must be a network name or the task id of a chain.deploy_network task",
        )),
    }
}

/// A network name for a DAG task that gives none: the DAG id plus a hash of the run id, so two
/// runs of one DAG never share a network.
pub fn default_network_name(dag_id: &str, run_id: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in run_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let mut base: String = dag_id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(50);
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "net" } else { base };
    format!("{base}-{hash:08x}")
}

/// Turns rendered operator arguments into a deploy request.
fn deploy_request(ctx: &OperatorContext) -> Result<DeployRequest, String> {
    let mut object = Map::new();
    let mut ready_timeout = DEFAULT_READY_TIMEOUT;
    let mut ttl = Some(DEFAULT_TTL);
    for (key, value) in &ctx.args {
        match key.as_str() {
            "ready_timeout" => ready_timeout = duration_arg(key, value)?,
            "ttl" => {
                ttl = match value {
                    Json::Null => None,
                    other => Some(duration_arg(key, other)?),
                }
            }
            _ => {
                let value = match value {
                    // `nodes: "{{ params.nodes }}"` renders to the string "4".
                    Json::String(text) if INTEGER_KEYS.contains(&key.as_str()) => text
                        .trim()
                        .parse::<u64>()
                        .map(Json::from)
                        .map_err(|_| format!("`{key}` must be a whole number, got `{text}`"))?,
                    other => other.clone(),
                };
                object.insert(key.clone(), value);
            }
        }
    }
    object
        .entry("name")
        .or_insert_with(|| Json::from(default_network_name(&ctx.dag_id, &ctx.run_id)));
    let spec: NetworkSpec =
        serde_json::from_value(Json::Object(object)).map_err(|e| format!("invalid network spec: {e}"))?;
    spec.validate().map_err(|e| format!("invalid network spec: {e}"))?;
    Ok(DeployRequest {
        spec,
        ready_timeout,
        ttl,
        owner: Some(Owner {
            dag_id: ctx.dag_id.clone(),
            run_id: ctx.run_id.clone(),
            task_id: ctx.task_id.clone(),
        }),
    })
}

fn duration_arg(key: &str, value: &Json) -> Result<Duration, String> {
    match value {
        Json::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("`{key}` must be a non-negative duration")),
        Json::String(text) => engine::duration::parse_duration_str(text).map_err(|e| format!("`{key}`: {e}")),
        other => Err(format!("`{key}` must be a duration like 3m, got {other}")),
    }
}

/// `chain.deploy_network`: deploys a network and pushes its endpoints as XCom.
struct DeployNetwork {
    backend: Arc<LocalBackend>,
}

impl Operator for DeployNetwork {
    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let backend = self.backend.clone();
        Box::pin(async move {
            let request = match deploy_request(&ctx) {
                Ok(request) => request,
                Err(message) => return OperatorResult::Failed(message),
            };
            // The runner drops this future on `execution_timeout` (and cancels the token): the
            // deploy runs as its own task so it still sees the cancellation and cleans up.
            let work = tokio::spawn(deploy_task(ctx, backend, request));
            match work.await {
                Ok(result) => result,
                Err(err) => OperatorResult::Failed(format!("deploy task ended abnormally: {err}")),
            }
        })
    }
}

async fn deploy_task(ctx: OperatorContext, backend: Arc<LocalBackend>, request: DeployRequest) -> OperatorResult {
    let log = ctx.log.clone();
    let progress = move |line: &str| log.line("info", "chain", line);
    let networks = ApiNetworks(ctx.api.clone());
    match lifecycle::reap(&networks, &backend, Utc::now(), &progress).await {
        Ok(reaped) if !reaped.is_empty() => progress(&format!("reaped expired networks: {}", reaped.join(", "))),
        Ok(_) => {}
        Err(err) => ctx.log.error(&format!("reaping expired networks failed: {err}")),
    }
    match lifecycle::deploy(&networks, &backend, &request, &ctx.cancel, &progress).await {
        Ok(deployed) => OperatorResult::Success(Some(deployed.record.endpoints())),
        Err(err) => {
            for line in err.to_string().lines() {
                ctx.log.error(line);
            }
            OperatorResult::Failed(err.to_string())
        }
    }
}

/// `chain.teardown`: stops a network given by name or by the deploy task that made it.
struct Teardown {
    backend: Arc<LocalBackend>,
}

impl Teardown {
    /// The network name behind `reference`: the `name` pushed by a task of this run with that id,
    /// the network that task recorded, or else `reference` itself.
    async fn resolve(ctx: &OperatorContext, networks: &impl NetworkStore, reference: &str) -> Result<String, Error> {
        let pushed = ctx
            .xcoms
            .get(&(reference.to_string(), "return_value".to_string()))
            .and_then(|value| value.get("name"))
            .and_then(Json::as_str);
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
}

impl Operator for Teardown {
    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let backend = self.backend.clone();
        Box::pin(async move {
            let Some(reference) = ctx.args.get("network").and_then(Json::as_str).map(str::to_string) else {
                return OperatorResult::Failed("`network` must be a string".into());
            };
            let networks = ApiNetworks(ctx.api.clone());
            let name = match Teardown::resolve(&ctx, &networks, &reference).await {
                Ok(name) => name,
                Err(err) => return OperatorResult::Failed(err.to_string()),
            };
            let log = ctx.log.clone();
            // Its own task: a teardown that has begun finishes even if the runner drops this future.
            let work = tokio::spawn(async move {
                let progress = move |line: &str| log.line("info", "chain", line);
                progress(&format!("tearing down network `{name}`"));
                let result = lifecycle::teardown(&networks, &backend, &name, &progress).await;
                (name, result)
            });
            match work.await {
                Ok((name, Ok(()))) => {
                    OperatorResult::Success(Some(serde_json::json!({"name": name, "status": "removed"})))
                }
                Ok((_, Err(Error::NotFound(what)))) => OperatorResult::Failed(format!(
                    "{what} not found: `{reference}` is neither a network name nor a deploy task of this run"
                )),
                Ok((_, Err(err))) => OperatorResult::Failed(err.to_string()),
                Err(err) => OperatorResult::Failed(format!("teardown task ended abnormally: {err}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use engine::operators::OperatorRegistry;
    use engine::parse::parse_text;

    use super::*;

    fn registry() -> OperatorRegistry {
        let mut registry = OperatorRegistry::builtin();
        for def in definitions() {
            registry.register(def);
        }
        registry
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
        let mut spec = NetworkSpec::new(a, crate::Client::Geth, crate::Consensus::Clique, 1);
        assert!(spec.validate().is_ok());
        spec.name = default_network_name(&"x".repeat(200), "r");
        assert!(spec.validate().is_ok(), "{}", spec.name);
    }
}
