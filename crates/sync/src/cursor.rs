use mailfleet_provider::FolderCursor;
use mailfleet_store::folders::CursorUpdate;
use mailfleet_store::models::Folder;

/// The stored cursor of a folder, as the provider understands it.
pub fn load(folder: &Folder) -> FolderCursor {
    if let (Some(v), Some(n)) = (folder.uidvalidity, folder.uidnext)
        && let (Ok(uidvalidity), Ok(uidnext)) = (u32::try_from(v), u32::try_from(n))
    {
        return FolderCursor::Imap {
            uidvalidity,
            uidnext,
            highestmodseq: folder.highestmodseq.and_then(|m| u64::try_from(m).ok()),
        };
    }
    if let Some(h) = folder.history_id.as_deref().and_then(|h| h.parse().ok()) {
        return FolderCursor::Gmail { history_id: h };
    }
    if let Some(link) = &folder.delta_link {
        return FolderCursor::Graph {
            delta_link: link.clone(),
        };
    }
    FolderCursor::Initial
}

pub fn to_update(cursor: &FolderCursor) -> CursorUpdate {
    match cursor {
        FolderCursor::Initial => CursorUpdate::default(),
        FolderCursor::Imap {
            uidvalidity,
            uidnext,
            highestmodseq,
        } => CursorUpdate {
            uidvalidity: Some(i64::from(*uidvalidity)),
            uidnext: Some(i64::from(*uidnext)),
            // Postgres BIGINT is signed; a modseq above i64::MAX is not stored (it is only
            // an optimisation, the UIDs carry correctness).
            highestmodseq: highestmodseq.and_then(|m| i64::try_from(m).ok()),
            ..CursorUpdate::default()
        },
        FolderCursor::Gmail { history_id } => CursorUpdate {
            history_id: Some(history_id.to_string()),
            ..CursorUpdate::default()
        },
        FolderCursor::Graph { delta_link } => CursorUpdate {
            delta_link: Some(delta_link.clone()),
            ..CursorUpdate::default()
        },
    }
}
