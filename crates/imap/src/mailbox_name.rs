//! Folder names as people write them (`Projekte/Übersicht`) and as IMAP sends them: modified
//! UTF-7 (RFC 3501 §5.1.3, `Projekte/&ANw-bersicht`). Everything above this crate sees the
//! decoded name; the encoded one exists only on the wire.
//!
//! Written here rather than taken from `utf7-imap`: that crate panics on a malformed name
//! (`base64::decode(..).unwrap()`), and a server's LIST answer must never crash a worker.

use base64::Engine;
use base64::alphabet::Alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// RFC 3501's base64 variant: `,` for `/`, no padding.
fn engine() -> GeneralPurpose {
    let alphabet =
        Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
            .expect("a valid alphabet");
    GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    )
}

/// The wire form of `name`: printable ASCII as itself (`&` as `&-`), everything else as
/// `&<base64 of UTF-16BE>-`.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine().encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Why a name from the server is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a modified UTF-7 mailbox name: {0}")]
pub struct NotModifiedUtf7(&'static str);

/// The name a person reads, from the wire form. Strict: anything RFC 3501 does not allow
/// (8-bit bytes, an unterminated or empty shift, bad base64, lone surrogates, a shifted run
/// that encodes printable ASCII) is an error, so that `encode(decode(w)?) == w` always holds.
pub fn decode(wire: &str) -> Result<String, NotModifiedUtf7> {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(amp) = rest.find('&') {
        let (plain, shifted) = rest.split_at(amp);
        push_plain(&mut out, plain)?;
        let shifted = &shifted[1..];
        let end = shifted
            .find('-')
            .ok_or(NotModifiedUtf7("an '&' without its closing '-'"))?;
        let b64 = &shifted[..end];
        if b64.is_empty() {
            out.push('&');
        } else {
            let bytes = engine()
                .decode(b64)
                .map_err(|_| NotModifiedUtf7("bad base64 after '&'"))?;
            if bytes.len() % 2 != 0 {
                return Err(NotModifiedUtf7("an odd number of UTF-16 bytes"));
            }
            let units = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]));
            for c in char::decode_utf16(units) {
                let c = c.map_err(|_| NotModifiedUtf7("a lone UTF-16 surrogate"))?;
                if (' '..='~').contains(&c) {
                    return Err(NotModifiedUtf7("printable ASCII inside a shifted run"));
                }
                out.push(c);
            }
        }
        rest = &shifted[end + 1..];
    }
    push_plain(&mut out, rest)?;
    Ok(out)
}

fn push_plain(out: &mut String, plain: &str) -> Result<(), NotModifiedUtf7> {
    if !plain.chars().all(|c| (' '..='~').contains(&c)) {
        return Err(NotModifiedUtf7("a character outside printable ASCII"));
    }
    out.push_str(plain);
    Ok(())
}

/// A name from LIST as we store and show it: decoded, or as sent when the server's name is
/// not valid modified UTF-7 (kept byte for byte, so it can still be opened).
pub fn from_wire(wire: &str) -> String {
    decode(wire).unwrap_or_else(|_| wire.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (person's name, wire name): RFC 3501's own example and what mail clients create.
    const PAIRS: &[(&str, &str)] = &[
        ("INBOX", "INBOX"),
        ("Projekte/Übersicht", "Projekte/&ANw-bersicht"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("Entwürfe & Ablage", "Entw&APw-rfe &- Ablage"),
        ("Café", "Caf&AOk-"),
        ("😀 Fun", "&2D3eAA- Fun"),
        ("", ""),
    ];

    #[test]
    fn names_encode_and_decode_as_rfc_3501_says() {
        for (person, wire) in PAIRS {
            assert_eq!(encode(person), *wire, "encode {person:?}");
            assert_eq!(decode(wire).as_deref(), Ok(*person), "decode {wire:?}");
        }
    }

    #[test]
    fn malformed_wire_names_are_errors_not_panics() {
        for bad in [
            "&",
            "&ANw",
            "Caf&AOk",
            "&A-",
            "&Ü-",
            "Café",
            "&AGE-",     // "a", which must not be shifted
            "&2D0-",     // a lone high surrogate
            "&ANwA-",    // three bytes
            "tab\there", // a control character
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should not decode");
            assert_eq!(from_wire(bad), bad, "kept as sent");
        }
    }

    #[test]
    fn every_decoded_name_encodes_back_to_the_wire_name() {
        // Every short string over an alphabet that stresses the edges.
        let alphabet = ['a', '&', '-', 'Ü', '台', '😀', ' '];
        let mut names = vec![String::new()];
        for _ in 0..4 {
            names = names
                .iter()
                .flat_map(|n| {
                    alphabet.iter().map(move |c| {
                        let mut m = n.clone();
                        m.push(*c);
                        m
                    })
                })
                .collect();
            for name in &names {
                let wire = encode(name);
                assert!(wire.is_ascii(), "{wire:?}");
                assert_eq!(decode(&wire).as_deref(), Ok(name.as_str()), "{wire:?}");
            }
        }
    }
}
