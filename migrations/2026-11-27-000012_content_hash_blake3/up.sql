-- The content hash of a message's raw bytes is BLAKE3 from now on: three times faster than
-- SHA-256 here, and hashing every byte of a mailbox was a fifth of the worker's CPU in an
-- initial sync. Rows stored before keep their SHA-256 value, which can't be recomputed without
-- the bytes; after a UIDVALIDITY change those rows are still matched by Message-ID and size,
-- and only a message with no Message-ID among them is downloaded again (no loss, a new row).
ALTER TABLE messages RENAME COLUMN content_sha256 TO content_hash;
COMMENT ON COLUMN messages.content_hash IS 'BLAKE3 of the raw message (SHA-256 for rows stored before migration 000012)';
