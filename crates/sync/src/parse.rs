//! Raw RFC 5322 bytes → a message row and its addresses, with mail-parser. Whatever can't be
//! read is recorded in `parse_problem`; a message is never dropped for being malformed.

use crate::skim::{self, Skimmed};
use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use mailfleet_core::EmailAddress;
use mailfleet_provider::FetchedMessage;
use mailfleet_store::models::{AddressEntry, NewMessage};

/// Parses one fetched message. Runs mail-parser behind `catch_unwind`: it is fuzzed and
/// documented not to panic, but has shipped panics before, and one bad message must not take
/// a worker down.
pub fn parse_fetched(
    account_id: i64,
    folder_id: i64,
    fetched: FetchedMessage,
) -> (NewMessage, Vec<AddressEntry>) {
    let hash = blake3::hash(&fetched.raw).as_bytes().to_vec();
    let parsed = std::panic::catch_unwind(|| parse_raw(&fetched.raw));
    let (fields, addresses, problem) = match parsed {
        Ok(Some((f, a))) => (f, a, None),
        Ok(None) => (
            Fields::default(),
            Vec::new(),
            Some("empty message".to_string()),
        ),
        Err(_) => (
            Fields::default(),
            Vec::new(),
            Some("the MIME parser failed on this message".to_string()),
        ),
    };
    let problem = problem.or_else(|| {
        fields
            .message_id
            .is_none()
            .then(|| "no Message-ID header".to_string())
    });
    let thread_key = fields
        .references
        .first()
        .cloned()
        .or_else(|| fields.in_reply_to.clone())
        .or_else(|| fields.message_id.clone())
        .unwrap_or_else(|| hex(&hash));
    let (from_name, from_email) = addresses
        .iter()
        .find(|a| a.field == "from")
        .map(|a| (a.name.clone(), Some(a.email.clone())))
        .unwrap_or((None, None));
    let msg = NewMessage {
        account_id,
        folder_id,
        remote_id: fetched.remote_id,
        provider_id: fetched.provider_id,
        message_id: fields.message_id,
        in_reply_to: fields.in_reply_to,
        reference_ids: fields.references,
        thread_key,
        subject: fields.subject,
        from_name,
        from_email,
        sent_at: fields.sent_at,
        received_at: fetched.received_at,
        size_bytes: fetched.raw.len() as i64,
        flags: fetched.flags,
        text_body: fields.text_body,
        html_body: fields.html_body,
        attachments: serde_json::Value::Array(fields.attachments),
        content_hash: hash,
        parse_problem: problem,
    };
    (msg, addresses)
}

#[derive(Debug, Default, PartialEq)]
struct Fields {
    message_id: Option<String>,
    in_reply_to: Option<String>,
    references: Vec<String>,
    subject: Option<String>,
    sent_at: Option<DateTime<Utc>>,
    text_body: Option<String>,
    html_body: Option<String>,
    attachments: Vec<serde_json::Value>,
}

fn parse_raw(raw: &[u8]) -> Option<(Fields, Vec<AddressEntry>)> {
    if let Some(s) = &skim::skim(raw)
        && let Some(m) = MessageParser::default().parse(&s.light)
        && s.confirm(&m)
    {
        return read_parsed(&m, Some(s));
    }
    read_parsed(&MessageParser::default().parse(raw)?, None)
}

/// The fields of a parsed message; `skimmed` gives the sizes of attachment bodies left out.
fn read_parsed(m: &Message<'_>, skimmed: Option<&Skimmed>) -> Option<(Fields, Vec<AddressEntry>)> {
    // mail-parser returns a message with no parts for some garbage; methods on it index
    // parts[0], so stop here.
    if m.parts.is_empty() {
        return None;
    }
    let html_body = m.html_part(0).and_then(|p| match &p.body {
        PartType::Html(h) => Some(clean(h)),
        _ => None,
    });
    let attachments = m
        .attachments()
        .map(|a| {
            serde_json::json!({
                "filename": a.attachment_name().map(clean),
                "content_type": a.content_type().map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                }),
                "size": skimmed
                    .and_then(|s| s.decoded_size(a.offset_body))
                    .unwrap_or_else(|| a.contents().len()),
                "content_id": a.content_id().map(clean),
                "inline": a.content_disposition().is_some_and(|d| d.is_inline()),
            })
        })
        .collect();
    let fields = Fields {
        message_id: m.message_id().map(clean).filter(|s| !s.is_empty()),
        in_reply_to: ids(m.in_reply_to()).into_iter().next(),
        references: ids(m.references()),
        subject: m.subject().map(clean),
        sent_at: m
            .date()
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        text_body: m.body_text(0).map(|t| clean(&t)),
        html_body,
        attachments,
    };
    let mut addresses = Vec::new();
    for (field, addr) in [
        ("from", m.from()),
        ("to", m.to()),
        ("cc", m.cc()),
        ("bcc", m.bcc()),
        ("reply_to", m.reply_to()),
    ] {
        collect_addresses(field, addr, &mut addresses);
    }
    Some((fields, addresses))
}

fn collect_addresses(field: &'static str, addr: Option<&Address<'_>>, out: &mut Vec<AddressEntry>) {
    let Some(addr) = addr else { return };
    let mut position = 0;
    for a in addr.iter() {
        // Unparseable addresses ("undisclosed-recipients:;") are skipped, not fatal.
        let Some(email) = a.address().and_then(|e| EmailAddress::parse(e).ok()) else {
            continue;
        };
        out.push(AddressEntry {
            field,
            position,
            name: a.name().map(clean).filter(|n| !n.trim().is_empty()),
            email: email.into(),
        });
        position += 1;
    }
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![clean(t)],
        HeaderValue::TextList(list) => list.iter().map(|t| clean(t)).collect(),
        _ => Vec::new(),
    }
}

/// Postgres TEXT can't hold NUL.
fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(raw: &[u8]) -> FetchedMessage {
        FetchedMessage {
            remote_id: "1:1".into(),
            provider_id: None,
            flags: vec!["\\Seen".into()],
            received_at: None,
            raw: raw.to_vec(),
        }
    }

    #[test]
    fn reads_ids_addresses_bodies_and_attachments() {
        let raw = b"Message-ID: <m2@example.test>\r\n\
In-Reply-To: <m1@example.test>\r\n\
References: <m0@example.test> <m1@example.test>\r\n\
From: =?UTF-8?Q?Jos=C3=A9?= <Jose@Example.TEST>\r\n\
To: ann@example.test, Bob <bob@example.test>\r\n\
Cc: carol@example.test\r\n\
Subject: =?UTF-8?B?SGVsbG8gd8O2cmxk?=\r\n\
Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b1\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=b2\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain\r\n\
\r\n\
plain body\r\n\
--b2\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>html body</p>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/pdf; name=q.pdf\r\n\
Content-Disposition: attachment; filename=q.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";
        let (m, addrs) = parse_fetched(1, 2, fetched(raw));
        assert_eq!(m.message_id.as_deref(), Some("m2@example.test"));
        assert_eq!(m.in_reply_to.as_deref(), Some("m1@example.test"));
        assert_eq!(m.reference_ids, vec!["m0@example.test", "m1@example.test"]);
        assert_eq!(m.thread_key, "m0@example.test");
        assert_eq!(m.subject.as_deref(), Some("Hello wörld"));
        assert_eq!(m.from_email.as_deref(), Some("jose@example.test"));
        assert_eq!(m.from_name.as_deref(), Some("José"));
        assert_eq!(m.text_body.as_deref().map(str::trim), Some("plain body"));
        assert!(m.html_body.unwrap().contains("<p>html body</p>"));
        assert_eq!(m.attachments[0]["filename"], "q.pdf");
        assert_eq!(m.attachments[0]["content_type"], "application/pdf");
        assert_eq!(m.attachments[0]["size"], 9);
        assert_eq!(m.sent_at.unwrap().to_rfc3339(), "2026-11-26T09:00:00+00:00");
        assert!(m.parse_problem.is_none());
        let got: Vec<_> = addrs
            .iter()
            .map(|a| (a.field, a.position, a.email.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("from", 0, "jose@example.test"),
                ("to", 0, "ann@example.test"),
                ("to", 1, "bob@example.test"),
                ("cc", 0, "carol@example.test"),
            ]
        );
    }

    /// The full parse, without leaving attachment bodies out.
    fn parse_whole(raw: &[u8]) -> Option<(Fields, Vec<AddressEntry>)> {
        read_parsed(&MessageParser::default().parse(raw)?, None)
    }

    #[test]
    fn leaving_attachment_bodies_out_changes_nothing_on_a_realistic_mailbox() {
        let spec = mailfleet_mailgen::MailboxSpec {
            owner: "owner@example.test".into(),
            owner_name: "Owner".into(),
            count: 400,
            seed: 7,
            now: DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
            span_days: 30,
            folders: vec![("INBOX".into(), 3), ("Sent".into(), 1), ("Junk".into(), 1)],
            size_mix: mailfleet_mailgen::SizeMix::Realistic,
        };
        let mut skimmed = 0;
        for m in mailfleet_mailgen::generate(&spec) {
            skimmed += usize::from(skim::skim(&m.raw).is_some());
            assert_eq!(parse_raw(&m.raw), parse_whole(&m.raw), "{}", m.message_id);
        }
        assert!(skimmed > 20, "only {skimmed} messages had a body left out");
    }

    #[test]
    fn leaving_attachment_bodies_out_changes_nothing_on_odd_structures() {
        let body = "QUJD".repeat(600);
        let wrapped: String = body
            .as_bytes()
            .chunks(76)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        let cases = [
            // Nested: related inside alternative inside mixed, an inline image, a PDF.
            format!(
                "Message-ID: <n@x>\r\nFrom: a@x.test\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nplain\r\n--a\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n<img src=cid:i>\r\n--r\r\nContent-Type: image/png\r\nContent-ID: <i>\r\nContent-Transfer-Encoding: base64\r\n\r\n{wrapped}\r\n--r--\r\n--a--\r\n--o\r\nContent-Type: application/pdf; name=\"q.pdf\"\r\nContent-Disposition: attachment; filename=\"q.pdf\"\r\nContent-Transfer-Encoding: BASE64\r\n\r\n{wrapped}==\r\n--o--\r\n"
            ),
            // LF line ends, transport padding after the delimiter, no close delimiter.
            format!(
                "From: a@x.test\nContent-Type: multipart/mixed; boundary=b\n\n--b  \nContent-Type: text/plain\n\nhi\n--b\nContent-Type: application/zip\nContent-Transfer-Encoding: base64\n\n{}\n",
                body
            ),
            // A boundary that is a prefix of a longer one in the text.
            format!(
                "From: a@x.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--bx is not it\r\n--b\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n{wrapped}\r\n--b--\r\n"
            ),
            // A forwarded message with its own attachment, and padding in the middle.
            format!(
                "From: a@x.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@x.test\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n{wrapped}\r\n--c--\r\n\r\n--b\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\nQQ==\r\n{wrapped}\r\n--b--\r\n"
            ),
            // A single-part message that is all attachment.
            format!(
                "From: a@x.test\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{wrapped}\r\n"
            ),
            // The delimiter glued to the end of the last base64 line.
            format!(
                "From: a@x.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n{wrapped}--b--\r\n"
            ),
        ];
        for (i, raw) in cases.iter().enumerate() {
            assert_eq!(
                parse_raw(raw.as_bytes()),
                parse_whole(raw.as_bytes()),
                "case {i}"
            );
        }
        assert!(
            skim::skim(cases[0].as_bytes()).is_some(),
            "the plain case is skimmed"
        );
    }

    #[test]
    fn garbage_is_kept_with_a_problem_noted() {
        for raw in [
            &b""[..],
            b"\xff\xfe\x00garbage\r\n\r\n\x00",
            b"Subject: x\r\n",
        ] {
            let (m, _) = parse_fetched(1, 2, fetched(raw));
            assert!(m.parse_problem.is_some(), "{raw:?}");
            assert_eq!(m.size_bytes, raw.len() as i64);
            assert_eq!(m.thread_key.len(), 64, "falls back to the content hash");
            assert!(m.text_body.as_deref().is_none_or(|t| !t.contains('\0')));
        }
    }
}
