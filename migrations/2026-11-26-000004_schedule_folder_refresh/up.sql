-- Folder lists are reconciled on their own schedule (hourly by default), claimed like syncs.
ALTER TABLE accounts
    ADD COLUMN folders_refreshed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN refresh_queued_at TIMESTAMPTZ;
