// Mirrors migrations/; keep in step with them (crates/e2e/tests/e2e/schema.rs compares the two
// through information_schema, so a drift fails CI).

diesel::table! {
    users (id) {
        id -> Int8,
        email -> Text,
        name -> Nullable<Text>,
        is_admin -> Bool,
        signature_text -> Nullable<Text>,
        signature_html -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    contacts (id) {
        id -> Int8,
        email -> Text,
        name -> Nullable<Text>,
        created_by_account_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    accounts (id) {
        id -> Int8,
        provider -> Text,
        kind -> Text,
        owner_user_id -> Nullable<Int8>,
        email -> Text,
        username -> Nullable<Text>,
        credentials -> Bytea,
        imap_host -> Nullable<Text>,
        imap_port -> Nullable<Int4>,
        imap_encryption -> Nullable<Text>,
        smtp_host -> Nullable<Text>,
        smtp_port -> Nullable<Int4>,
        smtp_encryption -> Nullable<Text>,
        allow_insecure_cert -> Bool,
        sync_from -> Text,
        sync_window_start -> Timestamptz,
        create_contacts -> Bool,
        is_primary -> Bool,
        state -> Text,
        disabled_reason -> Nullable<Text>,
        last_error -> Nullable<Text>,
        last_synced_at -> Nullable<Timestamptz>,
        last_sync_attempt_at -> Nullable<Timestamptz>,
        sync_queued_at -> Nullable<Timestamptz>,
        sync_requested -> Bool,
        created_at -> Timestamptz,
        folders_refreshed_at -> Timestamptz,
        refresh_queued_at -> Nullable<Timestamptz>,
        lease_token -> Int8,
        lease_expires_at -> Nullable<Timestamptz>,
        consecutive_failures -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    folders (id) {
        id -> Int8,
        account_id -> Int8,
        name -> Text,
        delimiter -> Nullable<Text>,
        role -> Nullable<Text>,
        active -> Bool,
        selectable -> Bool,
        uidvalidity -> Nullable<Int8>,
        uidnext -> Nullable<Int8>,
        highestmodseq -> Nullable<Int8>,
        history_id -> Nullable<Text>,
        delta_link -> Nullable<Text>,
        last_synced_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        uidvalidity_changes -> Int4,
        rebaselining -> Bool,
        remote_id -> Nullable<Text>,
    }
}

diesel::table! {
    messages (id) {
        id -> Int8,
        account_id -> Int8,
        message_id -> Nullable<Text>,
        in_reply_to -> Nullable<Text>,
        reference_ids -> Array<Text>,
        thread_key -> Text,
        subject -> Nullable<Text>,
        from_name -> Nullable<Text>,
        from_email -> Nullable<Text>,
        sent_at -> Nullable<Timestamptz>,
        received_at -> Nullable<Timestamptz>,
        size_bytes -> Int8,
        flags -> Array<Text>,
        text_body -> Nullable<Text>,
        html_body -> Nullable<Text>,
        attachments -> Jsonb,
        content_hash -> Bytea,
        parse_problem -> Nullable<Text>,
        created_at -> Timestamptz,
        provider_id -> Nullable<Text>,
        orphaned_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    message_folders (message_id, folder_id) {
        message_id -> Int8,
        folder_id -> Int8,
        remote_id -> Text,
    }
}

diesel::table! {
    message_addresses (message_id, field, position) {
        message_id -> Int8,
        field -> Text,
        position -> Int4,
        name -> Nullable<Text>,
        email -> Text,
    }
}

diesel::table! {
    message_contacts (message_id, contact_id) {
        message_id -> Int8,
        contact_id -> Int8,
    }
}

diesel::table! {
    outgoing_messages (id) {
        id -> Int8,
        account_id -> Int8,
        idempotency_key -> Text,
        status -> Text,
        message_id -> Text,
        to_addrs -> Jsonb,
        cc_addrs -> Jsonb,
        bcc_addrs -> Jsonb,
        subject -> Nullable<Text>,
        text_body -> Nullable<Text>,
        html_body -> Nullable<Text>,
        in_reply_to_message -> Nullable<Int8>,
        server_reply -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        kind -> Text,
        sender_user_id -> Nullable<Int8>,
        request_sha256 -> Nullable<Bytea>,
        raw_message -> Bytea,
        envelope_from -> Text,
        envelope_to -> Array<Text>,
        attachments -> Jsonb,
        attempts -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
        published_at -> Nullable<Timestamptz>,
        claimed_until -> Nullable<Timestamptz>,
        data_started_at -> Nullable<Timestamptz>,
        sent_at -> Nullable<Timestamptz>,
        error_code -> Nullable<Text>,
        sent_copy_filed_at -> Nullable<Timestamptz>,
        sent_copy_message_id -> Nullable<Int8>,
    }
}

diesel::table! {
    system_settings (singleton) {
        singleton -> Bool,
        system_account_id -> Nullable<Int8>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> Int8,
        account_id -> Int8,
        job_id -> Nullable<Uuid>,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        outcome -> Nullable<Text>,
        messages_added -> Int8,
        bytes_fetched -> Int8,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    connection_tests (id) {
        id -> Int8,
        settings -> Jsonb,
        credentials -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    account_access (account_id, user_id) {
        account_id -> Int8,
        user_id -> Int8,
        granted_at -> Timestamptz,
    }
}

diesel::table! {
    deleted_accounts (account_id) {
        account_id -> Int8,
        deleted_at -> Timestamptz,
    }
}

diesel::table! {
    mailbox_actions (id) {
        id -> Int8,
        requested_by -> Nullable<Int8>,
        idempotency_key -> Text,
        request_sha256 -> Bytea,
        action -> Text,
        folder -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mailbox_action_items (action_id, message_id) {
        action_id -> Int8,
        message_id -> Int8,
        account_id -> Int8,
        position -> Int4,
        state -> Text,
        error -> Nullable<Text>,
        source_folder_id -> Nullable<Int8>,
        target_folder_id -> Nullable<Int8>,
        attempted_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(accounts -> users (owner_user_id));
diesel::joinable!(mailbox_action_items -> mailbox_actions (action_id));
diesel::joinable!(account_access -> accounts (account_id));
diesel::joinable!(account_access -> users (user_id));
diesel::joinable!(folders -> accounts (account_id));
diesel::joinable!(messages -> accounts (account_id));
diesel::joinable!(message_folders -> messages (message_id));
diesel::joinable!(message_folders -> folders (folder_id));
diesel::joinable!(message_addresses -> messages (message_id));
diesel::joinable!(message_contacts -> messages (message_id));
diesel::joinable!(message_contacts -> contacts (contact_id));
diesel::joinable!(outgoing_messages -> accounts (account_id));
diesel::joinable!(sync_runs -> accounts (account_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    contacts,
    accounts,
    folders,
    messages,
    message_folders,
    message_addresses,
    message_contacts,
    outgoing_messages,
    sync_runs,
    connection_tests,
    system_settings,
    account_access,
    deleted_accounts,
    mailbox_actions,
    mailbox_action_items,
);
