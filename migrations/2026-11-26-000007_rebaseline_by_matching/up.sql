-- After a UIDVALIDITY change the stored rows of a folder are re-matched to the server's new
-- ids (same bytes, else same Message-ID) batch by batch, keeping their row ids and contact
-- links; what is still unmatched when the folder completes is gone from the server.
ALTER TABLE folders ADD COLUMN rebaselining BOOLEAN NOT NULL DEFAULT FALSE;
