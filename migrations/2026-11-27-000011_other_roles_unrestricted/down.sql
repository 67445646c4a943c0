DROP POLICY folders_other_roles ON folders;
DROP POLICY message_contacts_other_roles ON message_contacts;
DROP POLICY message_addresses_other_roles ON message_addresses;
DROP POLICY messages_other_roles ON messages;
