ALTER TABLE app_user ADD COLUMN external_id TEXT
