-- Stable folder id where the server has one (IMAP RFC 8474 MAILBOXID, Gmail label id, Graph id):
-- a renamed folder keeps its row and its messages.
ALTER TABLE folders ADD COLUMN remote_id TEXT;
