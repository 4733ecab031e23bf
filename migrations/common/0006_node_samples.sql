CREATE TABLE node_sample (
    network TEXT NOT NULL,
    node TEXT NOT NULL,
    metric TEXT NOT NULL,
    at BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    run_id TEXT,
    task_id TEXT
);
CREATE INDEX node_sample_series ON node_sample (network, metric, at);
CREATE INDEX node_sample_at ON node_sample (at)
