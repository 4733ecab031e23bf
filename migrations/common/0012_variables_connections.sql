-- Airflow's variables and connections. Secret fields hold Fernet tokens (`is_encrypted`) made with a key that
-- is never stored here (`fernet_key` in the configuration or the data dir).
CREATE TABLE variable (
    key_name TEXT NOT NULL PRIMARY KEY,
    val TEXT NOT NULL,
    description TEXT,
    is_encrypted BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE connection (
    conn_id TEXT NOT NULL PRIMARY KEY,
    conn_type TEXT NOT NULL,
    description TEXT,
    host TEXT,
    schema_name TEXT,
    login TEXT,
    password TEXT,
    port BIGINT,
    extra TEXT,
    is_encrypted BIGINT NOT NULL,
    is_extra_encrypted BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
)
