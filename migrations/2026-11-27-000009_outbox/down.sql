DROP TABLE system_settings;
DROP INDEX outgoing_messages_relay_idx;
ALTER TABLE outgoing_messages
    DROP COLUMN kind, DROP COLUMN sender_user_id, DROP COLUMN request_sha256,
    DROP COLUMN raw_message, DROP COLUMN envelope_from, DROP COLUMN envelope_to,
    DROP COLUMN attachments, DROP COLUMN attempts, DROP COLUMN next_attempt_at,
    DROP COLUMN published_at, DROP COLUMN claimed_until, DROP COLUMN data_started_at,
    DROP COLUMN sent_at, DROP COLUMN error_code, DROP COLUMN sent_copy_filed_at,
    DROP COLUMN sent_copy_message_id;
