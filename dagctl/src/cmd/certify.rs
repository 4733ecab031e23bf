//! `dagctl certify --profile gos-v1|FILE --network NAME [--scenario S]... [--key FILE] [--report FILE]`: a
//! network run through a resilience profile (`chain::certify`), with its 0-100 score and a report whose digest
//! (and, with `--key`, ed25519 signature) lets another operator check it: `dagctl certify verify REPORT
//! [--public-key HEX|FILE]`. `dagctl certify profile [gos-v1|FILE]` checks a profile and lists its scenarios.
//! Ctrl-C undoes the fault in place and ends the run.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use chain::certify::{self, report, Loaded, Report};
use chain::lifecycle;

use crate::config::Config;
use crate::output::Format;
use crate::runtime::{chain_backend, open_store};

/// Flags of `dagctl certify`.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CertifyArgs {
    /// The profile: a bundled one's name (gos-v1) or a YAML file
    #[arg(long)]
    pub profile: Option<String>,
    /// The running network
    #[arg(long)]
    pub network: Option<String>,
    /// Run only this scenario (repeat for more)
    #[arg(long = "scenario")]
    pub scenarios: Vec<String>,
    /// Sign the report with this ed25519 key (PKCS#8 PEM from `openssl genpkey -algorithm ed25519`, or 32
    /// bytes of hex)
    #[arg(long)]
    pub key: Option<std::path::PathBuf>,
    /// A funded private key (hex) for scenarios that send transactions (low-fee spam)
    #[arg(long)]
    pub funder_key: Option<String>,
    /// Write the report (JSON) here
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Seed of the random target choices (default: the clock)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Exit 1 when the score is below this
    #[arg(long)]
    pub min_score: Option<f64>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Option<CertifyCommand>,
}

/// `dagctl certify ...` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum CertifyCommand {
    /// Check a report: its digest, its score against its scenarios, its signature
    Verify {
        report: std::path::PathBuf,
        /// The signer's ed25519 public key (hex, or a PEM file from `openssl pkey -pubout`)
        #[arg(long)]
        public_key: Option<String>,
        /// The profile file it claims to have run: its SHA-256 must match
        #[arg(long)]
        profile: Option<String>,
    },
    /// Check a profile and list its scenarios
    Profile {
        #[arg(default_value = "gos-v1")]
        profile: String,
    },
}

fn read_profile(name: &str) -> Result<Loaded> {
    Loaded::read(name).map_err(|e| anyhow!("--profile: {e}"))
}

/// `dagctl certify`.
pub async fn certify(config: &Config, args: &CertifyArgs) -> Result<ExitCode> {
    match &args.command {
        Some(CertifyCommand::Verify {
            report,
            public_key,
            profile,
        }) => return verify(report, public_key.as_deref(), profile.as_deref()),
        Some(CertifyCommand::Profile { profile }) => return show_profile(profile),
        None => {}
    }
    let loaded = read_profile(
        args.profile
            .as_deref()
            .ok_or_else(|| anyhow!("--profile: which profile? gos-v1 or a YAML file"))?,
    )?;
    let name = args
        .network
        .as_deref()
        .ok_or_else(|| anyhow!("--network: which network?"))?;
    if let Some(s) = args.min_score.filter(|s| !(0.0..=100.0).contains(s)) {
        bail!("--min-score: a score is 0 to 100, not {s}");
    }
    let key = match &args.key {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("--key: {}", path.display()))?;
            Some(report::signing_key(&text).map_err(|e| anyhow!("--key: {}: {e}", path.display()))?)
        }
        None => None,
    };
    if let Some(key) = &args.funder_key {
        chain::load::spec::parse_key(key).map_err(|e| anyhow!("--funder-key: {e}"))?;
    }
    let store = open_store(config).await?;
    let row = store.get_network(name).await?;
    let record = match lifecycle::any_record_of(&row)? {
        Some(record) if row.status == "running" => record,
        _ => bail!("network `{name}` is {}: nothing runs to certify", row.status),
    };
    let backend = chain_backend(config)?;
    let cancel = crate::runtime::cancel_on_ctrl_c();
    let progress = |line: &str| eprintln!("{line}");
    let bench = certify::Bench {
        store: &store,
        backend: &backend,
        ledger: &store,
        record: &record,
        seed: args
            .seed
            .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64),
        funder_key: args.funder_key.clone(),
        cancel: &cancel,
        progress: &progress,
    };
    let mut report = certify::run(&bench, &loaded, &args.scenarios)
        .await
        .map_err(|e| anyhow!("--scenario: {e}"))?;
    report.seal(key.as_ref()).map_err(|e| anyhow!(e))?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("--report: {}", path.display()))?;
    }
    match args.output {
        Format::Json => println!("{json}"),
        Format::Table => print!("{}", table(&report)),
    }
    if cancel.is_cancelled() {
        eprintln!("error: cancelled; every fault was undone");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(min) = args.min_score.filter(|m| report.score < *m) {
        eprintln!("error: score {} is below {min}", report.score);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as a table: one line per scenario, then the score.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:<18} {:>6} {:>8} {:>9}  {}\n",
        "SCENARIO", "WEIGHT", "STATUS", "POINTS", "DETAIL"
    );
    for s in &report.scenarios {
        let status = serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let failed: Vec<&str> = s
            .criteria
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        let detail = if failed.is_empty() {
            s.detail.clone()
        } else {
            format!("{}; failed: {}", s.detail, failed.join(", "))
        };
        out.push_str(&format!(
            "{:<18} {:>6} {:>8} {:>9}  {}\n",
            s.name,
            s.weight,
            status,
            s.points.map(|p| format!("{p:.1}")).unwrap_or_else(|| "-".into()),
            detail
        ));
    }
    out.push_str(&format!(
        "score {} / 100 at {}% coverage ({} v{}, {})\ndigest {}\n",
        report.score,
        report.coverage,
        report.profile["name"].as_str().unwrap_or_default(),
        report.profile["version"],
        report.network["name"].as_str().unwrap_or_default(),
        report.digest.as_deref().unwrap_or("-")
    ));
    if let Some(sig) = &report.signature {
        out.push_str(&format!("signed with ed25519 key {}\n", sig.public_key));
    }
    out
}

fn verify(path: &std::path::Path, public_key: Option<&str>, profile: Option<&str>) -> Result<ExitCode> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let report: Report =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: not a certify report: {e}", path.display()))?;
    let expected = match public_key {
        Some(k) => {
            let text = if std::path::Path::new(k).is_file() {
                std::fs::read_to_string(k).with_context(|| format!("--public-key: {k}"))?
            } else {
                k.to_string()
            };
            Some(report::verifying_key(&text).map_err(|e| anyhow!("--public-key: {e}"))?)
        }
        None => None,
    };
    let mut checked = match report.verify(expected.as_ref()) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(p) = profile {
        let loaded = read_profile(p)?;
        let claimed = report.profile["sha256"].as_str().unwrap_or_default();
        if loaded.sha256 != claimed {
            eprintln!(
                "error: {}: the report ran a profile with SHA-256 {claimed}, not {p} ({})",
                path.display(),
                loaded.sha256
            );
            return Ok(ExitCode::FAILURE);
        }
        checked.push(format!("profile {p} is the one it ran ({})", loaded.sha256));
    }
    for line in checked {
        println!("ok: {line}");
    }
    println!("score {} / 100 at {}% coverage", report.score, report.coverage);
    Ok(ExitCode::SUCCESS)
}

fn show_profile(name: &str) -> Result<ExitCode> {
    let loaded = read_profile(name)?;
    let p = &loaded.profile;
    println!(
        "{} v{} ({}), sha256 {}",
        p.profile, p.version, loaded.source, loaded.sha256
    );
    let total: f64 = p.scenarios.iter().map(|s| s.weight).sum();
    for s in &p.scenarios {
        println!(
            "{:<18} {:>5.1}%  {}",
            s.name,
            100.0 * s.weight / total,
            s.description.as_deref().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
