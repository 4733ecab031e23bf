//! `chain.teardown`: stops a network given by name or by the deploy task (of the same run) that made it.

use std::sync::Arc;

use engine::operators::{validate_typed, ArgIssue, OperatorArgs, OperatorDef};
use serde::Deserialize;
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use crate::backend::NodeBackend;
use crate::error::Error;
use crate::lifecycle;
use crate::registry::ApiNetworks;

/// Canonical name of the teardown operator.
pub const TEARDOWN: &str = "chain.teardown";

/// The arguments of `chain.teardown`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeardownArgs {
    /// A network name, or the task id of a `chain.deploy_network` task of this run.
    pub network: String,
}

impl OperatorArgs for TeardownArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        if self.network.trim().is_empty() {
            return Err(ArgIssue::new(
                "network",
                "`network` must be a network name or the task id of a chain.deploy_network task",
            ));
        }
        Ok(())
    }
}

/// `chain.teardown`: stops a network given by name or by the deploy task that made it.
pub(super) struct Teardown<B> {
    pub(super) backend: Arc<B>,
}

impl<B: NodeBackend + 'static> Operator for Teardown<B> {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: TEARDOWN,
            aliases: &[],
            validate: |args| validate_typed::<TeardownArgs>(TEARDOWN, args),
            completes_in_scheduler: false,
            is_teardown: true,
        }
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let backend = self.backend.clone();
        Box::pin(async move {
            let reference = match ctx.args_as::<TeardownArgs>() {
                Ok(args) => args.network,
                Err(err) => return OperatorResult::Failed(err),
            };
            let networks = ApiNetworks(ctx.api.clone());
            let name = match super::resolve_network(&ctx, &networks, &reference).await {
                Ok(name) => name,
                Err(err) => return OperatorResult::Failed(err.to_string()),
            };
            let log = ctx.log.clone();
            // Its own task: a teardown that has begun finishes even if the runner drops this future.
            let work = tokio::spawn(async move {
                let progress = move |line: &str| log.line("info", "chain", line);
                progress(&format!("tearing down network `{name}`"));
                let result = lifecycle::teardown(&networks, backend.as_ref(), &name, &progress).await;
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
