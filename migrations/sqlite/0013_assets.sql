-- Airflow's assets: what tasks update (outlets) and DAGs are scheduled by, their events, the queue of assets
-- updated since each consuming DAG's last asset-triggered run, and which events triggered which runs.
CREATE TABLE asset (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL,
    name TEXT NOT NULL,
    group_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX asset_uri ON asset (uri);
-- Which DAG is scheduled by (consumer) or whose task updates (producer, task_id set) which asset, rewritten
-- with each new DAG version.
CREATE TABLE asset_reference (
    asset_id BIGINT NOT NULL,
    dag_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (asset_id, dag_id, task_id)
);
CREATE INDEX asset_reference_dag ON asset_reference (dag_id);
CREATE TABLE asset_event (
    id INTEGER PRIMARY KEY,
    asset_id BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    source_dag_id TEXT,
    source_task_id TEXT,
    source_run_id TEXT,
    source_map_index BIGINT NOT NULL,
    extra TEXT
);
CREATE INDEX asset_event_asset ON asset_event (asset_id, ts);
CREATE TABLE asset_queue (
    asset_id BIGINT NOT NULL,
    dag_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    first_event_id BIGINT NOT NULL,
    PRIMARY KEY (asset_id, dag_id)
);
CREATE TABLE asset_run_event (
    run_pk BIGINT NOT NULL,
    event_id BIGINT NOT NULL,
    PRIMARY KEY (run_pk, event_id)
);
CREATE INDEX asset_run_event_event ON asset_run_event (event_id)
