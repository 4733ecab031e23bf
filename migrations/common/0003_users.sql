CREATE TABLE app_user (
    username TEXT PRIMARY KEY,
    password_hash TEXT,
    role TEXT NOT NULL,
    source TEXT NOT NULL,
    email TEXT,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT
);
CREATE INDEX event_log_dag ON event_log (dag_id, id)
