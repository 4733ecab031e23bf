CREATE TABLE dag (
    dag_id TEXT PRIMARY KEY,
    fileloc TEXT NOT NULL,
    is_paused BIGINT NOT NULL DEFAULT 0,
    is_stale BIGINT NOT NULL DEFAULT 0,
    version_hash TEXT NOT NULL,
    next_dagrun BIGINT,
    next_dagrun_create_after BIGINT,
    last_parsed_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE dag_version (
    version_hash TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    dag_id TEXT NOT NULL,
    version_number BIGINT NOT NULL,
    spec_json TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX dag_version_number ON dag_version (dag_id, version_number);
CREATE TABLE import_error (
    id INTEGER PRIMARY KEY,
    filename TEXT NOT NULL,
    line BIGINT,
    dag_id TEXT,
    task_id TEXT,
    key_name TEXT,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX import_error_file ON import_error (filename);
CREATE TABLE dag_run (
    id INTEGER PRIMARY KEY,
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    run_type TEXT NOT NULL,
    state TEXT NOT NULL,
    logical_date BIGINT,
    data_interval_start BIGINT,
    data_interval_end BIGINT,
    run_after BIGINT NOT NULL,
    queued_at BIGINT,
    start_date BIGINT,
    end_date BIGINT,
    conf TEXT NOT NULL,
    version_hash TEXT NOT NULL,
    triggered_by TEXT NOT NULL,
    triggering_user TEXT,
    note TEXT,
    needs_eval BIGINT NOT NULL DEFAULT 1,
    next_eval_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX dag_run_run_id ON dag_run (dag_id, run_id);
CREATE UNIQUE INDEX dag_run_logical_date ON dag_run (dag_id, logical_date) WHERE logical_date IS NOT NULL;
CREATE INDEX dag_run_state ON dag_run (state, needs_eval);
CREATE TABLE task_instance (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL,
    run_pk BIGINT NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    try_number BIGINT NOT NULL DEFAULT 0,
    max_tries BIGINT NOT NULL,
    operator TEXT NOT NULL,
    pool TEXT NOT NULL,
    pool_slots BIGINT NOT NULL,
    priority_weight BIGINT NOT NULL,
    queued_at BIGINT,
    start_date BIGINT,
    end_date BIGINT,
    hostname TEXT,
    pid BIGINT,
    scheduler_id TEXT,
    heartbeat_at BIGINT,
    next_retry_at BIGINT,
    message TEXT,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX task_instance_key ON task_instance (run_pk, task_id);
CREATE INDEX task_instance_state ON task_instance (state);
CREATE INDEX task_instance_owner ON task_instance (scheduler_id, state);
CREATE TABLE task_try (
    ti_id BIGINT NOT NULL,
    try_number BIGINT NOT NULL,
    state TEXT NOT NULL,
    start_date BIGINT,
    end_date BIGINT,
    hostname TEXT,
    pid BIGINT,
    message TEXT,
    PRIMARY KEY (ti_id, try_number)
);
CREATE TABLE xcom (
    run_pk BIGINT NOT NULL,
    task_id TEXT NOT NULL,
    key_name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_pk, task_id, key_name)
);
CREATE TABLE pool (
    name TEXT PRIMARY KEY,
    slots BIGINT NOT NULL,
    description TEXT,
    include_deferred BIGINT NOT NULL DEFAULT 0
);
INSERT INTO pool (name, slots, description) VALUES ('default_pool', 128, 'Default pool');
CREATE TABLE scheduler_job (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid BIGINT NOT NULL,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
CREATE TABLE event_log (
    id INTEGER PRIMARY KEY,
    ts BIGINT NOT NULL,
    event TEXT NOT NULL,
    dag_id TEXT,
    run_id TEXT,
    task_id TEXT,
    owner TEXT,
    extra TEXT
);
CREATE INDEX event_log_ts ON event_log (ts);
