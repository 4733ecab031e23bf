//! `chain.certify`: a network run through a resilience profile ([`crate::certify`]): the scenarios in order,
//! their verdicts, the 0-100 score and coverage, and the report sealed with its digest (and signed when
//! `key_file` names the operator's ed25519 key), written to `<load dir>/<dag>/<run>/<task>-try<N>.certify.json`
//! and pushed as the XCom. With `min_score`, a lower score fails the task.
//!
//! ```yaml
//!     certify:
//!       operator: chain.certify
//!       network: deploy
//!       profile: gos-v1
//!       scenarios: [crash-f, malformed-rpc, exposure]
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use engine::operators::{validate_typed, ArgIssue, OperatorArgs, OperatorDef};
use serde::Deserialize;
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use crate::backend::NodeBackend;
use crate::certify::{self, report, Loaded};
use crate::registry::ApiNetworks;

/// Canonical name of the certify operator.
pub const CERTIFY: &str = "chain.certify";

/// The arguments of `chain.certify`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifyArgs {
    /// A network name, or the task id of a `chain.deploy_network` task of this run.
    pub network: String,
    /// A bundled profile's name (`gos-v1`) or a profile file's path.
    pub profile: String,
    /// Only these scenarios (default: all).
    #[serde(default)]
    pub scenarios: Vec<String>,
    /// Seed of random target choices (default: the clock).
    #[serde(default)]
    pub seed: Option<u64>,
    /// The operator's ed25519 key (PKCS#8 PEM or 32 bytes of hex) to sign the report with.
    #[serde(default)]
    pub key_file: Option<String>,
    /// A funded key (hex) for scenarios that send transactions (`low_fee_spam`).
    #[serde(default)]
    pub funder_key: Option<String>,
    /// Fail the task when the score is below this.
    #[serde(default)]
    pub min_score: Option<f64>,
}

impl OperatorArgs for CertifyArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        if self.network.trim().is_empty() {
            return Err(ArgIssue::new(
                "network",
                "`network` must be a network name or a deploy task id",
            ));
        }
        if let Some(s) = self.min_score.filter(|s| !(0.0..=100.0).contains(s)) {
            return Err(ArgIssue::new("min_score", format!("a score is 0 to 100, not {s}")));
        }
        if let Some(key) = self
            .funder_key
            .as_deref()
            .filter(|k| !engine::operators::is_template(k))
        {
            crate::load::spec::parse_key(key).map_err(|e| ArgIssue::new("funder_key", e))?;
        }
        if engine::operators::is_template(&self.profile) {
            return Ok(());
        }
        let loaded = Loaded::read(&self.profile).map_err(|e| ArgIssue::new("profile", e))?;
        if let Some(unknown) = self
            .scenarios
            .iter()
            .find(|n| !loaded.profile.scenarios.iter().any(|s| &s.name == *n))
        {
            return Err(ArgIssue::new(
                "scenarios",
                format!(
                    "profile {} v{} has no scenario `{unknown}`",
                    loaded.profile.profile, loaded.profile.version
                ),
            ));
        }
        Ok(())
    }
}

/// `chain.certify`.
pub(super) struct Certify<B> {
    pub(super) backend: Arc<B>,
    pub(super) reports_dir: PathBuf,
}

impl<B: NodeBackend + 'static> Operator for Certify<B> {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: CERTIFY,
            aliases: &[],
            validate: |args| validate_typed::<CertifyArgs>(CERTIFY, args),
            completes_in_scheduler: false,
            is_teardown: false,
        }
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let (backend, dir) = (self.backend.clone(), self.reports_dir.clone());
        Box::pin(async move {
            match run(ctx, backend, dir).await {
                Ok(value) => OperatorResult::Success(Some(value)),
                Err(reason) => OperatorResult::Failed(reason),
            }
        })
    }
}

async fn run<B: NodeBackend>(ctx: OperatorContext, backend: Arc<B>, dir: PathBuf) -> Result<serde_json::Value, String> {
    let args = ctx.args_as::<CertifyArgs>()?;
    let loaded = Loaded::read(&args.profile).map_err(|e| format!("profile: {e}"))?;
    let key = match &args.key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("key_file: {path}: {e}"))?;
            Some(report::signing_key(&text).map_err(|e| format!("key_file: {path}: {e}"))?)
        }
        None => None,
    };
    let networks = ApiNetworks(ctx.api.clone());
    let (_, record) = super::running_record(&ctx, &networks, &args.network, "nothing runs to certify").await?;
    let log = ctx.log.clone();
    let progress = move |line: &str| log.line("info", "certify", line);
    let bench = certify::Bench {
        store: &networks,
        backend: backend.as_ref(),
        ledger: &networks,
        record: &record,
        seed: args
            .seed
            .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64),
        funder_key: args.funder_key.clone(),
        cancel: &ctx.cancel,
        progress: &progress,
    };
    let mut report = certify::run(&bench, &loaded, &args.scenarios).await?;
    report.seal(key.as_ref())?;
    let path = super::results_path(&dir, &ctx, "certify.json");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, format!("{json}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
    ctx.log.line(
        "info",
        "certify",
        &format!(
            "score {} / 100 at {}% coverage, {}; report {}",
            report.score,
            report.coverage,
            report.digest.as_deref().unwrap_or_default(),
            path.display()
        ),
    );
    if ctx.cancel.is_cancelled() {
        return Err("the try was stopped; every fault was undone".into());
    }
    if let Some(min) = args.min_score.filter(|m| report.score < *m) {
        return Err(format!(
            "score {} is below min_score {min} (report {})",
            report.score,
            path.display()
        ));
    }
    let mut value = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    value["report_file"] = serde_json::json!(path.display().to_string());
    Ok(value)
}
