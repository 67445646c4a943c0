-- What a user does to mail in the CRM (mark read, flag, move, trash, spam): the row is the
-- record, the sync job that applies it only a wake-up call (as for the outbox). Each message
-- of an action has an item; the action's state is derived from its items.
CREATE TABLE mailbox_actions (
    id              BIGSERIAL PRIMARY KEY,
    requested_by    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    idempotency_key TEXT NOT NULL,
    -- The request the key was first used with (the same key with another body is refused).
    request_sha256  BYTEA NOT NULL,
    action          TEXT NOT NULL CHECK (action IN
                        ('mark_read', 'mark_unread', 'flag', 'unflag', 'move', 'trash', 'mark_spam')),
    -- `move`: the folder the request named.
    folder          TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (requested_by, idempotency_key)
);

CREATE TABLE mailbox_action_items (
    action_id        BIGINT NOT NULL REFERENCES mailbox_actions (id) ON DELETE CASCADE,
    -- messages.id; no foreign key: the record outlives a message deleted later.
    message_id       BIGINT NOT NULL,
    account_id       BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    position         INT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'done', 'conflict', 'failed')),
    error            TEXT,
    -- Moves: the folder it leaves and the one it goes to.
    source_folder_id BIGINT REFERENCES folders (id) ON DELETE SET NULL,
    target_folder_id BIGINT REFERENCES folders (id) ON DELETE SET NULL,
    -- Set before the provider is asked: a later attempt looks before it moves again.
    attempted_at     TIMESTAMPTZ,
    attempts         INT NOT NULL DEFAULT 0,
    finished_at      TIMESTAMPTZ,
    PRIMARY KEY (action_id, message_id)
);
CREATE INDEX mailbox_action_items_pending_idx ON mailbox_action_items (account_id, action_id)
    WHERE state = 'pending';
CREATE INDEX mailbox_action_items_message_idx ON mailbox_action_items (message_id)
    WHERE state = 'pending';

-- What the CRM shows while an action is pending: the stored flags (the server's) with the
-- pending changes applied in order.
CREATE FUNCTION mailfleet_shown_flags(flags TEXT[], message BIGINT) RETURNS TEXT[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    shown TEXT[] := flags;
    a TEXT;
BEGIN
    FOR a IN
        SELECT ma.action FROM mailbox_action_items i
        JOIN mailbox_actions ma ON ma.id = i.action_id
        WHERE i.message_id = message AND i.state = 'pending'
        ORDER BY i.action_id
    LOOP
        shown := CASE a
            WHEN 'mark_read' THEN array_append(array_remove(shown, '\Seen'), '\Seen')
            WHEN 'mark_unread' THEN array_remove(shown, '\Seen')
            WHEN 'flag' THEN array_append(array_remove(shown, '\Flagged'), '\Flagged')
            WHEN 'unflag' THEN array_remove(shown, '\Flagged')
            ELSE shown
        END;
    END LOOP;
    RETURN ARRAY(SELECT f FROM unnest(shown) AS f ORDER BY f);
END
$$;

-- The folders (ids) the CRM shows a message in: its memberships, with the pending moves
-- applied in order (a move to an inactive folder, such as Trash, leaves it in none).
CREATE FUNCTION mailfleet_shown_folders(message BIGINT) RETURNS BIGINT[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    shown BIGINT[] := ARRAY(SELECT folder_id FROM message_folders WHERE message_id = message);
    r RECORD;
BEGIN
    FOR r IN
        SELECT i.source_folder_id AS source, i.target_folder_id AS target, f.active
        FROM mailbox_action_items i LEFT JOIN folders f ON f.id = i.target_folder_id
        WHERE i.message_id = message AND i.state = 'pending' AND i.target_folder_id IS NOT NULL
        ORDER BY i.action_id
    LOOP
        shown := array_remove(shown, r.source);
        IF r.active AND NOT r.target = ANY(shown) THEN
            shown := array_append(shown, r.target);
        END IF;
    END LOOP;
    RETURN shown;
END
$$;

CREATE FUNCTION mailfleet_action_pending(message BIGINT) RETURNS BOOLEAN
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT EXISTS (SELECT 1 FROM mailbox_action_items
                       WHERE message_id = message AND state = 'pending')
    $$;
