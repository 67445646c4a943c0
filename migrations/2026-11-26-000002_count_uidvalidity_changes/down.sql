ALTER TABLE folders DROP COLUMN uidvalidity_changes;
