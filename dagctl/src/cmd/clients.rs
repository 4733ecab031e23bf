//! `dagctl clients install geth|anvil|quorum [--from PATH]`: pinned client binaries in `<home>/clients/bin`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use chain::local::clients::InstallSource;
use chain::Client;

use crate::config::Config;

/// Installs one client into the data dir and prints where it went.
pub async fn install(config: &Config, client: &str, from: Option<&Path>) -> Result<ExitCode> {
    let client: Client = serde_json::from_value(serde_json::json!(client)).map_err(|e| anyhow!("client: {e}"))?;
    let dir = config.home.join("clients");
    let release_store = match client {
        Client::Quorum => config.quorum_release_url.as_deref(),
        _ => config.geth_release_url.as_deref(),
    };
    let source = InstallSource { release_store, from };
    let path = chain::local::clients::install(client, &dir, &source, &|line: &str| eprintln!("{line}")).await?;
    println!("{client} installed at {}", path.display());
    Ok(ExitCode::SUCCESS)
}
