-- A message is one row per provider message, with its folder memberships beside it: a Gmail
-- message with three labels is one row in three folders, a Graph move changes a membership,
-- and an IMAP message moved to another active folder (by a CRM action, or found there by
-- Message-ID and size, or RFC 8474 EMAILID) keeps its row id, its contact links and whatever
-- the CRM hangs on that id. Every stored row stays, with its id, in the folder it was in.
CREATE TABLE message_folders (
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    folder_id   BIGINT NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    -- The message's id within the folder: IMAP "uidvalidity:uid"; Gmail/Graph: its id.
    remote_id   TEXT NOT NULL,
    PRIMARY KEY (message_id, folder_id),
    UNIQUE (folder_id, remote_id)
);

INSERT INTO message_folders (message_id, folder_id, remote_id)
SELECT id, folder_id, remote_id FROM messages;

ALTER TABLE messages
    DROP COLUMN folder_id,
    DROP COLUMN remote_id,
    DROP COLUMN imap_uid,
    -- The provider's id of the message itself, where it has one that survives moves: Gmail's
    -- message id, Graph's immutable id, IMAP's EMAILID (RFC 8474).
    ADD COLUMN provider_id TEXT,
    -- Set when the message lost its last folder (expunged, or moved where no active folder
    -- holds it). Found in another active folder, it is taken back; still orphaned after one
    -- more complete sync of the account, it is deleted. Hidden from the API meanwhile.
    ADD COLUMN orphaned_at TIMESTAMPTZ;

CREATE UNIQUE INDEX messages_provider_id_idx ON messages (account_id, provider_id)
    WHERE provider_id IS NOT NULL;
CREATE INDEX messages_orphaned_idx ON messages (account_id, orphaned_at)
    WHERE orphaned_at IS NOT NULL;

-- However a membership goes (a removal, a folder deleted with its memberships), a message
-- left in no folder is marked orphaned in the same statement.
CREATE FUNCTION mailfleet_mark_orphans() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE messages m SET orphaned_at = now()
    WHERE m.id IN (SELECT DISTINCT g.message_id FROM gone g)
      AND m.orphaned_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM message_folders mf WHERE mf.message_id = m.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER message_folders_mark_orphans
    AFTER DELETE ON message_folders
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION mailfleet_mark_orphans();

-- Row-level security: memberships are visible with their message; orphans are not visible.
GRANT SELECT ON message_folders TO mailfleet_viewer;
ALTER TABLE message_folders ENABLE ROW LEVEL SECURITY;
CREATE POLICY message_folders_visible ON message_folders FOR SELECT TO mailfleet_viewer
    USING (EXISTS (SELECT 1 FROM messages m WHERE m.id = message_folders.message_id));
CREATE POLICY message_folders_other_roles ON message_folders FOR SELECT TO PUBLIC
    USING (current_user <> 'mailfleet_viewer');
ALTER POLICY messages_visible ON messages USING (
    orphaned_at IS NULL AND (
        mailfleet_may_read_account(account_id, mailfleet_viewer_id())
        OR mailfleet_linked_to_contact(id, mailfleet_profile_contact_id())));
