CREATE TABLE chaos_fault (
    id TEXT NOT NULL,
    part TEXT NOT NULL,
    network TEXT NOT NULL,
    kind TEXT NOT NULL,
    undo TEXT NOT NULL,
    owner_host TEXT NOT NULL,
    owner_pid BIGINT NOT NULL,
    owner_started BIGINT NOT NULL,
    dag_id TEXT,
    run_id TEXT,
    task_id TEXT,
    applied_at BIGINT NOT NULL,
    undone_at BIGINT,
    undo_error TEXT,
    PRIMARY KEY (id, part)
);
CREATE INDEX chaos_fault_open ON chaos_fault (undone_at, network)
