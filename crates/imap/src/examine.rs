//! EXAMINE (and SELECT) with the RFC 7162 parameters, by raw command: async-imap has no
//! QRESYNC API, and its `examine` can't pass `(CONDSTORE)`. The untagged responses are read here, so nothing
//! lands in the unsolicited channel.

use crate::errors;
use crate::stream::ImapStream;
use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, ResponseCode, Status};
use mailfleet_provider::ProviderError;
use std::ops::RangeInclusive;

/// What the server told about a folder when it was examined.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Examined {
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
    pub exists: u32,
    /// QRESYNC: UIDs expunged since the given modseq.
    pub vanished: Vec<RangeInclusive<u32>>,
    /// QRESYNC: (UID, flags) of messages changed since the given modseq.
    pub changed: Vec<(u32, Vec<String>)>,
    /// RFC 8474 `[MAILBOXID (…)]`: the folder's stable id on servers with OBJECTID.
    pub mailbox_id: Option<String>,
}

/// How to open the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Condstore,
    Qresync { uidvalidity: u32, modseq: u64 },
}

/// Quotes a mailbox name as an IMAP quoted string.
pub fn quote(name: &str) -> Result<String, ProviderError> {
    if name.contains(['\r', '\n', '\0']) {
        return Err(ProviderError::Permanent(format!(
            "folder name {name:?} contains a line break"
        )));
    }
    Ok(format!(
        "\"{}\"",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

pub async fn examine(
    session: &mut async_imap::Session<ImapStream>,
    name: &str,
    mode: Mode,
) -> Result<Examined, ProviderError> {
    open(session, "EXAMINE", name, mode).await
}

/// SELECT: the same answer, with the folder opened read-write (STORE, MOVE, EXPUNGE). A later
/// EXAMINE or SELECT closes it without expunging anything (RFC 3501 §6.3.1).
pub async fn select(
    session: &mut async_imap::Session<ImapStream>,
    name: &str,
    mode: Mode,
) -> Result<Examined, ProviderError> {
    open(session, "SELECT", name, mode).await
}

async fn open(
    session: &mut async_imap::Session<ImapStream>,
    verb: &str,
    name: &str,
    mode: Mode,
) -> Result<Examined, ProviderError> {
    let params = match mode {
        Mode::Plain => String::new(),
        Mode::Condstore => " (CONDSTORE)".into(),
        Mode::Qresync {
            uidvalidity,
            modseq,
        } => format!(" (QRESYNC ({uidvalidity} {modseq}))"),
    };
    let tag = session
        .run_command(format!("{verb} {}{params}", quote(name)?))
        .await
        .map_err(errors::command)?;
    let mut out = Examined::default();
    loop {
        let Some(resp) = session.read_response().await.map_err(|e| {
            ProviderError::Disconnected(format!("reading the {verb} response: {e}"))
        })?
        else {
            return Err(ProviderError::Disconnected(format!(
                "connection closed during {verb}"
            )));
        };
        match resp.parsed() {
            Response::Done {
                tag: t,
                status,
                outcome,
            } if *t == tag => {
                return match status {
                    Status::Ok => Ok(out),
                    other => Err(ProviderError::Permanent(format!(
                        "the server refused to open folder {name:?}: {other:?} {}",
                        outcome.information.as_deref().unwrap_or("")
                    ))),
                };
            }
            Response::Data { outcome, .. } => match &outcome.code {
                Some(ResponseCode::UidValidity(v)) => out.uidvalidity = Some(*v),
                Some(ResponseCode::UidNext(n)) => out.uidnext = Some(*n),
                Some(ResponseCode::HighestModSeq(m)) => out.highestmodseq = Some(*m),
                // imap-proto knows no MAILBOXID code: it arrives as the text of the response.
                None => {
                    if let Some(id) = outcome.information.as_deref().and_then(mailbox_id) {
                        out.mailbox_id = Some(id);
                    }
                }
                _ => {}
            },
            Response::MailboxData(MailboxDatum::Exists(n)) => out.exists = *n,
            Response::Vanished { uids, .. } => out.vanished.extend(uids.iter().cloned()),
            Response::Fetch(_, attrs) => {
                let mut uid = None;
                let mut flags = None;
                for a in attrs {
                    match a {
                        AttributeValue::Uid(u) => uid = Some(*u),
                        AttributeValue::Flags(f) => {
                            flags = Some(f.iter().map(|x| x.to_string()).collect())
                        }
                        _ => {}
                    }
                }
                if let (Some(u), Some(f)) = (uid, flags) {
                    out.changed.push((u, f));
                }
            }
            _ => {}
        }
    }
}

/// `[MAILBOXID (F2212ea87)] Ok` → `F2212ea87`.
fn mailbox_id(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix("[MAILBOXID (")?;
    let id = &rest[..rest.find(')')?];
    (!id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::{mailbox_id, quote};

    #[test]
    fn reads_the_rfc8474_mailbox_id_from_the_response_text() {
        assert_eq!(
            mailbox_id("[MAILBOXID (F2212ea87)] Ok").as_deref(),
            Some("F2212ea87")
        );
        assert_eq!(mailbox_id("[MAILBOXID ()] Ok"), None);
        assert_eq!(mailbox_id("[MAILBOXID (a b)] Ok"), None);
        assert_eq!(mailbox_id("Ok"), None);
    }

    #[test]
    fn quotes_names_and_refuses_line_breaks() {
        assert_eq!(quote("INBOX").unwrap(), "\"INBOX\"");
        assert_eq!(quote(r#"a "b" \c"#).unwrap(), r#""a \"b\" \\c""#);
        assert!(quote("a\r\nb").is_err());
    }
}
