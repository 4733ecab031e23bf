//! `chain.deploy_network`: deploys a network and pushes its endpoints as XCom.
//!
//! Its arguments are a network spec (see `chain/README.md`) plus `ready_timeout` and `ttl`. They are checked
//! field by field when the DAG file is loaded, and as a whole spec once client and consensus are known, so a
//! template (`nodes: "{{ params.nodes }}"`) is accepted wherever it could render into something legal.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use engine::operators::{is_template, ArgError, Args, OperatorDef};
use engine::yaml::{Node, Value};
use serde_json::{Map, Value as Json};
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use crate::backend::NodeBackend;
use crate::error::Error;
use crate::lifecycle::{self, DeployRequest, Owner, DEFAULT_READY_TIMEOUT, DEFAULT_TTL};
use crate::registry::ApiNetworks;
use crate::spec::NetworkSpec;

/// Canonical name of the deploy operator.
pub const DEPLOY_NETWORK: &str = "chain.deploy_network";

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
    "isolation",
    "backend",
    "resources",
    "storage",
];
/// Arguments of `chain.deploy_network` that are not spec fields.
const DEPLOY_OPTIONS: &[&str] = &["ready_timeout", "ttl"];
/// Spec fields that are whole numbers (a rendered template turns them into strings).
const INTEGER_KEYS: &[&str] = &["nodes", "members", "epoch", "gas_limit", "chain_id"];

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
pub(super) struct DeployNetwork<B> {
    pub(super) backend: Arc<B>,
}

impl<B: NodeBackend + 'static> Operator for DeployNetwork<B> {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: DEPLOY_NETWORK,
            aliases: &[],
            validate: validate_deploy,
            completes_in_scheduler: false,
            is_teardown: false,
        }
    }

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

async fn deploy_task<B: NodeBackend>(ctx: OperatorContext, backend: Arc<B>, request: DeployRequest) -> OperatorResult {
    let log = ctx.log.clone();
    let progress = move |line: &str| log.line("info", "chain", line);
    let networks = ApiNetworks(ctx.api.clone());
    match lifecycle::reap(&networks, backend.as_ref(), Utc::now(), &progress).await {
        Ok(reaped) if !reaped.is_empty() => progress(&format!("reaped expired networks: {}", reaped.join(", "))),
        Ok(_) => {}
        Err(err) => ctx.log.error(&format!("reaping expired networks failed: {err}")),
    }
    match lifecycle::deploy(&networks, backend.as_ref(), &request, &ctx.cancel, &progress).await {
        Ok(deployed) => OperatorResult::Success(Some(backend.describe(&deployed.record))),
        Err(err) => {
            for line in err.to_string().lines() {
                ctx.log.error(line);
            }
            OperatorResult::Failed(err.to_string())
        }
    }
}
