-- The CRM's read model: accounts, folders, messages, contacts, message_contacts keep these
-- names and the columns documented in docs/schema.md.

CREATE TABLE users (
    id              BIGSERIAL PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    name            TEXT,
    is_admin        BOOLEAN NOT NULL DEFAULT FALSE,
    signature_text  TEXT,
    signature_html  TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    id                     BIGSERIAL PRIMARY KEY,
    -- normalised: trimmed, lower case (see EmailAddress)
    email                  TEXT NOT NULL UNIQUE CHECK (email = lower(btrim(email))),
    name                   TEXT,
    created_by_account_id  BIGINT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id                   BIGSERIAL PRIMARY KEY,
    provider             TEXT NOT NULL CHECK (provider IN ('imap', 'gmail', 'outlook')),
    kind                 TEXT NOT NULL CHECK (kind IN ('personal', 'shared')),
    owner_user_id        BIGINT REFERENCES users (id) ON DELETE CASCADE,
    email                TEXT NOT NULL,
    username             TEXT,
    -- AES-256-GCM under MAILFLEET_SECRET_KEY, associated data = the account id
    credentials          BYTEA NOT NULL,
    imap_host            TEXT,
    imap_port            INTEGER,
    imap_encryption      TEXT CHECK (imap_encryption IN ('ssl', 'starttls', 'none')),
    smtp_host            TEXT,
    smtp_port            INTEGER,
    smtp_encryption      TEXT CHECK (smtp_encryption IN ('ssl', 'starttls', 'none')),
    allow_insecure_cert  BOOLEAN NOT NULL DEFAULT FALSE,
    sync_from            TEXT NOT NULL CHECK (sync_from IN ('now', '1_month', '3_months', '6_months')),
    sync_window_start    TIMESTAMPTZ NOT NULL,
    create_contacts      BOOLEAN NOT NULL DEFAULT FALSE,
    is_primary           BOOLEAN NOT NULL DEFAULT FALSE,
    state                TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
    disabled_reason      TEXT,
    last_error           TEXT,
    last_synced_at       TIMESTAMPTZ,
    last_sync_attempt_at TIMESTAMPTZ,
    -- set when a sync job is published, cleared when a worker finishes it: the scheduler
    -- never queues a second job for an account whose job is queued or running
    sync_queued_at       TIMESTAMPTZ,
    sync_requested       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (kind = 'shared' OR owner_user_id IS NOT NULL)
);
CREATE INDEX accounts_owner_idx ON accounts (owner_user_id);
CREATE INDEX accounts_due_idx ON accounts (last_sync_attempt_at) WHERE state = 'active';

CREATE TABLE folders (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    delimiter       TEXT,
    -- inbox, sent, drafts, trash, junk, archive, all, flagged, or NULL
    role            TEXT,
    active          BOOLEAN NOT NULL DEFAULT FALSE,
    selectable      BOOLEAN NOT NULL DEFAULT TRUE,
    -- sync cursors: IMAP
    uidvalidity     BIGINT,
    uidnext         BIGINT,
    highestmodseq   BIGINT,
    -- Gmail / Graph
    history_id      TEXT,
    delta_link      TEXT,
    last_synced_at  TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
);

CREATE TABLE messages (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    folder_id       BIGINT NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    -- provider id within the folder: IMAP "uidvalidity:uid", Gmail message id, Graph id
    remote_id       TEXT NOT NULL,
    imap_uid        BIGINT,
    -- RFC 5322 Message-ID without angle brackets
    message_id      TEXT,
    in_reply_to     TEXT,
    reference_ids   TEXT[] NOT NULL DEFAULT '{}',
    thread_key      TEXT NOT NULL,
    subject         TEXT,
    from_name       TEXT,
    from_email      TEXT,
    sent_at         TIMESTAMPTZ,
    received_at     TIMESTAMPTZ,
    size_bytes      BIGINT NOT NULL,
    flags           TEXT[] NOT NULL DEFAULT '{}',
    text_body       TEXT COMPRESSION lz4,
    html_body       TEXT COMPRESSION lz4,
    -- [{"filename":…, "content_type":…, "size":…, "content_id":…, "inline":…}]
    attachments     JSONB NOT NULL DEFAULT '[]',
    content_sha256  BYTEA NOT NULL,
    -- what could not be read, when the message was stored with what could
    parse_problem   TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (folder_id, remote_id)
);
CREATE INDEX messages_account_idx ON messages (account_id);
CREATE INDEX messages_message_id_idx ON messages (message_id);
CREATE INDEX messages_thread_idx ON messages (account_id, thread_key);

CREATE TABLE message_addresses (
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    field       TEXT NOT NULL CHECK (field IN ('from', 'to', 'cc', 'bcc', 'reply_to')),
    position    INTEGER NOT NULL,
    name        TEXT,
    email       TEXT NOT NULL,
    PRIMARY KEY (message_id, field, position)
);
CREATE INDEX message_addresses_email_idx ON message_addresses (email);

CREATE TABLE message_contacts (
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    contact_id  BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    PRIMARY KEY (message_id, contact_id)
);
CREATE INDEX message_contacts_contact_idx ON message_contacts (contact_id);

CREATE TABLE outgoing_messages (
    id               BIGSERIAL PRIMARY KEY,
    account_id       BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    idempotency_key  TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'unknown')),
    message_id       TEXT NOT NULL,
    to_addrs         JSONB NOT NULL DEFAULT '[]',
    cc_addrs         JSONB NOT NULL DEFAULT '[]',
    bcc_addrs        JSONB NOT NULL DEFAULT '[]',
    subject          TEXT,
    text_body        TEXT,
    html_body        TEXT,
    in_reply_to_message BIGINT REFERENCES messages (id) ON DELETE SET NULL,
    server_reply     TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, idempotency_key)
);

CREATE TABLE sync_runs (
    id               BIGSERIAL PRIMARY KEY,
    account_id       BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    job_id           UUID,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    outcome          TEXT CHECK (outcome IN ('ok', 'failed', 'auth_failed')),
    messages_added   BIGINT NOT NULL DEFAULT 0,
    bytes_fetched    BIGINT NOT NULL DEFAULT 0,
    error            TEXT
);
CREATE INDEX sync_runs_account_idx ON sync_runs (account_id, started_at DESC);
