//! `dagctl variables get|set|list|delete|import|export` (Airflow's verbs). Values are encrypted at rest; a
//! value under a sensitive key (`password`, `token`, ...) prints as `***` unless `--show-secrets` is given.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use engine::secrets::{Variable, MASK};
use engine::store::Existing;
use serde_json::{json, Value};

use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::{open_store, vault};

async fn open(config: &Config) -> Result<engine::secrets::Vault> {
    let store = open_store(config).await?;
    vault(config, &store)
}

/// The user recorded in the audit log for CLI changes.
pub(crate) fn cli_user() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

pub async fn get(
    config: &Config,
    key: &str,
    default: Option<String>,
    json: bool,
    show_secrets: bool,
) -> Result<ExitCode> {
    let vault = open(config).await?;
    let variable = match vault.get_variable(key).await {
        Ok(v) => v,
        Err(engine::Error::NotFound(_)) => match default {
            Some(d) => {
                println!("{d}");
                return Ok(ExitCode::SUCCESS);
            }
            None => bail!("variable `{key}` does not exist"),
        },
        Err(err) => return Err(err.into()),
    };
    if variable.is_sensitive() && !show_secrets {
        eprintln!("variable `{key}` is sensitive by its name: shown as {MASK} (add --show-secrets to print it)");
        println!("{MASK}");
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        let value: Value =
            serde_json::from_str(&variable.value).map_err(|e| anyhow!("variable `{key}` is not JSON: {e}"))?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", variable.value);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn set(
    config: &Config,
    key: &str,
    value: &str,
    description: Option<String>,
    serialize_json: bool,
) -> Result<ExitCode> {
    let value = if serialize_json {
        let parsed: Value =
            serde_json::from_str(value).map_err(|e| anyhow!("--serialize-json: the value is not JSON: {e}"))?;
        parsed.to_string()
    } else {
        value.to_string()
    };
    let vault = open(config).await?;
    vault
        .put_variable(
            &Variable {
                key: key.to_string(),
                value,
                description,
            },
            Existing::Overwrite,
            Some(&cli_user()),
        )
        .await?;
    println!("variable `{key}` set");
    Ok(ExitCode::SUCCESS)
}

pub async fn list(config: &Config, output: Format, show_secrets: bool) -> Result<ExitCode> {
    let vault = open(config).await?;
    let rows: Vec<Value> = vault
        .list_variables()
        .await?
        .iter()
        .map(|v| json!({"key": v.key, "value": v.shown_value(show_secrets), "description": v.description}))
        .collect();
    print_rows(output, &["key", "value", "description"], &rows);
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(config: &Config, key: &str) -> Result<ExitCode> {
    let vault = open(config).await?;
    match vault.delete_variable(key, Some(&cli_user())).await {
        Ok(()) => {
            println!("variable `{key}` deleted");
            Ok(ExitCode::SUCCESS)
        }
        Err(engine::Error::NotFound(_)) => bail!("variable `{key}` does not exist"),
        Err(err) => Err(err.into()),
    }
}

/// Reads Airflow's variables file: `{"key": value, ...}` (a value that is not a string is kept as its JSON)
/// or `{"key": {"value": ..., "description": ...}}`. Every entry is checked before anything is written.
pub async fn import(config: &Config, file: &Path, on_existing: &str) -> Result<ExitCode> {
    let existing = match on_existing {
        "overwrite" => Existing::Overwrite,
        "fail" | "skip" => Existing::Fail,
        other => bail!("--action-on-existing-key must be overwrite, fail or skip, got `{other}`"),
    };
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}: not JSON: {e}", file.display()))?;
    let map = doc
        .as_object()
        .ok_or_else(|| anyhow!("{}: expected a JSON object of variables", file.display()))?;
    let mut variables = Vec::new();
    for (key, value) in map {
        let (value, description) = match value {
            Value::Object(o) if o.contains_key("value") => (
                o["value"].clone(),
                o.get("description").and_then(Value::as_str).map(str::to_string),
            ),
            other => (other.clone(), None),
        };
        let value = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let v = Variable {
            key: key.clone(),
            value,
            description,
        };
        v.check().map_err(|e| anyhow!("{}: {e}", file.display()))?;
        variables.push(v);
    }
    let vault = open(config).await?;
    let (mut written, mut skipped) = (0, 0);
    for v in &variables {
        match vault.put_variable(v, existing, Some(&cli_user())).await {
            Ok(()) => written += 1,
            Err(engine::Error::Conflict(_)) if on_existing == "skip" => skipped += 1,
            Err(engine::Error::Conflict(_)) => bail!(
                "variable `{}` already exists (written before it: {written}; use --action-on-existing-key overwrite or skip)",
                v.key
            ),
            Err(err) => return Err(err.into()),
        }
    }
    println!("{written} variable(s) imported, {skipped} skipped");
    Ok(ExitCode::SUCCESS)
}

/// Writes every variable (values in clear: the file is made readable by its owner only).
pub async fn export(config: &Config, file: &Path) -> Result<ExitCode> {
    let vault = open(config).await?;
    let mut out = serde_json::Map::new();
    for v in vault.list_variables().await? {
        let value = serde_json::from_str::<Value>(&v.value).unwrap_or(Value::String(v.value.clone()));
        let entry = match v.description {
            Some(d) => json!({"value": value, "description": d}),
            None => value,
        };
        out.insert(v.key, entry);
    }
    let count = out.len();
    web::auth::write_private(file, &serde_json::to_string_pretty(&Value::Object(out))?)?;
    println!("{count} variable(s) exported to {}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// `dagctl rotate-fernet-key`: every variable and connection encrypted again with the first key.
pub async fn rotate(config: &Config) -> Result<ExitCode> {
    let vault = open(config).await?;
    let (variables, connections) = vault.rotate(Some(&cli_user())).await?;
    println!("{variables} variable(s) and {connections} connection(s) encrypted with the first Fernet key");
    Ok(ExitCode::SUCCESS)
}
