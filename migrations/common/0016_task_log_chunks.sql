-- Task logs kept in the database (task_logs = "database"): every scheduler and webserver of an installation
-- reads the same logs, whichever server a runner sent its lines to. A chunk is whole NDJSON lines, and its
-- offsets are byte positions in the try's log as if it were one file.
CREATE TABLE task_log_chunk (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    map_index BIGINT NOT NULL,
    try_number BIGINT NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, map_index, try_number, start_offset)
);
