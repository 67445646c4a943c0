ALTER TABLE accounts DROP COLUMN consecutive_failures, DROP COLUMN next_attempt_at;
