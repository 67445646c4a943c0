CREATE INDEX messages_account_idx ON messages (account_id);
