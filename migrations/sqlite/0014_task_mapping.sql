-- Dynamic task mapping: a task instance is one (run, task, map_index), with map_index -1 for a task that
-- is not mapped (or not yet expanded). XCom values are kept per mapped instance too.
ALTER TABLE task_instance ADD COLUMN map_index BIGINT NOT NULL DEFAULT -1;
DROP INDEX task_instance_key;
CREATE UNIQUE INDEX task_instance_key ON task_instance (run_pk, task_id, map_index);
CREATE TABLE xcom_mapped (
    run_pk BIGINT NOT NULL,
    task_id TEXT NOT NULL,
    map_index BIGINT NOT NULL DEFAULT -1,
    key_name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_pk, task_id, map_index, key_name)
);
INSERT INTO xcom_mapped (run_pk, task_id, map_index, key_name, value, created_at)
    SELECT run_pk, task_id, -1, key_name, value, created_at FROM xcom;
DROP TABLE xcom;
ALTER TABLE xcom_mapped RENAME TO xcom;
