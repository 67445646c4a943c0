//! Just enough MIME writing for generated mail. Everything is emitted as
//! 7-bit text (encoded words, quoted-printable, base64), so the output is
//! valid no matter how strict the receiving parser or server is.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Raw bytes per base64 line: 57 bytes encode to exactly 76 characters, the
/// RFC 2045 maximum.
const B64_CHUNK: usize = 57;

/// Both RFC 2047 flavours appear in the wild and parsers get them wrong in
/// different ways, so the generator alternates between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WordEncoding {
    B,
    Q,
}

/// A node of the MIME tree. Built first and serialised afterwards so the
/// structure (and the expected attachment count) is decided in one place.
pub(crate) enum Entity {
    Text {
        html: bool,
        lines: Vec<String>,
    },
    Binary {
        content_type: &'static str,
        filename: String,
        /// `Some` for images referenced from HTML inside multipart/related.
        content_id: Option<String>,
        data: Vec<u8>,
    },
    Multipart {
        subtype: &'static str,
        boundary: String,
        parts: Vec<Entity>,
    },
}

/// Writes the entity's own `Content-*` headers, the blank line and the body.
/// Used for the top level too, where the headers continue the message header.
pub(crate) fn write_entity(out: &mut String, entity: &Entity) {
    match entity {
        Entity::Text { html, lines } => {
            // HTML goes out as quoted-printable like most real clients do;
            // plain text only when it has to.
            let qp = *html || lines.iter().any(|l| !l.is_ascii());
            out.push_str(if *html {
                "Content-Type: text/html; charset=\"utf-8\"\r\n"
            } else {
                "Content-Type: text/plain; charset=\"utf-8\"\r\n"
            });
            out.push_str(if qp {
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            } else {
                "Content-Transfer-Encoding: 7bit\r\n\r\n"
            });
            for line in lines {
                if qp {
                    qp_line(out, line.as_bytes());
                } else {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            }
        }
        Entity::Binary {
            content_type,
            filename,
            content_id,
            data,
        } => {
            let param = |name: &str| {
                if filename.is_ascii() {
                    format!("{name}=\"{filename}\"")
                } else {
                    format!("{name}*=UTF-8''{}", percent_encode(filename))
                }
            };
            out.push_str("Content-Type: ");
            out.push_str(content_type);
            out.push_str(";\r\n ");
            out.push_str(&param("name"));
            out.push_str("\r\n");
            out.push_str(if content_id.is_some() {
                "Content-Disposition: inline;\r\n "
            } else {
                "Content-Disposition: attachment;\r\n "
            });
            out.push_str(&param("filename"));
            out.push_str("\r\n");
            if let Some(cid) = content_id {
                out.push_str("Content-ID: <");
                out.push_str(cid);
                out.push_str(">\r\n");
            }
            out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
            base64_lines(out, data);
        }
        Entity::Multipart {
            subtype,
            boundary,
            parts,
        } => {
            out.push_str("Content-Type: multipart/");
            out.push_str(subtype);
            out.push_str(";\r\n boundary=\"");
            out.push_str(boundary);
            out.push_str("\"\r\n\r\n");
            if parts.len() > 1 {
                out.push_str("This is a multi-part message in MIME format.\r\n");
            }
            for part in parts {
                out.push_str("--");
                out.push_str(boundary);
                out.push_str("\r\n");
                write_entity(out, part);
            }
            out.push_str("--");
            out.push_str(boundary);
            out.push_str("--\r\n");
        }
    }
}

pub(crate) fn base64_lines(out: &mut String, data: &[u8]) {
    out.reserve(data.len() / B64_CHUNK * 78 + 80);
    for chunk in data.chunks(B64_CHUNK) {
        STANDARD.encode_string(chunk, out);
        out.push_str("\r\n");
    }
}

/// Quoted-printable for one logical line (without its line break); soft
/// breaks keep every physical line at 76 characters or fewer.
pub(crate) fn qp_line(out: &mut String, line: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut col = 0;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let encode =
            b == b'=' || b > 126 || (b < 32 && b != b'\t') || ((b == b' ' || b == b'\t') && last);
        let width = if encode { 3 } else { 1 };
        if col + width > 75 {
            out.push_str("=\r\n");
            col = 0;
        }
        if encode {
            out.push('=');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        } else {
            out.push(b as char);
        }
        col += width;
    }
    out.push_str("\r\n");
}

/// RFC 2047 encoded words, each at most 68 characters, split on character
/// boundaries so every word decodes on its own.
pub(crate) fn encoded_words(text: &str, enc: WordEncoding) -> Vec<String> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut words = Vec::new();
    match enc {
        WordEncoding::B => {
            let mut start = 0;
            let mut end = 0;
            for (i, c) in text.char_indices() {
                if i + c.len_utf8() - start > 42 {
                    words.push(format!(
                        "=?UTF-8?B?{}?=",
                        STANDARD.encode(&text[start..end])
                    ));
                    start = i;
                }
                end = i + c.len_utf8();
            }
            if end > start {
                words.push(format!(
                    "=?UTF-8?B?{}?=",
                    STANDARD.encode(&text[start..end])
                ));
            }
        }
        WordEncoding::Q => {
            let mut cur = String::new();
            let mut buf = [0u8; 4];
            for c in text.chars() {
                let mut piece = String::new();
                if c.is_ascii_alphanumeric() || "!*+-/".contains(c) {
                    piece.push(c);
                } else if c == ' ' {
                    piece.push('_');
                } else {
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        piece.push('=');
                        piece.push(HEX[usize::from(b >> 4)] as char);
                        piece.push(HEX[usize::from(b & 15)] as char);
                    }
                }
                if cur.len() + piece.len() > 56 {
                    words.push(format!("=?UTF-8?Q?{cur}?="));
                    cur.clear();
                }
                cur.push_str(&piece);
            }
            if !cur.is_empty() {
                words.push(format!("=?UTF-8?Q?{cur}?="));
            }
        }
    }
    words
}

/// RFC 2231 value encoding for non-ASCII file names.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Greedy word wrap by bytes; a single over-long word stays on its own line.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
