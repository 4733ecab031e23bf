//! `dagctl clients install geth|anvil`: pinned client binaries in `<home>/clients/bin`.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use chain::Client;

use crate::config::Config;

/// Installs one client into the data dir and prints where it went.
pub async fn install(config: &Config, client: &str) -> Result<ExitCode> {
    let client: Client = serde_json::from_value(serde_json::json!(client)).map_err(|e| anyhow!("client: {e}"))?;
    let dir = config.home.join("clients");
    let path = chain::local::clients::install(client, &dir, config.geth_release_url.as_deref(), &|line: &str| {
        eprintln!("{line}")
    })
    .await?;
    println!("{client} installed at {}", path.display());
    Ok(ExitCode::SUCCESS)
}
