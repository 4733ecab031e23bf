CREATE TABLE node_alert (
    network TEXT NOT NULL,
    node TEXT NOT NULL,
    level TEXT NOT NULL,
    pattern TEXT NOT NULL,
    message TEXT NOT NULL,
    count BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    run_id TEXT,
    task_id TEXT,
    PRIMARY KEY (network, node, level, pattern)
);
CREATE INDEX node_alert_last ON node_alert (network, last_at)
