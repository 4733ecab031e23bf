//! Users who sign in: local ones (with a password hash, never the password) and those an OpenID provider
//! vouched for (no password; role from their groups at each login).

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{micros, opt_time, time, Store};
use crate::{Error, Result};

/// A user as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UserRow {
    pub username: String,
    /// PHC string of the password hash; None for users who sign in through an OpenID provider.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub role: String,
    /// `local` or `oidc`.
    pub source: String,
    pub email: Option<String>,
    /// For `oidc` users: `<issuer> <sub>`, the identity the provider vouches for (names can be reused).
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

fn user_from_row(row: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: row.try_get("role")?,
        source: row.try_get("source")?,
        email: row.try_get("email")?,
        external_id: row.try_get("external_id")?,
        created_at: time(row, "created_at")?,
        last_login_at: opt_time(row, "last_login_at")?,
    })
}

const USER_COLUMNS: &str = "username, password_hash, role, source, email, external_id, created_at, last_login_at";

impl Store {
    pub async fn get_user(&self, username: &str) -> Result<UserRow> {
        let sql = format!("SELECT {USER_COLUMNS} FROM app_user WHERE username = $1");
        let row = sqlx::query(&sql).bind(username).fetch_optional(&self.pool).await?;
        row.map(|r| user_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("user `{username}`")))
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM app_user ORDER BY username");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// Creates or replaces a user (password hash, role, source, email).
    pub async fn put_user(&self, user: &UserRow) -> Result<()> {
        if user.username.trim().is_empty() || user.username.len() > 256 {
            return Err(Error::invalid("user names are 1 to 256 characters"));
        }
        sqlx::query(
            "INSERT INTO app_user (username, password_hash, role, source, email, external_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role, \
             source = excluded.source, email = excluded.email, external_id = excluded.external_id",
        )
        .bind(&user.username)
        .bind(user.password_hash.clone())
        .bind(&user.role)
        .bind(&user.source)
        .bind(user.email.clone())
        .bind(user.external_id.clone())
        .bind(micros(user.created_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Records a sign-in.
    pub async fn touch_login(&self, username: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE app_user SET last_login_at = $1 WHERE username = $2")
            .bind(micros(at))
            .bind(username)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Revokes a token (a signed-out session) until it would have expired anyway; expired entries are
    /// dropped on the way.
    pub async fn revoke_token(&self, jti: &str, expires_at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM revoked_token WHERE expires_at < $1")
            .bind(micros(Utc::now()))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO revoked_token (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
            .bind(jti)
            .bind(micros(expires_at))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn token_revoked(&self, jti: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM revoked_token WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Creates a pool; a name already taken is a conflict and changes nothing.
    pub async fn create_pool(
        &self,
        name: &str,
        slots: i64,
        description: Option<&str>,
        user: Option<&str>,
    ) -> Result<()> {
        super::misc::check_pool(name, slots)?;
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO pool (name, slots, description) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(slots)
        .bind(description.map(str::to_string))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::Conflict(format!("pool `{name}` already exists")));
        }
        super::misc::log_event(&mut tx, "pool_create", None, None, None, user, Some(name)).await?;
        tx.commit().await?;
        Ok(())
    }
}
