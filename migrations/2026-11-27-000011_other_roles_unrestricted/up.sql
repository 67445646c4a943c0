-- Row-level security is for the API's reads (role mailfleet_viewer) only. Any other role —
-- a CRM's read-only login on the read model, say — keeps seeing every row, as before the
-- policies existed (with RLS on and no policy for it, it would see none).
CREATE POLICY messages_other_roles ON messages FOR SELECT TO PUBLIC
    USING (current_user <> 'mailfleet_viewer');
CREATE POLICY message_addresses_other_roles ON message_addresses FOR SELECT TO PUBLIC
    USING (current_user <> 'mailfleet_viewer');
CREATE POLICY message_contacts_other_roles ON message_contacts FOR SELECT TO PUBLIC
    USING (current_user <> 'mailfleet_viewer');
CREATE POLICY folders_other_roles ON folders FOR SELECT TO PUBLIC
    USING (current_user <> 'mailfleet_viewer');
