-- Where each scheduler's runners reach the task execution API: runners of a scheduler that died report to a
-- live one instead (failover without a shared disk).
ALTER TABLE scheduler_job ADD COLUMN api_url TEXT;
