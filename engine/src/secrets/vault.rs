//! Variables and connections in clear for their users, encrypted in the store: every value and every
//! connection password and extra is written as a Fernet token and read back through the key.

use std::sync::Arc;

use super::{Connection, Fernet, Variable};
use crate::store::{ConnectionRow, Existing, Store, VariableRow};
use crate::Result;

/// The store's variables and connections, through the Fernet key. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    store: Store,
    fernet: Arc<Fernet>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({:?}, {:?})", self.store.backend(), self.fernet)
    }
}

impl Vault {
    pub fn new(store: Store, fernet: Fernet) -> Vault {
        Vault {
            store,
            fernet: Arc::new(fernet),
        }
    }

    fn open(&self, text: String, encrypted: bool) -> Result<String> {
        if encrypted {
            self.fernet.decrypt(&text)
        } else {
            Ok(text)
        }
    }

    fn variable(&self, row: VariableRow) -> Result<Variable> {
        Ok(Variable {
            value: self
                .open(row.val, row.is_encrypted)
                .map_err(|e| crate::Error::invalid(format!("variable `{}`: {e}", row.key)))?,
            key: row.key,
            description: row.description,
        })
    }

    fn connection(&self, row: ConnectionRow) -> Result<Connection> {
        let id = row.conn_id.clone();
        let named = |e: crate::Error| crate::Error::invalid(format!("connection `{id}`: {e}"));
        Ok(Connection {
            password: row
                .password
                .map(|p| self.open(p, row.is_encrypted))
                .transpose()
                .map_err(named)?,
            extra: row
                .extra
                .map(|e| self.open(e, row.is_extra_encrypted))
                .transpose()
                .map_err(named)?,
            conn_id: row.conn_id,
            conn_type: row.conn_type,
            description: row.description,
            host: row.host,
            schema: row.schema,
            login: row.login,
            port: row.port,
        })
    }

    pub async fn list_variables(&self) -> Result<Vec<Variable>> {
        self.store
            .list_variables()
            .await?
            .into_iter()
            .map(|row| self.variable(row))
            .collect()
    }

    pub async fn get_variable(&self, key: &str) -> Result<Variable> {
        self.variable(self.store.get_variable(key).await?)
    }

    pub async fn put_variable(&self, variable: &Variable, existing: Existing, user: Option<&str>) -> Result<()> {
        variable.check()?;
        let row = VariableRow {
            key: variable.key.clone(),
            val: self.fernet.encrypt(&variable.value),
            description: variable.description.clone(),
            is_encrypted: true,
            updated_at: chrono::Utc::now(),
        };
        self.store.put_variable(&row, existing, user).await
    }

    pub async fn delete_variable(&self, key: &str, user: Option<&str>) -> Result<()> {
        self.store.delete_variable(key, user).await
    }

    pub async fn list_connections(&self) -> Result<Vec<Connection>> {
        self.store
            .list_connections()
            .await?
            .into_iter()
            .map(|row| self.connection(row))
            .collect()
    }

    pub async fn get_connection(&self, conn_id: &str) -> Result<Connection> {
        self.connection(self.store.get_connection(conn_id).await?)
    }

    pub async fn put_connection(&self, conn: &Connection, existing: Existing, user: Option<&str>) -> Result<()> {
        conn.check()?;
        let row = ConnectionRow {
            conn_id: conn.conn_id.clone(),
            conn_type: conn.conn_type.clone(),
            description: conn.description.clone(),
            host: conn.host.clone(),
            schema: conn.schema.clone(),
            login: conn.login.clone(),
            password: conn.password.as_deref().map(|p| self.fernet.encrypt(p)),
            port: conn.port,
            extra: conn.extra.as_deref().map(|e| self.fernet.encrypt(e)),
            is_encrypted: conn.password.is_some(),
            is_extra_encrypted: conn.extra.is_some(),
            updated_at: chrono::Utc::now(),
        };
        self.store.put_connection(&row, existing, user).await
    }

    pub async fn delete_connection(&self, conn_id: &str, user: Option<&str>) -> Result<()> {
        self.store.delete_connection(conn_id, user).await
    }

    /// The name of a stored variable or connection the configured keys cannot read, if there is one (the first
    /// of each is tried): engines sharing a database with different keys, or a lost key, show at start.
    pub async fn unreadable(&self) -> Result<Option<String>> {
        if let Some(row) = self.store.list_variables().await?.into_iter().find(|v| v.is_encrypted) {
            if self.fernet.decrypt(&row.val).is_err() {
                return Ok(Some(format!("variable `{}`", row.key)));
            }
        }
        if let Some(row) = self
            .store
            .list_connections()
            .await?
            .into_iter()
            .find(|c| c.is_encrypted)
        {
            if row.password.as_deref().is_some_and(|p| self.fernet.decrypt(p).is_err()) {
                return Ok(Some(format!("connection `{}`", row.conn_id)));
            }
        }
        Ok(None)
    }

    /// Encrypts every value again with the first key (after a new key was put in front of the old one, as
    /// `airflow rotate-fernet-key`), each row only if nobody changed it meanwhile (then it is read again, a few
    /// times at most). Returns how many variables and connections were rewritten.
    pub async fn rotate(&self, _user: Option<&str>) -> Result<(usize, usize)> {
        let mut variables = 0;
        for row in self.store.list_variables().await? {
            let mut row = row;
            for _ in 0..5 {
                let clear = self.open(row.val.clone(), row.is_encrypted)?;
                if self
                    .store
                    .replace_variable_value(&row.key, &row.val, &self.fernet.encrypt(&clear))
                    .await?
                {
                    variables += 1;
                    break;
                }
                match self.store.get_variable(&row.key).await {
                    Ok(again) => row = again,
                    Err(crate::Error::NotFound(_)) => break,
                    Err(err) => return Err(err),
                }
            }
        }
        let mut connections = 0;
        for row in self.store.list_connections().await? {
            let mut row = row;
            for _ in 0..5 {
                let clear = self.connection(row.clone())?;
                let password = clear.password.as_deref().map(|p| self.fernet.encrypt(p));
                let extra = clear.extra.as_deref().map(|e| self.fernet.encrypt(e));
                if self
                    .store
                    .replace_connection_secrets(
                        &row.conn_id,
                        (row.password.as_deref(), row.extra.as_deref()),
                        (password.as_deref(), extra.as_deref()),
                    )
                    .await?
                {
                    connections += 1;
                    break;
                }
                match self.store.get_connection(&row.conn_id).await {
                    Ok(again) => row = again,
                    Err(crate::Error::NotFound(_)) => break,
                    Err(err) => return Err(err),
                }
            }
        }
        Ok((variables, connections))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_are_encrypted_at_rest_and_read_back_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let store = Store::connect(&url).await.unwrap();
        let key = Fernet::generate_key();
        let vault = Vault::new(store.clone(), Fernet::new(&key).unwrap());
        let var = Variable {
            key: "rpc_token".into(),
            value: "tok-secret-1".into(),
            description: Some("d".into()),
        };
        vault.put_variable(&var, Existing::Fail, Some("admin")).await.unwrap();
        assert!(matches!(
            vault.put_variable(&var, Existing::Fail, None).await,
            Err(crate::Error::Conflict(_))
        ));
        let raw = store.get_variable("rpc_token").await.unwrap();
        assert!(raw.is_encrypted && !raw.val.contains("tok-secret"), "{raw:?}");
        assert_eq!(vault.get_variable("rpc_token").await.unwrap(), var);
        let conn = Connection::from_uri("rpc", "ethereum://u:pw-123@127.0.0.1:8545?api_key=key-k1-secret").unwrap();
        vault.put_connection(&conn, Existing::Fail, None).await.unwrap();
        let raw = store.get_connection("rpc").await.unwrap();
        assert!(!raw.password.as_deref().unwrap().contains("pw-123"));
        // (A short value could appear in random ciphertext by chance: "k1" did, once in ~30 runs.)
        assert!(!raw.extra.as_deref().unwrap().contains("key-k1-secret"));
        assert_eq!(vault.get_connection("rpc").await.unwrap(), conn);
        // Rotation: a new key in front, every value rewritten, the old key no longer needed.
        let new = Fernet::generate_key();
        let both = Vault::new(store.clone(), Fernet::new(&format!("{new},{key}")).unwrap());
        assert_eq!(both.rotate(None).await.unwrap(), (1, 1));
        let only_new = Vault::new(store.clone(), Fernet::new(&new).unwrap());
        assert_eq!(only_new.get_variable("rpc_token").await.unwrap(), var);
        assert_eq!(only_new.get_connection("rpc").await.unwrap(), conn);
        // A wrong key is a clear error naming the variable, never garbage, and shows before any read.
        let wrong = Vault::new(store, Fernet::new(&key).unwrap());
        assert_eq!(
            wrong.unreadable().await.unwrap().as_deref(),
            Some("variable `rpc_token`")
        );
        assert_eq!(only_new.unreadable().await.unwrap(), None);
        let err = wrong.get_variable("rpc_token").await.unwrap_err().to_string();
        assert!(err.contains("rpc_token") && err.contains("Fernet"), "{err}");
        vault.delete_variable("rpc_token", None).await.unwrap();
        assert!(matches!(
            vault.delete_variable("rpc_token", None).await,
            Err(crate::Error::NotFound(_))
        ));
    }
}
