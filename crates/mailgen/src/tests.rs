use std::collections::{HashMap, HashSet};

use chrono::TimeZone;
use mail_parser::{Address, MessageParser, MimeHeaders};

use super::*;

fn spec(size_mix: SizeMix, count: usize, seed: u64) -> MailboxSpec {
    MailboxSpec {
        owner: "demo@example.test".to_owned(),
        owner_name: "Dana Démo".to_owned(),
        count,
        seed,
        now: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
        span_days: 365,
        folders: [
            ("INBOX", 60),
            ("Sent", 15),
            ("Archive", 15),
            ("Trash", 5),
            ("Junk", 5),
        ]
        .into_iter()
        .map(|(n, w)| (n.to_owned(), w))
        .collect(),
        size_mix,
    }
}

fn detailed(spec: &MailboxSpec) -> Vec<(GeneratedMessage, Detail)> {
    let mut out = Vec::new();
    generate_with(spec, |m, d| out.push((m, d)));
    out
}

fn addresses(addr: Option<&Address<'_>>) -> Vec<String> {
    addr.map(|a| {
        a.iter()
            .filter_map(|a| a.address())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

fn check_parses(mix: SizeMix, count: usize, seed: u64) {
    let spec = spec(mix, count, seed);
    let names: HashMap<String, String> = contacts(&spec)
        .into_iter()
        .map(|(name, addr)| (addr, name))
        .collect();
    let messages = detailed(&spec);
    assert_eq!(messages.len(), count);
    for (m, d) in &messages {
        let parsed = MessageParser::default()
            .parse(&m.raw)
            .unwrap_or_else(|| panic!("{} does not parse", m.message_id));
        let ctx = &m.message_id;
        assert_eq!(parsed.message_id(), Some(m.message_id.as_str()), "{ctx}");
        let from = parsed.from().and_then(|a| a.first());
        assert_eq!(
            from.and_then(|a| a.address()),
            Some(m.from.as_str()),
            "{ctx}"
        );
        let expected_name = if m.from == spec.owner {
            Some(spec.owner_name.as_str())
        } else {
            names.get(&m.from).map(String::as_str)
        };
        if let Some(name) = expected_name {
            assert_eq!(from.and_then(|a| a.name()), Some(name), "{ctx}");
        }
        assert_eq!(addresses(parsed.to()), m.to, "{ctx}");
        assert_eq!(addresses(parsed.cc()), m.cc, "{ctx}");
        assert_eq!(parsed.subject(), Some(d.subject.as_str()), "{ctx}");
        assert_eq!(
            parsed.date().map(|d| d.to_timestamp()),
            Some(m.internal_date.timestamp()),
            "{ctx}"
        );
        assert_eq!(parsed.attachment_count(), d.attachment_names.len(), "{ctx}");
        let parsed_names: Vec<&str> = parsed
            .attachments()
            .map(|a| a.attachment_name().unwrap_or("?"))
            .collect();
        assert_eq!(parsed_names, d.attachment_names, "{ctx}");
        for a in parsed.attachments() {
            assert!(
                a.len() > 500,
                "{ctx}: attachment decodes to {} bytes",
                a.len()
            );
        }
        assert!(
            parsed.body_text(0).is_some_and(|t| t.len() > 100),
            "{ctx}: no text body"
        );
        assert_eq!(
            parsed.in_reply_to().as_text(),
            d.in_reply_to.as_deref(),
            "{ctx}"
        );
        let refs: Vec<String> = parsed
            .references()
            .as_text_list()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(refs, d.references, "{ctx}");
    }
}

#[test]
fn small_messages_parse_and_match() {
    check_parses(SizeMix::Small, 400, 1);
}

#[test]
fn realistic_messages_parse_and_match() {
    check_parses(SizeMix::Realistic, 250, 2);
}

#[test]
fn lines_are_crlf_seven_bit_and_short() {
    for mix in [SizeMix::Small, SizeMix::Realistic] {
        for m in generate(&spec(mix, 250, 3)) {
            let raw = &m.raw;
            assert!(raw.ends_with(b"\r\n"), "{}", m.message_id);
            assert!(raw.is_ascii(), "{} is not 7-bit", m.message_id);
            let mut line_len = 0;
            for (i, &b) in raw.iter().enumerate() {
                match b {
                    b'\r' => assert_eq!(raw.get(i + 1), Some(&b'\n'), "{}: bare CR", m.message_id),
                    b'\n' => {
                        assert!(i > 0 && raw[i - 1] == b'\r', "{}: bare LF", m.message_id);
                        line_len = 0;
                    }
                    _ => {
                        line_len += 1;
                        assert!(line_len <= 998, "{}: line too long", m.message_id);
                    }
                }
            }
        }
    }
}

#[test]
fn threads_chain_correctly() {
    let spec = spec(SizeMix::Small, 1500, 4);
    let messages = detailed(&spec);
    let by_id: HashMap<&str, (usize, &GeneratedMessage, &Detail)> = messages
        .iter()
        .enumerate()
        .map(|(i, (m, d))| (m.message_id.as_str(), (i, m, d)))
        .collect();
    assert_eq!(by_id.len(), messages.len(), "Message-IDs are not unique");

    let mut thread_sizes: HashMap<&str, usize> = HashMap::new();
    let mut thread_folders: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut replies = 0;
    let mut self_replies = 0;
    for (i, (m, d)) in messages.iter().enumerate() {
        let Some(parent_id) = &d.in_reply_to else {
            assert!(d.references.is_empty());
            continue;
        };
        replies += 1;
        let (pi, parent, parent_detail) = by_id[parent_id.as_str()];
        assert!(pi < i, "reply sorts before its parent");
        assert!(parent.internal_date <= m.internal_date);
        if parent.from == m.from {
            self_replies += 1;
        }
        let mut expected_refs = parent_detail.references.clone();
        expected_refs.push(parent.message_id.clone());
        assert_eq!(d.references, expected_refs);
        let root = d.references[0].as_str();
        let root_detail = by_id[root].2;
        assert!(root_detail.in_reply_to.is_none());
        assert_eq!(d.subject, format!("Re: {}", root_detail.subject));
        if m.folder == "Sent" {
            assert_eq!(m.from, spec.owner);
        } else {
            assert_eq!(m.to, vec![spec.owner.clone()]);
        }
        assert!(!d.junk && !parent_detail.junk);
        *thread_sizes.entry(root).or_insert(1) += 1;
        let folders = thread_folders.entry(root).or_default();
        folders.insert(m.folder.as_str());
        folders.insert(by_id[root].1.folder.as_str());
    }
    assert!(thread_sizes.values().all(|&n| (2..=6).contains(&n)));
    let in_threads: usize = thread_sizes.values().sum();
    let share = replies as f64 / messages.len() as f64;
    assert!((0.2..0.4).contains(&share), "reply share {share}");
    assert!(in_threads as f64 / messages.len() as f64 > 0.3);
    assert!(
        self_replies * 5 < replies,
        "{self_replies} of {replies} answer themselves"
    );
    assert!(
        thread_folders
            .values()
            .any(|f| f.contains("INBOX") && f.contains("Sent")),
        "no thread spans INBOX and Sent"
    );
    assert!(thread_sizes.values().any(|&n| n >= 5));
}

#[test]
fn deterministic_per_seed() {
    let a = generate(&spec(SizeMix::Small, 200, 7));
    let b = generate(&spec(SizeMix::Small, 200, 7));
    let c = generate(&spec(SizeMix::Small, 200, 8));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().zip(&c).all(|(x, y)| x.raw != y.raw));
    assert_eq!(
        contacts(&spec(SizeMix::Small, 1, 7)),
        contacts(&spec(SizeMix::Realistic, 9, 7))
    );
    assert_ne!(
        contacts(&spec(SizeMix::Small, 1, 7)),
        contacts(&spec(SizeMix::Small, 1, 8))
    );
}

#[test]
fn contacts_pool_is_plausible() {
    let spec = spec(SizeMix::Small, 2000, 9);
    let pool = contacts(&spec);
    assert!((40..=80).contains(&pool.len()), "{}", pool.len());
    let addrs: HashSet<&str> = pool.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(addrs.len(), pool.len());
    assert!(!addrs.contains(spec.owner.as_str()));
    for (_, addr) in &pool {
        let domain = addr.rsplit_once('@').unwrap().1;
        assert!(
            domain.starts_with("example.") || domain.ends_with(".test"),
            "{addr}"
        );
    }
    for name in ["José Müller", "Zoë Ångström", "李雷"] {
        assert!(pool.iter().any(|(n, _)| n == name), "{name} missing");
    }
    // Every non-spam correspondent in the mailbox comes from the pool.
    for m in generate(&spec) {
        if m.folder == "Junk" {
            continue;
        }
        for a in std::iter::once(&m.from).chain(&m.to).chain(&m.cc) {
            assert!(*a == spec.owner || addrs.contains(a.as_str()), "{a}");
        }
        if m.folder == "Sent" {
            assert_eq!(m.from, spec.owner);
        } else {
            assert!(m.to.contains(&spec.owner));
            assert_ne!(m.from, spec.owner);
        }
    }
}

#[test]
fn small_sizes_within_bounds() {
    let messages = detailed(&spec(SizeMix::Small, 1000, 10));
    for (m, _) in &messages {
        assert!((1_000..=40_000).contains(&m.raw.len()), "{}", m.raw.len());
    }
    let with_attachments = messages
        .iter()
        .filter(|(_, d)| !d.attachment_names.is_empty())
        .count();
    assert!(with_attachments > 50);
}

#[test]
fn realistic_sizes_within_bounds() {
    let messages = detailed(&spec(SizeMix::Realistic, 1200, 11));
    let mut sizes: Vec<usize> = messages.iter().map(|(m, _)| m.raw.len()).collect();
    sizes.sort_unstable();
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    let median = sizes[sizes.len() / 2];
    assert!(sizes[0] >= 2_000, "smallest {}", sizes[0]);
    assert!(
        *sizes.last().unwrap() <= 2_000_000,
        "largest {}",
        sizes.last().unwrap()
    );
    assert!((35_000..=90_000).contains(&mean), "mean {mean}");
    assert!((2_000..=30_000).contains(&median), "median {median}");
    let near_max = sizes.iter().filter(|&&s| s > 1_500_000).count();
    assert!((3..=40).contains(&near_max), "{near_max} near 2 MB");
    let under_30k = sizes.iter().filter(|&&s| s <= 30_000).count();
    assert!(under_30k as f64 / sizes.len() as f64 > 0.7);
    let non_junk: Vec<_> = messages.iter().filter(|(_, d)| !d.junk).collect();
    let with_files = non_junk
        .iter()
        .filter(|(m, _)| m.raw.windows(24).any(|w| w == b"Content-Disposition: att"))
        .count();
    let share = with_files as f64 / non_junk.len() as f64;
    assert!((0.1..0.2).contains(&share), "attachment share {share}");
}

#[test]
fn folders_follow_weights() {
    let spec = spec(SizeMix::Small, 3000, 12);
    let messages = generate(&spec);
    let total_weight: u32 = spec.folders.iter().map(|f| f.1).sum();
    for (folder, weight) in &spec.folders {
        let p = f64::from(*weight) / f64::from(total_weight);
        let expected = p * messages.len() as f64;
        let sd = (expected * (1.0 - p)).sqrt();
        let got = messages.iter().filter(|m| &m.folder == folder).count() as f64;
        assert!(
            (got - expected).abs() < 5.0 * sd,
            "{folder}: {got} vs {expected}"
        );
    }
    let seen = messages.iter().filter(|m| m.seen).count() as f64 / 3000.0;
    let flagged = messages.iter().filter(|m| m.flagged).count() as f64 / 3000.0;
    assert!((0.62..0.78).contains(&seen), "seen {seen}");
    assert!((0.03..0.08).contains(&flagged), "flagged {flagged}");
}

#[test]
fn junk_is_spammy_and_trash_is_not() {
    for (m, d) in detailed(&spec(SizeMix::Small, 800, 13)) {
        let raw = String::from_utf8(m.raw.clone()).unwrap();
        if m.folder == "Junk" {
            assert!(d.junk);
            assert!(raw.contains("X-Spam-Flag: YES"));
            assert!(corpus::SPAM_SUBJECTS.contains(&d.subject.as_str()));
        } else {
            assert!(!d.junk);
            assert!(!raw.contains("X-Spam-Flag"));
        }
    }
}

#[test]
fn dates_sorted_within_span_and_zoned() {
    let spec = spec(SizeMix::Small, 600, 14);
    let messages = generate(&spec);
    let start = spec.now - chrono::Duration::days(spec.span_days);
    assert!(
        messages
            .windows(2)
            .all(|w| w[0].internal_date <= w[1].internal_date)
    );
    assert!(
        messages
            .iter()
            .all(|m| m.internal_date >= start && m.internal_date <= spec.now)
    );
    let first_month = messages
        .iter()
        .filter(|m| m.internal_date < start + chrono::Duration::days(60))
        .count();
    assert!(first_month > 50, "dates not spread: {first_month}");
    let zones: HashSet<String> = messages
        .iter()
        .map(|m| {
            let raw = String::from_utf8_lossy(&m.raw);
            let date = raw.lines().find(|l| l.starts_with("Date: ")).unwrap();
            date.rsplit(' ').next().unwrap().to_owned()
        })
        .collect();
    assert!(zones.len() >= 5, "{zones:?}");
}

#[test]
fn header_and_body_variety() {
    let messages = generate(&spec(SizeMix::Small, 1000, 15));
    let count = |needle: &str| {
        messages
            .iter()
            .filter(|m| String::from_utf8_lossy(&m.raw).contains(needle))
            .count()
    };
    let subject_encoded = messages
        .iter()
        .filter(|m| {
            String::from_utf8_lossy(&m.raw)
                .lines()
                .any(|l| l.starts_with("Subject: =?UTF-8?"))
        })
        .count() as f64
        / messages.len() as f64;
    assert!((0.12..0.3).contains(&subject_encoded), "{subject_encoded}");
    assert!(count("Subject: =?UTF-8?B?") > 20);
    assert!(count("Subject: =?UTF-8?Q?") > 20);
    assert!(count("From: =?UTF-8?B?") > 10);
    assert!(count("From: =?UTF-8?Q?") > 10);
    assert!(count("Cc: ") > 50);
    let plain_only = count("MIME-Version: 1.0\r\nContent-Type: text/plain");
    assert!(plain_only > 150, "{plain_only}");
    assert!(count("multipart/alternative") > 300);
    assert!(count("multipart/mixed") > 80);
    assert!(count("multipart/related") > 20);
    assert!(count("Content-ID: <") > 20);
    assert!(
        count("text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable") > 50
    );
    assert!(count("filename*=UTF-8''") > 3);
    for ct in ["application/pdf", "image/png", "text/csv", ".docx"] {
        assert!(count(ct) > 5, "{ct}");
    }
}

#[test]
fn simple_message_parses() {
    let date = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
    let raw = simple_message(
        "alice@example.com",
        "bob@example.org",
        "Grüße",
        "Hello Bob,\nsee you tomorrow.\n",
        "abc.123@example.com",
        date,
    );
    assert!(raw.is_ascii());
    assert!(!raw.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.message_id(), Some("abc.123@example.com"));
    assert_eq!(parsed.subject(), Some("Grüße"));
    assert_eq!(
        parsed
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("alice@example.com")
    );
    assert_eq!(parsed.date().unwrap().to_timestamp(), date.timestamp());
    assert_eq!(
        parsed.body_text(0).as_deref(),
        Some("Hello Bob,\r\nsee you tomorrow.\r\n")
    );
}

/// Run with `cargo test --release -p mailfleet-mailgen -- --ignored`.
#[test]
#[ignore = "timing only meaningful in release builds"]
fn realistic_3000_is_fast() {
    let started = std::time::Instant::now();
    let messages = generate(&spec(SizeMix::Realistic, 3000, 16));
    let elapsed = started.elapsed();
    let total: usize = messages.iter().map(|m| m.raw.len()).sum();
    eprintln!(
        "3000 realistic messages: {elapsed:?}, {} MB, mean {} KB",
        total / 1_000_000,
        total / 3000 / 1000
    );
    assert!(elapsed.as_secs_f64() < 3.0, "{elapsed:?}");
    assert!((120_000_000..=260_000_000).contains(&total), "{total}");
}
