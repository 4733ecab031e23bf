-- Dynamic task mapping: a task instance is one (run, task, map_index), with map_index -1 for a task that
-- is not mapped (or not yet expanded). XCom values are kept per mapped instance too.
ALTER TABLE task_instance ADD COLUMN map_index BIGINT NOT NULL DEFAULT -1;
DROP INDEX task_instance_key;
CREATE UNIQUE INDEX task_instance_key ON task_instance (run_pk, task_id, map_index);
ALTER TABLE xcom ADD COLUMN map_index BIGINT NOT NULL DEFAULT -1;
ALTER TABLE xcom DROP CONSTRAINT xcom_pkey;
ALTER TABLE xcom ADD PRIMARY KEY (run_pk, task_id, map_index, key_name);
