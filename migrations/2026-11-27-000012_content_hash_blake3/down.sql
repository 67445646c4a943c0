COMMENT ON COLUMN messages.content_hash IS NULL;
ALTER TABLE messages RENAME COLUMN content_hash TO content_sha256;
