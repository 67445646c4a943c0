-- Failed syncs are retried with a growing delay (or the provider's Retry-After), held here
-- rather than in broker-side delay queues: RabbitMQ 3.10 has no delayed-message plugin and a
-- schedule in Postgres survives any broker restart.
ALTER TABLE accounts
    ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at TIMESTAMPTZ;
