//! Tables for people. The API's JSON is read into the few fields shown; `--json` prints the
//! answer itself instead.

use chrono::{DateTime, Utc};
use mailfleet_core::connection_test::TestedFolder;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct AccountView {
    pub id: i64,
    pub email: String,
    pub kind: String,
    pub is_primary: bool,
    pub state: String,
    pub disabled_reason: Option<String>,
    pub last_error: Option<String>,
    pub sync_status: String,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub message_count: i64,
    pub folders: Vec<FolderView>,
}

#[derive(Debug, Deserialize)]
pub struct FolderView {
    pub name: String,
    pub role: Option<String>,
    pub active: bool,
    pub selectable: bool,
    pub message_count: i64,
    pub last_synced_at: Option<DateTime<Utc>>,
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

fn state(a: &AccountView) -> String {
    match &a.disabled_reason {
        Some(r) if a.state != "active" => format!("{} ({r})", a.state),
        _ => a.state.clone(),
    }
}

/// `mailfleet account list`.
pub fn accounts(list: &[AccountView]) -> String {
    if list.is_empty() {
        return "No accounts.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.email.clone(),
                a.kind.clone(),
                if a.is_primary { "*" } else { "" }.into(),
                state(a),
                a.sync_status.clone(),
                a.message_count.to_string(),
                when(a.last_synced_at),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "EMAIL",
            "KIND",
            "PRIMARY",
            "STATE",
            "SYNC",
            "MESSAGES",
            "LAST SYNC",
        ],
        &rows,
        &[0, 6],
    );
    for a in list {
        if let Some(e) = &a.last_error {
            out.push_str(&format!("account {}: last error: {e}\n", a.id));
        }
    }
    out
}

/// One account and its folders (`mailfleet account folders ID`, after `add`, …).
pub fn account(a: &AccountView) -> String {
    let mut out = format!(
        "Account {} <{}>: {}, {}, sync {}, {} messages, last sync {}{}\n",
        a.id,
        a.email,
        a.kind,
        state(a),
        a.sync_status,
        a.message_count,
        when(a.last_synced_at),
        if a.is_primary { ", primary" } else { "" },
    );
    if let Some(e) = &a.last_error {
        out.push_str(&format!("Last error: {e}\n"));
    }
    if a.folders.is_empty() {
        out.push_str("No folders yet: the first sync lists them.\n");
        return out;
    }
    let rows: Vec<Vec<String>> = a
        .folders
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.role.clone().unwrap_or_default(),
                match (f.selectable, f.active) {
                    (false, _) => "n/a",
                    (true, true) => "yes",
                    (true, false) => "no",
                }
                .into(),
                f.message_count.to_string(),
                when(f.last_synced_at),
            ]
        })
        .collect();
    out.push_str(&table(
        &["FOLDER", "ROLE", "ACTIVE", "MESSAGES", "LAST SYNC"],
        &rows,
        &[3],
    ));
    out
}

/// The folders a connection test found.
pub fn tested_folders(folders: &[TestedFolder]) -> String {
    let rows: Vec<Vec<String>> = folders
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.role.clone().unwrap_or_default(),
                if f.selectable { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    table(&["FOLDER", "ROLE", "SELECTABLE"], &rows, &[])
}

/// Columns padded to their widest cell; `right` names the right-aligned ones.
pub fn table(headers: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(w - cell.chars().count());
            if right.contains(&i) {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_table_pads_columns() {
        let t = table(
            &["ID", "EMAIL", "N"],
            &[
                vec!["7".into(), "ann@example.test".into(), "12".into()],
                vec!["42".into(), "b@x.test".into(), "3".into()],
            ],
            &[0, 2],
        );
        assert_eq!(
            t,
            "ID  EMAIL              N\n 7  ann@example.test  12\n42  b@x.test           3\n"
        );
    }
}
