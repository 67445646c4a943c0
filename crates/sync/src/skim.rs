//! Leaves attachment bodies out before parsing. We keep only an attachment's name, type and
//! size, yet decoding its base64 was most of the worker's CPU in an initial sync. `skim` finds
//! the base64 bodies of non-text leaf parts and returns a copy of the message without them,
//! with each left-out body's decoded size; mail-parser then parses the small copy.
//!
//! Only clean bodies are left out: pure base64 with padding only at the end and no `-`, so the
//! first `--boundary` after the body is where mail-parser ends the part too. The caller checks
//! that mail-parser found every left-out body where expected (`Skimmed::confirm`) and parses
//! the whole message otherwise.

use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, GetHeader, HeaderName, HeaderValue, Message, MessageParser, PartType};
use memchr::memmem;

/// Deeper nesting than this is parsed the ordinary way.
const MAX_DEPTH: usize = 8;
/// Bodies smaller than this are not worth leaving out.
const MIN_BODY: usize = 1024;

/// A body left out of the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeftOut {
    /// Byte range of the encoded body in the original message.
    start: usize,
    end: usize,
    /// What mail-parser would have decoded it to, in bytes.
    decoded_size: usize,
}

pub(crate) struct Skimmed {
    /// The message without the left-out bodies.
    pub light: Vec<u8>,
    /// Offset of each left-out body in `light`, with its decoded size.
    left_out: Vec<(u32, usize)>,
}

impl Skimmed {
    /// The decoded size of the attachment whose body starts at `offset_body` in `light`, if
    /// its body was left out.
    pub fn decoded_size(&self, offset_body: u32) -> Option<usize> {
        self.left_out
            .iter()
            .find(|(o, _)| *o == offset_body)
            .map(|(_, s)| *s)
    }

    /// Whether mail-parser, parsing `light`, saw each left-out body as an empty base64
    /// attachment right where it was cut. Anything else means it read the structure another
    /// way, and the whole message must be parsed instead.
    pub fn confirm(&self, parsed: &Message<'_>) -> bool {
        self.left_out.iter().all(|(offset, _)| {
            parsed.attachments().any(|p| {
                p.offset_body == *offset
                    && p.encoding == Encoding::Base64
                    && matches!(&p.body, PartType::Binary(b) | PartType::InlineBinary(b) if b.is_empty())
            })
        })
    }
}

/// The message with its clean base64 attachment bodies left out, or `None` when there is
/// nothing to leave out (or the structure is not clean enough to be sure).
pub(crate) fn skim(raw: &[u8]) -> Option<Skimmed> {
    let parser = MessageParser::new();
    let mut left_out = Vec::new();
    walk_part(&parser, raw, 0, None, 0, &mut left_out)?;
    if left_out.is_empty() {
        return None;
    }
    let dropped: usize = left_out.iter().map(|l| l.end - l.start).sum();
    let mut light = Vec::with_capacity(raw.len() - dropped);
    let mut offsets = Vec::with_capacity(left_out.len());
    let mut at = 0;
    for l in &left_out {
        light.extend_from_slice(&raw[at..l.start]);
        offsets.push((u32::try_from(light.len()).ok()?, l.decoded_size));
        at = l.end;
    }
    light.extend_from_slice(&raw[at..]);
    Some(Skimmed {
        light,
        left_out: offsets,
    })
}

/// Walks the part whose headers start at `start`; returns where it ends: the dashes of the
/// parent's next delimiter, or the end of the message at the top.
fn walk_part(
    parser: &MessageParser,
    raw: &[u8],
    start: usize,
    parent_boundary: Option<&[u8]>,
    depth: usize,
    left_out: &mut Vec<LeftOut>,
) -> Option<usize> {
    let mut stream = MessageStream::new(&raw[start..]);
    let mut headers = Vec::new();
    if !stream.parse_headers(parser, &mut headers) {
        return None; // no body: nothing to skim, and mail-parser treats this specially
    }
    let body = start + stream.offset();
    let content_type = headers
        .header_value(&HeaderName::ContentType)
        .and_then(HeaderValue::as_content_type);
    let next_delimiter = |from: usize| match parent_boundary {
        Some(b) => find_delimiter(raw, from, b),
        None => Some(raw.len()),
    };
    let Some(ct) = content_type else {
        return next_delimiter(body); // text/plain (or message/rfc822 in a digest): kept
    };
    match ct.ctype() {
        "multipart" => {
            let boundary = ct.attribute("boundary")?.as_bytes();
            if depth >= MAX_DEPTH || boundary.is_empty() {
                return None;
            }
            let after = walk_multipart(parser, raw, body, boundary, depth + 1, left_out)?;
            next_delimiter(after)
        }
        "text" | "message" => next_delimiter(body),
        _ => {
            let end = next_delimiter(body)?;
            let base64 = matches!(
                headers.header_value(&HeaderName::ContentTransferEncoding),
                Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64")
            );
            if base64 && end - body >= MIN_BODY {
                // The line break before the delimiter belongs to the delimiter: keep it.
                let content_end = trim_line_break(raw, body, end);
                if let Some(decoded_size) = clean_base64_size(&raw[body..content_end]) {
                    left_out.push(LeftOut {
                        start: body,
                        end: content_end,
                        decoded_size,
                    });
                }
            }
            Some(end)
        }
    }
}

/// Walks the parts of a multipart body; returns the offset just after its close delimiter.
fn walk_multipart(
    parser: &MessageParser,
    raw: &[u8],
    body: usize,
    boundary: &[u8],
    depth: usize,
    left_out: &mut Vec<LeftOut>,
) -> Option<usize> {
    let mut at = find_delimiter(raw, body, boundary)?;
    loop {
        at += 2 + boundary.len();
        if raw[at..].starts_with(b"--") {
            return Some(at + 2);
        }
        // Transport padding, then the line break before the part's headers.
        let line_end = at + memchr::memchr(b'\n', &raw[at..])?;
        if !raw[at..line_end]
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r'))
        {
            return None; // a longer boundary that merely starts with ours: not clean
        }
        at = walk_part(parser, raw, line_end + 1, Some(boundary), depth, left_out)?;
    }
}

/// The offset of the dashes of the next `--boundary` at or after `from`. mail-parser accepts
/// one anywhere, not only at the start of a line; so does this.
fn find_delimiter(raw: &[u8], from: usize, boundary: &[u8]) -> Option<usize> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary);
    memmem::find(&raw[from..], &delimiter).map(|i| from + i)
}

fn trim_line_break(raw: &[u8], start: usize, mut end: usize) -> usize {
    if end > start && raw[end - 1] == b'\n' {
        end -= 1;
        if end > start && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// The decoded size of a body that is clean base64: the alphabet and white space, then
/// optional padding (and white space) at the end. `None` for anything else, which mail-parser
/// then decodes its own way.
fn clean_base64_size(body: &[u8]) -> Option<usize> {
    let (data, padding) = match memchr::memchr(b'=', body) {
        Some(i) => body.split_at(i),
        None => (body, &b""[..]),
    };
    let space = count_space_if_clean(data)?;
    if !padding
        .iter()
        .all(|b| matches!(b, b'=' | b'\r' | b'\n' | b' ' | b'\t'))
    {
        return None;
    }
    let alphabet = data.len() - space;
    // As mail-parser decodes: whole groups of four give three bytes; a partial group gives
    // one or two bytes if padding follows, nothing if it doesn't.
    let tail = match (alphabet % 4, padding.is_empty()) {
        (_, true) | (0, false) => 0,
        (1 | 2, false) => 1,
        (_, false) => 2,
    };
    Some(alphabet / 4 * 3 + tail)
}

/// The number of white-space bytes in `data`, if every other byte is in the base64 alphabet.
/// Attachments are most of the bytes of a mailbox, so this is written for the compiler to
/// vectorise: branch-free tests, summed per 64-byte chunk into bytes.
fn count_space_if_clean(data: &[u8]) -> Option<usize> {
    #[inline(always)]
    fn classes(b: u8) -> (bool, bool) {
        let alphabet = ((b | 0x20).wrapping_sub(b'a') < 26)
            | (b.wrapping_sub(b'0') < 10)
            | (b == b'+')
            | (b == b'/');
        let space = (b == b'\r') | (b == b'\n') | (b == b' ') | (b == b'\t');
        (alphabet, space)
    }
    let mut space = 0usize;
    let mut bad = 0u8;
    let mut chunks = data.chunks_exact(64);
    for chunk in &mut chunks {
        let mut chunk_space = 0u8;
        for &b in chunk {
            let (a, s) = classes(b);
            chunk_space += u8::from(s);
            bad |= u8::from(!(a | s));
        }
        space += usize::from(chunk_space);
    }
    for &b in chunks.remainder() {
        let (a, s) = classes(b);
        space += usize::from(s);
        bad |= u8::from(!(a | s));
    }
    (bad == 0).then_some(space)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        // Line-wrapped at 76 like real mail, with padding.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk.iter().fold(0u32, |n, b| n << 8 | *b as u32) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                out.push(if i <= chunk.len() {
                    A[(n >> (18 - 6 * i) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        out.as_bytes()
            .chunks(76)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    #[test]
    fn the_size_is_what_mail_parser_decodes() {
        for len in [0usize, 1, 2, 3, 4, 5, 1000, 1001, 1002] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            assert_eq!(clean_base64_size(b64(&data).as_bytes()), Some(len), "{len}");
        }
        // A partial group without padding is dropped by mail-parser, and so here.
        assert_eq!(clean_base64_size(b"QUJDRA"), Some(3));
        // Not clean: padding in the middle, a dash, other bytes.
        assert_eq!(clean_base64_size(b"QQ==QUJD"), None);
        assert_eq!(clean_base64_size(b"QUJD-QUJD"), None);
        assert_eq!(clean_base64_size(b"QUJD\x00"), None);
    }

    #[test]
    fn leaves_out_attachment_bodies_and_keeps_everything_else() {
        let pdf = b64(&vec![7u8; 5000]);
        let raw = format!(
            "From: a@example.test\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
             preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
             --b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n\
             --b1--\r\nepilogue\r\n"
        );
        let skimmed = skim(raw.as_bytes()).expect("a body to leave out");
        let light = String::from_utf8(skimmed.light.clone()).unwrap();
        assert!(!light.contains(&pdf[..76]));
        assert!(
            light.contains("hello") && light.contains("preamble") && light.contains("epilogue")
        );
        let parsed = MessageParser::default().parse(&skimmed.light).unwrap();
        assert!(skimmed.confirm(&parsed));
        let att = parsed.attachments().next().unwrap();
        assert_eq!(skimmed.decoded_size(att.offset_body), Some(5000));
    }

    #[test]
    fn a_body_that_is_not_clean_base64_is_kept() {
        let raw = format!(
            "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\
             Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{}!\r\n--b1--\r\n",
            "QUJD".repeat(500)
        );
        assert!(skim(raw.as_bytes()).is_none());
    }
}
