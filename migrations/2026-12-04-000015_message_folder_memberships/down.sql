ALTER POLICY messages_visible ON messages USING (
    mailfleet_may_read_account(account_id, mailfleet_viewer_id())
    OR mailfleet_linked_to_contact(id, mailfleet_profile_contact_id()));
DROP TRIGGER message_folders_mark_orphans ON message_folders;
DROP FUNCTION mailfleet_mark_orphans();
-- A message in several folders comes back once, in its first; one in none is gone.
DELETE FROM messages m WHERE NOT EXISTS (SELECT 1 FROM message_folders mf WHERE mf.message_id = m.id);
ALTER TABLE messages
    ADD COLUMN folder_id BIGINT REFERENCES folders (id) ON DELETE CASCADE,
    ADD COLUMN remote_id TEXT,
    ADD COLUMN imap_uid BIGINT;
UPDATE messages m SET folder_id = f.folder_id, remote_id = f.remote_id,
    imap_uid = NULLIF(split_part(f.remote_id, ':', 2), '')::BIGINT
FROM (SELECT DISTINCT ON (message_id) * FROM message_folders ORDER BY message_id, folder_id) f
WHERE f.message_id = m.id;
ALTER TABLE messages ALTER COLUMN folder_id SET NOT NULL, ALTER COLUMN remote_id SET NOT NULL,
    ADD CONSTRAINT messages_folder_id_remote_id_key UNIQUE (folder_id, remote_id),
    DROP COLUMN provider_id, DROP COLUMN orphaned_at;
DROP TABLE message_folders;
