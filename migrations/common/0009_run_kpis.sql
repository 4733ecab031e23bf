CREATE TABLE run_kpi (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    computed_at BIGINT NOT NULL,
    kpis TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id)
);
CREATE INDEX run_kpi_dag ON run_kpi (dag_id, computed_at)
