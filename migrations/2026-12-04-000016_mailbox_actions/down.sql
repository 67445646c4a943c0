DROP FUNCTION mailfleet_action_pending(BIGINT);
DROP FUNCTION mailfleet_shown_folders(BIGINT);
DROP FUNCTION mailfleet_shown_flags(TEXT[], BIGINT);
DROP TABLE mailbox_action_items;
DROP TABLE mailbox_actions;
