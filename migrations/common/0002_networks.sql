CREATE TABLE network (
    name TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    host TEXT NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    nodes TEXT NOT NULL,
    dag_id TEXT,
    run_id TEXT,
    task_id TEXT,
    ttl_seconds BIGINT,
    message TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX network_status ON network (status);
CREATE INDEX network_owner ON network (dag_id, run_id)
