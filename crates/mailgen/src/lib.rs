//! Realistic synthetic mail for the demo, the benchmarks and the tests.
//!
//! Sync bugs hide in the messy corners of real mailboxes: encoded headers,
//! nested MIME trees, threads that hop between folders, multi-megabyte
//! attachments, odd time zones. This crate produces mailboxes with those
//! corners so they get exercised long before a customer's mailbox does, and it
//! does so deterministically from a seed, so a failing test or a benchmark
//! regression can be reproduced byte for byte.
//!
//! Only reserved domains (`example.*`, `*.test`) are used, so nothing
//! generated here can ever reach a real person.

use std::collections::HashSet;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};

mod corpus;
pub mod dovecot;
mod mime;
#[cfg(test)]
mod tests;

use mime::{Entity, WordEncoding};

/// What mailbox to fabricate. Every field feeds the output, so two equal
/// specs always give byte-identical mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSpec {
    /// Address of the mailbox owner, e.g. `demo@example.test`; the `From` of
    /// everything in the Sent folder and the `To` of everything else.
    pub owner: String,
    pub owner_name: String,
    pub count: usize,
    pub seed: u64,
    /// Passed in rather than read from the clock so output does not depend
    /// on when the generator runs.
    pub now: DateTime<Utc>,
    /// Dates are spread over `[now - span_days, now]`.
    pub span_days: i64,
    /// Folder name and relative weight, e.g. `("INBOX", 60)`. A name
    /// containing "sent" gets outgoing mail and one containing "junk" or
    /// "spam" gets spam; every other folder gets ordinary incoming mail.
    pub folders: Vec<(String, u32)>,
    pub size_mix: SizeMix,
}

/// Trades realism for speed: the sync path behaves differently with
/// multi-megabyte messages, but most tests only need many small ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeMix {
    /// 1-8 KB bodies and a few small attachments, for fast tests.
    Small,
    /// 2 KB to 2 MB, mostly 2-30 KB; about 15% carry attachments of
    /// 20 KB-2 MB and a few come close to 2 MB. Mean about 60 KB.
    Realistic,
}

/// One message plus the IMAP state it should be appended with, so callers
/// can APPEND it without parsing it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedMessage {
    pub folder: String,
    /// Complete RFC 5322 message with CRLF line endings, 7-bit clean.
    pub raw: Vec<u8>,
    /// Equal to the `Date` header, normalised to UTC.
    pub internal_date: DateTime<Utc>,
    pub seen: bool,
    pub flagged: bool,
    /// Without angle brackets, as most stores key it.
    pub message_id: String,
    /// Bare addresses, without display names.
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
}

/// Builds the mailbox described by `spec`, sorted by `internal_date`
/// ascending (the order an APPEND-based seeding run wants).
pub fn generate(spec: &MailboxSpec) -> Vec<GeneratedMessage> {
    let mut out = Vec::with_capacity(spec.count);
    generate_with(spec, |message, _| out.push(message));
    out
}

/// A minimal plain-text message, for tests that need exact control over
/// every header rather than realism. `message_id` is given without angle
/// brackets; `from` and `to` are inserted verbatim.
pub fn simple_message(
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    message_id: &str,
    date: DateTime<Utc>,
) -> Vec<u8> {
    let mut out = String::with_capacity(body.len() + 400);
    out.push_str("Date: ");
    out.push_str(&date.fixed_offset().to_rfc2822());
    out.push_str("\r\nFrom: ");
    out.push_str(from);
    out.push_str("\r\nTo: ");
    out.push_str(to);
    out.push_str("\r\nSubject: ");
    if subject.is_ascii() {
        out.push_str(subject);
    } else {
        out.push_str(&mime::encoded_words(subject, WordEncoding::B).join("\r\n "));
    }
    out.push_str("\r\nMessage-ID: <");
    out.push_str(message_id.trim_start_matches('<').trim_end_matches('>'));
    out.push_str(">\r\nMIME-Version: 1.0\r\n");
    let lines: Vec<String> = body.lines().map(str::to_owned).collect();
    mime::write_entity(&mut out, &Entity::Text { html: false, lines });
    out.into_bytes()
}

/// The correspondents `generate` draws from, as `(name, address)`, so the
/// demo can pre-create some as CRM contacts that then match real traffic.
/// Spam senders are left out on purpose: nobody keeps them as contacts.
pub fn contacts(spec: &MailboxSpec) -> Vec<(String, String)> {
    correspondents(spec)
        .into_iter()
        .map(|p| (p.name, p.addr))
        .collect()
}

#[derive(Debug, Clone)]
struct Person {
    name: String,
    addr: String,
    /// UTC offset in minutes that this person's mail client stamps.
    tz: i32,
}

impl Person {
    fn domain(&self) -> &str {
        self.addr
            .rsplit_once('@')
            .map_or("example.test", |(_, d)| d)
    }

    fn first_name(&self) -> &str {
        self.name.split(' ').next().unwrap_or(&self.name)
    }
}

/// Facts about a generated message that the raw bytes only state encoded;
/// the tests compare the parser's view against them.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone)]
struct Detail {
    subject: String,
    attachment_names: Vec<String>,
    in_reply_to: Option<String>,
    references: Vec<String>,
    junk: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Incoming,
    Sent,
    Junk,
}

fn role_of(folder: &str) -> Role {
    let lower = folder.to_lowercase();
    if lower.contains("sent") {
        Role::Sent
    } else if lower.contains("junk") || lower.contains("spam") {
        Role::Junk
    } else {
        Role::Incoming
    }
}

/// What a reply needs from the message it answers.
#[derive(Debug, Clone)]
struct Quote {
    when: DateTime<FixedOffset>,
    name: String,
    addr: String,
    snippet: String,
}

struct Thread {
    subject: String,
    ids: Vec<String>,
    peer: usize,
    cc: Vec<usize>,
    target: usize,
    last: Quote,
}

/// Threads waiting for replies; more would spread replies too thin to reach
/// the 2-6 message lengths.
const MAX_OPEN_THREADS: usize = 6;

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Skews towards the front of the pool: real mailboxes have a few frequent
/// correspondents and a long tail.
fn pick_person(rng: &mut StdRng, n: usize) -> usize {
    let u: f64 = rng.random();
    ((u * u * n as f64) as usize).min(n - 1)
}

fn log_uniform(rng: &mut StdRng, lo: usize, hi: usize) -> usize {
    let u: f64 = rng.random();
    (lo as f64 * (hi as f64 / lo as f64).powf(u)) as usize
}

fn offset(minutes: i32) -> FixedOffset {
    FixedOffset::east_opt(minutes * 60).unwrap_or_else(|| FixedOffset::east_opt(0).unwrap())
}

/// Seeded separately from the messages so `contacts` does not have to
/// generate the mailbox to know who is in it.
fn correspondents(spec: &MailboxSpec) -> Vec<Person> {
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5DEE_CE66_D1CE_4E5B);
    let target = rng.random_range(48..=72);
    let mut addrs: HashSet<String> = HashSet::new();
    let mut names: HashSet<String> = HashSet::new();
    addrs.insert(spec.owner.to_ascii_lowercase());
    let mut people = Vec::with_capacity(target);
    for &(name, local, domain) in corpus::SPECIAL_PEOPLE {
        let domain = if domain.is_empty() {
            pick(&mut rng, corpus::DOMAINS)
        } else {
            domain
        };
        let addr = format!("{local}@{domain}");
        let tz = pick(&mut rng, corpus::TZ_MINUTES);
        if addrs.insert(addr.clone()) {
            names.insert(name.to_owned());
            people.push(Person {
                name: name.to_owned(),
                addr,
                tz,
            });
        }
    }
    while people.len() < target {
        let (first, first_ascii) = pick(&mut rng, corpus::FIRST_NAMES);
        let (last, last_ascii) = pick(&mut rng, corpus::LAST_NAMES);
        let local = match rng.random_range(0..4) {
            0 | 1 => format!("{first_ascii}.{last_ascii}"),
            2 => format!("{}{last_ascii}", &first_ascii[..1]),
            _ => format!("{first_ascii}_{last_ascii}"),
        };
        let addr = format!("{local}@{}", pick(&mut rng, corpus::DOMAINS));
        let name = format!("{first} {last}");
        let tz = pick(&mut rng, corpus::TZ_MINUTES);
        if !names.contains(&name) && addrs.insert(addr.clone()) {
            names.insert(name.clone());
            people.push(Person { name, addr, tz });
        }
    }
    people.shuffle(&mut rng);
    people
}

/// The whole generator; `sink` receives messages in `internal_date` order.
/// Streaming through a closure keeps tests from needing a second copy.
fn generate_with(spec: &MailboxSpec, mut sink: impl FnMut(GeneratedMessage, Detail)) {
    let pool = correspondents(spec);
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let owner = Person {
        name: spec.owner_name.clone(),
        addr: spec.owner.clone(),
        tz: pick(&mut rng, corpus::TZ_MINUTES),
    };
    let spammers: Vec<Person> = corpus::SPAMMERS
        .iter()
        .map(|&(name, addr)| Person {
            name: name.to_owned(),
            addr: addr.to_owned(),
            tz: pick(&mut rng, corpus::TZ_MINUTES),
        })
        .collect();
    let folders: Vec<(String, u64, Role)> = if spec.folders.is_empty() {
        vec![("INBOX".to_owned(), 1, Role::Incoming)]
    } else {
        let all_zero = spec.folders.iter().all(|(_, w)| *w == 0);
        spec.folders
            .iter()
            .map(|(name, w)| {
                let w = if all_zero { 1 } else { u64::from(*w) };
                (name.clone(), w, role_of(name))
            })
            .collect()
    };
    let total_weight: u64 = folders.iter().map(|f| f.1).sum();
    // Attachment payloads repeat this block: cheap to produce, and still
    // incompressible enough that transfer sizes stay honest.
    let mut block = vec![0u8; 4096];
    rng.fill_bytes(&mut block);

    let now = spec.now.timestamp();
    let span = spec.span_days.max(0) * 86_400;
    let mut times: Vec<i64> = (0..spec.count)
        .map(|_| rng.random_range(now - span..=now))
        .collect();
    times.sort_unstable();

    let mut threads: Vec<Thread> = Vec::new();
    for (idx, &ts) in times.iter().enumerate() {
        let mut r = rng.random_range(0..total_weight);
        let mut folder_idx = 0;
        while r >= folders[folder_idx].1 {
            r -= folders[folder_idx].1;
            folder_idx += 1;
        }
        let (folder, _, role) = &folders[folder_idx];
        let role = *role;
        let utc = DateTime::from_timestamp(ts, 0).unwrap_or(spec.now);

        let mut draft = Draft {
            from: &owner,
            to: Vec::new(),
            cc: Vec::new(),
            subject: String::new(),
            in_reply_to: None,
            references: Vec::new(),
            quote: None,
        };
        let mut thread_slot: Option<usize> = None;
        let mut start_thread: Option<(usize, Vec<usize>)> = None;
        match role {
            Role::Junk => {
                draft.from = &spammers[rng.random_range(0..spammers.len())];
                draft.to.push(&owner);
                draft.subject = (pick(&mut rng, corpus::SPAM_SUBJECTS)).to_owned();
            }
            _ if !threads.is_empty() && rng.random_bool(0.33) => {
                // Prefer threads where it is this side's turn, so
                // conversations mostly alternate instead of people
                // answering themselves.
                let sending = role == Role::Sent;
                let turn: Vec<usize> = (0..threads.len())
                    .filter(|&i| {
                        let th = &threads[i];
                        if sending {
                            th.last.addr != owner.addr
                        } else {
                            std::iter::once(&th.peer)
                                .chain(&th.cc)
                                .any(|&p| pool[p].addr != th.last.addr)
                        }
                    })
                    .collect();
                let ti = if turn.is_empty() {
                    rng.random_range(0..threads.len())
                } else {
                    pick(&mut rng, &turn)
                };
                let th = &threads[ti];
                let participants: Vec<usize> = std::iter::once(th.peer)
                    .chain(th.cc.iter().copied())
                    .collect();
                if sending {
                    draft.to.push(&pool[th.peer]);
                    draft.cc = th.cc.iter().map(|&i| &pool[i]).collect();
                } else {
                    let others: Vec<usize> = participants
                        .iter()
                        .copied()
                        .filter(|&i| pool[i].addr != th.last.addr)
                        .collect();
                    let sender = if others.is_empty() {
                        th.peer
                    } else {
                        pick(&mut rng, &others)
                    };
                    draft.from = &pool[sender];
                    draft.to.push(&owner);
                    draft.cc = participants
                        .iter()
                        .filter(|&&i| i != sender)
                        .map(|&i| &pool[i])
                        .collect();
                }
                draft.subject = format!("Re: {}", th.subject);
                draft.in_reply_to = th.ids.last().cloned();
                draft.references = th.ids.clone();
                draft.quote = Some(th.last.clone());
                thread_slot = Some(ti);
            }
            _ => {
                let peer = pick_person(&mut rng, pool.len());
                let mut used = vec![peer];
                if role == Role::Sent {
                    draft.to.push(&pool[peer]);
                    for _ in 0..rng.random_range(0..3).min(rng.random_range(0..3)) {
                        let extra = pick_person(&mut rng, pool.len());
                        if !used.contains(&extra) {
                            used.push(extra);
                            draft.to.push(&pool[extra]);
                        }
                    }
                } else {
                    draft.from = &pool[peer];
                    draft.to.push(&owner);
                    if rng.random_bool(0.15) {
                        let extra = pick_person(&mut rng, pool.len());
                        if !used.contains(&extra) {
                            used.push(extra);
                            draft.to.push(&pool[extra]);
                        }
                    }
                }
                // Conversations that will get replies are more often group
                // discussions: with only 15% of mail in Sent, 1:1 threads
                // would mostly be people answering themselves.
                let starts = rng.random_bool(0.2);
                let mut cc = Vec::new();
                if rng.random_bool(if starts { 0.75 } else { 0.2 }) {
                    for _ in 0..rng.random_range(1..=3) {
                        let extra = pick_person(&mut rng, pool.len());
                        if !used.contains(&extra) {
                            used.push(extra);
                            cc.push(extra);
                            draft.cc.push(&pool[extra]);
                        }
                    }
                }
                draft.subject = new_subject(&mut rng);
                if starts {
                    start_thread = Some((peer, cc));
                }
            }
        }

        let date = utc.with_timezone(&offset(draft.from.tz));
        let msg_id = format!("{:016x}.{idx}@{}", rng.random::<u64>(), draft.from.domain());
        let (raw, snippet, attachment_names) = render(
            &mut rng,
            spec.size_mix,
            &block,
            idx,
            &draft,
            role,
            date,
            &msg_id,
            &owner,
        );

        let quote = Quote {
            when: date,
            name: draft.from.name.clone(),
            addr: draft.from.addr.clone(),
            snippet,
        };
        if let Some(ti) = thread_slot {
            let th = &mut threads[ti];
            th.ids.push(msg_id.clone());
            th.last = quote;
            if th.ids.len() >= th.target {
                threads.remove(ti);
            }
        } else if let Some((peer, cc)) = start_thread {
            if threads.len() >= MAX_OPEN_THREADS {
                threads.remove(0);
            }
            threads.push(Thread {
                subject: draft.subject.clone(),
                ids: vec![msg_id.clone()],
                peer,
                cc,
                target: rng.random_range(2..=6),
                last: quote,
            });
        }

        let (seen, flagged) = match role {
            Role::Sent => (true, rng.random_bool(0.02)),
            Role::Junk => (rng.random_bool(0.3), false),
            Role::Incoming => (rng.random_bool(0.7), rng.random_bool(0.06)),
        };
        let detail = Detail {
            subject: draft.subject.clone(),
            attachment_names,
            in_reply_to: draft.in_reply_to.clone(),
            references: draft.references.clone(),
            junk: role == Role::Junk,
        };
        let message = GeneratedMessage {
            folder: folder.clone(),
            raw,
            internal_date: utc,
            seen,
            flagged,
            message_id: msg_id,
            from: draft.from.addr.clone(),
            to: draft.to.iter().map(|p| p.addr.clone()).collect(),
            cc: draft.cc.iter().map(|p| p.addr.clone()).collect(),
        };
        sink(message, detail);
    }
}

struct Draft<'p> {
    from: &'p Person,
    to: Vec<&'p Person>,
    cc: Vec<&'p Person>,
    subject: String,
    in_reply_to: Option<String>,
    references: Vec<String>,
    quote: Option<Quote>,
}

fn new_subject(rng: &mut StdRng) -> String {
    let topic = pick(rng, corpus::TOPICS);
    let template = if rng.random_bool(0.12) {
        pick(rng, corpus::NON_ASCII_SUBJECTS)
    } else {
        pick(rng, corpus::SUBJECT_TEMPLATES)
    };
    template.replace("{}", topic)
}

fn word_encoding(rng: &mut StdRng) -> WordEncoding {
    if rng.random_bool(0.5) {
        WordEncoding::B
    } else {
        WordEncoding::Q
    }
}

/// Display-name styles vary like they do between real clients: bare atoms,
/// quoted strings and encoded words.
fn mailbox(rng: &mut StdRng, p: &Person) -> String {
    if p.name.is_empty() {
        format!("<{}>", p.addr)
    } else if !p.name.is_ascii() {
        let words = mime::encoded_words(&p.name, word_encoding(rng));
        format!("{} <{}>", words.join(" "), p.addr)
    } else if p
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && rng.random_bool(0.5)
    {
        format!("{} <{}>", p.name, p.addr)
    } else {
        let escaped = p.name.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\" <{}>", p.addr)
    }
}

fn address_header(out: &mut String, rng: &mut StdRng, name: &str, people: &[&Person]) {
    if people.is_empty() {
        return;
    }
    out.push_str(name);
    out.push_str(": ");
    for (i, p) in people.iter().enumerate() {
        if i > 0 {
            out.push_str(",\r\n ");
        }
        out.push_str(&mailbox(rng, p));
    }
    out.push_str("\r\n");
}

/// Sizes and shape of one body, decided before any text is produced.
struct BodyPlan {
    html: bool,
    inline_image: Option<usize>,
    attachments: Vec<usize>,
    text_target: usize,
    non_ascii: bool,
}

fn plan_body(rng: &mut StdRng, mix: SizeMix, junk: bool, from_non_ascii: bool) -> BodyPlan {
    if junk {
        return BodyPlan {
            html: true,
            inline_image: None,
            attachments: Vec::new(),
            text_target: rng.random_range(1200..3000),
            non_ascii: false,
        };
    }
    let inline = rng.random_bool(0.06);
    let html = inline || rng.random_bool(0.6);
    let n_att = if rng.random_bool(0.15) {
        match rng.random_range(0..10) {
            0..=6 => 1,
            7 | 8 => 2,
            _ => 3,
        }
    } else {
        0
    };
    let non_ascii = from_non_ascii || rng.random_bool(0.12);
    match mix {
        SizeMix::Small => {
            let body = rng.random_range(1000..=8000);
            BodyPlan {
                html,
                inline_image: inline.then(|| rng.random_range(1000..=3000)),
                attachments: (0..n_att.min(2))
                    .map(|_| rng.random_range(1000..=6000))
                    .collect(),
                text_target: if html { body / 2 } else { body },
                non_ascii,
            }
        }
        SizeMix::Realistic => {
            let mut inline_image = inline.then(|| log_uniform(rng, 5_000, 60_000));
            let attachments: Vec<usize> = if n_att > 0 && rng.random_bool(0.1) {
                // Near the 2 MB ceiling once encoded; no inline image so the
                // total stays under it.
                inline_image = None;
                vec![rng.random_range(1_200_000..=1_380_000)]
            } else {
                (0..n_att)
                    .map(|_| log_uniform(rng, 20_000, 300_000))
                    .collect()
            };
            let text_target = if !attachments.is_empty() {
                log_uniform(rng, 800, 8000)
            } else {
                let total = log_uniform(rng, 2_000, 30_000);
                if html {
                    (total.saturating_sub(1200) / 2).max(600)
                } else {
                    total.saturating_sub(700).max(1700)
                }
            };
            BodyPlan {
                html,
                inline_image,
                attachments,
                text_target,
                non_ascii,
            }
        }
    }
}

enum Block {
    Para(String),
    Lines(Vec<String>),
    Quote { header: String, text: String },
    Image { cid: String, name: String },
    Shout(String),
    Link(String),
}

fn sentence(rng: &mut StdRng, out: &mut String) {
    let n = rng.random_range(5..16);
    let comma = rng.random_range(3..n + 3);
    for i in 0..n {
        let word = pick(rng, corpus::WORDS);
        if i == 0 {
            let mut chars = word.chars();
            if let Some(c) = chars.next() {
                out.push(c.to_ascii_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push(' ');
            out.push_str(word);
        }
        if i == comma && i + 1 < n {
            out.push(',');
        }
    }
    out.push(if rng.random_bool(0.1) { '?' } else { '.' });
}

fn paragraphs(rng: &mut StdRng, target: usize, non_ascii: bool) -> Vec<String> {
    let mut paras = Vec::new();
    let mut total = 0;
    while total < target {
        let want = rng.random_range(150..700).min(target - total).max(60);
        let mut p = String::with_capacity(want + 120);
        while p.len() < want {
            if !p.is_empty() {
                p.push(' ');
            }
            sentence(rng, &mut p);
        }
        total += p.len() + 2;
        paras.push(p);
    }
    if non_ascii {
        let i = rng.random_range(0..paras.len());
        paras[i].push(' ');
        paras[i].push_str(pick(rng, corpus::NON_ASCII_SENTENCES));
    }
    paras
}

/// First words of the body, for the next reply to quote.
fn snippet_of(paras: &[String]) -> String {
    let Some(first) = paras.first() else {
        return String::new();
    };
    if first.len() <= 300 {
        return first.clone();
    }
    let mut end = 300;
    while !first.is_char_boundary(end) {
        end -= 1;
    }
    let cut = first[..end].rfind(' ').unwrap_or(end);
    format!("{}...", &first[..cut])
}

fn text_lines(blocks: &[Block]) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        if i > 0 {
            lines.push(String::new());
        }
        match block {
            Block::Para(p) | Block::Shout(p) => lines.extend(mime::wrap(p, 72)),
            Block::Lines(l) => lines.extend(l.iter().cloned()),
            Block::Quote { header, text } => {
                lines.push(header.clone());
                lines.extend(mime::wrap(text, 70).into_iter().map(|l| format!("> {l}")));
            }
            Block::Image { name, .. } => lines.push(format!("[image: {name}]")),
            Block::Link(url) => lines.push(url.clone()),
        }
    }
    lines
}

fn html_lines(blocks: &[Block]) -> Vec<String> {
    let mut lines = vec![
        "<html>".to_owned(),
        "<head>".to_owned(),
        "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">".to_owned(),
        "</head>".to_owned(),
        "<body style=\"font-family: Arial, Helvetica, sans-serif; font-size: 14px;\">".to_owned(),
    ];
    for block in blocks {
        match block {
            Block::Para(p) => {
                lines.extend(mime::wrap(&format!("<p>{}</p>", mime::html_escape(p)), 76))
            }
            Block::Lines(l) => {
                let escaped: Vec<String> = l.iter().map(|s| mime::html_escape(s)).collect();
                lines.extend(mime::wrap(&format!("<p>{}</p>", escaped.join("<br>")), 76));
            }
            Block::Quote { header, text } => {
                lines.extend(mime::wrap(
                    &format!(
                        "<div class=\"quote-header\">{}</div>",
                        mime::html_escape(header)
                    ),
                    76,
                ));
                lines.push(
                    "<blockquote type=\"cite\" style=\"margin: 0 0 0 .8ex; border-left: 1px solid #ccc; padding-left: 1ex;\">"
                        .to_owned(),
                );
                lines.extend(mime::wrap(
                    &format!("<p>{}</p>", mime::html_escape(text)),
                    76,
                ));
                lines.push("</blockquote>".to_owned());
            }
            Block::Image { cid, name } => {
                lines.push(format!(
                    "<p><img src=\"cid:{cid}\" alt=\"{}\"",
                    mime::html_escape(name)
                ));
                lines.push("width=\"480\" height=\"270\"></p>".to_owned());
            }
            Block::Shout(p) => lines.extend(mime::wrap(
                &format!(
                    "<h1 style=\"color: #d00000; font-size: 32px;\"><b>{}</b></h1>",
                    mime::html_escape(p)
                ),
                76,
            )),
            Block::Link(url) => {
                lines.push(format!("<p style=\"font-size: 24px;\"><a href=\"{url}\">"));
                lines.push("<b>&gt;&gt;&gt; CLICK HERE &lt;&lt;&lt;</b></a></p>".to_owned());
            }
        }
    }
    lines.push("</body>".to_owned());
    lines.push("</html>".to_owned());
    lines
}

fn attachment_data(rng: &mut StdRng, block: &[u8], content_type: &str, size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    let mut tail: &[u8] = b"";
    match content_type {
        "application/pdf" => {
            data.extend_from_slice(
                b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n",
            );
            tail = b"\n%%EOF\n";
        }
        "image/png" => data.extend_from_slice(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
        "image/jpeg" => data.extend_from_slice(b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01"),
        "text/csv" => {
            data.extend_from_slice(b"date,account,description,amount\r\n");
            while data.len() < size {
                let row = format!(
                    "2024-{:02}-{:02},ACC-{:05},{} {},{}.{:02}\r\n",
                    rng.random_range(1..=12),
                    rng.random_range(1..=28),
                    rng.random_range(0..100_000),
                    pick(rng, corpus::WORDS),
                    pick(rng, corpus::WORDS),
                    rng.random_range(0..20_000),
                    rng.random_range(0..100),
                );
                data.extend_from_slice(row.as_bytes());
            }
            return data;
        }
        _ => data.extend_from_slice(b"PK\x03\x04\x14\0\x06\0\x08\0"),
    }
    let mut off = rng.random_range(0..block.len());
    while data.len() + tail.len() < size {
        let take = (size - tail.len() - data.len()).min(block.len() - off);
        data.extend_from_slice(&block[off..off + take]);
        off = 0;
    }
    data.extend_from_slice(tail);
    data
}

/// Serialises one message; returns the raw bytes, the snippet a reply would
/// quote and the names of its attachments (inline images included).
#[allow(clippy::too_many_arguments)]
fn render(
    rng: &mut StdRng,
    mix: SizeMix,
    block: &[u8],
    idx: usize,
    draft: &Draft<'_>,
    role: Role,
    date: DateTime<FixedOffset>,
    msg_id: &str,
    owner: &Person,
) -> (Vec<u8>, String, Vec<String>) {
    let junk = role == Role::Junk;
    let plan = plan_body(rng, mix, junk, !draft.from.name.is_ascii());
    let boundary_tag: u32 = rng.random();
    let mut boundary_n = 0;
    let mut boundary = || {
        boundary_n += 1;
        format!("=_mf{idx:x}_{boundary_n}_{boundary_tag:08x}")
    };

    // Text blocks.
    let mut blocks = Vec::new();
    let paras;
    if junk {
        blocks.push(Block::Shout(draft.subject.to_uppercase()));
        let mut p = String::new();
        while p.len() < plan.text_target {
            if !p.is_empty() {
                p.push(' ');
            }
            p.push_str(pick(rng, corpus::SPAM_LINES));
        }
        paras = vec![p.clone()];
        blocks.push(Block::Para(p));
        blocks.push(Block::Link(format!(
            "http://{}/claim?id={:012x}",
            draft.from.domain(),
            rng.random::<u64>() >> 16
        )));
    } else {
        let greeting = if draft.to.len() > 1 {
            "Hi all,".to_owned()
        } else {
            format!("Hi {},", draft.to[0].first_name())
        };
        blocks.push(Block::Lines(vec![greeting]));
        paras = paragraphs(rng, plan.text_target, plan.non_ascii);
        blocks.extend(paras.iter().cloned().map(Block::Para));
    }
    let mut attachment_names = Vec::new();
    let mut inline_part = None;
    if let Some(size) = plan.inline_image {
        let (name, ct) = pick(
            rng,
            &[
                ("image001.png", "image/png"),
                ("logo.png", "image/png"),
                ("chart.jpg", "image/jpeg"),
            ],
        );
        let stem = name.split('.').next().unwrap_or("image");
        let cid = format!("{stem}.{:08x}@{}", rng.random::<u32>(), draft.from.domain());
        blocks.push(Block::Image {
            cid: cid.clone(),
            name: name.to_owned(),
        });
        attachment_names.push(name.to_owned());
        inline_part = Some(Entity::Binary {
            content_type: ct,
            filename: name.to_owned(),
            content_id: Some(cid),
            data: attachment_data(rng, block, ct, size),
        });
    }
    if !junk {
        blocks.push(Block::Lines(vec![
            (pick(rng, corpus::SIGN_OFFS)).to_owned(),
            draft.from.first_name().to_owned(),
        ]));
    }
    if let Some(q) = &draft.quote {
        blocks.push(Block::Quote {
            header: format!(
                "On {}, {} <{}> wrote:",
                q.when.format("%a, %-d %b %Y at %H:%M"),
                q.name,
                q.addr
            ),
            text: q.snippet.clone(),
        });
    }

    // MIME tree.
    let text = Entity::Text {
        html: false,
        lines: text_lines(&blocks),
    };
    let mut body = if plan.html {
        let html = Entity::Text {
            html: true,
            lines: html_lines(&blocks),
        };
        let html = match inline_part {
            Some(image) => Entity::Multipart {
                subtype: "related",
                boundary: boundary(),
                parts: vec![html, image],
            },
            None => html,
        };
        Entity::Multipart {
            subtype: "alternative",
            boundary: boundary(),
            parts: vec![text, html],
        }
    } else {
        text
    };
    if !plan.attachments.is_empty() {
        let mut parts = vec![body];
        for &size in &plan.attachments {
            let (mut name, mut ct) = pick(rng, corpus::ATTACHMENTS);
            if ct == "text/csv" && size > 200_000 {
                (name, ct) = ("report-Q3.pdf", "application/pdf");
            }
            attachment_names.push(name.to_owned());
            parts.push(Entity::Binary {
                content_type: ct,
                filename: name.to_owned(),
                content_id: None,
                data: attachment_data(rng, block, ct, size),
            });
        }
        body = Entity::Multipart {
            subtype: "mixed",
            boundary: boundary(),
            parts,
        };
    }

    // Headers.
    let estimate = 2048
        + plan.text_target * 3
        + (plan.attachments.iter().sum::<usize>() + plan.inline_image.unwrap_or(0)) * 140 / 100;
    let mut out = String::with_capacity(estimate);
    if role != Role::Sent {
        let received_at = date.with_timezone(&Utc) + Duration::seconds(rng.random_range(1..90));
        out.push_str(&format!(
            "Received: from mx.{from_domain} (mx.{from_domain} [192.0.2.{}])\r\n\tby mx.{owner_domain} with ESMTPS id {:010x}\r\n\tfor <{owner_addr}>; {}\r\n",
            rng.random_range(1..255),
            rng.random::<u64>() >> 24,
            received_at.to_rfc2822(),
            from_domain = draft.from.domain(),
            owner_domain = owner.domain(),
            owner_addr = owner.addr,
        ));
    }
    out.push_str("Date: ");
    out.push_str(&date.to_rfc2822());
    out.push_str("\r\n");
    address_header(&mut out, rng, "From", &[draft.from]);
    if junk {
        out.push_str(&format!("Reply-To: <claims@{}>\r\n", draft.from.domain()));
    }
    address_header(&mut out, rng, "To", &draft.to);
    address_header(&mut out, rng, "Cc", &draft.cc);
    out.push_str("Subject: ");
    if !draft.subject.is_ascii() || rng.random_bool(0.1) {
        let words = mime::encoded_words(&draft.subject, word_encoding(rng));
        out.push_str(&words.join("\r\n "));
    } else {
        out.push_str(&draft.subject);
    }
    out.push_str("\r\nMessage-ID: <");
    out.push_str(msg_id);
    out.push_str(">\r\n");
    if let Some(parent) = &draft.in_reply_to {
        out.push_str("In-Reply-To: <");
        out.push_str(parent);
        out.push_str(">\r\nReferences:");
        for r in &draft.references {
            out.push_str(" <");
            out.push_str(r);
            out.push_str(">\r\n");
        }
    }
    if junk {
        out.push_str("X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=9.7 required=5.0\r\n");
    } else {
        let agent = pick(rng, corpus::AGENTS);
        if !agent.is_empty() {
            out.push_str(agent);
            out.push_str("\r\n");
        }
    }
    out.push_str("MIME-Version: 1.0\r\n");
    mime::write_entity(&mut out, &body);

    let mut raw = out.into_bytes();
    raw.shrink_to_fit();
    (raw, snippet_of(&paras), attachment_names)
}
