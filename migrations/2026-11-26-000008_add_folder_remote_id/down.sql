ALTER TABLE folders DROP COLUMN remote_id;
