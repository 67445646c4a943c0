-- Settings of a connection test in flight. The job on RabbitMQ names the row, so credentials
-- never travel in a message; the coordinator deletes the row when the answer is in.
CREATE TABLE connection_tests (
    id           BIGSERIAL PRIMARY KEY,
    settings     JSONB NOT NULL,
    -- AES-256-GCM, associated data = "mailfleet:connection_test:<id>"
    credentials  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
