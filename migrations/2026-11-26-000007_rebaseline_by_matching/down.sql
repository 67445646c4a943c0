ALTER TABLE folders DROP COLUMN rebaselining;
