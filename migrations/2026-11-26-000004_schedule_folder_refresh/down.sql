ALTER TABLE accounts DROP COLUMN folders_refreshed_at, DROP COLUMN refresh_queued_at;
