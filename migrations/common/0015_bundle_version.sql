-- The commit a DAG version came from (Airflow 3's bundle_version) when the DAGs folder is a git checkout,
-- and the commit of the DAG's latest read.
ALTER TABLE dag_version ADD COLUMN bundle_version TEXT;
ALTER TABLE dag ADD COLUMN bundle_version TEXT;
