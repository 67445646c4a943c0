//! Outgoing mail as RFC 5322 bytes, built once when the message is queued (lettre's builder):
//! the Message-ID and Date are fixed then, so every attempt sends the same bytes and the copy
//! in Sent can be found by its Message-ID.

use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use mailfleet_core::EmailAddress;

/// A recipient or sender: a normalised address and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Party {
    pub email: EmailAddress,
    pub name: Option<String>,
}

impl Party {
    fn address(&self) -> Result<lettre::Address, ComposeError> {
        self.email
            .as_str()
            .parse()
            .map_err(|e| ComposeError(format!("address {}: {e}", self.email)))
    }

    fn mailbox(&self) -> Result<Mailbox, ComposeError> {
        let address = self
            .email
            .as_str()
            .parse()
            .map_err(|e| ComposeError(format!("address {}: {e}", self.email)))?;
        Ok(Mailbox::new(
            self.name.clone().filter(|n| !n.trim().is_empty()),
            address,
        ))
    }
}

#[derive(Debug, Clone)]
pub struct AttachmentFile {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The user's signature, appended to what they send.
#[derive(Debug, Clone, Default)]
pub struct Signature {
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Draft {
    pub from: Party,
    pub to: Vec<Party>,
    pub cc: Vec<Party>,
    pub bcc: Vec<Party>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentFile>,
    /// Message-IDs without angle brackets.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub message_id: String,
    pub date: DateTime<Utc>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ComposeError(String);

/// Appends the signature to each body part (RFC 3676 `-- ` separator in text). A text
/// signature is used, escaped, in HTML when there is no HTML signature.
pub fn sign(draft: &mut Draft, signature: &Signature) {
    if let (Some(body), Some(sig)) = (draft.text.as_mut(), signature.text.as_deref())
        && !sig.trim().is_empty()
    {
        body.push_str("\n\n-- \n");
        body.push_str(sig);
    }
    let html_sig = match (&signature.html, &signature.text) {
        (Some(h), _) if !h.trim().is_empty() => Some(h.clone()),
        (_, Some(t)) if !t.trim().is_empty() => Some(escape_html(t).replace('\n', "<br>\n")),
        _ => None,
    };
    if let (Some(body), Some(sig)) = (draft.html.as_mut(), html_sig) {
        let block = format!("<div class=\"mailfleet-signature\">-- <br>\n{sig}</div>");
        match body.rfind("</body>") {
            Some(at) => body.insert_str(at, &block),
            None => body.push_str(&block),
        }
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The message as it goes on the wire. Bcc recipients are in the envelope, not the header.
pub fn compose(d: &Draft) -> Result<Vec<u8>, ComposeError> {
    // Given, not derived from the headers: a message to Bcc recipients only has no To or Cc
    // to derive it from. (The SMTP envelope itself is stored with the message.)
    let recipients = d.to.iter().chain(&d.cc).chain(&d.bcc);
    let envelope = lettre::address::Envelope::new(
        Some(d.from.address()?),
        recipients.map(Party::address).collect::<Result<_, _>>()?,
    )
    .map_err(|e| ComposeError(e.to_string()))?;
    let mut b = lettre::Message::builder()
        .envelope(envelope)
        .from(d.from.mailbox()?)
        .subject(d.subject.clone())
        .message_id(Some(format!("<{}>", d.message_id)))
        .date(d.date.into());
    for p in &d.to {
        b = b.to(p.mailbox()?);
    }
    for p in &d.cc {
        b = b.cc(p.mailbox()?);
    }
    if let Some(parent) = &d.in_reply_to {
        b = b.in_reply_to(format!("<{parent}>"));
    }
    if !d.references.is_empty() {
        let refs: Vec<String> = d.references.iter().map(|r| format!("<{r}>")).collect();
        b = b.references(refs.join(" "));
    }
    let body = match (&d.text, &d.html) {
        (Some(t), Some(h)) => Body::Multi(MultiPart::alternative_plain_html(t.clone(), h.clone())),
        (Some(t), None) => Body::Single(SinglePart::plain(t.clone())),
        (None, Some(h)) => Body::Single(SinglePart::html(h.clone())),
        (None, None) => Body::Single(SinglePart::plain(String::new())),
    };
    let message = if d.attachments.is_empty() {
        match body {
            Body::Multi(m) => b.multipart(m),
            Body::Single(s) => b.singlepart(s),
        }
    } else {
        let mut mixed = match body {
            Body::Multi(m) => MultiPart::mixed().multipart(m),
            Body::Single(s) => MultiPart::mixed().singlepart(s),
        };
        for a in &d.attachments {
            let ct = ContentType::parse(&a.content_type).map_err(|e| {
                ComposeError(format!(
                    "attachment {}: content_type {:?}: {e}",
                    a.filename, a.content_type
                ))
            })?;
            mixed = mixed.singlepart(Attachment::new(a.filename.clone()).body(a.bytes.clone(), ct));
        }
        b.multipart(mixed)
    }
    .map_err(|e| ComposeError(e.to_string()))?;
    Ok(message.formatted())
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(e: &str) -> Party {
        Party {
            email: EmailAddress::parse(e).unwrap(),
            name: None,
        }
    }

    fn draft() -> Draft {
        Draft {
            from: Party {
                email: EmailAddress::parse("ann@example.test").unwrap(),
                name: Some("Ann Example".into()),
            },
            to: vec![party("bob@example.test")],
            cc: vec![],
            bcc: vec![party("hidden@example.test")],
            subject: "Quote".into(),
            text: Some("Hello Bob".into()),
            html: Some("<html><body><p>Hello Bob</p></body></html>".into()),
            attachments: vec![],
            in_reply_to: Some("parent@example.test".into()),
            references: vec!["root@example.test".into(), "parent@example.test".into()],
            message_id: "fixed-1@example.test".into(),
            date: DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
                .unwrap()
                .into(),
        }
    }

    #[test]
    fn the_message_carries_the_fixed_id_and_the_thread_headers_but_not_bcc() {
        let raw = String::from_utf8(compose(&draft()).unwrap()).unwrap();
        assert!(raw.contains("Message-ID: <fixed-1@example.test>"), "{raw}");
        assert!(raw.contains("In-Reply-To: <parent@example.test>"), "{raw}");
        assert!(
            raw.contains("References: <root@example.test> <parent@example.test>"),
            "{raw}"
        );
        assert!(
            !raw.to_ascii_lowercase().contains("hidden@example.test"),
            "{raw}"
        );
    }

    #[test]
    fn signatures_are_appended_to_text_and_inside_the_html_body() {
        let mut d = draft();
        sign(
            &mut d,
            &Signature {
                text: Some("Ann\nSales".into()),
                html: None,
            },
        );
        assert_eq!(d.text.as_deref(), Some("Hello Bob\n\n-- \nAnn\nSales"));
        let html = d.html.unwrap();
        assert!(
            html.ends_with("Ann<br>\nSales</div></body></html>"),
            "{html}"
        );
    }

    #[test]
    fn a_message_to_bcc_recipients_only_composes() {
        let mut d = draft();
        d.to.clear();
        let raw = String::from_utf8(compose(&d).unwrap()).unwrap();
        assert!(!raw.to_ascii_lowercase().contains("hidden@example.test"));
        assert!(!raw.contains("\r\nTo:"), "{raw}");
    }

    #[test]
    fn every_type_the_api_takes_is_one_lettre_takes() {
        for t in [
            "application/pdf",
            "text/plain; charset=utf-8",
            "text/plain;charset=utf-8;format=flowed",
            "application/vnd.ms-excel.sheet.macroEnabled.12",
            "A/B",
            "x!#$&^_.+-/y!#$&^_.+-; a!#$&^_.+-=b!#$&^_.+-",
        ] {
            assert!(crate::sending::is_media_type(t), "{t}");
            assert!(ContentType::parse(t).is_ok(), "{t}");
        }
        for t in [
            "",
            "text",
            "text/",
            "/plain",
            "text/plain;",
            "text/plain; a",
            "a b/c",
        ] {
            assert!(!crate::sending::is_media_type(t), "{t}");
        }
    }

    #[test]
    fn a_bad_attachment_type_is_an_error_not_a_panic() {
        let mut d = draft();
        d.attachments.push(AttachmentFile {
            filename: "x.bin".into(),
            content_type: "not a type".into(),
            bytes: vec![1, 2, 3],
        });
        assert!(compose(&d).unwrap_err().to_string().contains("x.bin"));
    }
}
