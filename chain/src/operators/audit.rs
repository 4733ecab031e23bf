//! `chain.audit`: what the nodes of a network (or one node's URL) expose to whoever reaches their JSON-RPC
//! ([`crate::audit::exposure`]): open admin namespaces, binding beyond loopback, CORS and virtual hosts that
//! let a web page in, unlocked accounts, discovery. The findings (with severity and fix) are the XCom and the
//! log; with `fail_on`, a finding at that severity or worse fails the task.

use engine::operators::{validate_typed, ArgIssue, OperatorArgs, OperatorDef};
use serde::Deserialize;
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use super::resolve_network;
use crate::audit::exposure::{self, AuditTarget, Severity};
use crate::registry::{ApiNetworks, NetworkStore};

/// Canonical name of the audit operator.
pub const AUDIT: &str = "chain.audit";

/// The arguments of `chain.audit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditArgs {
    /// A network name, or the task id of a `chain.deploy_network` task of this run.
    #[serde(default)]
    pub network: Option<String>,
    /// Or one node's JSON-RPC URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Fail the task on a finding of this severity or worse (`high`, `medium`, `low`, `info`).
    #[serde(default)]
    pub fail_on: Option<String>,
}

impl OperatorArgs for AuditArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        match (&self.network, &self.url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ArgIssue::new("network", "give exactly one of `network` and `url`"));
            }
            (None, Some(url)) if !engine::operators::is_template(url) => {
                AuditTarget::of_url(url).map_err(|e| ArgIssue::new("url", e))?;
            }
            _ => {}
        }
        if let Some(level) = &self.fail_on {
            if Severity::parse(level).is_none() {
                return Err(ArgIssue::new(
                    "fail_on",
                    format!("unknown severity `{level}`; expected high, medium, low or info"),
                ));
            }
        }
        Ok(())
    }
}

/// `chain.audit`.
pub(super) struct Audit;

impl Operator for Audit {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: AUDIT,
            aliases: &[],
            validate: |args| validate_typed::<AuditArgs>(AUDIT, args),
            completes_in_scheduler: false,
            is_teardown: false,
        }
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        Box::pin(async move {
            match run(ctx).await {
                Ok(value) => OperatorResult::Success(Some(value)),
                Err(reason) => OperatorResult::Failed(reason),
            }
        })
    }
}

async fn run(ctx: OperatorContext) -> Result<serde_json::Value, String> {
    let args = ctx.args_as::<AuditArgs>()?;
    let targets = match (&args.network, &args.url) {
        (_, Some(url)) => vec![AuditTarget::of_url(url)?],
        (Some(reference), None) => {
            let networks = ApiNetworks(ctx.api.clone());
            let name = resolve_network(&ctx, &networks, reference)
                .await
                .map_err(|e| e.to_string())?;
            let row = networks.get_network(&name).await.map_err(|e| e.to_string())?;
            let record = crate::lifecycle::record_of(&row)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("network `{name}` has no running nodes to audit"))?;
            AuditTarget::of_record(&record)
        }
        (None, None) => return Err("give `network` or `url`".into()),
    };
    let report = exposure::audit(&targets).await;
    for line in report.table().lines() {
        ctx.log.line("info", "audit", line);
    }
    let value = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    if let Some(level) = args.fail_on.as_deref().and_then(Severity::parse) {
        if report.reaches(level) {
            return Err(format!(
                "{} finding(s) at {} or worse",
                report.findings.iter().filter(|f| f.severity >= level).count(),
                level.as_str()
            ));
        }
    }
    Ok(value)
}
