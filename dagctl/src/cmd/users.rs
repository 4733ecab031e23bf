//! `dagctl users`: local users of the web UI and API. Passwords come from stdin, never from flags (which
//! other users can read in the process list); only an argon2id hash is stored.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use chrono::Utc;
use engine::store::UserRow;
use serde_json::json;

use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::open_store;

pub async fn create(config: &Config, username: &str, role: &str, email: Option<String>) -> Result<ExitCode> {
    let role = web::auth::Role::parse(role)
        .ok_or_else(|| anyhow!("--role must be Admin, Op, User or Viewer, got `{role}`"))?;
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.len() < 8 {
        bail!("the password (read from stdin) must be at least 8 characters");
    }
    let store = open_store(config).await?;
    let created_at = store
        .get_user(username)
        .await
        .map(|u| u.created_at)
        .unwrap_or_else(|_| Utc::now());
    store
        .put_user(&UserRow {
            username: username.to_string(),
            password_hash: Some(web::auth::hash_password(password)?),
            role: role.as_str().to_string(),
            source: "local".into(),
            email,
            external_id: None,
            created_at,
            last_login_at: None,
        })
        .await?;
    println!("user `{username}` has role {role}");
    Ok(ExitCode::SUCCESS)
}

pub async fn list(config: &Config, output: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let rows: Vec<_> = store
        .list_users()
        .await?
        .iter()
        .map(|u| {
            json!({"username": u.username, "role": u.role, "source": u.source, "email": u.email,
                   "last_login_at": u.last_login_at.map(|t| t.to_rfc3339())})
        })
        .collect();
    print_rows(output, &["username", "role", "source", "email", "last_login_at"], &rows);
    Ok(ExitCode::SUCCESS)
}
