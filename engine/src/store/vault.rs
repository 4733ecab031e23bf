//! Variables and connections as stored: secret fields hold whatever the caller gives (Fernet tokens when
//! `is_encrypted`); encryption and decryption live in [`crate::secrets`], never here. Every change lands with
//! its audit entry (names only, never values).

use chrono::Utc;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::misc::log_event;
use super::{micros, time, Store};
use crate::{Error, Result};

/// A variable as stored (`val` is a Fernet token when `is_encrypted`).
#[derive(Debug, Clone, PartialEq)]
pub struct VariableRow {
    pub key: String,
    pub val: String,
    pub description: Option<String>,
    pub is_encrypted: bool,
    pub updated_at: chrono::DateTime<Utc>,
}

/// A connection as stored (`password` is a Fernet token when `is_encrypted`, `extra` when
/// `is_extra_encrypted`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRow {
    pub conn_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<i64>,
    pub extra: Option<String>,
    pub is_encrypted: bool,
    pub is_extra_encrypted: bool,
    pub updated_at: chrono::DateTime<Utc>,
}

fn variable_from_row(row: &AnyRow) -> Result<VariableRow> {
    Ok(VariableRow {
        key: row.try_get("key_name")?,
        val: row.try_get("val")?,
        description: row.try_get("description")?,
        is_encrypted: row.try_get::<i64, _>("is_encrypted")? != 0,
        updated_at: time(row, "updated_at")?,
    })
}

fn connection_from_row(row: &AnyRow) -> Result<ConnectionRow> {
    Ok(ConnectionRow {
        conn_id: row.try_get("conn_id")?,
        conn_type: row.try_get("conn_type")?,
        description: row.try_get("description")?,
        host: row.try_get("host")?,
        schema: row.try_get("schema_name")?,
        login: row.try_get("login")?,
        password: row.try_get("password")?,
        port: row.try_get("port")?,
        extra: row.try_get("extra")?,
        is_encrypted: row.try_get::<i64, _>("is_encrypted")? != 0,
        is_extra_encrypted: row.try_get::<i64, _>("is_extra_encrypted")? != 0,
        updated_at: time(row, "updated_at")?,
    })
}

const VARIABLE_COLUMNS: &str = "key_name, val, description, is_encrypted, updated_at";
const CONNECTION_COLUMNS: &str = "conn_id, conn_type, description, host, schema_name, login, password, port, extra, \
                                  is_encrypted, is_extra_encrypted, updated_at";

/// Whether a write may replace what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse with [`Error::Conflict`] when the name is taken.
    Fail,
    /// Replace it.
    Overwrite,
    /// Refuse with [`Error::NotFound`] unless it exists.
    MustExist,
}

impl Store {
    pub async fn list_variables(&self) -> Result<Vec<VariableRow>> {
        let sql = format!("SELECT {VARIABLE_COLUMNS} FROM variable ORDER BY key_name");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(variable_from_row)
            .collect()
    }

    pub async fn get_variable(&self, key: &str) -> Result<VariableRow> {
        let sql = format!("SELECT {VARIABLE_COLUMNS} FROM variable WHERE key_name = $1");
        let row = sqlx::query(&sql).bind(key).fetch_optional(&self.pool).await?;
        row.map(|r| variable_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("variable `{key}`")))
    }

    /// Writes a variable as `existing` allows, in one statement (no check-then-write race between engines).
    pub async fn put_variable(&self, row: &VariableRow, existing: Existing, user: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        let sql = match existing {
            Existing::Fail => {
                "INSERT INTO variable (key_name, val, description, is_encrypted, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (key_name) DO NOTHING"
            }
            Existing::MustExist => {
                "UPDATE variable SET val = $2, description = $3, is_encrypted = $4, updated_at = $5 WHERE key_name = $1"
            }
            Existing::Overwrite => {
                "INSERT INTO variable (key_name, val, description, is_encrypted, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (key_name) DO UPDATE SET val = excluded.val, description = excluded.description, \
                 is_encrypted = excluded.is_encrypted, updated_at = excluded.updated_at"
            }
        };
        let written = sqlx::query(sql)
            .bind(&row.key)
            .bind(&row.val)
            .bind(row.description.clone())
            .bind(row.is_encrypted as i64)
            .bind(micros(Utc::now()))
            .execute(&mut *tx)
            .await?;
        if written.rows_affected() == 0 {
            return Err(match existing {
                Existing::MustExist => Error::NotFound(format!("variable `{}`", row.key)),
                _ => Error::Conflict(format!("variable `{}` already exists", row.key)),
            });
        }
        log_event(&mut tx, "variable_put", None, None, None, user, Some(&row.key)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a variable's stored value only if it is still `old` (re-encryption beside other writers).
    /// Returns whether it did.
    pub async fn replace_variable_value(&self, key: &str, old: &str, new: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE variable SET val = $3, is_encrypted = 1 WHERE key_name = $1 AND val = $2")
            .bind(key)
            .bind(old)
            .bind(new)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_variable(&self, key: &str, user: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM variable WHERE key_name = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(Error::NotFound(format!("variable `{key}`")));
        }
        log_event(&mut tx, "variable_delete", None, None, None, user, Some(key)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_connections(&self) -> Result<Vec<ConnectionRow>> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connection ORDER BY conn_id");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(connection_from_row)
            .collect()
    }

    pub async fn get_connection(&self, conn_id: &str) -> Result<ConnectionRow> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connection WHERE conn_id = $1");
        let row = sqlx::query(&sql).bind(conn_id).fetch_optional(&self.pool).await?;
        row.map(|r| connection_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("connection `{conn_id}`")))
    }

    /// Writes a connection as `existing` allows, in one statement (no check-then-write race between engines).
    pub async fn put_connection(&self, row: &ConnectionRow, existing: Existing, user: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        let columns = "(conn_id, conn_type, description, host, schema_name, login, password, port, extra, \
                       is_encrypted, is_extra_encrypted, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        let sql = match existing {
            Existing::Fail => format!("INSERT INTO connection {columns} ON CONFLICT (conn_id) DO NOTHING"),
            Existing::MustExist => {
                "UPDATE connection SET conn_type = $2, description = $3, host = $4, schema_name = $5, \
                                    login = $6, password = $7, port = $8, extra = $9, is_encrypted = $10, \
                                    is_extra_encrypted = $11, updated_at = $12 WHERE conn_id = $1"
                    .to_string()
            }
            Existing::Overwrite => format!(
                "INSERT INTO connection {columns} ON CONFLICT (conn_id) DO UPDATE SET conn_type = excluded.conn_type, \
                 description = excluded.description, host = excluded.host, schema_name = excluded.schema_name, \
                 login = excluded.login, password = excluded.password, port = excluded.port, extra = excluded.extra, \
                 is_encrypted = excluded.is_encrypted, is_extra_encrypted = excluded.is_extra_encrypted, \
                 updated_at = excluded.updated_at"
            ),
        };
        let written = sqlx::query(&sql)
            .bind(&row.conn_id)
            .bind(&row.conn_type)
            .bind(row.description.clone())
            .bind(row.host.clone())
            .bind(row.schema.clone())
            .bind(row.login.clone())
            .bind(row.password.clone())
            .bind(row.port)
            .bind(row.extra.clone())
            .bind(row.is_encrypted as i64)
            .bind(row.is_extra_encrypted as i64)
            .bind(micros(Utc::now()))
            .execute(&mut *tx)
            .await?;
        if written.rows_affected() == 0 {
            return Err(match existing {
                Existing::MustExist => Error::NotFound(format!("connection `{}`", row.conn_id)),
                _ => Error::Conflict(format!("connection `{}` already exists", row.conn_id)),
            });
        }
        log_event(&mut tx, "connection_put", None, None, None, user, Some(&row.conn_id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a connection's stored password and extra only if they are still `old` (re-encryption beside
    /// other writers). Returns whether it did.
    pub async fn replace_connection_secrets(
        &self,
        conn_id: &str,
        old: (Option<&str>, Option<&str>),
        new: (Option<&str>, Option<&str>),
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connection SET password = $4, extra = $5, is_encrypted = $6, is_extra_encrypted = $7 \
             WHERE conn_id = $1 AND password IS NOT DISTINCT FROM $2 AND extra IS NOT DISTINCT FROM $3",
        )
        .bind(conn_id)
        .bind(old.0.map(str::to_string))
        .bind(old.1.map(str::to_string))
        .bind(new.0.map(str::to_string))
        .bind(new.1.map(str::to_string))
        .bind(new.0.is_some() as i64)
        .bind(new.1.is_some() as i64)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_connection(&self, conn_id: &str, user: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM connection WHERE conn_id = $1")
            .bind(conn_id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(Error::NotFound(format!("connection `{conn_id}`")));
        }
        log_event(&mut tx, "connection_delete", None, None, None, user, Some(conn_id)).await?;
        tx.commit().await?;
        Ok(())
    }
}
