-- One worker per mailbox: a lease with an expiry, and a fencing token that grows with every
-- acquisition; each write of a sync checks the token in its own transaction.
ALTER TABLE accounts
    ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN lease_expires_at TIMESTAMPTZ;

ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_outcome_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_outcome_check
    CHECK (outcome IN ('ok', 'failed', 'auth_failed', 'lease_lost', 'partial'));
