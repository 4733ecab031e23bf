CREATE INDEX node_sample_time ON node_sample (network, at)
