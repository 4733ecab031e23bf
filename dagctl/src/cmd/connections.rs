//! `dagctl connections add|get|list|delete` (Airflow's verbs and flags). Passwords and extras are encrypted at
//! rest; the password and sensitive extra fields print as `***` unless `--show-secrets` is given. A password
//! can come from stdin (`--conn-password -`) so it never shows in the process list.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use engine::secrets::Connection;
use engine::store::Existing;
use serde_json::{json, Value};

use super::variables::cli_user;
use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::{open_store, vault};

/// `dagctl connections add`'s flags.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    pub conn_id: String,
    /// Airflow's connection URI: type://login:password@host:port/schema?extra_key=value
    #[arg(long, conflicts_with_all = ["conn_json", "conn_type"])]
    pub conn_uri: Option<String>,
    /// The connection as JSON: {"conn_type": ..., "host": ..., "port": ..., "extra": {...}}
    #[arg(long, conflicts_with = "conn_type")]
    pub conn_json: Option<String>,
    #[arg(long)]
    pub conn_type: Option<String>,
    #[arg(long)]
    pub conn_host: Option<String>,
    #[arg(long)]
    pub conn_login: Option<String>,
    /// The password, or `-` to read it from stdin (first line)
    #[arg(long)]
    pub conn_password: Option<String>,
    #[arg(long)]
    pub conn_port: Option<i64>,
    #[arg(long)]
    pub conn_schema: Option<String>,
    /// Extra fields as a JSON object
    #[arg(long)]
    pub conn_extra: Option<String>,
    #[arg(long)]
    pub conn_description: Option<String>,
    /// Replace a connection of the same id instead of refusing
    #[arg(long)]
    pub overwrite: bool,
}

fn read_password(flag: Option<String>) -> Result<Option<String>> {
    match flag.as_deref() {
        Some("-") => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
        }
        _ => Ok(flag),
    }
}

fn connection_of(args: AddArgs) -> Result<(Connection, bool)> {
    let overwrite = args.overwrite;
    let conn = if let Some(uri) = &args.conn_uri {
        let mut conn = Connection::from_uri(&args.conn_id, uri)?;
        if args.conn_description.is_some() {
            conn.description = args.conn_description.clone();
        }
        conn
    } else if let Some(text) = &args.conn_json {
        let mut doc: Value = serde_json::from_str(text).map_err(|e| anyhow!("--conn-json: not JSON: {e}"))?;
        let map = doc
            .as_object_mut()
            .ok_or_else(|| anyhow!("--conn-json: expected a JSON object"))?;
        if let Some(extra) = map.get("extra").filter(|e| e.is_object()).cloned() {
            map.insert("extra".into(), Value::String(extra.to_string()));
        }
        map.insert("conn_id".into(), Value::String(args.conn_id.clone()));
        serde_json::from_value(doc).map_err(|e| anyhow!("--conn-json: {e}"))?
    } else {
        let conn_type = args
            .conn_type
            .clone()
            .ok_or_else(|| anyhow!("give --conn-uri, --conn-json or --conn-type"))?;
        Connection {
            conn_id: args.conn_id.clone(),
            conn_type,
            description: args.conn_description.clone(),
            host: args.conn_host.clone(),
            schema: args.conn_schema.clone(),
            login: args.conn_login.clone(),
            password: read_password(args.conn_password.clone())?,
            port: args.conn_port,
            extra: args.conn_extra.clone(),
        }
    };
    conn.check()?;
    Ok((conn, overwrite))
}

pub async fn add(config: &Config, args: AddArgs) -> Result<ExitCode> {
    let (conn, overwrite) = connection_of(args)?;
    let store = open_store(config).await?;
    let vault = vault(config, &store)?;
    let existing = if overwrite { Existing::Overwrite } else { Existing::Fail };
    match vault.put_connection(&conn, existing, Some(&cli_user())).await {
        Ok(()) => {
            println!("connection `{}` added", conn.conn_id);
            Ok(ExitCode::SUCCESS)
        }
        Err(engine::Error::Conflict(_)) => bail!(
            "connection `{}` already exists (add --overwrite to replace it)",
            conn.conn_id
        ),
        Err(err) => Err(err.into()),
    }
}

const COLUMNS: &[&str] = &[
    "conn_id",
    "conn_type",
    "description",
    "host",
    "port",
    "schema",
    "login",
    "password",
    "extra",
];

fn row(conn: &Connection, show_secrets: bool) -> Value {
    let c = conn.shown(show_secrets);
    json!({
        "conn_id": c.conn_id, "conn_type": c.conn_type, "description": c.description, "host": c.host,
        "port": c.port, "schema": c.schema, "login": c.login, "password": c.password, "extra": c.extra,
        "uri": c.to_uri(),
    })
}

pub async fn get(config: &Config, conn_id: &str, output: Format, show_secrets: bool) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let vault = vault(config, &store)?;
    let conn = match vault.get_connection(conn_id).await {
        Ok(c) => c,
        Err(engine::Error::NotFound(_)) => bail!("connection `{conn_id}` does not exist"),
        Err(err) => return Err(err.into()),
    };
    print_rows(output, COLUMNS, &[row(&conn, show_secrets)]);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(config: &Config, output: Format, show_secrets: bool) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let vault = vault(config, &store)?;
    let rows: Vec<Value> = vault
        .list_connections()
        .await?
        .iter()
        .map(|c| row(c, show_secrets))
        .collect();
    print_rows(output, COLUMNS, &rows);
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(config: &Config, conn_id: &str) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let vault = vault(config, &store)?;
    match vault.delete_connection(conn_id, Some(&cli_user())).await {
        Ok(()) => {
            println!("connection `{conn_id}` deleted");
            Ok(ExitCode::SUCCESS)
        }
        Err(engine::Error::NotFound(_)) => bail!("connection `{conn_id}` does not exist"),
        Err(err) => Err(err.into()),
    }
}
