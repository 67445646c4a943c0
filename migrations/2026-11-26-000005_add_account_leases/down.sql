ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_outcome_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_outcome_check
    CHECK (outcome IN ('ok', 'failed', 'auth_failed'));
ALTER TABLE accounts DROP COLUMN lease_token, DROP COLUMN lease_expires_at;
