-- (account_id) alone is the leading column of messages_account_sort_idx and of
-- messages_thread_idx already; one index less to update for every message stored.
DROP INDEX messages_account_idx;
