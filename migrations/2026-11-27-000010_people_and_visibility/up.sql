-- Who may see what (DESIGN §1): personal accounts are their owner's; shared inboxes are
-- reachable by administrators and by users granted access; a message linked to a contact is
-- visible, on that contact's profile, to anyone.

CREATE TABLE account_access (
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    granted_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, user_id)
);
CREATE INDEX account_access_user_idx ON account_access (user_id);

-- At most one primary account per user.
UPDATE accounts SET is_primary = FALSE WHERE is_primary AND owner_user_id IS NULL;
CREATE UNIQUE INDEX accounts_one_primary_per_user ON accounts (owner_user_id) WHERE is_primary;
ALTER TABLE accounts ADD CONSTRAINT accounts_primary_is_personal
    CHECK (NOT is_primary OR owner_user_id IS NOT NULL);

-- Accounts deleted (with their user or on their own): a job still queued for one is dropped
-- quietly instead of being dead-lettered as poison.
CREATE TABLE deleted_accounts (
    account_id  BIGINT PRIMARY KEY,
    deleted_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Message lists are sorted newest first by this key (and id), paged by keyset.
CREATE INDEX messages_account_sort_idx
    ON messages (account_id, (COALESCE(received_at, sent_at, created_at)) DESC, id DESC);

-- Row-level security. The API reads messages as the role mailfleet_viewer, with the acting
-- user in `mailfleet.viewer_id` (and, on a contact's profile, the contact in
-- `mailfleet.contact_id`), so a query that forgets a WHERE still sees only what that user
-- may see. Workers and migrations run as the table owner and are not restricted.
--
-- Roles belong to the cluster, not the database: installations in one cluster share this one.
-- A database owner without CREATEROLE (common on managed Postgres) can migrate once an
-- administrator has created the role and granted it to them; the errors below say how.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mailfleet_viewer') THEN
        BEGIN
            CREATE ROLE mailfleet_viewer NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL; -- another migration created it meanwhile
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'insufficient_privilege',
                    MESSAGE = format(
                        'the role mailfleet_viewer does not exist and %I may not create it '
                        '(no CREATEROLE); as an administrator, run once: '
                        'CREATE ROLE mailfleet_viewer NOLOGIN; GRANT mailfleet_viewer TO %I;',
                        current_user, current_user);
        END;
    END IF;
    -- The application's own user must be able to SET ROLE to it (a superuser always can).
    IF NOT pg_has_role(current_user, 'mailfleet_viewer', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT mailfleet_viewer TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION USING
                ERRCODE = 'insufficient_privilege',
                MESSAGE = format(
                    '%I is not a member of the role mailfleet_viewer and may not grant it '
                    '(no CREATEROLE); as an administrator, run once: GRANT mailfleet_viewer TO %I;',
                    current_user, current_user);
        END;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO mailfleet_viewer;
GRANT SELECT ON users, accounts, account_access, folders, messages, message_addresses,
    message_contacts, contacts TO mailfleet_viewer;

CREATE FUNCTION mailfleet_viewer_id() RETURNS BIGINT
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('mailfleet.viewer_id', true), '')::BIGINT $$;

CREATE FUNCTION mailfleet_profile_contact_id() RETURNS BIGINT
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('mailfleet.contact_id', true), '')::BIGINT $$;

-- Runs as its owner, so it reads accounts/users/grants whatever the caller's policies.
CREATE FUNCTION mailfleet_may_read_account(account BIGINT, viewer BIGINT) RETURNS BOOLEAN
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM accounts a
            WHERE a.id = account AND viewer IS NOT NULL AND (
                (a.kind = 'personal' AND a.owner_user_id = viewer)
                OR (a.kind = 'shared' AND (
                        EXISTS (SELECT 1 FROM users u WHERE u.id = viewer AND u.is_admin)
                     OR EXISTS (SELECT 1 FROM account_access g
                                WHERE g.account_id = a.id AND g.user_id = viewer)))))
    $$;

-- Also as its owner: message_contacts' own policy refers back to messages.
CREATE FUNCTION mailfleet_linked_to_contact(message BIGINT, contact BIGINT) RETURNS BOOLEAN
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT contact IS NOT NULL AND EXISTS (
            SELECT 1 FROM message_contacts mc
            WHERE mc.message_id = message AND mc.contact_id = contact)
    $$;

ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY messages_visible ON messages FOR SELECT TO mailfleet_viewer USING (
    mailfleet_may_read_account(account_id, mailfleet_viewer_id())
    OR mailfleet_linked_to_contact(id, mailfleet_profile_contact_id()));

ALTER TABLE message_addresses ENABLE ROW LEVEL SECURITY;
CREATE POLICY message_addresses_visible ON message_addresses FOR SELECT TO mailfleet_viewer
    USING (EXISTS (SELECT 1 FROM messages m WHERE m.id = message_addresses.message_id));

ALTER TABLE message_contacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY message_contacts_visible ON message_contacts FOR SELECT TO mailfleet_viewer
    USING (EXISTS (SELECT 1 FROM messages m WHERE m.id = message_contacts.message_id));

ALTER TABLE folders ENABLE ROW LEVEL SECURITY;
CREATE POLICY folders_visible ON folders FOR SELECT TO mailfleet_viewer
    USING (mailfleet_may_read_account(account_id, mailfleet_viewer_id()));
