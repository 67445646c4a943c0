-- The outbox: each row is both the message to send and its job record. The API writes it in
-- one transaction; a relay (the coordinator's scheduler, or the API right after the commit)
-- publishes `send_message` for rows with published_at IS NULL that are due.
ALTER TABLE outgoing_messages
    ADD COLUMN kind             TEXT NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'system')),
    ADD COLUMN sender_user_id   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- SHA-256 of the request: the same Idempotency-Key with another request is refused
    ADD COLUMN request_sha256   BYTEA,
    -- the message exactly as it goes out (Message-ID and Date fixed when it was queued)
    ADD COLUMN raw_message      BYTEA COMPRESSION lz4 NOT NULL,
    ADD COLUMN envelope_from    TEXT NOT NULL,
    ADD COLUMN envelope_to      TEXT[] NOT NULL,
    -- [{"filename":…, "content_type":…, "size":…}]
    ADD COLUMN attachments      JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN attempts         INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at  TIMESTAMPTZ,
    ADD COLUMN published_at     TIMESTAMPTZ,
    -- a worker is sending until then; after it, another may resolve what happened
    ADD COLUMN claimed_until    TIMESTAMPTZ,
    -- set (and committed) just before SMTP DATA: from here on a resend could duplicate
    ADD COLUMN data_started_at  TIMESTAMPTZ,
    ADD COLUMN sent_at          TIMESTAMPTZ,
    ADD COLUMN error_code       TEXT,
    -- the copy in the account's Sent folder, remote and local
    ADD COLUMN sent_copy_filed_at   TIMESTAMPTZ,
    ADD COLUMN sent_copy_message_id BIGINT REFERENCES messages (id) ON DELETE SET NULL;

CREATE INDEX outgoing_messages_relay_idx ON outgoing_messages (next_attempt_at)
    WHERE published_at IS NULL;

-- One row: which connected account sends system mail.
CREATE TABLE system_settings (
    singleton          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    system_account_id  BIGINT REFERENCES accounts (id) ON DELETE SET NULL,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO system_settings (singleton) VALUES (TRUE);
